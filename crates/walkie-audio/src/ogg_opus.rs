//! Ogg Opus files (RFC 7845, framing per RFC 3533): the format of Walkie's
//! voice-message recordings. Owns [`OggOpusWriter`], which frames Opus
//! packets into Ogg pages with correct granule positions and end trimming,
//! [`encode_pcm_to_ogg_opus`], which turns PCM into a complete file. Its
//! submodule `reader` has `read_ogg_opus`, a strict reader that checks every
//! page's CRC and the Opus headers: a test tool, public only with the
//! `test-utils` feature (and in this crate's unit tests).
//!
//! Granule positions follow RFC 7845 §4: an audio page carries the number
//! of 48 kHz samples decoded from all packets completed so far, pre-skip
//! samples included; the last page carries `pre_skip + input samples`, so a
//! player drops the encoder's lookahead at the start and the padding of the
//! last frame at the end and plays exactly the input. For that the encoder
//! must have been fed at least `pre_skip + input` samples, i.e.
//! [`packets_needed`] frames (trailing frames of silence as needed).

use std::io::Write;

use thiserror::Error;

use crate::codec::{CodecError, EncoderConfig, OpusEncoder, FRAME_SAMPLES, SAMPLE_RATE};

#[cfg(any(test, feature = "test-utils"))]
mod reader;
#[cfg(any(test, feature = "test-utils"))]
pub use reader::{read_ogg_opus, OggOpusInfo, OggPageInfo};

/// Magic of the identification header packet.
pub const OPUS_HEAD_MAGIC: &[u8; 8] = b"OpusHead";
/// Magic of the comment header packet.
pub const OPUS_TAGS_MAGIC: &[u8; 8] = b"OpusTags";
/// Vendor string written into OpusTags.
pub const VENDOR: &str = "walkie";
/// The writer ends a page once it holds this much audio (1 s at 48 kHz).
pub const MAX_PAGE_SAMPLES: u64 = SAMPLE_RATE as u64;

const CAPTURE_PATTERN: &[u8; 4] = b"OggS";
const FLAG_CONTINUED: u8 = 0x01;
const FLAG_BOS: u8 = 0x02;
const FLAG_EOS: u8 = 0x04;
const PAGE_HEADER_BYTES: usize = 27;
const MAX_SEGMENTS: usize = 255;
/// Granule of a page on which no packet ends.
const NO_GRANULE: u64 = u64::MAX;

