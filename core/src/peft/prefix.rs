//! Prefix tuning (Li & Liang 2021; peft `PrefixTuningConfig` with `prefix_projection = true`) and
//! P-tuning v2 (Liu et al. 2022; the same without the projection): learned keys and values
//! prepended to every self-attention of the chosen BERT text components. MILE's settings: 10
//! virtual tokens.

use super::config::{Method, PeftConfig};
use crate::error::{Error, Result};
use crate::models::Model;
use crate::models::bert::model::{PrefixEncoder, PrefixMlp};
use burn::nn::{Initializer, LinearConfig};
use serde::{Deserialize, Serialize};

/// Prefix settings (peft names).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PrefixSettings {
    /// Virtual tokens per self-attention.
    pub num_virtual_tokens: usize,
    /// Width of the projection MLP (prefix tuning only); the model's hidden size when unset.
    pub encoder_hidden_size: Option<usize>,
}

impl Default for PrefixSettings {
    fn default() -> Self {
        Self {
            num_virtual_tokens: 10,
            encoder_hidden_size: None,
        }
    }
}

/// Adds a prefix to every text component whose method is `prefix` or `ptuning-v2`.
pub(crate) fn attach(mut model: Model, cfg: &PeftConfig) -> Result<Model> {
    let s = &cfg.prefix;
    if s.num_virtual_tokens == 0 {
        return Err(Error::Input(
            "prefix.num_virtual_tokens must be at least 1".into(),
        ));
    }
    for comp in model.components().iter().map(|c| c.name) {
        let m = cfg.method_for(comp);
        if matches!(m, Method::Prefix | Method::PtuningV2)
            && !matches!(comp, "text_encoder" | "decoder")
        {
            return Err(Error::Input(format!(
                "{} is available for the BERT text components (text_encoder, decoder), not `{comp}`",
                m.name()
            )));
        }
    }
    for (comp, text) in super::ia3::text_models(&mut model) {
        let method = cfg.method_for(comp);
        if !matches!(method, Method::Prefix | Method::PtuningV2) {
            continue;
        }
        let w = text.embeddings.word_embeddings.weight.val();
        let (device, hidden) = (w.device(), w.dims()[1]);
        let layers = text.encoder.layer.len();
        let heads = text
            .encoder
            .layer
            .first()
            .map_or(1, |l| l.attention.self_attn.num_heads);
        let n = s.num_virtual_tokens;
        let normal = Initializer::Normal {
            mean: 0.0,
            std: 1.0,
        };
        text.prefix = Some(if method == Method::Prefix {
            let h = s.encoder_hidden_size.unwrap_or(hidden);
            PrefixEncoder {
                embedding: normal.init([n, hidden], &device),
                transform: Some(PrefixMlp {
                    dense_in: LinearConfig::new(hidden, h).init(&device),
                    dense_out: LinearConfig::new(h, layers * 2 * hidden).init(&device),
                }),
                num_layers: layers,
                num_heads: heads,
            }
        } else {
            PrefixEncoder {
                // peft: an `nn.Embedding`, N(0, 1).
                embedding: normal.init([n, layers * 2 * hidden], &device),
                transform: None,
                num_layers: layers,
                num_heads: heads,
            }
        });
    }
    Ok(model)
}
