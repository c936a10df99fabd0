//! The Opus codec as Walkie uses it: 48 kHz mono, 20 ms frames (960
//! samples), VoIP application, in-band FEC on. Owns [`OpusEncoder`] and
//! [`OpusDecoder`], thin wrappers over libopus (the `opus` crate, bundled
//! libopus 1.6.1) that take and give whole frames and turn every libopus
//! failure into a typed [`CodecError`] instead of a panic.
//!
//! DTX (discontinuous transmission) is on, and every packet it gives is
//! sent: once Opus's voice activity detector has heard ~0.4 s of no speech
//! (digital silence or a microphone's noise floor), it encodes a frame as a
//! 1-byte packet (with a full refresh every 0.4 s), which decoders play as
//! comfort noise. Sending them keeps the talk's frame timeline whole (seq =
//! ts / 20 ms, so a pause is never taken for loss) and costs next to
//! nothing; what it buys is a pause the receiver can recognise: the jitter
//! buffer gives delay back only in quiet frames (`jitter::QUIET_PACKET_BYTES`),
//! and without DTX a noise floor at -60 dBFS encodes to 45-55 bytes a frame,
//! as large as speech.

use thiserror::Error;

/// Walkie's only sample rate, in Hz.
pub const SAMPLE_RATE: u32 = 48_000;
/// Length of one frame in milliseconds (the protocol's one constant).
pub use walkie_protocol::FRAME_MS;
/// Samples in one 20 ms frame at 48 kHz, mono.
pub const FRAME_SAMPLES: usize = (SAMPLE_RATE as u64 * FRAME_MS / 1000) as usize;
/// Default encoder bitrate in bit/s.
pub const DEFAULT_BITRATE: u32 = 24_000;
/// Default expected packet loss the encoder plans FEC for, in percent.
pub const DEFAULT_PACKET_LOSS_PERCENT: u8 = 10;
/// Largest packet [`OpusDecoder`] accepts. libopus never produces a 20 ms
/// packet above 1275 bytes of payload; 4000 is the buffer libopus itself
/// recommends, leaving room for code-3 padding.
pub const MAX_PACKET_BYTES: usize = 4000;

/// Lowest and highest bitrate libopus accepts, in bit/s.
const BITRATE_RANGE: std::ops::RangeInclusive<u32> = 6_000..=510_000;
/// Output buffer for one encoded frame; 1275 bytes is the Opus maximum.
const ENCODE_BUFFER_BYTES: usize = 1_500;

/// Failures of the codec wrappers.
#[derive(Debug, Error)]
pub enum CodecError {
    /// The PCM handed to the encoder is not exactly one frame.
    #[error("a frame must hold exactly {expected} samples, got {got}")]
    WrongFrameLength { expected: usize, got: usize },
    /// The bitrate is outside what libopus accepts.
    #[error("bitrate {0} bit/s is outside 6000..=510000")]
    InvalidBitrate(u32),
    /// The expected packet loss is above 100 %.
    #[error("packet loss {0}% is above 100%")]
    InvalidPacketLoss(u8),
    /// An empty packet was given to a decode call; use
    /// [`OpusDecoder::decode_lost`] for a missing packet.
    #[error("empty packet (use decode_lost for a missing packet)")]
    EmptyPacket,
    /// The packet is longer than [`MAX_PACKET_BYTES`].
    #[error("packet of {len} bytes is longer than the {max}-byte limit")]
    PacketTooLong { len: usize, max: usize },
    /// The packet parses but does not hold exactly one 20 ms frame.
    #[error("packet holds {samples} samples, expected {expected} (20 ms)")]
    WrongPacketDuration { samples: usize, expected: usize },
    /// libopus reported a lookahead that cannot be an Ogg Opus pre-skip.
    #[error("libopus lookahead {0} does not fit a pre-skip")]
    BadLookahead(i32),
    /// libopus reported an error (malformed packet, bad argument, ...).
    #[error("libopus: {0}")]
    Opus(#[from] opus::Error),
}

/// Result alias of this module.
pub type Result<T> = std::result::Result<T, CodecError>;

/// Encoder settings. `Default` gives 24 kbit/s and 10 % expected loss.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EncoderConfig {
    /// Target bitrate in bit/s (6000..=510000).
    pub bitrate: u32,
    /// Packet loss the encoder expects, in percent (0..=100); it sizes the
    /// in-band FEC by it.
    pub packet_loss_percent: u8,
}

