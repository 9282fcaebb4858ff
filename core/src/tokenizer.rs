//! Text tokenisation through the `tokenizers` crate: a model folder's `tokenizer.json`, or its
//! BERT `vocab.txt` (built into the same WordPiece pipeline HF's `BertTokenizerFast` uses).

use crate::error::{Error, Result};
use std::collections::HashMap;
use tokenizers::Tokenizer;

/// A loaded tokenizer plus the file it came from (for error messages).
#[derive(Clone)]
pub struct TextTokenizer {
    inner: Tokenizer,
    file: String,
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
        let inner = Tokenizer::from_bytes(bytes).map_err(|e| Error::Tokenizer {
            file: file.into(),
            reason: e.to_string(),
        })?;
        Ok(Self {
            inner,
            file: file.into(),
        })
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
            "normalizer": {"type": "BertNormalizer", "clean_text": true, "handle_chinese_chars": true,
                "strip_accents": null, "lowercase": true},
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
        Ok(Self {
            inner,
            file: file.into(),
        })
    }

    /// From a GGUF file's `tokenizer.ggml.*` metadata, as transformers builds it: a byte-level
    /// BPE (`tokenizer.ggml.model` `gpt2`: GPT-2's pre-tokenizer and decoder, the file's tokens
    /// and merges), with the tokens the file marks as control added as special tokens and the
    /// user-defined ones as added tokens. SentencePiece (`llama`) vocabularies are not read yet.
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
        if model != "gpt2" {
            return Err(bad(format!(
                "tokenizer.ggml.model `{model}`: only byte-level BPE (`gpt2`) is read"
            )));
        }
        let strings = |key: &str| -> Result<Vec<String>> {
            match g.get(key) {
                Some(Value::Array(a)) => a
                    .iter()
                    .map(|v| v.as_str().map(String::from))
                    .collect::<Option<Vec<_>>>()
                    .ok_or_else(|| bad(format!("{key} holds a value that is not a string"))),
                _ => Err(bad(format!("no {key} array"))),
            }
        };
        let tokens = strings("tokenizer.ggml.tokens")?;
        let merges = strings("tokenizer.ggml.merges")?;
        let types: Vec<u64> = match g.get("tokenizer.ggml.token_type") {
            Some(Value::Array(a)) => a.iter().map(|v| v.as_u64().unwrap_or(1)).collect(),
            _ => Vec::new(),
        };
        // GPT-2's byte alphabet: every byte as a printable character.
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
        let added: Vec<serde_json::Value> = tokens
            .iter()
            .enumerate()
            .filter_map(|(i, t)| {
                let special = match types.get(i) {
                    Some(3) if in_alphabet(t) => true,
                    Some(4) if vocab.contains_key(t) => false,
                    _ => return None,
                };
                Some(
                    serde_json::json!({"id": i, "content": t, "single_word": false,
                    "lstrip": false, "rstrip": false, "normalized": false, "special": special}),
                )
            })
            .collect();
        let byte_level = serde_json::json!({"type": "ByteLevel", "add_prefix_space": false,
            "trim_offsets": true, "use_regex": true});
        let json = serde_json::json!({
            "version": "1.0",
            "truncation": null,
            "padding": null,
            "added_tokens": added,
            "normalizer": null,
            "pre_tokenizer": byte_level,
            "post_processor": {"type": "ByteLevel", "add_prefix_space": true,
                "trim_offsets": false, "use_regex": true},
            "decoder": byte_level,
            "model": {"type": "BPE", "dropout": null, "unk_token": null,
                "continuing_subword_prefix": "", "end_of_word_suffix": "", "fuse_unk": false,
                "byte_fallback": false, "ignore_merges": false, "vocab": vocab, "merges": merges},
        });
        let inner =
            Tokenizer::from_bytes(json.to_string().as_bytes()).map_err(|e| bad(e.to_string()))?;
        Ok(Self {
            inner,
            file: file.into(),
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
