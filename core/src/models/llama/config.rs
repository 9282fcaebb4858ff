//! HF `LlamaConfig`, the fields the model uses, with HF's names and defaults.

use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};

/// Rotary embedding parameters as transformers ≥ 5 writes them (`rope_parameters`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RopeParameters {
    /// Base of the rotary frequencies.
    pub rope_theta: f64,
    /// Only `default` (no scaling) is implemented.
    #[serde(default = "default_rope_type")]
    pub rope_type: String,
}

fn default_rope_type() -> String {
    "default".into()
}

/// Configuration of a LLaMA-family decoder (LLaMA, SmolLM2, TinyLlama, ...).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct LlamaConfig {
    /// Vocabulary size.
    pub vocab_size: usize,
    /// Width of every layer.
    pub hidden_size: usize,
    /// SwiGLU feed-forward width.
    pub intermediate_size: usize,
    /// Number of decoder layers.
    pub num_hidden_layers: usize,
    /// Query heads.
    pub num_attention_heads: usize,
    /// Key/value heads (grouped-query attention); `None` means as many as query heads.
    pub num_key_value_heads: Option<usize>,
    /// Width of a head; `None` means `hidden_size / num_attention_heads`.
    pub head_dim: Option<usize>,
    /// Longest sequence.
    pub max_position_embeddings: usize,
    /// RMSNorm epsilon.
    pub rms_norm_eps: f64,
    /// Rotary base (transformers < 5 writes it here).
    pub rope_theta: Option<f64>,
    /// Rotary parameters (transformers ≥ 5 writes them here).
    pub rope_parameters: Option<RopeParameters>,
    /// Rotary scaling (transformers < 5); only `null` is implemented.
    pub rope_scaling: Option<serde_json::Value>,
    /// The LM head shares the token embedding's weights.
    pub tie_word_embeddings: bool,
    /// Feed-forward activation; only `silu` (SwiGLU) is implemented.
    pub hidden_act: String,
    /// Biases on the attention projections.
    pub attention_bias: bool,
    /// Biases on the feed-forward projections.
    pub mlp_bias: bool,
    /// Beginning of sequence.
    pub bos_token_id: Option<i64>,
    /// End of sequence (one id; a list is read as its first).
    pub eos_token_id: Option<serde_json::Value>,
    /// Padding.
    pub pad_token_id: Option<i64>,
    /// Standard deviation of the normal initialisation of linear and embedding weights (HF's
    /// `_init_weights`; a model built from config.json alone starts there).
    pub initializer_range: f64,
}

impl Default for LlamaConfig {
    fn default() -> Self {
        // HF LlamaConfig's defaults (LLaMA-7B).
        Self {
            vocab_size: 32000,
            hidden_size: 4096,
            intermediate_size: 11008,
            num_hidden_layers: 32,
            num_attention_heads: 32,
            num_key_value_heads: None,
            head_dim: None,
            max_position_embeddings: 2048,
            rms_norm_eps: 1e-6,
            rope_theta: None,
            rope_parameters: None,
            rope_scaling: None,
            tie_word_embeddings: false,
            hidden_act: "silu".into(),
            attention_bias: false,
            mlp_bias: false,
            bos_token_id: Some(1),
            eos_token_id: Some(serde_json::json!(2)),
            pad_token_id: None,
            initializer_range: 0.02,
        }
    }
}

impl LlamaConfig {
    /// Key/value heads.
    pub fn kv_heads(&self) -> usize {
        self.num_key_value_heads.unwrap_or(self.num_attention_heads)
    }
    /// Width of a head.
    pub fn head_dim(&self) -> usize {
        self.head_dim
            .unwrap_or(self.hidden_size / self.num_attention_heads.max(1))
    }
    /// The rotary base.
    pub fn theta(&self) -> f64 {
        self.rope_parameters
            .as_ref()
            .map(|r| r.rope_theta)
            .or(self.rope_theta)
            .unwrap_or(10000.0)
    }
    /// Refuses what the model does not implement, naming the field.
    pub fn check(&self, file: &str) -> Result<()> {
        let bad = |field: &str, reason: String| Err(Error::config(file, field, reason));
        if self.hidden_act != "silu" {
            return bad(
                "hidden_act",
                format!("`{}`: only silu is implemented", self.hidden_act),
            );
        }
        if let Some(r) = &self.rope_parameters
            && r.rope_type != "default"
        {
            return bad(
                "rope_parameters.rope_type",
                format!(
                    "`{}`: only default rotary embeddings are implemented",
                    r.rope_type
                ),
            );
        }
        if self.rope_scaling.as_ref().is_some_and(|s| !s.is_null()) {
            return bad("rope_scaling", "rotary scaling is not implemented".into());
        }
        if self.num_hidden_layers == 0 {
            return bad(
                "num_hidden_layers",
                "0: at least one layer is needed".into(),
            );
        }
        let heads = self.num_attention_heads;
        if heads == 0 || self.kv_heads() == 0 || heads % self.kv_heads() != 0 {
            return bad(
                "num_key_value_heads",
                format!(
                    "{} does not divide num_attention_heads {heads}",
                    self.kv_heads()
                ),
            );
        }
        if self.head_dim() == 0 || self.head_dim() % 2 != 0 {
            return bad(
                "head_dim",
                format!("{} is not a positive even number", self.head_dim()),
            );
        }
        Ok(())
    }
}
