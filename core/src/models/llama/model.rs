//! HF `LlamaForCausalLM`: token embedding, decoder layers (RMSNorm, grouped-query attention with
//! rotary embeddings in HF's rotate-half layout, SwiGLU feed-forward), final RMSNorm, LM head
//! (tied to the embedding when the config says so). Module names are HF's, so a HF folder's
//! `model.safetensors` loads without remapping (RMSNorm `weight` is burn's `gamma`).

use super::config::LlamaConfig;
use crate::models::common::{MASK_VALUE, attention, lora_linear, merge_heads, split_heads};
use burn::module::Module;
use burn::nn::{Embedding, EmbeddingConfig, Linear, LinearConfig, RmsNorm, RmsNormConfig};
use burn::tensor::activation::silu;
use burn::tensor::{DType, Device, Int, Tensor};

/// Cached keys and values of one layer (`[batch, kv_heads, len, head_dim]`, after the rotation).
pub use crate::models::common::Kv;

/// Grouped-query self-attention (HF `LlamaAttention`).
#[derive(Module, Debug)]
pub struct LlamaAttention {
    /// `[hidden, heads·head_dim]`.
    pub q_proj: Linear,
    /// `[hidden, kv_heads·head_dim]`.
    pub k_proj: Linear,
    /// `[hidden, kv_heads·head_dim]`.
    pub v_proj: Linear,
    /// `[heads·head_dim, hidden]`.
    pub o_proj: Linear,
    /// Query heads.
    pub heads: usize,
    /// Key/value heads.
    pub kv_heads: usize,
    /// LoRA dropout (training only).
    pub lora_dropout: f64,
}

/// Grouped-query attention without HF's `repeat_kv`: the `n` query heads that share a key/value
/// head are stacked along the query axis (`[b, kv·n, l, d]` → `[b, kv, n·l, d]`, head `i` reads
/// key/value head `i / n` as in `repeat_kv`), so one product per key/value head serves all `n`
/// and the keys and values are never copied `n` times (nor their gradients summed back).
///
/// # Shapes
/// - q: `[batch, kv·n, len, d]`; k, v: `[batch, kv, k_len, d]`;
///   mask: additive, in the stacked rows' order ([`group_mask`]) → `[batch, kv·n, len, d]`
fn grouped_attention(
    q: Tensor<4>,
    k: Tensor<4>,
    v: Tensor<4>,
    mask: Option<&Tensor<4>>,
    n: usize,
) -> Tensor<4> {
    let [b, h, l, d] = q.dims();
    let q = q.reshape([b, h / n, n * l, d]);
    attention(q, k, v, mask).reshape([b, h, l, d])
}

/// The additive mask `[1 or batch, 1, len, k_len]` repeated for the `n` query heads a
/// key/value head serves, as [`grouped_attention`] stacks their rows:
/// `[1 or batch, 1, n·len, k_len]` (a mask of one row, `[.., 1, 1, k_len]`, broadcasts as it
/// is). Built once per forward pass and shared by every layer. Two other forms measured worse
/// under gradient checkpointing (`tests/tests/memory_estimate.rs`, SmolLM2 shape): a copy per
/// layer, which checkpointing keeps to recompute each sum (+47 MiB), and the scores seen as
/// `[b, kv, n, len, k_len]` with the mask broadcast over `n` (+32 MiB).
fn group_mask(mask: Tensor<4>, n: usize) -> Tensor<4> {
    let [mb, mh, ml, mk] = mask.dims();
    if ml == 1 || n == 1 {
        return mask;
    }
    mask.unsqueeze_dim::<5>(2)
        .expand([mb, mh, n, ml, mk])
        .reshape([mb, mh, n * ml, mk])
}

