//! normtune: branch-free f32 `exp` and GELU that the compiler can vectorise, and the chunk
//! loops of the elementwise ops compiled once more for AVX2 + FMA (picked at run time).
//!
//! Upstream flex calls `f32::exp` (a libm call per element) and `libm::erff` (a branchy scalar
//! routine) inside its elementwise loops, so GELU, its backward and softmax's `exp` ran one
//! element at a time. PyTorch's CPU kernels evaluate the same functions with vector
//! polynomials: its `Vectorized<float>::erf` is Abramowitz & Stegun 7.1.26 (absolute error
//! below 1.5e-7), and its `exp` a Cephes-style polynomial. These are the same formulas, written
//! as plain arithmetic and bit operations so that LLVM's loop vectoriser turns them into
//! 4-wide (SSE2, wasm) or 8-wide (AVX2) code.

/// `e^x` for f32: Cephes `expf` (range reduction by `ln 2` in two parts, degree-5 polynomial),
/// relative error about 1 ulp. Branch-free. Overflows to `+inf` above ~88.72, underflows
/// through subnormals to `0` below ~-103.9; NaN in, NaN out.
#[inline(always)]
pub fn exp_f32(x: f32) -> f32 {
    const LOG2E: f32 = core::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_359_375; // exact in 9 bits
    const LN2_LO: f32 = -2.121_944_4e-4;
    // 1.5 * 2^23: adding it rounds to the nearest integer and leaves that integer in the low
    // mantissa bits.
    const ROUND: f32 = 12_582_912.0;
    // Beyond these exp over/underflows anyway; clamping keeps the integer part in range.
    // Written as selects, not `min`/`max`, so that a NaN passes through.
    let xc = if x > 89.0 { 89.0 } else { x };
    let xc = if xc < -104.0 { -104.0 } else { xc };
    let t = xc * LOG2E + ROUND;
    let n = t - ROUND;
    let ni = (t.to_bits() as i32).wrapping_sub(0x4B40_0000);
    let r = xc - n * LN2_HI - n * LN2_LO;
    let r2 = r * r;
    let p = ((((1.987_569_2e-4 * r + 1.398_199_9e-3) * r + 8.333_452e-3) * r + 4.166_579_6e-2) * r
        + 1.666_666_5e-1)
        * r
        + 5.000_000_1e-1;
    let y = p * r2 + r + 1.0;
    // 2^n as two normal factors (n is in [-150, 129]), so results near the ends of the range
    // come out as subnormals / infinity instead of a wrapped exponent.
    let n1 = ni >> 1;
    let n2 = ni.wrapping_sub(n1);
    let s1 = f32::from_bits((n1.wrapping_add(127) as u32) << 23);
    let s2 = f32::from_bits((n2.wrapping_add(127) as u32) << 23);
    y * s1 * s2
}

/// The logistic sigmoid `1 / (1 + e^-x)` for f32, branch-free: `e = exp(-|x|) <= 1`, so
/// neither side overflows; `1 / (1 + e)` for `x >= 0` and `e / (1 + e)` below, chosen by a
/// select (the same two forms flex's scalar version picks with a branch). NaN in, NaN out.
#[inline(always)]
pub fn sigmoid_f32(x: f32) -> f32 {
    let e = exp_f32(-x.abs());
    let s = 1.0 / (1.0 + e);
    if x >= 0.0 { s } else { e * s }
}

const FRAC_1_SQRT_2: f32 = core::f32::consts::FRAC_1_SQRT_2;
// 1 / sqrt(2 pi)
const FRAC_1_SQRT_2PI: f32 = 0.398_942_3;

/// `(erf(z), exp(-z^2))` by Abramowitz & Stegun 7.1.26 (|error| < 1.5e-7), the form PyTorch's
/// vectorised CPU `erf` uses; the Gaussian factor is returned too, since GELU's backward needs
/// the same exponential.
#[inline(always)]
fn erf_and_gauss(z: f32) -> (f32, f32) {
    const P: f32 = 0.327_591_1;
    const A1: f32 = 0.254_829_6;
    const A2: f32 = -0.284_496_72;
    const A3: f32 = 1.421_413_8;
    const A4: f32 = -1.453_152_1;
    const A5: f32 = 1.061_405_4;
    let a = z.abs();
    let t = 1.0 / (1.0 + P * a);
    let poly = ((((A5 * t + A4) * t + A3) * t + A2) * t + A1) * t;
    let g = exp_f32(-a * a);
    ((1.0 - poly * g).copysign(z), g)
}

/// Exact-form GELU, `x/2 (1 + erf(x/sqrt 2))`, with the A&S erf (absolute error of the result
/// below `|x| * 7.5e-8`).
#[inline(always)]
pub fn gelu_f32(x: f32) -> f32 {
    let (erf, _) = erf_and_gauss(x * FRAC_1_SQRT_2);
    0.5 * x * (1.0 + erf)
}

