//! The CLIP vision tower (HF `CLIPVisionModel`'s `vision_model`): the image encoder of LLaVA-style
//! models, whose penultimate (or configured) layer's patch features their projector maps into
//! the language model.

pub mod config;
pub mod model;

pub use config::ClipVisionConfig;
pub use model::{
    ClipAttention, ClipEncoder, ClipEncoderLayer, ClipMlp, ClipVisionEmbeddings,
    ClipVisionTransformer,
};
