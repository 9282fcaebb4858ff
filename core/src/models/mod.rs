//! The model families and one entry point over them: read a HF model folder (config, weights,
//! tokenizer, preprocessor) from a [`FileSource`] and answer, report or classify.

pub mod bert;
pub mod blip;
pub mod chat;
pub mod classifier;
pub mod common;
pub mod export;
pub mod folder;
pub mod llama;
pub mod llava;
pub mod load;
pub mod memory;
pub mod mmproj;
pub mod vit;
pub mod walk;

use crate::data::{Preprocessor, ProcessorKind, decode_image};
use crate::error::{Error, Result};
use crate::source::FileSource;
use crate::tokenizer::TextTokenizer;
use blip::generate::SpecialTokens;
use blip::{BlipConfig, BlipForConditionalGeneration, BlipForQuestionAnswering, GenConfig};
use burn::module::Module;
use burn::tensor::activation::sigmoid;
use burn::tensor::{Device, Int, Tensor};
use classifier::{ProblemType, ViTConfig, ViTForImageClassification};
use serde::Serialize;

/// The task a model folder's `architectures` names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Architecture {
    /// `BlipForQuestionAnswering`.
    BlipForQuestionAnswering,
    /// `BlipForConditionalGeneration`.
    BlipForConditionalGeneration,
    /// `ViTForImageClassification`.
    ViTForImageClassification,
    /// `LlavaForConditionalGeneration`.
    LlavaForConditionalGeneration,
}

/// A parsed `config.json`.
#[derive(Debug, Clone)]
pub enum ModelConfig {
    /// A BLIP model.
    Blip(Architecture, BlipConfig),
    /// A ViT classifier.
    Vit(ViTConfig),
    /// A LLaVA-style model (CLIP tower, projector, LLaMA decoder).
    Llava(llava::LlavaConfig),
}

impl ModelConfig {
    /// Parses `config.json`, dispatching on `model_type` and `architectures` as HF's Auto classes do.
    pub fn from_json(bytes: &[u8], file: &str) -> Result<Self> {
        let v: serde_json::Value =
            serde_json::from_slice(bytes).map_err(|e| Error::json(file, e))?;
        let model_type = v
            .get("model_type")
            .and_then(|m| m.as_str())
            .ok_or_else(|| Error::config(file, "model_type", "missing"))?;
        let arch = v
            .get("architectures")
            .and_then(|a| a.get(0))
            .and_then(|a| a.as_str());
        let parse_err = |e: serde_json::Error| Error::json(file, e);
        match model_type {
            "blip" => {
                let arch = match arch {
                    Some("BlipForQuestionAnswering") => Architecture::BlipForQuestionAnswering,
                    Some("BlipForConditionalGeneration") | None => {
                        Architecture::BlipForConditionalGeneration
                    }
                    Some(other) => {
                        return Err(Error::config(
                            file,
                            "architectures",
                            format!(
                                "`{other}` is not supported (BlipForQuestionAnswering, BlipForConditionalGeneration)"
                            ),
                        ));
                    }
                };
                let c: BlipConfig = serde_json::from_value(v).map_err(parse_err)?;
                c.validate(file)?;
                Ok(ModelConfig::Blip(arch, c))
            }
            "vit" => {
                let c: ViTConfig = serde_json::from_value(v).map_err(parse_err)?;
                c.validate(file)?;
                Ok(ModelConfig::Vit(c))
            }
            "llava" => Ok(ModelConfig::Llava(llava::LlavaConfig::from_json(
                bytes, file,
            )?)),
            other => Err(Error::config(
                file,
                "model_type",
                format!("`{other}` is not supported (blip, vit, llava)"),
            )),
        }
    }

    /// The architecture.
    pub fn architecture(&self) -> Architecture {
        match self {
            ModelConfig::Blip(a, _) => *a,
            ModelConfig::Vit(_) => Architecture::ViTForImageClassification,
            ModelConfig::Llava(_) => Architecture::LlavaForConditionalGeneration,
        }
    }
}

/// A model of any supported family.
#[derive(Module, Debug)]
pub enum Model {
    /// Med-VQA.
    Vqa(BlipForQuestionAnswering),
    /// Report generation.
    Captioner(BlipForConditionalGeneration),
    /// Multi-label image classification.
    Classifier(ViTForImageClassification),
    /// A LLaVA-style model: answers and reports as a chat.
    Llava(llava::LlavaForConditionalGeneration),
}

/// A named group of parameters (PEFT placement and reports are built on these).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Component {
    /// `vision`, `text_encoder`, `decoder` or `head`.
    pub name: &'static str,
    /// Module path prefix, e.g. `vision_model`.
    pub path: &'static str,
    /// Parameter count.
    pub params: usize,
}

