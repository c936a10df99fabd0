//! Encrypted persistence of the mixing queue's unplayed talks
//! ([`crate::mixing_queue`]), so queued and held talks survive a restart.
//! Owns the queue directory, its file format and its atomic writes; the key
//! comes from the caller (the OS keyring), and what to save or delete comes
//! from the queue ([`PersistAction`]). Does blocking file I/O: call it off
//! the audio thread.
//!
//! # Directory
//!
//! * `<name>.talk`: one file per talk. `name` is 32 lowercase hex digits,
//!   the first 16 bytes of HMAC-SHA256(name key, session id): no session id
//!   appears in a file name, and names cannot be linked to sessions without
//!   the key.
//! * `key-check`: written by the first [`QueueStore::open`]. A key that
//!   cannot open it is refused ([`StoreError::WrongKey`]) before anything in
//!   the directory is read, moved or removed.
//! * `<name>.talk.bad`: a talk file that failed to load with the right key
//!   (corrupt, or not a queue file), set aside once, never deleted.
//! * `.<name>.tmp-<random>`: a write in progress. One left by a crash is
//!   removed by `open`: its rename, which commits a write, never happened, so
//!   the previous version of the talk (if any) is the committed one.
//!
//! A write is atomic: temporary file (mode 0600) → write → fsync → rename
//! over `<name>.talk` → fsync of the directory.
//!
//! # File format, version 1
//!
//! | bytes  | content                                                        |
//! |--------|----------------------------------------------------------------|
//! | 0..8   | magic `WKQTALK\0` (`WKQKEYC\0` for `key-check`)                 |
//! | 8      | format version, 1                                              |
//! | 9..33  | XChaCha20 nonce, random for every write                        |
//! | 33..   | XChaCha20-Poly1305 ciphertext and 16-byte tag of the payload   |
//!
//! The associated data is magic ‖ version ‖ file name, so the format version
//! and the file's name are authenticated: a file renamed or copied over
//! another talk's name fails to open. The payload is MessagePack (compact
//! arrays) of `{group, session, sender, start_ts_ms, order, frames:
//! [{index, packet}]}`, packets as binary. The 32-byte key is never used
//! directly: the encryption and name keys are HMAC-SHA256(key, label).

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use chacha20poly1305::aead::rand_core::RngCore;
use chacha20poly1305::aead::{Aead, KeyInit, OsRng, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::mixing_queue::{MixingQueue, PersistAction, QueueError, StoredTalk, TalkMeta};

/// Current file format version (bound into every file's associated data).
pub const FORMAT_VERSION: u8 = 1;
/// Largest file read or written: far above the largest talk the default
/// queue limits keep (15 050 frames of at most 1275 bytes, ~19.4 MB).
pub const MAX_FILE_BYTES: u64 = 64 * 1024 * 1024;
/// Longest session id stored (as the queue's `MAX_ID_BYTES`).
pub const MAX_SESSION_BYTES: usize = crate::mixing_queue::MAX_ID_BYTES;

const TALK_MAGIC: &[u8; 8] = b"WKQTALK\0";
const KEY_CHECK_MAGIC: &[u8; 8] = b"WKQKEYC\0";
const KEY_CHECK_FILE: &str = "key-check";
const KEY_CHECK_PLAINTEXT: &[u8] = b"walkie queue_store key check";
const TALK_EXT: &str = ".talk";
const SET_ASIDE_EXT: &str = ".bad";
const TMP_MARKER: &str = ".tmp-";
const NONCE_LEN: usize = 24;
const HEADER_LEN: usize = 8 + 1 + NONCE_LEN;
/// Hex digits of a talk file name.
const NAME_LEN: usize = 32;

type HmacSha256 = Hmac<Sha256>;

/// Why the store failed, or why one file did not load.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error("the key does not open this queue directory (key-check failed)")]
    WrongKey,
    #[error("the OS random number generator failed")]
    Random,
    #[error("not a queue file (bad magic or too short)")]
    NotAQueueFile,
    #[error("queue file format version {0} is not supported")]
    UnsupportedVersion(u8),
    #[error("queue file of {len} bytes is over the {max}-byte limit")]
    TooLarge { len: u64, max: u64 },
    #[error("authentication failed: the file is corrupt or was written with another key")]
    Decrypt,
    #[error("encryption failed")]
    Encrypt,
    #[error("bad payload: {0}")]
    Decode(String),
    #[error("cannot encode the talk: {0}")]
    Encode(String),
    #[error("the file's name does not match its talk's session")]
    NameMismatch,
    #[error("session id is empty or longer than {max} bytes")]
    BadSession { max: usize },
}

