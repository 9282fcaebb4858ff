//! Text tokenisation through the `tokenizers` crate, read from a model folder as transformers 5
//! reads it (`TokenizersBackend`): `tokenizer.json` (or a BERT `vocab.txt`, built into the
//! WordPiece pipeline `BertTokenizer` builds), then `tokenizer_config.json` /
//! `special_tokens_map.json`: the padding stored in `tokenizer.json` is dropped (transformers
//! pads only when a call asks; normtune pads batches itself, with a mask), its truncation kept
//! (transformers 5 applies it by default);
//! explicit `add_bos_token` / `add_eos_token` rewrite the post-processor; added and special
//! tokens the file lacks are added. Conformance: tests/fixtures/make_conformance.py.

use crate::error::{Error, Result};
use std::collections::HashMap;
use tokenizers::Tokenizer;

/// A loaded tokenizer plus the file it came from (for error messages).
#[derive(Clone)]
pub struct TextTokenizer {
    inner: Tokenizer,
    file: String,
    /// `bos_token` / `eos_token` of `tokenizer_config.json` (chat templates render them).
    special: SpecialNames,
}

/// The named special tokens of `tokenizer_config.json` / `special_tokens_map.json`.
#[derive(Debug, Clone, Default)]
pub struct SpecialNames {
    /// `bos_token`.
    pub bos: Option<String>,
    /// `eos_token`.
    pub eos: Option<String>,
    /// `unk_token`.
    pub unk: Option<String>,
    /// `pad_token`.
    pub pad: Option<String>,
    /// `sep_token`.
    pub sep: Option<String>,
    /// `cls_token`.
    pub cls: Option<String>,
    /// `mask_token`.
    pub mask: Option<String>,
    /// `extra_special_tokens` / `additional_special_tokens`.
    pub extra: Vec<String>,
}

/// A token written as a string or as transformers' `AddedToken` object.
fn token_content(v: &serde_json::Value) -> Option<String> {
    v.as_str()
        .map(String::from)
        .or_else(|| v.get("content").and_then(|c| c.as_str()).map(String::from))
}

/// The fields of `tokenizer_config.json` (merged over `special_tokens_map.json`) that change
/// what a call returns.
#[derive(Debug, Clone, Default)]
pub struct TokenizerConfig {
    /// Named special tokens.
    pub special: SpecialNames,
    /// Explicit `add_bos_token`.
    pub add_bos_token: Option<bool>,
    /// Explicit `add_eos_token`.
    pub add_eos_token: Option<bool>,
    /// `do_lower_case` (a `vocab.txt`-only BERT tokenizer).
    pub do_lower_case: Option<bool>,
    /// `strip_accents` (idem).
    pub strip_accents: Option<bool>,
    /// `tokenize_chinese_chars` (idem).
    pub tokenize_chinese_chars: Option<bool>,
    /// `model_max_length` (transformers warns past it; truncation only when asked).
    pub model_max_length: Option<usize>,
    /// `added_tokens_decoder`: id → token with its flags.
    pub added_tokens: Vec<(u32, tokenizers::AddedToken)>,
    /// `chat_template`: the default template (a string, or the entry named `default`).
    pub chat_template: Option<String>,
}

