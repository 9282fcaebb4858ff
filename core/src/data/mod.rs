//! Data: dataset readers, image decoding and preprocessing.

pub mod preprocess;
pub mod readers;

pub use preprocess::{Preprocessor, decode_image};
pub use readers::{VqaExample, VqaFormat, read_vqa};
