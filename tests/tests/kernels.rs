//! The CPU kernels normtune patches into burn (core/vendor/burn-flex: vectorised GELU and exp;
//! core/vendor/burn-autodiff: softmax, log-softmax, LayerNorm and attention as single
//! differentiable ops)
//! against PyTorch's float64 values on the same f32 inputs (`fixtures/make_kernel_fixtures.py`):
//! forward values and the gradients of `sum(f(x) * g)`. Matrix products in every operand
//! layout (burn-flex copies some before `gemm` packs them) against an f64 product computed here;
//! flex's threaded copies, in-place sums and chunked random draws against values computed here.

use normtune_core::burn::tensor::activation::{gelu, log_softmax, silu, softmax};
use normtune_core::burn::tensor::module::layer_norm;
use normtune_core::burn::tensor::{Device, Tensor, TensorData};
use normtune_tests::*;

fn device() -> Device {
    Device::flex().autodiff()
}

fn input<const D: usize>(name: &str) -> Tensor<D> {
    reference("kernels", name).float::<D>(&device())
}

/// Each element within `tol(index, expected)` of the reference, reporting the worst ratio.
fn assert_each<const D: usize>(
    what: &str,
    actual: Tensor<D>,
    name: &str,
    tol: impl Fn(usize, f32) -> f32,
) {
    let expected = reference("kernels", name);
    let (shape, vals) = values(actual);
    assert_eq!(shape, expected.shape, "{what}: shape");
    let (mut worst, mut at) = (0f32, 0);
    for (i, (&a, &e)) in vals.iter().zip(&expected.values).enumerate() {
        assert!(a.is_finite() == e.is_finite(), "{what}[{i}]: {a} vs {e}");
        let r = (a - e).abs() / tol(i, e);
        if r > worst {
            (worst, at) = (r, i);
        }
    }
    println!("{what}: worst error {worst:.2} of tolerance (element {at})");
    assert!(
        worst <= 1.0,
        "{what}[{at}]: {} vs reference {} (error {worst:.2} x tolerance)",
        vals[at],
        expected.values[at]
    );
}

#[test]
fn gelu_and_its_gradient_match_pytorch() {
    let x = input::<1>("gelu_x").require_grad();
    let y = gelu(x.clone());
    let grads = (y.clone() * input::<1>("gelu_g")).sum().backward();
    let xs = reference("kernels", "gelu_x").values;
    assert!(
        xs.iter().any(|v| v.abs() >= 10.0),
        "the grid reaches the tails"
    );
    // GELU = x/2 (1 + erf): Abramowitz & Stegun's erf is within 1.5e-7 and `1 + erf` rounds
    // within 2.4e-7, so |x|/2 (1.5e-7 + 2.4e-7), plus the final product's rounding.
    let tol = |i: usize, e: f32| 2e-7 * xs[i].abs() + 1.2e-7 * e.abs() + 1e-12;
    assert_each("gelu", y, "gelu_y", tol);
    // |g| <= 1: the CDF term within 7.5e-8, the density term and rounding within 2e-7.
    assert_each(
        "gelu'",
        x.grad(&grads).expect("x has a gradient"),
        "gelu_dx",
        |_, _| 3e-7,
    );
}

#[test]
fn silu_and_its_gradient_match_pytorch() {
    // SiLU = x · sigmoid(x) (burn composes it; flex's f32 sigmoid is `fastmath::sigmoid_f32`).
    let x = input::<1>("silu_x").require_grad();
    let y = silu(x.clone());
    let grads = (y.clone() * input::<1>("silu_g")).sum().backward();
    let xs = reference("kernels", "silu_x").values;
    assert!(xs.iter().any(|v| *v <= -30.0), "the grid reaches the tails");
    // sigmoid within ~3 ulp (exp ~1 ulp, the add and the division), the product one more.
    assert_each("silu", y, "silu_y", |_, e| 5e-7 * e.abs() + 1e-30);
    // |g| <= 1: g · (s + x s (1 - s)); the terms' roundings relative to s + |x| s (1 - s), and
    // `1 - s` carries s's absolute error (a few ulp of s, 2.4e-7 s) times |x| s. Near saturation
    // that is all of it: at x = 16.84 an f32 sigmoid (libm's too) is exactly 1, so x (1 - s)
    // (7.8e-7 there) is lost.
    let tol = |i: usize, _: f32| {
        let x = xs[i] as f64;
        let s = 1.0 / (1.0 + (-x).exp());
        (6e-7 * (s + x.abs() * s * (1.0 - s)) + 2.4e-7 * x.abs() * s + 1e-30) as f32
    };
    assert_each(
        "silu'",
        x.grad(&grads).expect("x has a gradient"),
        "silu_dx",
        tol,
    );
}

