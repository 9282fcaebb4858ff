//! HF image preprocessing from `preprocessor_config.json` (`BlipImageProcessor`,
//! `ViTImageProcessor`): convert to RGB, resize, rescale, normalise, channels first.

use crate::error::{Error, Result};
use burn::tensor::{Device, Tensor, TensorData};
use image::imageops::FilterType;
use serde::{Deserialize, Serialize};

/// HF `size`: either explicit height/width or a shortest edge.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Size {
    /// Target height.
    pub height: Option<u32>,
    /// Target width.
    pub width: Option<u32>,
    /// Resize so the shorter side has this length (then the image is square in practice for ViT/BLIP).
    pub shortest_edge: Option<u32>,
}

/// The fields of `preprocessor_config.json` that BLIP and ViT processors use, with HF's defaults.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Preprocessor {
    /// Whether to resize.
    pub do_resize: bool,
    /// Target size.
    pub size: Size,
    /// PIL resampling filter id (0 nearest, 1 lanczos, 2 bilinear, 3 bicubic).
    pub resample: u32,
    /// Whether to multiply by `rescale_factor`.
    pub do_rescale: bool,
    /// Usually 1/255.
    pub rescale_factor: f32,
    /// Whether to normalise with mean/std.
    pub do_normalize: bool,
    /// Per-channel mean.
    pub image_mean: Vec<f32>,
    /// Per-channel std.
    pub image_std: Vec<f32>,
    /// Whether to convert to RGB first.
    pub do_convert_rgb: bool,
}

impl Default for Preprocessor {
    fn default() -> Self {
        // BlipImageProcessor's defaults (OpenAI CLIP mean/std, bicubic, 384).
        Self {
            do_resize: true,
            size: Size {
                height: Some(384),
                width: Some(384),
                shortest_edge: None,
            },
            resample: 3,
            do_rescale: true,
            rescale_factor: 1.0 / 255.0,
            do_normalize: true,
            image_mean: vec![0.481_454_66, 0.457_827_5, 0.408_210_73],
            image_std: vec![0.268_629_54, 0.261_302_6, 0.275_777_1],
            do_convert_rgb: true,
        }
    }
}

/// Decodes an image file (PNG, JPEG, TIFF, BMP, WebP, ..., or DICOM, recognised by its `DICM`
/// magic or a `.dcm` name); `name` is used in the error.
pub fn decode_image(bytes: &[u8], name: &str) -> Result<image::DynamicImage> {
    let lower = name.to_ascii_lowercase();
    if super::dicom::is_dicom(bytes) || lower.ends_with(".dcm") || lower.ends_with(".dicom") {
        return super::dicom::decode_dicom(bytes, name, None);
    }
    let bad = |reason: String| Error::Image {
        file: name.to_string(),
        reason,
    };
    // A decompression bomb: a few bytes declaring a huge picture make the decoder produce it
    // all (found by fuzzing: 1.1 KB declaring 2304 x 12584 x 3 decoded for 20 s). Real images
    // carry far more than one byte per 4,096 pixels; anything up to 16 megapixels is let through.
    let header = || image::ImageReader::new(std::io::Cursor::new(bytes)).with_guessed_format();
    if let Ok((w, h)) = header()
        .map_err(image::ImageError::IoError)
        .and_then(|r| r.into_dimensions())
    {
        let pixels = w as u64 * h as u64;
        if pixels > (16 << 20).max(bytes.len() as u64 * PIXELS_PER_BYTE) {
            return Err(bad(format!(
                "declares {w} x {h} pixels in {} bytes: refused as a decompression bomb",
                bytes.len()
            )));
        }
    }
    image::load_from_memory(bytes).map_err(|e| bad(e.to_string()))
}

/// The most pixels an image file may declare per byte of file (beyond 16 megapixels).
const PIXELS_PER_BYTE: u64 = 4096;

impl Preprocessor {
    /// Parses `preprocessor_config.json`.
    pub fn from_json(bytes: &[u8], file: &str) -> Result<Self> {
        let p: Self = serde_json::from_slice(bytes).map_err(|e| Error::json(file, e))?;
        if p.image_mean.len() != 3 || p.image_std.len() != 3 {
            return Err(Error::config(
                file,
                "image_mean",
                "image_mean and image_std need 3 values (RGB)",
            ));
        }
        if p.image_std.iter().any(|s| *s == 0.0) {
            return Err(Error::config(
                file,
                "image_std",
                "a standard deviation of 0 would divide by zero",
            ));
        }
        Ok(p)
    }

    /// A processor for a square model input of `side` pixels with the given statistics.
    pub fn square(side: u32, mean: [f32; 3], std: [f32; 3]) -> Self {
        Self {
            size: Size {
                height: Some(side),
                width: Some(side),
                shortest_edge: None,
            },
            image_mean: mean.to_vec(),
            image_std: std.to_vec(),
            ..Self::default()
        }
    }

    /// The output height and width.
    pub fn target(&self) -> (u32, u32) {
        match (
            &self.size.height,
            &self.size.width,
            &self.size.shortest_edge,
        ) {
            (Some(h), Some(w), _) => (*h, *w),
            (_, _, Some(s)) => (*s, *s),
            _ => (384, 384),
        }
    }

    fn filter(&self) -> FilterType {
        match self.resample {
            0 => FilterType::Nearest,
            1 => FilterType::Lanczos3,
            2 => FilterType::Triangle,
            _ => FilterType::CatmullRom,
        }
    }

    /// Pixel values `[3, height, width]` in channel-first order, as HF's `pixel_values[i]`.
    pub fn pixels(&self, img: &image::DynamicImage) -> Vec<f32> {
        let rgb = img.to_rgb8();
        let (h, w) = self.target();
        let rgb = if self.do_resize && (rgb.width() != w || rgb.height() != h) {
            image::imageops::resize(&rgb, w, h, self.filter())
        } else {
            rgb
        };
        let (w, h) = (rgb.width() as usize, rgb.height() as usize);
        let mut out = vec![0f32; 3 * h * w];
        for (x, y, p) in rgb.enumerate_pixels() {
            for c in 0..3 {
                let mut v = p.0[c] as f32;
                if self.do_rescale {
                    v *= self.rescale_factor;
                }
                if self.do_normalize {
                    v = (v - self.image_mean[c]) / self.image_std[c];
                }
                out[c * h * w + y as usize * w + x as usize] = v;
            }
        }
        out
    }

    /// A batch tensor `[n, 3, height, width]` from decoded images.
    pub fn batch(&self, images: &[image::DynamicImage], device: &Device) -> Tensor<4> {
        let (h, w) = self.target();
        let (h, w) = if self.do_resize {
            (h as usize, w as usize)
        } else {
            (images[0].height() as usize, images[0].width() as usize)
        };
        let data: Vec<f32> = images.iter().flat_map(|i| self.pixels(i)).collect();
        Tensor::from_data(TensorData::new(data, [images.len(), 3, h, w]), device)
    }
}
