//! The BLIP text transformer (HF `BlipTextModel`, `BlipTextLMHeadModel`): BERT with optional
//! cross-attention in every layer, a causal mode with a KV cache, and the LM head.

pub mod config;
pub mod model;

pub use config::BlipTextConfig;
pub use model::{BlipTextLMHeadModel, BlipTextModel, KvCache, LmHead};
