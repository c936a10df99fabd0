//! The durable outbox of recordings. While we talk, every Opus packet we
//! send is appended to a journal on disk (`<session>.packets`, length-
//! prefixed records each sealed by `journal_cipher`, beside
//! `<session>.json`, which holds only room, session id and start time); when the talk ends, or on the next
//! start after a crash, the journal becomes an Ogg Opus file that is
//! uploaded encrypted and posted as a voice message. An entry is deleted
//! only once the homeserver acknowledged the message; the message's
//! transaction id derives from the talk's session id, so a retry after a
//! crash between "sent" and "deleted" is deduplicated by the homeserver
//! instead of posting the talk twice.

use std::{
    fs::{File, OpenOptions},
    io::{BufWriter, Read, Write},
    path::{Path, PathBuf},
};

use matrix_sdk::{ruma::OwnedTransactionId, Client};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use walkie_audio::{codec, ogg_opus::OggOpusWriter, waveform};

use walkie_protocol::{SessionId, TalkReference};

use super::journal_cipher::JournalCipher;

/// What the outbox knows about one recording.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EntryMeta {
    pub room_id: String,
    pub session_id: String,
    pub start_ts: u64,
}

/// A talk being journalled.
pub struct Journal {
    meta_path: PathBuf,
    packets: BufWriter<File>,
    session_id: String,
    cipher: JournalCipher,
    next_index: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum OutboxError {
    #[error("outbox file {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("outbox entry {0}: {1}")]
    Corrupt(String, String),
    #[error("recording of {0}: {1}")]
    Audio(String, String),
    #[error(transparent)]
    Matrix(#[from] Box<matrix_sdk::Error>),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> OutboxError + '_ {
    move |source| OutboxError::Io {
        path: path.to_owned(),
        source,
    }
}

/// The outbox directory of one account.
#[derive(Debug, Clone)]
pub struct Outbox {
    dir: PathBuf,
    cipher: JournalCipher,
}

impl Outbox {
    /// The outbox in `dir`, its journals sealed with `cipher`.
    pub fn open(dir: &Path, cipher: JournalCipher) -> Result<Self, OutboxError> {
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        Ok(Self {
            dir: dir.to_owned(),
            cipher,
        })
    }

    fn paths(&self, session: &str) -> (PathBuf, PathBuf) {
        (
            self.dir.join(format!("{session}.json")),
            self.dir.join(format!("{session}.packets")),
        )
    }

    /// Starts journalling a talk.
    pub fn begin(&self, meta: &EntryMeta) -> Result<Journal, OutboxError> {
        let (meta_path, packets_path) = self.paths(&meta.session_id);
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&packets_path)
            .map_err(io(&packets_path))?;
        let tmp = meta_path.with_extension("json.tmp");
        std::fs::write(
            &tmp,
            serde_json::to_vec(meta)
                .map_err(|e| OutboxError::Corrupt(meta.session_id.clone(), e.to_string()))?,
        )
        .map_err(io(&tmp))?;
        std::fs::rename(&tmp, &meta_path).map_err(io(&meta_path))?;
        Ok(Journal {
            meta_path,
            packets: BufWriter::new(file),
            session_id: meta.session_id.clone(),
            cipher: self.cipher.clone(),
            next_index: 0,
        })
    }

    /// The entries still to post (finished talks and talks cut off by a crash).
    pub fn pending(&self) -> Result<Vec<EntryMeta>, OutboxError> {
        let mut out = Vec::new();
        for entry in std::fs::read_dir(&self.dir).map_err(io(&self.dir))? {
            let path = entry.map_err(io(&self.dir))?.path();
            if path.extension().and_then(|e| e.to_str()) != Some("json") {
                continue;
            }
            let bytes = std::fs::read(&path).map_err(io(&path))?;
            match serde_json::from_slice::<EntryMeta>(&bytes) {
                Ok(meta) => out.push(meta),
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "skipping a corrupt outbox entry")
                }
            }
        }
        out.sort_by_key(|m| m.start_ts);
        Ok(out)
    }

    /// The Opus packets journalled for a session (a torn last record, from a
    /// crash mid-write, is dropped).
    pub fn packets(&self, session: &str) -> Result<Vec<Vec<u8>>, OutboxError> {
        let (_, path) = self.paths(session);
        let mut bytes = Vec::new();
        File::open(&path)
            .and_then(|mut f| f.read_to_end(&mut bytes))
            .map_err(io(&path))?;
        let mut packets = Vec::new();
        let mut rest = bytes.as_slice();
        while rest.len() >= 2 {
            let len = usize::from(u16::from_le_bytes([rest[0], rest[1]]));
            if len == 0 || rest.len() < 2 + len {
                break;
            }
            let index = packets.len() as u64;
            match self.cipher.open(session, index, &rest[2..2 + len]) {
                Ok(p) => packets.push(p),
                Err(e) => {
                    // A torn last record, or a journal of another key: what
                    // opened so far is the recording.
                    tracing::warn!(session, index, error = %e, "outbox journal ends at a record that does not open");
                    break;
                }
            }
            rest = &rest[2 + len..];
        }
        Ok(packets)
    }

    pub fn remove(&self, session: &str) -> Result<(), OutboxError> {
        let (meta, packets) = self.paths(session);
        for p in [meta, packets] {
            match std::fs::remove_file(&p) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(io(&p)(e)),
            }
        }
        Ok(())
    }
}

