//! The CLIP vision transformer's modules and forward pass.

use crate::models::common::{Activation, attention, merge_heads, split_heads};
use burn::module::{Module, Param};
use burn::nn::conv::Conv2d;
use burn::nn::{Embedding, LayerNorm, Linear};
use burn::tensor::{Int, Tensor};

/// Patch, class and position embeddings (HF `CLIPVisionEmbeddings`).
#[derive(Module, Debug)]
pub struct ClipVisionEmbeddings {
    /// `[hidden]`.
    pub class_embedding: Param<Tensor<1>>,
    /// Conv `[hidden, channels, patch, patch]`, no bias.
    pub patch_embedding: Conv2d,
    /// `[patches + 1, hidden]`.
    pub position_embedding: Embedding,
}

/// One pre-norm encoder layer (HF `CLIPEncoderLayer`).
#[derive(Module, Debug)]
pub struct ClipEncoderLayer {
    /// Attention.
    pub self_attn: ClipAttention,
    /// LayerNorm before attention.
    pub layer_norm1: LayerNorm,
    /// MLP.
    pub mlp: ClipMlp,
    /// LayerNorm before the MLP.
    pub layer_norm2: LayerNorm,
}

/// HF `CLIPAttention`.
#[derive(Module, Debug)]
pub struct ClipAttention {
    /// Query.
    pub q_proj: Linear,
    /// Key.
    pub k_proj: Linear,
    /// Value.
    pub v_proj: Linear,
    /// Output.
    pub out_proj: Linear,
    /// Heads.
    pub heads: usize,
}

/// HF `CLIPMLP`.
#[derive(Module, Debug)]
pub struct ClipMlp {
    /// Up.
    pub fc1: Linear,
    /// Down.
    pub fc2: Linear,
    /// Activation.
    #[module(skip)]
    pub act: Activation,
}

/// HF `CLIPEncoder`.
#[derive(Module, Debug)]
pub struct ClipEncoder {
    /// Layers.
    pub layers: Vec<ClipEncoderLayer>,
}

/// HF `CLIPVisionTransformer` (the `vision_model` of `CLIPVisionModel`).
#[derive(Module, Debug)]
pub struct ClipVisionTransformer {
    /// Embeddings.
    pub embeddings: ClipVisionEmbeddings,
    /// LayerNorm before the encoder (HF's spelling).
    pub pre_layrnorm: LayerNorm,
    /// Encoder.
    pub encoder: ClipEncoder,
    /// LayerNorm on the pooled class token (not used by LLaVA, loaded for completeness).
    pub post_layernorm: LayerNorm,
}

impl ClipVisionTransformer {
    /// Every hidden state: the embeddings (after `pre_layrnorm`), then each layer's output.
    ///
    /// # Shapes
    /// - pixels: `[batch, channels, size, size]` → each `[batch, patches + 1, hidden]`
    pub fn hidden_states(&self, pixels: Tensor<4>) -> Vec<Tensor<3>> {
        let e = &self.embeddings;
        let patches = e.patch_embedding.forward(pixels); // [b, h, g, g]
        let [b, h, g1, g2] = patches.dims();
        let patches = patches.reshape([b, h, g1 * g2]).swap_dims(1, 2);
        let cls = e.class_embedding.val().reshape([1, 1, h]).expand([b, 1, h]);
        let x = Tensor::cat(vec![cls, patches], 1);
        let n = g1 * g2 + 1;
        let pos = Tensor::<1, Int>::arange(0..n as i64, &x.device()).reshape([1, n]);
        let x = x + e.position_embedding.forward(pos);
        let mut x = self.pre_layrnorm.forward(x);
        let mut states = vec![x.clone()];
        for layer in &self.encoder.layers {
            let a = &layer.self_attn;
            let y = layer.layer_norm1.forward(x.clone());
            let q = split_heads(a.q_proj.forward(y.clone()), a.heads);
            let k = split_heads(a.k_proj.forward(y.clone()), a.heads);
            let v = split_heads(a.v_proj.forward(y), a.heads);
            x = x + a.out_proj.forward(merge_heads(attention(q, k, v, None)));
            let y = layer.layer_norm2.forward(x.clone());
            x = x.clone()
                + layer
                    .mlp
                    .fc2
                    .forward(layer.mlp.act.forward(layer.mlp.fc1.forward(y)));
            states.push(x.clone());
        }
        states
    }
}