impl Default for EncoderConfig {
    fn default() -> Self {
        Self {
            bitrate: DEFAULT_BITRATE,
            packet_loss_percent: DEFAULT_PACKET_LOSS_PERCENT,
        }
    }
}

/// Opus encoder for 48 kHz mono 20 ms frames, VoIP application, FEC on.
pub struct OpusEncoder {
    inner: opus::Encoder,
    config: EncoderConfig,
    pre_skip: u16,
}

impl std::fmt::Debug for OpusEncoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpusEncoder")
            .field("config", &self.config)
            .field("pre_skip", &self.pre_skip)
            .finish_non_exhaustive()
    }
}

impl OpusEncoder {
    /// An encoder with [`EncoderConfig::default`].
    pub fn new() -> Result<Self> {
        Self::with_config(EncoderConfig::default())
    }

    /// An encoder with the given bitrate and expected loss.
    pub fn with_config(config: EncoderConfig) -> Result<Self> {
        let mut inner =
            opus::Encoder::new(SAMPLE_RATE, opus::Channels::Mono, opus::Application::Voip)?;
        inner.set_inband_fec(true)?;
        inner.set_dtx(true)?;
        let mut encoder = Self {
            inner,
            config,
            pre_skip: 0,
        };
        encoder.set_bitrate(config.bitrate)?;
        encoder.set_packet_loss_percent(config.packet_loss_percent)?;
        let lookahead = encoder.inner.get_lookahead()?;
        // libopus reports a few hundred samples; anything else is a bug there.
        encoder.pre_skip =
            u16::try_from(lookahead).map_err(|_| CodecError::BadLookahead(lookahead))?;
        Ok(encoder)
    }

    /// Changes the target bitrate (bit/s, 6000..=510000).
    pub fn set_bitrate(&mut self, bitrate: u32) -> Result<()> {
        if !BITRATE_RANGE.contains(&bitrate) {
            return Err(CodecError::InvalidBitrate(bitrate));
        }
        // In range, so it fits an i32.
        let bits = i32::try_from(bitrate).map_err(|_| CodecError::InvalidBitrate(bitrate))?;
        self.inner.set_bitrate(opus::Bitrate::Bits(bits))?;
        self.config.bitrate = bitrate;
        Ok(())
    }

    /// Changes the packet loss (percent, 0..=100) the FEC is sized for.
    pub fn set_packet_loss_percent(&mut self, percent: u8) -> Result<()> {
        if percent > 100 {
            return Err(CodecError::InvalidPacketLoss(percent));
        }
        self.inner.set_packet_loss_perc(i32::from(percent))?;
        self.config.packet_loss_percent = percent;
        Ok(())
    }

    /// The current settings.
    pub fn config(&self) -> EncoderConfig {
        self.config
    }

    /// The encoder's lookahead in 48 kHz samples (312 for libopus VoIP): the
    /// Ogg Opus pre-skip, and the delay of decoded audio behind its input.
    pub fn pre_skip(&self) -> u16 {
        self.pre_skip
    }

    /// Encodes exactly one frame ([`FRAME_SAMPLES`] samples) into one packet.
    pub fn encode(&mut self, pcm: &[i16]) -> Result<Vec<u8>> {
        if pcm.len() != FRAME_SAMPLES {
            return Err(CodecError::WrongFrameLength {
                expected: FRAME_SAMPLES,
                got: pcm.len(),
            });
        }
        Ok(self.inner.encode_vec(pcm, ENCODE_BUFFER_BYTES)?)
    }
}