#[test]
fn exp_matches_pytorch_over_the_whole_f32_range() {
    // 3 ulp relative where the result is normal; a few subnormal steps below ~1.2e-38.
    assert_each("exp", input::<1>("exp_x").exp(), "exp_y", |_, e| {
        3.6e-7 * e.abs() + 3e-45
    });
}

#[test]
fn softmax_with_a_mask_and_its_gradient_match_pytorch() {
    let x = input::<4>("sm_x").require_grad();
    let y = softmax(x.clone(), 3);
    let grads = (y.clone() * input::<4>("sm_g")).sum().backward();
    assert_each("softmax", y, "sm_y", |_, _| 1e-6);
    assert_each(
        "softmax'",
        x.grad(&grads).expect("x has a gradient"),
        "sm_dx",
        |_, _| 2e-6,
    );
}

#[test]
fn log_softmax_and_its_gradient_match_pytorch() {
    let x = input::<3>("lsm_x").require_grad();
    let y = log_softmax(x.clone(), 2);
    let grads = (y.clone() * input::<3>("lsm_g")).sum().backward();
    assert_each("log_softmax", y, "lsm_y", |_, e| 1e-6 * e.abs().max(1.0));
    assert_each(
        "log_softmax'",
        x.grad(&grads).expect("x has a gradient"),
        "lsm_dx",
        |_, _| 1e-5,
    );
}

#[test]
fn layer_norm_and_its_gradients_match_pytorch() {
    for (name, eps) in [("ln5", 1e-5), ("ln12", 1e-12)] {
        // Tuned LayerNorm: gradients for the input, gamma and beta.
        let x = input::<3>("ln_x").require_grad();
        let gamma = input::<1>("ln_gamma").require_grad();
        let beta = input::<1>("ln_beta").require_grad();
        let y = layer_norm(x.clone(), gamma.clone(), Some(beta.clone()), eps);
        let grads = (y.clone() * input::<3>("ln_g")).sum().backward();
        let tol = |_: usize, e: f32| 2e-6 * e.abs().max(1.0);
        assert_each(&format!("{name} y"), y, &format!("{name}_y"), tol);
        assert_each(
            &format!("{name} dx"),
            x.grad(&grads).unwrap(),
            &format!("{name}_dx"),
            tol,
        );
        let dgamma = gamma.grad(&grads).unwrap();
        assert_each(
            &format!("{name} dgamma"),
            dgamma,
            &format!("{name}_dgamma"),
            tol,
        );
        let dbeta = beta.grad(&grads).unwrap();
        assert_each(
            &format!("{name} dbeta"),
            dbeta,
            &format!("{name}_dbeta"),
            tol,
        );

        // Frozen LayerNorm (gamma and beta constants): only the input's gradient.
        let x = input::<3>("ln_x").require_grad();
        let y = layer_norm(
            x.clone(),
            input::<1>("ln_gamma"),
            Some(input::<1>("ln_beta")),
            eps,
        );
        let grads = (y * input::<3>("ln_g")).sum().backward();
        let what = format!("{name} dx (frozen)");
        assert_each(&what, x.grad(&grads).unwrap(), &format!("{name}_dx"), tol);

        // No beta: the output shifts by beta, the input's and gamma's gradients do not change.
        let x = input::<3>("ln_x").require_grad();
        let gamma = input::<1>("ln_gamma").require_grad();
        let y = layer_norm(x.clone(), gamma.clone(), None, eps);
        let grads = (y.clone() * input::<3>("ln_g")).sum().backward();
        let shifted = y + input::<1>("ln_beta").unsqueeze::<3>();
        assert_each(
            &format!("{name} y (no beta) + beta"),
            shifted,
            &format!("{name}_y"),
            tol,
        );
        let what = format!("{name} dx (no beta)");
        assert_each(&what, x.grad(&grads).unwrap(), &format!("{name}_dx"), tol);
        let what = format!("{name} dgamma (no beta)");
        assert_each(
            &what,
            gamma.grad(&grads).unwrap(),
            &format!("{name}_dgamma"),
            tol,
        );
    }
}