impl TokenizerConfig {
    /// Parses `tokenizer_config.json`, over `special_tokens_map.json` when given (transformers
    /// reads both; the config wins).
    pub fn from_json(
        config: Option<(&[u8], &str)>,
        special_map: Option<(&[u8], &str)>,
    ) -> Result<Self> {
        let mut merged = serde_json::Map::new();
        for (bytes, file) in [special_map, config].into_iter().flatten() {
            let v: serde_json::Value =
                serde_json::from_slice(bytes).map_err(|e| Error::json(file, e))?;
            let serde_json::Value::Object(o) = v else {
                return Err(Error::config(file, "(top level)", "a JSON object expected"));
            };
            merged.extend(o);
        }
        let file = config
            .or(special_map)
            .map(|c| c.1)
            .unwrap_or("tokenizer_config.json");
        let tok = |k: &str| merged.get(k).and_then(token_content);
        let flag = |k: &str| merged.get(k).and_then(|v| v.as_bool());
        let mut extra = Vec::new();
        for k in ["additional_special_tokens", "extra_special_tokens"] {
            match merged.get(k) {
                Some(serde_json::Value::Array(a)) => {
                    extra.extend(a.iter().filter_map(token_content))
                }
                Some(serde_json::Value::Object(o)) => {
                    extra.extend(o.values().filter_map(token_content))
                }
                _ => {}
            }
        }
        let mut added_tokens = Vec::new();
        if let Some(serde_json::Value::Object(o)) = merged.get("added_tokens_decoder") {
            for (id, t) in o {
                let (Ok(id), Some(content)) = (id.parse::<u32>(), token_content(t)) else {
                    return Err(Error::config(
                        file,
                        "added_tokens_decoder",
                        format!("entry `{id}` is not an id with a token"),
                    ));
                };
                let f = |k: &str, d: bool| t.get(k).and_then(|v| v.as_bool()).unwrap_or(d);
                let special = f("special", false);
                let token = tokenizers::AddedToken::from(content, special)
                    .single_word(f("single_word", false))
                    .lstrip(f("lstrip", false))
                    .rstrip(f("rstrip", false))
                    .normalized(f("normalized", !special));
                added_tokens.push((id, token));
            }
            added_tokens.sort_by_key(|(id, _)| *id);
        }
        let chat_template = match merged.get("chat_template") {
            Some(serde_json::Value::String(t)) => Some(t.clone()),
            Some(serde_json::Value::Array(list)) => list
                .iter()
                .find(|e| e.get("name").and_then(|n| n.as_str()) == Some("default"))
                .and_then(|e| e.get("template").and_then(|t| t.as_str()))
                .map(String::from),
            _ => None,
        };
        Ok(Self {
            special: SpecialNames {
                bos: tok("bos_token"),
                eos: tok("eos_token"),
                unk: tok("unk_token"),
                pad: tok("pad_token"),
                sep: tok("sep_token"),
                cls: tok("cls_token"),
                mask: tok("mask_token"),
                extra,
            },
            add_bos_token: flag("add_bos_token"),
            add_eos_token: flag("add_eos_token"),
            do_lower_case: flag("do_lower_case"),
            strip_accents: flag("strip_accents"),
            tokenize_chinese_chars: flag("tokenize_chinese_chars"),
            model_max_length: merged
                .get("model_max_length")
                .and_then(|v| v.as_f64())
                .filter(|v| *v < 1e12)
                .map(|v| v as usize),
            added_tokens,
            chat_template,
        })
    }
}

impl std::fmt::Debug for TextTokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "TextTokenizer({}, vocab {})",
            self.file,
            self.vocab_size()
        )
    }
}

impl TextTokenizer {
    /// From a `tokenizer.json`.
    pub fn from_json(bytes: &[u8], file: &str) -> Result<Self> {
        // tokenizers 0.22 panics (an `expect` in its untagged decoder / normalizer
        // deserialisers) on a JSON syntax error inside those sections (found by fuzzing); a full
        // syntax check first turns that into an error naming the line and column.
        serde_json::from_slice::<serde::de::IgnoredAny>(bytes).map_err(|e| Error::json(file, e))?;
        let mut inner = Tokenizer::from_bytes(bytes).map_err(|e| Error::Tokenizer {
            file: file.into(),
            reason: e.to_string(),
        })?;
        // Saved tokenizers often carry a fixed-length `padding` section: transformers ignores it
        // unless the call asks for padding, and so does normtune (the pipeline pads batches
        // itself, with a mask). A `truncation` section, though, transformers 5 keeps as the
        // call's default (checked by the conformance corpus), so it stays.
        inner.with_padding(None);
        Ok(Self {
            inner,
            file: file.into(),
            special: SpecialNames::default(),
        })
    }

