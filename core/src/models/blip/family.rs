//! BLIP's two architectures as [`Family`]s: loading, the training losses, where PEFT attaches
//! and generation.

use super::{BlipConfig, BlipForConditionalGeneration, BlipForQuestionAnswering, GenConfig};
use crate::data::ProcessorKind;
use crate::error::{Error, Result};
use crate::models::bert::{BlipTextModel, LmHead};
use crate::models::common::Bottleneck;
use crate::models::family::Family;
use crate::models::load::Remaps;
use crate::models::{Batch, Generated, Processor};
use crate::train::loss::lm_loss;
use burn::tensor::{Device, Tensor};

/// HF → normtune names, more specific first: Rust cannot name a field `self`, and fields are
/// snake_case.
pub(crate) const REMAPS: Remaps = &[
    (r"\.attention\.self\.", ".attention.self_attn."),
    (r"\.crossattention\.self\.", ".crossattention.self_attn."),
    (r"\.LayerNorm\.", ".layer_norm."),
];
// `position_ids` is a buffer older checkpoints saved; with a tied head, a saved
// `cls.predictions.decoder.bias` is the same tensor as `cls.predictions.bias`.
const IGNORED: &[&str] = &[r"embeddings\.position_ids$"];
const TIED_IGNORED: &[&str] = &[
    r"embeddings\.position_ids$",
    r"cls\.predictions\.decoder\.bias$",
];

/// What BLIP's two architectures share: the config, its parsing, the image processor, the
/// vision tower's PEFT places, the decoder's text model and the blank model for a checkpoint
/// (`$init` makes the architecture from the config and its LM head).
macro_rules! blip_family {
    ($init:ident) => {
        type Config = BlipConfig;
        const MODEL_TYPE: &'static str = "blip";

        fn parse_config(_: &[u8], value: serde_json::Value, file: &str) -> Result<BlipConfig> {
            let c: BlipConfig = serde_json::from_value(value).map_err(|e| Error::json(file, e))?;
            c.validate(file)?;
            Ok(c)
        }

        fn init(config: &BlipConfig, device: &Device) -> Self {
            config.$init(LmHead::Tied, device)
        }

        /// The checkpoint decides whether the LM head is tied: HF omits tied tensors when
        /// saving.
        fn blank(
            config: &BlipConfig,
            has: &dyn Fn(&str) -> bool,
            device: &Device,
        ) -> (Self, Remaps, Vec<&'static str>) {
            let (head, ignored) = if has("text_decoder.cls.predictions.decoder.weight") {
                let own_bias = has("text_decoder.cls.predictions.decoder.bias");
                (LmHead::Untied { own_bias }, IGNORED.to_vec())
            } else {
                (LmHead::Tied, TIED_IGNORED.to_vec())
            };
            (config.$init(head, device), REMAPS, ignored)
        }

        fn image_processor(config: &BlipConfig) -> (ProcessorKind, usize) {
            (ProcessorKind::Blip, config.vision_config.image_size)
        }

        /// peft on `blip.text_decoder` with `task_type="CAUSAL_LM"`: the prefix enters the
        /// decoder's self-attention as `past_key_values`, positions start after it.
        fn decoder_text_mut(&mut self) -> Option<&mut BlipTextModel> {
            Some(&mut self.text_decoder.bert)
        }

        fn default_lora_targets(&self, component: &str) -> &'static [&'static str] {
            match component {
                "vision" => &["qkv"],
                _ => &["query", "value"],
            }
        }

        fn set_tower_lora_dropout(&mut self, p: f64) {
            for l in &mut self.vision_model.encoder.layers {
                l.self_attn.lora_dropout = p;
            }
        }

        fn set_vision_adapters(&mut self, size: Option<usize>) -> bool {
            for l in &mut self.vision_model.encoder.layers {
                let w = l.self_attn.projection.weight.val();
                let (d, device) = (w.dims()[1], w.device());
                l.attn_adapter = size.map(|m| Bottleneck::new(d, m, &device));
                l.mlp_adapter = size.map(|m| Bottleneck::new(d, m, &device));
            }
            true
        }
    };
}

