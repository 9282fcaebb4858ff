//! Prefix tuning (Li & Liang 2021; peft `PrefixTuningConfig` with `prefix_projection = true`) and
//! P-tuning v2 (Liu et al. 2022; the same without the projection): learned keys and values
//! prepended to every self-attention of the chosen BERT text components. MILE's settings: 10
//! virtual tokens.

use super::config::{Method, PeftConfig};
use super::io::{Adapter, PeftFormat, WEIGHTS_FILE, adapter_folder, only, read_tensors};
use crate::error::{Error, Result};
use crate::models::Model;
use crate::models::bert::model::{PrefixEncoder, PrefixMlp};
use crate::models::export::safetensors_bytes;
use burn::module::Param;
use burn::nn::{Initializer, LinearConfig};
use burn::tensor::Tensor;
use serde::{Deserialize, Serialize};
use serde_json::json;

/// Prefix settings (peft names).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PrefixSettings {
    /// Virtual tokens per self-attention.
    pub num_virtual_tokens: usize,
    /// Width of the projection MLP (prefix tuning only); the model's hidden size when unset.
    pub encoder_hidden_size: Option<usize>,
}

impl Default for PrefixSettings {
    fn default() -> Self {
        Self {
            num_virtual_tokens: 10,
            encoder_hidden_size: None,
        }
    }
}

/// Adds a prefix to every text component whose method is `prefix` or `ptuning-v2`.
pub(crate) fn attach(mut model: Model, cfg: &PeftConfig) -> Result<Model> {
    let s = &cfg.prefix;
    if s.num_virtual_tokens == 0 {
        return Err(Error::Input(
            "prefix.num_virtual_tokens must be at least 1".into(),
        ));
    }
    let places: Vec<&str> = model.text_models_mut().iter().map(|(c, _)| *c).collect();
    super::select::check_places(
        &model,
        cfg,
        |m| matches!(m, Method::Prefix | Method::PtuningV2),
        &places,
    )?;
    for (comp, text) in model.text_models_mut() {
        let method = cfg.method_for(comp);
        if !matches!(method, Method::Prefix | Method::PtuningV2) {
            continue;
        }
        let w = text.embeddings.word_embeddings.weight.val();
        let (device, hidden) = (w.device(), w.dims()[1]);
        let layers = text.encoder.layer.len();
        let heads = text
            .encoder
            .layer
            .first()
            .map_or(1, |l| l.attention.self_attn.num_heads);
        let n = s.num_virtual_tokens;
        let normal = Initializer::Normal {
            mean: 0.0,
            std: 1.0,
        };
        text.prefix = Some(if method == Method::Prefix {
            let h = s.encoder_hidden_size.unwrap_or(hidden);
            PrefixEncoder {
                embedding: normal.init([n, hidden], &device),
                transform: Some(PrefixMlp {
                    dense_in: LinearConfig::new(hidden, h).init(&device),
                    dense_out: LinearConfig::new(h, layers * 2 * hidden).init(&device),
                }),
                num_layers: layers,
                num_heads: heads,
            }
        } else {
            PrefixEncoder {
                // peft: an `nn.Embedding`, N(0, 1).
                embedding: normal.init([n, layers * 2 * hidden], &device),
                transform: None,
                num_layers: layers,
                num_heads: heads,
            }
        });
    }
    Ok(model)
}

/// peft's `PREFIX_TUNING` format on the decoder: P-tuning v2 there is exactly that file.
/// Prefix tuning with the MLP stays in normtune's folder, which keeps the MLP (peft would keep
/// only its output).
pub const FORMAT: PeftFormat = PeftFormat {
    peft_type: "PREFIX_TUNING",
    holds: |model, cfg| {
        only(model, cfg, &[Method::PtuningV2])
            && cfg.method_for("decoder") == Method::PtuningV2
            && model
                .components()
                .iter()
                .all(|c| c.name == "decoder" || cfg.method_for(c.name) == Method::Frozen)
    },
    save,
    load,
};