    /// Applies `tokenizer_config.json` as transformers' `TokenizersBackend` does: tokens of
    /// `added_tokens_decoder` and named special tokens the tokenizer lacks are added, and an
    /// explicit `add_bos_token` / `add_eos_token` rebuilds the post-processor
    /// (`bos $A eos` as asked).
    pub fn configure(mut self, cfg: &TokenizerConfig) -> Result<Self> {
        let have = |t: &Tokenizer, c: &str| t.get_vocab(true).contains_key(c);
        let missing: Vec<tokenizers::AddedToken> = cfg
            .added_tokens
            .iter()
            .filter(|(_, t)| !have(&self.inner, &t.content))
            .map(|(_, t)| t.clone())
            .collect();
        self.inner.add_tokens(&missing);
        let s = &cfg.special;
        let named = [&s.bos, &s.eos, &s.unk, &s.pad, &s.sep, &s.cls, &s.mask];
        let specials: Vec<tokenizers::AddedToken> = named
            .into_iter()
            .flatten()
            .chain(&s.extra)
            .map(|c| tokenizers::AddedToken::from(c.clone(), true).normalized(false))
            .collect();
        // Present or not, they are special: never split, skipped when decoding.
        self.inner.add_special_tokens(&specials);
        if cfg.add_bos_token.is_some() || cfg.add_eos_token.is_some() {
            let bos = s.bos.clone().filter(|_| cfg.add_bos_token == Some(true));
            let eos = s.eos.clone().filter(|_| cfg.add_eos_token == Some(true));
            let mut single = String::new();
            let mut ids = Vec::new();
            for (t, side) in [(&bos, 0), (&None, 1), (&eos, 2)] {
                if side == 1 {
                    single.push_str("$A:0 ");
                } else if let Some(t) = t {
                    let id = self.inner.token_to_id(t).ok_or_else(|| Error::Tokenizer {
                        file: self.file.clone(),
                        reason: format!("special token `{t}` is not in the vocabulary"),
                    })?;
                    single.push_str(&format!("{t}:0 "));
                    ids.push((t.clone(), id));
                }
            }
            let pair = format!("{single}$B:1");
            let template = tokenizers::processors::template::TemplateProcessing::builder()
                .try_single(single.trim())
                .and_then(|b| b.try_pair(pair.as_str()))
                .map_err(|e| Error::Tokenizer {
                    file: self.file.clone(),
                    reason: e.to_string(),
                })?
                .special_tokens(ids)
                .build()
                .map_err(|e| Error::Tokenizer {
                    file: self.file.clone(),
                    reason: e.to_string(),
                })?;
            self.inner.with_post_processor(Some(template));
        }
        self.special = cfg.special.clone();
        Ok(self)
    }

    /// The named special tokens (`bos_token`, `eos_token`, ...) of the folder's config.
    pub fn special_names(&self) -> &SpecialNames {
        &self.special
    }

    /// A `tokenizer_config.json` holding the named special tokens and `chat_template`: how a
    /// tokenizer built from a GGUF file (its `tokenizer.chat_template`) is written into a HF
    /// model folder.
    pub fn config_json(&self, chat_template: Option<&str>) -> serde_json::Value {
        let s = &self.special;
        let mut v = serde_json::json!({});
        for (k, t) in [
            ("bos_token", &s.bos),
            ("eos_token", &s.eos),
            ("unk_token", &s.unk),
            ("pad_token", &s.pad),
        ] {
            if let Some(t) = t {
                v[k] = serde_json::json!(t);
            }
        }
        if let Some(t) = chat_template {
            v["chat_template"] = serde_json::json!(t);
        }
        v
    }

    /// As a `tokenizer.json` (the `tokenizers` crate's own serialisation, pretty-printed): how a
    /// tokenizer built from a GGUF file is written into a HF model folder.
    pub fn to_json(&self) -> Result<Vec<u8>> {
        self.inner
            .to_string(true)
            .map(String::into_bytes)
            .map_err(|e| Error::Tokenizer {
                file: self.file.clone(),
                reason: e.to_string(),
            })
    }

    /// From a BERT `vocab.txt` (one token per line, id = line number), lower-casing as
    /// bert-base-uncased does.
    pub fn from_vocab_txt(bytes: &[u8], file: &str) -> Result<Self> {
        Self::from_vocab_txt_with(bytes, file, &TokenizerConfig::default())
    }