fn wrong_batch() -> Error {
    Error::Input(
        "this batch is for a different kind of model (VQA / report / classification)".into(),
    )
}

impl Family for BlipForQuestionAnswering {
    blip_family!(init_vqa);
    const COMPONENTS: &'static [(&'static str, &'static str)] = &[
        ("vision", "vision_model"),
        ("text_encoder", "text_encoder"),
        ("decoder", "text_decoder"),
    ];

    fn forward_loss(&self, batch: &Batch, label_smoothing: f64) -> Result<Tensor<1>> {
        let Batch::Vqa {
            pixels,
            question_ids,
            question_mask,
            answer_ids,
            answer_mask,
        } = batch
        else {
            return Err(wrong_batch());
        };
        let image = self.encode_image(pixels.clone());
        let q = self.encode_question(&image, question_ids.clone(), Some(question_mask.clone()));
        let logits = self.answer_logits(
            &q,
            Some(question_mask.clone()),
            answer_ids.clone(),
            Some(answer_mask.clone()),
        );
        Ok(lm_loss(
            logits,
            answer_ids.clone(),
            answer_mask.clone(),
            label_smoothing,
        ))
    }

    fn text_models_mut(&mut self) -> Vec<(&'static str, &mut BlipTextModel)> {
        vec![
            ("text_encoder", &mut self.text_encoder),
            ("decoder", &mut self.text_decoder.bert),
        ]
    }

    async fn answer(
        &self,
        p: &Processor,
        pixels: Tensor<4>,
        question: &str,
        gen_cfg: &GenConfig,
    ) -> Result<Generated> {
        let ids = p.question_ids(question)?;
        let tokens = p.special_tokens()?;
        let out = self.generate(pixels, ids, None, &tokens, gen_cfg).await?;
        p.generated(out)
    }

    async fn rank(
        &self,
        p: &Processor,
        pixels: Tensor<4>,
        question: &str,
        candidates: &[String],
    ) -> Result<Vec<(String, f32)>> {
        if candidates.is_empty() {
            return Err(Error::Input("no candidate answers given".into()));
        }
        let (c, tok) = p.blip()?;
        let tokens = p.special_tokens()?;
        let ids = p.question_ids(question)?;
        let image = self.encode_image(pixels);
        let q = self.encode_question(&image, ids, None);
        let mut cands = Vec::with_capacity(candidates.len());
        for a in candidates {
            let mut ids = tok.encode(a, c.text_config.max_position_embeddings)?;
            ids[0] = tokens.bos; // [CLS] → decoder start, as BLIP's answer tokens
            cands.push(ids);
        }
        let scores =
            super::generate::read_f32(self.score_candidates(&q, None, &cands, tokens.pad)).await?;
        let mut ranked: Vec<(String, f32)> = candidates.iter().cloned().zip(scores).collect();
        ranked.sort_by(|a, b| b.1.partial_cmp(&a.1).unwrap_or(std::cmp::Ordering::Equal));
        Ok(ranked)
    }
}

impl Family for BlipForConditionalGeneration {
    blip_family!(init_captioner);
    const COMPONENTS: &'static [(&'static str, &'static str)] =
        &[("vision", "vision_model"), ("decoder", "text_decoder")];
    const DEFAULT_FOR_TYPE: bool = true;

    fn forward_loss(&self, batch: &Batch, label_smoothing: f64) -> Result<Tensor<1>> {
        let Batch::Report { pixels, ids, mask } = batch else {
            return Err(wrong_batch());
        };
        let image = self.encode_image(pixels.clone());
        let logits = self.text_logits(&image, ids.clone(), Some(mask.clone()));
        Ok(lm_loss(logits, ids.clone(), mask.clone(), label_smoothing))
    }

    fn text_models_mut(&mut self) -> Vec<(&'static str, &mut BlipTextModel)> {
        vec![("decoder", &mut self.text_decoder.bert)]
    }

    async fn report(
        &self,
        p: &Processor,
        pixels: Tensor<4>,
        gen_cfg: &GenConfig,
    ) -> Result<Generated> {
        let tokens = p.special_tokens()?;
        let out = self
            .generate(pixels, &[tokens.bos], &tokens, gen_cfg)
            .await?;
        p.generated(out)
    }
}