impl Journal {
    /// Appends packets; flushed to the OS at once so a killed process
    /// leaves what it sent on disk.
    pub fn append(&mut self, packets: &[Vec<u8>]) -> Result<(), OutboxError> {
        for p in packets {
            let sealed = self
                .cipher
                .seal(&self.session_id, self.next_index, p)
                .map_err(|e| OutboxError::Corrupt(self.session_id.clone(), e.to_string()))?;
            let Ok(len) = u16::try_from(sealed.len()) else {
                return Err(OutboxError::Corrupt(
                    self.session_id.clone(),
                    format!("a {}-byte packet is too large to journal", p.len()),
                ));
            };
            self.packets
                .write_all(&len.to_le_bytes())
                .map_err(io(&self.meta_path))?;
            self.packets
                .write_all(&sealed)
                .map_err(io(&self.meta_path))?;
            self.next_index += 1;
        }
        self.packets.flush().map_err(io(&self.meta_path))
    }

    pub fn session_id(&self) -> &str {
        &self.session_id
    }
}

/// A voice message ready to post.
pub struct Recording {
    pub ogg: Vec<u8>,
    pub duration_ms: u64,
    pub waveform: Vec<u16>,
    pub size: usize,
}

/// Builds the Ogg Opus file and waveform from journalled packets.
pub fn make_recording(session: &str, packets: &[Vec<u8>]) -> Result<Recording, OutboxError> {
    let audio = |e: &dyn std::fmt::Display| OutboxError::Audio(session.to_owned(), e.to_string());
    let pre_skip = codec::OpusEncoder::new().map_err(|e| audio(&e))?.pre_skip();
    let mut decoder = codec::OpusDecoder::new().map_err(|e| audio(&e))?;
    let mut writer = OggOpusWriter::new(Vec::new(), pre_skip).map_err(|e| audio(&e))?;
    let mut pcm: Vec<f32> = Vec::with_capacity(packets.len() * codec::FRAME_SAMPLES);
    for p in packets {
        writer.write_packet(p).map_err(|e| audio(&e))?;
        let samples = decoder
            .decode(p)
            .or_else(|_| decoder.decode_lost())
            .map_err(|e| audio(&e))?;
        pcm.extend(samples.iter().map(|&s| f32::from(s) / 32768.0));
    }
    let samples = (packets.len() * codec::FRAME_SAMPLES) as u64;
    let ogg = writer
        .finish_with_length(samples.saturating_sub(u64::from(pre_skip)))
        .map_err(|e| audio(&e))?;
    let size = ogg.len();
    Ok(Recording {
        ogg,
        duration_ms: samples * 1000 / codec::SAMPLE_RATE as u64,
        waveform: waveform::waveform(&pcm, waveform::DEFAULT_POINTS),
        size,
    })
}

/// The transaction id of a talk's voice message: the same for every retry.
pub fn transaction_id(session: &str) -> String {
    format!("walkie-{session}")
}