    /// From a BERT `vocab.txt` with `tokenizer_config.json`'s `do_lower_case`, `strip_accents`
    /// and `tokenize_chinese_chars` (transformers' `BertTokenizer` defaults: true, as
    /// lowercase, true), then [`TextTokenizer::configure`].
    pub fn from_vocab_txt_with(bytes: &[u8], file: &str, cfg: &TokenizerConfig) -> Result<Self> {
        let text = std::str::from_utf8(bytes).map_err(|e| Error::Tokenizer {
            file: file.into(),
            reason: e.to_string(),
        })?;
        let vocab: HashMap<String, u32> = text
            .lines()
            .enumerate()
            .map(|(i, t)| (t.to_string(), i as u32))
            .collect();
        let id = |t: &str| {
            vocab.get(t).copied().ok_or_else(|| Error::Tokenizer {
                file: file.into(),
                reason: format!("no `{t}` token in the vocabulary"),
            })
        };
        let (cls, sep) = (id("[CLS]")?, id("[SEP]")?);
        id("[UNK]")?;
        // The tokenizer.json HF's BertTokenizerFast writes for an uncased vocab.
        let added: Vec<serde_json::Value> = text
            .lines()
            .enumerate()
            .filter(|(_, t)| t.starts_with('[') && t.ends_with(']'))
            .map(|(i, t)| {
                serde_json::json!({"id": i, "content": t, "single_word": false, "lstrip": false,
                    "rstrip": false, "normalized": false, "special": true})
            })
            .collect();
        let json = serde_json::json!({
            "version": "1.0",
            "truncation": null,
            "padding": null,
            "added_tokens": added,
            "normalizer": {"type": "BertNormalizer", "clean_text": true,
                "handle_chinese_chars": cfg.tokenize_chinese_chars.unwrap_or(true),
                "strip_accents": cfg.strip_accents, "lowercase": cfg.do_lower_case.unwrap_or(true)},
            "pre_tokenizer": {"type": "BertPreTokenizer"},
            "post_processor": {"type": "BertProcessing", "sep": ["[SEP]", sep], "cls": ["[CLS]", cls]},
            "decoder": {"type": "WordPiece", "prefix": "##", "cleanup": true},
            "model": {"type": "WordPiece", "unk_token": "[UNK]", "continuing_subword_prefix": "##",
                "max_input_chars_per_word": 100, "vocab": vocab},
        });
        let inner =
            Tokenizer::from_bytes(json.to_string().as_bytes()).map_err(|e| Error::Tokenizer {
                file: file.into(),
                reason: e.to_string(),
            })?;
        Self {
            inner,
            file: file.into(),
            special: SpecialNames::default(),
        }
        .configure(cfg)
    }

