//! Encryption of the outbox journal at rest: each Opus packet of a talk is
//! sealed on its own with XChaCha20-Poly1305 (a random 24-byte nonce per
//! record) under a key derived from the account's store passphrase (OS
//! keyring, see `crate::store_key`), so the journal is as private as the
//! matrix-sdk store beside it. The associated data binds each record to its
//! talk and its position: records cannot be moved between talks or
//! reordered without failing to open.

use chacha20poly1305::{
    aead::{Aead, KeyInit, Payload},
    XChaCha20Poly1305, XNonce,
};
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Bytes a sealed record adds to its packet: nonce and tag.
pub const OVERHEAD: usize = 24 + 16;

/// Seals and opens journal records.
#[derive(Clone)]
pub struct JournalCipher {
    cipher: XChaCha20Poly1305,
}

impl std::fmt::Debug for JournalCipher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("JournalCipher")
    }
}

/// Why a record could not be sealed or opened.
#[derive(Debug, thiserror::Error)]
pub enum CipherError {
    #[error("no randomness for a nonce: {0}")]
    Random(String),
    #[error("a journal record does not open (wrong key, or tampered)")]
    Open,
    #[error("sealing failed")]
    Seal,
}

fn aad(session: &str, index: u64) -> Vec<u8> {
    let mut aad = Vec::with_capacity(session.len() + 8);
    aad.extend_from_slice(session.as_bytes());
    aad.extend_from_slice(&index.to_le_bytes());
    aad
}

impl JournalCipher {
    /// The journal key of an account: HMAC-SHA256 of a fixed label under
    /// its store passphrase.
    pub fn from_passphrase(passphrase: &str) -> Self {
        let key: [u8; 32] = match <Hmac<Sha256> as Mac>::new_from_slice(passphrase.as_bytes()) {
            Ok(mut mac) => {
                mac.update(b"walkie outbox journal v1");
                mac.finalize().into_bytes().into()
            }
            // HMAC takes keys of any length; unreachable in practice.
            Err(_) => [0u8; 32],
        };
        Self {
            cipher: XChaCha20Poly1305::new(&key.into()),
        }
    }

    /// `nonce || ciphertext+tag` of record `index` of `session`.
    pub fn seal(&self, session: &str, index: u64, packet: &[u8]) -> Result<Vec<u8>, CipherError> {
        let mut nonce = [0u8; 24];
        getrandom::fill(&mut nonce).map_err(|e| CipherError::Random(e.to_string()))?;
        let sealed = self
            .cipher
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: packet,
                    aad: &aad(session, index),
                },
            )
            .map_err(|_| CipherError::Seal)?;
        let mut out = Vec::with_capacity(24 + sealed.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        Ok(out)
    }

    /// The packet of a sealed record.
    pub fn open(&self, session: &str, index: u64, record: &[u8]) -> Result<Vec<u8>, CipherError> {
        if record.len() < OVERHEAD {
            return Err(CipherError::Open);
        }
        let (nonce, sealed) = record.split_at(24);
        self.cipher
            .decrypt(
                XNonce::from_slice(nonce),
                Payload {
                    msg: sealed,
                    aad: &aad(session, index),
                },
            )
            .map_err(|_| CipherError::Open)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_open_only_with_their_key_talk_and_position() {
        let c = JournalCipher::from_passphrase("pass");
        let sealed = c.seal("s1", 3, b"opus").unwrap();
        assert!(
            !sealed.windows(4).any(|w| w == b"opus"),
            "plain packet on disk"
        );
        assert_eq!(c.open("s1", 3, &sealed).unwrap(), b"opus");
        assert!(c.open("s1", 4, &sealed).is_err(), "moved");
        assert!(c.open("s2", 3, &sealed).is_err(), "other talk");
        let other = JournalCipher::from_passphrase("other");
        assert!(other.open("s1", 3, &sealed).is_err(), "other key");
        let mut tampered = sealed.clone();
        tampered[30] ^= 1;
        assert!(c.open("s1", 3, &tampered).is_err());
    }
}