impl StoreError {
    fn io(op: &'static str, path: &Path, source: io::Error) -> Self {
        Self::Io {
            op,
            path: path.to_owned(),
            source,
        }
    }

    /// A file failing with this is set aside by `load_all`: it can never
    /// load with this key and format. I/O errors (maybe transient) and newer
    /// format versions (a later app version reads them) leave it in place.
    fn sets_aside(&self) -> bool {
        !matches!(self, Self::Io { .. } | Self::UnsupportedVersion(_))
    }
}

/// A talk file that did not load.
#[derive(Debug)]
pub struct LoadFailure {
    pub path: PathBuf,
    pub error: StoreError,
    /// Where the file was moved (`<name>.talk.bad`), if it was.
    pub set_aside: Option<PathBuf>,
}

/// What [`QueueStore::load_all`] found.
#[derive(Debug, Default)]
pub struct LoadReport {
    /// The talks, in arrival order (`order`, then session).
    pub talks: Vec<StoredTalk>,
    pub failures: Vec<LoadFailure>,
}

/// What [`QueueStore::restore_into`] did.
#[derive(Debug, Default)]
pub struct RestoreReport {
    /// Talks handed to the queue and accepted (the overflow rule may still
    /// evict some at once: the queue's `Overflowed` events say which).
    pub restored: usize,
    /// Files that did not load.
    pub failures: Vec<LoadFailure>,
    /// Talks the queue refused (their files stay).
    pub refused: Vec<(String, QueueError)>,
}

#[derive(Serialize, Deserialize)]
struct TalkFileV1 {
    group: String,
    session: String,
    sender: String,
    start_ts_ms: u64,
    order: u64,
    frames: Vec<FrameV1>,
}

#[derive(Serialize, Deserialize)]
struct FrameV1 {
    index: u64,
    #[serde(with = "serde_bytes")]
    packet: Vec<u8>,
}

/// The queue directory, opened with its key. See the module doc.
pub struct QueueStore {
    dir: PathBuf,
    cipher: XChaCha20Poly1305,
    name_key: [u8; 32],
}

impl std::fmt::Debug for QueueStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueueStore")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

impl QueueStore {
    /// Opens (creating it, mode 0700, if needed) the queue directory with
    /// `key`. Refuses a key that does not match the one the directory was
    /// first opened with ([`StoreError::WrongKey`]), touching nothing; then
    /// removes temporary files left by a crash.
    pub fn open(dir: impl Into<PathBuf>, key: &[u8; 32]) -> Result<Self, StoreError> {
        let dir = dir.into();
        create_private_dir(&dir)?;
        let store = Self {
            cipher: XChaCha20Poly1305::new(&derive(key, b"walkie queue_store v1 encrypt")?.into()),
            name_key: derive(key, b"walkie queue_store v1 names")?,
            dir,
        };
        store.check_key()?;
        store.remove_stale_temp_files()?;
        Ok(store)
    }

    /// The queue directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The file a session's talk is saved in.
    pub fn path_for(&self, session: &str) -> Result<PathBuf, StoreError> {
        Ok(self
            .dir
            .join(format!("{}{TALK_EXT}", self.name_for(session)?)))
    }

    /// Saves a talk atomically, replacing its previous version.
    pub fn save(&self, talk: &StoredTalk) -> Result<PathBuf, StoreError> {
        let name = self.name_for(&talk.meta.session)?;
        let payload = TalkFileV1 {
            group: talk.meta.group.clone(),
            session: talk.meta.session.clone(),
            sender: talk.meta.sender.clone(),
            start_ts_ms: talk.meta.start_ts_ms,
            order: talk.order,
            frames: talk
                .frames
                .iter()
                .map(|(index, packet)| FrameV1 {
                    index: *index,
                    packet: packet.clone(),
                })
                .collect(),
        };
        let plain = rmp_serde::to_vec(&payload).map_err(|e| StoreError::Encode(e.to_string()))?;
        let bytes = self.seal(TALK_MAGIC, name.as_bytes(), &plain)?;
        let path = self.dir.join(format!("{name}{TALK_EXT}"));
        self.write_atomically(&name, &path, &bytes)?;
        Ok(path)
    }

