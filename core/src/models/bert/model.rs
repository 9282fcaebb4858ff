//! HF `BlipTextModel` and `BlipTextLMHeadModel` (BLIP's BERT, `med.py` in the original BLIP/MISS
//! code). Module names are HF's except two Rust cannot spell: `LayerNorm` → `layer_norm` and the
//! attention's `self` → `self_attn`; the loader maps them.

use super::config::BlipTextConfig;
use crate::models::common::{
    Activation, Bottleneck, adapt, attention, causal_mask, lora_linear, merge_heads, padding_mask,
    split_heads,
};
use burn::module::{Module, Param};
use burn::nn::{
    Embedding, EmbeddingConfig, Initializer, LayerNorm, LayerNormConfig, Linear, LinearConfig,
};
use burn::tensor::{Device, Int, Tensor};

/// Word + learned position embeddings, then LayerNorm (HF `BlipTextEmbeddings`).
#[derive(Module, Debug)]
pub struct BlipTextEmbeddings {
    /// `[vocab, hidden]`.
    pub word_embeddings: Embedding,
    /// `[max_positions, hidden]`.
    pub position_embeddings: Embedding,
    /// HF `LayerNorm`.
    pub layer_norm: LayerNorm,
}

impl BlipTextEmbeddings {
    /// # Shapes
    /// - ids: `[batch, seq]` (positions start at `past`) → `[batch, seq, hidden]`
    pub fn forward(&self, ids: Tensor<2, Int>, past: usize) -> Tensor<3> {
        let [_, l] = ids.dims();
        let device = ids.device();
        let positions =
            Tensor::<1, Int>::arange(past as i64..(past + l) as i64, &device).reshape([1, l]);
        let x = self.word_embeddings.forward(ids) + self.position_embeddings.forward(positions);
        self.layer_norm.forward(x)
    }
}

/// Query/key/value projections of one attention (HF `BlipTextSelfAttention`).
#[derive(Module, Debug)]
pub struct BlipTextSelfAttention {
    /// `[hidden, hidden]`.
    pub query: Linear,
    /// `[hidden or encoder_hidden, hidden]`.
    pub key: Linear,
    /// `[hidden or encoder_hidden, hidden]`.
    pub value: Linear,
    /// IA3 scaling of the key projection's output, `[hidden]` (peft `key.ia3_l`).
    pub key_ia3: Option<Param<Tensor<1>>>,
    /// IA3 scaling of the value projection's output, `[hidden]` (peft `value.ia3_l`).
    pub value_ia3: Option<Param<Tensor<1>>>,
    /// Number of heads.
    pub num_heads: usize,
    /// LoRA dropout on the inputs of LoRA-adapted projections (training only).
    pub lora_dropout: f64,
}

pub use crate::models::common::Kv;

impl BlipTextSelfAttention {
    fn kv(&self, states: Tensor<3>) -> Kv {
        let scale = |t: Tensor<3>, l: &Option<Param<Tensor<1>>>| match l {
            Some(l) => t * l.val().unsqueeze::<3>(),
            None => t,
        };
        (
            split_heads(
                scale(
                    lora_linear(&self.key, states.clone(), self.lora_dropout),
                    &self.key_ia3,
                ),
                self.num_heads,
            ),
            split_heads(
                scale(
                    lora_linear(&self.value, states, self.lora_dropout),
                    &self.value_ia3,
                ),
                self.num_heads,
            ),
        )
    }

    /// Self-attention when `context` is `None`, cross-attention to `context` otherwise. With a
    /// cache slot, self-attention appends the new keys/values and cross-attention computes its
    /// keys/values once and reuses them.
    ///
    /// # Shapes
    /// - x: `[batch, q_len, hidden]`, context: `[batch, k_len, encoder_hidden]`
    /// - mask: additive, broadcastable to `[batch, heads, q_len, k_len]`
    pub fn forward(
        &self,
        x: Tensor<3>,
        context: Option<&Tensor<3>>,
        mask: Option<&Tensor<4>>,
        cache: Option<&mut Option<Kv>>,
    ) -> Tensor<3> {
        let q = split_heads(
            lora_linear(&self.query, x.clone(), self.lora_dropout),
            self.num_heads,
        );
        let (k, v) = match (context, cache) {
            (Some(ctx), Some(slot)) => slot.get_or_insert_with(|| self.kv(ctx.clone())).clone(),
            (Some(ctx), None) => self.kv(ctx.clone()),
            (None, Some(slot)) => {
                let (k, v) = self.kv(x);
                let kv = match slot.take() {
                    Some((pk, pv)) => (Tensor::cat(vec![pk, k], 2), Tensor::cat(vec![pv, v], 2)),
                    None => (k, v),
                };
                *slot = Some(kv.clone());
                kv
            }
            (None, None) => self.kv(x),
        };
        merge_heads(attention(q, k, v, mask))
    }
}

