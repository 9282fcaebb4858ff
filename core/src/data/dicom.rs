//! DICOM images through dicom-rs (`dicom-object`, `dicom-pixeldata`): native, RLE, JPEG and
//! JPEG 2000 (pure-Rust openjp2) transfer syntaxes; the modality LUT (rescale slope /
//! intercept), a VOI window (given, else the file's first Window Center / Width, else min-max),
//! MONOCHROME1 inverted, 8 bits per sample out, first frame of multi-frame objects.
//! Not decoded (dicom-rs 0.8 limits, reported as an error naming the file): JPEG-LS (needs the
//! CharLS C library), 32-bit samples, 1-bit segmentation frames. Modality / VOI LUT sequences
//! are not applied (the window, or min-max, is).
//!
//! The pinned definition of the rendering (what `tests/fixtures/make_dicom_reference.py`
//! computes with pydicom): x → slope·x + intercept → DICOM PS3.3 C.11.2.1.2.1 linear window onto
//! [0, 255] → MONOCHROME1 inverted.

use crate::error::{Error, Result};
use dicom_dictionary_std::tags;
use dicom_object::file::ReadPreamble;
use dicom_pixeldata::{ConvertOptions, PixelDecoder, VoiLutOption, WindowLevel};
use serde::{Deserialize, Serialize};

/// A VOI window.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Window {
    /// Window Center.
    pub center: f64,
    /// Window Width (> 0).
    pub width: f64,
}

/// Whether `bytes` look like a DICOM Part 10 file (`DICM` after the 128-byte preamble).
pub fn is_dicom(bytes: &[u8]) -> bool {
    bytes.len() >= 132 && &bytes[128..132] == b"DICM"
}

fn err(name: &str, reason: impl std::fmt::Display) -> Error {
    Error::Image {
        file: name.to_string(),
        reason: format!("DICOM: {reason}"),
    }
}

/// Decodes the first frame of a DICOM file into an 8-bit image (grey or RGB), windowed with
/// `window` when given, else with the file's own window, else min-max.
pub fn decode_dicom(
    bytes: &[u8],
    name: &str,
    window: Option<Window>,
) -> Result<image::DynamicImage> {
    if let Some(w) = window
        && !(w.width > 0.0 && w.width.is_finite() && w.center.is_finite())
    {
        return Err(err(
            name,
            format!("window width must be positive, got {}", w.width),
        ));
    }
    let preamble = if is_dicom(bytes) {
        ReadPreamble::Always
    } else {
        ReadPreamble::Never
    };
    check_lengths(bytes).map_err(|e| err(name, e))?;
    let obj = dicom_object::OpenFileOptions::new()
        .read_preamble(preamble)
        .from_reader(bytes)
        .map_err(|e| err(name, e))?;
    let Ok(pixel_data) = obj.element(tags::PIXEL_DATA) else {
        return Err(err(name, "no pixel data (7FE0,0010): not an image object"));
    };
    check_frame(&obj, pixel_data.value()).map_err(|e| err(name, e))?;
    let first = |tag| -> Option<f64> {
        obj.element(tag)
            .ok()?
            .to_multi_float64()
            .ok()?
            .first()
            .copied()
    };
    let file_window = match (first(tags::WINDOW_CENTER), first(tags::WINDOW_WIDTH)) {
        (Some(center), Some(width)) if width > 0.0 => Some(Window { center, width }),
        _ => None,
    };
    let decoded = obj.decode_pixel_data_frame(0).map_err(|e| err(name, e))?;
    let w = match window.or(file_window) {
        Some(w) => Some(w),
        // Min-max over the rescaled values (dicom-rs's own `Normalize` misreads signed data).
        None if decoded.samples_per_pixel() == 1 => {
            let v: Vec<f64> = decoded.to_vec_frame(0).map_err(|e| err(name, e))?;
            let (lo, hi) = v
                .iter()
                .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &x| {
                    (a.min(x), b.max(x))
                });
            lo.is_finite().then(|| Window {
                center: (lo + hi) / 2.0,
                width: hi - lo + 1.0,
            })
        }
        None => None,
    };
    let voi = match w {
        Some(w) => VoiLutOption::Custom(WindowLevel {
            center: w.center,
            width: w.width,
        }),
        None => VoiLutOption::Normalize,
    };
    let options = ConvertOptions::default().with_voi_lut(voi).force_8bit();
    decoded
        .to_dynamic_image_with_options(0, &options)
        .map_err(|e| err(name, e))
}

