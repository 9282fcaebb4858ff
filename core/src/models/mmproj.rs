//! llama.cpp's `mmproj` GGUF (`general.architecture` = `clip`): the CLIP vision tower and the
//! LLaVA projector that llama.cpp keeps apart from the language model, as LLaVA and LLaVA-Med
//! files on the Hub ship them beside a (usually K-quant) decoder GGUF. [`read`] turns one into a
//! HF `CLIPVisionConfig`, a `CLIPImageProcessor` config and tensors under transformers' names;
//! [`GgufPair`] serves it with the decoder GGUF as an ordinary (sharded) HF
//! `LlavaForConditionalGeneration` folder, which every verb then reads as usual.
//!
//! Layout read: the legacy LLaVA converter's, which LLaVA and LLaVA-Med mmproj files come from
//! (`tools/mtmd/legacy-models/convert_image_encoder_to_gguf.py`: `mlp.fc1` stored as `ffn_down`,
//! the tower cut after the feature layer, no `post_ln`, projector `mm.0`/`mm.2`). Which of
//! `ffn_up`/`ffn_down` is `fc1` is told by the shapes, as llama.cpp's `clip.cpp` does, so a file
//! naming them the other way also reads; other projector namings (`convert_hf_to_gguf.py`'s
//! `mm.1`/`mm.2` for Pixtral-style models) are not read. Only the 2-layer MLP projector
//! (`clip.projector_type` = `mlp`) is read; others are refused by name. Parity with transformers:
//! `tests/fixtures/make_llava_gguf_fixtures.py`, `tests/tests/llava_gguf.rs`.

use crate::error::{Error, Result};
use crate::gguf::{Gguf, Value};

/// CLIP's normalisation (what the legacy converter writes when the processor has none).
const CLIP_MEAN: [f64; 3] = [0.48145466, 0.4578275, 0.40821073];
const CLIP_STD: [f64; 3] = [0.26862954, 0.26130258, 0.27577711];

/// What an `mmproj` file holds, in transformers' terms.
#[derive(Debug, Clone)]
pub struct Mmproj {
    /// HF `CLIPVisionConfig` JSON.
    pub vision_config: serde_json::Value,
    /// Which hidden state of the tower feeds the projector (HF `vision_feature_layer`).
    pub feature_layer: i64,
    /// HF `CLIPImageProcessor` config JSON (`preprocessor_config.json`).
    pub preprocessor: serde_json::Value,
    /// The tower's and projector's tensors: HF name, shape, values.
    pub tensors: Vec<(String, Vec<usize>, Vec<f32>)>,
    /// The projector's output width (the decoder's hidden size it was trained for).
    pub projects_to: usize,
}