/// `x·cos + rotate_half(x)·sin`, rotate_half(x) = `[-x₂, x₁]` over the halves of the last axis,
/// computed as `x·cos + [x₂, x₁]·sin±` with `sin±` the table whose first half is negated
/// ([`rotary`]): `(-x₂)·s` and `x₂·(-s)` are the same floats, and negating the small table once
/// replaces a strided negation of every query and key (and its backward) per layer.
fn rotate(x: Tensor<4>, cos: &Tensor<4>, sin_signed: &Tensor<4>) -> Tensor<4> {
    let [b, h, l, d] = x.dims();
    let x1 = x.clone().slice([0..b, 0..h, 0..l, 0..d / 2]);
    let x2 = x.clone().slice([0..b, 0..h, 0..l, d / 2..d]);
    let rotated = Tensor::cat(vec![x2, x1], 3);
    x * cos.clone() + rotated * sin_signed.clone()
}

impl LlamaAttention {
    /// # Shapes
    /// - x: `[batch, len, hidden]`; cos/sin_signed: `[1, 1, len, head_dim]` ([`rotary`]);
    ///   mask: additive, `[1 or batch, 1, len, past + len]` repeated per query head of a group
    ///   ([`group_mask`]) → `[batch, len, hidden]`
    pub fn forward(
        &self,
        x: Tensor<3>,
        cos: &Tensor<4>,
        sin_signed: &Tensor<4>,
        mask: Option<&Tensor<4>>,
        cache: Option<&mut Kv>,
    ) -> Tensor<3> {
        let q = split_heads(
            lora_linear(&self.q_proj, x.clone(), self.lora_dropout),
            self.heads,
        );
        let k = split_heads(
            lora_linear(&self.k_proj, x.clone(), self.lora_dropout),
            self.kv_heads,
        );
        let v = split_heads(
            lora_linear(&self.v_proj, x, self.lora_dropout),
            self.kv_heads,
        );
        let (q, k) = (rotate(q, cos, sin_signed), rotate(k, cos, sin_signed));
        let (k, v) = match cache {
            Some(c) => {
                let k = Tensor::cat(vec![c.0.clone(), k], 2);
                let v = Tensor::cat(vec![c.1.clone(), v], 2);
                *c = (k.clone(), v.clone());
                (k, v)
            }
            None => (k, v),
        };
        let n = self.heads / self.kv_heads;
        let out = merge_heads(grouped_attention(q, k, v, mask, n));
        lora_linear(&self.o_proj, out, self.lora_dropout)
    }
}

/// SwiGLU feed-forward (HF `LlamaMLP`): `down(silu(gate(x)) · up(x))`.
#[derive(Module, Debug)]
pub struct LlamaMlp {
    /// `[hidden, intermediate]`.
    pub gate_proj: Linear,
    /// `[hidden, intermediate]`.
    pub up_proj: Linear,
    /// `[intermediate, hidden]`.
    pub down_proj: Linear,
    /// LoRA dropout (training only).
    pub lora_dropout: f64,
}

impl LlamaMlp {
    /// `[.., hidden]` → `[.., hidden]`.
    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        let p = self.lora_dropout;
        let h = silu(lora_linear(&self.gate_proj, x.clone(), p)) * lora_linear(&self.up_proj, x, p);
        lora_linear(&self.down_proj, h, p)
    }
}

/// One pre-norm decoder layer (HF `LlamaDecoderLayer`).
#[derive(Module, Debug)]
pub struct LlamaDecoderLayer {
    /// Attention.
    pub self_attn: LlamaAttention,
    /// Feed-forward.
    pub mlp: LlamaMlp,
    /// RMSNorm before attention.
    pub input_layernorm: RmsNorm,
    /// RMSNorm before the feed-forward.
    pub post_attention_layernorm: RmsNorm,
}

