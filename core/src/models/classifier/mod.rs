//! ViT image classifier with a multi-label head (HF `ViTForImageClassification`; the MED-PEFT
//! chest X-ray setting).

pub mod config;
pub mod family;
pub mod model;

pub use config::{ProblemType, ViTConfig};
pub use model::ViTForImageClassification;
