//! The strict Ogg Opus reader: a test tool (feature `test-utils`, and this
//! crate's unit tests), not part of a normal build. Owns [`read_ogg_opus`],
//! which checks every page's capture pattern, version, CRC, serial and
//! sequence number, the beginning and end-of-stream flags (the end-of-stream
//! page must end a packet, so the stream has a final granule), packet
//! continuation and the Opus headers, and what it reports
//! ([`OggOpusInfo`], [`OggPageInfo`]).

use super::{
    crc32, OggOpusError, Result, CAPTURE_PATTERN, FLAG_BOS, FLAG_CONTINUED, FLAG_EOS, NO_GRANULE,
    OPUS_HEAD_MAGIC, OPUS_TAGS_MAGIC, PAGE_HEADER_BYTES,
};

/// One page as [`read_ogg_opus`] saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OggPageInfo {
    /// Byte offset of the page in the stream.
    pub offset: usize,
    /// Page sequence number.
    pub sequence: u32,
    /// Header flags (0x01 continued, 0x02 beginning, 0x04 end of stream).
    pub flags: u8,
    /// Granule position (`u64::MAX` when no packet ends on the page).
    pub granule: u64,
    /// Packets that end on this page.
    pub packets_completed: usize,
}

/// What [`read_ogg_opus`] found in a stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OggOpusInfo {
    /// Stream serial number.
    pub serial: u32,
    /// OpusHead version byte.
    pub version: u8,
    /// Output channel count.
    pub channels: u8,
    /// Samples to drop at the start of the decoded output.
    pub pre_skip: u16,
    /// Sample rate of the original input (informational).
    pub input_sample_rate: u32,
    /// Output gain, Q7.8 dB.
    pub output_gain: i16,
    /// Channel mapping family.
    pub mapping_family: u8,
    /// OpusTags vendor string (lossy UTF-8).
    pub vendor: String,
    /// OpusTags user comments (lossy UTF-8).
    pub comments: Vec<String>,
    /// Audio packets in order.
    pub packets: Vec<Vec<u8>>,
    /// Granule position of the last page.
    pub final_granule: u64,
    /// Every page, in order.
    pub pages: Vec<OggPageInfo>,
}

impl OggOpusInfo {
    /// Playable length in 48 kHz samples: final granule minus pre-skip.
    pub fn duration_samples(&self) -> u64 {
        self.final_granule.saturating_sub(u64::from(self.pre_skip))
    }
}

/// Reads a whole single-stream Ogg Opus file strictly: every page's capture
/// pattern, version, CRC, serial and sequence number; beginning and end of
/// stream flags; packet continuation; OpusHead alone on the first page and
/// OpusTags ending its own page; zero granules on header pages.
pub fn read_ogg_opus(bytes: &[u8]) -> Result<OggOpusInfo> {
    let mut pages = Vec::new();
    let mut packets: Vec<Vec<u8>> = Vec::new();
    let mut partial: Option<Vec<u8>> = None;
    let mut serial = 0u32;
    let mut offset = 0usize;
    let mut seen_eos = false;
    while offset < bytes.len() {
        let malformed = |reason| OggOpusError::Malformed { offset, reason };
        if seen_eos {
            return Err(malformed("data after the end-of-stream page"));
        }
        let header = bytes
            .get(offset..offset + PAGE_HEADER_BYTES)
            .ok_or(OggOpusError::Truncated { offset })?;
        if &header[..4] != CAPTURE_PATTERN {
            return Err(OggOpusError::BadCapturePattern { offset });
        }
        if header[4] != 0 {
            return Err(malformed("unknown stream structure version"));
        }
        let flags = header[5];
        let granule = u64::from_le_bytes(le_array(&header[6..14]));
        let page_serial = u32::from_le_bytes(le_array(&header[14..18]));
        let sequence = u32::from_le_bytes(le_array(&header[18..22]));
        let stored_crc = u32::from_le_bytes(le_array(&header[22..26]));
        let segment_count = usize::from(header[26]);
        let lacing_end = offset + PAGE_HEADER_BYTES + segment_count;
        let lacing = bytes
            .get(offset + PAGE_HEADER_BYTES..lacing_end)
            .ok_or(OggOpusError::Truncated { offset })?;
        let body_len: usize = lacing.iter().map(|&v| usize::from(v)).sum();
        let page_end = lacing_end + body_len;
        let page = bytes
            .get(offset..page_end)
            .ok_or(OggOpusError::Truncated { offset })?;
        let mut zeroed = page.to_vec();
        zeroed[22..26].fill(0);
        let computed = crc32(&zeroed);
        if computed != stored_crc {
            return Err(OggOpusError::BadCrc {
                offset,
                sequence,
                stored: stored_crc,
                computed,
            });
        }

        if flags & !(FLAG_CONTINUED | FLAG_BOS | FLAG_EOS) != 0 {
            return Err(malformed("unknown page flags"));
        }
        let first = pages.is_empty();
        if first != (flags & FLAG_BOS != 0) {
            return Err(malformed(
                "beginning-of-stream flag must be on the first page only",
            ));
        }
        if first {
            serial = page_serial;
        } else if page_serial != serial {
            return Err(malformed("more than one logical stream"));
        }
        if sequence as usize != pages.len() {
            return Err(malformed("page sequence number out of order (lost page?)"));
        }
        if (flags & FLAG_CONTINUED != 0) != partial.is_some() {
            return Err(malformed(
                "continuation flag does not match the previous page",
            ));
        }

        let mut body = &page[PAGE_HEADER_BYTES + segment_count..];
        let mut completed = 0;
        for &len in lacing {
            let (data, rest) = body.split_at(usize::from(len));
            body = rest;
            partial.get_or_insert_with(Vec::new).extend_from_slice(data);
            if len < 255 {
                if let Some(packet) = partial.take() {
                    packets.push(packet);
                }
                completed += 1;
            }
        }
        if completed == 0 && granule != NO_GRANULE {
            return Err(malformed("granule set on a page where no packet ends"));
        }
        seen_eos = flags & FLAG_EOS != 0;
        if seen_eos && completed == 0 {
            return Err(malformed(
                "end-of-stream page ends no packet, so the stream has no final granule",
            ));
        }
        pages.push(OggPageInfo {
            offset,
            sequence,
            flags,
            granule,
            packets_completed: completed,
        });
        offset = page_end;
    }
    if !seen_eos {
        return Err(OggOpusError::Malformed {
            offset,
            reason: "no end-of-stream page",
        });
    }
    if partial.is_some() {
        return Err(OggOpusError::Truncated { offset });
    }
    check_header_pages(&pages)?;

    let mut packets = packets.into_iter();
    let head = packets.next().ok_or(OggOpusError::BadOpusHead("missing"))?;
    let tags = packets.next().ok_or(OggOpusError::BadOpusTags("missing"))?;
    let (version, channels, pre_skip, input_sample_rate, output_gain, mapping_family) =
        parse_head(&head)?;
    let (vendor, comments) = parse_tags(&tags)?;
    let final_granule = pages.last().map_or(NO_GRANULE, |p| p.granule);
    Ok(OggOpusInfo {
        serial,
        version,
        channels,
        pre_skip,
        input_sample_rate,
        output_gain,
        mapping_family,
        vendor,
        comments,
        packets: packets.collect(),
        final_granule,
        pages,
    })
}

