//! HF image preprocessing as transformers' PIL backend runs it (`BlipImageProcessor`,
//! `ViTImageProcessor`, `CLIPImageProcessor`, `SiglipImageProcessor`), read from
//! `preprocessor_config.json` or `processor_config.json`: convert to RGB, resize, center-crop,
//! rescale, normalise, channels first. Conformance: tests/fixtures/make_conformance.py.

use super::resample::Filter;
use crate::error::{Error, Result};
use burn::tensor::{Device, Tensor, TensorData};
use serde::{Deserialize, Serialize};

/// HF `size` / `crop_size`: explicit height and width, or a shortest edge (with an optional
/// longest edge). An old config's plain number is read as transformers reads it: a square for
/// processors that default to square sizes, a shortest edge for CLIP's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Size {
    /// Target height.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub height: Option<u32>,
    /// Target width.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub width: Option<u32>,
    /// Resize so the shorter side has this length, keeping the aspect ratio.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shortest_edge: Option<u32>,
    /// With `shortest_edge`: the longer side at most this long.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub longest_edge: Option<u32>,
}

impl Size {
    fn square(side: u32) -> Self {
        Size {
            height: Some(side),
            width: Some(side),
            ..Size::default()
        }
    }
}

/// The image processors transformers saves (`image_processor_type`, with or without its
/// `Fast` / `Pil` suffix; transformers 4's `feature_extractor_type` too).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ProcessorKind {
    /// `BlipImageProcessor`: resize to height x width (bicubic), OpenAI CLIP statistics.
    Blip,
    /// `ViTImageProcessor`: resize to height x width (bilinear), mean = std = 0.5.
    Vit,
    /// `CLIPImageProcessor`: resize the shortest edge (bicubic), center-crop `crop_size`.
    Clip,
    /// `SiglipImageProcessor`: resize to height x width (bicubic), mean = std = 0.5.
    Siglip,
}

impl ProcessorKind {
    /// The kind a `image_processor_type` names, if normtune implements it.
    pub fn from_type(name: &str) -> Option<Self> {
        let base = name
            .strip_suffix("Fast")
            .or_else(|| name.strip_suffix("Pil"))
            .unwrap_or(name);
        Some(match base {
            "BlipImageProcessor" => ProcessorKind::Blip,
            "ViTImageProcessor" | "ViTFeatureExtractor" => ProcessorKind::Vit,
            "CLIPImageProcessor" | "CLIPFeatureExtractor" => ProcessorKind::Clip,
            "SiglipImageProcessor" => ProcessorKind::Siglip,
            _ => return None,
        })
    }

    /// The processor's defaults (its class attributes in transformers), `side` pixels.
    pub fn defaults(self, side: u32) -> Preprocessor {
        const CLIP_MEAN: [f32; 3] = [0.481_454_66, 0.457_827_5, 0.408_210_73];
        const CLIP_STD: [f32; 3] = [0.268_629_54, 0.261_302_6, 0.275_777_1];
        let half = vec![0.5f32; 3];
        let base = Preprocessor {
            image_processor_type: Some(self),
            do_resize: true,
            size: Size::square(side),
            resample: 3,
            do_center_crop: false,
            crop_size: None,
            do_rescale: true,
            rescale_factor: 1.0 / 255.0,
            do_normalize: true,
            image_mean: CLIP_MEAN.to_vec(),
            image_std: CLIP_STD.to_vec(),
            do_convert_rgb: true,
        };
        match self {
            ProcessorKind::Blip => base,
            ProcessorKind::Vit => Preprocessor {
                resample: 2,
                image_mean: half.clone(),
                image_std: half,
                do_convert_rgb: false,
                ..base
            },
            ProcessorKind::Clip => Preprocessor {
                size: Size {
                    shortest_edge: Some(side),
                    ..Size::default()
                },
                do_center_crop: true,
                crop_size: Some(Size::square(side)),
                ..base
            },
            ProcessorKind::Siglip => Preprocessor {
                image_mean: half.clone(),
                image_std: half,
                ..base
            },
        }
    }

    fn square_sizes(self) -> bool {
        self != ProcessorKind::Clip
    }
}

