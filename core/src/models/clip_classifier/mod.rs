//! HF `CLIPForImageClassification`: a CLIP vision tower whose last hidden state's patch tokens
//! (the class token left out, no `post_layernorm`) are averaged into a linear head. A CLIP
//! image encoder pre-trained on medical images becomes a finding classifier this way; LayerNorm
//! tuning trains its `pre_layrnorm` and every block's two norms. Parity with transformers:
//! `tests/tests/parity.rs::clip_classifier_matches_hf`.

use crate::data::ProcessorKind;
use crate::error::{Error, Result};
use crate::models::classifier::ProblemType;
use crate::models::classifier::config::{check_labels, label_names, num_labels};
use crate::models::clip::{ClipVisionConfig, ClipVisionTransformer};
use crate::models::family::Family;
use crate::models::load::Remaps;
use crate::models::{Batch, LabelScore, Processor};
use burn::module::Module;
use burn::nn::{Linear, LinearConfig};
use burn::tensor::{Device, Tensor};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The fields of HF `CLIPConfig` the classifier reads (its `text_config` is not part of it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct ClipClassifierConfig {
    /// The vision tower.
    pub vision_config: ClipVisionConfig,
    /// Label names by index (HF writes string keys).
    pub id2label: BTreeMap<String, String>,
    /// Number of labels when `id2label` is absent.
    pub num_labels: Option<usize>,
    /// How logits are read.
    pub problem_type: Option<ProblemType>,
}

impl ClipClassifierConfig {
    /// Label names in index order.
    pub fn labels(&self) -> Vec<String> {
        label_names(&self.id2label, self.num_labels)
    }

    fn validate(&self, file: &str) -> Result<()> {
        let v = &self.vision_config;
        crate::models::common::check_vision_shape(
            file,
            "vision_config.",
            (v.hidden_size, v.num_attention_heads),
            (v.image_size, v.patch_size),
        )?;
        check_labels(file, &self.id2label, self.num_labels)
    }
}

/// HF `CLIPForImageClassification` (the type is named as HF's class, which names the
/// architecture).
#[allow(clippy::upper_case_acronyms)]
#[derive(Module, Debug)]
pub struct CLIPForImageClassification {
    /// The CLIP vision tower.
    pub vision_model: ClipVisionTransformer,
    /// Head on the mean patch token, `[hidden, labels]`.
    pub classifier: Linear,
}

impl CLIPForImageClassification {
    /// Label logits from the mean of the last layer's patch tokens.
    ///
    /// # Shapes
    /// - pixels: `[batch, channels, image, image]` → `[batch, labels]`
    pub fn forward(&self, pixels: Tensor<4>) -> Tensor<2> {
        let h = self.last_hidden_state(pixels);
        let [b, n, d] = h.dims();
        let pooled = h.narrow(1, 1, n - 1).mean_dim(1).reshape([b, d]);
        self.classifier.forward(pooled)
    }

    /// HF `vision_model(pixel_values).last_hidden_state` (before `post_layernorm`).
    pub fn last_hidden_state(&self, pixels: Tensor<4>) -> Tensor<3> {
        let mut states = self.vision_model.hidden_states(pixels);
        states.pop().expect("the embeddings' state is always there")
    }
}

/// Checkpoints saved before transformers 4.31 hold the tower's `position_ids` buffer.
const REMAPS: Remaps = &[];
const IGNORED: &[&str] = &[r"position_ids$"];

impl Family for CLIPForImageClassification {
    type Config = ClipClassifierConfig;
    const MODEL_TYPE: &'static str = "clip";
    const HAS_TEXT: bool = false;
    const COMPONENTS: &'static [(&'static str, &'static str)] =
        &[("vision", "vision_model"), ("head", "classifier")];

    fn parse_config(_: &[u8], value: serde_json::Value, file: &str) -> Result<Self::Config> {
        let c: ClipClassifierConfig =
            serde_json::from_value(value).map_err(|e| Error::json(file, e))?;
        c.validate(file)?;
        Ok(c)
    }

    fn init(config: &ClipClassifierConfig, device: &Device) -> Self {
        let v = &config.vision_config;
        let labels = num_labels(&config.id2label, config.num_labels);
        Self {
            vision_model: v.init(device),
            classifier: LinearConfig::new(v.hidden_size, labels).init(device),
        }
    }

    fn blank(
        config: &ClipClassifierConfig,
        _has: &dyn Fn(&str) -> bool,
        device: &Device,
    ) -> (Self, Remaps, Vec<&'static str>) {
        (Self::init(config, device), REMAPS, IGNORED.to_vec())
    }

    fn image_processor(config: &ClipClassifierConfig) -> (ProcessorKind, usize) {
        (ProcessorKind::Clip, config.vision_config.image_size)
    }

    fn labels(config: &ClipClassifierConfig) -> Option<Vec<String>> {
        Some(config.labels())
    }

    fn forward_loss(&self, batch: &Batch, _label_smoothing: f64) -> Result<Tensor<1>> {
        crate::models::classifier::family::labels_loss(batch, |x| self.forward(x))
    }

    /// peft's default for CLIP.
    fn default_lora_targets(&self, _component: &str) -> &'static [&'static str] {
        &["q_proj", "v_proj"]
    }

    async fn classify(&self, p: &Processor, pixels: Tensor<4>) -> Result<Vec<LabelScore>> {
        let Some(c) = p.config.get::<ClipClassifierConfig>() else {
            return Err(Error::Input("this model is not an image classifier".into()));
        };
        crate::models::classifier::family::scores(self.forward(pixels), c.problem_type, c.labels())
            .await
    }
}