/// Output projection + residual + LayerNorm (HF `BlipTextSelfOutput` and `BlipTextOutput`).
#[derive(Module, Debug)]
pub struct BlipTextOutput {
    /// `[in, hidden]`.
    pub dense: Linear,
    /// HF `LayerNorm`.
    pub layer_norm: LayerNorm,
    /// IA3 scaling of the projection's input, `[in]` (peft `dense.ia3_l`, a feed-forward module).
    pub dense_ia3: Option<Param<Tensor<1>>>,
    /// Bottleneck adapter after the projection, before the residual (Houlsby).
    pub adapter: Option<Bottleneck>,
}

impl BlipTextOutput {
    /// # Shapes
    /// - x: `[batch, seq, in]`, residual: `[batch, seq, hidden]` → `[batch, seq, hidden]`
    pub fn forward(&self, x: Tensor<3>, residual: Tensor<3>) -> Tensor<3> {
        let x = match &self.dense_ia3 {
            Some(l) => x * l.val().unsqueeze::<3>(),
            None => x,
        };
        self.layer_norm
            .forward(adapt(&self.adapter, self.dense.forward(x)) + residual)
    }
}

/// Attention plus its output block (HF `BlipTextAttention`).
#[derive(Module, Debug)]
pub struct BlipTextAttention {
    /// HF `self`.
    pub self_attn: BlipTextSelfAttention,
    /// HF `output`.
    pub output: BlipTextOutput,
}

impl BlipTextAttention {
    fn forward(
        &self,
        x: Tensor<3>,
        context: Option<&Tensor<3>>,
        mask: Option<&Tensor<4>>,
        cache: Option<&mut Option<Kv>>,
    ) -> Tensor<3> {
        let h = self.self_attn.forward(x.clone(), context, mask, cache);
        self.output.forward(h, x)
    }
}

/// The feed-forward up-projection (HF `BlipTextIntermediate`).
#[derive(Module, Debug)]
pub struct BlipTextIntermediate {
    /// `[hidden, intermediate]`.
    pub dense: Linear,
    /// Activation.
    #[module(skip)]
    pub act: Activation,
}

/// One layer: self-attention, optional cross-attention, feed-forward (HF `BlipTextLayer`).
#[derive(Module, Debug)]
pub struct BlipTextLayer {
    /// Self-attention.
    pub attention: BlipTextAttention,
    /// Cross-attention to image or question states (present when `is_decoder`).
    pub crossattention: Option<BlipTextAttention>,
    /// Feed-forward up-projection.
    pub intermediate: BlipTextIntermediate,
    /// Feed-forward down-projection, residual and LayerNorm.
    pub output: BlipTextOutput,
}

/// Per-layer cache for incremental decoding.
#[derive(Debug, Clone, Default)]
pub struct LayerCache {
    /// Self-attention keys/values so far.
    pub self_kv: Option<Kv>,
    /// Cross-attention keys/values (computed at the first step).
    pub cross_kv: Option<Kv>,
}

/// The decoder's KV cache: one entry per layer, plus how many positions it holds.
#[derive(Debug, Clone, Default)]
pub struct KvCache {
    /// One slot per layer.
    pub layers: Vec<LayerCache>,
    /// Tokens already processed.
    pub len: usize,
}

impl KvCache {
    /// Keeps the batch rows `rows` (beam reordering): row `i` of the result is row `rows[i]`.
    pub fn select_rows(&mut self, rows: Tensor<1, Int>) {
        let pick = |kv: &mut Option<Kv>| {
            if let Some((k, v)) = kv.take() {
                *kv = Some((k.select(0, rows.clone()), v.select(0, rows.clone())));
            }
        };
        for layer in &mut self.layers {
            pick(&mut layer.self_kv);
            pick(&mut layer.cross_kv);
        }
    }
}

/// The layer stack (HF `BlipTextEncoder`).
#[derive(Module, Debug)]
pub struct BlipTextEncoder {
    /// Layers in order.
    pub layer: Vec<BlipTextLayer>,
}

/// HF `BlipTextModel` without pooler (as BLIP VQA and MISS use it).
#[derive(Module, Debug)]
pub struct BlipTextModel {
    /// Embeddings.
    pub embeddings: BlipTextEmbeddings,
    /// Layers.
    pub encoder: BlipTextEncoder,
    /// Learned prefix keys/values for every self-attention (prefix tuning, P-tuning v2).
    pub prefix: Option<PrefixEncoder>,
}

