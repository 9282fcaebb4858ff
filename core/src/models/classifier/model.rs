//! HF `ViTForImageClassification` (transformers 5 module names; the loader also maps the older
//! `encoder.layer.N.attention.attention.query` layout). The head reads the class token.

use super::config::ViTConfig;
use crate::models::blip_vision::model::BlipMlp;
use crate::models::common::{Bottleneck, adapt, attention, merge_heads, patch_tokens, split_heads};
use burn::module::{Module, Param};
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{Initializer, LayerNorm, LayerNormConfig, Linear, LinearConfig};
use burn::tensor::{Device, Tensor};

/// The patchify convolution (HF `ViTPatchEmbeddings`).
#[derive(Module, Debug)]
pub struct ViTPatchEmbeddings {
    /// `[hidden, channels, p, p]`, stride p.
    pub projection: Conv2d,
}

/// Class token, patches and positions (HF `ViTEmbeddings`).
#[derive(Module, Debug)]
pub struct ViTEmbeddings {
    /// `[1, 1, hidden]`.
    pub cls_token: Param<Tensor<3>>,
    /// Patchify.
    pub patch_embeddings: ViTPatchEmbeddings,
    /// `[1, patches + 1, hidden]`.
    pub position_embeddings: Param<Tensor<3>>,
}

/// Separate q/k/v projections (HF `ViTAttention`).
#[derive(Module, Debug)]
pub struct ViTAttention {
    /// `[hidden, hidden]`.
    pub q_proj: Linear,
    /// `[hidden, hidden]`.
    pub k_proj: Linear,
    /// `[hidden, hidden]`.
    pub v_proj: Linear,
    /// `[hidden, hidden]`.
    pub o_proj: Linear,
    /// Number of heads.
    pub num_heads: usize,
    /// LoRA dropout on the inputs of LoRA-adapted projections (training only).
    pub lora_dropout: f64,
}

/// One pre-LN block (HF `ViTLayer`).
#[derive(Module, Debug)]
pub struct ViTLayer {
    /// Attention.
    pub attention: ViTAttention,
    /// Norm before attention.
    pub layernorm_before: LayerNorm,
    /// Norm before the MLP.
    pub layernorm_after: LayerNorm,
    /// MLP (`fc1`, `fc2`).
    pub mlp: BlipMlp,
    /// Bottleneck adapter after attention.
    pub attn_adapter: Option<Bottleneck>,
    /// Bottleneck adapter after the MLP.
    pub mlp_adapter: Option<Bottleneck>,
}

/// HF `ViTModel` without pooler.
#[derive(Module, Debug)]
pub struct ViTModel {
    /// Embeddings.
    pub embeddings: ViTEmbeddings,
    /// Blocks.
    pub layers: Vec<ViTLayer>,
    /// Final norm.
    pub layernorm: LayerNorm,
}

/// HF `ViTForImageClassification`.
#[derive(Module, Debug)]
pub struct ViTForImageClassification {
    /// Backbone.
    pub vit: ViTModel,
    /// Head on the class token, `[hidden, labels]`.
    pub classifier: Linear,
}

impl ViTConfig {
    /// A randomly initialised classifier.
    pub fn init(&self, device: &Device) -> ViTForImageClassification {
        let d = self.hidden_size;
        let ln = LayerNormConfig::new(d).with_epsilon(self.layer_norm_eps);
        let lin = |i: usize, o: usize, bias: bool| {
            LinearConfig::new(i, o)
                .with_bias(bias)
                .with_initializer(Initializer::Normal {
                    mean: 0.0,
                    std: self.initializer_range,
                })
                .init(device)
        };
        let init = Initializer::Normal {
            mean: 0.0,
            std: self.initializer_range,
        };
        let layers = (0..self.num_hidden_layers)
            .map(|_| ViTLayer {
                attention: ViTAttention {
                    q_proj: lin(d, d, self.qkv_bias),
                    k_proj: lin(d, d, self.qkv_bias),
                    v_proj: lin(d, d, self.qkv_bias),
                    o_proj: lin(d, d, true),
                    num_heads: self.num_attention_heads,
                    lora_dropout: 0.0,
                },
                layernorm_before: ln.init(device),
                layernorm_after: ln.init(device),
                mlp: BlipMlp {
                    fc1: lin(d, self.intermediate_size, true),
                    fc2: lin(self.intermediate_size, d, true),
                    act: self.hidden_act,
                },
                attn_adapter: None,
                mlp_adapter: None,
            })
            .collect();
        ViTForImageClassification {
            vit: ViTModel {
                embeddings: ViTEmbeddings {
                    cls_token: init.init([1, 1, d], device),
                    patch_embeddings: ViTPatchEmbeddings {
                        projection: Conv2dConfig::new(
                            [self.num_channels, d],
                            [self.patch_size, self.patch_size],
                        )
                        .with_stride([self.patch_size, self.patch_size])
                        .init(device),
                    },
                    position_embeddings: init.init([1, self.num_positions(), d], device),
                },
                layers,
                layernorm: ln.init(device),
            },
            classifier: lin(d, self.num_labels(), true),
        }
    }
}

impl ViTAttention {
    fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        let lin =
            |l: &Linear, x: Tensor<3>| crate::models::common::lora_linear(l, x, self.lora_dropout);
        let q = split_heads(lin(&self.q_proj, x.clone()), self.num_heads);
        let k = split_heads(lin(&self.k_proj, x.clone()), self.num_heads);
        let v = split_heads(lin(&self.v_proj, x), self.num_heads);
        self.o_proj.forward(merge_heads(attention(q, k, v, None)))
    }
}

impl ViTModel {
    /// HF `last_hidden_state` (after the final LayerNorm).
    ///
    /// # Shapes
    /// - pixels: `[batch, channels, image, image]` → `[batch, patches + 1, hidden]`
    pub fn forward(&self, pixels: Tensor<4>) -> Tensor<3> {
        let e = &self.embeddings;
        let mut x = patch_tokens(
            &e.patch_embeddings.projection,
            e.cls_token.val(),
            e.position_embeddings.val(),
            pixels,
        );
        for layer in &self.layers {
            x = x.clone()
                + adapt(
                    &layer.attn_adapter,
                    layer.attention.forward(layer.layernorm_before.forward(x)),
                );
            x = x.clone()
                + adapt(
                    &layer.mlp_adapter,
                    layer.mlp.forward(layer.layernorm_after.forward(x)),
                );
        }
        self.layernorm.forward(x)
    }
}

impl ViTForImageClassification {
    /// Label logits from the class token.
    ///
    /// # Shapes
    /// - pixels: `[batch, channels, image, image]` → `[batch, labels]`
    pub fn forward(&self, pixels: Tensor<4>) -> Tensor<2> {
        let h = self.vit.forward(pixels);
        let [b, _, d] = h.dims();
        self.classifier.forward(h.narrow(1, 0, 1).reshape([b, d]))
    }
}