    /// Deletes a session's saved talk; `Ok(false)` when there was none.
    pub fn delete(&self, session: &str) -> Result<bool, StoreError> {
        let path = self.path_for(session)?;
        match fs::remove_file(&path) {
            Ok(()) => {
                self.sync_dir()?;
                Ok(true)
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(StoreError::io("remove", &path, e)),
        }
    }

    /// Every saved talk, in arrival order. A file that does not load is
    /// reported (and logged), and set aside as `<name>.talk.bad` when it can
    /// never load (see [`LoadFailure`]); nothing is ever deleted. `Err` only
    /// when the directory itself cannot be read.
    pub fn load_all(&self) -> Result<LoadReport, StoreError> {
        let mut report = LoadReport::default();
        for path in self.talk_files()? {
            match self.load_file(&path) {
                Ok(talk) => report.talks.push(talk),
                Err(error) => {
                    let set_aside = if error.sets_aside() {
                        set_aside(&path)
                    } else {
                        None
                    };
                    tracing::warn!(
                        path = %path.display(),
                        set_aside = ?set_aside,
                        "queue_store: cannot load a saved talk: {error}"
                    );
                    report.failures.push(LoadFailure {
                        path,
                        error,
                        set_aside,
                    });
                }
            }
        }
        report.talks.sort_by(|a, b| {
            a.order
                .cmp(&b.order)
                .then_with(|| a.meta.session.cmp(&b.meta.session))
        });
        Ok(report)
    }

    /// Carries out what the queue asked for (see
    /// [`MixingQueue::persist_action`]).
    pub fn apply(&self, action: &PersistAction) -> Result<(), StoreError> {
        match action {
            PersistAction::Save(talk) => self.save(talk).map(|_| ()),
            PersistAction::Delete { session } => self.delete(session).map(|_| ()),
        }
    }

    /// At start: loads every saved talk and puts them back into `queue`,
    /// held, in their arrival order. Files stay until their talk is played,
    /// skipped or evicted (then the queue's events say to delete them).
    pub fn restore_into(
        &self,
        queue: &mut MixingQueue,
        now_ms: u64,
    ) -> Result<RestoreReport, StoreError> {
        let LoadReport { talks, failures } = self.load_all()?;
        let total = talks.len();
        let refused = queue.restore(talks, now_ms);
        Ok(RestoreReport {
            restored: total - refused.len(),
            failures,
            refused,
        })
    }

    // ------------------------------------------------------------ internals

    fn name_for(&self, session: &str) -> Result<String, StoreError> {
        if session.is_empty() || session.len() > MAX_SESSION_BYTES {
            return Err(StoreError::BadSession {
                max: MAX_SESSION_BYTES,
            });
        }
        let digest = hmac(&self.name_key, session.as_bytes())?;
        Ok(hex(&digest[..NAME_LEN / 2]))
    }

    fn seal(&self, magic: &[u8; 8], name: &[u8], plain: &[u8]) -> Result<Vec<u8>, StoreError> {
        let mut nonce = [0u8; NONCE_LEN];
        OsRng
            .try_fill_bytes(&mut nonce)
            .map_err(|_| StoreError::Random)?;
        let aad = aad(magic, FORMAT_VERSION, name);
        let sealed = self
            .cipher
            .encrypt(
                &XNonce::from(nonce),
                Payload {
                    msg: plain,
                    aad: &aad,
                },
            )
            .map_err(|_| StoreError::Encrypt)?;
        let mut out = Vec::with_capacity(HEADER_LEN + sealed.len());
        out.extend_from_slice(magic);
        out.push(FORMAT_VERSION);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        if out.len() as u64 > MAX_FILE_BYTES {
            return Err(StoreError::TooLarge {
                len: out.len() as u64,
                max: MAX_FILE_BYTES,
            });
        }
        Ok(out)
    }

    fn open_sealed(
        &self,
        magic: &[u8; 8],
        name: &[u8],
        bytes: &[u8],
    ) -> Result<Vec<u8>, StoreError> {
        if bytes.len() < HEADER_LEN || &bytes[..8] != magic {
            return Err(StoreError::NotAQueueFile);
        }
        let version = bytes[8];
        if version != FORMAT_VERSION {
            return Err(StoreError::UnsupportedVersion(version));
        }
        let mut nonce = [0u8; NONCE_LEN];
        nonce.copy_from_slice(&bytes[9..HEADER_LEN]);
        let aad = aad(magic, version, name);
        self.cipher
            .decrypt(
                &XNonce::from(nonce),
                Payload {
                    msg: &bytes[HEADER_LEN..],
                    aad: &aad,
                },
            )
            .map_err(|_| StoreError::Decrypt)
    }

    fn check_key(&self) -> Result<(), StoreError> {
        let path = self.dir.join(KEY_CHECK_FILE);
        match read_limited(&path) {
            Ok(bytes) => {
                let plain = self
                    .open_sealed(KEY_CHECK_MAGIC, KEY_CHECK_FILE.as_bytes(), &bytes)
                    .map_err(|_| StoreError::WrongKey)?;
                if plain != KEY_CHECK_PLAINTEXT {
                    return Err(StoreError::WrongKey);
                }
                Ok(())
            }
            Err(StoreError::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => {
                let bytes = self.seal(
                    KEY_CHECK_MAGIC,
                    KEY_CHECK_FILE.as_bytes(),
                    KEY_CHECK_PLAINTEXT,
                )?;
                self.write_atomically(KEY_CHECK_FILE, &path, &bytes)
            }
            Err(e) => Err(e),
        }
    }

    fn remove_stale_temp_files(&self) -> Result<(), StoreError> {
        for entry in self.entries()? {
            let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
                continue;
            };
            if name.starts_with('.') && name.contains(TMP_MARKER) {
                let path = entry.path();
                if let Err(e) = fs::remove_file(&path) {
                    tracing::warn!(path = %path.display(), "queue_store: cannot remove a temporary file: {e}");
                }
            }
        }
        Ok(())
    }

    fn entries(&self) -> Result<Vec<fs::DirEntry>, StoreError> {
        let read = fs::read_dir(&self.dir).map_err(|e| StoreError::io("read", &self.dir, e))?;
        let mut entries = Vec::new();
        for entry in read {
            entries.push(entry.map_err(|e| StoreError::io("read", &self.dir, e))?);
        }
        Ok(entries)
    }

    /// `<32 hex>.talk` files, sorted by name.
    fn talk_files(&self) -> Result<Vec<PathBuf>, StoreError> {
        let mut files: Vec<PathBuf> = self
            .entries()?
            .into_iter()
            .filter(|e| {
                e.file_name()
                    .to_str()
                    .and_then(|n| n.strip_suffix(TALK_EXT))
                    .is_some_and(is_talk_name)
            })
            .map(|e| e.path())
            .collect();
        files.sort();
        Ok(files)
    }

    fn load_file(&self, path: &Path) -> Result<StoredTalk, StoreError> {
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_suffix(TALK_EXT))
            .ok_or(StoreError::NameMismatch)?;
        let bytes = read_limited(path)?;
        let plain = self.open_sealed(TALK_MAGIC, name.as_bytes(), &bytes)?;
        let file: TalkFileV1 =
            rmp_serde::from_slice(&plain).map_err(|e| StoreError::Decode(e.to_string()))?;
        if self.name_for(&file.session)? != name {
            return Err(StoreError::NameMismatch);
        }
        Ok(StoredTalk {
            meta: TalkMeta {
                group: file.group,
                session: file.session,
                sender: file.sender,
                start_ts_ms: file.start_ts_ms,
            },
            order: file.order,
            frames: file
                .frames
                .into_iter()
                .map(|f| (f.index, f.packet))
                .collect(),
        })
    }

