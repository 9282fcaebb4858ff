//! The files of a HF model folder besides its weights, read as transformers 4 and 5 save them:
//! the tokenizer (`tokenizer.json` | `vocab.txt`, `tokenizer_config.json`,
//! `special_tokens_map.json`), the image processor (`preprocessor_config.json` or the
//! `image_processor` of `processor_config.json`), LLaVA's processor settings, the chat template
//! (`chat_template.jinja`, `chat_template.json`, `tokenizer_config.json`) and
//! `generation_config.json`. Conformance: tests/fixtures/make_conformance.py.

use super::chat::ChatTemplate;
use crate::data::preprocess::{Preprocessor, ProcessorKind};
use crate::error::{Error, Result};
use crate::source::FileSource;
use crate::tokenizer::{TextTokenizer, TokenizerConfig};
use serde::{Deserialize, Serialize};

/// Every file of a model folder that describes the model rather than holding its weights:
/// what `merge` copies and what the browser passes to its worker.
pub const DESCRIPTION_FILES: &[&str] = &[
    "config.json",
    "generation_config.json",
    "preprocessor_config.json",
    "processor_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "vocab.txt",
    "chat_template.jinja",
    "chat_template.json",
];

async fn read_opt(src: &impl FileSource, name: &str) -> Result<Option<(Vec<u8>, String)>> {
    if src.exists(name).await {
        Ok(Some((src.read(name).await?, src.describe(name))))
    } else {
        Ok(None)
    }
}

async fn read_json(
    src: &impl FileSource,
    name: &str,
) -> Result<Option<(serde_json::Value, String)>> {
    match read_opt(src, name).await? {
        Some((bytes, file)) => Ok(Some((
            serde_json::from_slice(&bytes).map_err(|e| Error::json(&file, e))?,
            file,
        ))),
        None => Ok(None),
    }
}

/// The folder's tokenizer and its config, or `None` when it has neither `tokenizer.json` nor
/// `vocab.txt`.
pub async fn read_tokenizer(
    src: &impl FileSource,
) -> Result<Option<(TextTokenizer, TokenizerConfig)>> {
    let config = read_opt(src, "tokenizer_config.json").await?;
    let special = read_opt(src, "special_tokens_map.json").await?;
    let cfg = TokenizerConfig::from_json(
        config.as_ref().map(|(b, f)| (b.as_slice(), f.as_str())),
        special.as_ref().map(|(b, f)| (b.as_slice(), f.as_str())),
    )?;
    let tok = if let Some((bytes, file)) = read_opt(src, "tokenizer.json").await? {
        TextTokenizer::from_json(&bytes, &file)?.configure(&cfg)?
    } else if let Some((bytes, file)) = read_opt(src, "vocab.txt").await? {
        TextTokenizer::from_vocab_txt_with(&bytes, &file, &cfg)?
    } else {
        return Ok(None);
    };
    Ok(Some((tok, cfg)))
}

/// The image processor: `preprocessor_config.json` (transformers 4), else the
/// `image_processor` object of `processor_config.json` (transformers 5), else `kind`'s
/// defaults at `side` pixels.
pub async fn read_preprocessor(
    src: &impl FileSource,
    kind: ProcessorKind,
    side: u32,
) -> Result<Preprocessor> {
    if let Some((bytes, file)) = read_opt(src, "preprocessor_config.json").await? {
        return Preprocessor::from_json(&bytes, &file, kind, side);
    }
    if let Some((v, file)) = read_json(src, "processor_config.json").await? {
        if let Some(ip) = v.get("image_processor") {
            return Preprocessor::from_value(ip, &format!("{file} (image_processor)"), kind, side);
        }
    }
    Ok(kind.defaults(side))
}

/// `LlavaProcessor`'s settings (`processor_config.json`, either layout): how many image tokens
/// `<image>` becomes.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct LlavaProcessorSettings {
    /// The vision tower's patch size; `None` when the folder has no processor settings.
    pub patch_size: Option<usize>,
    /// Extra tokens per image (the class token: 1 in llava-hf's folders; transformers' default 0).
    pub num_additional_image_tokens: usize,
    /// `default` drops one token (the class token), `full` keeps all.
    pub vision_feature_select_strategy: Option<String>,
    /// The placeholder text (`<image>`).
    pub image_token: String,
    /// Where these came from.
    pub file: String,
}