/// An image processor as transformers' PIL backend runs it: convert to RGB (transparency
/// composited onto white), resize (Pillow's filters, bit for bit), center-crop, rescale,
/// normalise, channels first. Read from `preprocessor_config.json` (transformers 4) or the
/// `image_processor` of `processor_config.json` (transformers 5).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Preprocessor {
    /// Which processor this is.
    pub image_processor_type: Option<ProcessorKind>,
    /// Whether to resize.
    pub do_resize: bool,
    /// Target size.
    pub size: Size,
    /// PIL resampling filter id (0 nearest, 1 lanczos, 2 bilinear, 3 bicubic, 4 box, 5 hamming).
    pub resample: u32,
    /// Whether to center-crop to `crop_size` after resizing.
    pub do_center_crop: bool,
    /// The crop.
    pub crop_size: Option<Size>,
    /// Whether to multiply by `rescale_factor`.
    pub do_rescale: bool,
    /// Usually 1/255.
    pub rescale_factor: f64,
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
        ProcessorKind::Blip.defaults(384)
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
    /// Parses a `preprocessor_config.json` (or the `image_processor` object of a
    /// `processor_config.json`, which `file` then names). A config that names no processor type
    /// is read as `kind` (the model family's own processor); one naming a processor normtune
    /// does not implement is refused, never replaced by defaults. `side` is the model's input
    /// size, the default size where the config gives none.
    pub fn from_json(bytes: &[u8], file: &str, kind: ProcessorKind, side: u32) -> Result<Self> {
        let v: serde_json::Value =
            serde_json::from_slice(bytes).map_err(|e| Error::json(file, e))?;
        Self::from_value(&v, file, kind, side)
    }

    /// As [`Preprocessor::from_json`], from parsed JSON.
    pub fn from_value(
        v: &serde_json::Value,
        file: &str,
        kind: ProcessorKind,
        side: u32,
    ) -> Result<Self> {
        let obj = v
            .as_object()
            .ok_or_else(|| Error::config(file, "image_processor", "not a JSON object"))?;
        let named = ["image_processor_type", "feature_extractor_type"]
            .iter()
            .find_map(|k| obj.get(*k).and_then(|t| t.as_str()).map(|t| (*k, t)));
        let kind = match named {
            Some((field, t)) => ProcessorKind::from_type(t).ok_or_else(|| {
                Error::config(
                    file,
                    field,
                    format!(
                        "`{t}` is not supported (BlipImageProcessor, ViTImageProcessor, \
                         CLIPImageProcessor, SiglipImageProcessor)"
                    ),
                )
            })?,
            None => kind,
        };
        let mut p = kind.defaults(side);
        let get = |k: &str| obj.get(k).filter(|x| !x.is_null());
        let flag = |k: &str, d: bool| -> Result<bool> {
            match get(k) {
                None => Ok(d),
                Some(x) => x
                    .as_bool()
                    .ok_or_else(|| Error::config(file, k, "true or false expected")),
            }
        };
        let size = |k: &str, square: bool| -> Result<Option<Size>> {
            match get(k) {
                None => Ok(None),
                Some(x) if x.is_u64() => {
                    let n = x.as_u64().unwrap_or(0) as u32;
                    Ok(Some(if square {
                        Size::square(n)
                    } else {
                        Size {
                            shortest_edge: Some(n),
                            ..Size::default()
                        }
                    }))
                }
                Some(x) => serde_json::from_value::<Size>(x.clone())
                    .map(Some)
                    .map_err(|e| Error::config(file, k, e.to_string())),
            }
        };
        let floats = |k: &str, d: &Vec<f32>| -> Result<Vec<f32>> {
            match get(k) {
                None => Ok(d.clone()),
                Some(x) if x.is_number() => Ok(vec![x.as_f64().unwrap_or(0.0) as f32; 3]),
                Some(x) => serde_json::from_value::<Vec<f32>>(x.clone())
                    .map_err(|e| Error::config(file, k, e.to_string())),
            }
        };
        p.do_resize = flag("do_resize", p.do_resize)?;
        p.do_center_crop = flag("do_center_crop", p.do_center_crop)?;
        p.do_rescale = flag("do_rescale", p.do_rescale)?;
        p.do_normalize = flag("do_normalize", p.do_normalize)?;
        p.do_convert_rgb = flag("do_convert_rgb", p.do_convert_rgb)?;
        if let Some(s) = size("size", kind.square_sizes())? {
            p.size = s;
        }
        if let Some(s) = size("crop_size", true)? {
            p.crop_size = Some(s);
        }
        if let Some(r) = get("resample") {
            p.resample = r
                .as_u64()
                .filter(|&r| Filter::from_pil(r as u32).is_some())
                .ok_or_else(|| {
                    Error::config(file, "resample", "a PIL filter number 0-5 expected")
                })? as u32;
        }
        if let Some(r) = get("rescale_factor") {
            p.rescale_factor = r
                .as_f64()
                .ok_or_else(|| Error::config(file, "rescale_factor", "a number expected"))?;
        }
        p.image_mean = floats("image_mean", &p.image_mean)?;
        p.image_std = floats("image_std", &p.image_std)?;
        for k in ["do_pad", "do_reduce_labels"] {
            if flag(k, false)? {
                return Err(Error::config(file, k, "is not supported: set it to false"));
            }
        }
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
        let s = &p.size;
        if p.do_resize && s.shortest_edge.is_none() && (s.height.is_none() || s.width.is_none()) {
            return Err(Error::config(
                file,
                "size",
                "needs height and width, or shortest_edge",
            ));
        }
        if p.do_center_crop
            && p.crop_size
                .as_ref()
                .is_none_or(|c| c.height.is_none() || c.width.is_none())
        {
            return Err(Error::config(file, "crop_size", "needs height and width"));
        }
        Ok(p)
    }

    /// A processor for a square model input of `side` pixels with the given statistics.
    pub fn square(side: u32, mean: [f32; 3], std: [f32; 3]) -> Self {
        Self {
            image_mean: mean.to_vec(),
            image_std: std.to_vec(),
            ..ProcessorKind::Blip.defaults(side)
        }
    }

    /// The output height and width for an image of `w` x `h` pixels.
    pub fn output_size(&self, w: u32, h: u32) -> (u32, u32) {
        let (h, w) = if self.do_resize {
            self.resized(w, h)
        } else {
            (h, w)
        };
        match (&self.crop_size, self.do_center_crop) {
            (Some(c), true) => (c.height.unwrap_or(h), c.width.unwrap_or(w)),
            _ => (h, w),
        }
    }

    /// transformers' `get_resize_output_image_size` (height, width).
    fn resized(&self, w: u32, h: u32) -> (u32, u32) {
        let s = &self.size;
        match (s.shortest_edge, s.height, s.width) {
            (Some(short), ..) => {
                let (lo, hi) = (w.min(h) as f64, w.max(h) as f64);
                let mut new_short = short as f64;
                let mut new_long = (short as f64 * hi / lo).floor();
                if let Some(max) = s.longest_edge {
                    if new_long > max as f64 {
                        new_short = (max as f64 * new_short / new_long).floor();
                        new_long = max as f64;
                    }
                }
                let (new_short, new_long) = (new_short as u32, new_long as u32);
                if w <= h {
                    (new_long, new_short)
                } else {
                    (new_short, new_long)
                }
            }
            (None, Some(hh), Some(ww)) => (hh, ww),
            _ => (h, w),
        }
    }

    /// Pixel values `[3, height, width]` in channel-first order, as HF's `pixel_values[i]`,
    /// with the height and width.
    pub fn pixels_sized(&self, img: &image::DynamicImage) -> (Vec<f32>, u32, u32) {
        // Without `do_convert_rgb` transformers keeps a grey image's one channel and then
        // fails on three-value statistics; normtune's models all take RGB, so the image is
        // converted either way.
        let mut rgb = super::resample::to_rgb(img);
        if self.do_resize {
            let (h, w) = self.resized(rgb.width(), rgb.height());
            let filter = Filter::from_pil(self.resample).unwrap_or(Filter::Bicubic);
            rgb = super::resample::resize(&rgb, w.max(1), h.max(1), filter);
        }
        let (h, w) = self.output_size(img.width(), img.height());
        let (ih, iw) = (rgb.height() as i64, rgb.width() as i64);
        // transformers' `center_crop`: top/left = (orig - crop) // 2, zero padding where the
        // image is smaller than the crop (its pad-then-crop gives the same placement).
        let (top, left) = ((ih - h as i64).div_euclid(2), (iw - w as i64).div_euclid(2));
        let (h, w) = (h as usize, w as usize);
        let mut out = vec![0f32; 3 * h * w];
        let (mean, std) = (&self.image_mean, &self.image_std);
        for y in 0..h {
            for x in 0..w {
                let (sy, sx) = (y as i64 + top, x as i64 + left);
                let p = if sy >= 0 && sy < ih && sx >= 0 && sx < iw {
                    rgb.get_pixel(sx as u32, sy as u32).0
                } else {
                    [0, 0, 0]
                };
                for c in 0..3 {
                    // numpy: rescale in float64 then float32; normalise in float32.
                    let mut v = if self.do_rescale {
                        (p[c] as f64 * self.rescale_factor) as f32
                    } else {
                        p[c] as f32
                    };
                    if self.do_normalize {
                        v = (v - mean[c]) / std[c];
                    }
                    out[c * h * w + y * w + x] = v;
                }
            }
        }
        (out, h as u32, w as u32)
    }

    /// Pixel values `[3, height, width]` (see [`Preprocessor::pixels_sized`]).
    pub fn pixels(&self, img: &image::DynamicImage) -> Vec<f32> {
        self.pixels_sized(img).0
    }

    /// A batch tensor `[n, 3, height, width]` from decoded images. Images this processor gives
    /// different sizes (no resize, or a shortest-edge resize without a crop) are refused.
    pub fn batch(&self, images: &[image::DynamicImage], device: &Device) -> Tensor<4> {
        self.try_batch(images, device).unwrap_or_else(|_| {
            // Sizes differ: each image is brought to the first one's size (a model with fixed
            // position embeddings needs one size anyway).
            let first = &images[0];
            let (h, w) = self.output_size(first.width(), first.height());
            let fixed = Preprocessor {
                do_resize: true,
                size: Size {
                    height: Some(h),
                    width: Some(w),
                    ..Size::default()
                },
                do_center_crop: false,
                ..self.clone()
            };
            fixed.try_batch(images, device).expect("one size")
        })
    }

    fn try_batch(&self, images: &[image::DynamicImage], device: &Device) -> Result<Tensor<4>> {
        let mut data = Vec::new();
        let mut shape = None;
        for img in images {
            let (px, h, w) = self.pixels_sized(img);
            if *shape.get_or_insert((h, w)) != (h, w) {
                return Err(Error::Input(
                    "images of different sizes in one batch".into(),
                ));
            }
            data.extend(px);
        }
        let (h, w) = shape.unwrap_or((0, 0));
        Ok(Tensor::from_data(
            TensorData::new(data, [images.len(), 3, h as usize, w as usize]),
            device,
        ))
    }
}
