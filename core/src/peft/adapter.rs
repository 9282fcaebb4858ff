//! Houlsby bottleneck adapters (Houlsby et al. 2019): a small down/up projection after every
//! attention and feed-forward sub-layer, trained while the model stays frozen. In BERT text
//! layers they sit after each output projection (`attention.output`, `crossattention.output`,
//! `output`); in ViT blocks after the attention and the MLP.

use super::config::{Method, PeftConfig};
use crate::error::{Error, Result};
use crate::models::Model;
use crate::models::common::Bottleneck;
use serde::{Deserialize, Serialize};

/// Adapter settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AdapterSettings {
    /// Width of the bottleneck.
    pub bottleneck_size: usize,
}

impl Default for AdapterSettings {
    fn default() -> Self {
        Self {
            bottleneck_size: 64,
        }
    }
}

/// Adds identity-initialised adapters to every component whose method is `adapter`.
pub(crate) fn attach(mut model: Model, cfg: &PeftConfig) -> Result<Model> {
    let m = cfg.adapter.bottleneck_size;
    if m == 0 {
        return Err(Error::Input(
            "adapter.bottleneck_size must be at least 1".into(),
        ));
    }
    let wants = |c: &str| cfg.method_for(c) == Method::Adapter;
    let mut places: Vec<&str> = model.text_models_mut().iter().map(|(c, _)| *c).collect();
    if wants("vision") && model.set_vision_adapters(Some(m)) {
        places.push("vision");
    }
    super::select::check_places(&model, cfg, |m| m == Method::Adapter, &places)?;
    for (comp, text) in model.text_models_mut() {
        if !wants(comp) {
            continue;
        }
        for layer in &mut text.encoder.layer {
            let mut outs = vec![&mut layer.attention.output, &mut layer.output];
            if let Some(ca) = &mut layer.crossattention {
                outs.push(&mut ca.output);
            }
            for o in outs {
                let w = o.dense.weight.val();
                o.adapter = Some(Bottleneck::new(w.dims()[1], m, &w.device()));
            }
        }
    }
    Ok(model)
}