/// Checks, before dicom-rs reads the file, that no element claims more bytes than the file has
/// left: dicom-rs allocates a value's declared length (up to 4 GiB) before reading it, so a
/// few-byte file could otherwise make it allocate gigabytes (found by fuzzing). Walks the meta
/// group and the data set (explicit or implicit VR, little or big endian, deflated), stepping
/// into sequences and items, skipping encapsulated pixel data fragments, reading headers as
/// dicom-rs does (an unknown VR is UN).
fn check_lengths(b: &[u8]) -> std::result::Result<(), String> {
    /// The largest deflated data set inflated (a larger one is refused, as a zip bomb would be).
    const MAX_INFLATED: u64 = 256 << 20;
    let start = if is_dicom(b) {
        132
    } else if b.starts_with(b"DICM") {
        4
    } else {
        return Ok(()); // dicom-rs refuses it
    };
    // The meta group, as dicom-rs 0.8 reads it (explicit VR little endian): (0002,0000) first,
    // with a 4-byte value, the group's length; then elements of any group until that many bytes
    // are read (found by fuzzing: an off-group element inside the declared length is read as
    // part of the meta group, so the data set starts after it). (0002,0010) names the data
    // set's transfer syntax.
    let mut pos = start;
    if pos + 12 > b.len() || (u16_at(b, pos, false), u16_at(b, pos + 2, false)) != (0x0002, 0x0000)
    {
        return Ok(()); // dicom-rs refuses it
    }
    let Some((_, 4, hdr)) = explicit_header(b, pos, false) else {
        return Ok(());
    };
    pos += hdr;
    if pos + 4 > b.len() {
        return Ok(());
    }
    let group_length = u32_at(b, pos, false) as u64;
    pos += 4;
    let mut read = 0u64;
    let mut syntax = String::new();
    while read < group_length {
        if pos + 8 > b.len() {
            return Ok(());
        }
        let tag = (u16_at(b, pos, false), u16_at(b, pos + 2, false));
        let (len, hdr) = if tag.0 == 0xFFFE {
            (u32_at(b, pos + 4, false), 8)
        } else {
            match explicit_header(b, pos, false) {
                Some((_, len, hdr)) => (len, hdr),
                None => return Ok(()),
            }
        };
        pos += hdr;
        if len == UNDEFINED {
            return Ok(()); // not valid in the meta group; dicom-rs says why
        }
        if len as usize > b.len() - pos {
            return Err(too_long(tag, len, b.len() - pos));
        }
        if tag == (0x0002, 0x0010) {
            syntax = String::from_utf8_lossy(&b[pos..pos + len as usize])
                .trim_end_matches(['\0', ' '])
                .to_string();
        }
        pos += len as usize;
        read += hdr as u64 + len as u64;
    }
    match syntax.as_str() {
        "1.2.840.10008.1.2" => walk_data_set(&b[pos..], false, false),
        "1.2.840.10008.1.2.2" => walk_data_set(&b[pos..], true, true),
        "1.2.840.10008.1.2.1.99" => {
            use std::io::Read;
            let mut inflated = Vec::new();
            flate2::read::DeflateDecoder::new(&b[pos..])
                .take(MAX_INFLATED + 1)
                .read_to_end(&mut inflated)
                .map_err(|e| format!("deflated data set: {e}"))?;
            if inflated.len() as u64 > MAX_INFLATED {
                return Err(format!(
                    "deflated data set inflates to more than {} MiB",
                    MAX_INFLATED >> 20
                ));
            }
            walk_data_set(&inflated, true, false)
        }
        _ => walk_data_set(&b[pos..], true, false),
    }
}