    fn write_atomically(&self, name: &str, path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
        let mut suffix = [0u8; 8];
        OsRng
            .try_fill_bytes(&mut suffix)
            .map_err(|_| StoreError::Random)?;
        let tmp = self
            .dir
            .join(format!(".{name}{TMP_MARKER}{}", hex(&suffix)));
        let result = write_and_sync(&tmp, bytes)
            .and_then(|()| fs::rename(&tmp, path).map_err(|e| StoreError::io("rename", &tmp, e)));
        if result.is_err() {
            // Best effort: the temporary file holds nothing committed.
            let _ = fs::remove_file(&tmp);
        }
        result?;
        self.sync_dir()
    }

    fn sync_dir(&self) -> Result<(), StoreError> {
        #[cfg(unix)]
        {
            File::open(&self.dir)
                .and_then(|d| d.sync_all())
                .map_err(|e| StoreError::io("sync", &self.dir, e))?;
        }
        Ok(())
    }
}

fn derive(key: &[u8; 32], label: &[u8]) -> Result<[u8; 32], StoreError> {
    let digest = hmac(key, label)?;
    let mut out = [0u8; 32];
    out.copy_from_slice(&digest);
    Ok(out)
}

fn hmac(key: &[u8], data: &[u8]) -> Result<[u8; 32], StoreError> {
    // HMAC takes keys of any length; the error cannot happen.
    let mut mac = <HmacSha256 as Mac>::new_from_slice(key).map_err(|_| StoreError::Encrypt)?;
    mac.update(data);
    Ok(mac.finalize().into_bytes().into())
}

