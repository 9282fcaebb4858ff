//! Pieces shared by the transformer families: activations by their HF names, multi-head
//! reshapes and scaled dot-product attention with an additive mask.

use burn::module::Module;
use burn::nn::conv::Conv2d;
use burn::nn::{Initializer, Linear, LinearConfig};
use burn::tensor::activation::{gelu, gelu_approximate, relu, sigmoid, softmax, tanh};
use burn::tensor::ops::AttentionModuleOptions;
use burn::tensor::{Device, Tensor};
use core::sync::atomic::{AtomicBool, Ordering};
use serde::{Deserialize, Serialize};

/// The activation a HF config names in `hidden_act`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum Activation {
    /// Exact (erf) GELU: HF `gelu`.
    #[default]
    #[serde(rename = "gelu")]
    Gelu,
    /// tanh-approximated GELU: HF `gelu_new`, `gelu_pytorch_tanh`, `gelu_fast`.
    #[serde(rename = "gelu_new", alias = "gelu_pytorch_tanh", alias = "gelu_fast")]
    GeluTanh,
    /// `x * sigmoid(1.702 x)`: HF `quick_gelu`.
    #[serde(rename = "quick_gelu")]
    QuickGelu,
    /// HF `relu`.
    #[serde(rename = "relu")]
    Relu,
    /// HF `silu` / `swish`.
    #[serde(rename = "silu", alias = "swish")]
    Silu,
    /// HF `tanh`.
    #[serde(rename = "tanh")]
    Tanh,
}

impl Activation {
    /// Applies the activation elementwise.
    pub fn forward<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        match self {
            Activation::Gelu => gelu(x),
            Activation::GeluTanh => gelu_approximate(x),
            Activation::QuickGelu => x.clone() * sigmoid(x * 1.702),
            Activation::Relu => relu(x),
            Activation::Silu => x.clone() * sigmoid(x),
            Activation::Tanh => tanh(x),
        }
    }
}

/// Cached keys and values of one attention layer, `[batch, heads, len, head_dim]` each.
pub type Kv = (Tensor<4>, Tensor<4>);

/// `[batch, seq, heads * head_dim]` → `[batch, heads, seq, head_dim]`.
pub fn split_heads(x: Tensor<3>, heads: usize) -> Tensor<4> {
    let [b, l, d] = x.dims();
    x.reshape([b, l, heads, d / heads]).swap_dims(1, 2)
}

/// `[batch, heads, seq, head_dim]` → `[batch, seq, heads * head_dim]`.
pub fn merge_heads(x: Tensor<4>) -> Tensor<3> {
    let [b, h, l, d] = x.dims();
    x.swap_dims(1, 2).reshape([b, l, h * d])
}

/// Scaled dot-product attention, as HF's eager path computes it: `softmax(q kᵀ / √d + mask) v`.
///
/// # Shapes
/// - q: `[batch, heads, q_len, head_dim]`, k and v: `[batch, heads, k_len, head_dim]`
/// - mask: additive, broadcastable to `[batch, heads, q_len, k_len]` (0 = attend, large negative = not)
/// - output: `[batch, heads, q_len, head_dim]`
///
/// With [`set_attention_recompute`] on (`train.recompute_attention`) and on an autodiff device
/// this is burn's attention op, which normtune's patched burn-autodiff
/// (`core/vendor/burn-autodiff`, NORMTUNE.md) records as one step that runs the same ops, keeps
/// `q`, `k` and `v` and recomputes the probabilities in the backward pass: the same values and
/// gradients, without keeping every layer's `[batch, heads, q_len, k_len]` probabilities until
/// then, for one more `q kᵀ` and softmax per layer (BENCHMARKS.md, 2026-12-06, fifth session).
/// Otherwise it is the ops below, which keep them, and inference never meets a backend's own
/// attention kernel (flex's, cubecl's) that could change its results.
pub fn attention(q: Tensor<4>, k: Tensor<4>, v: Tensor<4>, mask: Option<&Tensor<4>>) -> Tensor<4> {
    let scale = 1.0 / (q.dims()[3] as f64).sqrt();
    if RECOMPUTE_ATTENTION.load(Ordering::Relaxed) && q.is_autodiff() {
        let options = AttentionModuleOptions {
            scale: Some(scale),
            softcap: None,
            is_causal: false,
        };
        return burn::tensor::module::attention(q, k, v, None, mask.cloned(), options);
    }
    let scores = q.matmul(k.swap_dims(2, 3)) * scale;
    let scores = match mask {
        Some(m) => scores + m.clone(),
        None => scores,
    };
    softmax(scores, 3).matmul(v)
}

