//! The built-in benchmark ([`bench`]: generated studies, questions, reports) and the demo base
//! model's recipe ([`model`]: vocabulary, config, preprocessing, the committed weights).

pub mod bench;
pub mod model;

pub use bench::*;
