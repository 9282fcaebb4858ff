//! HF `LlavaForConditionalGeneration`: a CLIP vision tower ([`crate::models::clip`]), whose
//! penultimate (or configured) layer's patch features a 2-layer projector maps into a LLaMA
//! decoder's embedding space, spliced in where the prompt holds the image token. Parity with
//! transformers: `tests/tests/llava.rs`.
//!
//! Checkpoint names: transformers writes `vision_tower.…`, `multi_modal_projector.…`,
//! `language_model.model.…` and `language_model.lm_head.…`; llava-hf's older files have
//! `vision_tower.vision_model.…`, newer ones `model.language_model.…`; all load.

use crate::error::{Error, Result};
use crate::models::clip::{ClipVisionConfig, ClipVisionTransformer};
use crate::models::common::Activation;
use crate::models::llama::{LlamaConfig, LlamaForCausalLM};
use crate::train::loss::lm_loss;
use burn::module::Module;
use burn::nn::{Linear, LinearConfig};
use burn::tensor::{Device, Int, Tensor};
use serde::{Deserialize, Serialize};

/// The conversation a question becomes (LLaVA-1.5's `USER: <image>\n… ASSISTANT:`); the answer
/// follows after a space, then the end-of-sequence token.
pub const PROMPT: &str = "USER: <image>\n{question} ASSISTANT:";

/// The question a report is the answer to (report generation as a chat).
pub const REPORT_INSTRUCTION: &str = "Describe the findings.";

/// HF `LlavaConfig`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LlavaConfig {
    /// The vision tower.
    pub vision_config: ClipVisionConfig,
    /// The language model.
    pub text_config: LlamaConfig,
    /// The token the prompt holds once per image feature.
    #[serde(default = "default_image_token")]
    pub image_token_index: i64,
    /// Projector activation.
    #[serde(default)]
    pub projector_hidden_act: Activation,
    /// Which hidden state of the tower feeds the projector (HF: -2, the penultimate).
    #[serde(default = "default_feature_layer")]
    pub vision_feature_layer: i64,
    /// `default` drops the class token, `full` keeps it.
    #[serde(default = "default_strategy")]
    pub vision_feature_select_strategy: String,
    /// Biases on the projector.
    #[serde(default = "default_true")]
    pub multimodal_projector_bias: bool,
}

fn default_image_token() -> i64 {
    32000
}
fn default_feature_layer() -> i64 {
    -2
}
fn default_strategy() -> String {
    "default".into()
}
fn default_true() -> bool {
    true
}

impl LlavaConfig {
    /// Parses `config.json` and checks what the model implements, naming the field.
    pub fn from_json(bytes: &[u8], file: &str) -> Result<Self> {
        let cfg: Self = serde_json::from_slice(bytes).map_err(|e| Error::json(file, e))?;
        cfg.text_config.check(file)?;
        if !matches!(
            cfg.vision_feature_select_strategy.as_str(),
            "default" | "full"
        ) {
            return Err(Error::config(
                file,
                "vision_feature_select_strategy",
                format!("`{}` (default or full)", cfg.vision_feature_select_strategy),
            ));
        }
        let vocab = cfg.text_config.vocab_size as i64;
        if !(0..vocab).contains(&cfg.image_token_index) {
            return Err(Error::config(
                file,
                "image_token_index",
                format!(
                    "{} is outside the text model's vocabulary ({vocab} tokens)",
                    cfg.image_token_index
                ),
            ));
        }
        let v = &cfg.vision_config;
        let layers = v.num_hidden_layers as i64;
        let l = cfg.vision_feature_layer;
        if l < -(layers + 1) || l > layers || v.patch_size == 0 || v.num_attention_heads == 0 {
            return Err(Error::config(
                file,
                "vision_feature_layer",
                format!("{l} is not a hidden state of a {layers}-layer tower"),
            ));
        }
        Ok(cfg)
    }

    /// Image features per image (patches, plus the class token with `full`).
    pub fn image_tokens(&self) -> usize {
        let v = &self.vision_config;
        let patches = (v.image_size / v.patch_size).pow(2);
        patches + usize::from(self.vision_feature_select_strategy == "full")
    }
}

/// HF `LlavaMultiModalProjector`: `linear_2(act(linear_1(x)))`.
#[derive(Module, Debug)]
pub struct LlavaProjector {
    /// Vision width → text width.
    pub linear_1: Linear,
    /// Text width → text width.
    pub linear_2: Linear,
    /// Activation.
    #[module(skip)]
    pub act: Activation,
}