    /// From a GGUF file's `tokenizer.ggml.*` metadata, as transformers builds it
    /// (`integrations/gguf/gguf_tokenizer_mapping.py`):
    /// - `tokenizer.ggml.model` `gpt2`: a byte-level BPE (GPT-2's pre-tokenizer and decoder, the
    ///   file's tokens and merges);
    /// - `llama` (SentencePiece, as LLaMA-2 and Mistral files, LLaVA-Med's included): a BPE with
    ///   byte fallback over the file's pieces, `Metaspace` (prepend `▁` to the first word), the
    ///   merges the file lists or, as usual, those its scores imply (transformers'
    ///   `generate_merges`), BOS added unless `tokenizer.ggml.add_bos_token` says otherwise, EOS
    ///   when `add_eos_token` says so;
    ///
    /// in both, the tokens the file marks as control are special tokens and the user-defined ones
    /// added tokens. Other vocabularies (and the Gemma/Phi-3 variants of `llama`) are refused.
    pub fn from_gguf(g: &crate::gguf::Gguf, file: &str) -> Result<Self> {
        use crate::gguf::Value;
        let bad = |reason: String| Error::Tokenizer {
            file: file.into(),
            reason,
        };
        let model = g
            .get("tokenizer.ggml.model")
            .and_then(Value::as_str)
            .unwrap_or("");
        let arch = g
            .get("general.architecture")
            .and_then(Value::as_str)
            .unwrap_or("");
        let sentencepiece = match model {
            "gpt2" => false,
            "llama" if arch.starts_with("gemma") || arch == "phi3" => {
                return Err(bad(format!(
                    "tokenizer.ggml.model `llama` of a `{arch}` file: its SentencePiece variant \
                     is not read yet (LLaMA and Mistral vocabularies are)"
                )));
            }
            "llama" => true,
            _ => {
                return Err(bad(format!(
                    "tokenizer.ggml.model `{model}`: byte-level BPE (`gpt2`) and SentencePiece \
                     (`llama`) vocabularies are read"
                )));
            }
        };
        let strings = |key: &str| -> Result<Option<Vec<String>>> {
            match g.get(key) {
                Some(Value::Array(a)) => a
                    .iter()
                    .map(|v| v.as_str().map(String::from))
                    .collect::<Option<Vec<_>>>()
                    .map(Some)
                    .ok_or_else(|| bad(format!("{key} holds a value that is not a string"))),
                Some(_) => Err(bad(format!("{key} is not an array"))),
                None => Ok(None),
            }
        };
        let tokens = strings("tokenizer.ggml.tokens")?
            .ok_or_else(|| bad("no tokenizer.ggml.tokens array".into()))?;
        let merges = strings("tokenizer.ggml.merges")?;
        let types: Vec<u64> = match g.get("tokenizer.ggml.token_type") {
            Some(Value::Array(a)) => a.iter().map(|v| v.as_u64().unwrap_or(1)).collect(),
            _ => Vec::new(),
        };
        let (mut json, vocab) = if sentencepiece {
            let merges = match merges {
                Some(m) => m
                    .iter()
                    .map(|m| m.split(' ').map(String::from).collect())
                    .collect(),
                None => {
                    let scores: Vec<f64> = match g.get("tokenizer.ggml.scores") {
                        Some(Value::Array(a)) if a.len() == tokens.len() => a
                            .iter()
                            .map(Value::as_f64)
                            .collect::<Option<_>>()
                            .ok_or_else(|| {
                                bad("tokenizer.ggml.scores holds a value that is not a number"
                                    .into())
                            })?,
                        _ => {
                            return Err(bad(format!(
                                "no tokenizer.ggml.merges, and no tokenizer.ggml.scores with one \
                                 score per token ({}) to derive them from",
                                tokens.len()
                            )));
                        }
                    };
                    merges_from_scores(&tokens, &scores)
                }
            };
            sentencepiece_json(&tokens, merges)
        } else {
            let merges = merges.ok_or_else(|| bad("no tokenizer.ggml.merges array".into()))?;
            byte_level_json(&tokens, &merges)
        };
        // Control tokens (type 3) special; user-defined ones (4) plain added tokens. In a
        // byte-level vocabulary a control token spelled outside the byte alphabet is a llama.cpp
        // mislabel, which transformers skips.
        let alphabet = byte_alphabet();
        let in_alphabet = |t: &str| sentencepiece || t.chars().all(|c| alphabet.contains(&c));
        let in_vocab = |t: &str| vocab.contains_key(t);
        let added: Vec<serde_json::Value> = tokens
            .iter()
            .enumerate()
            .filter_map(|(i, t)| {
                let special = match types.get(i) {
                    Some(3) if in_alphabet(t) => true,
                    Some(4) if in_vocab(t) => false,
                    _ => return None,
                };
                Some(
                    serde_json::json!({"id": i, "content": t, "single_word": false,
                    "lstrip": false, "rstrip": false, "normalized": false, "special": special}),
                )
            })
            .collect();
        json["added_tokens"] = serde_json::Value::Array(added);
        json["model"]["vocab"] = serde_json::Value::Object(vocab);
        let inner =
            Tokenizer::from_bytes(json.to_string().as_bytes()).map_err(|e| bad(e.to_string()))?;
        let named = |key: &str| {
            g.get(key)
                .and_then(Value::as_u64)
                .and_then(|id| tokens.get(id as usize).cloned())
        };
        let special = SpecialNames {
            bos: named("tokenizer.ggml.bos_token_id"),
            eos: named("tokenizer.ggml.eos_token_id"),
            unk: named("tokenizer.ggml.unknown_token_id"),
            pad: named("tokenizer.ggml.padding_token_id"),
            ..SpecialNames::default()
        };
        let tok = Self {
            inner,
            file: file.into(),
            special: special.clone(),
        };
        if !sentencepiece {
            return Ok(tok);
        }
        let flag = |key: &str| match g.get(key) {
            Some(Value::Bool(b)) => Some(*b),
            _ => None,
        };
        // transformers: llama.cpp adds BOS to a SentencePiece vocabulary that does not say
        // otherwise (older files have no flag).
        tok.configure(&TokenizerConfig {
            special,
            add_bos_token: Some(flag("tokenizer.ggml.add_bos_token").unwrap_or(true)),
            add_eos_token: Some(flag("tokenizer.ggml.add_eos_token").unwrap_or(false)),
            ..TokenizerConfig::default()
        })
    }