const UNDEFINED: u32 = 0xFFFF_FFFF;

fn u16_at(b: &[u8], p: usize, big: bool) -> u16 {
    let x = [b[p], b[p + 1]];
    if big {
        u16::from_be_bytes(x)
    } else {
        u16::from_le_bytes(x)
    }
}

fn u32_at(b: &[u8], p: usize, big: bool) -> u32 {
    let x = [b[p], b[p + 1], b[p + 2], b[p + 3]];
    if big {
        u32::from_be_bytes(x)
    } else {
        u32::from_le_bytes(x)
    }
}

fn too_long(tag: (u16, u16), len: u32, left: usize) -> String {
    format!(
        "element ({:04X},{:04X}) claims {len} bytes but only {left} remain in the file",
        tag.0, tag.1
    )
}

/// An explicit-VR header at `pos` (which has 8 bytes): (VR, length, header size), as dicom-rs
/// reads it (a VR it does not know is UN, with a 4-byte length); `None` if cut short.
fn explicit_header(b: &[u8], pos: usize, big: bool) -> Option<(dicom_core::VR, u32, usize)> {
    let vr = dicom_core::VR::from_binary([b[pos + 4], b[pos + 5]]).unwrap_or(dicom_core::VR::UN);
    if !long_length(vr) {
        Some((vr, u16_at(b, pos + 6, big) as u32, 8))
    } else if pos + 12 <= b.len() {
        Some((vr, u32_at(b, pos + 8, big), 12))
    } else {
        None
    }
}

/// An implicit-VR element's VR, as dicom-rs's implicit VR decoder resolves it: OW for pixel and
/// overlay data, else the dictionary's (relaxed), else UN.
fn implicit_vr(tag: (u16, u16)) -> dicom_core::VR {
    use dicom_core::dictionary::{DataDictionary, DataDictionaryEntry};
    if tag == (0x7FE0, 0x0010) || (tag.0 >> 8 == 0x60 && tag.1 == 0x3000) {
        return dicom_core::VR::OW;
    }
    dicom_dictionary_std::StandardDataDictionary
        .by_tag(dicom_core::Tag(tag.0, tag.1))
        .map(|e| e.vr().relaxed())
        .unwrap_or(dicom_core::VR::UN)
}

/// The bytes dicom-rs reads for a value of `len` bytes: binary numbers are read whole, so a
/// length that is not a multiple of the number's size leaves its last bytes to be read as the
/// next element's header (found by fuzzing: a UL of 513 bytes consumes 512).
fn consumed(vr: dicom_core::VR, len: u32) -> usize {
    use dicom_core::VR::*;
    let size = match vr {
        US | OW | SS => 2,
        AT | FL | OF | SL | OL | UL => 4,
        FD | OD | SV | OV | UV => 8,
        _ => 1,
    };
    (len - len % size) as usize
}