/// HF `LlavaForConditionalGeneration`.
#[derive(Module, Debug)]
pub struct LlavaForConditionalGeneration {
    /// The CLIP vision tower.
    pub vision_tower: ClipVisionTransformer,
    /// The projector.
    pub multi_modal_projector: LlavaProjector,
    /// The language model.
    pub language_model: LlamaForCausalLM,
    /// The image token.
    pub image_token: i64,
    /// The hidden state the projector reads (negative counts from the last).
    pub feature_layer: i64,
    /// Whether the class token is kept.
    pub keep_class: bool,
}

impl LlavaForConditionalGeneration {
    /// Projected image features, `[batch, image_tokens, text_hidden]`.
    pub fn image_features(&self, pixels: Tensor<4>) -> Tensor<3> {
        let states = self.vision_tower.hidden_states(pixels);
        let n = states.len() as i64;
        let i = if self.feature_layer < 0 {
            n + self.feature_layer
        } else {
            self.feature_layer
        };
        let f = states[i.clamp(0, n - 1) as usize].clone();
        let [b, l, h] = f.dims();
        let f = if self.keep_class {
            f
        } else {
            f.slice([0..b, 1..l, 0..h])
        };
        let p = &self.multi_modal_projector;
        p.linear_2.forward(p.act.forward(p.linear_1.forward(f)))
    }

    /// The prompt's embeddings with the image features in place of its image tokens, in order.
    /// `ids` is one prompt; it must hold exactly as many image tokens as `features` has rows.
    pub fn embed(&self, ids: &[i64], features: Tensor<3>) -> Result<Tensor<3>> {
        let device = features.device();
        let [fb, fl, h] = features.dims();
        let positions: Vec<usize> = ids
            .iter()
            .enumerate()
            .filter(|(_, t)| **t == self.image_token)
            .map(|(i, _)| i)
            .collect();
        if positions.len() != fb * fl {
            return Err(Error::Input(format!(
                "the prompt holds {} image token(s) ({}) but the image gives {} feature(s)",
                positions.len(),
                self.image_token,
                fb * fl
            )));
        }
        let text = Tensor::<1, Int>::from_ints(ids, &device).reshape([1, ids.len()]);
        let text = self.language_model.model.embed(text);
        let features = features.reshape([fb * fl, h]);
        // Runs of text tokens and of image tokens, in order, joined once.
        let mut parts = Vec::new();
        let (mut i, mut used) = (0, 0);
        while i < ids.len() {
            let image = ids[i] == self.image_token;
            let j = (i..ids.len())
                .find(|&j| (ids[j] == self.image_token) != image)
                .unwrap_or(ids.len());
            parts.push(if image {
                used += j - i;
                features
                    .clone()
                    .slice([used - (j - i)..used, 0..h])
                    .reshape([1, j - i, h])
            } else {
                text.clone().slice([0..1, i..j, 0..h])
            });
            i = j;
        }
        Ok(Tensor::cat(parts, 1))
    }

    /// Logits `[1, len, vocab]` for one prompt and its image.
    pub fn forward(&self, ids: &[i64], pixels: Tensor<4>) -> Result<Tensor<3>> {
        let x = self.embed(ids, self.image_features(pixels))?;
        Ok(self.language_model.logits_from_embeds(x, None, None))
    }

    /// Greedy decoding after a prompt with its image (KV cache), up to `max_new` tokens,
    /// stopping after any of `eos`. Returns the new tokens.
    pub async fn generate_greedy(
        &self,
        ids: &[i64],
        pixels: Tensor<4>,
        max_new: usize,
        eos: &[i64],
    ) -> Result<Vec<i64>> {
        let x = self.embed(ids, self.image_features(pixels))?;
        self.language_model
            .greedy_from_embeds(x, max_new, eos)
            .await
    }
}

impl LlavaConfig {
    /// A randomly initialised model of this shape (load weights over it).
    pub fn init(&self, device: &Device) -> LlavaForConditionalGeneration {
        let h = self.vision_config.hidden_size;
        let th = self.text_config.hidden_size;
        let plin = |i: usize, o: usize| {
            LinearConfig::new(i, o)
                .with_bias(self.multimodal_projector_bias)
                .init(device)
        };
        LlavaForConditionalGeneration {
            vision_tower: self.vision_config.init(device),
            multi_modal_projector: LlavaProjector {
                linear_1: plin(h, th),
                linear_2: plin(th, th),
                act: self.projector_hidden_act,
            },
            language_model: self.text_config.init(device),
            image_token: self.image_token_index,
            feature_layer: self.vision_feature_layer,
            keep_class: self.vision_feature_select_strategy == "full",
        }
    }
}

