//! Parameter-efficient fine-tuning: which parameters train, placed per component (MILE's
//! frozen / trained / adapted choice for vision encoder, text encoder and decoder), with
//! LayerNorm tuning (arXiv 2404.16385) as the default method.
//!
//! PEFT is data: a [`PeftConfig`] says what to do, [`apply`] does it, [`report`] counts it.

pub mod adapter;
pub mod config;
pub mod ia3;
pub mod io;
pub mod lora;
pub mod prefix;
pub mod report;
pub mod select;

pub use config::{Method, PeftConfig};
pub use report::{ComponentReport, TrainableReport, report};
pub use select::apply;
