//! Pillow's `Image.resize` on 8-bit images, bit for bit (Pillow `libImaging/Resample.c`): what
//! transformers' PIL image processors (`BlipImageProcessorPil`, `CLIPImageProcessorPil`, ...)
//! run before rescaling. Separable convolution, horizontal pass first, each pass rounded back to
//! 8 bits with 22-bit fixed-point coefficients; `image`'s own filters differ from it by a few
//! levels per pixel, which moves a model's logits by far more than 1e-4. And Pillow's
//! `alpha_composite` onto white (`convert_to_rgb` for images with transparency).

use image::{ImageBuffer, Rgb, RgbImage};

/// PIL resampling filters by their `PILImageResampling` / `Image.Resampling` number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Filter {
    /// 0.
    Nearest,
    /// 1.
    Lanczos,
    /// 2.
    Bilinear,
    /// 3.
    Bicubic,
    /// 4.
    Box,
    /// 5.
    Hamming,
}

impl Filter {
    /// The filter numbered `n` in PIL, if any.
    pub fn from_pil(n: u32) -> Option<Self> {
        Some(match n {
            0 => Filter::Nearest,
            1 => Filter::Lanczos,
            2 => Filter::Bilinear,
            3 => Filter::Bicubic,
            4 => Filter::Box,
            5 => Filter::Hamming,
            _ => return None,
        })
    }

    fn support(self) -> f64 {
        match self {
            Filter::Nearest | Filter::Box => 0.5,
            Filter::Bilinear | Filter::Hamming => 1.0,
            Filter::Bicubic => 2.0,
            Filter::Lanczos => 3.0,
        }
    }

    fn weight(self, x: f64) -> f64 {
        fn sinc(x: f64) -> f64 {
            if x == 0.0 {
                1.0
            } else {
                let x = x * std::f64::consts::PI;
                x.sin() / x
            }
        }
        match self {
            Filter::Nearest | Filter::Box => {
                if x > -0.5 && x <= 0.5 {
                    1.0
                } else {
                    0.0
                }
            }
            Filter::Bilinear => {
                let x = x.abs();
                if x < 1.0 { 1.0 - x } else { 0.0 }
            }
            Filter::Hamming => {
                let x = x.abs();
                if x == 0.0 {
                    1.0
                } else if x >= 1.0 {
                    0.0
                } else {
                    let px = x * std::f64::consts::PI;
                    px.sin() / px * (0.54 + 0.46 * px.cos())
                }
            }
            Filter::Bicubic => {
                const A: f64 = -0.5;
                let x = x.abs();
                if x < 1.0 {
                    ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0
                } else if x < 2.0 {
                    (((x - 5.0) * x + 8.0) * x - 4.0) * A
                } else {
                    0.0
                }
            }
            Filter::Lanczos => {
                if x > -3.0 && x < 3.0 {
                    sinc(x) * sinc(x / 3.0)
                } else {
                    0.0
                }
            }
        }
    }
}

const PRECISION_BITS: u32 = 32 - 8 - 2;

/// Per output pixel: the first input pixel, and the fixed-point weights from there on.
struct Coeffs {
    bounds: Vec<(usize, usize)>,
    ksize: usize,
    k: Vec<i32>,
}

/// Pillow's `precompute_coeffs` + `normalize_coeffs_8bpc` for `in_size` → `out_size`.
fn coeffs(in_size: usize, out_size: usize, filter: Filter) -> Coeffs {
    let scale = in_size as f64 / out_size as f64;
    let filterscale = scale.max(1.0);
    let support = filter.support() * filterscale;
    let ksize = support.ceil() as usize * 2 + 1;
    let mut bounds = Vec::with_capacity(out_size);
    let mut k = vec![0i32; out_size * ksize];
    let mut w = vec![0f64; ksize];
    for xx in 0..out_size {
        let center = (xx as f64 + 0.5) * scale;
        let ss = 1.0 / filterscale;
        // C's (int) cast truncates toward zero.
        let xmin = ((center - support + 0.5) as i64).max(0) as usize;
        let xmax = ((center + support + 0.5) as i64).min(in_size as i64) as usize - xmin;
        let mut ww = 0.0;
        for (x, wx) in w.iter_mut().enumerate().take(xmax) {
            *wx = filter.weight((x as f64 + xmin as f64 - center + 0.5) * ss);
            ww += *wx;
        }
        for (x, wx) in w.iter().enumerate().take(xmax) {
            let v = if ww != 0.0 { wx / ww } else { *wx };
            k[xx * ksize + x] = if v < 0.0 {
                (-0.5 + v * (1u32 << PRECISION_BITS) as f64) as i32
            } else {
                (0.5 + v * (1u32 << PRECISION_BITS) as f64) as i32
            };
        }
        bounds.push((xmin, xmax));
    }
    Coeffs { bounds, ksize, k }
}

fn clip8(v: i32) -> u8 {
    (v >> PRECISION_BITS).clamp(0, 255) as u8
}