/// Walks a data set's element headers (see [`check_lengths`]) with the state machine of
/// dicom-rs 0.8's `DataSetReader`, so both read every header at the same byte: a sequence
/// expects items or its delimiter; an item (or the top level) expects elements, where an item
/// delimiter closes the item and any other (FFFE,xxxx) tag is an element of UN; a defined-length
/// sequence or item ends exactly at its end; encapsulated pixel data holds an offset table then
/// fragments. Stops (`Ok`) where dicom-rs stops with an error of its own; refuses a value,
/// offset table or fragment longer than what is left, which dicom-rs would allocate first.
fn walk_data_set(b: &[u8], explicit: bool, big: bool) -> std::result::Result<(), String> {
    struct Open {
        item: bool,
        len: u32,
        end: Option<usize>,
        pixels: bool,
    }
    let mut open: Vec<Open> = Vec::new();
    let mut pos = 0usize;
    let mut in_sequence = false;
    let mut check_end = false;
    let mut pixel_start = false;
    let mut offset_table_next = false;
    let mut value: Option<((u16, u16), dicom_core::VR, u32)> = None;
    let defined = |len: u32, pos: usize| (len != UNDEFINED).then(|| pos + len as usize);
    loop {
        if check_end {
            match open.last() {
                Some(o) if o.end == Some(pos) => {
                    in_sequence = o.item;
                    open.pop();
                    continue;
                }
                Some(o) if o.end.is_some_and(|e| e < pos) => return Ok(()), // dicom-rs: inconsistent end
                _ => check_end = false,
            }
        }
        let left = b.len() - pos;
        if in_sequence {
            if left < 8 {
                return Ok(());
            }
            let tag = (u16_at(b, pos, big), u16_at(b, pos + 2, big));
            let len = u32_at(b, pos + 4, big);
            pos += 8;
            match tag {
                (0xFFFE, 0xE000) => {
                    let Some(top) = open.last() else {
                        return Ok(());
                    };
                    let pixels = top.pixels;
                    open.push(Open {
                        item: true,
                        len,
                        end: defined(len, pos),
                        pixels,
                    });
                    in_sequence = false;
                    check_end = len == 0;
                }
                (0xFFFE, 0xE00D) if len == 0 => {
                    open.pop();
                    in_sequence = true;
                    check_end = true;
                }
                (0xFFFE, 0xE0DD) => {
                    open.pop();
                    in_sequence = false;
                    check_end = true;
                }
                _ => return Ok(()), // dicom-rs: not an item header
            }
        } else if let Some(top) = open.last().filter(|o| o.item && o.pixels) {
            // An offset table or a fragment of encapsulated pixel data: the item's length.
            let len = top.len;
            if len == UNDEFINED {
                return Ok(()); // dicom-rs: undefined item length
            }
            if len as usize > left {
                return Err(too_long((0xFFFE, 0xE000), len, left));
            }
            // The offset table is read as whole 32-bit numbers.
            pos += if std::mem::take(&mut offset_table_next) {
                (len - len % 4) as usize
            } else {
                len as usize
            };
            check_end = true;
        } else if pixel_start {
            pixel_start = false;
            open.push(Open {
                item: false,
                len: UNDEFINED,
                end: None,
                pixels: true,
            });
            if left < 8 {
                return Ok(());
            }
            let tag = (u16_at(b, pos, big), u16_at(b, pos + 2, big));
            let len = u32_at(b, pos + 4, big);
            pos += 8;
            match tag {
                (0xFFFE, 0xE000) => {
                    open.push(Open {
                        item: true,
                        len,
                        end: defined(len, pos),
                        pixels: true,
                    });
                    in_sequence = false;
                    check_end = len == 0;
                    offset_table_next = len != 0;
                    if len == UNDEFINED {
                        return Ok(()); // dicom-rs: undefined item length
                    }
                }
                (0xFFFE, 0xE0DD) => {
                    open.pop();
                    in_sequence = false;
                }
                _ => return Ok(()),
            }
        } else if let Some((tag, vr, len)) = value.take() {
            if len as usize > left {
                return Err(too_long(tag, len, left));
            }
            pos += consumed(vr, len);
            check_end = true;
        } else {
            if left < 4 {
                return Ok(()); // the end of the data set
            }
            let tag = (u16_at(b, pos, big), u16_at(b, pos + 2, big));
            let (vr, len, hdr) = if tag.0 == 0xFFFE || !explicit {
                if left < 8 {
                    return Ok(());
                }
                let vr = if explicit {
                    dicom_core::VR::UN
                } else {
                    implicit_vr(tag)
                };
                (vr, u32_at(b, pos + 4, big), 8)
            } else {
                if left < 8 {
                    return Ok(());
                }
                match explicit_header(b, pos, big) {
                    Some(h) => h,
                    None => return Ok(()),
                }
            };
            pos += hdr;
            if vr == dicom_core::VR::SQ {
                open.push(Open {
                    item: false,
                    len,
                    end: defined(len, pos),
                    pixels: false,
                });
                in_sequence = true;
                check_end = len == 0;
            } else if tag == (0xFFFE, 0xE00D) {
                if open.pop().is_some() {
                    in_sequence = true;
                    check_end = true;
                }
            } else if tag == (0x7FE0, 0x0010) && len == UNDEFINED {
                pixel_start = true;
            } else if len == UNDEFINED {
                open.push(Open {
                    item: false,
                    len: UNDEFINED,
                    end: None,
                    pixels: false,
                });
                in_sequence = true;
            } else {
                value = Some((tag, vr, len));
            }
        }
    }
}

