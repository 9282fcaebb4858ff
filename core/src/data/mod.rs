//! Data: dataset readers, image decoding and preprocessing.

pub mod preprocess;
pub mod readers;

pub use preprocess::{Preprocessor, decode_image};
pub use readers::{
    LabelExample, NIH_LABELS, ReportExample, VqaExample, VqaFormat, read_iu_xray, read_label_list,
    read_nih_csv, read_vqa,
};