fn aad(magic: &[u8; 8], version: u8, name: &[u8]) -> Vec<u8> {
    let mut aad = Vec::with_capacity(9 + name.len());
    aad.extend_from_slice(magic);
    aad.push(version);
    aad.extend_from_slice(name);
    aad
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 0xf)]));
    }
    s
}

fn is_talk_name(stem: &str) -> bool {
    stem.len() == NAME_LEN
        && stem
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

fn read_limited(path: &Path) -> Result<Vec<u8>, StoreError> {
    let file = File::open(path).map_err(|e| StoreError::io("open", path, e))?;
    let len = file
        .metadata()
        .map_err(|e| StoreError::io("stat", path, e))?
        .len();
    if len > MAX_FILE_BYTES {
        return Err(StoreError::TooLarge {
            len,
            max: MAX_FILE_BYTES,
        });
    }
    let mut bytes = Vec::new();
    file.take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| StoreError::io("read", path, e))?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(StoreError::TooLarge {
            len: bytes.len() as u64,
            max: MAX_FILE_BYTES,
        });
    }
    Ok(bytes)
}

fn write_and_sync(path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options
        .open(path)
        .map_err(|e| StoreError::io("create", path, e))?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .map_err(|e| StoreError::io("write", path, e))
}

fn create_private_dir(dir: &Path) -> Result<(), StoreError> {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder
        .create(dir)
        .map_err(|e| StoreError::io("create", dir, e))
}

