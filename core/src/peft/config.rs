//! `PeftConfig`: a placement (component → method) plus `modules_to_save`, written in TOML/JSON
//! or as `vision=layernorm,text_encoder=layernorm,decoder=lora` on the command line.

use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

pub use super::registry::Method;

impl Method {
    /// Every method name the command line and config files accept (aliases aside).
    pub fn names() -> Vec<&'static str> {
        super::registry::TUNERS.iter().map(|t| t.name).collect()
    }

    /// The command-line name.
    pub fn name(self) -> &'static str {
        super::registry::tuner(self).name
    }

    /// LoRA or DoRA: low-rank factors on target Linear weights, set by `[peft.lora]`.
    pub fn is_lora(self) -> bool {
        matches!(self, Method::Lora | Method::Dora)
    }

    /// Whether the method adds parameters (an adapter that can be switched off) rather than
    /// training some of the model's own in place.
    pub fn adds_parameters(self) -> bool {
        super::registry::tuner(self).adds.is_some()
    }
}

impl std::str::FromStr for Method {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        super::registry::find(s).ok_or_else(|| {
            Error::Input(format!(
                "unknown PEFT method `{}` (expected one of: {})",
                s.trim().to_ascii_lowercase().replace('_', "-"),
                Method::names().join(", ")
            ))
        })
    }
}

/// The components a placement can name.
pub const COMPONENTS: &[&str] = &["vision", "text_encoder", "projector", "decoder", "head"];

/// What to train: a method per component, plus modules trained fully whatever their component.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct PeftConfig {
    /// Component (`vision`, `text_encoder`, `decoder`, `head`) → method. A component not named
    /// uses `default_method`.
    pub placement: BTreeMap<String, Method>,
    /// Method for components the placement does not name (`layernorm` when unset).
    pub default_method: Option<Method>,
    /// Module names trained fully wherever they are (HF peft's `modules_to_save`), e.g.
    /// `classifier`. A classifier's head is in this list unless the config names the head.
    pub modules_to_save: Vec<String>,
    /// LoRA settings, for components whose method is `lora` or `dora`.
    pub lora: super::lora::LoraSettings,
    /// Prefix settings, for components whose method is `prefix` or `ptuning-v2`.
    pub prefix: super::prefix::PrefixSettings,
    /// Bottleneck adapter settings, for components whose method is `adapter`.
    pub adapter: super::adapter::AdapterSettings,
}

impl PeftConfig {
    /// One method everywhere (`--peft layernorm`), or a placement
    /// (`--peft vision=layernorm,text_encoder=layernorm,decoder=frozen`).
    pub fn parse(spec: &str) -> Result<Self> {
        let mut cfg = PeftConfig::default();
        for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            match part.split_once('=') {
                None => cfg.default_method = Some(part.parse()?),
                Some((comp, method)) => {
                    let comp = comp.trim();
                    if !COMPONENTS.contains(&comp) {
                        return Err(Error::Input(format!(
                            "unknown component `{comp}` in `{spec}` (expected one of: {})",
                            COMPONENTS.join(", ")
                        )));
                    }
                    cfg.placement.insert(comp.to_string(), method.parse()?);
                }
            }
        }
        if cfg.placement.is_empty() && cfg.default_method.is_none() {
            return Err(Error::Input("empty PEFT spec".into()));
        }
        Ok(cfg)
    }

    /// Reads a JSON config; `file` is named in errors.
    pub fn from_json(bytes: &[u8], file: &str) -> Result<Self> {
        let cfg: Self = serde_json::from_slice(bytes).map_err(|e| Error::json(file, e))?;
        for comp in cfg.placement.keys() {
            if !COMPONENTS.contains(&comp.as_str()) {
                return Err(Error::config(
                    file,
                    "placement",
                    format!(
                        "unknown component `{comp}` (expected one of: {})",
                        COMPONENTS.join(", ")
                    ),
                ));
            }
        }
        Ok(cfg)
    }

    /// The method for a component (`lora` with `lora.use_dora` set is DoRA, as in peft).
    pub fn method_for(&self, component: &str) -> Method {
        let m = self
            .placement
            .get(component)
            .copied()
            .unwrap_or(self.default_method.unwrap_or(Method::Layernorm));
        if m == Method::Lora && self.lora.use_dora {
            Method::Dora
        } else {
            m
        }
    }

    /// Whether `component` is a classifier's head the placement does not name: it then trains
    /// fully (peft's `modules_to_save`), whatever the default method.
    pub fn head_unplaced(&self, component: &str) -> bool {
        component == "head" && !self.placement.contains_key("head")
    }

    /// A short description, e.g. `vision=layernorm,text_encoder=layernorm,decoder=layernorm`.
    pub fn describe(&self, components: &[&str]) -> String {
        components
            .iter()
            .map(|c| format!("{c}={}", self.method_for(c).name()))
            .collect::<Vec<_>>()
            .join(",")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_shorthand_and_placement() {
        let c = PeftConfig::parse("layernorm").unwrap();
        assert_eq!(c.method_for("vision"), Method::Layernorm);
        let c = PeftConfig::parse("vision=full, decoder=frozen").unwrap();
        assert_eq!(c.method_for("vision"), Method::Full);
        assert_eq!(c.method_for("decoder"), Method::Frozen);
        assert_eq!(c.method_for("text_encoder"), Method::Layernorm);
        for name in Method::names() {
            assert_eq!(name.parse::<Method>().unwrap().name(), name);
        }
    }

    #[test]
    fn peft_use_dora_makes_lora_dora() {
        let c = PeftConfig::from_json(
            br#"{"placement": {"vision": "frozen"}, "default_method": "lora", "lora": {"use_dora": true}}"#,
            "peft.json",
        )
        .unwrap();
        assert_eq!(c.method_for("decoder"), Method::Dora);
        assert_eq!(c.method_for("vision"), Method::Frozen);
        assert_eq!(
            PeftConfig::parse("lora").unwrap().method_for("decoder"),
            Method::Lora
        );
    }

    #[test]
    fn rejects_unknown_names() {
        assert!(
            PeftConfig::parse("lorax")
                .unwrap_err()
                .to_string()
                .contains("lorax")
        );
        assert!(
            PeftConfig::parse("eyes=full")
                .unwrap_err()
                .to_string()
                .contains("eyes")
        );
    }
}