/// Attention with `train.recompute_attention` is one tracked op (patched burn-autodiff) that
/// recomputes the probabilities in the backward pass: its values and gradients are PyTorch's
/// (float64, HF's eager attention with an additive padding mask), and bit for bit those of the
/// composite `attention` runs with it off.
#[test]
fn attention_and_its_gradients_match_pytorch_and_the_composite() {
    let run = |fused: bool| {
        normtune_core::models::common::set_attention_recompute(fused);
        let (q, k, v) = (
            input::<4>("attn_q").require_grad(),
            input::<4>("attn_k").require_grad(),
            input::<4>("attn_v").require_grad(),
        );
        let mask = input::<4>("attn_mask");
        let y =
            normtune_core::models::common::attention(q.clone(), k.clone(), v.clone(), Some(&mask));
        let grads = (y.clone() * input::<4>("attn_g")).sum().backward();
        let (dq, dk, dv) = (
            q.grad(&grads).expect("q has a gradient"),
            k.grad(&grads).expect("k has a gradient"),
            v.grad(&grads).expect("v has a gradient"),
        );
        normtune_core::models::common::set_attention_recompute(false);
        [y, dq, dk, dv]
    };
    let [y, dq, dk, dv] = run(true);
    let tol = |_: usize, e: f32| 2e-6 * e.abs().max(1.0);
    assert_each("attention", y.clone(), "attn_y", tol);
    assert_each("attention dq", dq.clone(), "attn_dq", tol);
    assert_each("attention dk", dk.clone(), "attn_dk", tol);
    assert_each("attention dv", dv.clone(), "attn_dv", tol);
    let dk_masked = values(dk.clone()).1;
    assert!(
        dk_masked[7 * 8..9 * 8].iter().all(|&g| g == 0.0),
        "masked keys get no gradient"
    );
    for (what, fused, composite) in [y, dq, dk, dv]
        .into_iter()
        .zip(run(false))
        .zip(["y", "dq", "dk", "dv"])
        .map(|((a, b), w)| (w, a, b))
    {
        assert_eq!(
            values(fused),
            values(composite),
            "{what}: fused against composite"
        );
    }
}