/// The projection of prefix tuning's reparameterisation (peft `PrefixEncoder.transform`):
/// `Linear → tanh → Linear`.
#[derive(Module, Debug)]
pub struct PrefixMlp {
    /// `[token_dim, encoder_hidden]`.
    pub dense_in: Linear,
    /// `[encoder_hidden, layers * 2 * hidden]`.
    pub dense_out: Linear,
}

/// Learned virtual-token keys and values (Li & Liang 2021; P-tuning v2, Liu et al. 2022), laid
/// out as peft's `PrefixEncoder`: row `t` holds, for every layer `l`, the key (`2l`) and value
/// (`2l + 1`) of virtual token `t`, `heads × head_dim` each.
#[derive(Module, Debug)]
pub struct PrefixEncoder {
    /// `[virtual_tokens, layers * 2 * hidden]` without projection, `[virtual_tokens, hidden]` with.
    pub embedding: Param<Tensor<2>>,
    /// The MLP reparameterisation (prefix tuning); `None` for P-tuning v2.
    pub transform: Option<PrefixMlp>,
    /// Layers of the model.
    pub num_layers: usize,
    /// Heads per layer.
    pub num_heads: usize,
}

impl PrefixEncoder {
    /// Number of virtual tokens.
    pub fn len(&self) -> usize {
        self.embedding.lazy_shape().to_vec()[0]
    }

    /// Whether there are no virtual tokens.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// `[virtual_tokens, layers * 2 * hidden]`: what peft saves as `prompt_embeddings`.
    pub fn past(&self) -> Tensor<2> {
        let e = self.embedding.val();
        match &self.transform {
            Some(m) => m
                .dense_out
                .forward(burn::tensor::activation::tanh(m.dense_in.forward(e))),
            None => e,
        }
    }

    /// Per layer, the prefix keys and values `[batch, heads, virtual_tokens, head_dim]`.
    pub fn layer_kv(&self, batch: usize) -> Vec<Kv> {
        let p = self.past();
        let [n, width] = p.dims();
        let hidden = width / (2 * self.num_layers);
        let hd = hidden / self.num_heads;
        let p = p.reshape([n, 2 * self.num_layers, self.num_heads, hd]);
        let pick = |i: usize| {
            p.clone()
                .narrow(1, i, 1)
                .reshape([n, self.num_heads, hd])
                .swap_dims(0, 1)
                .unsqueeze::<4>()
                .expand([batch, self.num_heads, n, hd])
        };
        (0..self.num_layers)
            .map(|l| (pick(2 * l), pick(2 * l + 1)))
            .collect()
    }
}

/// What the text model attends to besides itself.
#[derive(Debug, Clone)]
pub struct CrossInput<'a> {
    /// States to cross-attend, `[batch, k_len, encoder_hidden]`.
    pub states: &'a Tensor<3>,
    /// 0/1 mask over them, `[batch, k_len]`; `None` = attend to all.
    pub mask: Option<Tensor<2>>,
}

