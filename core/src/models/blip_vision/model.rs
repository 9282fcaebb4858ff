//! HF `BlipVisionModel`: patch convolution, class token, learned positions, pre-LN blocks with a
//! fused `qkv` projection, and `post_layernorm`. Module names are HF's, so weights load by name.

use super::config::BlipVisionConfig;
use crate::models::common::{
    Activation, Bottleneck, adapt, attention, merge_heads, patch_tokens, split_heads,
};
use burn::module::{Module, Param};
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{Initializer, LayerNorm, LayerNormConfig, Linear, LinearConfig};
use burn::tensor::{Device, Tensor};

/// Patch, class and position embeddings.
#[derive(Module, Debug)]
pub struct BlipVisionEmbeddings {
    /// Learned class token, `[1, 1, hidden]`.
    pub class_embedding: Param<Tensor<3>>,
    /// Patchify convolution, kernel = stride = `patch_size`, `[hidden, 3, p, p]`.
    pub patch_embedding: Conv2d,
    /// Learned positions, `[1, patches + 1, hidden]`.
    pub position_embedding: Param<Tensor<3>>,
}

impl BlipVisionEmbeddings {
    fn new(c: &BlipVisionConfig, device: &Device) -> Self {
        let init = Initializer::Normal {
            mean: 0.0,
            std: c.initializer_range,
        };
        Self {
            class_embedding: init.init([1, 1, c.hidden_size], device),
            patch_embedding: Conv2dConfig::new([3, c.hidden_size], [c.patch_size, c.patch_size])
                .with_stride([c.patch_size, c.patch_size])
                .init(device),
            position_embedding: init.init([1, c.num_positions(), c.hidden_size], device),
        }
    }

    /// # Shapes
    /// - pixels: `[batch, 3, image, image]` → `[batch, patches + 1, hidden]`
    pub fn forward(&self, pixels: Tensor<4>) -> Tensor<3> {
        patch_tokens(
            &self.patch_embedding,
            self.class_embedding.val(),
            self.position_embedding.val(),
            pixels,
        )
    }
}

/// Multi-head self-attention with one fused `qkv` projection (HF `BlipAttention`).
#[derive(Module, Debug)]
pub struct BlipAttention {
    /// Fused query/key/value projection, `[hidden, 3 * hidden]`.
    pub qkv: Linear,
    /// Output projection, `[hidden, hidden]`.
    pub projection: Linear,
    /// Number of heads.
    pub num_heads: usize,
    /// LoRA dropout on the input of a LoRA-adapted `qkv` (training only).
    pub lora_dropout: f64,
}

impl BlipAttention {
    /// # Shapes
    /// - x: `[batch, seq, hidden]` → `[batch, seq, hidden]`
    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        let [_, _, d] = x.dims();
        let qkv = crate::models::common::lora_linear(&self.qkv, x, self.lora_dropout);
        let q = split_heads(qkv.clone().narrow(2, 0, d), self.num_heads);
        let k = split_heads(qkv.clone().narrow(2, d, d), self.num_heads);
        let v = split_heads(qkv.narrow(2, 2 * d, d), self.num_heads);
        self.projection
            .forward(merge_heads(attention(q, k, v, None)))
    }
}

/// The block MLP (HF `BlipMLP`).
#[derive(Module, Debug)]
pub struct BlipMlp {
    /// `[hidden, intermediate]`.
    pub fc1: Linear,
    /// `[intermediate, hidden]`.
    pub fc2: Linear,
    /// Activation between the two.
    #[module(skip)]
    pub act: Activation,
}

impl BlipMlp {
    /// # Shapes
    /// - x: `[.., hidden]` → `[.., hidden]`
    pub fn forward<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        self.fc2.forward(self.act.forward(self.fc1.forward(x)))
    }
}

/// One pre-LN transformer block (HF `BlipEncoderLayer`).
#[derive(Module, Debug)]
pub struct BlipEncoderLayer {
    /// Attention.
    pub self_attn: BlipAttention,
    /// Norm before attention.
    pub layer_norm1: LayerNorm,
    /// MLP.
    pub mlp: BlipMlp,
    /// Norm before the MLP.
    pub layer_norm2: LayerNorm,
    /// Bottleneck adapter after attention.
    pub attn_adapter: Option<Bottleneck>,
    /// Bottleneck adapter after the MLP.
    pub mlp_adapter: Option<Bottleneck>,
}

impl BlipEncoderLayer {
    /// # Shapes
    /// - x: `[batch, seq, hidden]` → same
    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        let x = x.clone()
            + adapt(
                &self.attn_adapter,
                self.self_attn.forward(self.layer_norm1.forward(x)),
            );
        x.clone()
            + adapt(
                &self.mlp_adapter,
                self.mlp.forward(self.layer_norm2.forward(x)),
            )
    }
}

/// The block stack (HF `BlipEncoder`).
#[derive(Module, Debug)]
pub struct BlipEncoder {
    /// Blocks in order.
    pub layers: Vec<BlipEncoderLayer>,
}

/// HF `BlipVisionModel`.
#[derive(Module, Debug)]
pub struct BlipVisionModel {
    /// Embeddings.
    pub embeddings: BlipVisionEmbeddings,
    /// Blocks.
    pub encoder: BlipEncoder,
    /// Final LayerNorm, applied to every token.
    pub post_layernorm: LayerNorm,
}

impl BlipVisionConfig {
    /// A randomly initialised encoder of this shape.
    pub fn init(&self, device: &Device) -> BlipVisionModel {
        let d = self.hidden_size;
        let ln = LayerNormConfig::new(d).with_epsilon(self.layer_norm_eps);
        let layers = (0..self.num_hidden_layers)
            .map(|_| BlipEncoderLayer {
                self_attn: BlipAttention {
                    qkv: LinearConfig::new(d, 3 * d).init(device),
                    projection: LinearConfig::new(d, d).init(device),
                    num_heads: self.num_attention_heads,
                    lora_dropout: 0.0,
                },
                layer_norm1: ln.init(device),
                mlp: BlipMlp {
                    fc1: LinearConfig::new(d, self.intermediate_size).init(device),
                    fc2: LinearConfig::new(self.intermediate_size, d).init(device),
                    act: self.hidden_act,
                },
                layer_norm2: ln.init(device),
                attn_adapter: None,
                mlp_adapter: None,
            })
            .collect();
        BlipVisionModel {
            embeddings: BlipVisionEmbeddings::new(self, device),
            encoder: BlipEncoder { layers },
            post_layernorm: ln.init(device),
        }
    }
}

impl BlipVisionModel {
    /// The last hidden state (after `post_layernorm`), as HF's `last_hidden_state`.
    ///
    /// # Shapes
    /// - pixels: `[batch, 3, image, image]` → `[batch, patches + 1, hidden]`
    pub fn forward(&self, pixels: Tensor<4>) -> Tensor<3> {
        let mut x = self.embeddings.forward(pixels);
        for layer in &self.encoder.layers {
            x = layer.forward(x);
        }
        self.post_layernorm.forward(x)
    }
}