/// peft's prefix tuning on the decoder: one tensor `prompt_embeddings` `[virtual_tokens,
/// layers · 2 · hidden]` (with `prefix_projection`, peft saves the MLP's output, so the folder is
/// the same either way); loaded as P-tuning v2 embeddings, which compute exactly that.
fn load(model: Model, a: &Adapter) -> Result<Model> {
    let (config, cfg_file) = (&a.config, a.config_file.as_str());
    let int = |k: &str| -> Result<usize> {
        config
            .get(k)
            .and_then(|v| v.as_u64())
            .map(|v| v as usize)
            .ok_or_else(|| Error::config(cfg_file, k, "missing or not a whole number"))
    };
    if let Some(t) = config.get("task_type").and_then(|v| v.as_str())
        && t != "CAUSAL_LM"
    {
        return Err(Error::config(
            cfg_file,
            "task_type",
            format!(
                "`{t}`: normtune reads peft prefix tuning of the BLIP text decoder (CAUSAL_LM)"
            ),
        ));
    }
    let n = int("num_virtual_tokens")?;
    let layers = int("num_layers")?;
    let mut cfg = PeftConfig::parse("frozen")?;
    cfg.placement.insert("decoder".into(), Method::PtuningV2);
    cfg.prefix.num_virtual_tokens = n;
    let model =
        attach(model, &cfg).map_err(|e| Error::config(cfg_file, "peft_type", e.to_string()))?;
    let mut model = model;
    let Some(text) = model.decoder_text_mut() else {
        return Err(Error::config(
            cfg_file,
            "peft_type",
            "this model has no text decoder",
        ));
    };
    let have = text.encoder.layer.len();
    if have != layers {
        return Err(Error::config(
            cfg_file,
            "num_layers",
            format!("{layers}, but this model's decoder has {have} layers"),
        ));
    }
    let file = a.weights_file.clone();
    let (tensors, _) = read_tensors(
        &a.weights,
        &file,
        |n| (n == "prompt_embeddings").then(|| n.to_string()),
        "peft prefix tensor (`prompt_embeddings`)",
    )?;
    let (shape, vals) = tensors
        .get("prompt_embeddings")
        .ok_or_else(|| Error::Weights {
            file: file.clone(),
            reason: "no `prompt_embeddings`".into(),
        })?;
    let prefix = text.prefix.as_mut().expect("attached above");
    let want = prefix.embedding.lazy_shape().to_vec();
    if *shape != want {
        return Err(Error::Weights {
            file,
            reason: format!(
                "`prompt_embeddings` is {shape:?}, this model's decoder needs {want:?}"
            ),
        });
    }
    let emb = prefix.embedding.val();
    let t = Tensor::<1>::from_data(
        burn::tensor::TensorData::new(vals.clone(), [vals.len()]),
        &emb.device(),
    )
    .reshape([want[0], want[1]])
    .set_require_grad(emb.is_require_grad());
    prefix.embedding = Param::initialized(prefix.embedding.id, t);
    Ok(model)
}

fn save(model: &Model, cfg: &PeftConfig, base_model: &str) -> Result<Vec<(String, Vec<u8>)>> {
    let mut m = model.clone();
    let text = m
        .decoder_text_mut()
        .ok_or_else(|| Error::Input("no text decoder".into()))?;
    let prefix = text
        .prefix
        .as_ref()
        .ok_or_else(|| Error::Input("the decoder has no prefix to save".into()))?;
    let layers = text.encoder.layer.len();
    let heads = prefix.num_heads;
    let past = prefix.past();
    let [n, width] = past.dims();
    let hidden = width / (2 * layers);
    let vals: Vec<f32> = past.into_data().iter::<f32>().collect();
    let weights = safetensors_bytes(
        &[("prompt_embeddings".to_string(), vec![n, width], vals)],
        WEIGHTS_FILE,
    )?;
    let projection = false;
    let config = json!({
        "peft_type": "PREFIX_TUNING",
        "task_type": "CAUSAL_LM",
        "auto_mapping": null,
        "base_model_name_or_path": base_model,
        "revision": null,
        "inference_mode": true,
        "num_virtual_tokens": n,
        "token_dim": hidden,
        "num_transformer_submodules": 1,
        "num_attention_heads": heads,
        "num_layers": layers,
        "modules_to_save": null,
        "encoder_hidden_size": cfg.prefix.encoder_hidden_size.unwrap_or(hidden),
        "prefix_projection": projection,
        "init_weights": null,
        "peft_version": "0.21.2",
    });
    adapter_folder(&config, weights)
}
