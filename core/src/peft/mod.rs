//! Parameter-efficient fine-tuning: which parameters train, placed per component (MILE's
//! frozen / trained / adapted choice for vision encoder, text encoder and decoder), with
//! LayerNorm tuning (arXiv 2404.16385) as the default method.
//!
//! PEFT is data: a [`PeftConfig`] says what to do, [`apply`] does it, [`report`] counts it.

pub mod adapter;
pub mod config;
pub mod disable;
pub mod dora;
pub mod frozen;
pub mod ia3;
pub mod io;
pub mod layernorm;
pub mod lora;
pub mod prefix;
pub mod registry;
pub mod report;
pub mod select;

use crate::models;
pub use config::{Method, PeftConfig};
pub use disable::disabled;
pub use frozen::store_frozen;
pub use report::{ComponentReport, TrainableReport, report, report_lazy};
pub use select::apply;

/// Why `model` cannot be written as plain weights after folding IA3 and LoRA, if it cannot:
/// prefix keys/values and bottleneck adapters add computation no weight matrix can absorb.
pub fn unmergeable(model: &models::Model) -> Option<String> {
    models::walk::param_paths(model).into_iter().find_map(|p| {
        let segs: Vec<String> = p.split('.').map(String::from).collect();
        let m = registry::adders(&segs).find(|m| !registry::tuner(*m).mergeable)?;
        Some(format!(
            "`{p}` belongs to a `{}` module, which cannot be merged into the weights (use --adapter at inference instead)",
            m.name()
        ))
    })
}