impl Model {
    /// The named parameter groups, in model order.
    pub fn components(&self) -> Vec<Component> {
        let c = |name, path, params| Component { name, path, params };
        match self {
            Model::Vqa(m) => vec![
                c("vision", "vision_model", m.vision_model.num_params()),
                c("text_encoder", "text_encoder", m.text_encoder.num_params()),
                c("decoder", "text_decoder", m.text_decoder.num_params()),
            ],
            Model::Captioner(m) => vec![
                c("vision", "vision_model", m.vision_model.num_params()),
                c("decoder", "text_decoder", m.text_decoder.num_params()),
            ],
            Model::Classifier(m) => vec![
                c("vision", "vit", m.vit.num_params()),
                c("head", "classifier", m.classifier.num_params()),
            ],
            Model::Llava(m) => vec![
                c("vision", "vision_tower", m.vision_tower.num_params()),
                c(
                    "projector",
                    "multi_modal_projector",
                    m.multi_modal_projector.num_params(),
                ),
                c("decoder", "language_model", m.language_model.num_params()),
            ],
        }
    }
}

// HF → normtune names, more specific first. BLIP: Rust cannot name a field `self`, and fields
// are snake_case. ViT: transformers < 5 checkpoints use the BERT-style names that transformers 5
// itself renames on load (its `conversion_mapping.py`, "ViTModel").
pub(crate) const BLIP_REMAPS: load::Remaps = &[
    (r"\.attention\.self\.", ".attention.self_attn."),
    (r"\.crossattention\.self\.", ".crossattention.self_attn."),
    (r"\.LayerNorm\.", ".layer_norm."),
];
const VIT_REMAPS: load::Remaps = &[
    (r"^vit\.encoder\.layer\.", "vit.layers."),
    (r"\.attention\.attention\.query\.", ".attention.q_proj."),
    (r"\.attention\.attention\.key\.", ".attention.k_proj."),
    (r"\.attention\.attention\.value\.", ".attention.v_proj."),
    (r"\.attention\.output\.dense\.", ".attention.o_proj."),
    (r"\.intermediate\.dense\.", ".mlp.fc1."),
    (r"\.output\.dense\.", ".mlp.fc2."),
];
// `position_ids` is a buffer older checkpoints saved; with a tied head, a saved
// `cls.predictions.decoder.bias` is the same tensor as `cls.predictions.bias`; the ViT pooler is
// unused by the classifier.
const BLIP_IGNORED: &[&str] = &[r"embeddings\.position_ids$"];
const BLIP_TIED_IGNORED: &[&str] = &[
    r"embeddings\.position_ids$",
    r"cls\.predictions\.decoder\.bias$",
];
const VIT_IGNORED: &[&str] = &[r"^vit\.pooler\."];

/// A randomly initialised model of `config`'s architecture (tied LM head, as HF's default).
pub fn init_model(config: &ModelConfig, device: &Device) -> Model {
    match config {
        ModelConfig::Blip(Architecture::BlipForQuestionAnswering, c) => {
            Model::Vqa(c.init_vqa(bert::LmHead::Tied, device))
        }
        ModelConfig::Blip(_, c) => Model::Captioner(c.init_captioner(bert::LmHead::Tied, device)),
        ModelConfig::Vit(c) => Model::Classifier(c.init(device)),
        ModelConfig::Llava(c) => Model::Llava(c.init(device)),
    }
}

/// A blank model of `config`'s architecture for a checkpoint holding the tensors `has` names,
/// with the checkpoint-name remaps and the checkpoint tensors it does not hold.
fn blank_for(
    config: &ModelConfig,
    has: impl Fn(&str) -> bool,
    device: &Device,
) -> (Model, load::Remaps, Vec<&'static str>) {
    match config {
        ModelConfig::Blip(arch, c) => {
            // The file decides whether the LM head is tied: HF omits tied tensors when saving.
            let head = if has("text_decoder.cls.predictions.decoder.weight") {
                bert::LmHead::Untied {
                    own_bias: has("text_decoder.cls.predictions.decoder.bias"),
                }
            } else {
                bert::LmHead::Tied
            };
            let model = match arch {
                Architecture::BlipForQuestionAnswering => Model::Vqa(c.init_vqa(head, device)),
                _ => Model::Captioner(c.init_captioner(head, device)),
            };
            let ignored = if head == bert::LmHead::Tied {
                BLIP_TIED_IGNORED
            } else {
                BLIP_IGNORED
            };
            (model, BLIP_REMAPS, ignored.to_vec())
        }
        ModelConfig::Vit(c) => (
            Model::Classifier(c.init(device)),
            VIT_REMAPS,
            VIT_IGNORED.to_vec(),
        ),
        ModelConfig::Llava(c) => (
            Model::Llava(c.init(device)),
            llava::REMAPS,
            llava::ignored(c),
        ),
    }
}

/// Builds a model of `config`'s architecture and fills it from safetensors `bytes`.
pub fn load_model(
    config: &ModelConfig,
    bytes: Vec<u8>,
    file: &str,
    device: &Device,
) -> Result<Model> {
    let names = load::tensor_names(&bytes, file)?;
    let (model, remaps, ignored) = blank_for(config, |n| names.iter().any(|(k, _)| k == n), device);
    load::load_safetensors(model, bytes, file, remaps, &ignored)
}