/// Reads an `mmproj` GGUF.
pub fn read(g: &Gguf, file: &str) -> Result<Mmproj> {
    let s = |k: &str| g.get(k).and_then(Value::as_str);
    let arch = s("general.architecture").unwrap_or("");
    if arch != "clip" {
        return Err(Error::config(
            file,
            "general.architecture",
            format!("`{arch}`: not an mmproj file (llama.cpp's are `clip`)"),
        ));
    }
    if g.get("clip.has_vision_encoder") == Some(&Value::Bool(false)) {
        return Err(Error::config(
            file,
            "clip.has_vision_encoder",
            "false: the file holds no vision tower",
        ));
    }
    let projector = s("clip.projector_type")
        .or(s("clip.vision.projector_type"))
        .unwrap_or("mlp");
    if projector != "mlp" {
        return Err(Error::config(
            file,
            "clip.projector_type",
            format!("`{projector}`: only LLaVA's 2-layer MLP projector (`mlp`) is read"),
        ));
    }
    if g.get("clip.use_silu") == Some(&Value::Bool(true)) {
        return Err(Error::config(
            file,
            "clip.use_silu",
            "true: a SiLU tower is not a CLIP one",
        ));
    }
    let n = |k: &str| g.get_u64(k).map(|v| v as usize);
    let hidden = n("clip.vision.embedding_length")?;
    let ff = n("clip.vision.feed_forward_length")?;
    let heads = n("clip.vision.attention.head_count")?;
    let layers = n("clip.vision.block_count")?;
    let image_size = n("clip.vision.image_size")?;
    let patch = n("clip.vision.patch_size")?;
    let eps = g.get_f64("clip.vision.attention.layer_norm_epsilon")?;
    if hidden == 0 || heads == 0 || hidden % heads != 0 || patch == 0 || image_size < patch {
        return Err(Error::config(
            file,
            "clip.vision.embedding_length",
            format!(
                "{hidden} wide with {heads} heads, {image_size} px images in {patch} px patches: \
                 not a CLIP tower"
            ),
        ));
    }
    let feature_layer = match g.get("clip.vision.feature_layer") {
        None => -1,
        Some(Value::Array(a)) if a.len() == 1 => match a[0].as_u64() {
            Some(f) if f as usize <= layers => f as i64,
            _ => {
                return Err(Error::config(
                    file,
                    "clip.vision.feature_layer",
                    format!("{:?} is not a hidden state of a {layers}-layer tower", a[0]),
                ));
            }
        },
        Some(v) => {
            return Err(Error::config(
                file,
                "clip.vision.feature_layer",
                format!("{v:?}: one feature layer is read (LLaVA-1.5 / LLaVA-Med)"),
            ));
        }
    };
    let triple = |k: &str, default: [f64; 3]| -> Result<Vec<f64>> {
        match g.get(k) {
            None => Ok(default.to_vec()),
            Some(Value::Array(a)) if a.len() == 3 => a
                .iter()
                .map(Value::as_f64)
                .collect::<Option<Vec<_>>>()
                .ok_or_else(|| Error::config(file, k, "three numbers expected")),
            Some(_) => Err(Error::config(file, k, "three numbers expected")),
        }
    };
    let mean = triple("clip.vision.image_mean", CLIP_MEAN)?;
    let std = triple("clip.vision.image_std", CLIP_STD)?;
    let gelu = g.get("clip.use_gelu") == Some(&Value::Bool(true));
    // Legacy files name `fc1` `ffn_down`; which is meant is read from the shapes where they
    // differ (as clip.cpp does), else from the legacy converter's own key.
    let legacy = g.get("clip.has_llava_projector").is_some();

    // Everything the tower (up to its last layer run) and the projector need, by llama.cpp's
    // names: a file without one is refused, not topped up with random values.
    let mut needed: Vec<String> = [
        "v.class_embd",
        "v.patch_embd.weight",
        "v.position_embd.weight",
    ]
    .map(String::from)
    .into();
    for part in ["v.pre_ln", "mm.0", "mm.2"] {
        needed.extend(["weight", "bias"].map(|k| format!("{part}.{k}")));
    }
    for l in 0..layers {
        for m in [
            "attn_q", "attn_k", "attn_v", "attn_out", "ln1", "ln2", "ffn_up", "ffn_down",
        ] {
            needed.extend(["weight", "bias"].map(|k| format!("v.blk.{l}.{m}.{k}")));
        }
    }
    if let Some(missing) = needed.iter().find(|n| g.tensor(n).is_none()) {
        return Err(Error::Weights {
            file: file.to_string(),
            reason: format!(
                "no tensor `{missing}`: a {layers}-layer CLIP tower (clip.vision.block_count) and \
                 LLaVA's projector need it"
            ),
        });
    }
    let mut tensors = Vec::new();
    let mut projects_to = None;
    let p = "model.vision_tower.";
    for t in &g.tensors {
        let bad = |why: String| Error::Weights {
            file: file.to_string(),
            reason: format!("tensor `{}` {why}", t.name),
        };
        let name = match t.name.as_str() {
            "v.class_embd" => format!("{p}embeddings.class_embedding"),
            "v.patch_embd.weight" => format!("{p}embeddings.patch_embedding.weight"),
            "v.position_embd.weight" => format!("{p}embeddings.position_embedding.weight"),
            "v.pre_ln.weight" | "v.pre_ln.bias" => {
                format!("{p}pre_layrnorm.{}", &t.name[9..])
            }
            "v.post_ln.weight" | "v.post_ln.bias" => {
                format!("{p}post_layernorm.{}", &t.name[10..])
            }
            "mm.0.weight" | "mm.0.bias" | "mm.2.weight" | "mm.2.bias" => {
                let linear = if t.name.starts_with("mm.0") { 1 } else { 2 };
                if t.name == "mm.2.weight" {
                    projects_to = t.shape.first().copied();
                }
                format!(
                    "model.multi_modal_projector.linear_{linear}.{}",
                    &t.name[5..]
                )
            }
            other => {
                let Some((layer, part)) = other
                    .strip_prefix("v.blk.")
                    .and_then(|r| r.split_once('.'))
                    .and_then(|(l, part)| Some((l.parse::<usize>().ok()?, part)))
                else {
                    return Err(bad("is not part of a CLIP tower or LLaVA projector".into()));
                };
                if layer >= layers {
                    continue; // past clip.vision.block_count: llama.cpp does not run it
                }
                let (module, kind) = part
                    .rsplit_once('.')
                    .ok_or_else(|| bad("is not part of a CLIP layer".into()))?;
                let module = match module {
                    "attn_q" => "self_attn.q_proj",
                    "attn_k" => "self_attn.k_proj",
                    "attn_v" => "self_attn.v_proj",
                    "attn_out" => "self_attn.out_proj",
                    "ln1" => "layer_norm1",
                    "ln2" => "layer_norm2",
                    "ffn_up" | "ffn_down" => {
                        let up = module == "ffn_up";
                        let fc1 = match (kind, t.shape.as_slice()) {
                            _ if ff == hidden => up != legacy,
                            ("weight", [rows, _]) => *rows == ff,
                            ("bias", [n]) => *n == ff,
                            _ => up != legacy,
                        };
                        if fc1 { "mlp.fc1" } else { "mlp.fc2" }
                    }
                    _ => return Err(bad("is not part of a CLIP layer".into())),
                };
                format!("{p}encoder.layers.{layer}.{module}.{kind}")
            }
        };
        let mut shape = t.shape.clone();
        // The legacy converter squeezes: a class embedding of [1, 1, h] is stored as [h]; a
        // position table as [positions, h] whatever HF's leading 1s.
        if name.ends_with("class_embedding") {
            shape = vec![t.numel()];
        }
        tensors.push((name, shape, g.values(t)?));
    }
    // The legacy converter drops CLIP's post_layernorm (LLaVA reads hidden states before it);
    // HF's model has one: identity, as transformers initialises it, unused by the features.
    if g.tensor("v.post_ln.weight").is_none() {
        tensors.push((
            format!("{p}post_layernorm.weight"),
            vec![hidden],
            vec![1.0; hidden],
        ));
        tensors.push((
            format!("{p}post_layernorm.bias"),
            vec![hidden],
            vec![0.0; hidden],
        ));
    }
    let projects_to = projects_to.ok_or_else(|| Error::Weights {
        file: file.to_string(),
        reason: "no projector tensor `mm.2.weight` (an mmproj file for LLaVA has mm.0 and mm.2)"
            .into(),
    })?;
    let vision_config = serde_json::json!({
        "model_type": "clip_vision_model",
        "hidden_size": hidden, "intermediate_size": ff, "num_hidden_layers": layers,
        "num_attention_heads": heads, "num_channels": 3, "image_size": image_size,
        "patch_size": patch, "hidden_act": if gelu { "gelu" } else { "quick_gelu" },
        "layer_norm_eps": eps, "attention_dropout": 0.0,
        "projection_dim": g.get("clip.vision.projection_dim").and_then(Value::as_u64).unwrap_or(hidden as u64),
    });
    let preprocessor = serde_json::json!({
        "image_processor_type": "CLIPImageProcessor",
        "do_resize": true, "size": {"shortest_edge": image_size}, "resample": 3,
        "do_center_crop": true, "crop_size": {"height": image_size, "width": image_size},
        "do_rescale": true, "rescale_factor": 1.0 / 255.0,
        "do_normalize": true, "image_mean": mean, "image_std": std,
        "do_convert_rgb": true
    });
    Ok(Mmproj {
        vision_config,
        feature_layer,
        preprocessor,
        tensors,
        projects_to,
    })
}