/// Renames a file that cannot load to `<file>.bad`; None if that failed.
fn set_aside(path: &Path) -> Option<PathBuf> {
    let mut target = path.as_os_str().to_owned();
    target.push(SET_ASIDE_EXT);
    let target = PathBuf::from(target);
    match fs::rename(path, &target) {
        Ok(()) => Some(target),
        Err(e) => {
            tracing::warn!(path = %path.display(), "queue_store: cannot set a bad file aside: {e}");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jitter::Playout;
    use crate::mixing_queue::{QueueEvent, QueueLimits, TalkState, Tick};
    use std::collections::BTreeMap;

    const KEY: [u8; 32] = [7; 32];

    fn meta(group: &str, session: &str) -> TalkMeta {
        TalkMeta {
            group: group.into(),
            session: session.into(),
            sender: "@alice:example.org".into(),
            start_ts_ms: 1_767_225_600_000,
        }
    }

    fn pkt(talk: u8, index: u64) -> Vec<u8> {
        let mut p = vec![talk, 0xA5];
        p.extend_from_slice(&index.to_le_bytes());
        p
    }

    fn talk(session: &str, order: u64, frames: u64) -> StoredTalk {
        StoredTalk {
            meta: meta("!g:example.org", session),
            order,
            frames: (0..frames).map(|i| (i, pkt(1, i))).collect(),
        }
    }

    /// Drains the queue's events into the store.
    fn persist(q: &mut MixingQueue, store: &QueueStore) -> Vec<QueueEvent> {
        let events: Vec<QueueEvent> = std::iter::from_fn(|| q.poll_event()).collect();
        for e in &events {
            if let Some(action) = q.persist_action(e) {
                store.apply(&action).unwrap();
            }
        }
        events
    }

    /// Name -> contents of every file in the directory.
    fn snapshot(dir: &Path) -> BTreeMap<String, Vec<u8>> {
        fs::read_dir(dir)
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                (
                    e.file_name().to_string_lossy().into_owned(),
                    fs::read(e.path()).unwrap(),
                )
            })
            .collect()
    }

    fn talk_files(dir: &Path) -> Vec<String> {
        snapshot(dir)
            .into_keys()
            .filter(|n| n.ends_with(".talk"))
            .collect()
    }

    #[test]
    fn simulated_restart_keeps_unplayed_talks_in_order_and_playable() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("queue");
        let sessions = [
            "q5e1cYQ0pF3oSPrV0bA7wA",
            "second_session_01",
            "third-session-0002",
        ];
        // Three groups: talks overlapping in one group cannot be (a new
        // talk there ends the one before, as the floor does).
        let groups = ["!a:example.org", "!b:example.org", "!c:example.org"];
        {
            let store = QueueStore::open(&dir, &KEY).unwrap();
            let mut q = MixingQueue::new(QueueLimits::default()).unwrap();
            q.set_user_talking(true);
            for (k, (s, g)) in sessions.iter().zip(groups).enumerate() {
                q.talk_started(meta(g, s), 0).unwrap();
                let packets: Vec<Vec<u8>> = (0..30).map(|i| pkt(k as u8, i)).collect();
                for (m, chunk) in packets.chunks(3).enumerate() {
                    let first = m as u64 * 3;
                    q.push(
                        g,
                        s,
                        first,
                        first * crate::jitter::FRAME_MS,
                        chunk.to_vec(),
                        0,
                    )
                    .unwrap();
                }
            }
            // Nothing is saved before a talk is complete.
            persist(&mut q, &store);
            assert!(talk_files(&dir).is_empty());
            for s in sessions {
                q.talk_ended(s, 0).unwrap();
            }
            persist(&mut q, &store);
            let files = talk_files(&dir);
            assert_eq!(files.len(), 3);
            for (name, bytes) in snapshot(&dir) {
                for s in sessions {
                    assert!(!name.contains(s), "session id in a file name");
                    let needle = s.as_bytes();
                    assert!(
                        !bytes.windows(needle.len()).any(|w| w == needle),
                        "plaintext"
                    );
                }
            }
            // The app stops here: everything is dropped.
        }

        // Wrong key: refused, and the directory is untouched.
        let before = snapshot(&dir);
        assert!(matches!(
            QueueStore::open(&dir, &[8; 32]),
            Err(StoreError::WrongKey)
        ));
        assert_eq!(snapshot(&dir), before);

        // Right key: the same talks, in the same order, held and playable.
        let store = QueueStore::open(&dir, &KEY).unwrap();
        let mut q = MixingQueue::new(QueueLimits::default()).unwrap();
        let report = store.restore_into(&mut q, 1_000).unwrap();
        assert_eq!(report.restored, 3);
        assert!(report.failures.is_empty() && report.refused.is_empty());
        let unplayed = q.unplayed();
        let listed: Vec<&str> = unplayed.iter().map(|t| t.meta.session.as_str()).collect();
        assert_eq!(listed, sessions);
        assert!(unplayed
            .iter()
            .all(|t| t.state == TalkState::Held && t.frames == 30));
        assert_eq!(unplayed[1].meta, meta(groups[1], sessions[1]));
        persist(&mut q, &store);

        q.play_now(sessions[0]).unwrap();
        let mut now = 1_000;
        let mut played = Vec::new();
        loop {
            now += 20;
            match q.tick(now) {
                Tick::Idle => break,
                Tick::Play {
                    session, playout, ..
                } => {
                    assert_eq!(session, sessions[0]);
                    match playout {
                        Playout::Frame(p) => played.push(p),
                        other => panic!("{other:?}"),
                    }
                }
            }
        }
        assert_eq!(played, (0..30).map(|i| pkt(0, i)).collect::<Vec<_>>());
        let events = persist(&mut q, &store);
        assert!(events.contains(&QueueEvent::Finished {
            session: sessions[0].into()
        }));
        // The played talk's file is gone; the other two remain.
        assert!(!store.path_for(sessions[0]).unwrap().exists());
        assert_eq!(talk_files(&dir).len(), 2);
        // A skipped one goes too.
        q.skip(sessions[2]).unwrap();
        persist(&mut q, &store);
        assert_eq!(talk_files(&dir).len(), 1);
        assert!(store.path_for(sessions[1]).unwrap().exists());
    }

    #[test]
    fn corrupt_files_are_reported_and_set_aside_never_deleted() {
        let tmp = tempfile::tempdir().unwrap();
        let store = QueueStore::open(tmp.path(), &KEY).unwrap();
        for (k, s) in [
            "one_session_00001",
            "two_session_00002",
            "three_session_003",
            "four_session_0004",
        ]
        .iter()
        .enumerate()
        {
            store.save(&talk(s, k as u64, 5)).unwrap();
        }
        // A flipped bit.
        let p1 = store.path_for("one_session_00001").unwrap();
        let mut bytes = fs::read(&p1).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        fs::write(&p1, &bytes).unwrap();
        // Truncated below the header.
        let p2 = store.path_for("two_session_00002").unwrap();
        fs::write(&p2, b"WKQTALK").unwrap();
        // A newer format: reported but left in place.
        let p3 = store.path_for("three_session_003").unwrap();
        let mut bytes = fs::read(&p3).unwrap();
        bytes[8] = 2;
        fs::write(&p3, &bytes).unwrap();
        // Not ours (wrong name pattern): ignored.
        fs::write(tmp.path().join("notes.txt"), b"hello").unwrap();

        let report = store.load_all().unwrap();
        assert_eq!(report.talks.len(), 1);
        assert_eq!(report.talks[0], talk("four_session_0004", 3, 5));
        assert_eq!(report.failures.len(), 3);
        for f in &report.failures {
            println!("{}: {} -> {:?}", f.path.display(), f.error, f.set_aside);
            if f.path == p1 {
                assert!(matches!(f.error, StoreError::Decrypt));
            } else if f.path == p2 {
                assert!(matches!(f.error, StoreError::NotAQueueFile));
            } else {
                assert!(matches!(f.error, StoreError::UnsupportedVersion(2)));
                assert!(f.set_aside.is_none());
                assert!(p3.exists());
            }
        }
        let aside: Vec<_> = report
            .failures
            .iter()
            .filter_map(|f| f.set_aside.clone())
            .collect();
        assert_eq!(aside.len(), 2);
        assert!(aside
            .iter()
            .all(|p| p.exists() && p.to_string_lossy().ends_with(".talk.bad")));
        assert!(!p1.exists() && !p2.exists());
        // The next load only reports the newer-format file again.
        assert_eq!(store.load_all().unwrap().failures.len(), 1);
    }

    #[test]
    fn a_file_copied_over_another_name_fails_to_authenticate() {
        let tmp = tempfile::tempdir().unwrap();
        let store = QueueStore::open(tmp.path(), &KEY).unwrap();
        store.save(&talk("first_session_001", 0, 3)).unwrap();
        store.save(&talk("other_session_002", 1, 3)).unwrap();
        let a = store.path_for("first_session_001").unwrap();
        let b = store.path_for("other_session_002").unwrap();
        fs::copy(&a, &b).unwrap();
        let report = store.load_all().unwrap();
        assert_eq!(report.talks.len(), 1);
        assert!(matches!(report.failures[0].error, StoreError::Decrypt));
    }

    #[test]
    fn saves_are_atomic_replacements_with_fresh_nonces() {
        let tmp = tempfile::tempdir().unwrap();
        let store = QueueStore::open(tmp.path(), &KEY).unwrap();
        let t = talk("same_session_0001", 4, 10);
        let path = store.save(&t).unwrap();
        let first = fs::read(&path).unwrap();
        store.save(&t).unwrap();
        let second = fs::read(&path).unwrap();
        assert_eq!(first.len(), second.len());
        assert_ne!(first[9..HEADER_LEN], second[9..HEADER_LEN], "nonce reused");
        assert_ne!(first, second);
        let shorter = talk("same_session_0001", 4, 2);
        store.save(&shorter).unwrap();
        assert_eq!(store.load_all().unwrap().talks, vec![shorter]);
        let names: Vec<String> = snapshot(tmp.path()).into_keys().collect();
        assert_eq!(names.len(), 2, "{names:?}");
        assert!(names.contains(&"key-check".to_string()));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        // A temporary file left by a crash is removed at the next open.
        let stale = tmp.path().join(".0123.tmp-abcdef");
        fs::write(&stale, b"partial").unwrap();
        let store = QueueStore::open(tmp.path(), &KEY).unwrap();
        assert!(!stale.exists());
        assert!(store.delete("same_session_0001").unwrap());
        assert!(!store.delete("same_session_0001").unwrap());
        assert!(matches!(
            store.delete(""),
            Err(StoreError::BadSession { .. })
        ));
        assert!(store.load_all().unwrap().talks.is_empty());
    }

    #[test]
    fn oversized_files_are_refused_without_reading_them() {
        let tmp = tempfile::tempdir().unwrap();
        let store = QueueStore::open(tmp.path(), &KEY).unwrap();
        let path = store.path_for("big_session_00001").unwrap();
        let file = File::create(&path).unwrap();
        file.set_len(MAX_FILE_BYTES + 1).unwrap();
        let report = store.load_all().unwrap();
        assert!(matches!(
            report.failures[0].error,
            StoreError::TooLarge { .. }
        ));
    }

    #[test]
    fn a_big_talk_round_trips() {
        let tmp = tempfile::tempdir().unwrap();
        let store = QueueStore::open(tmp.path(), &KEY).unwrap();
        let t = StoredTalk {
            meta: meta("!g:example.org", "long_talk_000001"),
            order: u64::MAX,
            frames: (0..15_050u64)
                .map(|i| (i, vec![(i % 251) as u8; 1275]))
                .collect(),
        };
        let path = store.save(&t).unwrap();
        let size = fs::metadata(&path).unwrap().len();
        println!("15 050 frames of 1275 bytes: {size} bytes on disk");
        assert!(size < 15_050 * 1_285);
        assert_eq!(store.load_all().unwrap().talks, vec![t]);
    }
}