impl BlipTextModel {
    /// Runs the layers.
    ///
    /// - `mask`: 0/1 `[batch, past + seq]` padding mask for self-attention (`None`: no padding).
    /// - `causal`: decoder mode (each token sees only earlier ones).
    /// - `cache`: incremental decoding; positions continue from `cache.len`.
    ///
    /// # Shapes
    /// - ids: `[batch, seq]` → `[batch, seq, hidden]`
    pub fn forward(
        &self,
        ids: Tensor<2, Int>,
        mask: Option<Tensor<2>>,
        cross: Option<CrossInput<'_>>,
        causal: bool,
        cache: Option<&mut KvCache>,
    ) -> Tensor<3> {
        let [b, l] = ids.dims();
        let device = ids.device();
        // A prefix is the cache's first entries, as peft passes it in `past_key_values` (so
        // positions start after the virtual tokens there too).
        let mut local = KvCache::default();
        let mut cache = match cache {
            Some(c) => Some(c),
            None if self.prefix.is_some() => Some(&mut local),
            None => None,
        };
        if let (Some(c), Some(prefix)) = (cache.as_deref_mut(), &self.prefix)
            && c.len == 0
        {
            c.layers = prefix
                .layer_kv(b)
                .into_iter()
                .map(|kv| LayerCache {
                    self_kv: Some(kv),
                    cross_kv: None,
                })
                .collect();
            c.len = prefix.len();
        }
        let past = cache.as_ref().map_or(0, |c| c.len);
        let mut x = self.embeddings.forward(ids, past);
        // A mask over the new tokens only also covers the cached ones (all real).
        let mask = mask.map(|m| {
            let k = m.dims()[1];
            if k < past + l {
                Tensor::cat(vec![Tensor::ones([b, past + l - k], &device), m], 1)
            } else {
                m
            }
        });
        let self_mask = match (causal, mask) {
            (true, Some(m)) => Some(causal_mask(l, past, &device) + padding_mask(m)),
            (true, None) => Some(causal_mask(l, past, &device)),
            (false, Some(m)) => Some(padding_mask(m)),
            (false, None) => None,
        };
        let cross_mask = cross
            .as_ref()
            .and_then(|c| c.mask.clone())
            .map(padding_mask);
        if let Some(c) = cache.as_deref_mut() {
            c.layers
                .resize_with(self.encoder.layer.len(), LayerCache::default);
        }
        for (i, layer) in self.encoder.layer.iter().enumerate() {
            let slot = cache.as_deref_mut().map(|c| &mut c.layers[i]);
            let (self_slot, cross_slot) = match slot {
                Some(s) => (Some(&mut s.self_kv), Some(&mut s.cross_kv)),
                None => (None, None),
            };
            x = layer
                .attention
                .forward(x, None, self_mask.as_ref(), self_slot);
            if let (Some(ca), Some(c)) = (&layer.crossattention, &cross) {
                x = ca.forward(x, Some(c.states), cross_mask.as_ref(), cross_slot);
            }
            let h = layer
                .intermediate
                .act
                .forward(layer.intermediate.dense.forward(x.clone()));
            x = layer.output.forward(h, x);
        }
        if let Some(c) = cache {
            c.len += l;
        }
        x
    }
}

/// Dense + activation + LayerNorm before the vocabulary projection (HF `BlipTextPredictionHeadTransform`).
#[derive(Module, Debug)]
pub struct BlipTextPredictionHeadTransform {
    /// `[hidden, hidden]`.
    pub dense: Linear,
    /// Activation.
    #[module(skip)]
    pub act: Activation,
    /// HF `LayerNorm`.
    pub layer_norm: LayerNorm,
}

/// An untied output projection, stored as PyTorch does, `[vocab, hidden]`.
#[derive(Module, Debug)]
pub struct LmDecoder {
    /// `[vocab, hidden]`.
    pub weight: Param<Tensor<2>>,
    /// `[vocab]`: when an untied checkpoint has its own `decoder.bias`, HF's forward uses it
    /// (and leaves `predictions.bias` unused).
    pub bias: Option<Param<Tensor<1>>>,
}

/// HF `BlipTextLMPredictionHead`. With `decoder: None` the projection is tied to the word
/// embeddings (the same parameter, so training updates both as in PyTorch).
#[derive(Module, Debug)]
pub struct BlipTextLMPredictionHead {
    /// Transform before the projection.
    pub transform: BlipTextPredictionHeadTransform,
    /// Untied projection, if the checkpoint has one.
    pub decoder: Option<LmDecoder>,
    /// Output bias, `[vocab]`.
    pub bias: Param<Tensor<1>>,
}

/// How the LM head's output projection is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LmHead {
    /// Shares the word embedding matrix and `predictions.bias` (HF's default).
    Tied,
    /// Its own `decoder.weight`, and its own `decoder.bias` when `own_bias`.
    Untied {
        /// Whether `decoder.bias` is a separate tensor.
        own_bias: bool,
    },
}

/// HF `BlipTextOnlyMLMHead`.
#[derive(Module, Debug)]
pub struct BlipTextOnlyMlmHead {
    /// The prediction head.
    pub predictions: BlipTextLMPredictionHead,
}

/// HF `BlipTextLMHeadModel`: the BERT decoder with its LM head.
#[derive(Module, Debug)]
pub struct BlipTextLMHeadModel {
    /// The text model (causal, with cross-attention).
    pub bert: BlipTextModel,
    /// The LM head.
    pub cls: BlipTextOnlyMlmHead,
}

impl BlipTextLMHeadModel {
    /// Vocabulary logits for hidden states.
    ///
    /// # Shapes
    /// - hidden: `[batch, seq, hidden]` → `[batch, seq, vocab]`
    pub fn logits(&self, hidden: Tensor<3>) -> Tensor<3> {
        let p = &self.cls.predictions;
        let t = &p.transform;
        let h = t.layer_norm.forward(t.act.forward(t.dense.forward(hidden)));
        let [b, l, d] = h.dims();
        let (w, bias) = match &p.decoder {
            Some(dec) => (dec.weight.val(), dec.bias.as_ref().unwrap_or(&p.bias).val()),
            None => (
                self.bert.embeddings.word_embeddings.weight.val(),
                p.bias.val(),
            ),
        };
        let v = w.dims()[0];
        let out = h.reshape([b * l, d]).matmul(w.transpose()) + bias.unsqueeze::<2>();
        out.reshape([b, l, v])
    }