/// `img.resize((w, h), filter)` as Pillow computes it on an RGB image.
pub fn resize(img: &RgbImage, w: u32, h: u32, filter: Filter) -> RgbImage {
    let (iw, ih) = img.dimensions();
    if (iw, ih) == (w, h) {
        return img.clone();
    }
    if filter == Filter::Nearest {
        // Pillow resizes with NEAREST by an affine transform sampling pixel centres.
        let (sx, sy) = (iw as f64 / w as f64, ih as f64 / h as f64);
        return ImageBuffer::from_fn(w, h, |x, y| {
            let xi = (((x as f64 + 0.5) * sx) as u32).min(iw - 1);
            let yi = (((y as f64 + 0.5) * sy) as u32).min(ih - 1);
            *img.get_pixel(xi, yi)
        });
    }
    // Pillow 13 runs the vertical pass first when the height shrinks by more than twice what
    // the width does (`ImagingResampleInner`); earlier Pillow always went horizontal first. The
    // order changes the result: each pass rounds to 8 bits.
    let (dh, dw) = (ih as i64 - h as i64, iw as i64 - w as i64);
    let vertical_first = dh > 0 && dh > dw * 2;
    if vertical_first {
        let tmp = if h != ih {
            pass(img, h, filter, false)
        } else {
            img.clone()
        };
        if w != iw {
            pass(&tmp, w, filter, true)
        } else {
            tmp
        }
    } else {
        let tmp = if w != iw {
            pass(img, w, filter, true)
        } else {
            img.clone()
        };
        if h != ih {
            pass(&tmp, h, filter, false)
        } else {
            tmp
        }
    }
}

/// One separable pass to `out` pixels along the width (`horizontal`) or the height.
fn pass(src: &RgbImage, out: u32, filter: Filter, horizontal: bool) -> RgbImage {
    let (sw, sh) = src.dimensions();
    let c = coeffs(
        if horizontal { sw } else { sh } as usize,
        out as usize,
        filter,
    );
    let (w, h) = if horizontal { (out, sh) } else { (sw, out) };
    ImageBuffer::from_fn(w, h, |x, y| {
        let at = if horizontal { x } else { y } as usize;
        let (start, n) = c.bounds[at];
        let k = &c.k[at * c.ksize..];
        let mut ss = [1i32 << (PRECISION_BITS - 1); 3];
        for (i, ki) in k.iter().enumerate().take(n) {
            let p = if horizontal {
                src.get_pixel((start + i) as u32, y).0
            } else {
                src.get_pixel(x, (start + i) as u32).0
            };
            for ch in 0..3 {
                ss[ch] += p[ch] as i32 * ki;
            }
        }
        Rgb([clip8(ss[0]), clip8(ss[1]), clip8(ss[2])])
    })
}

/// transformers' `convert_to_rgb`: an image with transparency is composited onto opaque white
/// (Pillow's `alpha_composite`, integer arithmetic as in `AlphaComposite.c`); others as
/// `convert("RGB")` (grey replicated).
pub fn to_rgb(img: &image::DynamicImage) -> RgbImage {
    if !img.color().has_alpha() {
        return img.to_rgb8();
    }
    let rgba = img.to_rgba8();
    ImageBuffer::from_fn(rgba.width(), rgba.height(), |x, y| {
        let p = rgba.get_pixel(x, y).0;
        let a = p[3] as u32;
        if a == 0 {
            return Rgb([255, 255, 255]);
        }
        // Pillow: blend = dst.a * (255 - src.a); outa255 = src.a * 255 + blend;
        // coef1 = src.a * 255 * 255 * (1 << 7) / outa255; coef2 = 255 * (1 << 7) - coef1.
        const PB: u32 = 7;
        let outa255 = a * 255 + 255 * (255 - a);
        let coef1 = a * 255 * 255 * (1 << PB) / outa255;
        let coef2 = 255 * (1 << PB) - coef1;
        let ch = |s: u8| {
            let tmp = s as u32 * coef1 + 255 * coef2 + (0x80 << PB);
            (((tmp >> 8) + tmp) >> 8 >> PB) as u8
        };
        Rgb([ch(p[0]), ch(p[1]), ch(p[2])])
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_size_is_a_copy_and_weights_sum_to_one() {
        let img = RgbImage::from_fn(5, 3, |x, y| Rgb([x as u8 * 40, y as u8 * 70, 9]));
        assert_eq!(resize(&img, 5, 3, Filter::Bicubic), img);
        for f in [
            Filter::Bicubic,
            Filter::Bilinear,
            Filter::Lanczos,
            Filter::Box,
        ] {
            let c = coeffs(57, 28, f);
            for (i, _) in c.bounds.iter().enumerate() {
                let s: i64 = c.k[i * c.ksize..(i + 1) * c.ksize]
                    .iter()
                    .map(|&k| k as i64)
                    .sum();
                assert!(
                    (s - (1 << PRECISION_BITS)).abs() < c.ksize as i64,
                    "{f:?} row {i}: {s}"
                );
            }
        }
    }

    #[test]
    fn a_flat_image_stays_flat() {
        let img = RgbImage::from_pixel(31, 57, Rgb([200, 13, 77]));
        let out = resize(&img, 28, 28, Filter::Lanczos);
        assert!(out.pixels().all(|p| p.0 == [200, 13, 77]));
    }
}