/// Fuzzing of the store's files (issue 13): mutated sealed files (outer
/// format, authentication) and validly sealed mutated plaintexts (the
/// MessagePack inside) are read back as a talk or a typed error, never a
/// panic. `WALKIE_FUZZ_CASES` sets the cases (default 2000 each).
#[cfg(test)]
mod fuzz {
    use super::*;
    use proptest::test_runner::{Config, TestRunner};

    fn cases() -> u32 {
        std::env::var("WALKIE_FUZZ_CASES")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(2000)
    }

    /// Flips, truncates, inserts and overwrites bytes of `bytes`, driven
    /// by `choices`.
    fn mutate(bytes: &mut Vec<u8>, choices: &[(u8, u16, u8)]) {
        for &(op, at, val) in choices {
            let i = at as usize % bytes.len().max(1);
            match op % 5 {
                0 if !bytes.is_empty() => bytes[i] ^= 1 << (val % 8),
                1 => bytes.truncate(i),
                2 => bytes.insert(i.min(bytes.len()), val),
                3 if !bytes.is_empty() => bytes[i] = val,
                _ => bytes.extend(std::iter::repeat_n(val, at as usize % 64)),
            }
        }
    }

    fn store() -> (tempfile::TempDir, QueueStore, PathBuf, Vec<u8>, String) {
        let dir = tempfile::tempdir().unwrap();
        let store = QueueStore::open(dir.path().join("q"), &[9; 32]).unwrap();
        let talk = StoredTalk {
            meta: TalkMeta {
                group: "!g:example.org".into(),
                session: "fuzzsession0000000000A".into(),
                sender: "@alice:example.org".into(),
                start_ts_ms: 1_767_225_600_000,
            },
            order: 3,
            frames: (0..20u64)
                .map(|i| (i, vec![0xA5; 1 + i as usize]))
                .collect(),
        };
        let path = store.save(&talk).unwrap();
        let sealed = std::fs::read(&path).unwrap();
        let name = store.name_for(&talk.meta.session).unwrap();
        (dir, store, path, sealed, name)
    }