impl LlamaDecoderLayer {
    fn forward(
        &self,
        x: Tensor<3>,
        cos: &Tensor<4>,
        sin_signed: &Tensor<4>,
        mask: Option<&Tensor<4>>,
        cache: Option<&mut Kv>,
    ) -> Tensor<3> {
        let h = x.clone()
            + self.self_attn.forward(
                self.input_layernorm.forward(x),
                cos,
                sin_signed,
                mask,
                cache,
            );
        h.clone() + self.mlp.forward(self.post_attention_layernorm.forward(h))
    }
}

/// The decoder stack (HF `LlamaModel`).
#[derive(Module, Debug)]
pub struct LlamaModel {
    /// `[vocab, hidden]`.
    pub embed_tokens: Embedding,
    /// Decoder layers.
    pub layers: Vec<LlamaDecoderLayer>,
    /// Final RMSNorm.
    pub norm: RmsNorm,
    /// Rotary base.
    pub theta: f64,
}

impl LlamaModel {
    /// Token embeddings `[batch, len, hidden]` in f32, whatever dtype the table is stored in
    /// (f16 when frozen weights are kept in half precision).
    pub fn embed(&self, ids: Tensor<2, Int>) -> Tensor<3> {
        let e = self.embed_tokens.forward(ids);
        if e.dtype() == DType::F32 {
            e
        } else {
            e.cast(DType::F32)
        }
    }
}

/// HF `LlamaForCausalLM`.
#[derive(Module, Debug)]
pub struct LlamaForCausalLM {
    /// The decoder.
    pub model: LlamaModel,
    /// `[hidden, vocab]`; `None` when tied to `embed_tokens`.
    pub lm_head: Option<Linear>,
}

/// The rotary tables for positions `past..past + len`: `cos` and `sin±`, each
/// `[1, 1, len, head_dim]`, computed as HF's `LlamaRotaryEmbedding` does, in f32; `sin±` is
/// `sin` with its first half negated, the sign `rotate_half` gives `x₂` (see [`rotate`]).
pub fn rotary(
    theta: f64,
    head_dim: usize,
    past: usize,
    len: usize,
    device: &Device,
) -> (Tensor<4>, Tensor<4>) {
    let half = head_dim / 2;
    let inv: Vec<f32> = (0..half)
        .map(|i| 1.0 / (theta as f32).powf((2 * i) as f32 / head_dim as f32))
        .collect();
    let mut cos = Vec::with_capacity(len * head_dim);
    let mut sin = Vec::with_capacity(len * head_dim);
    for p in past..past + len {
        for j in 0..head_dim {
            let a = p as f32 * inv[j % half];
            cos.push(a.cos());
            sin.push(if j < half { -a.sin() } else { a.sin() });
        }
    }
    let t =
        |v: Vec<f32>| Tensor::<1>::from_floats(v.as_slice(), device).reshape([1, 1, len, head_dim]);
    (t(cos), t(sin))
}

impl LlamaForCausalLM {
    /// Hidden states after the final norm.
    ///
    /// # Shapes
    /// - ids: `[batch, len]` (positions start at `past`, the length of `cache`'s entries);
    ///   mask01: optional `[batch, past + len]` 0/1 attention mask (left padding) →
    ///   `[batch, len, hidden]`
    pub fn hidden(
        &self,
        ids: Tensor<2, Int>,
        mask01: Option<Tensor<2>>,
        cache: Option<&mut Vec<Kv>>,
    ) -> Tensor<3> {
        self.hidden_from_embeds(self.model.embed(ids), mask01, cache)
    }

