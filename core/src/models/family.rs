//! What a model family implements. [`Model`](super::Model), [`ModelConfig`](super::ModelConfig)
//! and [`Architecture`](super::Architecture) are generated from one list of families (the
//! `families!` line in `models/mod.rs`), and every method on them dispatches here: a new family is
//! its folder (config, model, this trait) and one line in that list.

use super::bert::BlipTextModel;
use super::blip::GenConfig;
use super::load::Remaps;
use super::walk::FrozenDtype;
use super::{Batch, Component, Generated, LabelScore, Processor};
use crate::data::ProcessorKind;
use crate::error::{Error, Result};
use burn::module::Module;
use burn::tensor::{Device, Tensor};

/// One model family: one HF architecture, with its config, loading, training loss, the places
/// PEFT attaches and what it answers. Every default is "this family does not do that".
#[allow(async_fn_in_trait)] // dispatched statically (the `families!` enum), never as `dyn`
pub trait Family: Module + Sized + 'static {
    /// The parsed `config.json`.
    type Config: Clone + std::fmt::Debug + serde::Serialize + 'static;

    /// HF's `model_type` in `config.json`.
    const MODEL_TYPE: &'static str;

    /// Whether a folder of [`Family::MODEL_TYPE`] that names no `architectures` is this family
    /// (when several families share a `model_type`; a lone one is chosen whatever it names).
    const DEFAULT_FOR_TYPE: bool = false;

    /// Whether it reads text (a tokenizer, prompts); an image classifier does not.
    const HAS_TEXT: bool = true;

    /// Whether prompts are chats (a chat template, image-token expansion).
    const IS_CHAT: bool = false;

    /// Parses and checks `config.json` (`bytes`, parsed as `value`), named `file` in errors.
    fn parse_config(bytes: &[u8], value: serde_json::Value, file: &str) -> Result<Self::Config>;

    /// A randomly initialised model (a tied LM head, as HF's default).
    fn init(config: &Self::Config, device: &Device) -> Self;

    /// A blank model for a checkpoint holding the tensors `has` names, with the checkpoint-name
    /// remaps and the checkpoint tensors the model does not hold.
    fn blank(
        config: &Self::Config,
        has: &dyn Fn(&str) -> bool,
        device: &Device,
    ) -> (Self, Remaps, Vec<&'static str>);

    /// The image preprocessing HF's processor for this family applies, at the model's side.
    fn image_processor(config: &Self::Config) -> (ProcessorKind, usize);

    /// A classifier's label names in `id2label` order.
    fn labels(_config: &Self::Config) -> Option<Vec<String>> {
        None
    }

    /// The named parameter groups (PEFT placement, reports) in model order, as `(name, field)`:
    /// `("vision", "vision_model")` is every parameter under the field `vision_model`.
    const COMPONENTS: &'static [(&'static str, &'static str)];

    /// The [`Family::COMPONENTS`] with their parameter counts (from shapes: an uninitialised
    /// model is counted without being initialised).
    fn components(&self) -> Vec<Component> {
        let params = super::walk::lazy_params(self);
        Self::COMPONENTS
            .iter()
            .map(|&(name, field)| {
                let n = params
                    .iter()
                    .filter(|(path, _)| path.first().is_some_and(|f| f == field))
                    .map(|(_, n)| n)
                    .sum();
                Component::new(name, field, n)
            })
            .collect()
    }

    /// The training loss of `batch` (made by this model's [`Processor`]).
    fn forward_loss(&self, batch: &Batch, label_smoothing: f64) -> Result<Tensor<1>>;

    /// The BERT text models by component: where IA3, prefixes and the text side's bottleneck
    /// adapters attach.
    fn text_models_mut(&mut self) -> Vec<(&'static str, &mut BlipTextModel)> {
        Vec::new()
    }

    /// The decoder's text model, where peft's `PREFIX_TUNING` applies.
    fn decoder_text_mut(&mut self) -> Option<&mut BlipTextModel> {
        None
    }

    /// peft's default LoRA target modules for `component`.
    fn default_lora_targets(&self, component: &str) -> &'static [&'static str];

    /// Gives the vision tower's attentions the LoRA dropout probability (the text models'
    /// are set by [`super::Model::set_lora_dropout`]).
    fn set_tower_lora_dropout(&mut self, _p: f64) {}

    /// Adds identity-initialised bottleneck adapters of width `size` to the vision tower, or
    /// with `None` removes them; false where the tower has no places for them.
    fn set_vision_adapters(&mut self, _size: Option<usize>) -> bool {
        false
    }

    /// The model with its frozen weights stored as `dtype`, and how many values were converted.
    fn store_frozen(self, _dtype: FrozenDtype) -> Result<(Self, usize)> {
        Err(Error::Input(
            "frozen_dtype: implemented for LLaVA-style models (their language model) only so far"
                .into(),
        ))
    }

    /// How many values [`Family::store_frozen`] would convert when `trainable(path)` says which
    /// parameters train.
    fn frozen_castable(&self, _trainable: &dyn Fn(&[String]) -> bool) -> usize {
        0
    }

    /// Answers a question about an image.
    async fn answer(
        &self,
        _p: &Processor,
        _pixels: Tensor<4>,
        _question: &str,
        _gen_cfg: &GenConfig,
    ) -> Result<Generated> {
        Err(Error::Input(
            "this model generates reports, not answers: leave out the question".into(),
        ))
    }

    /// Generates a report for an image.
    async fn report(
        &self,
        _p: &Processor,
        _pixels: Tensor<4>,
        _gen_cfg: &GenConfig,
    ) -> Result<Generated> {
        Err(Error::Input(
            "this model answers questions: pass a question".into(),
        ))
    }

    /// Ranks candidate answers by likelihood, best first.
    async fn rank(
        &self,
        _p: &Processor,
        _pixels: Tensor<4>,
        _question: &str,
        _candidates: &[String],
    ) -> Result<Vec<(String, f32)>> {
        Err(Error::Input(
            "ranking candidate answers needs a question-answering model".into(),
        ))
    }

    /// Per-label logits and probabilities for one image.
    async fn classify(&self, _p: &Processor, _pixels: Tensor<4>) -> Result<Vec<LabelScore>> {
        Err(Error::Input("this model is not an image classifier".into()))
    }
}
