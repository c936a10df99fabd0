//! Fuzzing of every parser of content from other clients (issue 13): the
//! audio chunk (`ValidatedChunk`), the group marker, the consent content,
//! the talk-key announcement and the sealed batch (`TalkKeyRing::open`),
//! the talk reference and the identifiers. A stable harness (no nightly
//! toolchain here for cargo-fuzz): proptest drives a mutator that starts
//! from valid contents and deletes, replaces, retypes, enlarges and nests
//! their fields, plus arbitrary strings for the identifiers. Each input must
//! be accepted or refused with a typed error; a panic fails the test with
//! the input. `WALKIE_FUZZ_CASES` sets the cases per target (default 20 000;
//! e.g. 200000 for a longer run on demand).

use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use serde_json::{json, Map, Value};

use crate::{
    sealed::{KeyAnnouncement, TalkKeyRing, TalkKeys},
    ChunkHeader, ConsentContent, DeviceId, RoomId, SessionId, TalkReference, UserId,
    ValidatedChunk, WalkieGroup,
};

fn cases() -> u32 {
    std::env::var("WALKIE_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000)
}

/// splitmix64, for the mutator's choices.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// A hostile replacement value.
fn junk(rng: &mut Rng, depth: u32) -> Value {
    match rng.below(if depth > 2 { 12 } else { 15 }) {
        0 => Value::Null,
        1 => json!(true),
        2 => json!(-1),
        3 => json!(u64::MAX),
        4 => json!(i64::MIN),
        5 => json!(1e308),
        6 => json!(0.5),
        7 => json!(""),
        8 => Value::from("A".repeat(rng.below(70_000) as usize)),
        9 => Value::from("\u{0}\u{feff}🦀\\\"/"),
        10 => Value::from(format!("{}", rng.next())),
        11 => json!("AQID"),
        12 => Value::Array((0..rng.below(8)).map(|_| junk(rng, depth + 1)).collect()),
        13 => {
            let mut m = Map::new();
            for _ in 0..rng.below(6) {
                m.insert(format!("k{}", rng.below(4)), junk(rng, depth + 1));
            }
            Value::Object(m)
        }
        _ => Value::Array(vec![Value::from("AQID"); rng.below(40) as usize]),
    }
}

/// Applies `steps` random mutations to `v` (at random depths).
fn mutate(v: &mut Value, rng: &mut Rng, steps: u32) {
    for _ in 0..steps {
        mutate_once(v, rng, 0);
    }
}

fn mutate_once(v: &mut Value, rng: &mut Rng, depth: u32) {
    let descend = depth < 6 && rng.below(3) != 0;
    match v {
        Value::Object(m) if !m.is_empty() => {
            let keys: Vec<String> = m.keys().cloned().collect();
            let key = &keys[rng.below(keys.len() as u64) as usize];
            match rng.below(6) {
                0 => {
                    m.remove(key);
                }
                1 => {
                    m.insert(format!("{key}_x"), junk(rng, depth));
                }
                _ if descend => {
                    if let Some(inner) = m.get_mut(key) {
                        mutate_once(inner, rng, depth + 1);
                    }
                }
                _ => {
                    m.insert(key.clone(), junk(rng, depth));
                }
            }
        }
        Value::Array(a) if !a.is_empty() => {
            let i = rng.below(a.len() as u64) as usize;
            match rng.below(5) {
                0 => {
                    a.remove(i);
                }
                1 => a.push(junk(rng, depth)),
                2 => {
                    let copy = a[i].clone();
                    a.extend(std::iter::repeat_n(copy, rng.below(20) as usize));
                }
                _ if descend => mutate_once(&mut a[i], rng, depth + 1),
                _ => a[i] = junk(rng, depth),
            }
        }
        Value::Number(_) => {
            *v = match rng.below(5) {
                0 => json!(0),
                1 => json!(u64::MAX),
                2 => json!(-7),
                3 => json!(crate::MAX_SEQ + 1),
                _ => junk(rng, depth),
            }
        }
        Value::String(s) => {
            *v = match rng.below(5) {
                0 => Value::from(format!("{s}{s}")),
                1 => Value::from(s.chars().rev().collect::<String>()),
                2 => Value::from(s.get(..s.len() / 2).unwrap_or_default().to_owned()),
                3 => Value::from(s.replace(['A', 'a'], "=")),
                _ => junk(rng, depth),
            }
        }
        _ => *v = junk(rng, depth),
    }
}

fn alice() -> (UserId, DeviceId) {
    (
        UserId::parse("@alice:example.org").unwrap(),
        DeviceId::parse("ALICEDEV").unwrap(),
    )
}

fn room() -> RoomId {
    RoomId::parse("!room:example.org").unwrap()
}

fn header(seq: u32) -> ChunkHeader {
    ChunkHeader {
        session_id: SessionId::parse("abcdefghijklmnopqrstuv").unwrap(),
        seq,
        start_ts: 1_700_000_000_000,
        ts: 1_700_000_000_060,
        end: false,
    }
}

/// Valid contents of every kind, as seeds for the mutator.
fn seeds(keys: &TalkKeys) -> Vec<Value> {
    let frames = vec![vec![1u8, 2, 3], vec![4u8; 80]];
    let chunk = header(3).to_content(&room(), &frames).unwrap();
    let mut claim = header(0).to_content(&room(), &frames).unwrap();
    claim[crate::sealed::KEYS_FIELD] = keys.announcement().to_json();
    let sealed = keys.seal(&room(), &header(4), &frames, [7; 24]).unwrap();
    vec![
        chunk,
        claim,
        sealed,
        WalkieGroup::default().to_content(),
        json!({"devices": {"ALICEDEV": {"receive": true, "talk": true, "granted_ts": 5,
            "expires_ts": 9, "signature": "c2lnbmF0dXJl"}}}),
        json!({"msgtype": "m.audio", "body": "Voice message", "org.matrix.msc4002.talk":
            {"session_id": "abcdefghijklmnopqrstuv"}}),
    ]
}

/// Feeds one input to every parser of received content.
fn parse_everything(v: &Value, ring: &TalkKeyRing) {
    let (u, d) = alice();
    let _ = ValidatedChunk::parse(v, &u, &d);
    let _ = ValidatedChunk::parse_received(v, &u, &d, true);
    let _ = ValidatedChunk::parse_str(&v.to_string(), &u, &d);
    let _ = WalkieGroup::parse(v);
    let _ = ConsentContent::parse(v);
    let _ = TalkReference::from_message_content(v);
    let _ = KeyAnnouncement::from_content(v);
    let _ = ring.open(v, u.as_str());
}

#[test]
fn mutated_contents_are_accepted_or_refused_never_a_panic() {
    let keys = TalkKeys::new([1; 32], [2; 32]);
    // A ring that knows the seed session, so sealed inputs reach the
    // signature check and the decryption, not only the session lookup.
    let mut ring = TalkKeyRing::default();
    let (u, d) = alice();
    let mut claim = header(0).to_content(&room(), &[]).unwrap();
    claim[crate::sealed::KEYS_FIELD] = keys.announcement().to_json();
    let chunk = ValidatedChunk::parse(&claim, &u, &d).unwrap();
    let announced = KeyAnnouncement::from_content(&claim).unwrap().unwrap();
    ring.learn(&chunk, announced, 1_700_000_000_100).unwrap();
    let seeds = seeds(&keys);
    let total = cases();
    let mut runner = TestRunner::new(Config {
        cases: total,
        failure_persistence: None,
        ..Config::default()
    });
    runner
        .run(
            &(0..seeds.len(), any::<u64>(), 1u32..12),
            |(which, seed, steps)| {
                let mut v = seeds[which].clone();
                mutate(&mut v, &mut Rng(seed), steps);
                parse_everything(&v, &ring);
                Ok(())
            },
        )
        .unwrap();
    println!("fuzz: {total} mutated contents through 8 parsers, no panic");
}

proptest! {
    #![proptest_config(Config { cases: cases(), failure_persistence: None, ..Config::default() })]

    #[test]
    fn arbitrary_identifiers_are_accepted_or_refused(s in ".{0,300}") {
        let _ = UserId::parse(&s);
        let _ = DeviceId::parse(&s);
        let _ = RoomId::parse(&s);
        let _ = SessionId::parse(&s);
        let _ = crate::consent_owner(&s, &alice().0);
    }
}
