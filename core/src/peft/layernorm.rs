//! LayerNorm tuning (arXiv 2404.16385; peft's `LNTuningConfig`), the project's default method:
//! the gain and bias of every LayerNorm (RMSNorm: its gain) train, nothing is added. Its
//! registry row says which parameters it selects; this file holds its adapter format, peft's
//! `LN_TUNING`: `base_model.model.<LN module>.ln_tuning_layers.{weight,bias}`, with a projector
//! or classifier head trained whole as `modules_to_save` (the paper's LLaVA recipe; a
//! classifier's usual setting).

use super::config::{Method, PeftConfig};
use super::io::{Adapter, PREFIX, PeftFormat, WEIGHTS_FILE, adapter_folder};
use crate::error::{Error, Result};
use crate::models::export::{hf_name, safetensors_bytes};
use crate::models::walk::{param_paths, params};
use crate::models::{Model, load};
use serde_json::json;

/// peft's `LN_TUNING` format.
pub const FORMAT: PeftFormat = PeftFormat {
    peft_type: "LN_TUNING",
    holds,
    save,
    load,
};

/// The paths of the components trained whole next to LayerNorm tuning: a LLaVA projector set to
/// `full`, a classifier head (trained whole unless the placement names it).
fn whole(model: &Model, cfg: &PeftConfig) -> Vec<&'static str> {
    let names: Vec<&str> = model.components().iter().map(|c| c.name).collect();
    let head_trains = names.iter().any(|c| cfg.head_unplaced(c));
    model
        .components()
        .iter()
        .filter(|c| match c.name {
            "projector" => cfg.method_for(c.name) == Method::Full,
            "head" => head_trains || cfg.method_for(c.name) == Method::Full,
            _ => false,
        })
        .map(|c| c.path)
        .collect()
}

/// LayerNorm tuning (or nothing) everywhere else, `modules_to_save` only naming those
/// components, no LoRA slices.
fn holds(model: &Model, cfg: &PeftConfig) -> bool {
    let whole = whole(model, cfg);
    let ln_only = model
        .components()
        .iter()
        .filter(|c| !whole.contains(&c.path))
        .all(|c| matches!(cfg.method_for(c.name), Method::Layernorm | Method::Frozen));
    let saves_listed = cfg
        .modules_to_save
        .iter()
        .all(|m| whole.contains(&m.as_str()));
    ln_only && saves_listed && !cfg.lora.has_slices()
}

fn save(model: &Model, cfg: &PeftConfig, base_model: &str) -> Result<Vec<(String, Vec<u8>)>> {
    let whole = whole(model, cfg);
    let rows = params(model, |_, _, trainable| trainable);
    let mut modules: Vec<String> = Vec::new();
    let mut named: Vec<(String, Vec<usize>, Vec<f32>)> = Vec::new();
    let (kept, rows): (Vec<_>, Vec<_>) = rows.into_iter().filter(|r| r.trainable).partition(|r| {
        whole
            .iter()
            .any(|w| r.path.first().map(String::as_str) == Some(*w))
    });
    for row in kept {
        // peft writes a `modules_to_save` module's tensors under the module's own names
        // (PyTorch layout: Linear weights [out, in]).
        let values = row.values.clone().unwrap_or_default();
        let (shape, values) = if row.shape.len() == 2
            && row.path.last().is_some_and(|l| l == "weight")
            && row.container == "Struct:Linear"
        {
            crate::models::walk::transposed(&row.shape, &values)
        } else {
            (row.shape.clone(), values)
        };
        named.push((
            format!("{PREFIX}{}", hf_name(&row.path.join("."))),
            shape,
            values,
        ));
    }
    for row in rows {
        let (shape, vals) = (row.shape.clone(), row.values.unwrap_or_default());
        let hf = hf_name(&row.path.join("."));
        let (module, leaf) = hf.rsplit_once('.').unwrap_or(("", &hf));
        if !modules.iter().any(|m| m == module) {
            modules.push(module.to_string());
        }
        named.push((
            format!("{PREFIX}{module}.ln_tuning_layers.{leaf}"),
            shape,
            vals,
        ));
    }
    let weights = safetensors_bytes(&named, WEIGHTS_FILE)?;
    // peft writes the short module names (`LayerNorm`, `layer_norm1`, ...) when they pick out
    // exactly the tuned modules; a partial placement needs the full paths.
    let all_ln: Vec<String> = param_paths(model)
        .iter()
        .filter(|p| p.ends_with(".gamma"))
        .map(|p| {
            hf_name(p)
                .rsplit_once('.')
                .map(|(m, _)| m.to_string())
                .unwrap_or_default()
        })
        .collect();
    let mut short: Vec<String> = Vec::new();
    for m in &modules {
        let leaf = m.rsplit('.').next().unwrap_or(m).to_string();
        if !short.contains(&leaf) {
            short.push(leaf);
        }
    }
    let short_is_exact = all_ln
        .iter()
        .all(|m| modules.contains(m) || !short.iter().any(|s| m.rsplit('.').next() == Some(s)));
    let target_modules = if short_is_exact { short } else { modules };
    let config = json!({
        "peft_type": "LN_TUNING",
        "task_type": null,
        "auto_mapping": null,
        "base_model_name_or_path": base_model,
        "revision": null,
        "inference_mode": true,
        "target_modules": target_modules,
        "exclude_modules": null,
        "modules_to_save": if whole.is_empty() { serde_json::Value::Null } else { json!(whole) },
        "peft_version": "0.21.2",
    });
    adapter_folder(&config, weights)
}

fn load(model: Model, a: &Adapter) -> Result<Model> {
    let file = a.weights_file.clone();
    let names = load::tensor_names(&a.weights, &file)?;
    // `modules_to_save`: modules trained whole, saved under their own names.
    let saved: Vec<String> = match a.config.get("modules_to_save") {
        Some(serde_json::Value::Array(list)) => list
            .iter()
            .map(|m| m.as_str().map(String::from))
            .collect::<Option<_>>()
            .ok_or_else(|| {
                Error::config(&a.config_file, "modules_to_save", "module names expected")
            })?,
        _ => Vec::new(),
    };
    let in_saved = |k: &str| {
        let k = k.strip_prefix(PREFIX).unwrap_or(k);
        saved
            .iter()
            .any(|m| k.starts_with(&format!("{m}.")) || k.contains(&format!(".{m}.")))
    };
    if let Some((bad, _)) = names
        .iter()
        .find(|(k, _)| !k.starts_with(PREFIX) || !(k.contains(".ln_tuning_layers.") || in_saved(k)))
    {
        return Err(Error::Weights {
            file,
            reason: format!(
                "`{bad}` is not a peft LN-tuning tensor (`{PREFIX}<module>.ln_tuning_layers.weight|bias`) \
                 nor in modules_to_save"
            ),
        });
    }
    let mut remaps: Vec<(&str, &str)> = vec![
        (r"^base_model\.model\.", ""),
        (r"\.ln_tuning_layers\.", "."),
    ];
    remaps.extend_from_slice(crate::models::blip::family::REMAPS);
    remaps.extend_from_slice(crate::models::llava::REMAPS);
    load::load_checked(model, a.weights.clone(), &file, &remaps, &[], true)
}