/// The largest first frame decoded (bytes, all samples): 16k × 16k × 3 samples × 8 bits.
const MAX_FRAME_BYTES: usize = 768 << 20;

/// Checks the first frame's geometry against the pixel data before a decoder sizes its output
/// from Rows × Columns (a few-byte file could claim 65535 × 65535 × 3 × 16 bits), and an RLE
/// frame's segments (dicom-rs 0.8's RLE decoder indexes them unchecked and panics on a short or
/// mis-pointed segment; found by fuzzing).
fn check_frame(
    obj: &dicom_object::DefaultDicomObject,
    pixels: &dicom_core::value::Value<dicom_object::InMemDicomObject>,
) -> std::result::Result<(), String> {
    let int = |tag, what: &str| -> std::result::Result<usize, String> {
        obj.element(tag)
            .map_err(|_| format!("no {what}"))?
            .to_int::<u32>()
            .map(|v| v as usize)
            .map_err(|e| format!("{what}: {e}"))
    };
    let rows = int(tags::ROWS, "Rows (0028,0010)")?;
    let cols = int(tags::COLUMNS, "Columns (0028,0011)")?;
    let bits = int(tags::BITS_ALLOCATED, "Bits Allocated (0028,0100)")?;
    let spp = int(tags::SAMPLES_PER_PIXEL, "Samples per Pixel (0028,0002)").unwrap_or(1);
    if rows == 0
        || cols == 0
        || !(bits == 1 || (bits % 8 == 0 && bits <= 64))
        || !matches!(spp, 1 | 3)
    {
        return Err(format!(
            "unsupported geometry: {rows} x {cols}, {bits} bits allocated, {spp} samples per pixel"
        ));
    }
    // dicom-rs builds a lookup table of 2^BitsStored entries and asserts 1..=32 bits (a panic
    // on 0 or 33, 32 GiB at 32; found by fuzzing): samples of up to 16 stored bits are read.
    let stored = int(tags::BITS_STORED, "Bits Stored (0028,0101)").unwrap_or(bits);
    if stored == 0 || stored > bits.min(16) {
        return Err(format!(
            "{stored} bits stored in {bits} bits allocated (1 to 16 bits are read)"
        ));
    }
    let frame = rows * cols * spp * bits.div_ceil(8);
    if frame > MAX_FRAME_BYTES {
        return Err(format!(
            "a {rows} x {cols} x {spp} frame of {bits} bits is over the {} MiB limit",
            MAX_FRAME_BYTES >> 20
        ));
    }
    let syntax = obj.meta().transfer_syntax().trim_end_matches('\0');
    match pixels.fragments() {
        None => {
            let len = pixels.primitive().map_or(0, |p| p.calculate_byte_len());
            let needed = (rows * cols * spp * bits).div_ceil(8);
            if len < needed {
                return Err(format!(
                    "pixel data holds {len} bytes, a {rows} x {cols} x {spp} frame of {bits} bits needs {needed}"
                ));
            }
        }
        Some(fragments) if syntax == RLE_LOSSLESS => {
            let fragment = fragments.first().ok_or("RLE: no fragments")?;
            check_rle(fragment, rows * cols, spp * bits.div_ceil(8))?;
        }
        Some(fragments) if JPEG.contains(&syntax) => {
            // dicom-rs 0.8 copies the decoded JPEG into the frame unchecked: a JPEG larger than
            // Rows x Columns panics there (found by fuzzing).
            let mut d =
                jpeg_decoder::Decoder::new(fragments.first().map(Vec::as_slice).unwrap_or(&[]));
            if d.read_info().is_ok()
                && let Some(info) = d.info()
            {
                let bytes =
                    info.width as usize * info.height as usize * info.pixel_format.pixel_bytes();
                if bytes > frame {
                    return Err(format!(
                        "the JPEG is {} x {}, larger than the {rows} x {cols} image it is for",
                        info.width, info.height
                    ));
                }
            }
        }
        Some(fragments) if JPEG_2000.contains(&syntax) => {
            let data: Vec<u8> = fragments.iter().flatten().copied().collect();
            check_j2k(&data, rows, cols, spp)?;
        }
        Some(_) => {}
    }
    Ok(())
}