/// A llama.cpp LLaVA pair served as a sharded HF `LlavaForConditionalGeneration` folder: the
/// small files (`config.json`, tokenizer, processor, `model.safetensors.index.json`) made up
/// front, each weight shard dequantised only when read: one per decoder layer, one for the
/// embeddings, final norm and head, one for the tower and projector. Loading (which reads one
/// shard at a time) then peaks near the f32 model's own size instead of several copies of it.
/// The image placeholder is the vocabulary's `<image>` where it has one, else its unknown token
/// (a SentencePiece vocabulary with byte fallback never produces it; image features replace its
/// embedding): prompts are tokenised around the image as llama.cpp does.
pub struct GgufPair {
    decoder: Gguf,
    decoder_file: String,
    text: crate::models::llama::LlamaConfig,
    small: std::collections::BTreeMap<String, Vec<u8>>,
    /// Shard file name → the decoder tensors it holds (indices into `decoder.tensors`); the
    /// vision shard holds `vision`.
    shards: std::collections::BTreeMap<String, Vec<usize>>,
    vision_shard: String,
    vision: Vec<(String, Vec<usize>, Vec<f32>)>,
}

impl std::fmt::Debug for GgufPair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "GgufPair({}, {} shards)",
            self.decoder_file,
            self.shards.len() + 1
        )
    }
}