/// `grad * d gelu(x)/dx = grad * (Phi(x) + x phi(x))`, sharing one exponential between the
/// normal CDF and density.
#[inline(always)]
pub fn gelu_grad_f32(x: f32, grad: f32) -> f32 {
    let (erf, gauss) = erf_and_gauss(x * FRAC_1_SQRT_2);
    grad * (0.5 * (1.0 + erf) + x * FRAC_1_SQRT_2PI * gauss)
}

// ---------------------------------------------------------------------------------------------
// Chunk loops, with an AVX2 + FMA copy on x86-64 chosen at run time. The op is inlined into
// each copy, so branch-free ops (the functions above, arithmetic) are vectorised 8 wide there.
// Plain `a * b + c` is never contracted into an FMA (Rust forbids it), so the AVX2 copy gives
// bit-identical results for arithmetic; only the vector width differs.
// ---------------------------------------------------------------------------------------------

#[inline(always)]
fn map_loop<E: Copy, Op: Fn(E) -> E>(data: &mut [E], op: &Op) {
    for x in data.iter_mut() {
        *x = op(*x);
    }
}

#[inline(always)]
fn map_into_loop<E: Copy, Op: Fn(E) -> E>(dst: &mut [core::mem::MaybeUninit<E>], src: &[E], op: &Op) {
    for (d, &s) in dst.iter_mut().zip(src) {
        d.write(op(s));
    }
}

#[inline(always)]
fn zip_loop<E: Copy, Op: Fn(E, E) -> E>(dst: &mut [E], src: &[E], op: &Op) {
    for (l, &r) in dst.iter_mut().zip(src) {
        *l = op(*l, r);
    }
}

#[inline(always)]
fn zip_into_loop<E: Copy, Op: Fn(E, E) -> E>(
    dst: &mut [core::mem::MaybeUninit<E>],
    a: &[E],
    b: &[E],
    op: &Op,
) {
    for ((d, &x), &y) in dst.iter_mut().zip(a).zip(b) {
        d.write(op(x, y));
    }
}

#[cfg(all(target_arch = "x86_64", feature = "std"))]
mod avx2 {
    use core::mem::MaybeUninit;

    #[target_feature(enable = "avx2,fma")]
    pub(super) fn map<E: Copy, Op: Fn(E) -> E>(data: &mut [E], op: &Op) {
        super::map_loop(data, op)
    }
    #[target_feature(enable = "avx2,fma")]
    pub(super) fn map_into<E: Copy, Op: Fn(E) -> E>(dst: &mut [MaybeUninit<E>], src: &[E], op: &Op) {
        super::map_into_loop(dst, src, op)
    }
    #[target_feature(enable = "avx2,fma")]
    pub(super) fn zip<E: Copy, Op: Fn(E, E) -> E>(dst: &mut [E], src: &[E], op: &Op) {
        super::zip_loop(dst, src, op)
    }
    #[target_feature(enable = "avx2,fma")]
    pub(super) fn zip_into<E: Copy, Op: Fn(E, E) -> E>(
        dst: &mut [MaybeUninit<E>],
        a: &[E],
        b: &[E],
        op: &Op,
    ) {
        super::zip_into_loop(dst, a, b, op)
    }

    #[inline]
    pub(super) fn available() -> bool {
        std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
    }
}

/// `x = op(x)` over a slice.
#[inline]
pub(crate) fn map<E: Copy, Op: Fn(E) -> E>(data: &mut [E], op: &Op) {
    #[cfg(all(target_arch = "x86_64", feature = "std"))]
    if avx2::available() {
        // SAFETY: the CPU supports AVX2 and FMA (checked just above).
        return unsafe { avx2::map(data, op) };
    }
    map_loop(data, op)
}

/// `dst[i] = op(src[i])`; `dst` and `src` have the same length.
#[inline]
pub(crate) fn map_into<E: Copy, Op: Fn(E) -> E>(
    dst: &mut [core::mem::MaybeUninit<E>],
    src: &[E],
    op: &Op,
) {
    debug_assert_eq!(dst.len(), src.len());
    #[cfg(all(target_arch = "x86_64", feature = "std"))]
    if avx2::available() {
        // SAFETY: the CPU supports AVX2 and FMA (checked just above).
        return unsafe { avx2::map_into(dst, src, op) };
    }
    map_into_loop(dst, src, op)
}

/// `l = op(l, r)` over two slices of the same length.
#[inline]
pub(crate) fn zip<E: Copy, Op: Fn(E, E) -> E>(dst: &mut [E], src: &[E], op: &Op) {
    debug_assert_eq!(dst.len(), src.len());
    #[cfg(all(target_arch = "x86_64", feature = "std"))]
    if avx2::available() {
        // SAFETY: the CPU supports AVX2 and FMA (checked just above).
        return unsafe { avx2::zip(dst, src, op) };
    }
    zip_loop(dst, src, op)
}