    /// As [`Self::hidden`], from input embeddings `[batch, len, hidden]` (a multimodal model
    /// splices image features into them).
    pub fn hidden_from_embeds(
        &self,
        mut x: Tensor<3>,
        mask01: Option<Tensor<2>>,
        mut cache: Option<&mut Vec<Kv>>,
    ) -> Tensor<3> {
        let [b, len, _] = x.dims();
        let device = x.device();
        let past = cache
            .as_ref()
            .and_then(|c| c.first())
            .map(|kv| kv.0.dims()[2])
            .unwrap_or(0);
        let attn = &self.model.layers[0].self_attn;
        let head_dim = attn.q_proj.weight.dims()[1] / attn.heads;
        let (cos, sin_signed) = rotary(self.model.theta, head_dim, past, len, &device);
        let mut mask = crate::models::common::causal_mask(len, past, &device);
        if let Some(m) = mask01 {
            mask = mask + ((m.neg() + 1.0) * MASK_VALUE).reshape([b, 1, 1, past + len]);
        }
        let n = attn.heads / attn.kv_heads;
        let mask = (len > 1 || b > 1).then(|| group_mask(mask, n));
        for (i, layer) in self.model.layers.iter().enumerate() {
            let c = cache.as_deref_mut().map(|c| {
                if c.len() <= i {
                    let kvh = layer.self_attn.kv_heads;
                    c.push((
                        Tensor::zeros([b, kvh, 0, head_dim], &device),
                        Tensor::zeros([b, kvh, 0, head_dim], &device),
                    ));
                }
                &mut c[i]
            });
            x = layer.forward(x, &cos, &sin_signed, mask.as_ref(), c);
        }
        self.model.norm.forward(x)
    }

    /// The LM head on hidden states `[batch, len, hidden]` → logits `[batch, len, vocab]`.
    pub fn head(&self, h: Tensor<3>) -> Tensor<3> {
        match &self.lm_head {
            // (`lora_linear` also applies a head kept in half precision.)
            Some(head) => lora_linear(head, h, 0.0),
            None => {
                // `[b·l, hidden] × tableᵀ` as one 2-D product on the transposed view: the
                // table (49,152 × 576 for SmolLM2) is read in place. Written as
                // `h.matmul(tableᵀ.unsqueeze())`, the unsqueeze reshaped a transposed
                // tensor, which copies it: 113 MB per call, per decoded token.
                let w = self.model.embed_tokens.weight.val();
                let [b, l, d] = h.dims();
                let h2 = h.reshape([b * l, d]);
                let logits = if w.is_require_grad() && w.dtype() == h2.dtype() {
                    // A trained table: the product as `(table · hᵀ)ᵀ`, so that its backward
                    // computes the table's gradient as `dlogitsᵀ · h`, a contiguous
                    // `[vocab, hidden]` tensor, rather than a transposed view of
                    // `hᵀ · dlogits`. The embedding's rows are then added into it in place
                    // (`core/vendor/burn-autodiff`, third patch) and AdamW reads it without a
                    // contiguous copy: one table-sized gradient instead of two (BENCHMARKS.md,
                    // 2026-12-06). Costs one copy of the logits (the reshape below).
                    w.matmul(h2.transpose()).transpose()
                } else if w.dtype() == h2.dtype() {
                    h2.matmul(w.transpose())
                } else {
                    // Tied to a half-precision table: the product in its dtype (see
                    // `common::lora_linear`), the logits back in f32.
                    let dt = h2.dtype();
                    h2.cast(w.dtype()).matmul(w.transpose()).cast(dt)
                };
                let v = logits.dims()[1];
                logits.reshape([b, l, v])
            }
        }
    }

    /// Logits `[batch, len, vocab]` (see [`Self::hidden`]).
    pub fn forward(
        &self,
        ids: Tensor<2, Int>,
        mask01: Option<Tensor<2>>,
        cache: Option<&mut Vec<Kv>>,
    ) -> Tensor<3> {
        self.head(self.hidden(ids, mask01, cache))
    }

    /// Logits from input embeddings (see [`Self::hidden_from_embeds`]).
    pub fn logits_from_embeds(
        &self,
        x: Tensor<3>,
        mask01: Option<Tensor<2>>,
        cache: Option<&mut Vec<Kv>>,
    ) -> Tensor<3> {
        self.head(self.hidden_from_embeds(x, mask01, cache))
    }

