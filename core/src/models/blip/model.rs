//! HF `BlipForQuestionAnswering` and `BlipForConditionalGeneration`.

use super::config::BlipConfig;
use super::generate::{GenConfig, SpecialTokens, generate};
use crate::error::Result;
use crate::models::bert::model::CrossInput;
use crate::models::bert::{BlipTextLMHeadModel, BlipTextModel, LmHead};
use crate::models::blip_vision::BlipVisionModel;
use burn::module::Module;
use burn::tensor::activation::log_softmax;
use burn::tensor::{Device, Int, Tensor};

/// MISS/BLIP VQA: image → ViT; question + image → text encoder ("JTM"); answer decoder
/// cross-attending to the question states.
#[derive(Module, Debug)]
pub struct BlipForQuestionAnswering {
    /// Image encoder.
    pub vision_model: BlipVisionModel,
    /// Question encoder with cross-attention to the image.
    pub text_encoder: BlipTextModel,
    /// Answer decoder with cross-attention to the question.
    pub text_decoder: BlipTextLMHeadModel,
}

/// BLIP captioning / report generation: image → ViT → decoder cross-attending to the image.
#[derive(Module, Debug)]
pub struct BlipForConditionalGeneration {
    /// Image encoder.
    pub vision_model: BlipVisionModel,
    /// Report decoder.
    pub text_decoder: BlipTextLMHeadModel,
}

impl BlipConfig {
    /// A randomly initialised VQA model.
    pub fn init_vqa(&self, head: LmHead, device: &Device) -> BlipForQuestionAnswering {
        BlipForQuestionAnswering {
            vision_model: self.vision_config.init(device),
            text_encoder: self.text_config.init_text_model(device),
            text_decoder: self.text_config.init_lm_head_model(head, device),
        }
    }
    /// A randomly initialised report generator.
    pub fn init_captioner(&self, head: LmHead, device: &Device) -> BlipForConditionalGeneration {
        BlipForConditionalGeneration {
            vision_model: self.vision_config.init(device),
            text_decoder: self.text_config.init_lm_head_model(head, device),
        }
    }
}

impl BlipForQuestionAnswering {
    /// Image states (HF `vision_model(...).last_hidden_state`).
    ///
    /// # Shapes
    /// - pixels: `[batch, 3, h, w]` → `[batch, patches + 1, vision_hidden]`
    pub fn encode_image(&self, pixels: Tensor<4>) -> Tensor<3> {
        self.vision_model.forward(pixels)
    }

    /// Question states: the text encoder over the question, cross-attending to every image token.
    ///
    /// # Shapes
    /// - ids, mask (0/1): `[batch, q_len]` → `[batch, q_len, hidden]`
    pub fn encode_question(
        &self,
        image: &Tensor<3>,
        ids: Tensor<2, Int>,
        mask: Option<Tensor<2>>,
    ) -> Tensor<3> {
        self.text_encoder.forward(
            ids,
            mask,
            Some(CrossInput {
                states: image,
                mask: None,
            }),
            false,
            None,
        )
    }

    /// Teacher-forced answer logits (HF `text_decoder(...)`.logits).
    ///
    /// # Shapes
    /// - question: `[batch, q_len, hidden]`, question_mask: `[batch, q_len]`
    /// - answer ids / mask: `[batch, a_len]` → `[batch, a_len, vocab]`
    pub fn answer_logits(
        &self,
        question: &Tensor<3>,
        question_mask: Option<Tensor<2>>,
        answer_ids: Tensor<2, Int>,
        answer_mask: Option<Tensor<2>>,
    ) -> Tensor<3> {
        self.text_decoder.forward(
            answer_ids,
            answer_mask,
            Some(CrossInput {
                states: question,
                mask: question_mask,
            }),
            None,
        )
    }