impl GgufPair {
    /// Checks the pair and lays out the folder (no weight is dequantised yet but the tower's).
    pub fn new(
        decoder: Gguf,
        decoder_file: &str,
        mmproj: &Gguf,
        mmproj_file: &str,
    ) -> Result<Self> {
        let m = read(mmproj, mmproj_file)?;
        let hidden = decoder.get_u64("llama.embedding_length").map_err(|_| {
            Error::config(
                decoder_file,
                "llama.embedding_length",
                "missing: the decoder of a GGUF pair must be a `llama` model",
            )
        })? as usize;
        if hidden != m.projects_to {
            return Err(Error::Input(format!(
                "{mmproj_file} projects images to {} features but {decoder_file} is {hidden} wide: \
                 not a decoder and mmproj of one model",
                m.projects_to
            )));
        }
        let part = crate::demo::llava::VisionPart {
            config: m.vision_config,
            feature_layer: m.feature_layer,
            preprocessor: m.preprocessor,
            image_token: None,
        };
        let (files, cfg) = crate::demo::llava::folder_files(&decoder, decoder_file, &part)?;
        // Shards: the tensors of `blk.N.` together, the rest (embeddings, norm, head) together.
        let mut groups: std::collections::BTreeMap<String, Vec<usize>> = Default::default();
        for (i, t) in decoder.tensors.iter().enumerate() {
            let group = match t.name.strip_prefix("blk.").and_then(|r| r.split_once('.')) {
                Some((n, _)) if n.parse::<usize>().is_ok() => format!("layer{n:0>5}"),
                _ => "other".to_string(),
            };
            groups.entry(group).or_default().push(i);
        }
        let total = groups.len() + 1;
        let name = |k: usize| format!("model-{:05}-of-{total:05}.safetensors", k + 1);
        let shards: std::collections::BTreeMap<String, Vec<usize>> = groups
            .into_values()
            .enumerate()
            .map(|(k, v)| (name(k), v))
            .collect();
        let vision_shard = name(total - 1);
        let mut weight_map = serde_json::Map::new();
        for (shard, idx) in &shards {
            for &i in idx {
                let t = &decoder.tensors[i];
                let hf = llava_name(&t.name).ok_or_else(|| Error::Weights {
                    file: decoder_file.to_string(),
                    reason: format!("tensor `{}` is not part of a llama model", t.name),
                })?;
                weight_map.insert(hf, shard.clone().into());
            }
        }
        for (n, _, _) in &m.tensors {
            weight_map.insert(n.clone(), vision_shard.clone().into());
        }
        let index = serde_json::json!({"metadata": {"made_by": "normtune (GGUF pair)"},
            "weight_map": weight_map});
        let mut small: std::collections::BTreeMap<String, Vec<u8>> = files.into_iter().collect();
        small.insert(
            "model.safetensors.index.json".into(),
            serde_json::to_vec_pretty(&index).expect("json"),
        );
        Ok(Self {
            decoder,
            decoder_file: decoder_file.to_string(),
            text: cfg.text_config,
            small,
            shards,
            vision_shard,
            vision: m.tensors,
        })
    }

    /// Shard `name`'s safetensors bytes, made now.
    fn shard(&self, name: &str) -> Result<Vec<u8>> {
        if name == self.vision_shard {
            return crate::models::export::safetensors_bytes(&self.vision, name);
        }
        let Some(idx) = self.shards.get(name) else {
            return Err(Error::Missing {
                file: name.to_string(),
                reason: "no such file".into(),
            });
        };
        let mut tensors = Vec::with_capacity(idx.len());
        for &i in idx {
            let t = &self.decoder.tensors[i];
            let (_, shape, v) =
                crate::models::llama::hf_tensor(&self.decoder, t, &self.text, &self.decoder_file)?;
            let hf = llava_name(&t.name).expect("checked in new");
            tensors.push((hf, shape, v));
        }
        crate::models::export::safetensors_bytes(&tensors, name)
    }
}

/// A llama.cpp decoder tensor's name inside a HF LLaVA folder (`model.language_model.…`,
/// `lm_head.weight`).
fn llava_name(gguf: &str) -> Option<String> {
    let hf = crate::models::llama::gguf::hf_name(gguf)?;
    Some(match hf.strip_prefix("model.") {
        Some(rest) => format!("model.language_model.{rest}"),
        None => hf,
    })
}

impl crate::source::FileSource for GgufPair {
    async fn read(&self, name: &str) -> Result<Vec<u8>> {
        match self.small.get(name) {
            Some(b) => Ok(b.clone()),
            None => self.shard(name),
        }
    }
    async fn exists(&self, name: &str) -> bool {
        self.small.contains_key(name) || name == self.vision_shard || self.shards.contains_key(name)
    }
    fn describe(&self, name: &str) -> String {
        format!("{} + mmproj: {name}", self.decoder_file)
    }
}