/// Opus decoder for 48 kHz mono, one 20 ms frame per packet.
pub struct OpusDecoder {
    inner: opus::Decoder,
}

impl std::fmt::Debug for OpusDecoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpusDecoder").finish_non_exhaustive()
    }
}

impl OpusDecoder {
    /// A fresh decoder.
    pub fn new() -> Result<Self> {
        Ok(Self {
            inner: opus::Decoder::new(SAMPLE_RATE, opus::Channels::Mono)?,
        })
    }

    /// Decodes one packet into [`FRAME_SAMPLES`] samples. Empty, oversized,
    /// malformed packets and packets of another duration than 20 ms are
    /// errors; the decoder state is left usable.
    pub fn decode(&mut self, packet: &[u8]) -> Result<Vec<i16>> {
        check_packet(packet)?;
        self.decode_into_frame(packet, false)
    }

    /// Packet loss concealment: a plausible continuation for one missing
    /// 20 ms frame.
    pub fn decode_lost(&mut self) -> Result<Vec<i16>> {
        self.decode_into_frame(&[], false)
    }

    /// Recovers the frame *before* `next_packet` from the in-band FEC data
    /// that `next_packet` carries (libopus falls back to concealment when it
    /// carries none). Afterwards decode `next_packet` itself with
    /// [`Self::decode`] as usual.
    pub fn decode_fec(&mut self, next_packet: &[u8]) -> Result<Vec<i16>> {
        check_packet(next_packet)?;
        self.decode_into_frame(next_packet, true)
    }

    /// Forgets all decoder state, as for a new stream.
    pub fn reset(&mut self) -> Result<()> {
        Ok(self.inner.reset_state()?)
    }

    fn decode_into_frame(&mut self, packet: &[u8], fec: bool) -> Result<Vec<i16>> {
        let mut out = vec![0i16; FRAME_SAMPLES];
        let n = self.inner.decode(packet, &mut out, fec)?;
        if n != FRAME_SAMPLES {
            return Err(CodecError::WrongPacketDuration {
                samples: n,
                expected: FRAME_SAMPLES,
            });
        }
        Ok(out)
    }
}

