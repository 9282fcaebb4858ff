//! HF `CLIPVisionConfig`.

use super::model::{
    ClipAttention, ClipEncoder, ClipEncoderLayer, ClipMlp, ClipVisionEmbeddings,
    ClipVisionTransformer,
};
use crate::models::common::Activation;
use burn::module::Param;
use burn::nn::conv::Conv2dConfig;
use burn::nn::{EmbeddingConfig, LayerNormConfig, LinearConfig};
use burn::tensor::{Device, Tensor};
use serde::{Deserialize, Serialize};

/// HF `CLIPVisionConfig`, the fields the tower uses.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ClipVisionConfig {
    /// Width.
    pub hidden_size: usize,
    /// MLP width.
    pub intermediate_size: usize,
    /// Layers.
    pub num_hidden_layers: usize,
    /// Heads.
    pub num_attention_heads: usize,
    /// Input channels.
    pub num_channels: usize,
    /// Input side, pixels.
    pub image_size: usize,
    /// Patch side, pixels.
    pub patch_size: usize,
    /// MLP activation.
    pub hidden_act: Activation,
    /// LayerNorm epsilon.
    pub layer_norm_eps: f64,
}

impl Default for ClipVisionConfig {
    fn default() -> Self {
        // HF CLIPVisionConfig's defaults (ViT-B/32).
        Self {
            hidden_size: 768,
            intermediate_size: 3072,
            num_hidden_layers: 12,
            num_attention_heads: 12,
            num_channels: 3,
            image_size: 224,
            patch_size: 32,
            hidden_act: Activation::QuickGelu,
            layer_norm_eps: 1e-5,
        }
    }
}

impl ClipVisionConfig {
    /// A randomly initialised tower of this shape (load weights over it).
    pub fn init(&self, device: &Device) -> ClipVisionTransformer {
        let v = self;
        let h = v.hidden_size;
        let ln = || {
            LayerNormConfig::new(h)
                .with_epsilon(v.layer_norm_eps)
                .init(device)
        };
        let lin = |i: usize, o: usize| LinearConfig::new(i, o).init(device);
        let patches = (v.image_size / v.patch_size).pow(2);
        let layers = (0..v.num_hidden_layers)
            .map(|_| ClipEncoderLayer {
                self_attn: ClipAttention {
                    q_proj: lin(h, h),
                    k_proj: lin(h, h),
                    v_proj: lin(h, h),
                    out_proj: lin(h, h),
                    heads: v.num_attention_heads,
                },
                layer_norm1: ln(),
                mlp: ClipMlp {
                    fc1: lin(h, v.intermediate_size),
                    fc2: lin(v.intermediate_size, h),
                    act: v.hidden_act,
                },
                layer_norm2: ln(),
            })
            .collect();
        ClipVisionTransformer {
            embeddings: ClipVisionEmbeddings {
                class_embedding: Param::from_tensor(Tensor::zeros([h], device)),
                patch_embedding: Conv2dConfig::new(
                    [v.num_channels, h],
                    [v.patch_size, v.patch_size],
                )
                .with_stride([v.patch_size, v.patch_size])
                .with_bias(false)
                .init(device),
                position_embedding: EmbeddingConfig::new(patches + 1, h).init(device),
            },
            pre_layrnorm: ln(),
            encoder: ClipEncoder { layers },
            post_layernorm: ln(),
        }
    }
}