/// As [`load_model`], from a checkpoint in shards (`model.safetensors.index.json` in `src`), read
/// one shard at a time.
pub async fn load_model_sharded(
    config: &ModelConfig,
    src: &impl FileSource,
    device: &Device,
) -> Result<Model> {
    let name = "model.safetensors.index.json";
    let index = load::read_index(&src.read(name).await?, &src.describe(name))?;
    let (model, remaps, ignored) = blank_for(config, |n| index.weight_map.contains_key(n), device);
    load::load_sharded(model, src, &index, remaps, &ignored).await
}

/// A loaded model folder: model, config, tokenizer and preprocessor.
#[derive(Debug)]
pub struct Pipeline {
    /// The model.
    pub model: Model,
    /// Its config.
    pub config: ModelConfig,
    /// The tokenizer (BLIP models).
    pub tokenizer: Option<TextTokenizer>,
    /// Image preprocessing.
    pub preprocessor: Preprocessor,
    /// Where the model lives.
    pub device: Device,
    /// A conversation set with [`Pipeline::set_chat_prompt`] (`<image>` and `{question}` in
    /// it), which overrides the folder's chat template.
    pub chat_prompt: Option<String>,
    /// The folder's chat template, if any (without one and without `chat_prompt`, LLaVA-1.5's
    /// [`llava::PROMPT`]).
    pub chat_template: Option<chat::ChatTemplate>,
    /// LLaVA's processor settings (image-token expansion).
    pub llava_processor: folder::LlavaProcessorSettings,
    /// `generation_config.json`, if the folder has one.
    pub generation: Option<folder::GenerationDefaults>,
}

/// Generated text and the ids HF `generate` would return.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Generated {
    /// Decoded text, special tokens skipped.
    pub text: String,
    /// Ids, starting with the decoder start token.
    pub token_ids: Vec<i64>,
}

/// One label's prediction.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LabelScore {
    /// Label name.
    pub label: String,
    /// Raw logit.
    pub logit: f32,
    /// Sigmoid (multi-label) or softmax (single-label) probability.
    pub probability: f32,
}

impl Pipeline {
    /// Loads `config.json`, `model.safetensors`, the tokenizer (`tokenizer.json`, else
    /// `vocab.txt`) and `preprocessor_config.json` (HF defaults at the model's size if absent).
    pub async fn load(src: &impl FileSource, device: &Device) -> Result<Self> {
        Self::load_with(src, device, true).await
    }

    /// As [`Pipeline::load`]; with `weights: false` the model is randomly initialised from
    /// `config.json` alone (to count an architecture, or to train from scratch).
    pub async fn load_with(src: &impl FileSource, device: &Device, weights: bool) -> Result<Self> {
        let config = ModelConfig::from_json(
            &src.read("config.json").await?,
            &src.describe("config.json"),
        )?;
        let model = if weights
            && !src.exists("model.safetensors").await
            && src.exists("model.safetensors.index.json").await
        {
            load_model_sharded(&config, src, device).await?
        } else if weights {
            let bytes = src.read("model.safetensors").await?;
            load_model(&config, bytes, &src.describe("model.safetensors"), device)?
        } else {
            init_model(&config, device)
        };
        let needs_tokenizer = match &config {
            ModelConfig::Vit(_) => false,
            // Counting an architecture needs no tokenizer.
            _ => weights,
        };
        // A classifier has no text side: its folder's tokenizer files (if any) are not read.
        let found = match config {
            ModelConfig::Vit(_) => None,
            _ => folder::read_tokenizer(src).await?,
        };
        let (tokenizer, tok_cfg) = match found {
            Some((t, c)) => (Some(t), Some(c)),
            _ if needs_tokenizer => {
                return Err(Error::Missing {
                    file: src.describe("tokenizer.json"),
                    reason: match config {
                        ModelConfig::Llava(_) => {
                            "this LLaVA model folder has no tokenizer.json".into()
                        }
                        _ => "no tokenizer.json or vocab.txt in the model folder".into(),
                    },
                });
            }
            _ => (None, None),
        };
        let (kind, side) = match &config {
            ModelConfig::Blip(_, c) => (ProcessorKind::Blip, c.vision_config.image_size),
            ModelConfig::Vit(c) => (ProcessorKind::Vit, c.image_size),
            ModelConfig::Llava(c) => (ProcessorKind::Clip, c.vision_config.image_size),
        };
        let preprocessor = folder::read_preprocessor(src, kind, side as u32).await?;
        let (chat_template, llava_processor) = match &config {
            ModelConfig::Llava(_) => (
                folder::read_chat_template(src, tok_cfg.as_ref()).await?,
                folder::read_llava_processor(src).await?,
            ),
            _ => (None, folder::LlavaProcessorSettings::default()),
        };
        Ok(Self {
            model,
            config,
            tokenizer,
            preprocessor,
            device: device.clone(),
            chat_prompt: None,
            chat_template,
            llava_processor,
            generation: folder::read_generation_config(src).await?,
        })
    }

