//! A model folder's processor (transformers' `AutoProcessor`): the config, tokenizer, image
//! preprocessing, chat format and generation defaults, apart from the weights. It turns
//! examples into training batches and questions into prompts; batching needs no model.

use super::blip::generate::SpecialTokens;
use super::blip::{BlipConfig, GenConfig};
use super::{Model, ModelConfig, Pipeline, chat, folder, llava};
use crate::data::{Preprocessor, decode_image};
use crate::error::{Error, Result};
use crate::source::FileSource;
use crate::tokenizer::TextTokenizer;
use burn::module::Module;
use burn::tensor::{Device, Int, Tensor};

/// Everything of a model folder but the weights.
#[derive(Debug, Clone)]
pub struct Processor {
    /// The config.
    pub config: ModelConfig,
    /// The tokenizer (models with a text side).
    pub tokenizer: Option<TextTokenizer>,
    /// Image preprocessing.
    pub preprocessor: Preprocessor,
    /// Where batches are made (the model's device).
    pub device: Device,
    /// A conversation set with [`Processor::set_chat_prompt`] (`<image>` and `{question}` in
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

impl Processor {
    /// Reads the tokenizer (`tokenizer.json`, else `vocab.txt`; required when
    /// `needs_tokenizer` and the model has a text side), `preprocessor_config.json` (HF defaults
    /// at the model's size if absent), the chat template and `generation_config.json` for
    /// `config`'s model, making batches on `device`.
    pub async fn load(
        src: &impl FileSource,
        config: ModelConfig,
        device: &Device,
        needs_tokenizer: bool,
    ) -> Result<Self> {
        let needs_tokenizer = needs_tokenizer && config.has_text();
        // A classifier has no text side: its folder's tokenizer files (if any) are not read.
        let found = if config.has_text() {
            folder::read_tokenizer(src).await?
        } else {
            None
        };
        let (tokenizer, tok_cfg) = match found {
            Some((t, c)) => (Some(t), Some(c)),
            _ if needs_tokenizer => {
                return Err(Error::Missing {
                    file: src.describe("tokenizer.json"),
                    reason: if config.is_chat() {
                        "this LLaVA model folder has no tokenizer.json".into()
                    } else {
                        "no tokenizer.json or vocab.txt in the model folder".into()
                    },
                });
            }
            _ => (None, None),
        };
        let (kind, side) = config.image_processor();
        let preprocessor = folder::read_preprocessor(src, kind, side as u32).await?;
        let (chat_template, llava_processor) = if config.is_chat() {
            (
                folder::read_chat_template(src, tok_cfg.as_ref()).await?,
                folder::read_llava_processor(src).await?,
            )
        } else {
            (None, folder::LlavaProcessorSettings::default())
        };
        Ok(Self {
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

    /// The same processor making batches on the inference device, around `model`.
    pub fn with_model(&self, model: Model) -> Pipeline {
        Pipeline {
            model: model.valid(),
            processor: Processor {
                device: self.device.clone().inner(),
                ..self.clone()
            },
        }
    }

    pub(crate) fn llava(&self) -> Result<(&llava::LlavaConfig, &TextTokenizer)> {
        match (self.config.get::<llava::LlavaConfig>(), &self.tokenizer) {
            (Some(c), Some(t)) => Ok((c, t)),
            (Some(_), None) => Err(Error::Input(
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
    pub(crate) fn check_vocab(&self, ids: &[i64]) -> Result<()> {
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
    ) -> Result<super::batch::Batch> {
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
        Ok(super::batch::Batch::Chat {
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

    /// Decoded text and the ids of the first sequence `out` holds.
    pub(crate) fn generated(&self, out: Vec<Vec<i64>>) -> Result<super::Generated> {
        let tok = self
            .tokenizer
            .as_ref()
            .ok_or_else(|| Error::Input("this model has no tokenizer".into()))?;
        let token_ids = out.into_iter().next().unwrap_or_default();
        Ok(super::Generated {
            text: tok.decode(&token_ids)?,
            token_ids,
        })
    }

    pub(crate) fn blip(&self) -> Result<(&BlipConfig, &TextTokenizer)> {
        match (self.config.get::<BlipConfig>(), &self.tokenizer) {
            (Some(c), Some(t)) => Ok((c, t)),
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
            } else if let (Some(n), false) = (d.max_length, self.config.is_chat()) {
                // BLIP decoders: the start token and the new ones. (A LLaVA `max_length`
                // counts the prompt, whose length is not known here: not read.)
                g.max_new_tokens = n.saturating_sub(1).max(1);
            }
        }
        g
    }

    /// The special ids generation uses, from the text config.
    pub fn special_tokens(&self) -> Result<SpecialTokens> {
        if let Some(c) = self.config.get::<llava::LlavaConfig>() {
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
    pub(crate) fn padded(
        &self,
        texts: &[&str],
        first: Option<i64>,
    ) -> Result<(Tensor<2, Int>, Tensor<2>)> {
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
    ) -> Result<super::batch::Batch> {
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
        Ok(super::batch::Batch::Vqa {
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
    ) -> Result<super::batch::Batch> {
        let Some(first) = examples.first() else {
            return Err(Error::Input("an empty batch".into()));
        };
        if self.config.is_chat() {
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
    ) -> Result<super::batch::Batch> {
        let Some(labels) = self.config.labels() else {
            return Err(Error::Input(
                "labelled images train an image classifier; this model is not one".into(),
            ));
        };
        let n = labels.len();
        if let Some((_, l)) = items.iter().find(|(_, l)| l.len() != n) {
            return Err(Error::Input(format!(
                "an example has {} labels, the classifier has {n} ({})",
                l.len(),
                labels.join(", ")
            )));
        }
        let images: Vec<image::DynamicImage> = items.iter().map(|i| i.0.clone()).collect();
        let t: Vec<f32> = items
            .iter()
            .flat_map(|(_, l)| l.iter().map(|&b| if b { 1.0 } else { 0.0 }))
            .collect();
        Ok(super::batch::Batch::Classify {
            pixels: self.preprocessor.batch(&images, &self.device),
            targets: Tensor::<1>::from_floats(t.as_slice(), &self.device).reshape([items.len(), n]),
        })
    }

    /// A report-generation training batch from `(image, report)` pairs.
    pub fn report_batch(
        &self,
        items: &[(image::DynamicImage, &str)],
    ) -> Result<super::batch::Batch> {
        if items.iter().any(|(_, r)| r.trim().is_empty()) {
            return Err(Error::Input(
                "a training example has an empty report".into(),
            ));
        }
        let images: Vec<image::DynamicImage> = items.iter().map(|i| i.0.clone()).collect();
        let reports: Vec<&str> = items.iter().map(|i| i.1).collect();
        let (ids, mask) = self.padded(&reports, Some(self.special_tokens()?.bos))?;
        Ok(super::batch::Batch::Report {
            pixels: self.preprocessor.batch(&images, &self.device),
            ids,
            mask,
        })
    }
}
