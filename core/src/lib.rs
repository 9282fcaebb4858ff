//! normtune-core: models, parameter-efficient fine-tuning, data, training and metrics for medical
//! vision-language models. Bytes in, results out: no filesystem, no threads and no blocking device
//! readback, so the same code runs natively and in the browser (wasm32 + WebGPU).

pub mod data;
pub mod demo;
pub mod device;
pub mod error;
#[cfg(feature = "fuzz")]
pub mod fuzz;
pub mod gguf;
pub mod metrics;
pub mod models;
pub mod peft;
pub mod source;
pub mod tokenizer;
pub mod train;
#[cfg(target_arch = "wasm32")]
mod wasm_libc;

pub use burn;
pub use error::{Error, Result};
pub use image;