    /// Token ids with `[CLS]` … `[SEP]`, truncated to `max_len` tokens (the last one kept `[SEP]`).
    pub fn encode(&self, text: &str, max_len: usize) -> Result<Vec<i64>> {
        let enc = self
            .inner
            .encode(text, true)
            .map_err(|e| Error::Tokenizer {
                file: self.file.clone(),
                reason: e.to_string(),
            })?;
        let mut ids: Vec<i64> = enc.get_ids().iter().map(|&i| i as i64).collect();
        if ids.len() > max_len && max_len >= 2 {
            let last = *ids.last().unwrap_or(&0);
            ids.truncate(max_len - 1);
            ids.push(last);
        }
        Ok(ids)
    }

    /// Token ids, with the tokenizer's special tokens (its post-processor) or without, as
    /// transformers' `add_special_tokens`; never truncated.
    pub fn encode_with(&self, text: &str, add_special_tokens: bool) -> Result<Vec<i64>> {
        let enc = self
            .inner
            .encode(text, add_special_tokens)
            .map_err(|e| Error::Tokenizer {
                file: self.file.clone(),
                reason: e.to_string(),
            })?;
        Ok(enc.get_ids().iter().map(|&i| i as i64).collect())
    }

    /// Token ids without the tokenizer's special tokens (text that continues a sequence).
    pub fn encode_plain(&self, text: &str) -> Result<Vec<i64>> {
        let enc = self
            .inner
            .encode(text, false)
            .map_err(|e| Error::Tokenizer {
                file: self.file.clone(),
                reason: e.to_string(),
            })?;
        Ok(enc.get_ids().iter().map(|&i| i as i64).collect())
    }

    /// Text for ids, special tokens skipped (HF `decode(..., skip_special_tokens=True)`).
    pub fn decode(&self, ids: &[i64]) -> Result<String> {
        let ids: Vec<u32> = ids.iter().filter(|&&i| i >= 0).map(|&i| i as u32).collect();
        self.inner.decode(&ids, true).map_err(|e| Error::Tokenizer {
            file: self.file.clone(),
            reason: e.to_string(),
        })
    }

    /// The id of a token, if the vocabulary has it.
    pub fn token_id(&self, token: &str) -> Option<i64> {
        self.inner.token_to_id(token).map(|i| i as i64)
    }

    /// Vocabulary size including added tokens.
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }
}

/// GPT-2's byte alphabet: every byte as a printable character.
fn byte_alphabet() -> [char; 256] {
    let mut alphabet = [' '; 256];
    let mut n = 0u32;
    for b in 0..=255u8 {
        let printable = matches!(b, b'!'..=b'~' | 0xA1..=0xAC | 0xAE..=0xFF);
        alphabet[b as usize] = if printable {
            b as char
        } else {
            n += 1;
            char::from_u32(255 + n).unwrap_or('?')
        };
    }
    alphabet
}

