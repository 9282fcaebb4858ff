//! BLIP / MISS: `BlipForQuestionAnswering` (ViT → question encoder "JTM" → answer decoder) and
//! `BlipForConditionalGeneration` (ViT → report decoder), with greedy and beam-search generation
//! and closed-set answer ranking.

pub mod config;
pub mod family;
pub mod generate;
pub mod model;

pub use config::BlipConfig;
pub use generate::GenConfig;
pub use model::{BlipForConditionalGeneration, BlipForQuestionAnswering};