/// OpusHead alone on page 0; OpusTags ends a page of its own; header pages
/// have granule 0 (or none, for a page OpusTags only passes through).
fn check_header_pages(pages: &[OggPageInfo]) -> Result<()> {
    let first = pages.first().ok_or(OggOpusError::BadOpusHead("missing"))?;
    if first.packets_completed != 1 || first.granule != 0 {
        return Err(OggOpusError::BadOpusHead(
            "must be the only packet on the first page, with granule 0",
        ));
    }
    let mut tags_end = None;
    for (i, page) in pages.iter().enumerate().skip(1) {
        if page.packets_completed > 0 {
            tags_end = Some(i);
            if page.packets_completed != 1 || page.granule != 0 {
                return Err(OggOpusError::BadOpusTags(
                    "must end its own page, with granule 0",
                ));
            }
            break;
        }
    }
    let tags_end = tags_end.ok_or(OggOpusError::BadOpusTags("missing"))?;
    if pages
        .get(tags_end + 1)
        .is_some_and(|p| p.flags & FLAG_CONTINUED != 0)
    {
        return Err(OggOpusError::BadOpusTags("audio must start on a new page"));
    }
    Ok(())
}

type Head = (u8, u8, u16, u32, i16, u8);

fn parse_head(head: &[u8]) -> Result<Head> {
    if head.len() < 19 || &head[..8] != OPUS_HEAD_MAGIC {
        return Err(OggOpusError::BadOpusHead("no OpusHead magic or too short"));
    }
    let version = head[8];
    if version >> 4 != 0 {
        return Err(OggOpusError::BadOpusHead("unsupported major version"));
    }
    let channels = head[9];
    if channels == 0 {
        return Err(OggOpusError::BadOpusHead("zero channels"));
    }
    let pre_skip = u16::from_le_bytes(le_array(&head[10..12]));
    let input_sample_rate = u32::from_le_bytes(le_array(&head[12..16]));
    let output_gain = i16::from_le_bytes(le_array(&head[16..18]));
    let mapping_family = head[18];
    if mapping_family == 0 {
        if channels > 2 {
            return Err(OggOpusError::BadOpusHead(
                "mapping family 0 allows 1 or 2 channels",
            ));
        }
    } else if head.len() < 21 + usize::from(channels) {
        return Err(OggOpusError::BadOpusHead("channel mapping table truncated"));
    }
    Ok((
        version,
        channels,
        pre_skip,
        input_sample_rate,
        output_gain,
        mapping_family,
    ))
}

fn parse_tags(tags: &[u8]) -> Result<(String, Vec<String>)> {
    let bad = || OggOpusError::BadOpusTags("truncated");
    if tags.get(..8) != Some(OPUS_TAGS_MAGIC.as_slice()) {
        return Err(OggOpusError::BadOpusTags("no OpusTags magic"));
    }
    let mut pos = 8;
    let take_string = |pos: &mut usize| -> Result<String> {
        let len_bytes = tags.get(*pos..*pos + 4).ok_or_else(bad)?;
        let len = u32::from_le_bytes(le_array(len_bytes)) as usize;
        let start = *pos + 4;
        let end = start.checked_add(len).ok_or_else(bad)?;
        let s = tags.get(start..end).ok_or_else(bad)?;
        *pos = end;
        Ok(String::from_utf8_lossy(s).into_owned())
    };
    let vendor = take_string(&mut pos)?;
    let count_bytes = tags.get(pos..pos + 4).ok_or_else(bad)?;
    let count = u32::from_le_bytes(le_array(count_bytes));
    pos += 4;
    // Each comment takes at least 4 bytes, which bounds the allocation.
    let mut comments = Vec::with_capacity((count as usize).min(tags.len() / 4));
    for _ in 0..count {
        comments.push(take_string(&mut pos)?);
    }
    Ok((vendor, comments))
}

/// The first N bytes as an array (callers pass exactly N; shorter input
/// would give zeros, never a panic).
fn le_array<const N: usize>(bytes: &[u8]) -> [u8; N] {
    let mut out = [0u8; N];
    if let Some(src) = bytes.get(..N) {
        out.copy_from_slice(src);
    }
    out
}
