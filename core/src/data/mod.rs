//! Data: image decoding and preprocessing (readers for the public dataset formats come with the
//! data issue).

pub mod preprocess;

pub use preprocess::{Preprocessor, decode_image};