/// The JPEG 2000 transfer syntaxes dicom-rs decodes with openjp2.
const JPEG_2000: &[&str] = &["1.2.840.10008.1.2.4.90", "1.2.840.10008.1.2.4.91"];

/// A JPEG 2000 codestream's size (its SIZ marker segment, big-endian, right after the SOC
/// marker) against the frame: dicom-rs 0.8 writes every decoded sample of every component into
/// the `rows x cols x samples` frame unchecked, so a codestream larger than the frame, or with
/// more components, panicked there (found by fuzzing). A stream without SIZ is left to the
/// decoder, which refuses it.
fn check_j2k(data: &[u8], rows: usize, cols: usize, spp: usize) -> std::result::Result<(), String> {
    let Some(at) = data.windows(4).position(|w| w == [0xFF, 0x4F, 0xFF, 0x51]) else {
        return Ok(());
    };
    let siz = &data[at + 4..];
    let u32_at = |p: usize| -> Option<u64> {
        siz.get(p..p + 4)
            .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as u64)
    };
    // Lsiz, Rsiz, then Xsiz, Ysiz, XOsiz, YOsiz at 4, 8, 12, 16; Csiz at 36; per component
    // Ssiz, XRsiz, YRsiz from 38.
    let (Some(x), Some(y), Some(x0), Some(y0)) = (u32_at(4), u32_at(8), u32_at(12), u32_at(16))
    else {
        return Ok(());
    };
    let Some(csiz) = siz
        .get(36..38)
        .map(|b| u16::from_be_bytes([b[0], b[1]]) as usize)
    else {
        return Ok(());
    };
    if csiz > spp {
        return Err(format!(
            "the JPEG 2000 image has {csiz} components, the frame {spp} samples per pixel"
        ));
    }
    for c in 0..csiz {
        let Some(sampling) = siz.get(38 + 3 * c..41 + 3 * c) else {
            return Ok(());
        };
        let (dx, dy) = (sampling[1].max(1) as u64, sampling[2].max(1) as u64);
        let w = x.div_ceil(dx).saturating_sub(x0.div_ceil(dx));
        let h = y.div_ceil(dy).saturating_sub(y0.div_ceil(dy));
        if w.saturating_mul(h) > (rows * cols) as u64 {
            return Err(format!(
                "the JPEG 2000 image is {w} x {h}, larger than the {rows} x {cols} image it is for"
            ));
        }
    }
    Ok(())
}

/// The JPEG transfer syntaxes dicom-rs decodes with `jpeg-decoder`.
const JPEG: &[&str] = &[
    "1.2.840.10008.1.2.4.50",
    "1.2.840.10008.1.2.4.51",
    "1.2.840.10008.1.2.4.57",
    "1.2.840.10008.1.2.4.70",
];

const RLE_LOSSLESS: &str = "1.2.840.10008.1.2.5";