    /// The same pipeline (config, tokenizer, preprocessing) around another `model`, on the
    /// inference device: how evaluation sees the model a trainer is training.
    pub fn with_model(&self, model: Model) -> Pipeline {
        Pipeline {
            model: model.valid(),
            config: self.config.clone(),
            tokenizer: self.tokenizer.clone(),
            preprocessor: self.preprocessor.clone(),
            device: self.device.clone().inner(),
            chat_prompt: self.chat_prompt.clone(),
            chat_template: self.chat_template.clone(),
            llava_processor: self.llava_processor.clone(),
            generation: self.generation.clone(),
        }
    }

    fn llava(&self) -> Result<(&llava::LlavaConfig, &TextTokenizer)> {
        match (&self.config, &self.tokenizer) {
            (ModelConfig::Llava(c), Some(t)) => Ok((c, t)),
            (ModelConfig::Llava(_), None) => Err(Error::Input(
                "this LLaVA model folder has no tokenizer.json".into(),
            )),
            _ => Err(Error::Input("this model is not a LLaVA-style model".into())),
        }
    }

    /// The text a question becomes for a LLaVA-style model: the [`Pipeline::set_chat_prompt`]
    /// override, else the folder's chat template (one user turn: the image, then the question;
    /// the generation prompt added), else LLaVA-1.5's [`llava::PROMPT`].
    pub fn llava_text(&self, question: &str) -> Result<String> {
        let (_, tok) = self.llava()?;
        if question.trim().is_empty() {
            return Err(Error::Input("the question is empty".into()));
        }
        match (&self.chat_prompt, &self.chat_template) {
            (Some(p), _) => Ok(p.replace("{question}", question)),
            (None, Some(t)) => t.render_question(
                question,
                &self.llava_processor.image_token,
                tok.special_names(),
            ),
            (None, None) => Ok(llava::PROMPT.replace("{question}", question)),
        }
    }

    /// How many image tokens `<image>` becomes: `processor_config.json`'s count
    /// (`LlavaProcessor`), which must equal the features the model makes, or the model's count
    /// for folders without processor settings.
    pub fn image_token_count(&self) -> Result<usize> {
        let (c, _) = self.llava()?;
        let side = c.vision_config.image_size;
        let model = c.image_tokens();
        match self.llava_processor.image_tokens(side, side) {
            Some(n) if n != model => Err(Error::config(
                &self.llava_processor.file,
                "num_additional_image_tokens",
                format!(
                    "gives {n} image tokens per image (patch_size, vision_feature_select_strategy), \
                     but the model makes {model} image features"
                ),
            )),
            _ => Ok(model),
        }
    }

    /// A LLaVA prompt's ids, as `LlavaProcessor` makes them: the text of
    /// [`Pipeline::llava_text`] with its image token repeated once per image feature,
    /// tokenised whole, with the tokenizer's special tokens unless the text already starts with
    /// its `bos_token`. A tokenizer without the image token (a GGUF vocabulary) gets the text
    /// around it tokenised apart and the image ids spliced in between.
    pub fn llava_prompt(&self, question: &str) -> Result<Vec<i64>> {
        let (c, tok) = self.llava()?;
        let text = self.llava_text(question)?;
        let image = self.llava_processor.image_token.as_str();
        if text.matches(image).count() != 1 {
            return Err(Error::Input(format!(
                "the chat prompt `{}` holds `{image}` {} times; one image, once, is expected",
                text.replace('\n', "\\n"),
                text.matches(image).count()
            )));
        }
        let n = self.image_token_count()?;
        let add_special = !tok
            .special_names()
            .bos
            .as_deref()
            .is_some_and(|b| text.starts_with(b));
        let ids = if tok.token_id(image) == Some(c.image_token_index) {
            tok.encode_with(&text.replace(image, &image.repeat(n)), add_special)?
        } else {
            let (before, after) = text.split_once(image).unwrap_or((&text, ""));
            let mut ids = tok.encode_with(before, add_special)?;
            ids.extend(std::iter::repeat_n(c.image_token_index, n));
            ids.extend(tok.encode_plain(after)?);
            ids
        };
        self.check_vocab(&ids)?;
        Ok(ids)
    }

    /// Refuses token ids the text model has no embedding for (a tokenizer.json larger than the
    /// model's vocabulary), naming the first.
    fn check_vocab(&self, ids: &[i64]) -> Result<()> {
        let (c, _) = self.llava()?;
        let vocab = c.text_config.vocab_size as i64;
        match ids.iter().find(|&&i| !(0..vocab).contains(&i)) {
            Some(i) => Err(Error::Input(format!(
                "tokenizer.json gives token id {i}, outside the model's vocabulary of {vocab} \
                 (config.json text_config.vocab_size)"
            ))),
            None => Ok(()),
        }
    }