/// Rejects what libopus should not see: empty or oversized packets, and
/// packets whose table of contents does not say 20 ms.
fn check_packet(packet: &[u8]) -> Result<()> {
    if packet.is_empty() {
        return Err(CodecError::EmptyPacket);
    }
    if packet.len() > MAX_PACKET_BYTES {
        return Err(CodecError::PacketTooLong {
            len: packet.len(),
            max: MAX_PACKET_BYTES,
        });
    }
    let samples = opus::packet::get_nb_samples(packet, SAMPLE_RATE)?;
    if samples != FRAME_SAMPLES {
        return Err(CodecError::WrongPacketDuration {
            samples,
            expected: FRAME_SAMPLES,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::similarity::normalised_cross_correlation;
    use crate::test_signal::{speech_like, Rng};
    use crate::wav::frames;

    fn encode_all(pcm: &[i16]) -> Vec<Vec<u8>> {
        let mut enc = OpusEncoder::new().unwrap();
        frames(pcm).map(|f| enc.encode(&f).unwrap()).collect()
    }

    /// Error energy of `out` against the source it decodes, over one frame:
    /// decoded frame `k` holds source samples from `k * 960 - pre_skip`.
    fn frame_error(source: &[i16], out: &[i16], k: usize, pre_skip: usize) -> (f64, f64) {
        let start = k * FRAME_SAMPLES - pre_skip;
        let src = &source[start..start + FRAME_SAMPLES];
        let err = src
            .iter()
            .zip(out)
            .map(|(&s, &o)| (f64::from(s) - f64::from(o)).powi(2))
            .sum();
        let energy = src.iter().map(|&s| f64::from(s).powi(2)).sum();
        (err, energy)
    }

    /// White noise at `dbfs` (RMS), seeded.
    fn noise(rng: &mut Rng, n: usize, dbfs: f64) -> Vec<i16> {
        let amp = 32768.0 * 10f64.powf(dbfs / 20.0) * 3f64.sqrt();
        (0..n)
            .map(|_| {
                let u = (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
                ((u * 2.0 - 1.0) * amp) as i16
            })
            .collect()
    }

    #[test]
    fn dtx_makes_a_noise_floors_pause_quiet_and_leaves_speech_alone() {
        use crate::jitter::QUIET_PACKET_BYTES;
        for dbfs in [-70.0, -60.0, -50.0] {
            let mut rng = Rng::new(7);
            // 2 s of speech over the noise floor, then 2 s of the floor.
            let mut pcm = speech_like(2.0);
            let floor = noise(&mut rng, pcm.len(), dbfs);
            for (s, n) in pcm.iter_mut().zip(floor) {
                *s = s.saturating_add(n);
            }
            pcm.extend(noise(&mut rng, 2 * SAMPLE_RATE as usize, dbfs));
            let packets = encode_all(&pcm);
            let (speech, pause) = packets.split_at(100);
            assert!(
                speech.iter().all(|p| p.len() > QUIET_PACKET_BYTES),
                "{dbfs} dBFS: speech packets {:?}",
                speech.iter().map(Vec::len).collect::<Vec<_>>()
            );
            // From 0.5 s into the pause, all but DTX's refreshes are quiet.
            let late = &pause[25..];
            let quiet = late
                .iter()
                .filter(|p| p.len() <= QUIET_PACKET_BYTES)
                .count();
            assert!(
                quiet * 10 >= late.len() * 9,
                "{dbfs} dBFS: {quiet} of {} pause packets quiet: {:?}",
                late.len(),
                late.iter().map(Vec::len).collect::<Vec<_>>()
            );
            // They decode to whole frames of comfort noise, not louder than
            // the floor.
            let mut dec = OpusDecoder::new().unwrap();
            let mut loudest = 0.0f64;
            for p in &packets {
                let out = dec.decode(p).unwrap();
                assert_eq!(out.len(), FRAME_SAMPLES);
                if p.len() <= QUIET_PACKET_BYTES {
                    let rms = (out.iter().map(|&x| f64::from(x).powi(2)).sum::<f64>()
                        / out.len() as f64)
                        .sqrt();
                    loudest = loudest.max(rms);
                }
            }
            let floor = 32768.0 * 10f64.powf(dbfs / 20.0);
            assert!(
                loudest <= floor * 2.0,
                "{dbfs} dBFS: comfort noise RMS {loudest:.1}"
            );
        }
    }

    #[test]
    fn codec_states_can_move_to_audio_threads() {
        fn assert_send<T: Send>() {}
        assert_send::<OpusEncoder>();
        assert_send::<OpusDecoder>();
    }

    #[test]
    fn defaults_and_pre_skip() {
        let enc = OpusEncoder::new().unwrap();
        assert_eq!(enc.config(), EncoderConfig::default());
        assert_eq!(enc.config().bitrate, 24_000);
        assert_eq!(enc.config().packet_loss_percent, 10);
        // libopus VoIP at 48 kHz: 2.5 ms + 4 ms of lookahead.
        assert_eq!(enc.pre_skip(), 312);
        assert_eq!(
            FRAME_SAMPLES as u64,
            u64::from(SAMPLE_RATE) / 1000 * FRAME_MS
        );
    }

    #[test]
    fn invalid_settings_and_frame_lengths_are_typed_errors() {
        let bad = EncoderConfig {
            bitrate: 1_000,
            ..EncoderConfig::default()
        };
        assert!(matches!(
            OpusEncoder::with_config(bad),
            Err(CodecError::InvalidBitrate(1_000))
        ));
        let mut enc = OpusEncoder::new().unwrap();
        assert!(matches!(
            enc.set_packet_loss_percent(101),
            Err(CodecError::InvalidPacketLoss(101))
        ));
        enc.set_bitrate(16_000).unwrap();
        assert_eq!(enc.config().bitrate, 16_000);
        for len in [0, 959, 961, 1920] {
            match enc.encode(&vec![0; len]) {
                Err(CodecError::WrongFrameLength { expected: 960, got }) => assert_eq!(got, len),
                other => panic!("{len}: {other:?}"),
            }
        }
        let frame = [0i16; FRAME_SAMPLES];
        assert!(!enc.encode(&frame).unwrap().is_empty());
    }

    #[test]
    fn round_trip_of_five_seconds_correlates_after_alignment() {
        let source = speech_like(5.0);
        let mut enc = OpusEncoder::new().unwrap();
        let mut dec = OpusDecoder::new().unwrap();
        let mut decoded = Vec::with_capacity(source.len());
        let mut sizes = Vec::new();
        let started = std::time::Instant::now();
        for frame in frames(&source) {
            let packet = enc.encode(&frame).unwrap();
            sizes.push(packet.len());
            decoded.extend(dec.decode(&packet).unwrap());
        }
        let per_frame = started.elapsed() / sizes.len() as u32;
        let (corr, lag) = normalised_cross_correlation(&source, &decoded, 24_000);
        let mean = sizes.iter().sum::<usize>() as f64 / sizes.len() as f64;
        println!(
            "round trip: correlation {corr:.4} at lag {lag}; bytes/frame min {} mean {mean:.1} \
             max {}; encode+decode {per_frame:?} per 20 ms frame",
            sizes.iter().min().unwrap(),
            sizes.iter().max().unwrap(),
        );
        // The decoded audio lags by the lookahead, give or take the few
        // samples of SILK's own phase response (measured: 309).
        assert!((lag - 312).abs() <= 8, "lag {lag}");
        assert!(corr >= 0.9, "correlation {corr}");
        // 24 kbit/s is 60 bytes per 20 ms at most on average; VBR spends less
        // on the pauses.
        assert!((20.0..=70.0).contains(&mean), "{mean}");
        assert!(sizes.iter().all(|&n| n <= 1275));
    }

    #[test]
    fn plc_and_fec_beat_silence_for_a_lost_packet() {
        let source = speech_like(5.0);
        let packets = encode_all(&source);
        let pre_skip = usize::from(OpusEncoder::new().unwrap().pre_skip());
        // Frame 128 covers t = 2.56 s, the loudest point of a syllable.
        let lost = 128;

        let run = |mode: &str| -> Vec<i16> {
            let mut dec = OpusDecoder::new().unwrap();
            let mut frame_k = Vec::new();
            for (i, packet) in packets.iter().enumerate() {
                let out = match (i == lost, mode) {
                    (false, _) | (true, "none") => dec.decode(packet).unwrap(),
                    (true, "plc") => dec.decode_lost().unwrap(),
                    (true, _) => dec.decode_fec(&packets[i + 1]).unwrap(),
                };
                assert_eq!(out.len(), FRAME_SAMPLES);
                if i == lost {
                    frame_k = out;
                }
            }
            frame_k
        };
        let (err_none, energy) = frame_error(&source, &run("none"), lost, pre_skip);
        let (err_plc, _) = frame_error(&source, &run("plc"), lost, pre_skip);
        let (err_fec, _) = frame_error(&source, &run("fec"), lost, pre_skip);
        let db = |e: f64| 10.0 * (energy / e).log10();
        println!(
            "lost frame SNR: no loss {:.1} dB, PLC {:.1} dB, FEC {:.1} dB (zeros: 0 dB)",
            db(err_none),
            db(err_plc),
            db(err_fec)
        );
        assert!(energy > 0.0);
        assert!(err_plc < energy, "PLC {err_plc} vs zeros {energy}");
        assert!(err_fec < energy, "FEC {err_fec} vs zeros {energy}");
    }

    #[test]
    fn malformed_packets_are_errors_or_concealment_never_panics() {
        let mut dec = OpusDecoder::new().unwrap();
        assert!(matches!(dec.decode(&[]), Err(CodecError::EmptyPacket)));
        assert!(matches!(dec.decode_fec(&[]), Err(CodecError::EmptyPacket)));
        assert!(matches!(
            dec.decode(&vec![0x55; 5000]),
            Err(CodecError::PacketTooLong { len: 5000, .. })
        ));
        let mut rng = Rng::new(0x5eed);
        let (mut ok, mut err) = (0, 0);
        for round in 0..3000 {
            let len = match round {
                0 => 2000,
                1 => 1,
                _ => 1 + (rng.next_u64() % 1500) as usize,
            };
            let packet = rng.bytes(len);
            for result in [dec.decode(&packet), dec.decode_fec(&packet)] {
                match result {
                    Ok(pcm) => {
                        assert_eq!(pcm.len(), FRAME_SAMPLES);
                        ok += 1;
                    }
                    Err(_) => err += 1,
                }
            }
        }
        // 2000 random bytes: code-0 frames are at most 1275 bytes.
        let mut big = rng.bytes(2000);
        big[0] &= 0xFC;
        assert!(dec.decode(&big).is_err());
        println!("random packets: {ok} decoded, {err} rejected");
        // The decoder still works on real packets afterwards.
        let source = speech_like(0.2);
        dec.reset().unwrap();
        for packet in encode_all(&source) {
            assert_eq!(dec.decode(&packet).unwrap().len(), FRAME_SAMPLES);
        }
        assert_eq!(dec.decode_lost().unwrap().len(), FRAME_SAMPLES);
    }

    #[test]
    fn packets_of_other_durations_are_rejected() {
        // A 40 ms packet: two 20 ms frames (code 1) from a real encoder.
        let mut enc =
            opus::Encoder::new(48_000, opus::Channels::Mono, opus::Application::Voip).unwrap();
        let packet = enc.encode_vec(&[0i16; 1920], 1500).unwrap();
        let mut dec = OpusDecoder::new().unwrap();
        assert!(matches!(
            dec.decode(&packet),
            Err(CodecError::WrongPacketDuration {
                samples: 1920,
                expected: 960
            })
        ));
    }

    /// Needs `espeak-ng` and `sox` (scripts/setup.sh installs them).
    #[test]
    fn espeak_speech_round_trip_correlates() {
        let dir = std::env::temp_dir().join(format!("walkie-audio-espeak-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let raw = dir.join("raw.wav");
        let speech = dir.join("speech.wav");
        let status = std::process::Command::new("espeak-ng")
            .args(["-v", "en", "-s", "150", "-w"])
            .arg(&raw)
            .arg("Push to talk over Matrix. One, two, three, four, five. Over and out.")
            .status()
            .expect("espeak-ng on PATH");
        assert!(status.success());
        // espeak-ng writes 22050 Hz, which the reader must refuse.
        assert!(matches!(
            crate::wav::read_wav_mono_48k(&raw),
            Err(crate::wav::WavError::UnsupportedSampleRate { rate: 22_050, .. })
        ));
        let status = std::process::Command::new("sox")
            .arg(&raw)
            .args(["-r", "48000", "-c", "1", "-b", "16"])
            .arg(&speech)
            .status()
            .expect("sox on PATH");
        assert!(status.success());
        let source = crate::wav::read_wav_mono_48k(&speech).unwrap();
        let mut dec = OpusDecoder::new().unwrap();
        let decoded: Vec<i16> = encode_all(&source)
            .iter()
            .flat_map(|p| dec.decode(p).unwrap())
            .collect();
        let (corr, lag) = normalised_cross_correlation(&source, &decoded, 24_000);
        println!(
            "espeak-ng speech ({:.2} s): correlation {corr:.4} at lag {lag}",
            source.len() as f64 / 48_000.0
        );
        assert!((lag - 312).abs() <= 8, "lag {lag}");
        assert!(corr >= 0.8, "correlation {corr}");
    }
}