/// An RLE Lossless frame (DICOM PS3.5 annex G): a 64-byte header of `segments` and offsets, then
/// PackBits segments each decoding to at least `pixels` bytes.
fn check_rle(f: &[u8], pixels: usize, segments: usize) -> std::result::Result<(), String> {
    if f.len() < 64 {
        return Err("RLE: frame shorter than its 64-byte header".into());
    }
    let word = |i: usize| {
        u32::from_le_bytes([f[4 * i], f[4 * i + 1], f[4 * i + 2], f[4 * i + 3]]) as usize
    };
    if word(0) != segments {
        return Err(format!(
            "RLE: {} segments, the image needs {segments}",
            word(0)
        ));
    }
    let mut offsets: Vec<usize> = (1..=segments).map(word).collect();
    offsets.push(f.len());
    if offsets[0] != 64 || offsets.windows(2).any(|w| w[0] > w[1]) {
        return Err(format!(
            "RLE: bad segment offsets {:?}",
            &offsets[..segments]
        ));
    }
    for (i, w) in offsets.windows(2).enumerate() {
        // The length a PackBits segment decodes to: n >= 0 copies n + 1 bytes, n < 0 (not
        // -128) repeats the next byte 1 - n times.
        let (seg, mut at, mut out) = (&f[w[0]..w[1]], 0, 0usize);
        while at < seg.len() && out < pixels {
            let n = seg[at] as i8;
            at += 1;
            if n >= 0 {
                out += n as usize + 1;
                at += n as usize + 1;
            } else if n != -128 {
                out += (1 - n as isize) as usize;
                at += 1;
            }
        }
        if out < pixels || at > seg.len() {
            return Err(format!("RLE: segment {i} is short of its {pixels} bytes"));
        }
    }
    Ok(())
}