    /// Generates answers, one per batch row, each starting with the decoder start token.
    ///
    /// The decoder attends to the question's real tokens only (HF's `generate` attends to padding
    /// too, so the two agree exactly when the batch has no padding, e.g. one question at a time).
    pub async fn generate(
        &self,
        pixels: Tensor<4>,
        ids: Tensor<2, Int>,
        mask: Option<Tensor<2>>,
        tokens: &SpecialTokens,
        cfg: &GenConfig,
    ) -> Result<Vec<Vec<i64>>> {
        let image = self.encode_image(pixels);
        let question = self.encode_question(&image, ids, mask.clone());
        generate(
            &self.text_decoder,
            &question,
            mask,
            &[tokens.bos],
            tokens,
            cfg,
        )
        .await
    }

    /// Log-likelihood of each candidate answer for one question: the sum of the log-probabilities
    /// of the candidate's tokens after the start token, its final `[SEP]` included.
    ///
    /// # Shapes
    /// - question: `[1, q_len, hidden]`, question_mask: `[1, q_len]`
    /// - candidates: token ids each starting with the decoder start token and ending with `[SEP]`
    /// - returns `[n_candidates]`
    pub fn score_candidates(
        &self,
        question: &Tensor<3>,
        question_mask: Option<Tensor<2>>,
        candidates: &[Vec<i64>],
        pad: i64,
    ) -> Tensor<1> {
        let device = question.device();
        let n = candidates.len();
        let len = candidates.iter().map(Vec::len).max().unwrap_or(0);
        let mut ids = Vec::with_capacity(n * len);
        let mut mask = Vec::with_capacity(n * len);
        for c in candidates {
            ids.extend(
                c.iter()
                    .copied()
                    .chain(std::iter::repeat(pad).take(len - c.len())),
            );
            mask.extend((0..len).map(|i| if i < c.len() { 1.0f32 } else { 0.0 }));
        }
        let ids = Tensor::<1, Int>::from_ints(ids.as_slice(), &device).reshape([n, len]);
        let mask = Tensor::<1>::from_floats(mask.as_slice(), &device).reshape([n, len]);
        let [_, q_len, d] = question.dims();
        let states = question.clone().expand([n, q_len, d]);
        let q_mask = question_mask.map(|m| m.expand([n, q_len]));
        let logits = self.answer_logits(&states, q_mask, ids.clone(), Some(mask.clone()));
        let logp = log_softmax(logits.narrow(1, 0, len - 1), 2);
        let targets = ids.narrow(1, 1, len - 1).unsqueeze_dim::<3>(2);
        let picked = logp.gather(2, targets).squeeze_dim::<2>(2);
        (picked * mask.narrow(1, 1, len - 1))
            .sum_dim(1)
            .squeeze_dim::<1>(1)
    }
}

impl BlipForConditionalGeneration {
    /// Image states.
    ///
    /// # Shapes
    /// - pixels: `[batch, 3, h, w]` → `[batch, patches + 1, vision_hidden]`
    pub fn encode_image(&self, pixels: Tensor<4>) -> Tensor<3> {
        self.vision_model.forward(pixels)
    }

    /// Teacher-forced report logits.
    ///
    /// # Shapes
    /// - image: `[batch, patches + 1, vision_hidden]`, ids / mask: `[batch, len]` → `[batch, len, vocab]`
    pub fn text_logits(
        &self,
        image: &Tensor<3>,
        ids: Tensor<2, Int>,
        mask: Option<Tensor<2>>,
    ) -> Tensor<3> {
        self.text_decoder.forward(
            ids,
            mask,
            Some(CrossInput {
                states: image,
                mask: None,
            }),
            None,
        )
    }

    /// Generates a report per image, starting from `prompt` (HF: `[bos]` when no prompt is given).
    pub async fn generate(
        &self,
        pixels: Tensor<4>,
        prompt: &[i64],
        tokens: &SpecialTokens,
        cfg: &GenConfig,
    ) -> Result<Vec<Vec<i64>>> {
        let image = self.encode_image(pixels);
        generate(&self.text_decoder, &image, None, prompt, tokens, cfg).await
    }
}