/// Uploads the recording encrypted and posts it as a voice message in the
/// form Element sends, plus the talk reference; into the thread under
/// `thread_root` when the group keeps its recordings in one.
pub async fn post(
    client: &Client,
    meta: &EntryMeta,
    rec: Recording,
    thread_root: Option<&str>,
) -> Result<(), OutboxError> {
    let matrix = |e: matrix_sdk::Error| OutboxError::Matrix(Box::new(e));
    let room_id = matrix_sdk::ruma::RoomId::parse(&meta.room_id)
        .map_err(|e| OutboxError::Corrupt(meta.session_id.clone(), e.to_string()))?;
    let room = client.get_room(&room_id).ok_or_else(|| {
        OutboxError::Corrupt(meta.session_id.clone(), format!("not in room {room_id}"))
    })?;
    let mut reader = std::io::Cursor::new(rec.ogg);
    let file = client
        .upload_encrypted_file(&mut reader)
        .await
        .map_err(matrix)?;
    let file = serde_json::to_value(&file)
        .map_err(|e| OutboxError::Corrupt(meta.session_id.clone(), e.to_string()))?;
    let name = format!("walkie-{}.ogg", meta.session_id);
    let mut content: Value = json!({
        "msgtype": "m.audio",
        "body": "Voice message",
        "file": file,
        "info": {"duration": rec.duration_ms, "mimetype": "audio/ogg", "size": rec.size},
        "org.matrix.msc1767.text": "Voice message",
        "org.matrix.msc1767.file": {"file": file, "name": name, "mimetype": "audio/ogg", "size": rec.size},
        "org.matrix.msc1767.audio": {"duration": rec.duration_ms, "waveform": rec.waveform},
        "org.matrix.msc3245.voice": {},
    });
    if let Ok(session_id) = SessionId::parse(&meta.session_id) {
        TalkReference { session_id }.insert_into(&mut content);
    }
    if let Some(root) = thread_root {
        // A thread reply as Element sends it (with the reply fallback for
        // clients without threads).
        content["m.relates_to"] = json!({
            "rel_type": "m.thread",
            "event_id": root,
            "is_falling_back": true,
            "m.in_reply_to": {"event_id": root},
        });
    }
    let txn: OwnedTransactionId = transaction_id(&meta.session_id).into();
    room.send_raw("m.room.message", content)
        .with_transaction_id(&txn)
        .await
        .map_err(matrix)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> JournalCipher {
        JournalCipher::from_passphrase("test passphrase")
    }

    #[test]
    fn a_journal_does_not_open_with_another_key() {
        let dir = tempfile::tempdir().unwrap();
        let outbox = Outbox::open(dir.path(), key()).unwrap();
        let mut journal = outbox.begin(&meta("s1", 5)).unwrap();
        journal.append(&[vec![7; 30]]).unwrap();
        drop(journal);
        let other = Outbox::open(dir.path(), JournalCipher::from_passphrase("x")).unwrap();
        assert!(other.packets("s1").unwrap().is_empty());
        assert_eq!(outbox.packets("s1").unwrap(), vec![vec![7; 30]]);
    }

    fn meta(session: &str, start_ts: u64) -> EntryMeta {
        EntryMeta {
            room_id: "!r:localhost".into(),
            session_id: session.into(),
            start_ts,
        }
    }

    #[test]
    fn journal_survives_reopen_and_drops_a_torn_last_record() {
        let dir = tempfile::tempdir().unwrap();
        let outbox = Outbox::open(dir.path(), key()).unwrap();
        let mut journal = outbox.begin(&meta("s1", 5)).unwrap();
        journal.append(&[vec![1, 2, 3], vec![4; 40]]).unwrap();
        drop(journal);
        let on_disk = std::fs::read(dir.path().join("s1.packets")).unwrap();
        assert!(
            !on_disk.windows(40).any(|w| w == [4; 40]),
            "plain packets on disk"
        );
        // A crash mid-write leaves half a record behind.
        let mut f = OpenOptions::new()
            .append(true)
            .open(dir.path().join("s1.packets"))
            .unwrap();
        f.write_all(&[200, 0, 9, 9]).unwrap();
        let reopened = Outbox::open(dir.path(), key()).unwrap();
        assert_eq!(reopened.pending().unwrap().len(), 1);
        assert_eq!(
            reopened.packets("s1").unwrap(),
            vec![vec![1, 2, 3], vec![4; 40]]
        );
        reopened.remove("s1").unwrap();
        assert!(reopened.pending().unwrap().is_empty());
        reopened.remove("s1").unwrap();
    }

    #[test]
    fn pending_is_in_talk_order_and_skips_corrupt_entries() {
        let dir = tempfile::tempdir().unwrap();
        let outbox = Outbox::open(dir.path(), key()).unwrap();
        outbox.begin(&meta("late", 20)).unwrap();
        outbox.begin(&meta("early", 10)).unwrap();
        std::fs::write(dir.path().join("junk.json"), b"{not json").unwrap();
        let order: Vec<_> = outbox
            .pending()
            .unwrap()
            .into_iter()
            .map(|m| m.session_id)
            .collect();
        assert_eq!(order, vec!["early", "late"]);
    }

    #[test]
    fn transaction_ids_are_stable_per_talk() {
        assert_eq!(transaction_id("abc"), transaction_id("abc"));
        assert_ne!(transaction_id("abc"), transaction_id("abd"));
    }

    #[test]
    fn recording_of_silence_has_duration_and_a_flat_waveform() {
        let mut enc = codec::OpusEncoder::new().unwrap();
        let packets: Vec<Vec<u8>> = (0..50).map(|_| enc.encode(&[0i16; 960]).unwrap()).collect();
        let rec = make_recording("s", &packets).unwrap();
        assert_eq!(rec.duration_ms, 1000);
        assert!(rec.waveform.iter().all(|&v| v < 50), "{:?}", rec.waveform);
        let info = walkie_audio::ogg_opus::read_ogg_opus(&rec.ogg).unwrap();
        assert_eq!(info.packets.len(), 50);
    }
}