/// Failures writing or reading Ogg Opus. The `Reading:` variants come from
/// the reader (feature `test-utils`); they exist in every build so that the
/// enum is the same whichever features are on.
#[derive(Debug, Error)]
pub enum OggOpusError {
    /// The underlying writer failed; the stream is unusable afterwards.
    #[error("writing Ogg Opus: {0}")]
    Io(#[from] std::io::Error),
    /// Encoding PCM failed.
    #[error(transparent)]
    Codec(#[from] CodecError),
    /// A packet handed to the writer has no valid Opus table of contents.
    #[error("not an Opus packet: {0}")]
    InvalidPacket(#[source] opus::Error),
    /// The stream was finished without any audio packet.
    #[error("no audio packets were written")]
    NoAudio,
    /// The requested end trim is impossible: `pre_skip + input_samples`
    /// must fall within the last packet (see [`packets_needed`]).
    #[error(
        "cannot end the stream at {input_samples} input samples: with {pre_skip} pre-skip \
         that must lie within the last packet, samples {last_packet_start}..={decoded_samples}"
    )]
    TrimOutOfRange {
        input_samples: u64,
        pre_skip: u16,
        last_packet_start: u64,
        decoded_samples: u64,
    },
    /// Reading: the data ends inside a page or packet.
    #[error("truncated Ogg data at byte {offset}")]
    Truncated { offset: usize },
    /// Reading: no `OggS` capture pattern where a page should start.
    #[error("no Ogg page at byte {offset}")]
    BadCapturePattern { offset: usize },
    /// Reading: a page's CRC does not match its contents.
    #[error(
        "page {sequence} at byte {offset}: CRC stored {stored:#010x}, computed {computed:#010x}"
    )]
    BadCrc {
        offset: usize,
        sequence: u32,
        stored: u32,
        computed: u32,
    },
    /// Reading: the page structure breaks the Ogg rules this reader checks.
    #[error("malformed Ogg stream at byte {offset}: {reason}")]
    Malformed { offset: usize, reason: &'static str },
    /// Reading: the first packet is not a valid OpusHead.
    #[error("bad OpusHead: {0}")]
    BadOpusHead(&'static str),
    /// Reading: the second packet is not a valid OpusTags.
    #[error("bad OpusTags: {0}")]
    BadOpusTags(&'static str),
}

/// Result alias of this module.
pub type Result<T> = std::result::Result<T, OggOpusError>;

/// Frames to encode for `input_samples` of PCM so that the packets decode to
/// at least `pre_skip + input_samples` samples: the input, zero-padded, plus
/// enough trailing silence to push the encoder's lookahead out.
pub fn packets_needed(input_samples: u64, pre_skip: u16) -> u64 {
    (input_samples + u64::from(pre_skip)).div_ceil(FRAME_SAMPLES as u64)
}

/// Writes one Ogg Opus stream (mono, 48 kHz) into `W`.
///
/// The headers are written by [`Self::new`]. Each audio packet is kept back
/// until the next one arrives (so the last one can get the trimmed end
/// granule). A page holds up to [`MAX_PAGE_SAMPLES`] of audio and is only
/// written once the next packet needs room, so the page carrying the last
/// packet is always still being built at [`Self::finish`] and gets the
/// end-of-stream flag: there is never an empty end page. Packets longer
/// than a page may hold are continued across pages. After an I/O error the
/// stream is incomplete; drop the writer.
#[derive(Debug)]
pub struct OggOpusWriter<W: Write> {
    inner: W,
    serial: u32,
    sequence: u32,
    pre_skip: u16,
    /// Samples decoded from all packets handed over, the held one included.
    decoded_samples: u64,
    /// The last packet handed over, with its sample count.
    held: Option<(Vec<u8>, u64)>,
    /// Lacing values and body of the page being built.
    lacing: Vec<u8>,
    body: Vec<u8>,
    /// Granule of the last packet completed on the page being built.
    page_granule: Option<u64>,
    page_samples: u64,
    /// The page being built starts with the rest of a packet.
    page_continued: bool,
}

impl<W: Write> OggOpusWriter<W> {
    /// Starts a stream with a random serial number; writes the OpusHead and
    /// OpusTags pages. `pre_skip` is [`OpusEncoder::pre_skip`].
    pub fn new(inner: W, pre_skip: u16) -> Result<Self> {
        Self::with_serial(inner, pre_skip, random_serial())
    }

    /// Like [`Self::new`] with a given stream serial number.
    pub fn with_serial(inner: W, pre_skip: u16, serial: u32) -> Result<Self> {
        let mut writer = Self {
            inner,
            serial,
            sequence: 0,
            pre_skip,
            decoded_samples: 0,
            held: None,
            lacing: Vec::with_capacity(MAX_SEGMENTS),
            body: Vec::new(),
            page_granule: None,
            page_samples: 0,
            page_continued: false,
        };
        writer.append_packet(&opus_head(pre_skip), 0, 0)?;
        writer.flush_page(false)?;
        writer.append_packet(&opus_tags(), 0, 0)?;
        writer.flush_page(false)?;
        Ok(writer)
    }

    /// The stream serial number.
    pub fn serial(&self) -> u32 {
        self.serial
    }

    /// The pre-skip written into OpusHead.
    pub fn pre_skip(&self) -> u16 {
        self.pre_skip
    }

    /// Samples (48 kHz, pre-skip included) the packets so far decode to.
    pub fn decoded_samples(&self) -> u64 {
        self.decoded_samples
    }

    /// Adds one Opus packet; its duration is read from its table of
    /// contents, so any valid Opus packet duration works.
    pub fn write_packet(&mut self, packet: &[u8]) -> Result<()> {
        let samples = opus::packet::get_nb_samples(packet, SAMPLE_RATE)
            .map_err(OggOpusError::InvalidPacket)? as u64;
        if let Some((held, held_samples)) = self.held.take() {
            let granule = self.decoded_samples;
            self.append_audio(&held, granule, held_samples)?;
        }
        self.decoded_samples += samples;
        self.held = Some((packet.to_vec(), samples));
        Ok(())
    }

    /// Ends the stream without end trimming (final granule = all decoded
    /// samples) and returns the inner writer, flushed.
    pub fn finish(self) -> Result<W> {
        let end = self.decoded_samples;
        self.finish_at(end)
    }

    /// Ends the stream so that it plays exactly `input_samples` samples:
    /// final granule = `pre_skip + input_samples`. The packets must decode
    /// to at least that many samples and the end must fall within the last
    /// packet: encode exactly [`packets_needed`] frames.
    pub fn finish_with_length(self, input_samples: u64) -> Result<W> {
        let end = input_samples.saturating_add(u64::from(self.pre_skip));
        let last_packet_start = self.decoded_samples - self.held.as_ref().map_or(0, |h| h.1);
        if end > self.decoded_samples || end < last_packet_start {
            return Err(OggOpusError::TrimOutOfRange {
                input_samples,
                pre_skip: self.pre_skip,
                last_packet_start,
                decoded_samples: self.decoded_samples,
            });
        }
        self.finish_at(end)
    }

    /// Puts the held packet with the final granule on the page being built
    /// and writes that page as the end-of-stream page.
    fn finish_at(mut self, end_granule: u64) -> Result<W> {
        let (held, held_samples) = self.held.take().ok_or(OggOpusError::NoAudio)?;
        self.append_audio(&held, end_granule, held_samples)?;
        self.flush_page(true)?;
        self.inner.flush()?;
        Ok(self.inner)
    }

    /// Puts an audio packet on the page being built, first writing that
    /// page if it already holds [`MAX_PAGE_SAMPLES`]: a full page waits
    /// until it is known that more audio follows, so the last one can still
    /// be flagged end-of-stream.
    fn append_audio(&mut self, packet: &[u8], granule: u64, samples: u64) -> Result<()> {
        if self.page_samples >= MAX_PAGE_SAMPLES {
            self.flush_page(false)?;
        }
        self.append_packet(packet, granule, samples)
    }

    /// Puts a packet on the current page, ending pages as they fill up; the
    /// packet's last segment always lands on the page still being built.
    fn append_packet(&mut self, packet: &[u8], granule: u64, samples: u64) -> Result<()> {
        let segments = packet.len() / 255 + 1;
        if !self.lacing.is_empty() && self.lacing.len() + segments > MAX_SEGMENTS {
            self.flush_page(false)?;
        }
        let mut rest = packet;
        loop {
            if self.lacing.len() == MAX_SEGMENTS {
                // The packet goes on; the next page continues it.
                self.flush_page(false)?;
                self.page_continued = true;
            }
            let take = rest.len().min(255);
            // At most 255, so it fits a lacing value.
            self.lacing.push(take as u8);
            self.body.extend_from_slice(&rest[..take]);
            rest = &rest[take..];
            if take < 255 {
                break;
            }
        }
        self.page_granule = Some(granule);
        self.page_samples += samples;
        Ok(())
    }

    /// Writes the page being built, if it holds anything. The end-of-stream
    /// page always holds the last packet's end (see [`Self::finish_at`]).
    fn flush_page(&mut self, eos: bool) -> Result<()> {
        debug_assert!(
            !(eos && self.lacing.is_empty()),
            "end-of-stream page without data"
        );
        if self.lacing.is_empty() && !eos {
            return Ok(());
        }
        let mut flags = 0;
        if self.page_continued {
            flags |= FLAG_CONTINUED;
        }
        if self.sequence == 0 {
            flags |= FLAG_BOS;
        }
        if eos {
            flags |= FLAG_EOS;
        }
        let granule = self.page_granule.unwrap_or(NO_GRANULE);
        let page = build_page(
            flags,
            granule,
            self.serial,
            self.sequence,
            &self.lacing,
            &self.body,
        );
        self.inner.write_all(&page)?;
        self.sequence = self.sequence.wrapping_add(1);
        self.lacing.clear();
        self.body.clear();
        self.page_granule = None;
        self.page_samples = 0;
        self.page_continued = false;
        Ok(())
    }
}

/// Encodes mono 48 kHz PCM into a complete Ogg Opus stream written to
/// `inner`, trimmed to exactly `pcm.len()` samples, and returns `inner`.
pub fn encode_pcm_to_ogg_opus<W: Write>(inner: W, pcm: &[i16], config: EncoderConfig) -> Result<W> {
    let mut encoder = OpusEncoder::with_config(config)?;
    let mut writer = OggOpusWriter::new(inner, encoder.pre_skip())?;
    let input = pcm.len() as u64;
    let needed = packets_needed(input, encoder.pre_skip());
    let silence = [0i16; FRAME_SAMPLES];
    let mut frames = crate::wav::frames(pcm);
    for _ in 0..needed {
        let frame = frames.next().unwrap_or(silence);
        let packet = encoder.encode(&frame)?;
        writer.write_packet(&packet)?;
    }
    writer.finish_with_length(input)
}

fn opus_head(pre_skip: u16) -> Vec<u8> {
    let mut head = Vec::with_capacity(19);
    head.extend_from_slice(OPUS_HEAD_MAGIC);
    head.push(1); // version
    head.push(1); // channels
    head.extend_from_slice(&pre_skip.to_le_bytes());
    head.extend_from_slice(&SAMPLE_RATE.to_le_bytes()); // input sample rate
    head.extend_from_slice(&0i16.to_le_bytes()); // output gain
    head.push(0); // channel mapping family
    head
}

fn opus_tags() -> Vec<u8> {
    let mut tags = Vec::with_capacity(8 + 4 + VENDOR.len() + 4);
    tags.extend_from_slice(OPUS_TAGS_MAGIC);
    tags.extend_from_slice(&(VENDOR.len() as u32).to_le_bytes());
    tags.extend_from_slice(VENDOR.as_bytes());
    tags.extend_from_slice(&0u32.to_le_bytes()); // no user comments
    tags
}

fn build_page(
    flags: u8,
    granule: u64,
    serial: u32,
    sequence: u32,
    lacing: &[u8],
    body: &[u8],
) -> Vec<u8> {
    let mut page = Vec::with_capacity(PAGE_HEADER_BYTES + lacing.len() + body.len());
    page.extend_from_slice(CAPTURE_PATTERN);
    page.push(0); // stream structure version
    page.push(flags);
    page.extend_from_slice(&granule.to_le_bytes());
    page.extend_from_slice(&serial.to_le_bytes());
    page.extend_from_slice(&sequence.to_le_bytes());
    page.extend_from_slice(&[0; 4]); // CRC, filled in below
    page.push(lacing.len() as u8); // callers keep it ≤ 255
    page.extend_from_slice(lacing);
    page.extend_from_slice(body);
    let crc = crc32(&page);
    page[22..26].copy_from_slice(&crc.to_le_bytes());
    page
}

fn random_serial() -> u32 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    hasher.write_u128(nanos);
    hasher.finish() as u32
}

/// Ogg's CRC-32: polynomial 0x04C11DB7, initial value 0, no reflection, no
/// final XOR, computed over the page with its CRC field zeroed.
pub fn crc32(data: &[u8]) -> u32 {
    data.iter().fold(0u32, |crc, &byte| {
        (crc << 8) ^ CRC_TABLE[usize::from((crc >> 24) as u8 ^ byte)]
    })
}

const CRC_TABLE: [u32; 256] = {
    let mut table = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut r = (i as u32) << 24;
        let mut bit = 0;
        while bit < 8 {
            r = if r & 0x8000_0000 != 0 {
                (r << 1) ^ 0x04C1_1DB7
            } else {
                r << 1
            };
            bit += 1;
        }
        table[i] = r;
        i += 1;
    }
    table
};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::OpusDecoder;
    use crate::similarity::normalised_cross_correlation;
    use crate::test_signal::speech_like;

    const PRE_SKIP: u64 = 312;

    fn recording(samples: usize) -> (Vec<i16>, Vec<u8>) {
        let pcm = speech_like(samples as f64 / 48_000.0);
        assert_eq!(pcm.len(), samples);
        let bytes = encode_pcm_to_ogg_opus(Vec::new(), &pcm, EncoderConfig::default()).unwrap();
        (pcm, bytes)
    }

    fn temp_dir() -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("walkie-audio-ogg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn crc_matches_the_ogg_check_value() {
        // CRC-32/CKSUM without its final inversion: !0x765E7680.
        assert_eq!(crc32(b"123456789"), 0x89A1_897F);
        assert_eq!(crc32(b""), 0);
    }

    #[test]
    fn five_seconds_round_trip_through_our_reader() {
        for samples in [240_000, 240_000 + 700, 240_000 + 100] {
            let (_, bytes) = recording(samples);
            let info = read_ogg_opus(&bytes).unwrap();
            assert_eq!(info.version, 1);
            assert_eq!(info.channels, 1);
            assert_eq!(u64::from(info.pre_skip), PRE_SKIP);
            assert_eq!(info.input_sample_rate, 48_000);
            assert_eq!(info.output_gain, 0);
            assert_eq!(info.mapping_family, 0);
            assert_eq!(info.vendor, "walkie");
            assert!(info.comments.is_empty());
            let expected_packets = packets_needed(samples as u64, 312);
            assert_eq!(info.packets.len() as u64, expected_packets);
            assert_eq!(info.final_granule - PRE_SKIP, samples as u64);
            assert_eq!(info.duration_samples(), samples as u64);

            let pages = &info.pages;
            assert_eq!(pages[0].flags, FLAG_BOS);
            assert_eq!((pages[0].granule, pages[0].packets_completed), (0, 1));
            assert_eq!((pages[1].flags, pages[1].granule), (0, 0));
            assert_eq!(pages[1].packets_completed, 1);
            let last = pages.len() - 1;
            assert_eq!(pages[last].flags, FLAG_EOS);
            let mut packets_so_far = 0u64;
            for page in &pages[2..] {
                // At most 1 s of audio per page.
                assert!(page.packets_completed >= 1 && page.packets_completed <= 50);
                packets_so_far += page.packets_completed as u64;
                if page.sequence as usize != last {
                    assert_eq!(page.flags, 0);
                    assert_eq!(page.granule, packets_so_far * 960);
                }
            }
            assert_eq!(packets_so_far, expected_packets);
            assert!(pages[last].granule <= packets_so_far * 960);
            assert!(pages[last].granule > (packets_so_far - 1) * 960);
            println!(
                "{samples} samples: {} bytes, {} pages, {} packets",
                bytes.len(),
                pages.len(),
                info.packets.len()
            );
        }
    }

    #[test]
    fn decoded_packets_minus_pre_skip_line_up_with_the_input() {
        let (pcm, bytes) = recording(240_000 + 123);
        let info = read_ogg_opus(&bytes).unwrap();
        let mut dec = OpusDecoder::new().unwrap();
        let mut out: Vec<i16> = Vec::new();
        for p in &info.packets {
            out.extend(dec.decode(p).unwrap());
        }
        let played = &out[usize::from(info.pre_skip)..info.final_granule as usize];
        assert_eq!(played.len(), pcm.len());
        let (corr, lag) = normalised_cross_correlation(&pcm, played, 50);
        println!("file playback vs input: correlation {corr:.4} at lag {lag}");
        assert!(lag.abs() <= 8, "lag {lag}");
        assert!(corr >= 0.9, "{corr}");
    }

    #[test]
    fn independent_ogg_reader_agrees() {
        let (_, bytes) = recording(240_000 + 700);
        let ours = read_ogg_opus(&bytes).unwrap();
        let mut reader = ogg::PacketReader::new(std::io::Cursor::new(&bytes));
        let mut theirs = Vec::new();
        let mut last = None;
        while let Some(p) = reader.read_packet().unwrap() {
            assert_eq!(p.stream_serial(), ours.serial);
            last = Some((p.absgp_page(), p.last_in_stream()));
            theirs.push(p.data);
        }
        assert_eq!(&theirs[..1], &[opus_head(312)]);
        assert_eq!(&theirs[1], &opus_tags());
        assert_eq!(&theirs[2..], &ours.packets[..]);
        assert_eq!(last, Some((ours.final_granule, true)));
    }

    #[test]
    fn packets_larger_than_a_page_continue_across_pages() {
        // TOC 0x08: SILK narrowband 20 ms, one frame; the body is filler.
        let mut big = vec![0x08u8];
        big.resize(70_000, 0xAB);
        let small = [0x08u8, 1, 2, 3];
        let mut w = OggOpusWriter::with_serial(Vec::new(), 312, 42).unwrap();
        for p in [&small[..], &big, &small, &big, &small] {
            w.write_packet(p).unwrap();
        }
        assert_eq!(w.decoded_samples(), 5 * 960);
        let bytes = w.finish().unwrap();
        let info = read_ogg_opus(&bytes).unwrap();
        assert_eq!(info.serial, 42);
        assert_eq!(
            info.packets,
            vec![
                small.to_vec(),
                big.clone(),
                small.to_vec(),
                big,
                small.to_vec()
            ]
        );
        assert!(info.pages.iter().any(|p| p.flags & FLAG_CONTINUED != 0));
        assert!(info
            .pages
            .iter()
            .any(|p| p.packets_completed == 0 && p.granule == u64::MAX));
        assert_eq!(info.final_granule, 5 * 960);

        let mut reader = ogg::PacketReader::new(std::io::Cursor::new(&bytes));
        let mut n = 0;
        while let Some(p) = reader.read_packet().unwrap() {
            if n >= 2 {
                assert_eq!(p.data, info.packets[n - 2]);
            }
            n += 1;
        }
        assert_eq!(n, 7);
    }

    #[test]
    fn corruption_and_truncation_are_typed_errors() {
        let (_, bytes) = recording(96_000);
        let info = read_ogg_opus(&bytes).unwrap();
        let audio_page = info.pages[3].offset;

        let mut flipped = bytes.clone();
        flipped[audio_page + 40] ^= 0x01;
        assert!(matches!(
            read_ogg_opus(&flipped),
            Err(OggOpusError::BadCrc { sequence: 3, .. })
        ));

        for cut in [10, audio_page + 5, bytes.len() - 1] {
            let err = read_ogg_opus(&bytes[..cut]).unwrap_err();
            assert!(
                matches!(err, OggOpusError::Truncated { .. }),
                "{cut}: {err}"
            );
        }
        assert!(matches!(
            read_ogg_opus(b"RIFF0000WAVEfmt 0000000000000000000000"),
            Err(OggOpusError::BadCapturePattern { offset: 0 })
        ));
        // Dropping a whole page breaks the sequence.
        let mut gap = bytes[..info.pages[3].offset].to_vec();
        gap.extend_from_slice(&bytes[info.pages[4].offset..]);
        assert!(matches!(
            read_ogg_opus(&gap),
            Err(OggOpusError::Malformed { .. })
        ));
        // No end-of-stream page.
        let without_last = &bytes[..info.pages.last().unwrap().offset];
        assert!(matches!(
            read_ogg_opus(without_last),
            Err(OggOpusError::Malformed { .. })
        ));
        assert!(matches!(
            read_ogg_opus(&[]),
            Err(OggOpusError::Malformed { .. })
        ));
        // An empty end-of-stream page after a full last audio page leaves
        // the stream without a final granule (the writer once did this).
        let last = info.pages.last().unwrap();
        let mut empty_end = bytes[..last.offset].to_vec();
        let body_start = last.offset + PAGE_HEADER_BYTES + usize::from(bytes[last.offset + 26]);
        let lacing = bytes[last.offset + PAGE_HEADER_BYTES..body_start].to_vec();
        empty_end.extend(build_page(
            0,
            last.granule,
            info.serial,
            last.sequence,
            &lacing,
            &bytes[body_start..],
        ));
        empty_end.extend(build_page(
            FLAG_EOS,
            NO_GRANULE,
            info.serial,
            last.sequence + 1,
            &[],
            &[],
        ));
        assert!(matches!(
            read_ogg_opus(&empty_end),
            Err(OggOpusError::Malformed { reason, .. }) if reason.contains("ends no packet")
        ));

        // A well-framed stream whose first packet is not OpusHead.
        let mut fake = build_page(FLAG_BOS, 0, 1, 0, &[8], b"OpusHeaX");
        let tags = opus_tags();
        fake.extend(build_page(0, 0, 1, 1, &[tags.len() as u8], &tags));
        fake.extend(build_page(FLAG_EOS, 960, 1, 2, &[1], &[0x08]));
        assert!(matches!(
            read_ogg_opus(&fake),
            Err(OggOpusError::BadOpusHead(_))
        ));
        let mut tags = opus_tags();
        tags.truncate(14);
        let mut fake = build_page(FLAG_BOS, 0, 1, 0, &[19], &opus_head(312));
        fake.extend(build_page(0, 0, 1, 1, &[14], &tags));
        fake.extend(build_page(FLAG_EOS, 960, 1, 2, &[1], &[0x08]));
        assert!(matches!(
            read_ogg_opus(&fake),
            Err(OggOpusError::BadOpusTags(_))
        ));
    }

    #[test]
    fn mutated_files_with_fixed_crcs_never_panic_the_reader() {
        let (_, bytes) = recording(96_000);
        let info = read_ogg_opus(&bytes).unwrap();
        let mut rng = crate::test_signal::Rng::new(0x0cc);
        let mut rejected = 0;
        for _ in 0..3000 {
            let mut m = bytes.clone();
            let page = &info.pages[(rng.next_u64() % info.pages.len() as u64) as usize];
            let end = info
                .pages
                .get(page.sequence as usize + 1)
                .map_or(bytes.len(), |p| p.offset);
            let at = page.offset + 4 + (rng.next_u64() % (end - page.offset - 4) as u64) as usize;
            m[at] ^= 1 << (rng.next_u64() % 8);
            // Re-seal the page so the parser gets past the CRC check.
            if !(22..26).contains(&(at - page.offset)) {
                m[page.offset + 22..page.offset + 26].fill(0);
                let crc = crc32(&m[page.offset..end.min(m.len())]);
                m[page.offset + 22..page.offset + 26].copy_from_slice(&crc.to_le_bytes());
            }
            if read_ogg_opus(&m).is_err() {
                rejected += 1;
            }
            let cut = (rng.next_u64() % m.len() as u64) as usize;
            assert!(read_ogg_opus(&m[..cut]).is_err());
        }
        println!("mutated files rejected: {rejected}/3000");
    }

    #[test]
    fn writer_refuses_impossible_endings() {
        let w = OggOpusWriter::new(Vec::new(), 312).unwrap();
        assert!(matches!(w.finish(), Err(OggOpusError::NoAudio)));
        let mut w = OggOpusWriter::new(Vec::new(), 312).unwrap();
        assert!(matches!(
            w.write_packet(&[]),
            Err(OggOpusError::InvalidPacket(_))
        ));
        w.write_packet(&[0x08, 0]).unwrap();
        w.write_packet(&[0x08, 0]).unwrap();
        // 1920 decoded samples: 312 + 1608 is the most, 312 + 648 the least.
        assert!(matches!(
            w.finish_with_length(1609),
            Err(OggOpusError::TrimOutOfRange {
                last_packet_start: 960,
                ..
            })
        ));
        let mut w = OggOpusWriter::new(Vec::new(), 312).unwrap();
        w.write_packet(&[0x08, 0]).unwrap();
        w.write_packet(&[0x08, 0]).unwrap();
        assert!(w.finish_with_length(647).is_err());
        let mut w = OggOpusWriter::new(Vec::new(), 312).unwrap();
        w.write_packet(&[0x08, 0]).unwrap();
        w.write_packet(&[0x08, 0]).unwrap();
        let info = read_ogg_opus(&w.finish_with_length(648).unwrap()).unwrap();
        assert_eq!(info.duration_samples(), 648);
        // Two writers pick different random serials (almost surely).
        let a = OggOpusWriter::new(Vec::new(), 0).unwrap().serial();
        let b = OggOpusWriter::new(Vec::new(), 0).unwrap().serial();
        assert_ne!(a, b);
    }

    /// Recordings of exactly `packets` Opus packets, ending at a whole packet
    /// or trimmed inside the last one (`trim` samples cut off its end).
    fn recording_of_packets(packets: u64, trim: u64) -> (u64, Vec<u8>) {
        let input = packets * FRAME_SAMPLES as u64 - PRE_SKIP - trim;
        assert_eq!(packets_needed(input, PRE_SKIP as u16), packets);
        let (_, bytes) = recording(input as usize);
        (input, bytes)
    }

    /// Reads `bytes` with the `ogg` crate (not our reader) and checks the
    /// end of stream: every packet there, the end-of-stream flag on the
    /// page carrying the last one and nothing after it, its granule
    /// `pre_skip + input` (RFC 7845 §4), granules never -1 on a page where
    /// a packet ends and never going down.
    fn check_with_ogg_crate(bytes: &[u8], audio_packets: u64, input: u64) {
        let mut reader = ogg::PacketReader::new(std::io::Cursor::new(bytes));
        let mut count = 0u64;
        let mut last_granule = 0u64;
        let mut end = None;
        while let Some(p) = reader.read_packet().unwrap() {
            assert!(end.is_none(), "packet {count} after the end-of-stream one");
            let granule = p.absgp_page();
            assert_ne!(
                granule,
                u64::MAX,
                "packet {count} ends on a page with granule -1"
            );
            assert!(
                granule >= last_granule,
                "granule went down at packet {count}: {last_granule} -> {granule}"
            );
            last_granule = granule;
            if p.last_in_stream() {
                end = Some((count, granule, reader.get_mut().position()));
            }
            count += 1;
        }
        assert_eq!(count, 2 + audio_packets, "header + audio packets");
        let (end_packet, end_granule, end_offset) =
            end.expect("no packet carries the end-of-stream flag");
        assert_eq!(
            end_packet,
            count - 1,
            "end-of-stream flag not on the last packet"
        );
        assert_eq!(
            end_offset,
            bytes.len() as u64,
            "a page follows the end-of-stream one"
        );
        assert_eq!(end_granule, PRE_SKIP + input, "final granule");
    }

    /// `opusinfo` (Debian/apt `opus-tools`) must accept the file without a
    /// warning or error. Fails, rather than skips, when it is missing.
    fn check_with_opusinfo(bytes: &[u8], name: &str) {
        let file = temp_dir().join(name);
        std::fs::write(&file, bytes).unwrap();
        let output = match std::process::Command::new("opusinfo").arg(&file).output() {
            Ok(output) => output,
            Err(e) => panic!(
                "opusinfo not runnable ({e}); install opus-tools (apt-get install opus-tools)"
            ),
        };
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(output.status.success(), "opusinfo {name} failed:\n{text}");
        assert!(
            !text.contains("WARNING") && !text.contains("ERROR"),
            "opusinfo {name}:\n{text}"
        );
    }

    /// The end-of-stream flag goes on the last page that carries audio,
    /// also when that page is exactly full (packet count a multiple of the
    /// 50 packets a page holds): no empty end page with granule -1.
    #[test]
    fn end_of_stream_is_on_the_last_audio_page_for_any_packet_count() {
        for packets in [1, 49, 50, 51, 100, 600] {
            for trim in [0, 500] {
                let (input, bytes) = recording_of_packets(packets, trim);
                check_with_ogg_crate(&bytes, packets, input);
                check_with_opusinfo(&bytes, &format!("packets-{packets}-trim-{trim}.opus"));
                let info = read_ogg_opus(&bytes).unwrap();
                assert_eq!(info.packets.len() as u64, packets);
                assert_eq!(info.duration_samples(), input);
                let last = info.pages.last().unwrap();
                assert_eq!(last.flags & FLAG_EOS, FLAG_EOS);
                assert!(
                    last.packets_completed >= 1,
                    "{packets} packets: empty end page"
                );
                assert!(info.pages.iter().all(|p| p.packets_completed <= 50));
            }
        }
    }

    /// Decodes a recording with `opusdec` (Debian/apt `opus-tools`). Fails,
    /// rather than skips, when `opusdec` is missing: install opus-tools.
    #[test]
    fn opusdec_decodes_recording_to_input_length() {
        let samples = 240_000 + 700;
        let (pcm, bytes) = recording(samples);
        let dir = temp_dir();
        let file = dir.join("recording.opus");
        let wav = dir.join("opusdec.wav");
        std::fs::write(&file, &bytes).unwrap();
        let output = match std::process::Command::new("opusdec")
            .args(["--quiet", "--rate", "48000"])
            .arg(&file)
            .arg(&wav)
            .output()
        {
            Ok(output) => output,
            Err(e) => panic!(
                "opusdec not runnable ({e}); install opus-tools (apt-get install opus-tools)"
            ),
        };
        assert!(
            output.status.success(),
            "opusdec: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let decoded = crate::wav::read_wav_mono_48k(&wav).unwrap();
        let diff = decoded.len().abs_diff(samples);
        println!(
            "opusdec: {} samples decoded for {samples} input samples",
            decoded.len()
        );
        // Within 20 ms; opusdec honours pre-skip and end trimming exactly.
        assert!(diff <= 960, "decoded {} vs {samples}", decoded.len());
        let (corr, lag) = normalised_cross_correlation(&pcm, &decoded, 960);
        println!("opusdec output vs input: correlation {corr:.4} at lag {lag}");
        assert!(corr >= 0.9 && lag.abs() <= 8, "{corr} at {lag}");
    }
}
