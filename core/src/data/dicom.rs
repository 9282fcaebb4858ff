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
    let obj = dicom_object::OpenFileOptions::new()
        .read_preamble(preamble)
        .from_reader(bytes)
        .map_err(|e| err(name, e))?;
    if obj.element(tags::PIXEL_DATA).is_err() {
        return Err(err(name, "no pixel data (7FE0,0010): not an image object"));
    }
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
    let decoded = obj.decode_pixel_data().map_err(|e| err(name, e))?;
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