/// Reads [`LlavaProcessorSettings`] from `processor_config.json` (or, for folders that keep
/// them there, `preprocessor_config.json`).
pub async fn read_llava_processor(src: &impl FileSource) -> Result<LlavaProcessorSettings> {
    let mut s = LlavaProcessorSettings {
        image_token: "<image>".into(),
        ..LlavaProcessorSettings::default()
    };
    for name in ["processor_config.json", "preprocessor_config.json"] {
        let Some((v, file)) = read_json(src, name).await? else {
            continue;
        };
        let Some(p) = v.get("patch_size").filter(|p| !p.is_null()) else {
            continue;
        };
        s.patch_size =
            Some(p.as_u64().filter(|&p| p > 0).ok_or_else(|| {
                Error::config(&file, "patch_size", "a positive whole number expected")
            })? as usize);
        s.num_additional_image_tokens = v
            .get("num_additional_image_tokens")
            .and_then(|n| n.as_u64())
            .unwrap_or(0) as usize;
        s.vision_feature_select_strategy = v
            .get("vision_feature_select_strategy")
            .and_then(|n| n.as_str())
            .map(String::from);
        if let Some(t) = v.get("image_token").and_then(|t| t.as_str()) {
            s.image_token = t.to_string();
        }
        s.file = file;
        break;
    }
    Ok(s)
}

impl LlavaProcessorSettings {
    /// `LlavaProcessor.replace_image_token`'s count for pixel values of `h` x `w`, or `None`
    /// without processor settings.
    pub fn image_tokens(&self, h: usize, w: usize) -> Option<usize> {
        let p = self.patch_size?;
        let n = (h / p) * (w / p) + self.num_additional_image_tokens;
        Some(
            if self.vision_feature_select_strategy.as_deref() == Some("default") {
                n.saturating_sub(1)
            } else {
                n
            },
        )
    }
}

/// The chat template transformers' processor would use: `chat_template.jinja`, else
/// `chat_template.json`, else `tokenizer_config.json`'s `chat_template`.
pub async fn read_chat_template(
    src: &impl FileSource,
    tok: Option<&TokenizerConfig>,
) -> Result<Option<ChatTemplate>> {
    if let Some((bytes, file)) = read_opt(src, "chat_template.jinja").await? {
        let text = String::from_utf8(bytes)
            .map_err(|_| Error::config(&file, "(contents)", "not UTF-8 text"))?;
        return Ok(Some(ChatTemplate::new(&text, &file)));
    }
    if let Some((v, file)) = read_json(src, "chat_template.json").await? {
        let t = v
            .get("chat_template")
            .and_then(|t| t.as_str())
            .ok_or_else(|| Error::config(&file, "chat_template", "missing, or not a string"))?;
        return Ok(Some(ChatTemplate::new(t, &file)));
    }
    Ok(tok
        .and_then(|c| c.chat_template.as_deref())
        .map(|t| ChatTemplate::new(t, &src.describe("tokenizer_config.json"))))
}

/// The decoding defaults of `generation_config.json` (HF `GenerationConfig` names).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct GenerationDefaults {
    /// `max_new_tokens`.
    pub max_new_tokens: Option<usize>,
    /// `max_length` (prompt included), used when `max_new_tokens` is absent.
    pub max_length: Option<usize>,
    /// `num_beams`.
    pub num_beams: Option<usize>,
    /// `eos_token_id`: one id or a list.
    pub eos_token_id: Vec<i64>,
    /// `pad_token_id`.
    pub pad_token_id: Option<i64>,
    /// `bos_token_id`.
    pub bos_token_id: Option<i64>,
    /// `decoder_start_token_id`.
    pub decoder_start_token_id: Option<i64>,
}

/// Reads `generation_config.json`, if the folder has one.
pub async fn read_generation_config(src: &impl FileSource) -> Result<Option<GenerationDefaults>> {
    let Some((v, file)) = read_json(src, "generation_config.json").await? else {
        return Ok(None);
    };
    let count = |k: &str| -> Result<Option<usize>> {
        match v.get(k).filter(|x| !x.is_null()) {
            None => Ok(None),
            Some(x) => x
                .as_u64()
                .map(|n| Some(n as usize))
                .ok_or_else(|| Error::config(&file, k, "a whole number expected")),
        }
    };
    let id = |k: &str| -> Result<Option<i64>> {
        match v.get(k).filter(|x| !x.is_null()) {
            None => Ok(None),
            Some(x) => x
                .as_i64()
                .map(Some)
                .ok_or_else(|| Error::config(&file, k, "a token id expected")),
        }
    };
    let eos_token_id = match v.get("eos_token_id") {
        None | Some(serde_json::Value::Null) => Vec::new(),
        Some(serde_json::Value::Array(a)) => a
            .iter()
            .map(|x| x.as_i64())
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| Error::config(&file, "eos_token_id", "token ids expected"))?,
        Some(x) => vec![x.as_i64().ok_or_else(|| {
            Error::config(&file, "eos_token_id", "a token id or a list expected")
        })?],
    };
    let g = GenerationDefaults {
        max_new_tokens: count("max_new_tokens")?,
        max_length: count("max_length")?,
        num_beams: count("num_beams")?,
        eos_token_id,
        pad_token_id: id("pad_token_id")?,
        bos_token_id: id("bos_token_id")?,
        decoder_start_token_id: id("decoder_start_token_id")?,
    };
    if g.num_beams == Some(0) {
        return Err(Error::config(&file, "num_beams", "must be at least 1"));
    }
    Ok(Some(g))
}