    #[test]
    fn mutated_store_files_are_read_or_refused_never_a_panic() {
        let (_dir, store, path, sealed, name) = store();
        let plain = store
            .open_sealed(TALK_MAGIC, name.as_bytes(), &sealed)
            .unwrap();
        let total = cases();
        let mut runner = TestRunner::new(Config {
            cases: total,
            failure_persistence: None,
            ..Config::default()
        });
        let (outer_refused, inner_refused) =
            (std::cell::Cell::new(0u32), std::cell::Cell::new(0u32));
        runner
            .run(
                &(
                    proptest::bool::ANY,
                    proptest::collection::vec(
                        (
                            proptest::num::u8::ANY,
                            proptest::num::u16::ANY,
                            proptest::num::u8::ANY,
                        ),
                        1..8,
                    ),
                ),
                |(inner, choices)| {
                    let bytes = if inner {
                        // Validly sealed, so the MessagePack decoder and
                        // the checks after it see the mutation.
                        let mut p = plain.clone();
                        mutate(&mut p, &choices);
                        store.seal(TALK_MAGIC, name.as_bytes(), &p).unwrap()
                    } else {
                        let mut s = sealed.clone();
                        mutate(&mut s, &choices);
                        s
                    };
                    std::fs::write(&path, &bytes).unwrap();
                    if store.load_file(&path).is_err() {
                        let count = if inner {
                            &inner_refused
                        } else {
                            &outer_refused
                        };
                        count.set(count.get() + 1);
                    }
                    Ok(())
                },
            )
            .unwrap();
        let (outer, inner) = (outer_refused.get(), inner_refused.get());
        println!(
            "fuzz: {total} mutated store files, {outer} refused outside, {inner} refused inside, no panic"
        );
        assert!(outer > 0 && inner > 0);
    }
}
