//! IA3 (Liu et al. 2022; HF peft `tuners/ia3`): learned vectors that rescale the key and value
//! projections' outputs and the input of every `output.dense` (peft's BERT defaults
//! `target_modules = ["key", "value", "output.dense"]`, `feedforward_modules = ["output.dense"]`,
//! as MILE used). Available for the BERT text components.

use super::config::{Method, PeftConfig};
use super::io::{
    Adapter, PREFIX, PeftFormat, WEIGHTS_FILE, adapter_folder, only, read_tensors, set_tensors,
};
use crate::error::{Error, Result};
use crate::models::Model;
use crate::models::bert::model::{BlipTextAttention, BlipTextOutput};
use crate::models::export::{hf_name, safetensors_bytes};
use crate::models::walk::params;
use burn::module::Param;
use burn::nn::Linear;
use burn::tensor::Tensor;
use serde_json::json;

fn ones_like_out(l: &Linear) -> Option<Param<Tensor<1>>> {
    let w = l.weight.val();
    Some(Param::from_tensor(Tensor::ones([w.dims()[1]], &w.device())))
}

fn ones_like_in(l: &Linear) -> Option<Param<Tensor<1>>> {
    let w = l.weight.val();
    Some(Param::from_tensor(Tensor::ones([w.dims()[0]], &w.device())))
}

fn attach_attention(a: &mut BlipTextAttention) {
    a.self_attn.key_ia3 = ones_like_out(&a.self_attn.key);
    a.self_attn.value_ia3 = ones_like_out(&a.self_attn.value);
    a.output.dense_ia3 = ones_like_in(&a.output.dense);
}

/// Adds IA3 vectors (all ones: the model's outputs are unchanged) to every component whose
/// method is `ia3`.
pub(crate) fn attach(mut model: Model, cfg: &PeftConfig) -> Result<Model> {
    let places: Vec<&str> = model.text_models_mut().iter().map(|(c, _)| *c).collect();
    super::select::check_places(&model, cfg, |m| m == Method::Ia3, &places)?;
    for (comp, text) in model.text_models_mut() {
        if cfg.method_for(comp) != Method::Ia3 {
            continue;
        }
        for layer in &mut text.encoder.layer {
            attach_attention(&mut layer.attention);
            if let Some(ca) = &mut layer.crossattention {
                attach_attention(ca);
            }
            layer.output.dense_ia3 = ones_like_in(&layer.output.dense);
        }
    }
    Ok(model)
}

fn fold_out(l: &mut Linear, v: Option<Param<Tensor<1>>>) {
    if let Some(v) = v {
        let v = v.val();
        l.weight = l.weight.clone().map(|w| w * v.clone().unsqueeze::<2>());
        l.bias = l.bias.take().map(|b| b.map(|b| b * v));
    }
}

fn fold_in(o: &mut BlipTextOutput) {
    if let Some(v) = o.dense_ia3.take() {
        let v = v.val();
        o.dense.weight = o.dense.weight.clone().map(|w| w * v.unsqueeze_dim::<2>(1));
    }
}

fn fold_attention(a: &mut BlipTextAttention) {
    let (k, v) = (a.self_attn.key_ia3.take(), a.self_attn.value_ia3.take());
    fold_out(&mut a.self_attn.key, k);
    fold_out(&mut a.self_attn.value, v);
    fold_in(&mut a.output);
}

/// Folds IA3 vectors into the Linear weights they scale (peft's `merge`): output scaling
/// multiplies the weight's output columns and the bias, input scaling the weight's input rows.
pub fn fold(mut model: Model) -> Model {
    for (_, text) in model.text_models_mut() {
        for layer in &mut text.encoder.layer {
            fold_attention(&mut layer.attention);
            if let Some(ca) = &mut layer.crossattention {
                fold_attention(ca);
            }
            fold_in(&mut layer.output);
        }
    }
    model
}

/// peft's `IA3` format: `base_model.model.<module>.ia3_l`, key/value scaled at their outputs
/// `(out, 1)`, the feed-forward output layer at its input `(1, in)`.
pub const FORMAT: PeftFormat = PeftFormat {
    peft_type: "IA3",
    holds: |model, cfg| only(model, cfg, &[Method::Ia3]),
    save,
    load,
};

/// IA3 vector path `<module>.{key,value,dense}_ia3` → peft `<module>.{key,value,dense}.ia3_l`.
fn ia3_key(segs: &[String]) -> Option<(String, bool)> {
    let last = segs.last()?;
    let target = last.strip_suffix("_ia3")?;
    let module = format!("{}.{target}", segs[..segs.len() - 1].join("."));
    Some((format!("{PREFIX}{}.ia3_l", hf_name(&module)), false))
}

fn load(model: Model, a: &Adapter) -> Result<Model> {
    let file = a.weights_file.clone();
    let (tensors, modules) = read_tensors(
        &a.weights,
        &file,
        |n| {
            n.strip_prefix(PREFIX)
                .and_then(|n| n.strip_suffix(".ia3_l"))
                .map(str::to_string)
        },
        "peft IA3 tensor (`base_model.model.<module>.ia3_l`)",
    )?;
    // IA3 goes on every text component the file adapts.
    let mut cfg = PeftConfig::parse("frozen")?;
    for (comp, prefix) in [
        ("text_encoder", "text_encoder."),
        ("decoder", "text_decoder."),
    ] {
        if modules.iter().any(|m| m.starts_with(prefix)) {
            cfg.placement.insert(comp.to_string(), Method::Ia3);
        }
    }
    if cfg.placement.is_empty() {
        return Err(Error::Weights {
            file,
            reason: "adapts no text encoder or decoder module of this model".into(),
        });
    }
    let model = attach(model, &cfg).map_err(|e| Error::Weights {
        file: file.clone(),
        reason: e.to_string(),
    })?;
    set_tensors(model, &tensors, &file, &ia3_key)
}

fn save(model: &Model, _: &PeftConfig, base_model: &str) -> Result<Vec<(String, Vec<u8>)>> {
    let named: Vec<(String, Vec<usize>, Vec<f32>)> = params(model, |p, _, _| ia3_key(p).is_some())
        .into_iter()
        .filter_map(|r| {
            let (key, _) = ia3_key(&r.path)?;
            let n = r.shape[0];
            // peft: `(out, 1)` for output scaling (key, value), `(1, in)` for feed-forward input scaling.
            let shape = if key.ends_with(".dense.ia3_l") {
                vec![1, n]
            } else {
                vec![n, 1]
            };
            Some((key, shape, r.values.unwrap_or_default()))
        })
        .collect();
    let weights = safetensors_bytes(&named, WEIGHTS_FILE)?;
    let config = json!({
        "peft_type": "IA3",
        "task_type": null,
        "auto_mapping": null,
        "base_model_name_or_path": base_model,
        "revision": null,
        "inference_mode": true,
        "target_modules": ["key", "value", "output.dense"],
        "exclude_modules": null,
        "feedforward_modules": ["output.dense"],
        "fan_in_fan_out": false,
        "modules_to_save": null,
        "init_ia3_weights": true,
        "peft_version": "0.21.2",
    });
    adapter_folder(&config, weights)
}
