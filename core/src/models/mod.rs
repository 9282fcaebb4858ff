//! The model families and one entry point over them: read a HF model folder (config, weights,
//! tokenizer, preprocessor) from a [`FileSource`] and answer, report or classify.
//!
//! Each family is a folder implementing [`family::Family`]; the `families!` list below makes
//! [`Model`], [`ModelConfig`] and [`Architecture`] from them, and is the only place the
//! families are enumerated.

pub mod batch;
pub mod bert;
pub mod blip;
pub mod blip_vision;
pub mod chat;
pub mod classifier;
pub mod clip;
pub mod clip_classifier;
pub mod common;
pub mod export;
pub mod family;
pub mod folder;
pub mod llama;
pub mod llava;
pub mod load;
pub mod memory;
pub mod mmproj;
pub mod processor;
pub mod walk;

pub use batch::Batch;
pub use family::Family;
pub use processor::Processor;

use crate::error::{Error, Result};
use crate::source::FileSource;
use blip::GenConfig;
use burn::module::Module;
use burn::tensor::{Device, Tensor};
use serde::Serialize;
use std::any::Any;

use blip::{BlipForConditionalGeneration, BlipForQuestionAnswering};
use classifier::ViTForImageClassification;
use clip_classifier::CLIPForImageClassification;
use llava::LlavaForConditionalGeneration;