/// Whether an explicit-VR element of `vr` has the long header (2 reserved bytes, 4-byte length),
/// as dicom-rs 0.8 reads it: the standard gives OV, SV and UV the long header too, but dicom-rs
/// reads them with a 2-byte length, and the walk must part nowhere from it (found by fuzzing: an
/// OV pixel data header read both ways, then a 4.2 GB allocation).
fn long_length(vr: dicom_core::VR) -> bool {
    use dicom_core::VR::*;
    matches!(vr, OB | OD | OF | OL | OW | SQ | UC | UN | UR | UT)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Preamble, `DICM` and a meta group naming only the transfer syntax `ts`.
    /// Preamble, `DICM`, the meta group's length, then the transfer syntax.
    fn meta(ts: &[u8]) -> Vec<u8> {
        meta_with(ts, &[])
    }

    /// As [`meta`], with `extra` bytes (elements) counted in the meta group's length.
    fn meta_with(ts: &[u8], extra: &[u8]) -> Vec<u8> {
        let mut group = vec![0x02, 0x00, 0x10, 0x00, b'U', b'I'];
        group.extend_from_slice(&(ts.len() as u16).to_le_bytes());
        group.extend_from_slice(ts);
        group.extend_from_slice(extra);
        let mut f = vec![0u8; 128];
        f.extend_from_slice(b"DICM");
        f.extend_from_slice(&[0x02, 0x00, 0x00, 0x00, b'U', b'L', 4, 0]);
        f.extend_from_slice(&(group.len() as u32).to_le_bytes());
        f.extend_from_slice(&group);
        f
    }

    #[test]
    fn an_off_group_element_inside_the_meta_length_belongs_to_the_meta_group() {
        // dicom-rs reads meta elements until the group length is used up, whatever their group:
        // the (0009,0010) LO here is meta, and the data set (implicit VR) starts after it with
        // an element claiming 3 GB (found by fuzzing).
        let mut off = vec![0x09, 0x00, 0x10, 0x00, b'L', b'O', 4, 0];
        off.extend_from_slice(b"ABCD");
        let mut f = meta_with(b"1.2.840.10008.1.2\0", &off);
        f.extend_from_slice(&[0x11, 0x00, 0x10, 0x00]);
        f.extend_from_slice(&3_000_000_000u32.to_le_bytes());
        f.extend_from_slice(&[0; 16]);
        let e = decode_dicom(&f, "x.dcm", None).unwrap_err().to_string();
        assert!(e.contains("(0011,0010) claims 3000000000 bytes"), "{e}");
    }

    #[test]
    fn a_length_beyond_the_end_is_refused_before_reading() {
        // Meta group (transfer syntax: explicit VR little endian), then an OB element that
        // claims 3.5 GB in a file of a few hundred bytes.
        let mut f = meta(b"1.2.840.10008.1.2.1\0");
        f.extend_from_slice(&[0x09, 0x00, 0x10, 0x00, b'O', b'B', 0, 0]);
        f.extend_from_slice(&3_500_000_000u32.to_le_bytes());
        f.extend_from_slice(&[0; 16]);
        let e = decode_dicom(&f, "x.dcm", None).unwrap_err().to_string();
        assert!(
            e.contains("x.dcm") && e.contains("(0009,0010) claims 3500000000 bytes"),
            "{e}"
        );
    }

    #[test]
    fn a_sequence_delimiter_inside_an_item_is_read_as_an_element_as_dicom_rs_does() {
        // Inside an item dicom-rs expects elements: a (FFFE,E0DD) there is an element of UN whose
        // length (1) is a value, not a delimiter whose length is ignored; the header after it
        // claims 3 GB (found by fuzzing: the two walks parted by one byte and dicom-rs
        // allocated 4.28 GB).
        let mut f = meta(b"1.2.840.10008.1.2.1\0");
        f.extend_from_slice(&[
            0x08, 0x00, 0x12, 0x21, b'S', b'Q', 0, 0, 0xFF, 0xFF, 0xFF, 0xFF,
        ]);
        f.extend_from_slice(&[0xFE, 0xFF, 0x00, 0xE0, 0xFF, 0xFF, 0xFF, 0xFF]);
        f.extend_from_slice(&[0x08, 0x00, 0x00, 0x01, b'S', b'H', 2, 0, b'A', b'B']);
        f.extend_from_slice(&[0xFE, 0xFF, 0xDD, 0xE0, 1, 0, 0, 0, 8]);
        f.extend_from_slice(&[0x09, 0x00, 0x10, 0x00, b'O', b'B', 0, 0]);
        f.extend_from_slice(&3_000_000_000u32.to_le_bytes());
        f.extend_from_slice(&[0; 16]);
        let e = decode_dicom(&f, "x.dcm", None).unwrap_err().to_string();
        assert!(e.contains("(0009,0010) claims 3000000000 bytes"), "{e}");
    }

    #[test]
    fn an_ov_header_has_the_short_length_as_dicom_rs_reads_it() {
        // (7FE0,0010) OV: dicom-rs 0.8 reads a 2-byte length (0), so what the standard's long
        // header would call a length of 0xFFFFFFFF starts the next element, here one of UN
        // claiming 3 GB.
        let mut f = meta(b"1.2.840.10008.1.2.1\0");
        f.extend_from_slice(&[0xE0, 0x7F, 0x10, 0x00, b'O', b'V', 0, 0]);
        f.extend_from_slice(&[0x09, 0x00, 0x10, 0x00, b'U', b'N', 0, 0]);
        f.extend_from_slice(&3_000_000_000u32.to_le_bytes());
        f.extend_from_slice(&[0; 16]);
        let e = decode_dicom(&f, "x.dcm", None).unwrap_err().to_string();
        assert!(e.contains("(0009,0010) claims 3000000000 bytes"), "{e}");
    }

    #[test]
    fn a_number_value_of_odd_length_leaves_its_tail_to_the_next_header() {
        // Implicit VR: a group length (UL) of 5 bytes, of which dicom-rs reads 4; the fifth byte
        // starts the next header, an element claiming 3 GB (found by fuzzing).
        let mut f = meta(b"1.2.840.10008.1.2\0");
        f.extend_from_slice(&[0x20, 0x28, 0x00, 0x00, 5, 0, 0, 0, 1, 2, 3, 4]);
        f.extend_from_slice(&[0x09, 0x00, 0x10, 0x00]);
        f.extend_from_slice(&3_000_000_000u32.to_le_bytes());
        let e = decode_dicom(&f, "x.dcm", None).unwrap_err().to_string();
        assert!(e.contains("claims") && e.contains("bytes but only"), "{e}");
    }
}