/// HF checkpoint names → module paths, more specific first.
pub(crate) const REMAPS: &[(&str, &str)] = &[
    (r"^vision_tower\.vision_model\.", "vision_tower."),
    (r"^model\.vision_tower\.vision_model\.", "vision_tower."),
    (r"^model\.vision_tower\.", "vision_tower."),
    (r"^model\.multi_modal_projector\.", "multi_modal_projector."),
    (r"^model\.language_model\.", "language_model.model."),
    (r"^lm_head\.", "language_model.lm_head."),
];

/// Loads a HF LLaVA model (`config.json` parsed, `model.safetensors`), every tensor checked.
pub fn load(
    cfg: &LlavaConfig,
    weights: Vec<u8>,
    file: &str,
    device: &Device,
) -> Result<LlavaForConditionalGeneration> {
    crate::models::load::load_safetensors(cfg.init(device), weights, file, REMAPS, &ignored(cfg))
}

/// Checkpoint tensors the model does not hold: rotary buffers, position ids, a tied LM head.
pub(crate) fn ignored(cfg: &LlavaConfig) -> Vec<&'static str> {
    let mut ignored = vec![r"rotary_emb\.inv_freq$", r"position_ids$"];
    if cfg.text_config.tie_word_embeddings {
        ignored.push(r"lm_head\.weight$");
    }
    ignored
}

/// The loss of a chat batch: rows right-padded (causal attention keeps padding out of the real
/// tokens, so no mask is needed), the image features spliced in per row, cross-entropy on each
/// row's answer and end-of-sequence token only (HF: labels -100 elsewhere).
pub fn chat_loss(
    m: &LlavaForConditionalGeneration,
    pixels: Tensor<4>,
    ids: &[Vec<i64>],
    learned: &[Vec<std::ops::Range<usize>>],
    smoothing: f64,
) -> Result<Tensor<1>> {
    let device = pixels.device();
    let features = m.image_features(pixels);
    let [b, f, h] = features.dims();
    if ids.len() != b || learned.len() != b {
        return Err(Error::Input(format!(
            "a chat batch of {b} images has {} prompts",
            ids.len()
        )));
    }
    let len = ids.iter().map(Vec::len).max().unwrap_or(0);
    let mut rows = Vec::with_capacity(b);
    let mut targets = Vec::with_capacity(b * len);
    let mut mask = Vec::with_capacity(b * len);
    for (i, (row, spans)) in ids.iter().zip(learned).enumerate() {
        let x = m.embed(row, features.clone().slice([i..i + 1, 0..f, 0..h]))?;
        rows.push(if row.len() < len {
            Tensor::cat(vec![x, Tensor::zeros([1, len - row.len(), h], &device)], 1)
        } else {
            x
        });
        for t in 0..len {
            let learned = t < row.len() && spans.iter().any(|s| s.contains(&t));
            // Only learned positions are gathered from; the others (image tokens, padding) point
            // at id 0, which exists in every vocabulary.
            targets.push(if learned { row[t] } else { 0 });
            mask.push(if learned { 1.0f32 } else { 0.0 });
        }
    }
    // The LM head (vocabulary-wide: a fifth of a small decoder's work) only from the position
    // before the first answer on: earlier positions (the image, the prompt) predict nothing
    // learned.
    let from = learned
        .iter()
        .filter_map(|spans| spans.iter().map(|s| s.start).min())
        .min()
        .unwrap_or(1)
        .clamp(1, len)
        - 1;
    let hidden = m
        .language_model
        .hidden_from_embeds(Tensor::cat(rows, 0), None, None)
        .narrow(1, from, len - from);
    let logits = m.language_model.head(hidden);
    let targets = Tensor::<1, Int>::from_ints(targets.as_slice(), &device)
        .reshape([b, len])
        .narrow(1, from, len - from);
    let mask = Tensor::<1>::from_floats(mask.as_slice(), &device)
        .reshape([b, len])
        .narrow(1, from, len - from);
    Ok(lm_loss(logits, targets, mask, smoothing))
}