    /// Greedy decoding of `prompt` (one sequence) with the KV cache: up to `max_new` tokens,
    /// stopping after any of `eos`. Returns the new tokens.
    pub async fn generate_greedy(
        &self,
        prompt: &[i64],
        max_new: usize,
        eos: &[i64],
    ) -> crate::Result<Vec<i64>> {
        let device = self.model.embed_tokens.weight.device();
        let ids = Tensor::<1, Int>::from_ints(prompt, &device).reshape([1, prompt.len()]);
        self.greedy_from_embeds(self.model.embed(ids), max_new, eos)
            .await
    }

    /// Greedy decoding after a prompt given as embeddings `[1, len, hidden]`.
    pub async fn greedy_from_embeds(
        &self,
        prompt: Tensor<3>,
        max_new: usize,
        eos: &[i64],
    ) -> crate::Result<Vec<i64>> {
        let device = prompt.device();
        let mut cache = Vec::new();
        let mut out = Vec::new();
        let mut next = prompt;
        for _ in 0..max_new {
            // The head on the last position only (transformers' `logits_to_keep = 1`): the
            // prompt's other positions predict nothing used.
            let h = self.hidden_from_embeds(next, None, Some(&mut cache));
            let [_, l, d] = h.dims();
            let logits = self.head(h.slice([0..1, l - 1..l, 0..d]));
            let v = logits.dims()[2];
            let last = logits.reshape([v]);
            let id = last
                .argmax(0)
                .into_data_async()
                .await
                .map_err(crate::Error::device)?
                .iter::<i64>()
                .next()
                .unwrap_or(0);
            out.push(id);
            if eos.contains(&id) {
                break;
            }
            let ids = Tensor::<1, Int>::from_ints([id], &device).reshape([1, 1]);
            next = self.model.embed(ids);
        }
        Ok(out)
    }
}

impl LlamaConfig {
    /// A randomly initialised model of this shape (load weights over it).
    pub fn init(&self, device: &Device) -> LlamaForCausalLM {
        let (h, hd) = (self.hidden_size, self.head_dim());
        let (heads, kvh) = (self.num_attention_heads, self.kv_heads());
        // HF's initialisation: weights ~ N(0, initializer_range), biases 0, norms 1.
        let init = burn::nn::Initializer::Normal {
            mean: 0.0,
            std: self.initializer_range,
        };
        let lin = |i: usize, o: usize, bias: bool| {
            LinearConfig::new(i, o)
                .with_bias(bias)
                .with_initializer(init.clone())
                .init(device)
        };
        let norm = || {
            RmsNormConfig::new(h)
                .with_epsilon(self.rms_norm_eps)
                .init(device)
        };
        let layers = (0..self.num_hidden_layers)
            .map(|_| LlamaDecoderLayer {
                self_attn: LlamaAttention {
                    q_proj: lin(h, heads * hd, self.attention_bias),
                    k_proj: lin(h, kvh * hd, self.attention_bias),
                    v_proj: lin(h, kvh * hd, self.attention_bias),
                    o_proj: lin(heads * hd, h, self.attention_bias),
                    heads,
                    kv_heads: kvh,
                    lora_dropout: 0.0,
                },
                mlp: LlamaMlp {
                    gate_proj: lin(h, self.intermediate_size, self.mlp_bias),
                    up_proj: lin(h, self.intermediate_size, self.mlp_bias),
                    down_proj: lin(self.intermediate_size, h, self.mlp_bias),
                    lora_dropout: 0.0,
                },
                input_layernorm: norm(),
                post_attention_layernorm: norm(),
            })
            .collect();
        LlamaForCausalLM {
            model: LlamaModel {
                embed_tokens: EmbeddingConfig::new(self.vocab_size, h)
                    .with_initializer(init.clone())
                    .init(device),
                layers,
                norm: norm(),
                theta: self.theta(),
            },
            lm_head: (!self.tie_word_embeddings).then(|| lin(h, self.vocab_size, false)),
        }
    }
}
