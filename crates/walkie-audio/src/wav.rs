//! WAV files in and out of Walkie's one PCM format, 48 kHz mono 16-bit
//! (test material, a "play this file as my voice" input, debug dumps), and
//! [`frames`], which cuts PCM into the 20 ms frames the encoder takes.

use std::path::{Path, PathBuf};

use thiserror::Error;

use crate::codec::{FRAME_SAMPLES, SAMPLE_RATE};

/// Failures reading or writing WAV files.
#[derive(Debug, Error)]
pub enum WavError {
    /// The file is not at 48 kHz; Walkie does not resample files.
    #[error(
        "{path}: sample rate {rate} Hz is not supported, Walkie needs 48000 Hz; \
         convert it with `sox in.wav -r 48000 -c 1 out.wav`"
    )]
    UnsupportedSampleRate { path: PathBuf, rate: u32 },
    /// The samples are not 16-bit integer PCM.
    #[error(
        "{path}: {bits}-bit {format} samples are not supported, Walkie needs 16-bit PCM; \
         convert it with `sox in.wav -b 16 -r 48000 -c 1 out.wav`"
    )]
    UnsupportedSampleFormat {
        path: PathBuf,
        bits: u16,
        format: &'static str,
    },
    /// The file declares no channels.
    #[error("{path}: the file has no channels")]
    NoChannels { path: PathBuf },
    /// The file cannot be read or written, or is not a valid WAV file.
    #[error("{path}: {source}")]
    Hound {
        path: PathBuf,
        #[source]
        source: hound::Error,
    },
}

/// Result alias of this module.
pub type Result<T> = std::result::Result<T, WavError>;

/// Reads a 16-bit PCM WAV file at 48 kHz. Mono is returned as it is; files
/// with more channels (stereo) are downmixed by averaging the channels.
/// Other sample rates and sample formats are typed errors that say how to
/// convert the file.
pub fn read_wav_mono_48k(path: impl AsRef<Path>) -> Result<Vec<i16>> {
    let path = path.as_ref();
    let hound_err = |source| WavError::Hound {
        path: path.to_path_buf(),
        source,
    };
    let mut reader = hound::WavReader::open(path).map_err(hound_err)?;
    let spec = reader.spec();
    if spec.sample_format != hound::SampleFormat::Int || spec.bits_per_sample != 16 {
        return Err(WavError::UnsupportedSampleFormat {
            path: path.to_path_buf(),
            bits: spec.bits_per_sample,
            format: match spec.sample_format {
                hound::SampleFormat::Int => "integer",
                hound::SampleFormat::Float => "float",
            },
        });
    }
    if spec.sample_rate != SAMPLE_RATE {
        return Err(WavError::UnsupportedSampleRate {
            path: path.to_path_buf(),
            rate: spec.sample_rate,
        });
    }
    let channels = usize::from(spec.channels);
    if channels == 0 {
        return Err(WavError::NoChannels {
            path: path.to_path_buf(),
        });
    }
    let interleaved = reader
        .samples::<i16>()
        .collect::<std::result::Result<Vec<i16>, _>>()
        .map_err(hound_err)?;
    if channels == 1 {
        return Ok(interleaved);
    }
    // A truncated last sample group (fewer values than channels) is dropped.
    Ok(interleaved
        .chunks_exact(channels)
        .map(|group| {
            let sum: i32 = group.iter().map(|&s| i32::from(s)).sum();
            // The mean of i16 values is an i16 value.
            (sum / channels as i32) as i16
        })
        .collect())
}

/// Writes `samples` as a 16-bit PCM mono WAV file at 48 kHz, replacing any
/// file at `path`.
pub fn write_wav_mono_48k(path: impl AsRef<Path>, samples: &[i16]) -> Result<()> {
    let path = path.as_ref();
    let hound_err = |source| WavError::Hound {
        path: path.to_path_buf(),
        source,
    };
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: SAMPLE_RATE,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut writer = hound::WavWriter::create(path, spec).map_err(hound_err)?;
    for &s in samples {
        writer.write_sample(s).map_err(hound_err)?;
    }
    writer.finalize().map_err(hound_err)
}

