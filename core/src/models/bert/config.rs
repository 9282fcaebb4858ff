//! HF `BlipTextConfig`, field for field.

use crate::models::common::Activation;
use serde::{Deserialize, Serialize};

/// A token id or, as HF allows for `eos_token_id`, a list of them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum TokenIds {
    /// One id.
    One(i64),
    /// Several ids.
    Many(Vec<i64>),
}

/// Configuration of the BLIP text encoder / decoder; field names and defaults are HF's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct BlipTextConfig {
    /// Vocabulary size (rows of `word_embeddings`).
    pub vocab_size: usize,
    /// Width of every layer.
    pub hidden_size: usize,
    /// Width of the states cross-attention attends to (vision width, or text width for the answer decoder).
    pub encoder_hidden_size: usize,
    /// Feed-forward width.
    pub intermediate_size: usize,
    /// Number of layers.
    pub num_hidden_layers: usize,
    /// Attention heads per layer.
    pub num_attention_heads: usize,
    /// Rows of `position_embeddings`: the longest sequence the model accepts.
    pub max_position_embeddings: usize,
    /// Feed-forward and LM-head activation.
    pub hidden_act: Activation,
    /// LayerNorm epsilon.
    pub layer_norm_eps: f64,
    /// Dropout after projections (training only).
    pub hidden_dropout_prob: f64,
    /// Dropout on attention probabilities (training only).
    pub attention_probs_dropout_prob: f64,
    /// Std of the random initialisation.
    pub initializer_range: f64,
    /// Decoder start token (`[DEC]` in BLIP).
    pub bos_token_id: Option<i64>,
    /// End-of-sequence token(s).
    pub eos_token_id: Option<TokenIds>,
    /// Padding token.
    pub pad_token_id: Option<i64>,
    /// `[SEP]`: the token generation stops at.
    pub sep_token_id: Option<i64>,
    /// Whether layers carry cross-attention.
    pub is_decoder: bool,
    /// Whether the LM head shares the word embedding matrix (the weights file decides in the end).
    pub tie_word_embeddings: bool,
    /// Label smoothing of the LM loss (MILE uses 0.1).
    pub label_smoothing: f64,
}

impl Default for BlipTextConfig {
    fn default() -> Self {
        Self {
            vocab_size: 30524,
            hidden_size: 768,
            encoder_hidden_size: 768,
            intermediate_size: 3072,
            num_hidden_layers: 12,
            num_attention_heads: 8,
            max_position_embeddings: 512,
            hidden_act: Activation::Gelu,
            layer_norm_eps: 1e-12,
            hidden_dropout_prob: 0.0,
            attention_probs_dropout_prob: 0.0,
            initializer_range: 0.02,
            bos_token_id: Some(30522),
            eos_token_id: Some(TokenIds::One(2)),
            pad_token_id: Some(0),
            sep_token_id: Some(102),
            is_decoder: true,
            tie_word_embeddings: true,
            label_smoothing: 0.0,
        }
    }
}

impl BlipTextConfig {
    /// BERT-base with cross-attention, as the MISS/MILE "JTM" encoder and answer decoder.
    pub fn miss_base() -> Self {
        Self {
            num_attention_heads: 12,
            ..Self::default()
        }
    }
    /// A tiny text model for tests and the built-in demo.
    pub fn tiny(vocab_size: usize) -> Self {
        Self {
            vocab_size,
            hidden_size: 40,
            encoder_hidden_size: 48,
            intermediate_size: 72,
            num_hidden_layers: 2,
            num_attention_heads: 5,
            max_position_embeddings: 64,
            ..Self::default()
        }
    }
    /// Checks the values the model cannot run with; `file` names the config in the error.
    pub fn validate(&self, file: &str) -> crate::Result<()> {
        if self.num_attention_heads == 0 || self.hidden_size % self.num_attention_heads != 0 {
            return Err(crate::Error::config(
                file,
                "text_config.num_attention_heads",
                format!(
                    "{} does not divide hidden_size {}",
                    self.num_attention_heads, self.hidden_size
                ),
            ));
        }
        if self.vocab_size == 0 {
            return Err(crate::Error::config(
                file,
                "text_config.vocab_size",
                "must be positive",
            ));
        }
        Ok(())
    }
}
