//! Metrics as pure functions on strings and numbers, pinned to the reference implementations:
//! VQA exact-match accuracy (one written-down normalisation) and open token recall, BLEU-1..4,
//! ROUGE-L and CIDEr-D as pycocoevalcap computes them on pre-tokenised text, and AUROC as
//! scikit-learn's `roc_auc_score` (mean over classes, MED-PEFT). [`score`] names them.

pub mod auroc;
pub mod score;
pub mod text;
pub mod vqa;

pub use auroc::{auroc, mean_auroc};
pub use score::{
    Scores, primary_metric, report_tokens, score_classification, score_jsonl, score_reports,
    score_vqa,
};
pub use text::{bleu, cider_d, rouge_l};
pub use vqa::{VqaAccuracy, normalize_answer, token_recall, vqa_accuracy};