/// `dst[i] = op(a[i], b[i])`; all three have the same length.
#[inline]
pub(crate) fn zip_into<E: Copy, Op: Fn(E, E) -> E>(
    dst: &mut [core::mem::MaybeUninit<E>],
    a: &[E],
    b: &[E],
    op: &Op,
) {
    debug_assert!(dst.len() == a.len() && a.len() == b.len());
    #[cfg(all(target_arch = "x86_64", feature = "std"))]
    if avx2::available() {
        // SAFETY: the CPU supports AVX2 and FMA (checked just above).
        return unsafe { avx2::zip_into(dst, a, b, op) };
    }
    zip_into_loop(dst, a, b, op)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_matches_libm_within_2_ulp_and_handles_the_ends() {
        let mut x = -103.0f32;
        let mut worst = 0.0f64;
        while x < 88.7 {
            let want = libm::exp(x as f64);
            let got = exp_f32(x) as f64;
            // relative error in units of f32's epsilon, where the result is normal
            if want > f32::MIN_POSITIVE as f64 {
                worst = worst.max(((got - want) / want).abs() / f32::EPSILON as f64);
            } else {
                assert!((got - want).abs() < 2.0 * 1.4e-45, "exp({x}) = {got}, want {want}");
            }
            x += 0.0137;
        }
        assert!(worst < 2.0, "worst relative error {worst} ulp");
        assert_eq!(exp_f32(0.0), 1.0);
        assert_eq!(exp_f32(-1.0e9), 0.0);
        assert_eq!(exp_f32(f32::NEG_INFINITY), 0.0);
        assert_eq!(exp_f32(100.0), f32::INFINITY);
        assert_eq!(exp_f32(f32::INFINITY), f32::INFINITY);
        assert!(exp_f32(f32::NAN).is_nan());
    }

    #[test]
    fn sigmoid_matches_the_f64_form_and_handles_the_ends() {
        let mut x = -110.0f32;
        let mut worst = 0.0f64;
        while x < 110.0 {
            let want = 1.0 / (1.0 + libm::exp(-(x as f64)));
            let got = sigmoid_f32(x) as f64;
            if want > f32::MIN_POSITIVE as f64 {
                worst = worst.max(((got - want) / want).abs() / f32::EPSILON as f64);
            } else {
                assert!((got - want).abs() < 2.0 * 1.4e-45, "sigmoid({x}) = {got}, want {want}");
            }
            x += 0.0113;
        }
        assert!(worst < 3.0, "worst relative error {worst} ulp");
        assert_eq!(sigmoid_f32(0.0), 0.5);
        assert_eq!(sigmoid_f32(f32::INFINITY), 1.0);
        assert_eq!(sigmoid_f32(f32::NEG_INFINITY), 0.0);
        assert!(sigmoid_f32(f32::NAN).is_nan());
    }

    #[test]
    fn gelu_and_its_gradient_match_the_erf_form() {
        let mut x = -12.0f32;
        while x < 12.0 {
            let xd = x as f64;
            let cdf = 0.5 * (1.0 + libm::erf(xd / core::f64::consts::SQRT_2));
            let pdf = (-0.5 * xd * xd).exp() / (2.0 * core::f64::consts::PI).sqrt();
            let want = xd * cdf;
            let got = gelu_f32(x) as f64;
            assert!((got - want).abs() <= 2e-7 * xd.abs().max(1.0), "gelu({x}) = {got}, want {want}");
            let want_grad = 0.7 * (cdf + xd * pdf);
            let got_grad = gelu_grad_f32(x, 0.7) as f64;
            assert!((got_grad - want_grad).abs() <= 3e-7, "gelu'({x}) = {got_grad}, want {want_grad}");
            x += 0.00731;
        }
        assert!(gelu_f32(f32::NAN).is_nan());
        assert_eq!(gelu_f32(-1.0e9), 0.0);
        assert_eq!(gelu_f32(1.0e9), 1.0e9);
    }

    #[test]
    fn dispatched_loops_equal_plain_loops() {
        let src: alloc::vec::Vec<f32> = (0..1003).map(|i| (i as f32 - 500.0) * 0.013).collect();
        let mut a = src.clone();
        map(&mut a, &|x: f32| x * 1.5 + 0.25);
        let want: alloc::vec::Vec<f32> = src.iter().map(|&x| x * 1.5 + 0.25).collect();
        assert_eq!(a, want);
        let mut b = alloc::vec::Vec::with_capacity(src.len());
        map_into(&mut b.spare_capacity_mut()[..src.len()], &src, &gelu_f32);
        // SAFETY: every element was written by `map_into`.
        unsafe { b.set_len(src.len()) };
        let want: alloc::vec::Vec<f32> = src.iter().map(|&x| gelu_f32(x)).collect();
        assert_eq!(b, want);
        let mut c = src.clone();
        zip(&mut c, &want, &|x, g| gelu_grad_f32(x, g));
        let mut d = alloc::vec::Vec::with_capacity(src.len());
        zip_into(&mut d.spare_capacity_mut()[..src.len()], &src, &want, &gelu_grad_f32);
        // SAFETY: every element was written by `zip_into`.
        unsafe { d.set_len(src.len()) };
        assert_eq!(c, d);
    }
}