    /// Causal forward to logits.
    ///
    /// # Shapes
    /// - ids: `[batch, seq]` → `[batch, seq, vocab]`
    pub fn forward(
        &self,
        ids: Tensor<2, Int>,
        mask: Option<Tensor<2>>,
        cross: Option<CrossInput<'_>>,
        cache: Option<&mut KvCache>,
    ) -> Tensor<3> {
        self.logits(self.bert.forward(ids, mask, cross, true, cache))
    }
}

impl BlipTextConfig {
    fn layer_norm(&self, device: &Device) -> LayerNorm {
        LayerNormConfig::new(self.hidden_size)
            .with_epsilon(self.layer_norm_eps)
            .init(device)
    }

    fn linear(&self, d_in: usize, d_out: usize, device: &Device) -> Linear {
        LinearConfig::new(d_in, d_out)
            .with_initializer(Initializer::Normal {
                mean: 0.0,
                std: self.initializer_range,
            })
            .init(device)
    }

    fn attention(&self, kv_in: usize, device: &Device) -> BlipTextAttention {
        let d = self.hidden_size;
        BlipTextAttention {
            self_attn: BlipTextSelfAttention {
                query: self.linear(d, d, device),
                key: self.linear(kv_in, d, device),
                value: self.linear(kv_in, d, device),
                key_ia3: None,
                value_ia3: None,
                num_heads: self.num_attention_heads,
                lora_dropout: 0.0,
            },
            output: BlipTextOutput {
                dense: self.linear(d, d, device),
                layer_norm: self.layer_norm(device),
                dense_ia3: None,
                adapter: None,
            },
        }
    }

    /// A randomly initialised text model (cross-attention in every layer when `is_decoder`).
    pub fn init_text_model(&self, device: &Device) -> BlipTextModel {
        let d = self.hidden_size;
        let emb = |n: usize| {
            EmbeddingConfig::new(n, d)
                .with_initializer(Initializer::Normal {
                    mean: 0.0,
                    std: self.initializer_range,
                })
                .init(device)
        };
        let layer = (0..self.num_hidden_layers)
            .map(|_| BlipTextLayer {
                attention: self.attention(d, device),
                crossattention: self
                    .is_decoder
                    .then(|| self.attention(self.encoder_hidden_size, device)),
                intermediate: BlipTextIntermediate {
                    dense: self.linear(d, self.intermediate_size, device),
                    act: self.hidden_act,
                },
                output: BlipTextOutput {
                    dense: self.linear(self.intermediate_size, d, device),
                    layer_norm: self.layer_norm(device),
                    dense_ia3: None,
                    adapter: None,
                },
            })
            .collect();
        BlipTextModel {
            embeddings: BlipTextEmbeddings {
                word_embeddings: emb(self.vocab_size),
                position_embeddings: emb(self.max_position_embeddings),
                layer_norm: self.layer_norm(device),
            },
            encoder: BlipTextEncoder { layer },
            prefix: None,
        }
    }

    /// A randomly initialised decoder with LM head; `head` says whether the output projection is
    /// tied to the word embeddings and whether an untied one has its own bias.
    pub fn init_lm_head_model(&self, head: LmHead, device: &Device) -> BlipTextLMHeadModel {
        let d = self.hidden_size;
        BlipTextLMHeadModel {
            bert: self.init_text_model(device),
            cls: BlipTextOnlyMlmHead {
                predictions: BlipTextLMPredictionHead {
                    transform: BlipTextPredictionHeadTransform {
                        dense: self.linear(d, d, device),
                        act: self.hidden_act,
                        layer_norm: self.layer_norm(device),
                    },
                    decoder: match head {
                        LmHead::Tied => None,
                        LmHead::Untied { own_bias } => Some(LmDecoder {
                            weight: Initializer::Normal {
                                mean: 0.0,
                                std: self.initializer_range,
                            }
                            .init([self.vocab_size, d], device),
                            bias: own_bias
                                .then(|| Initializer::Zeros.init([self.vocab_size], device)),
                        }),
                    },
                    bias: Initializer::Zeros.init([self.vocab_size], device),
                },
            },
        }
    }
}