    /// Sets the conversation template of a LLaVA-style model (e.g. LLaVA-Med's Mistral format
    /// `[INST] <image>\n{question} [/INST]`): it must hold `<image>` and `{question}` once each.
    pub fn set_chat_prompt(&mut self, template: &str) -> Result<()> {
        for p in ["<image>", "{question}"] {
            if template.matches(p).count() != 1 {
                return Err(Error::Input(format!(
                    "chat prompt `{template}`: needs `{p}` exactly once"
                )));
            }
        }
        self.chat_prompt = Some(template.to_string());
        Ok(())
    }

    /// A chat training batch: each prompt ([`Self::llava_prompt`]) followed by its answer and the
    /// end-of-sequence token, then each follow-up turn's prompt ([`Self::followup_prompt`]) and
    /// answer the same way; only the answers and their end tokens are learned (LLaVA's recipe:
    /// human turns masked, every gpt turn learned).
    pub fn chat_batch(
        &self,
        items: &[(image::DynamicImage, &str, &str, &[(String, String)])],
    ) -> Result<crate::train::Batch> {
        let (c, tok) = self.llava()?;
        let eos = self.special_tokens()?.eos;
        let max = c.text_config.max_position_embeddings;
        let mut ids = Vec::with_capacity(items.len());
        let mut learned = Vec::with_capacity(items.len());
        for (_, q, a, more) in items {
            let mut row = self.llava_prompt(q)?;
            let mut spans = Vec::with_capacity(1 + more.len());
            let mut so_far: Vec<(String, String)> = Vec::with_capacity(1 + more.len());
            let turns = std::iter::once((q.to_string(), a.to_string())).chain(more.iter().cloned());
            for (k, (q, a)) in turns.enumerate() {
                if a.trim().is_empty() {
                    return Err(Error::Input(
                        "a training example has an empty answer or report".into(),
                    ));
                }
                if k > 0 {
                    let prompt = self.followup_prompt(&so_far, &q)?;
                    self.check_vocab(&prompt)?;
                    row.extend(prompt);
                }
                let start = row.len();
                let mut answer = tok.encode_plain(&format!(" {}", a.trim()))?;
                answer.push(eos);
                self.check_vocab(&answer)?;
                row.extend(answer);
                spans.push(start..row.len());
                so_far.push((q, a));
            }
            if row.len() > max {
                return Err(Error::Input(format!(
                    "a training example is {} tokens with its image, over the model's {max}",
                    row.len()
                )));
            }
            ids.push(row);
            learned.push(spans);
        }
        let images: Vec<image::DynamicImage> = items.iter().map(|i| i.0.clone()).collect();
        Ok(crate::train::Batch::Chat {
            pixels: self.preprocessor.batch(&images, &self.device),
            ids,
            learned,
        })
    }

    /// The ids of a follow-up human turn `question` after the conversation `so_far` (its first
    /// turn held the image), ending where the answer starts: with a [`Self::set_chat_prompt`]
    /// override or LLaVA-1.5's default prompt, that prompt without its image (LLaVA's turn
    /// format, `USER: … ASSISTANT:` / `[INST] … [/INST]`); with the folder's chat template, what
    /// the template adds for the new user turn and the generation prompt after rendering
    /// `so_far` (so its turn markers and roles are the template's own).
    pub fn followup_prompt(&self, so_far: &[(String, String)], question: &str) -> Result<Vec<i64>> {
        let (_, tok) = self.llava()?;
        if question.trim().is_empty() {
            return Err(Error::Input("a follow-up question is empty".into()));
        }
        let image = self.llava_processor.image_token.as_str();
        let text = match (&self.chat_prompt, &self.chat_template) {
            (None, Some(t)) => {
                let mut messages = Vec::new();
                for (i, (q, a)) in so_far.iter().enumerate() {
                    let content = t.content(q, (i == 0).then_some(image));
                    messages.push(serde_json::json!({"role": "user", "content": content}));
                    let answer = t.content(a, None);
                    messages.push(serde_json::json!({"role": "assistant", "content": answer}));
                }
                let before = t.render(&serde_json::json!(messages), false, tok.special_names())?;
                let content = t.content(question, None);
                messages.push(serde_json::json!({"role": "user", "content": content}));
                let after = t.render(&serde_json::json!(messages), true, tok.special_names())?;
                let Some(added) = after.strip_prefix(&before) else {
                    return Err(Error::config(
                        &t.file,
                        "chat_template",
                        "renders a conversation differently once a turn is added (the earlier \
                         turns are not a prefix); multi-turn examples cannot be laid out by it",
                    ));
                };
                added.to_string()
            }
            (p, _) => {
                let p = p.as_deref().unwrap_or(llava::PROMPT);
                p.replacen(&format!("{image}\n"), "", 1)
                    .replacen(&format!("\n{image}"), "", 1)
                    .replacen(image, "", 1)
                    .replace("{question}", question)
            }
        };
        tok.encode_plain(&text)
    }

