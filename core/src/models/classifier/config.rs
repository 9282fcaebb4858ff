//! HF `ViTConfig`, field for field, plus the classification fields of `PretrainedConfig`.

use crate::models::common::Activation;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// How logits become predictions and losses (HF `problem_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum ProblemType {
    /// Sigmoid per label, BCE loss (chest X-ray findings).
    #[default]
    MultiLabelClassification,
    /// Softmax over labels, cross-entropy loss.
    SingleLabelClassification,
    /// Raw outputs, MSE loss.
    Regression,
}

/// Configuration of the ViT classifier; field names and defaults are HF's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ViTConfig {
    /// Width of every block.
    pub hidden_size: usize,
    /// Number of blocks.
    pub num_hidden_layers: usize,
    /// Heads per block.
    pub num_attention_heads: usize,
    /// MLP width.
    pub intermediate_size: usize,
    /// MLP activation.
    pub hidden_act: Activation,
    /// LayerNorm epsilon.
    pub layer_norm_eps: f64,
    /// Side of the square input image.
    pub image_size: usize,
    /// Side of a square patch.
    pub patch_size: usize,
    /// Input channels.
    pub num_channels: usize,
    /// Whether q/k/v projections have biases.
    pub qkv_bias: bool,
    /// Std of the random initialisation.
    pub initializer_range: f64,
    /// Label names by index (HF writes string keys).
    pub id2label: BTreeMap<String, String>,
    /// Number of labels when `id2label` is absent.
    pub num_labels: Option<usize>,
    /// How logits are read.
    pub problem_type: Option<ProblemType>,
}

impl Default for ViTConfig {
    fn default() -> Self {
        Self {
            hidden_size: 768,
            num_hidden_layers: 12,
            num_attention_heads: 12,
            intermediate_size: 3072,
            hidden_act: Activation::Gelu,
            layer_norm_eps: 1e-12,
            image_size: 224,
            patch_size: 16,
            num_channels: 3,
            qkv_bias: true,
            initializer_range: 0.02,
            id2label: BTreeMap::new(),
            num_labels: None,
            problem_type: None,
        }
    }
}

impl ViTConfig {
    /// ViT-B/16 at 224 with the 14 NIH ChestX-ray14 findings (MED-PEFT).
    pub fn nih_base() -> Self {
        Self {
            layer_norm_eps: 1e-6,
            id2label: crate::data::NIH_LABELS
                .iter()
                .enumerate()
                .map(|(i, l)| (i.to_string(), l.to_string()))
                .collect(),
            problem_type: Some(ProblemType::MultiLabelClassification),
            ..Self::default()
        }
    }
    /// Number of outputs of the head.
    pub fn num_labels(&self) -> usize {
        num_labels(&self.id2label, self.num_labels)
    }
    /// Label names in index order (`LABEL_i` where the config names none, as HF does).
    pub fn labels(&self) -> Vec<String> {
        label_names(&self.id2label, self.num_labels)
    }
    /// Patches per image plus the class token.
    pub fn num_positions(&self) -> usize {
        (self.image_size / self.patch_size).pow(2) + 1
    }
    /// Checks the values the model cannot run with.
    pub fn validate(&self, file: &str) -> crate::Result<()> {
        crate::models::common::check_vision_shape(
            file,
            "",
            (self.hidden_size, self.num_attention_heads),
            (self.image_size, self.patch_size),
        )?;
        check_labels(file, &self.id2label, self.num_labels)
    }
}

/// A classifier needs at least one label (`id2label`, else `num_labels`).
pub(crate) fn check_labels(
    file: &str,
    id2label: &BTreeMap<String, String>,
    labels: Option<usize>,
) -> crate::Result<()> {
    if num_labels(id2label, labels) == 0 {
        return Err(crate::Error::config(
            file,
            "id2label",
            "the classifier needs at least one label",
        ));
    }
    Ok(())
}

/// The head's width from `PretrainedConfig`'s `id2label` (string keys) or, without one,
/// `num_labels` (HF's default: 2).
pub(crate) fn num_labels(id2label: &BTreeMap<String, String>, num_labels: Option<usize>) -> usize {
    if id2label.is_empty() {
        num_labels.unwrap_or(2)
    } else {
        id2label.len()
    }
}

/// Label names in index order (`LABEL_i` where the config names none, as HF does).
pub(crate) fn label_names(
    id2label: &BTreeMap<String, String>,
    num_labels: Option<usize>,
) -> Vec<String> {
    (0..self::num_labels(id2label, num_labels))
        .map(|i| {
            id2label
                .get(&i.to_string())
                .cloned()
                .unwrap_or_else(|| format!("LABEL_{i}"))
        })
        .collect()
}