/// Declares the families: `Variant(Type)` per family, `Type` implementing [`Family`] and named
/// as HF's architecture. Makes the [`Model`] and [`ModelConfig`] enums (one variant per family),
/// [`Architecture`], and the `each_family!` / `each_config!` dispatchers the methods below use.
/// (`$d` is `$`, so that the dispatchers can have metavariables of their own.)
macro_rules! families {
    ($d:tt $( $(#[doc = $doc:literal])* $variant:ident($ty:ident) ),* $(,)?) => {
        /// A model of any supported family.
        #[derive(Module, Debug)]
        pub enum Model {
            $( $(#[doc = $doc])* $variant($ty), )*
        }

        /// A parsed `config.json`: one family's config.
        #[derive(Debug, Clone)]
        pub enum ModelConfig {
            $( $(#[doc = $doc])* $variant(<$ty as Family>::Config), )*
        }

        /// The architecture a model folder's `config.json` names (HF's class name).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
        pub enum Architecture {
            $( #[doc = concat!("`", stringify!($ty), "`.")] $ty, )*
        }

        $(
            impl From<$ty> for Model {
                fn from(m: $ty) -> Self {
                    Model::$variant(m)
                }
            }
        )*

        /// `each_family!(model, m => expr)`: `expr` with `m` bound to the family's model.
        macro_rules! each_family {
            ($d value:expr, $d m:ident => $d body:expr) => {
                match $d value { $( Model::$variant($d m) => $d body, )* }
            };
        }

        /// `each_config!(config, c, T => expr)`: `expr` with `c` bound to the family's config
        /// and `T` naming the family's model type.
        macro_rules! each_config {
            ($d value:expr, $d c:ident, $d t:ident => $d body:expr) => {
                match $d value {
                    $( ModelConfig::$variant($d c) => {
                        #[allow(dead_code)]
                        type $d t = $ty;
                        $d body
                    } )*
                }
            };
        }

        impl ModelConfig {
            /// The families, in declaration order: `(model_type, architecture, default for
            /// its model_type)`.
            const FAMILIES: &'static [(&'static str, Architecture, bool)] = &[
                $( (<$ty as Family>::MODEL_TYPE, Architecture::$ty, <$ty as Family>::DEFAULT_FOR_TYPE), )*
            ];

            /// Parses `config.json` as `arch`'s config.
            fn parse_as(
                arch: Architecture,
                bytes: &[u8],
                value: serde_json::Value,
                file: &str,
            ) -> Result<Self> {
                match arch {
                    $( Architecture::$ty => <$ty as Family>::parse_config(bytes, value, file)
                        .map(ModelConfig::$variant), )*
                }
            }

            /// The component a parameter at `path` (module path segments) belongs to, by its
            /// first segment and the families' [`Family::COMPONENTS`]; `head` for a field no
            /// family names.
            pub fn component_of(path: &[String]) -> &'static str {
                let first = path.first().map(String::as_str).unwrap_or("");
                $(
                    if let Some((name, _)) =
                        <$ty as Family>::COMPONENTS.iter().find(|(_, p)| *p == first)
                    {
                        return name;
                    }
                )*
                "head"
            }

            /// The architecture.
            pub fn architecture(&self) -> Architecture {
                match self {
                    $( ModelConfig::$variant(_) => Architecture::$ty, )*
                }
            }
        }
    };
}

families! {$
    /// BLIP Med-VQA (`BlipForQuestionAnswering`).
    Vqa(BlipForQuestionAnswering),
    /// BLIP report generation (`BlipForConditionalGeneration`).
    Captioner(BlipForConditionalGeneration),
    /// A ViT multi-label image classifier (`ViTForImageClassification`).
    Classifier(ViTForImageClassification),
    /// A LLaVA-style model (CLIP tower, projector, LLaMA decoder): answers and reports as a
    /// chat (`LlavaForConditionalGeneration`).
    Llava(LlavaForConditionalGeneration),
    /// A CLIP vision tower with a linear head on its mean patch token
    /// (`CLIPForImageClassification`).
    ClipClassifier(CLIPForImageClassification),
}

impl ModelConfig {
    /// Parses `config.json`, dispatching on `model_type` and `architectures` as HF's Auto classes
    /// do: `architectures[0]` must be one of the `model_type`'s families (a `CLIPModel` folder is
    /// not a `CLIPForImageClassification`); without it a lone family of the type is chosen, else
    /// the type's default.
    pub fn from_json(bytes: &[u8], file: &str) -> Result<Self> {
        let v: serde_json::Value =
            serde_json::from_slice(bytes).map_err(|e| Error::json(file, e))?;
        let model_type = v
            .get("model_type")
            .and_then(|m| m.as_str())
            .ok_or_else(|| Error::config(file, "model_type", "missing"))?;
        let named = v
            .get("architectures")
            .and_then(|a| a.get(0))
            .and_then(|a| a.as_str());
        let of_type: Vec<_> = Self::FAMILIES
            .iter()
            .filter(|(t, ..)| *t == model_type)
            .collect();
        let arch = match (of_type.as_slice(), named) {
            ([], _) => {
                let mut types: Vec<&str> = Self::FAMILIES.iter().map(|(t, ..)| *t).collect();
                types.dedup();
                return Err(Error::config(
                    file,
                    "model_type",
                    format!("`{model_type}` is not supported ({})", types.join(", ")),
                ));
            }
            ([(_, a, _)], None) => *a,
            (of_type, Some(name)) => {
                match of_type.iter().find(|(_, a, _)| format!("{a:?}") == name) {
                    Some((_, a, _)) => *a,
                    None => {
                        let names: Vec<String> =
                            of_type.iter().map(|(_, a, _)| format!("{a:?}")).collect();
                        return Err(Error::config(
                            file,
                            "architectures",
                            format!("`{name}` is not supported ({})", names.join(", ")),
                        ));
                    }
                }
            }
            (several, None) => match several.iter().find(|(.., default)| *default) {
                Some((_, a, _)) => *a,
                None => return Err(Error::config(file, "architectures", "missing")),
            },
        };
        Self::parse_as(arch, bytes, v, file)
    }

    /// The family's config, if it is a `C` (e.g. `config.get::<BlipConfig>()`, for either BLIP
    /// architecture).
    pub fn get<C: 'static>(&self) -> Option<&C> {
        each_config!(self, c, _T => (c as &dyn Any).downcast_ref::<C>())
    }

    /// A classifier's label names in `id2label` order; `None` for the other families.
    pub fn labels(&self) -> Option<Vec<String>> {
        each_config!(self, c, T => T::labels(c))
    }

    /// The config as JSON, every field the family reads.
    pub fn to_json(&self) -> serde_json::Value {
        each_config!(self, c, _T => serde_json::to_value(c)).unwrap_or_default()
    }

    /// The image preprocessing of the family's HF processor, at the model's side.
    pub fn image_processor(&self) -> (crate::data::ProcessorKind, usize) {
        each_config!(self, c, T => T::image_processor(c))
    }

    /// Whether the model reads text (a tokenizer, prompts).
    pub fn has_text(&self) -> bool {
        each_config!(self, _c, T => T::HAS_TEXT)
    }

    /// Whether its prompts are chats (a chat template, image-token expansion).
    pub fn is_chat(&self) -> bool {
        each_config!(self, _c, T => T::IS_CHAT)
    }
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

impl Component {
    /// The group `name` at module path `path`, of `params` parameters.
    pub fn new(name: &'static str, path: &'static str, params: usize) -> Self {
        Self { name, path, params }
    }
}

impl Model {
    /// The family's model, if it is an `F` (e.g. `model.get::<LlavaForConditionalGeneration>()`).
    pub fn get<F: Family>(&self) -> Option<&F> {
        each_family!(self, m => (m as &dyn Any).downcast_ref::<F>())
    }

    /// The named parameter groups, in model order.
    pub fn components(&self) -> Vec<Component> {
        each_family!(self, m => m.components())
    }

    /// The training loss of `batch` (made by this model's [`Processor`]): the answer or report
    /// tokens' cross-entropy with `label_smoothing` (BLIP), the chat answers' (LLaVA), the
    /// labels' binary cross-entropy (classifier).
    pub fn forward_loss(&self, batch: &Batch, label_smoothing: f64) -> Result<Tensor<1>> {
        each_family!(self, m => m.forward_loss(batch, label_smoothing))
    }

    /// Whether this is the LLaVA-style family.
    pub fn is_llava(&self) -> bool {
        self.get::<LlavaForConditionalGeneration>().is_some()
    }

    /// The BERT text models by component (`text_encoder`, `decoder`): where IA3, prefixes and
    /// the text side's bottleneck adapters attach. None for the classifier and LLaVA.
    pub fn text_models_mut(&mut self) -> Vec<(&'static str, &mut bert::BlipTextModel)> {
        each_family!(self, m => m.text_models_mut())
    }

    /// The decoder's text model of a VQA or report model, where peft's `PREFIX_TUNING` applies
    /// to HF BLIP.
    pub fn decoder_text_mut(&mut self) -> Option<&mut bert::BlipTextModel> {
        each_family!(self, m => m.decoder_text_mut())
    }

    /// peft's default LoRA target modules for `component` of this family.
    pub fn default_lora_targets(&self, component: &str) -> &'static [&'static str] {
        each_family!(self, m => m.default_lora_targets(component))
    }

    /// Gives every attention that has one the LoRA dropout probability (used only where a
    /// projection carries LoRA, and only while training). LLaVA's attentions have none.
    pub fn set_lora_dropout(&mut self, p: f64) {
        each_family!(self, m => m.set_tower_lora_dropout(p));
        for (_, text) in self.text_models_mut() {
            for layer in &mut text.encoder.layer {
                layer.attention.self_attn.lora_dropout = p;
                if let Some(ca) = &mut layer.crossattention {
                    ca.self_attn.lora_dropout = p;
                }
            }
        }
    }

    /// Adds identity-initialised bottleneck adapters of width `size` to the vision tower, or
    /// with `None` removes them; false where the family's tower has no places for them.
    pub fn set_vision_adapters(&mut self, size: Option<usize>) -> bool {
        each_family!(self, m => m.set_vision_adapters(size))
    }

    /// The model with its frozen weights stored as `dtype`, and how many values were converted.
    pub fn store_frozen(self, dtype: walk::FrozenDtype) -> Result<(Model, usize)> {
        each_family!(self, m => m.store_frozen(dtype).map(|(m, n)| (Model::from(m), n)))
    }

    /// How many values [`Model::store_frozen`] would convert when `trainable(path)` says which
    /// parameters train.
    pub fn frozen_castable(&self, trainable: &dyn Fn(&[String]) -> bool) -> usize {
        each_family!(self, m => m.frozen_castable(trainable))
    }
}

/// A randomly initialised model of `config`'s architecture (tied LM head, as HF's default).
pub fn init_model(config: &ModelConfig, device: &Device) -> Model {
    each_config!(config, c, T => Model::from(T::init(c, device)))
}

/// A blank model of `config`'s architecture for a checkpoint holding the tensors `has` names,
/// with the checkpoint-name remaps and the checkpoint tensors it does not hold.
fn blank_for(
    config: &ModelConfig,
    has: impl Fn(&str) -> bool,
    device: &Device,
) -> (Model, load::Remaps, Vec<&'static str>) {
    each_config!(config, c, T => {
        let (m, remaps, ignored) = T::blank(c, &has, device);
        (Model::from(m), remaps, ignored)
    })
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
        each_family!(&self.model, m => m.answer(&self.processor, pixels, question, gen_cfg).await)
    }

    /// Generates a report (caption) for an image.
    pub async fn report(&self, pixels: Tensor<4>, gen_cfg: &GenConfig) -> Result<Generated> {
        each_family!(&self.model, m => m.report(&self.processor, pixels, gen_cfg).await)
    }

    /// Ranks candidate answers by their likelihood under the decoder (closed-set mode), best first.
    pub async fn rank(
        &self,
        pixels: Tensor<4>,
        question: &str,
        candidates: &[String],
    ) -> Result<Vec<(String, f32)>> {
        each_family!(&self.model, m => m.rank(&self.processor, pixels, question, candidates).await)
    }

    /// Per-label logits and probabilities for one image.
    pub async fn classify(&self, pixels: Tensor<4>) -> Result<Vec<LabelScore>> {
        each_family!(&self.model, m => m.classify(&self.processor, pixels).await)
    }
}