    fn blip(&self) -> Result<(&BlipConfig, &TextTokenizer)> {
        match (&self.config, &self.tokenizer) {
            (ModelConfig::Blip(_, c), Some(t)) => Ok((c, t)),
            _ => Err(Error::Input(
                "this model is an image classifier: it has no text decoder (use `classify`)".into(),
            )),
        }
    }

    /// The decoding settings when the caller gives none: `base` (the caller's defaults, e.g.
    /// [`GenConfig::default`], MILE's beam search) with the folder's `generation_config.json`
    /// over it (`num_beams`,
    /// `max_new_tokens`, or for BLIP `max_length` less the decoder start token). transformers' BLIP
    /// `generate` ignores that file (it calls its text decoder's own defaults); normtune reads
    /// it for every family, as the folder author's stated settings.
    pub fn gen_config(&self, base: GenConfig) -> GenConfig {
        let mut g = base;
        if let Some(d) = &self.generation {
            if let Some(n) = d.num_beams {
                g.num_beams = n;
            }
            if let Some(n) = d.max_new_tokens {
                g.max_new_tokens = n;
            } else if let (Some(n), false) =
                (d.max_length, matches!(self.config, ModelConfig::Llava(_)))
            {
                // BLIP decoders: the start token and the new ones. (A LLaVA `max_length`
                // counts the prompt, whose length is not known here: not read.)
                g.max_new_tokens = n.saturating_sub(1).max(1);
            }
        }
        g
    }

    /// The special ids generation uses, from the text config.
    pub fn special_tokens(&self) -> Result<SpecialTokens> {
        if let ModelConfig::Llava(c) = &self.config {
            let t = &c.text_config;
            let eos = t
                .eos_token_id
                .as_ref()
                .and_then(|v| v.as_i64().or_else(|| v.get(0).and_then(|x| x.as_i64())))
                .ok_or_else(|| {
                    Error::config("config.json", "text_config.eos_token_id", "missing")
                })?;
            return Ok(SpecialTokens {
                bos: t.bos_token_id.unwrap_or(eos),
                eos,
                pad: t.pad_token_id.unwrap_or(0),
            });
        }
        let (c, _) = self.blip()?;
        let t = &c.text_config;
        let need = |v: Option<i64>, f: &str| {
            v.ok_or_else(|| Error::config("config.json", &format!("text_config.{f}"), "missing"))
        };
        Ok(SpecialTokens {
            bos: need(t.bos_token_id, "bos_token_id")?,
            eos: need(t.sep_token_id, "sep_token_id")?,
            pad: t.pad_token_id.unwrap_or(0),
        })
    }

    /// Decodes and preprocesses one image into `[1, 3, h, w]`.
    pub fn image_tensor(&self, bytes: &[u8], name: &str) -> Result<Tensor<4>> {
        let img = decode_image(bytes, name)?;
        Ok(self.preprocessor.batch(&[img], &self.device))
    }

    /// A question's token ids `[1, len]` on the pipeline's device (`[CLS]` … `[SEP]`).
    pub fn question_ids(&self, question: &str) -> Result<Tensor<2, Int>> {
        let (c, tok) = self.blip()?;
        if question.trim().is_empty() {
            return Err(Error::Input("the question is empty".into()));
        }
        let ids = tok.encode(question, c.text_config.max_position_embeddings)?;
        let n = ids.len();
        Ok(Tensor::<1, Int>::from_ints(ids.as_slice(), &self.device).reshape([1, n]))
    }

    /// Token ids padded into `[n, max_len]` with a 0/1 mask; `first` replaces the first token
    /// (the decoder start token for answers and reports, as BLIP trains them).
    fn padded(&self, texts: &[&str], first: Option<i64>) -> Result<(Tensor<2, Int>, Tensor<2>)> {
        let (c, tok) = self.blip()?;
        let pad = c.text_config.pad_token_id.unwrap_or(0);
        let mut rows = Vec::with_capacity(texts.len());
        for t in texts {
            let mut ids = tok.encode(t, c.text_config.max_position_embeddings)?;
            if let Some(f) = first {
                ids[0] = f;
            }
            rows.push(ids);
        }
        let n = rows.len();
        let len = rows.iter().map(Vec::len).max().unwrap_or(0);
        let ids: Vec<i64> = rows
            .iter()
            .flat_map(|r| {
                r.iter()
                    .copied()
                    .chain(std::iter::repeat_n(pad, len - r.len()))
            })
            .collect();
        let mask: Vec<f32> = rows
            .iter()
            .flat_map(|r| (0..len).map(move |i| if i < r.len() { 1.0 } else { 0.0 }))
            .collect();
        Ok((
            Tensor::<1, Int>::from_ints(ids.as_slice(), &self.device).reshape([n, len]),
            Tensor::<1>::from_floats(mask.as_slice(), &self.device).reshape([n, len]),
        ))
    }

