//! The model families and one entry point over them: read a HF model folder (config, weights,
//! tokenizer, preprocessor) from a [`FileSource`] and answer, report or classify.

pub mod batch;
pub mod bert;
pub mod blip;
pub mod blip_vision;
pub mod chat;
pub mod classifier;
pub mod clip;
pub mod common;
pub mod export;
pub mod folder;
pub mod llama;
pub mod llava;
pub mod load;
pub mod memory;
pub mod mmproj;
pub mod processor;
pub mod walk;

pub use batch::Batch;
pub use processor::Processor;

use crate::error::{Error, Result};
use crate::source::FileSource;
use blip::{BlipConfig, BlipForConditionalGeneration, BlipForQuestionAnswering, GenConfig};
use burn::module::Module;
use burn::tensor::activation::sigmoid;
use burn::tensor::{Device, Tensor};
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

    /// A classifier's label names in `id2label` order; `None` for the other families.
    pub fn labels(&self) -> Option<Vec<String>> {
        match self {
            ModelConfig::Vit(c) => Some(c.labels()),
            _ => None,
        }
    }

    /// The config as JSON, every field the family reads.
    pub fn to_json(&self) -> serde_json::Value {
        let v = match self {
            ModelConfig::Blip(_, c) => serde_json::to_value(c),
            ModelConfig::Vit(c) => serde_json::to_value(c),
            ModelConfig::Llava(c) => serde_json::to_value(c),
        };
        v.unwrap_or_default()
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

impl Model {
    /// The training loss of `batch` (made by this model's [`Processor`]): the answer or report
    /// tokens' cross-entropy with `label_smoothing` (BLIP), the chat answers' (LLaVA), the
    /// labels' binary cross-entropy (classifier).
    pub fn forward_loss(&self, batch: &Batch, label_smoothing: f64) -> Result<Tensor<1>> {
        use crate::train::loss::{bce_with_logits, lm_loss};
        let s = label_smoothing;
        match (self, batch) {
            (
                Model::Vqa(m),
                Batch::Vqa {
                    pixels,
                    question_ids,
                    question_mask,
                    answer_ids,
                    answer_mask,
                },
            ) => {
                let image = m.encode_image(pixels.clone());
                let q =
                    m.encode_question(&image, question_ids.clone(), Some(question_mask.clone()));
                let logits = m.answer_logits(
                    &q,
                    Some(question_mask.clone()),
                    answer_ids.clone(),
                    Some(answer_mask.clone()),
                );
                Ok(lm_loss(logits, answer_ids.clone(), answer_mask.clone(), s))
            }
            (Model::Captioner(m), Batch::Report { pixels, ids, mask }) => {
                let image = m.encode_image(pixels.clone());
                let logits = m.text_logits(&image, ids.clone(), Some(mask.clone()));
                Ok(lm_loss(logits, ids.clone(), mask.clone(), s))
            }
            (Model::Classifier(m), Batch::Classify { pixels, targets }) => {
                Ok(bce_with_logits(m.forward(pixels.clone()), targets.clone()))
            }
            (
                Model::Llava(m),
                Batch::Chat {
                    pixels,
                    ids,
                    learned,
                },
            ) => llava::chat_loss(m, pixels.clone(), ids, learned, s),
            _ => Err(Error::Input(
                "this batch is for a different kind of model (VQA / report / classification)"
                    .into(),
            )),
        }
    }
}

/// Where PEFT methods attach in each family: the one place besides loading and the loss that
/// knows the families' layouts.
impl Model {
    /// Whether this is the LLaVA-style family.
    pub fn is_llava(&self) -> bool {
        matches!(self, Model::Llava(_))
    }

    /// The BLIP text models by component (`text_encoder`, `decoder`): where IA3, prefixes and
    /// the text side's bottleneck adapters attach. None for the classifier and LLaVA.
    pub fn text_models_mut(&mut self) -> Vec<(&'static str, &mut bert::BlipTextModel)> {
        match self {
            Model::Vqa(m) => vec![
                ("text_encoder", &mut m.text_encoder),
                ("decoder", &mut m.text_decoder.bert),
            ],
            Model::Captioner(m) => vec![("decoder", &mut m.text_decoder.bert)],
            Model::Classifier(_) | Model::Llava(_) => vec![],
        }
    }

    /// The decoder's text model of a VQA or report model, where peft's `PREFIX_TUNING` applies
    /// to HF BLIP (peft on `blip.text_decoder` with `task_type="CAUSAL_LM"`: the prefix enters
    /// the decoder's self-attention as `past_key_values`, positions start after it).
    pub fn decoder_text_mut(&mut self) -> Option<&mut bert::BlipTextModel> {
        match self {
            Model::Vqa(m) => Some(&mut m.text_decoder.bert),
            Model::Captioner(m) => Some(&mut m.text_decoder.bert),
            Model::Classifier(_) | Model::Llava(_) => None,
        }
    }

    /// peft's default LoRA target modules for `component` of this family.
    pub fn default_lora_targets(&self, component: &str) -> &'static [&'static str] {
        match (component, self) {
            ("vision", Model::Classifier(_)) => &["q_proj", "v_proj"],
            // peft's defaults for CLIP and LLaMA.
            ("vision" | "decoder", Model::Llava(_)) => &["q_proj", "v_proj"],
            ("projector", _) => &["linear_1", "linear_2"],
            ("vision", _) => &["qkv"],
            _ => &["query", "value"],
        }
    }

    /// Gives every attention that has one the LoRA dropout probability (used only where a
    /// projection carries LoRA, and only while training). LLaVA's attentions have none.
    pub fn set_lora_dropout(&mut self, p: f64) {
        match self {
            Model::Vqa(m) => {
                for l in &mut m.vision_model.encoder.layers {
                    l.self_attn.lora_dropout = p;
                }
            }
            Model::Captioner(m) => {
                for l in &mut m.vision_model.encoder.layers {
                    l.self_attn.lora_dropout = p;
                }
            }
            Model::Classifier(c) => {
                for l in &mut c.vit.layers {
                    l.attention.lora_dropout = p;
                }
            }
            Model::Llava(_) => {}
        }
        for (_, text) in self.text_models_mut() {
            for layer in &mut text.encoder.layer {
                layer.attention.self_attn.lora_dropout = p;
                if let Some(ca) = &mut layer.crossattention {
                    ca.self_attn.lora_dropout = p;
                }
            }
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

/// A loaded model folder: the model and its [`Processor`] (config, tokenizer, preprocessing),
/// which it derefs to.
#[derive(Debug)]
pub struct Pipeline {
    /// The model.
    pub model: Model,
    /// Everything around it: config, tokenizer, image preprocessing, chat format, device.
    pub processor: Processor,
}

impl std::ops::Deref for Pipeline {
    type Target = Processor;
    fn deref(&self) -> &Processor {
        &self.processor
    }
}

impl std::ops::DerefMut for Pipeline {
    fn deref_mut(&mut self) -> &mut Processor {
        &mut self.processor
    }
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
        // Counting an architecture needs no tokenizer.
        let processor = Processor::load(src, config, device, weights).await?;
        Ok(Self { model, processor })
    }

    /// The same pipeline (config, tokenizer, preprocessing) around another `model`, on the
    /// inference device: how evaluation sees the model a trainer is training.
    pub fn with_model(&self, model: Model) -> Pipeline {
        self.processor.with_model(model)
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