static RECOMPUTE_ATTENTION: AtomicBool = AtomicBool::new(false);

/// Whether [`attention`] recomputes its probabilities in the backward pass instead of keeping
/// them (`train.recompute_attention`; [`crate::train::Trainer::new`] sets it from its config).
/// Process-wide: values and gradients are the same either way, only the memory a training
/// step keeps and its time differ.
pub fn set_attention_recompute(on: bool) {
    RECOMPUTE_ATTENTION.store(on, Ordering::Relaxed);
}

/// The additive value used for masked positions (HF uses the dtype's minimum; any value whose
/// exponential underflows to zero gives the same softmax).
pub const MASK_VALUE: f64 = -1.0e9;

/// An additive padding mask `[batch, 1, 1, k_len]` from a 0/1 attention mask `[batch, k_len]`.
pub fn padding_mask(mask01: Tensor<2>) -> Tensor<4> {
    let [b, l] = mask01.dims();
    ((mask01.neg() + 1.0) * MASK_VALUE).reshape([b, 1, 1, l])
}

/// An additive causal mask `[1, 1, q_len, past + q_len]`: query `i` sees keys `0..=past + i`.
pub fn causal_mask(q_len: usize, past: usize, device: &Device) -> Tensor<4> {
    let k_len = past + q_len;
    let mut data = vec![0f32; q_len * k_len];
    for i in 0..q_len {
        for j in (past + i + 1)..k_len {
            data[i * k_len + j] = MASK_VALUE as f32;
        }
    }
    Tensor::<1>::from_floats(data.as_slice(), device).reshape([1, 1, q_len, k_len])
}

/// A Houlsby bottleneck adapter (Houlsby et al. 2019): `x + up(gelu(down(x)))`, inserted after a
/// sub-layer's output projection, before its residual. `up` starts at zero, so a fresh adapter is
/// the identity.
#[derive(Module, Debug)]
pub struct Bottleneck {
    /// `[hidden, bottleneck]`.
    pub down: Linear,
    /// `[bottleneck, hidden]`.
    pub up: Linear,
}

impl Bottleneck {
    /// A fresh (identity) adapter.
    pub fn new(hidden: usize, bottleneck: usize, device: &Device) -> Self {
        Self {
            down: LinearConfig::new(hidden, bottleneck)
                .with_initializer(Initializer::Normal {
                    mean: 0.0,
                    std: 0.01,
                })
                .init(device),
            up: LinearConfig::new(bottleneck, hidden)
                .with_initializer(Initializer::Zeros)
                .init(device),
        }
    }

    /// # Shapes
    /// - x: `[.., hidden]` → same
    pub fn forward<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        x.clone() + self.up.forward(gelu(self.down.forward(x)))
    }
}

/// Applies an optional adapter.
pub fn adapt<const D: usize>(adapter: &Option<Bottleneck>, x: Tensor<D>) -> Tensor<D> {
    match adapter {
        Some(a) => a.forward(x),
        None => x,
    }
}