/// A byte-level BPE `tokenizer.json` (without vocabulary and added tokens) and its vocabulary,
/// tokens written in GPT-2's byte alphabet where the file spells them in plain UTF-8.
fn byte_level_json(
    tokens: &[String],
    merges: &[String],
) -> (
    serde_json::Value,
    serde_json::Map<String, serde_json::Value>,
) {
    let alphabet = byte_alphabet();
    let in_alphabet = |t: &str| t.chars().all(|c| alphabet.contains(&c));
    let mut vocab = serde_json::Map::new();
    for (i, t) in tokens.iter().enumerate() {
        let spelled = if in_alphabet(t) {
            t.clone()
        } else {
            t.bytes().map(|b| alphabet[b as usize]).collect()
        };
        vocab.insert(spelled, serde_json::json!(i));
    }
    let byte_level = serde_json::json!({"type": "ByteLevel", "add_prefix_space": false,
        "trim_offsets": true, "use_regex": true});
    let json = serde_json::json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "normalizer": null,
        "pre_tokenizer": byte_level,
        "post_processor": {"type": "ByteLevel", "add_prefix_space": true,
            "trim_offsets": false, "use_regex": true},
        "decoder": byte_level,
        "model": {"type": "BPE", "dropout": null, "unk_token": null,
            "continuing_subword_prefix": "", "end_of_word_suffix": "", "fuse_unk": false,
            "byte_fallback": false, "ignore_merges": false, "merges": merges},
    });
    (json, vocab)
}

/// The `tokenizer.json` transformers' `LlamaTokenizer` builds over a GGUF SentencePiece
/// vocabulary (without vocabulary and added tokens), and the vocabulary (a repeated piece keeps
/// its last id, as a Python dict does).
fn sentencepiece_json(
    tokens: &[String],
    merges: Vec<Vec<String>>,
) -> (
    serde_json::Value,
    serde_json::Map<String, serde_json::Value>,
) {
    let mut vocab = serde_json::Map::new();
    for (i, t) in tokens.iter().enumerate() {
        vocab.insert(t.clone(), serde_json::json!(i));
    }
    let json = serde_json::json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "normalizer": null,
        "pre_tokenizer": {"type": "Metaspace", "replacement": "\u{2581}",
            "prepend_scheme": "first", "split": false},
        "post_processor": null,
        "decoder": {"type": "Sequence", "decoders": [
            {"type": "Replace", "pattern": {"String": "\u{2581}"}, "content": " "},
            {"type": "ByteFallback"},
            {"type": "Fuse"},
            {"type": "Strip", "content": " ", "start": 1, "stop": 0}]},
        "model": {"type": "BPE", "dropout": null, "unk_token": null,
            "continuing_subword_prefix": null, "end_of_word_suffix": null, "fuse_unk": true,
            "byte_fallback": true, "ignore_merges": false, "merges": merges},
    });
    (json, vocab)
}

/// The merges a SentencePiece BPE vocabulary implies, as transformers' `generate_merges` with
/// scores: every split of every piece (in code points) into two pieces of the vocabulary, ranked
/// by the whole piece's score (best first), then the longer left, then the longer right part; ties
/// in the order of the pieces and, within a piece, of the parts' ids.
fn merges_from_scores(tokens: &[String], scores: &[f64]) -> Vec<Vec<String>> {
    // A dict over the tokens: the first occurrence's place, the last occurrence's id and score.
    let mut id: HashMap<&str, usize> = HashMap::new();
    let mut score: HashMap<&str, f64> = HashMap::new();
    let mut order: Vec<&str> = Vec::new();
    for (i, t) in tokens.iter().enumerate() {
        if id.insert(t.as_str(), i).is_none() {
            order.push(t.as_str());
        }
        score.insert(t.as_str(), scores[i]);
    }
    let mut merges: Vec<(&str, &str, f64)> = Vec::new();
    for piece in order {
        let mut local: Vec<(&str, &str, f64)> = piece
            .char_indices()
            .skip(1)
            .map(|(at, _)| piece.split_at(at))
            .filter(|(l, r)| id.contains_key(l) && id.contains_key(r))
            .map(|(l, r)| (l, r, score[piece]))
            .collect();
        local.sort_by_key(|&(l, r, _)| (id[l], id[r]));
        merges.extend(local);
    }
    let len = |s: &str| s.chars().count();
    // Descending and stable, as Python's `sorted(..., reverse=True)`.
    merges.sort_by(|a, b| {
        b.2.partial_cmp(&a.2)
            .unwrap_or(std::cmp::Ordering::Equal)
            .then(len(b.0).cmp(&len(a.0)))
            .then(len(b.1).cmp(&len(a.1)))
    });
    merges
        .into_iter()
        .map(|(l, r, _)| vec![l.to_string(), r.to_string()])
        .collect()
}
