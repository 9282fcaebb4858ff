//! HF `BlipConfig`: a text and a vision config plus the head named in `architectures`.

use crate::models::bert::BlipTextConfig;
use crate::models::blip_vision::BlipVisionConfig;
use serde::{Deserialize, Serialize};

/// HF `BlipConfig` (the fields normtune uses; unknown fields are ignored, as HF does).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct BlipConfig {
    /// The text encoder / decoder.
    pub text_config: BlipTextConfig,
    /// The image encoder.
    pub vision_config: BlipVisionConfig,
    /// Whether the LM head is tied to the word embeddings (the weights file decides in the end).
    pub tie_word_embeddings: Option<bool>,
}

impl BlipConfig {
    /// MISS/MILE: ViT-B/16 at 480 + BERT-base encoder and decoder (≈361.5M parameters).
    pub fn miss_base() -> Self {
        Self {
            text_config: BlipTextConfig::miss_base(),
            vision_config: BlipVisionConfig::miss_base(),
            tie_word_embeddings: Some(true),
        }
    }
    /// A tiny model for tests and the built-in demo.
    pub fn tiny(vocab_size: usize) -> Self {
        let vision = BlipVisionConfig::tiny();
        // The answer decoder reuses the text config and cross-attends to question states, so
        // (as in every released BLIP) the text width must equal the vision width.
        let text = BlipTextConfig {
            hidden_size: vision.hidden_size,
            num_attention_heads: 4,
            encoder_hidden_size: vision.hidden_size,
            ..BlipTextConfig::tiny(vocab_size)
        };
        Self {
            text_config: text,
            vision_config: vision,
            tie_word_embeddings: Some(true),
        }
    }
    /// Checks both halves and that they fit together.
    pub fn validate(&self, file: &str) -> crate::Result<()> {
        self.vision_config.validate(file)?;
        self.text_config.validate(file)?;
        if self.text_config.encoder_hidden_size != self.vision_config.hidden_size {
            return Err(crate::Error::config(
                file,
                "text_config.encoder_hidden_size",
                format!(
                    "{} but vision_config.hidden_size is {}; the question encoder cross-attends to the image states",
                    self.text_config.encoder_hidden_size, self.vision_config.hidden_size
                ),
            ));
        }
        Ok(())
    }
}