/// `n` values in [-1, 1) from a fixed linear congruential sequence.
fn lcg(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed;
    (0..n)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

/// The row-major values of `v [r, c]`'s transpose, `[c, r]`.
fn transposed(v: &[f32], r: usize, c: usize) -> Vec<f32> {
    let mut out = vec![0f32; r * c];
    for i in 0..r {
        for j in 0..c {
            out[j * r + i] = v[i * c + j];
        }
    }
    out
}

/// `a [m, k] · b [k, n]` in f64 from row-major values.
fn product_f64(a: &[f32], b: &[f32], m: usize, k: usize, n: usize) -> Vec<f64> {
    let mut out = vec![0f64; m * n];
    for i in 0..m {
        for p in 0..k {
            let x = a[i * k + p] as f64;
            for j in 0..n {
                out[i * n + j] += x * b[p * n + j] as f64;
            }
        }
    }
    out
}

/// burn-flex's patched products: a row-major × transposed-view product (every linear layer's
/// input gradient) is computed column-major and copied back (`column_major_out_pays`, taken
/// here: 130 rows against 300 × 200; `NORMTUNE_FLEX_COLMAJOR=0` turns it off), and
/// `relayout_for_gemm` (off by default, `NORMTUNE_FLEX_RELAYOUT=1`; this test passes with it on
/// too) copies a row-major left operand column-major. Every layout of both operands (and a linear layer's input
/// gradient, `g · Wᵀ` through a frozen weight) must give the same product, within f32
/// rounding of the f64 one, and the same bits as the plain row-major × row-major product.
#[test]
fn matrix_products_are_the_same_in_every_operand_layout() {
    let device = device();
    let (m, k, n) = (130, 300, 200);
    let (a, b) = (lcg(m * k, 1), lcg(k * n, 2));
    let expected = product_f64(&a, &b, m, k, n);
    let row = |v: &[f32], r: usize, c: usize| Tensor::<1>::from_floats(v, &device).reshape([r, c]);
    // The same matrices stored transposed, seen through `transpose()` (column-major views).
    let t = |v: &[f32], r: usize, c: usize| row(&transposed(v, r, c), c, r).transpose();
    let plain = values(row(&a, m, k).matmul(row(&b, k, n))).1;
    for (what, y) in [
        ("row × column-major", row(&a, m, k).matmul(t(&b, k, n))),
        ("column × row-major", t(&a, m, k).matmul(row(&b, k, n))),
        ("column × column-major", t(&a, m, k).matmul(t(&b, k, n))),
        (
            "batched row × broadcast column-major",
            row(&a, m, k)
                .reshape([1, m, k])
                .matmul(t(&b, k, n).unsqueeze::<3>())
                .reshape([m, n]),
        ),
    ] {
        let (shape, got) = values(y);
        assert_eq!(shape.iter().product::<usize>(), m * n, "{what}: shape");
        assert_eq!(got, plain, "{what}: not the bits of the row-major product");
    }
    let worst = plain
        .iter()
        .zip(&expected)
        .map(|(&g, &e)| (g as f64 - e).abs())
        .fold(0f64, f64::max);
    // |a|, |b| < 1 and k = 300 terms: f32 accumulation within k·2⁻²⁴·Σ|ab| ≤ 300 · 6e-8 · 300.
    assert!(worst < 5.4e-3, "product off the f64 one by {worst}");
    // A linear layer's input gradient through a frozen weight: dx = g · Wᵀ.
    let w = row(&b, k, n);
    let x = row(&a, m, k).require_grad();
    let g = lcg(m * n, 3);
    let grads = (x.clone().matmul(w) * row(&g, m, n)).sum().backward();
    let dx = values(x.grad(&grads).expect("x has a gradient")).1;
    let expected_dx = product_f64(&g, &transposed(&b, k, n), m, n, k);
    let worst = dx
        .iter()
        .zip(&expected_dx)
        .map(|(&g, &e)| (g as f64 - e).abs())
        .fold(0f64, f64::max);
    assert!(worst < 4e-3, "dx off the f64 one by {worst}");
}

/// burn-flex no longer zeroes a product's output before `gemm` writes it (`FlexTensor::written`,
/// a single-threaded `memset` per product before): every product must still write every element.
/// Each product below lands in the allocation another product of its size just freed, which held
/// non-zero values, and must come out exact: zeros for an empty inner dimension (`k = 0`, where
/// `gemm` writes `0` instead of summing), the f64 product otherwise, on the 2-D path, the
/// column-major path and the batched paths (one threaded product per batch, and batches split
/// across threads), and with the output's columns split across threads.
#[test]
fn products_write_every_output_element() {
    let device = device();
    // Through `TensorData`: burn's `reshape` reads a 0 as "keep this dimension".
    let t = |v: &[f32], dims: [usize; 3]| {
        Tensor::<3>::from_data(TensorData::new(v.to_vec(), dims), &device)
    };
    let t2 = |v: &[f32], dims: [usize; 2]| {
        Tensor::<2>::from_data(TensorData::new(v.to_vec(), dims), &device)
    };
    // (batch, m, k, n, right operand transposed)
    for (batch, m, k, n, transpose) in [
        (1, 40, 0, 30, false),
        (6, 12, 0, 20, false),
        (1, 40, 50, 30, false),
        (1, 20, 64, 300, true), // m·(2k + n) < 2k·n: computed column-major
        (48, 40, 32, 40, false),
        (2, 200, 200, 200, false),
        // Fewer than 16 rows: the columns split across threads, one single-threaded product
        // each (2-D and batched, and a one-row product, which gemm alone runs on one thread).
        (1, 12, 600, 1_000, false),
        (2, 12, 600, 1_000, false),
        (1, 1, 600, 12_000, false),
    ] {
        // A product of the same output size with non-zero values, freed before the one checked.
        let (a, b) = (lcg(batch * m * 3, 7), lcg(batch * 3 * n, 8));
        let garbage = t(&a, [batch, m, 3]).matmul(t(&b, [batch, 3, n]));
        assert!(values(garbage.clone()).1.iter().any(|&v| v != 0.0));
        drop(garbage);
        let (a, b) = (lcg(batch * m * k, 1), lcg(batch * k * n, 2));
        let got = if batch == 1 {
            // Rank 2: the 2-D path, column-major when the right operand is a transposed view.
            let lhs = t2(&a, [m, k]);
            let rhs = if transpose {
                t2(&transposed(&b, k, n), [n, k]).transpose()
            } else {
                t2(&b, [k, n])
            };
            values(lhs.matmul(rhs)).1
        } else {
            values(t(&a, [batch, m, k]).matmul(t(&b, [batch, k, n]))).1
        };
        assert_eq!(got.len(), batch * m * n);
        let what = format!("[{batch}, {m}, {k}] x [{batch}, {k}, {n}]");
        for i in 0..batch {
            let expected = product_f64(
                &a[i * m * k..(i + 1) * m * k],
                &b[i * k * n..(i + 1) * k * n],
                m,
                k,
                n,
            );
            for (j, (&g, &e)) in got[i * m * n..(i + 1) * m * n]
                .iter()
                .zip(&expected)
                .enumerate()
            {
                // |a|, |b| < 1: f32 accumulation of k terms within k · 2⁻²⁴ · k.
                let tol = (k * k) as f64 * 6e-8 + 1e-7;
                assert!(
                    (g as f64 - e).abs() <= tol,
                    "{what}: batch {i} element {j} is {g}, the f64 product {e}"
                );
            }
        }
    }
}

/// burn-flex copies a transposed view into row-major order on both threads from 64 Ki elements
/// (upstream: 1 Mi). A `[300, 400]` matrix made contiguous through its transpose, and each of
/// its elementwise in-place sums (also threaded from 64 Ki elements now), must hold exactly the
/// values computed here.
#[test]
fn threaded_copies_and_in_place_sums_are_exact() {
    let device = Device::flex();
    let (r, c) = (300, 400);
    let (a, b) = (lcg(r * c, 11), lcg(r * c, 12));
    let t = Tensor::<2>::from_data(TensorData::new(a.clone(), [r, c]), &device)
        .transpose()
        .reshape([c * r]);
    assert_eq!(values(t).1, transposed(&a, r, c), "transposing copy");
    let x = Tensor::<1>::from_floats(a.as_slice(), &device);
    let y = Tensor::<1>::from_floats(b.as_slice(), &device);
    for (what, got, f) in [
        (
            "sum",
            x.clone() + y.clone(),
            (|p, q| p + q) as fn(f32, f32) -> f32,
        ),
        ("difference", x.clone() - y.clone(), |p, q| p - q),
        ("product", x.clone() * y.clone(), |p, q| p * q),
    ] {
        let expected: Vec<f32> = a.iter().zip(&b).map(|(&p, &q)| f(p, q)).collect();
        assert_eq!(values(got).1, expected, "{what}");
    }
}

/// burn-flex draws a random tensor of more than 64 Ki values in parallel chunks, each from its
/// own generator seeded in order from the device's (a LoRA dropout mask per adapted layer per
/// step): the same seed must give the same values, another seed others, every chunk its own
/// values, and the values must follow the distribution (1 Mi draws: bounds at > 6 standard
/// errors).
#[test]
fn large_random_tensors_repeat_under_a_seed_and_follow_their_distribution() {
    use normtune_core::burn::tensor::Distribution;
    let device = Device::flex();
    let n = 1 << 20;
    let draw = |seed: u64, d: Distribution| {
        device.seed(seed);
        values(Tensor::<1>::random([n], d, &device)).1
    };
    let mask = draw(42, Distribution::Bernoulli(0.9));
    assert_eq!(mask, draw(42, Distribution::Bernoulli(0.9)), "same seed");
    assert_ne!(mask, draw(43, Distribution::Bernoulli(0.9)), "another seed");
    assert!(
        mask.iter().all(|&v| v == 0.0 || v == 1.0),
        "a mask of 0 and 1"
    );
    let kept = mask.iter().filter(|&&v| v == 1.0).count() as f64 / n as f64;
    assert!((kept - 0.9).abs() < 2e-3, "kept {kept}, not 0.9");
    let chunk = 1 << 16;
    for (i, w) in mask
        .chunks(chunk)
        .collect::<Vec<_>>()
        .windows(2)
        .enumerate()
    {
        assert_ne!(w[0], w[1], "chunks {i} and {} hold the same values", i + 1);
    }
    let moments = |v: &[f32]| {
        let mean = v.iter().map(|&x| x as f64).sum::<f64>() / v.len() as f64;
        let var = v.iter().map(|&x| (x as f64 - mean).powi(2)).sum::<f64>() / v.len() as f64;
        (mean, var.sqrt())
    };
    let (mean, std) = moments(&draw(7, Distribution::Normal(0.5, 2.0)));
    assert!(
        (mean - 0.5).abs() < 0.015 && (std - 2.0).abs() < 0.015,
        "normal: {mean}, {std}"
    );
    let u = draw(7, Distribution::Uniform(-1.0, 1.0));
    assert!(
        u.iter().all(|&x| (-1.0..1.0).contains(&x)),
        "uniform out of [-1, 1)"
    );
    let (mean, std) = moments(&u);
    let sd = 1.0 / 3f64.sqrt();
    assert!(
        mean.abs() < 4e-3 && (std - sd).abs() < 4e-3,
        "uniform: {mean}, {std}"
    );
}

/// A table read twice, as a tied embedding is (looked up at the input, and a linear head over
/// it): `loss = Σ emb(W, ids) ⊙ A + Σ (H · Wᵀ) ⊙ B`, with repeated ids. Its gradient
/// `dW = scatter_add(A at ids) + Bᵀ · H` must hold whichever part is registered first (the
/// optimizer step inside the backward pass updates such a table only when both have been added),
/// and whichever layout the head's part has: `H · Wᵀ` leaves it a transposed view, `(W · Hᵀ)ᵀ`
/// (the LLaMA head of a trained table) a contiguous `[vocab, d]` tensor, into which the
/// embedding's backward adds its rows in place when it runs second (burn-autodiff's third
/// patch). Against an f64 sum computed here.
#[test]
fn a_tied_tables_gradient_sums_both_reads_in_either_order() {
    use normtune_core::burn::tensor::Int;
    use normtune_core::burn::tensor::module::embedding;
    let (vocab, d, rows, seq, heads) = (37, 12, 3, 7, 5);
    let w = lcg(vocab * d, 11);
    let a = lcg(rows * seq * d, 12);
    let h = lcg(heads * d, 13);
    let b = lcg(heads * vocab, 14);
    // Ids with repeats (each of 0..5 several times) and the last row of the table.
    let ids: Vec<i64> = (0..rows * seq)
        .map(|i| {
            if i % 4 == 3 {
                vocab as i64 - 1
            } else {
                (i % 5) as i64
            }
        })
        .collect();
    // The f64 reference.
    let mut expected = vec![0f64; vocab * d];
    for (r, &id) in ids.iter().enumerate() {
        for j in 0..d {
            expected[id as usize * d + j] += a[r * d + j] as f64;
        }
    }
    for v in 0..vocab {
        for j in 0..d {
            for i in 0..heads {
                expected[v * d + j] += b[i * vocab + v] as f64 * h[i * d + j] as f64;
            }
        }
    }
    for (head_first, contiguous_head) in
        [(true, false), (false, false), (true, true), (false, true)]
    {
        let dev = device();
        let wt =
            Tensor::<2>::from_data(TensorData::new(w.clone(), [vocab, d]), &dev).require_grad();
        let at = Tensor::<3>::from_data(TensorData::new(a.clone(), [rows, seq, d]), &dev);
        let ht = Tensor::<2>::from_data(TensorData::new(h.clone(), [heads, d]), &dev);
        // `Hᵀ` as data of its own, so the product that reads the table is one step from it,
        // as the lookup is (see below).
        let h_t: Vec<f32> = (0..d * heads)
            .map(|k| h[(k % heads) * d + k / heads])
            .collect();
        let htt = Tensor::<2>::from_data(TensorData::new(h_t, [d, heads]), &dev);
        let bt = Tensor::<2>::from_data(TensorData::new(b.clone(), [heads, vocab]), &dev);
        let idt = Tensor::<2, Int>::from_data(TensorData::new(ids.clone(), [rows, seq]), &dev);
        // Both reads of the table are at the same depth of the graph (the lookup, and the
        // transpose or the product that reads the table directly), and burn runs steps of
        // equal depth in the order its traversal from the loss reached them: the sum's right
        // operand first.
        let lookup = || (embedding(wt.clone(), idt.clone()) * at.clone()).sum();
        let head = || {
            let logits = if contiguous_head {
                wt.clone().matmul(htt.clone()).transpose()
            } else {
                ht.clone().matmul(wt.clone().transpose())
            };
            (logits * bt.clone()).sum()
        };
        let loss = if head_first {
            let l = lookup();
            l + head()
        } else {
            let hd = head();
            lookup() + hd
        };
        let grads = loss.backward();
        let (_, got) = values(wt.grad(&grads).unwrap());
        for (i, (&g, &e)) in got.iter().zip(&expected).enumerate() {
            assert!(
                ((g as f64) - e).abs() <= 1e-5 * (1.0 + e.abs()),
                "head first {head_first}, contiguous {contiguous_head}: dW[{i}] = {g}, expected {e}"
            );
        }
    }
}