/// ViT input tokens: patchify with `conv`, prepend the class token, add learned positions.
///
/// # Shapes
/// - pixels: `[batch, channels, h, w]`, cls: `[1, 1, hidden]`, positions: `[1, patches + 1, hidden]`
/// - output: `[batch, patches + 1, hidden]`
pub fn patch_tokens(
    conv: &Conv2d,
    cls: Tensor<3>,
    positions: Tensor<3>,
    pixels: Tensor<4>,
) -> Tensor<3> {
    let patches = conv.forward(pixels); // [b, d, gh, gw]
    let [b, d, gh, gw] = patches.dims();
    let patches = patches.reshape([b, d, gh * gw]).swap_dims(1, 2);
    let x = Tensor::cat(vec![cls.expand([b, 1, d]), patches], 1);
    let n = x.dims()[1];
    let positions = if positions.dims()[1] == n {
        positions
    } else {
        positions.narrow(1, 0, n)
    };
    x + positions
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn causal_mask_lets_each_query_see_the_past_only() {
        let device = Device::flex();
        let m = causal_mask(2, 1, &device);
        let v: Vec<f32> = m.into_data().iter::<f32>().collect();
        // query 0 (position 1) sees keys 0..=1; query 1 (position 2) sees 0..=2.
        assert_eq!(v, vec![0.0, 0.0, MASK_VALUE as f32, 0.0, 0.0, 0.0]);
    }

    #[test]
    fn masked_keys_get_no_attention() {
        let device = Device::flex();
        let q = Tensor::<4>::ones([1, 1, 1, 2], &device);
        let k = Tensor::<4>::ones([1, 1, 3, 2], &device);
        let v = Tensor::<1>::from_floats([1.0, 0.0, 2.0, 0.0, 100.0, 0.0], &device)
            .reshape([1, 1, 3, 2]);
        let mask = padding_mask(Tensor::<1>::from_floats([1.0, 1.0, 0.0], &device).reshape([1, 3]));
        let out: Vec<f32> = attention(q, k, v, Some(&mask))
            .into_data()
            .iter::<f32>()
            .collect();
        assert!((out[0] - 1.5).abs() < 1e-6, "{out:?}");
    }
}

/// A Linear layer's forward with LoRA dropout, as peft computes it: when the weight carries a
/// LoRA adapter, `dropout > 0` and the input is on an autodiff (training) device,
/// `y = x·W + s·(dropout(x)·A)·B + b`; otherwise the plain forward (`x·(W + s·A·B) + b`, the same
/// value without dropout).
///
/// A weight stored in another dtype than `x` (a frozen weight kept in f16 or bf16, see
/// [`crate::models::walk::store_frozen`]) is applied in its own dtype: `x` is cast down, the
/// product is cast back. Under autodiff only the weight's own (half-size) storage is kept for
/// the backward pass; casting the weight up instead would keep an f32 copy of every weight
/// until the backward pass, more memory than f32 weights.
pub fn lora_linear<const D: usize>(l: &Linear, x: Tensor<D>, dropout: f64) -> Tensor<D> {
    let dora = l
        .weight
        .reparameterization::<crate::peft::dora::DoraAdapter>();
    if let Some(d) = dora
        && dropout > 0.0
        && x.device().is_autodiff()
    {
        return crate::peft::dora::dropout_forward(l, d, x, dropout);
    }
    if l.weight.adapter().is_none() && dora.is_none() && l.weight.dtype() != x.dtype() {
        let dt = x.dtype();
        let wt = l.weight.dtype();
        let y = burn::tensor::module::linear(
            x.cast(wt),
            l.weight.val(),
            l.bias.as_ref().map(|b| b.val().cast(wt)),
        );
        return y.cast(dt);
    }
    let adapter = l.weight.adapter();
    match adapter {
        Some(a) if dropout > 0.0 && x.device().is_autodiff() => {
            let keep = 1.0 - dropout;
            let mask = x.random_like(burn::tensor::Distribution::Bernoulli(keep));
            let dropped = x.clone() * mask / keep;
            let base =
                burn::tensor::module::linear(x, l.weight.base(), l.bias.as_ref().map(|b| b.val()));
            let low = burn::tensor::module::linear(dropped, a.a.val(), None);
            base + burn::tensor::module::linear(low, a.b.val(), None).mul_scalar(a.scale)
        }
        _ => l.forward(x),
    }
}

/// Checks a vision transformer's shape: `heads` divides `hidden` and `patch` divides `image`.
/// `prefix` is where the fields sit in `file` (`vision_config.` or empty).
pub(crate) fn check_vision_shape(
    file: &str,
    prefix: &str,
    (hidden, heads): (usize, usize),
    (image, patch): (usize, usize),
) -> crate::Result<()> {
    if heads == 0 || hidden % heads != 0 {
        return Err(crate::Error::config(
            file,
            &format!("{prefix}num_attention_heads"),
            format!("{heads} does not divide hidden_size {hidden}"),
        ));
    }
    if patch == 0 || image % patch != 0 {
        return Err(crate::Error::config(
            file,
            &format!("{prefix}patch_size"),
            format!("{patch} does not divide image_size {image}"),
        ));
    }
    Ok(())
}
