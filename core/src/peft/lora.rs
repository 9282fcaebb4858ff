//! LoRA (Hu et al. 2021; HF peft `tuners/lora`): a trainable low-rank update `scale · A·B` on
//! target Linear weights, everything else frozen. Built on burn's own `apply_lora`
//! reparameterisation; normtune chooses the targets per component and speaks peft's files.

use super::config::{Method, PeftConfig};
use super::select::component_of;
use crate::error::{Error, Result};
use crate::models::Model;
use crate::models::walk::params;
use burn::module::{Lora, Module, ParamGroup, ParamId};
use serde::{Deserialize, Serialize};

/// LoRA settings (peft `LoraConfig` names).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LoraSettings {
    /// Rank.
    pub r: usize,
    /// Scaling numerator: the update is scaled by `lora_alpha / r` (`/ √r` with rsLoRA).
    pub lora_alpha: f64,
    /// Dropout on the LoRA input (recorded in adapter files; not applied in training yet).
    pub lora_dropout: f64,
    /// Module names to adapt; default per component: `query`, `value` in BERT text models (peft's
    /// default for BERT, as MILE), `qkv` in the BLIP vision encoder, `q_proj`, `v_proj` in ViT.
    pub target_modules: Option<Vec<String>>,
    /// rsLoRA scaling `lora_alpha / √r`.
    pub use_rslora: bool,
}

impl Default for LoraSettings {
    fn default() -> Self {
        // MILE: r = 8, alpha = 32, dropout 0.1.
        Self {
            r: 8,
            lora_alpha: 32.0,
            lora_dropout: 0.1,
            target_modules: None,
            use_rslora: false,
        }
    }
}

impl LoraSettings {
    /// The factor burn's `Lora` divides by the rank, so that the scale is peft's.
    fn burn_alpha(&self) -> f64 {
        if self.use_rslora {
            self.lora_alpha * (self.r as f64).sqrt()
        } else {
            self.lora_alpha
        }
    }

    /// Target module names for a component.
    pub fn targets_for(&self, component: &str, model: &Model) -> Vec<String> {
        if let Some(t) = &self.target_modules {
            return t.clone();
        }
        let v: &[&str] = match (component, model) {
            ("vision", Model::Classifier(_)) => &["q_proj", "v_proj"],
            ("vision", _) => &["qkv"],
            _ => &["query", "value"],
        };
        v.iter().map(|s| s.to_string()).collect()
    }
}

/// Linear weights (path, id) of the model.
fn linear_weights(model: &Model) -> Vec<(Vec<String>, ParamId)> {
    params(model, |_, _, _| false)
        .into_iter()
        .filter(|r| {
            r.shape.len() == 2
                && r.path.last().is_some_and(|l| l == "weight")
                && r.container == "Struct:Linear"
        })
        .map(|r| (r.path, r.id))
        .collect()
}

/// Attaches LoRA to the target Linear weights of every component whose method is `lora`
/// (`only`: restrict to these HF-style module paths, as an adapter file lists them).
pub(crate) fn attach(model: Model, cfg: &PeftConfig, only: Option<&[String]>) -> Result<Model> {
    let s = &cfg.lora;
    if s.r == 0 {
        return Err(Error::Input("lora.r must be at least 1".into()));
    }
    let weights = linear_weights(&model);
    let mut ids = Vec::new();
    for comp in model.components().iter().map(|c| c.name) {
        if cfg.method_for(comp) != Method::Lora {
            continue;
        }
        let targets = s.targets_for(comp, &model);
        let mut hit = 0;
        for (path, id) in &weights {
            if component_of(path) != comp {
                continue;
            }
            let module = &path[path.len() - 2];
            let selected = match only {
                Some(list) => list.iter().any(|m| {
                    *m == crate::models::export::hf_name(&path[..path.len() - 1].join("."))
                }),
                None => targets.iter().any(|t| t == module),
            };
            if selected {
                ids.push(*id);
                hit += 1;
            }
        }
        if hit == 0 && only.is_none() {
            return Err(Error::Input(format!(
                "LoRA target modules {targets:?} match no Linear layer in the `{comp}` component"
            )));
        }
    }
    Ok(model.apply_lora(Lora::new(s.r, s.burn_alpha()).set_param_group(ParamGroup::from_ids(ids))))
}
