//! LLaMA-family decoders (HF `LlamaForCausalLM`: LLaMA, SmolLM2, TinyLlama, ...), the language
//! model of the LLaVA-style path. Parity with transformers: `tests/tests/llama.rs`.

pub mod config;
pub mod gguf;
pub mod model;

pub use config::LlamaConfig;
pub use gguf::{config_from_gguf, from_gguf, hf_tensor};
pub use model::{Kv, LlamaForCausalLM};

use crate::error::{Error, Result};
use burn::tensor::Device;

/// Checkpoint tensors that are not parameters here: the rotary `inv_freq` buffer older
/// transformers saved (recomputed from the config).
const IGNORED: &[&str] = &[r"rotary_emb\.inv_freq$"];

/// Parses a LLaMA `config.json` and checks that the model implements it.
pub fn config_from_json(bytes: &[u8], file: &str) -> Result<LlamaConfig> {
    let cfg: LlamaConfig = serde_json::from_slice(bytes).map_err(|e| Error::json(file, e))?;
    cfg.check(file)?;
    Ok(cfg)
}

/// A HF LLaMA model from its config and `model.safetensors` (every tensor checked; a tied model's
/// file may hold `lm_head.weight` too, which is then the embedding).
pub fn load(
    cfg: &LlamaConfig,
    weights: Vec<u8>,
    file: &str,
    device: &Device,
) -> Result<LlamaForCausalLM> {
    let mut ignored = IGNORED.to_vec();
    if cfg.tie_word_embeddings {
        ignored.push(r"^lm_head\.weight$");
    }
    crate::models::load::load_safetensors(cfg.init(device), weights, file, &[], &ignored)
}
