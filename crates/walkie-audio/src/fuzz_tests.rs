//! Fuzzing of the Ogg Opus reader (issue 13): recordings written by
//! [`OggOpusWriter`] with their bytes flipped, truncated, spliced and
//! overwritten (half of them with every whole page's CRC recomputed, so the
//! mutation reaches the page and packet parsers), and arbitrary bytes, are
//! read or refused with a typed error, never a panic. `WALKIE_FUZZ_CASES` sets the cases (default 5000).

use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

use crate::ogg_opus::{crc32, read_ogg_opus, OggOpusWriter};

fn cases() -> u32 {
    std::env::var("WALKIE_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5000)
}

/// A valid recording: `packets` packets of 1–300 bytes.
fn recording(packets: usize) -> Vec<u8> {
    let mut w = OggOpusWriter::new(Vec::new(), 312).expect("writer");
    for i in 0..packets {
        w.write_packet(&vec![0xFC; 1 + (i * 37) % 300])
            .expect("packet");
    }
    w.finish().expect("finish")
}

/// Recomputes the CRC of every whole page found in `b`, so that a mutation
/// reaches the page and packet parsers instead of failing the CRC check.
fn reseal(b: &mut [u8]) {
    let mut i = 0;
    while i + 27 <= b.len() {
        if &b[i..i + 4] != b"OggS" {
            i += 1;
            continue;
        }
        let segments = usize::from(b[i + 26]);
        let table_end = i + 27 + segments;
        if table_end > b.len() {
            return;
        }
        let body: usize = b[i + 27..table_end].iter().map(|&x| usize::from(x)).sum();
        let end = table_end + body;
        if end > b.len() {
            return;
        }
        b[i + 22..i + 26].fill(0);
        let crc = crc32(&b[i..end]);
        b[i + 22..i + 26].copy_from_slice(&crc.to_le_bytes());
        i = end;
    }
}

#[test]
fn mutated_recordings_are_read_or_refused_never_a_panic() {
    let seeds: Vec<Vec<u8>> = [1, 3, 60, 400].into_iter().map(recording).collect();
    assert!(seeds.iter().all(|s| read_ogg_opus(s).is_ok()));
    let total = cases();
    let mut runner = TestRunner::new(Config {
        cases: total,
        failure_persistence: None,
        ..Config::default()
    });
    let refused = std::cell::Cell::new(0u32);
    runner
        .run(
            &(
                0..seeds.len(),
                any::<bool>(),
                prop::collection::vec((any::<u8>(), any::<u32>(), any::<u8>()), 1..10),
            ),
            |(which, fix_crcs, choices)| {
                let mut b = seeds[which].clone();
                for (op, at, val) in choices {
                    let i = at as usize % b.len().max(1);
                    match op % 6 {
                        0 if !b.is_empty() => b[i] ^= 1 << (val % 8),
                        1 => b.truncate(i),
                        2 => b.insert(i.min(b.len()), val),
                        3 if !b.is_empty() => b[i] = val,
                        4 => {
                            // splice a later part over an earlier one
                            let j = (at as usize / 7) % b.len().max(1);
                            let part: Vec<u8> = b[j..].iter().take(64).copied().collect();
                            b.splice(i..i, part);
                        }
                        _ => b.extend(std::iter::repeat_n(val, at as usize % 300)),
                    }
                }
                if fix_crcs {
                    reseal(&mut b);
                }
                if read_ogg_opus(&b).is_err() {
                    refused.set(refused.get() + 1);
                }
                Ok(())
            },
        )
        .unwrap();
    let refused = refused.get();
    println!("fuzz: {total} mutated recordings, {refused} refused, no panic");
    assert!(refused > 0);
}

proptest! {
    #![proptest_config(Config { cases: cases(), failure_persistence: None, ..Config::default() })]

    #[test]
    fn arbitrary_bytes_are_not_a_recording(b in prop::collection::vec(any::<u8>(), 0..2000)) {
        let _ = read_ogg_opus(&b);
        let mut with_magic = b"OggS".to_vec();
        with_magic.extend_from_slice(&b);
        let _ = read_ogg_opus(&with_magic);
    }
}
