//! The built-in benchmark ([`bench`]: generated studies, questions, reports), the demo base
//! model's recipe ([`model`]: vocabulary, config, preprocessing, the committed weights) and the
//! LLaVA-style demo ([`llava`]: the real SmolLM2 decoder under a small pre-trained tower).

pub mod bench;
pub mod llava;
pub mod model;

pub use bench::*;
