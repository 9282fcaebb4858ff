//! Data: dataset readers, one example type, image decoding and preprocessing.

pub mod augment;
pub mod dataset;
pub mod dicom;
pub mod preprocess;
pub mod readers;
pub mod resample;
pub mod templates;

pub use augment::Augment;
pub use dataset::{Example, Format, Task, read_examples, task_of};
pub use dicom::{Window, decode_dicom, is_dicom};
pub use preprocess::{Preprocessor, ProcessorKind, decode_image};
pub use readers::{
    LabelExample, NIH_LABELS, ReportExample, VqaExample, VqaFormat, read_iu_xray, read_label_list,
    read_labels_csv, read_nih_csv, read_path_vqa, read_vqa,
};
pub use templates::QuestionTemplates;