/// Splits PCM into 20 ms frames of [`FRAME_SAMPLES`], zero-padding the last
/// one. Empty input gives no frames.
pub fn frames(samples: &[i16]) -> impl ExactSizeIterator<Item = [i16; FRAME_SAMPLES]> + '_ {
    samples.chunks(FRAME_SAMPLES).map(|chunk| {
        let mut frame = [0i16; FRAME_SAMPLES];
        frame[..chunk.len()].copy_from_slice(chunk);
        frame
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_signal::speech_like;

    fn temp_path(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("walkie-audio-wav-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir.join(name)
    }

    fn write_spec(path: &Path, spec: hound::WavSpec, samples: &[i16]) {
        let mut w = hound::WavWriter::create(path, spec).unwrap();
        for &s in samples {
            w.write_sample(s).unwrap();
        }
        w.finalize().unwrap();
    }

    #[test]
    fn round_trip_mono() {
        let path = temp_path("mono.wav");
        let pcm = speech_like(1.013);
        write_wav_mono_48k(&path, &pcm).unwrap();
        assert_eq!(read_wav_mono_48k(&path).unwrap(), pcm);
        write_wav_mono_48k(&path, &[]).unwrap();
        assert!(read_wav_mono_48k(&path).unwrap().is_empty());
    }

    #[test]
    fn stereo_is_downmixed_by_averaging() {
        let path = temp_path("stereo.wav");
        let spec = hound::WavSpec {
            channels: 2,
            sample_rate: 48_000,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        write_spec(
            &path,
            spec,
            &[100, 300, -32768, -32768, 32767, 32767, 10, -11],
        );
        assert_eq!(
            read_wav_mono_48k(&path).unwrap(),
            vec![200, -32768, 32767, 0]
        );
    }

    #[test]
    fn wrong_rate_is_a_typed_error_that_says_how_to_convert() {
        let path = temp_path("rate.wav");
        let spec = hound::WavSpec {
            channels: 1,
            sample_rate: 22_050,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        write_spec(&path, spec, &[0; 100]);
        let err = read_wav_mono_48k(&path).unwrap_err();
        assert!(matches!(
            err,
            WavError::UnsupportedSampleRate { rate: 22_050, .. }
        ));
        let msg = err.to_string();
        assert!(msg.contains("22050 Hz"), "{msg}");
        assert!(msg.contains("sox in.wav -r 48000 -c 1 out.wav"), "{msg}");
        assert!(msg.contains("rate.wav"), "{msg}");
    }

    #[test]
    fn other_sample_formats_and_garbage_are_typed_errors() {
        let path = temp_path("float.wav");
        let spec = hound::WavSpec {
            channels: 1,
            sample_rate: 48_000,
            bits_per_sample: 32,
            sample_format: hound::SampleFormat::Float,
        };
        let mut w = hound::WavWriter::create(&path, spec).unwrap();
        w.write_sample(0.5f32).unwrap();
        w.finalize().unwrap();
        let err = read_wav_mono_48k(&path).unwrap_err();
        assert!(
            matches!(err, WavError::UnsupportedSampleFormat { bits: 32, .. }),
            "{err}"
        );

        let junk = temp_path("junk.wav");
        std::fs::write(&junk, b"RIFF\x10\0\0\0WAVEnot really").unwrap();
        assert!(matches!(
            read_wav_mono_48k(&junk),
            Err(WavError::Hound { .. })
        ));
        let missing = temp_path("does-not-exist.wav");
        assert!(matches!(
            read_wav_mono_48k(&missing),
            Err(WavError::Hound { .. })
        ));
    }

    #[test]
    fn frames_split_and_zero_pad() {
        assert_eq!(frames(&[]).count(), 0);
        let pcm: Vec<i16> = (0..2000).map(|i| (i % 1000) as i16 + 1).collect();
        let fr: Vec<_> = frames(&pcm).collect();
        assert_eq!(fr.len(), 3);
        assert_eq!(&fr[0][..], &pcm[..960]);
        assert_eq!(&fr[1][..], &pcm[960..1920]);
        assert_eq!(&fr[2][..80], &pcm[1920..]);
        assert!(fr[2][80..].iter().all(|&s| s == 0));
        assert_eq!(frames(&pcm[..960]).len(), 1);
    }
}