/// LLaVA as a [`Family`](crate::models::family::Family): loading, the chat loss, where PEFT
/// attaches (LoRA, norms; frozen weights in half precision) and chat generation.
impl crate::models::family::Family for LlavaForConditionalGeneration {
    type Config = LlavaConfig;
    const MODEL_TYPE: &'static str = "llava";
    const IS_CHAT: bool = true;
    const COMPONENTS: &'static [(&'static str, &'static str)] = &[
        ("vision", "vision_tower"),
        ("projector", "multi_modal_projector"),
        ("decoder", "language_model"),
    ];

    fn parse_config(bytes: &[u8], _: serde_json::Value, file: &str) -> Result<LlavaConfig> {
        LlavaConfig::from_json(bytes, file)
    }

    fn init(config: &LlavaConfig, device: &Device) -> Self {
        config.init(device)
    }

    fn blank(
        config: &LlavaConfig,
        _has: &dyn Fn(&str) -> bool,
        device: &Device,
    ) -> (Self, crate::models::load::Remaps, Vec<&'static str>) {
        (config.init(device), REMAPS, ignored(config))
    }

    fn image_processor(config: &LlavaConfig) -> (crate::data::ProcessorKind, usize) {
        (
            crate::data::ProcessorKind::Clip,
            config.vision_config.image_size,
        )
    }

    fn forward_loss(
        &self,
        batch: &crate::models::Batch,
        label_smoothing: f64,
    ) -> Result<Tensor<1>> {
        let crate::models::Batch::Chat {
            pixels,
            ids,
            learned,
        } = batch
        else {
            return Err(Error::Input(
                "this batch is for a different kind of model (VQA / report / classification)"
                    .into(),
            ));
        };
        chat_loss(self, pixels.clone(), ids, learned, label_smoothing)
    }

    /// peft's defaults for CLIP and LLaMA; the projector's two layers.
    fn default_lora_targets(&self, component: &str) -> &'static [&'static str] {
        match component {
            "projector" => &["linear_1", "linear_2"],
            _ => &["q_proj", "v_proj"],
        }
    }

    fn store_frozen(mut self, dtype: crate::models::walk::FrozenDtype) -> Result<(Self, usize)> {
        use crate::models::walk::{self, FrozenDtype};
        // A device that cannot compute in the dtype (WGSL has no bf16; an adapter without
        // `shader-f16` no f16) would fail compiling the first kernel, on a device thread.
        let device = self.language_model.model.embed_tokens.weight.device();
        if !device.supports_dtype(dtype.dtype()) {
            return Err(Error::Input(format!(
                "frozen_dtype = \"{}\": this device cannot compute in {} (wgpu's WGSL has no \
                 bf16, and f16 needs an adapter with shader-f16); use {} or leave it unset",
                dtype.name(),
                dtype.name(),
                if matches!(dtype, FrozenDtype::Bf16) {
                    "f16"
                } else {
                    "bf16 on the CPU"
                },
            )));
        }
        let (lm, n) = walk::store_frozen(self.language_model, dtype.dtype());
        self.language_model = lm;
        Ok((self, n))
    }

    fn frozen_castable(&self, trainable: &dyn Fn(&[String]) -> bool) -> usize {
        crate::models::walk::frozen_castable(&self.language_model, &["language_model"], trainable)
    }

    async fn answer(
        &self,
        p: &crate::models::Processor,
        pixels: Tensor<4>,
        question: &str,
        gen_cfg: &crate::models::blip::GenConfig,
    ) -> Result<crate::models::Generated> {
        chat(self, p, pixels, question, gen_cfg).await
    }

    async fn report(
        &self,
        p: &crate::models::Processor,
        pixels: Tensor<4>,
        gen_cfg: &crate::models::blip::GenConfig,
    ) -> Result<crate::models::Generated> {
        chat(self, p, pixels, REPORT_INSTRUCTION, gen_cfg).await
    }
}

/// A LLaVA model's reply to `question` about the image: greedy decoding with the KV cache up to
/// `max_new_tokens` (beam search is not implemented for it; `num_beams` is ignored).
async fn chat(
    m: &LlavaForConditionalGeneration,
    p: &crate::models::Processor,
    pixels: Tensor<4>,
    question: &str,
    gen_cfg: &crate::models::blip::GenConfig,
) -> Result<crate::models::Generated> {
    let ids = p.llava_prompt(question)?;
    let eos = match p.generation.as_ref().map(|g| &g.eos_token_id) {
        Some(list) if !list.is_empty() => list.clone(),
        _ => vec![p.special_tokens()?.eos],
    };
    let out = m
        .generate_greedy(&ids, pixels, gen_cfg.max_new_tokens, &eos)
        .await?;
    p.generated(vec![out])
}
