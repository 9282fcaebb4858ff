//! Training-time augmentation that suits medical images: a small random crop (the preprocessor
//! then resizes), brightness and contrast jitter, and horizontal flips only when asked for and
//! never for an example that mentions laterality (left / right), since a flip changes the answer.
//! Every draw comes from (seed, epoch, example index), so a resumed run sees the same images.

use image::{DynamicImage, GenericImageView};
use serde::{Deserialize, Serialize};

/// Augmentation settings (all off by default).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Augment {
    /// Largest fraction of each side a random crop removes (e.g. 0.1); 0 = no crop.
    pub crop: f32,
    /// Brightness jitter: pixels scaled by 1 ± up to this (e.g. 0.1).
    pub brightness: f32,
    /// Contrast jitter: distance from the mean grey scaled by 1 ± up to this.
    pub contrast: f32,
    /// Flip horizontally with probability ½, except for examples mentioning left or right.
    pub hflip: bool,
}

/// Whether a text speaks of laterality.
pub fn mentions_laterality(text: &str) -> bool {
    text.to_lowercase()
        .split(|c: char| !c.is_alphanumeric())
        .any(|w| {
            matches!(
                w,
                "left" | "right" | "l" | "r" | "lateral" | "laterality" | "side"
            )
        })
}

struct Draw(u64);

impl Draw {
    fn new(seed: u64, epoch: usize, index: usize) -> Self {
        Draw(
            seed ^ (epoch as u64).wrapping_mul(0xA24B_AED4_963E_E407)
                ^ (index as u64).wrapping_mul(0x9FB2_1C65_1E98_DF25),
        )
    }
    /// Uniform in [0, 1) (SplitMix64).
    fn unit(&mut self) -> f32 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        ((z ^ (z >> 31)) >> 40) as f32 / (1u64 << 24) as f32
    }
    fn sym(&mut self, r: f32) -> f32 {
        (self.unit() * 2.0 - 1.0) * r
    }
}

impl Augment {
    /// Whether this changes nothing.
    pub fn is_identity(&self) -> bool {
        self.crop == 0.0 && self.brightness == 0.0 && self.contrast == 0.0 && !self.hflip
    }

    /// Checks the ranges.
    pub fn validate(&self) -> Result<(), String> {
        for (name, v, max) in [
            ("crop", self.crop, 0.5),
            ("brightness", self.brightness, 1.0),
            ("contrast", self.contrast, 1.0),
        ] {
            if !(0.0..=max).contains(&v) {
                return Err(format!("augment.{name} must be in [0, {max}], got {v}"));
            }
        }
        Ok(())
    }

    /// The augmented image of example `index` in `epoch`; `text` (question + answer or report)
    /// decides whether a flip is allowed.
    pub fn apply(
        &self,
        img: &DynamicImage,
        seed: u64,
        epoch: usize,
        index: usize,
        text: &str,
    ) -> DynamicImage {
        if self.is_identity() {
            return img.clone();
        }
        let mut d = Draw::new(seed, epoch, index);
        let mut out = img.clone();
        if self.crop > 0.0 {
            let (w, h) = out.dimensions();
            let s = 1.0 - d.unit() * self.crop;
            let (cw, ch) = (
                ((w as f32 * s).round() as u32).max(1),
                ((h as f32 * s).round() as u32).max(1),
            );
            let (x, y) = (
                ((w - cw) as f32 * d.unit()).round() as u32,
                ((h - ch) as f32 * d.unit()).round() as u32,
            );
            out = out.crop_imm(x, y, cw, ch);
        }
        if self.hflip && d.unit() < 0.5 && !mentions_laterality(text) {
            out = out.fliph();
        }
        if self.brightness > 0.0 || self.contrast > 0.0 {
            let b = 1.0 + d.sym(self.brightness);
            let c = 1.0 + d.sym(self.contrast);
            let mut rgb = out.to_rgb8();
            let n = (rgb.width() * rgb.height() * 3).max(1) as f32;
            let mean = rgb.as_raw().iter().map(|&v| v as f32).sum::<f32>() / n;
            for v in rgb.iter_mut() {
                let x = ((*v as f32 - mean) * c + mean) * b;
                *v = x.round().clamp(0.0, 255.0) as u8;
            }
            out = DynamicImage::ImageRgb8(rgb);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_bounded_and_laterality_safe() {
        let img = DynamicImage::ImageRgb8(image::RgbImage::from_fn(40, 30, |x, y| {
            image::Rgb([(x * 6) as u8, (y * 8) as u8, 100])
        }));
        let a = Augment {
            crop: 0.2,
            brightness: 0.1,
            contrast: 0.1,
            hflip: false,
        };
        let x = a.apply(&img, 1, 0, 5, "");
        assert_eq!(
            x,
            a.apply(&img, 1, 0, 5, ""),
            "same draw for the same (seed, epoch, index)"
        );
        assert_ne!(x, a.apply(&img, 1, 1, 5, ""), "another epoch, another draw");
        let (w, h) = x.dimensions();
        assert!((32..=40).contains(&w) && (24..=30).contains(&h), "{w}x{h}");
        let flip = Augment {
            hflip: true,
            ..Default::default()
        };
        let flipped = (0..20)
            .filter(|&i| flip.apply(&img, 3, 0, i, "is the heart enlarged?") != img)
            .count();
        assert!(flipped > 3 && flipped < 17, "about half flipped: {flipped}");
        assert!(
            (0..20).all(|i| flip.apply(&img, 3, 0, i, "Is the effusion on the left side?") == img)
        );
        assert!(
            Augment {
                crop: 0.9,
                ..Default::default()
            }
            .validate()
            .is_err()
        );
        assert_eq!(Augment::default().apply(&img, 0, 0, 0, ""), img);
    }
}
