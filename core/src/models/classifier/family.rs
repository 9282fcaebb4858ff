//! The ViT classifier as a [`Family`]: loading, the labels' loss, where PEFT attaches and
//! classification.

use super::{ProblemType, ViTConfig, ViTForImageClassification};
use crate::data::ProcessorKind;
use crate::error::{Error, Result};
use crate::models::common::Bottleneck;
use crate::models::family::Family;
use crate::models::load::Remaps;
use crate::models::{Batch, LabelScore, Processor};
use crate::train::loss::bce_with_logits;
use burn::tensor::activation::{sigmoid, softmax};
use burn::tensor::{Device, Tensor};

/// transformers < 5 checkpoints use the BERT-style names that transformers 5 itself renames on
/// load (its `conversion_mapping.py`, "ViTModel").
const REMAPS: Remaps = &[
    (r"^vit\.encoder\.layer\.", "vit.layers."),
    (r"\.attention\.attention\.query\.", ".attention.q_proj."),
    (r"\.attention\.attention\.key\.", ".attention.k_proj."),
    (r"\.attention\.attention\.value\.", ".attention.v_proj."),
    (r"\.attention\.output\.dense\.", ".attention.o_proj."),
    (r"\.intermediate\.dense\.", ".mlp.fc1."),
    (r"\.output\.dense\.", ".mlp.fc2."),
];
/// The ViT pooler is unused by the classifier.
const IGNORED: &[&str] = &[r"^vit\.pooler\."];

impl Family for ViTForImageClassification {
    type Config = ViTConfig;
    const MODEL_TYPE: &'static str = "vit";
    const HAS_TEXT: bool = false;
    const COMPONENTS: &'static [(&'static str, &'static str)] =
        &[("vision", "vit"), ("head", "classifier")];

    fn parse_config(_: &[u8], value: serde_json::Value, file: &str) -> Result<ViTConfig> {
        let c: ViTConfig = serde_json::from_value(value).map_err(|e| Error::json(file, e))?;
        c.validate(file)?;
        Ok(c)
    }

    fn init(config: &ViTConfig, device: &Device) -> Self {
        config.init(device)
    }

    fn blank(
        config: &ViTConfig,
        _has: &dyn Fn(&str) -> bool,
        device: &Device,
    ) -> (Self, Remaps, Vec<&'static str>) {
        (config.init(device), REMAPS, IGNORED.to_vec())
    }

    fn image_processor(config: &ViTConfig) -> (ProcessorKind, usize) {
        (ProcessorKind::Vit, config.image_size)
    }

    fn labels(config: &ViTConfig) -> Option<Vec<String>> {
        Some(config.labels())
    }

    fn forward_loss(&self, batch: &Batch, _label_smoothing: f64) -> Result<Tensor<1>> {
        let Batch::Classify { pixels, targets } = batch else {
            return Err(Error::Input(
                "this batch is for a different kind of model (VQA / report / classification)"
                    .into(),
            ));
        };
        Ok(bce_with_logits(
            self.forward(pixels.clone()),
            targets.clone(),
        ))
    }

    fn default_lora_targets(&self, component: &str) -> &'static [&'static str] {
        match component {
            "vision" => &["q_proj", "v_proj"],
            _ => &["query", "value"],
        }
    }

    fn set_tower_lora_dropout(&mut self, p: f64) {
        for l in &mut self.vit.layers {
            l.attention.lora_dropout = p;
        }
    }

    fn set_vision_adapters(&mut self, size: Option<usize>) -> bool {
        for l in &mut self.vit.layers {
            let w = l.attention.o_proj.weight.val();
            let (d, device) = (w.dims()[1], w.device());
            l.attn_adapter = size.map(|m| Bottleneck::new(d, m, &device));
            l.mlp_adapter = size.map(|m| Bottleneck::new(d, m, &device));
        }
        true
    }

    async fn classify(&self, p: &Processor, pixels: Tensor<4>) -> Result<Vec<LabelScore>> {
        let Some(c) = p.config.get::<ViTConfig>() else {
            return Err(Error::Input("this model is not an image classifier".into()));
        };
        scores(self.forward(pixels), c.problem_type, c.labels()).await
    }
}

/// One image's logits `[1, labels]` read as HF reads them under `problem_type` (sigmoid per
/// label by default, softmax for single-label, raw for regression), paired with the labels.
pub(crate) async fn scores(
    logits: Tensor<2>,
    problem_type: Option<ProblemType>,
    labels: Vec<String>,
) -> Result<Vec<LabelScore>> {
    let n = logits.dims()[1];
    let probs = match problem_type.unwrap_or_default() {
        ProblemType::SingleLabelClassification => softmax(logits.clone(), 1),
        ProblemType::MultiLabelClassification => sigmoid(logits.clone()),
        ProblemType::Regression => logits.clone(),
    };
    let read = crate::models::blip::generate::read_f32;
    let l = read(logits.reshape([n])).await?;
    let p = read(probs.reshape([n])).await?;
    Ok(labels
        .into_iter()
        .zip(l.into_iter().zip(p))
        .map(|(label, (logit, probability))| LabelScore {
            label,
            logit,
            probability,
        })
        .collect())
}

/// A classifier's training loss: the labels' binary cross-entropy (HF's
/// `multi_label_classification`) of the logits `forward` gives for a [`Batch::Classify`].
pub(crate) fn labels_loss(
    batch: &Batch,
    forward: impl FnOnce(Tensor<4>) -> Tensor<2>,
) -> Result<Tensor<1>> {
    let Batch::Classify { pixels, targets } = batch else {
        return Err(Error::Input(
            "this batch is for a different kind of model (VQA / report / classification)".into(),
        ));
    };
    Ok(bce_with_logits(forward(pixels.clone()), targets.clone()))
}