    /// A VQA training batch from `(image, question, answer)` triples.
    pub fn vqa_batch(
        &self,
        items: &[(image::DynamicImage, &str, &str)],
    ) -> Result<crate::train::Batch> {
        if items
            .iter()
            .any(|(_, q, a)| q.trim().is_empty() || a.trim().is_empty())
        {
            return Err(Error::Input(
                "a training example has an empty question or answer".into(),
            ));
        }
        let images: Vec<image::DynamicImage> = items.iter().map(|i| i.0.clone()).collect();
        let questions: Vec<&str> = items.iter().map(|i| i.1).collect();
        let answers: Vec<&str> = items.iter().map(|i| i.2).collect();
        let (question_ids, question_mask) = self.padded(&questions, None)?;
        let (answer_ids, answer_mask) = self.padded(&answers, Some(self.special_tokens()?.bos))?;
        Ok(crate::train::Batch::Vqa {
            pixels: self.preprocessor.batch(&images, &self.device),
            question_ids,
            question_mask,
            answer_ids,
            answer_mask,
        })
    }

    /// A training batch of `examples` (all of one task) with their decoded `images`.
    pub fn batch(
        &self,
        examples: &[&crate::data::Example],
        images: &[image::DynamicImage],
    ) -> Result<crate::train::Batch> {
        let Some(first) = examples.first() else {
            return Err(Error::Input("an empty batch".into()));
        };
        if matches!(self.config, ModelConfig::Llava(_)) {
            if !first.labels.is_empty() {
                return Err(Error::Input(
                    "labelled images train an image classifier; this model is a LLaVA-style chat model"
                        .into(),
                ));
            }
            let items: Vec<(image::DynamicImage, &str, &str, &[(String, String)])> = examples
                .iter()
                .zip(images)
                .map(|(e, i)| {
                    (
                        i.clone(),
                        e.question.as_deref().unwrap_or(llava::REPORT_INSTRUCTION),
                        e.target.as_str(),
                        e.turns.as_slice(),
                    )
                })
                .collect();
            return self.chat_batch(&items);
        }
        if first.question.is_some() {
            let items: Vec<(image::DynamicImage, &str, &str)> = examples
                .iter()
                .zip(images)
                .map(|(e, i)| {
                    (
                        i.clone(),
                        e.question.as_deref().unwrap_or(""),
                        e.target.as_str(),
                    )
                })
                .collect();
            self.vqa_batch(&items)
        } else if !first.labels.is_empty() {
            let items: Vec<(image::DynamicImage, &[bool])> = examples
                .iter()
                .zip(images)
                .map(|(e, i)| (i.clone(), e.labels.as_slice()))
                .collect();
            self.classify_batch(&items)
        } else {
            let items: Vec<(image::DynamicImage, &str)> = examples
                .iter()
                .zip(images)
                .map(|(e, i)| (i.clone(), e.target.as_str()))
                .collect();
            self.report_batch(&items)
        }
    }

    /// A multi-label classification batch from `(image, labels)` pairs; the label count must
    /// be the classifier's.
    pub fn classify_batch(
        &self,
        items: &[(image::DynamicImage, &[bool])],
    ) -> Result<crate::train::Batch> {
        let ModelConfig::Vit(c) = &self.config else {
            return Err(Error::Input(
                "labelled images train an image classifier; this model is not one".into(),
            ));
        };
        let n = c.labels().len();
        if let Some((_, l)) = items.iter().find(|(_, l)| l.len() != n) {
            return Err(Error::Input(format!(
                "an example has {} labels, the classifier has {n} ({})",
                l.len(),
                c.labels().join(", ")
            )));
        }
        let images: Vec<image::DynamicImage> = items.iter().map(|i| i.0.clone()).collect();
        let t: Vec<f32> = items
            .iter()
            .flat_map(|(_, l)| l.iter().map(|&b| if b { 1.0 } else { 0.0 }))
            .collect();
        Ok(crate::train::Batch::Classify {
            pixels: self.preprocessor.batch(&images, &self.device),
            targets: Tensor::<1>::from_floats(t.as_slice(), &self.device).reshape([items.len(), n]),
        })
    }

    /// A report-generation training batch from `(image, report)` pairs.
    pub fn report_batch(
        &self,
        items: &[(image::DynamicImage, &str)],
    ) -> Result<crate::train::Batch> {
        if items.iter().any(|(_, r)| r.trim().is_empty()) {
            return Err(Error::Input(
                "a training example has an empty report".into(),
            ));
        }
        let images: Vec<image::DynamicImage> = items.iter().map(|i| i.0.clone()).collect();
        let reports: Vec<&str> = items.iter().map(|i| i.1).collect();
        let (ids, mask) = self.padded(&reports, Some(self.special_tokens()?.bos))?;
        Ok(crate::train::Batch::Report {
            pixels: self.preprocessor.batch(&images, &self.device),
            ids,
            mask,
        })
    }

