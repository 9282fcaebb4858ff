//! The BLIP vision transformer (HF `BlipVisionModel`; timm ViT-B/16 in MISS/BLIP).

pub mod config;
pub mod model;

pub use config::BlipVisionConfig;
pub use model::BlipVisionModel;
