//! HF `BlipVisionConfig`, field for field.

use crate::models::common::Activation;
use serde::{Deserialize, Serialize};

/// Configuration of the BLIP vision encoder; field names and defaults are HF's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct BlipVisionConfig {
    /// Width of the patch embeddings and of every block.
    pub hidden_size: usize,
    /// Width of the MLP inside each block.
    pub intermediate_size: usize,
    /// Number of transformer blocks.
    pub num_hidden_layers: usize,
    /// Attention heads per block (`hidden_size` must divide evenly).
    pub num_attention_heads: usize,
    /// Side of the square input image in pixels.
    pub image_size: usize,
    /// Side of a square patch in pixels.
    pub patch_size: usize,
    /// MLP activation.
    pub hidden_act: Activation,
    /// LayerNorm epsilon.
    pub layer_norm_eps: f64,
    /// Attention dropout probability (training only).
    pub attention_dropout: f64,
    /// Std of the random initialisation.
    pub initializer_range: f64,
}

impl Default for BlipVisionConfig {
    fn default() -> Self {
        Self {
            hidden_size: 768,
            intermediate_size: 3072,
            num_hidden_layers: 12,
            num_attention_heads: 12,
            image_size: 384,
            patch_size: 16,
            hidden_act: Activation::Gelu,
            layer_norm_eps: 1e-5,
            attention_dropout: 0.0,
            initializer_range: 1e-10,
        }
    }
}

impl BlipVisionConfig {
    /// ViT-B/16 at 480×480 as in MISS/MILE (86.3M parameters, 901 tokens).
    pub fn miss_base() -> Self {
        Self {
            image_size: 480,
            layer_norm_eps: 1e-6,
            ..Self::default()
        }
    }
    /// A tiny encoder for tests and the built-in demo.
    pub fn tiny() -> Self {
        Self {
            hidden_size: 48,
            intermediate_size: 96,
            num_hidden_layers: 2,
            num_attention_heads: 3,
            image_size: 32,
            patch_size: 8,
            initializer_range: 0.02,
            ..Self::default()
        }
    }
    /// Patches per image plus the class token.
    pub fn num_positions(&self) -> usize {
        (self.image_size / self.patch_size).pow(2) + 1
    }
    /// Checks the values the model cannot run with; `file` names the config in the error.
    pub fn validate(&self, file: &str) -> crate::Result<()> {
        crate::models::common::check_vision_shape(
            file,
            "vision_config.",
            (self.hidden_size, self.num_attention_heads),
            (self.image_size, self.patch_size),
        )
    }
}