    /// Answers a question about an image (generation).
    pub async fn answer(
        &self,
        pixels: Tensor<4>,
        question: &str,
        gen_cfg: &GenConfig,
    ) -> Result<Generated> {
        if let Model::Llava(m) = &self.model {
            return self.chat(m, pixels, question, gen_cfg).await;
        }
        let Model::Vqa(m) = &self.model else {
            return Err(Error::Input(
                "this model generates reports, not answers: leave out the question".into(),
            ));
        };
        let ids = self.question_ids(question)?;
        let tokens = self.special_tokens()?;
        let out = m.generate(pixels, ids, None, &tokens, gen_cfg).await?;
        self.generated(out)
    }

    /// Generates a report (caption) for an image.
    pub async fn report(&self, pixels: Tensor<4>, gen_cfg: &GenConfig) -> Result<Generated> {
        if let Model::Llava(m) = &self.model {
            return self
                .chat(m, pixels, llava::REPORT_INSTRUCTION, gen_cfg)
                .await;
        }
        let Model::Captioner(m) = &self.model else {
            return Err(Error::Input(
                "this model answers questions: pass a question".into(),
            ));
        };
        let tokens = self.special_tokens()?;
        let out = m.generate(pixels, &[tokens.bos], &tokens, gen_cfg).await?;
        self.generated(out)
    }

    /// A LLaVA model's reply to `question` about the image: greedy decoding with the KV cache
    /// up to `max_new_tokens` (beam search is not implemented for it; `num_beams` is ignored).
    async fn chat(
        &self,
        m: &llava::LlavaForConditionalGeneration,
        pixels: Tensor<4>,
        question: &str,
        gen_cfg: &GenConfig,
    ) -> Result<Generated> {
        let ids = self.llava_prompt(question)?;
        let eos = match self.generation.as_ref().map(|g| &g.eos_token_id) {
            Some(list) if !list.is_empty() => list.clone(),
            _ => vec![self.special_tokens()?.eos],
        };
        let out = m
            .generate_greedy(&ids, pixels, gen_cfg.max_new_tokens, &eos)
            .await?;
        self.generated(vec![out])
    }

    fn generated(&self, out: Vec<Vec<i64>>) -> Result<Generated> {
        let tok = self
            .tokenizer
            .as_ref()
            .ok_or_else(|| Error::Input("this model has no tokenizer".into()))?;
        let token_ids = out.into_iter().next().unwrap_or_default();
        Ok(Generated {
            text: tok.decode(&token_ids)?,
            token_ids,
        })
    }

    /// Ranks candidate answers by their likelihood under the decoder (closed-set mode), best first.
    pub async fn rank(
        &self,
        pixels: Tensor<4>,
        question: &str,
        candidates: &[String],
    ) -> Result<Vec<(String, f32)>> {
        let Model::Vqa(m) = &self.model else {
            return Err(Error::Input(
                "ranking candidate answers needs a question-answering model".into(),
            ));
        };
        if candidates.is_empty() {
            return Err(Error::Input("no candidate answers given".into()));
        }
        let (c, tok) = self.blip()?;
        let tokens = self.special_tokens()?;
        let ids = self.question_ids(question)?;
        let image = m.encode_image(pixels);
        let q = m.encode_question(&image, ids, None);
        let mut cands = Vec::with_capacity(candidates.len());
        for a in candidates {
            let mut ids = tok.encode(a, c.text_config.max_position_embeddings)?;
            ids[0] = tokens.bos; // [CLS] → decoder start, as BLIP's answer tokens
            cands.push(ids);
        }
        let scores =
            blip::generate::read_f32(m.score_candidates(&q, None, &cands, tokens.pad)).await?;
        let mut ranked: Vec<(String, f32)> = candidates.iter().cloned().zip(scores).collect();
        ranked.sort_by(|a, b| b.1.partial_cmp(&a.1).unwrap_or(std::cmp::Ordering::Equal));
        Ok(ranked)
    }

    /// Per-label logits and probabilities for one image.
    pub async fn classify(&self, pixels: Tensor<4>) -> Result<Vec<LabelScore>> {
        let (Model::Classifier(m), ModelConfig::Vit(c)) = (&self.model, &self.config) else {
            return Err(Error::Input("this model is not an image classifier".into()));
        };
        let logits = m.forward(pixels);
        let n = logits.dims()[1];
        let probs = match c.problem_type.unwrap_or_default() {
            ProblemType::SingleLabelClassification => {
                burn::tensor::activation::softmax(logits.clone(), 1)
            }
            ProblemType::MultiLabelClassification => sigmoid(logits.clone()),
            ProblemType::Regression => logits.clone(),
        };
        let l = blip::generate::read_f32(logits.reshape([n])).await?;
        let p = blip::generate::read_f32(probs.reshape([n])).await?;
        Ok(c.labels()
            .into_iter()
            .zip(l.into_iter().zip(p))
            .map(|(label, (logit, probability))| LabelScore {
                label,
                logit,
                probability,
            })
            .collect())
    }
}
