//! Adapter folders in HF peft 0.21's format: `adapter_config.json` + `adapter_model.safetensors`
//! (metadata `{"format": "pt"}`), keys `base_model.model.<HF module path>.<method tensors>` with
//! the adapter name dropped. LayerNorm tuning: `<LN path>.ln_tuning_layers.{weight,bias}`.

use super::config::{Method, PeftConfig};
use crate::error::{Error, Result};
use crate::models::export::{hf_name, safetensors_bytes};
use crate::models::walk::{PathStack, param_paths, params, transposed};
use crate::models::{Model, load};
use crate::source::FileSource;
use burn::module::{Module, Param};
use burn::tensor::Tensor;
use serde_json::json;

/// File names of an adapter folder.
pub const CONFIG_FILE: &str = "adapter_config.json";
/// File names of an adapter folder.
pub const WEIGHTS_FILE: &str = "adapter_model.safetensors";

const PREFIX: &str = "base_model.model.";

/// `peft_type` of normtune's own adapter folders: every combination peft has no format for
/// (prefix, P-tuning v2, bottleneck adapters, selective methods, mixed placements). The tensors
/// are the trainable parameters under `base_model.model.<path>`, in normtune's layout, and
/// `normtune` in the config holds the `PeftConfig` that re-creates the modules.
pub const NATIVE: &str = "NORMTUNE";

/// Writes the adapter folder for `model` trained with `cfg`: only the trainable tensors.
/// LayerNorm tuning is written exactly as peft's `LNTuningConfig` writes it (no extra fields:
/// peft warns about keys it does not know).
///
/// Reads parameter values back synchronously, so call it natively (the browser saves through
/// the trainer's async checkpoint instead).
pub fn save_adapter(
    model: &Model,
    cfg: &PeftConfig,
    base_model: &str,
) -> Result<Vec<(String, Vec<u8>)>> {
    let components: Vec<&str> = model.components().iter().map(|c| c.name).collect();
    // peft's formats hold one method's tensors; anything else that trains (`modules_to_save`, a
    // classifier head, which trains fully unless the placement names it) goes into normtune's
    // own folder, never dropped.
    let head_trains = components.contains(&"head") && !cfg.placement.contains_key("head");
    let only_method = cfg.modules_to_save.is_empty() && !head_trains && !cfg.lora.has_slices();
    // peft's LORA file holds LoRA or (`use_dora`) DoRA for every adapted module, not both.
    for low_rank in [Method::Lora, Method::Dora] {
        let only = components
            .iter()
            .all(|c| [low_rank, Method::Frozen].contains(&cfg.method_for(c)))
            && components.iter().any(|c| cfg.method_for(c) == low_rank);
        if only && only_method {
            return save_lora(model, cfg, base_model, low_rank == Method::Dora);
        }
    }
    let ia3_only = components
        .iter()
        .all(|c| matches!(cfg.method_for(c), Method::Ia3 | Method::Frozen))
        && components.iter().any(|c| cfg.method_for(c) == Method::Ia3);
    if ia3_only && only_method {
        return save_ia3(model, base_model);
    }
    // P-tuning v2 on the decoder is exactly peft's PREFIX_TUNING file. Prefix tuning with the
    // MLP stays in normtune's folder, which keeps the MLP (peft would keep only its output).
    let decoder_prefix = components.iter().all(|c| {
        matches!(
            (*c, cfg.method_for(c)),
            ("decoder", Method::PtuningV2) | (_, Method::Frozen)
        )
    }) && cfg.method_for("decoder") == Method::PtuningV2;
    if decoder_prefix && only_method {
        return save_prefix(model, cfg, base_model);
    }
    // LayerNorm tuning with the projector or the head trained whole is peft's LN_TUNING with
    // `modules_to_save` (the LayerNorm paper's LLaVA recipe; a classifier's usual setting).
    let whole: Vec<&'static str> = model
        .components()
        .iter()
        .filter(|c| match c.name {
            "projector" => cfg.method_for(c.name) == Method::Full,
            "head" => head_trains || cfg.method_for(c.name) == Method::Full,
            _ => false,
        })
        .map(|c| c.path)
        .collect();
    let ln_only = model
        .components()
        .iter()
        .filter(|c| !whole.contains(&c.path))
        .all(|c| matches!(cfg.method_for(c.name), Method::Layernorm | Method::Frozen));
    let saves_listed = cfg
        .modules_to_save
        .iter()
        .all(|m| whole.contains(&m.as_str()));
    if !ln_only || !saves_listed || cfg.lora.has_slices() {
        return save_native(model, cfg, base_model);
    }
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

/// [`save_adapter`] for a model on any device: the trainable tensors are read back
/// asynchronously onto the CPU first (WebGPU allows no synchronous readback).
#[cfg(feature = "flex")]
pub async fn save_adapter_async(
    model: &Model,
    cfg: &PeftConfig,
    base_model: &str,
) -> Result<Vec<(String, Vec<u8>)>> {
    let host = burn::tensor::Device::flex().autodiff();
    let model = crate::models::walk::trainable_to_host(model, &host).await?;
    save_adapter(&model, cfg, base_model)
}

/// Loads an adapter folder into `model` (the base weights must already be loaded). Every tensor
/// of the adapter must land on a parameter of this model with the same shape.
pub async fn load_adapter(model: Model, src: &impl FileSource) -> Result<Model> {
    let cfg_file = src.describe(CONFIG_FILE);
    let config: serde_json::Value = serde_json::from_slice(&src.read(CONFIG_FILE).await?)
        .map_err(|e| Error::json(&cfg_file, e))?;
    let peft_type = config
        .get("peft_type")
        .and_then(|v| v.as_str())
        .ok_or_else(|| Error::config(&cfg_file, "peft_type", "missing"))?;
    if peft_type == "LORA" {
        return load_lora(model, src, &config, &cfg_file).await;
    }
    if peft_type == "IA3" {
        return load_ia3(model, src).await;
    }
    if peft_type == "PREFIX_TUNING" {
        return load_prefix(model, src, &config, &cfg_file).await;
    }
    if peft_type == NATIVE {
        return load_native(model, src, &config, &cfg_file).await;
    }
    if peft_type != "LN_TUNING" {
        return Err(Error::config(
            &cfg_file,
            "peft_type",
            format!(
                "`{peft_type}` adapters are not supported yet (LN_TUNING, LORA with or without DoRA, IA3 and PREFIX_TUNING are)"
            ),
        ));
    }
    let bytes = src.read(WEIGHTS_FILE).await?;
    let file = src.describe(WEIGHTS_FILE);
    let names = load::tensor_names(&bytes, &file)?;
    // `modules_to_save`: modules trained whole, saved under their own names.
    let saved: Vec<String> = match config.get("modules_to_save") {
        Some(serde_json::Value::Array(a)) => a
            .iter()
            .map(|m| m.as_str().map(String::from))
            .collect::<Option<_>>()
            .ok_or_else(|| Error::config(&cfg_file, "modules_to_save", "module names expected"))?,
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
    remaps.extend_from_slice(crate::models::BLIP_REMAPS);
    remaps.extend_from_slice(crate::models::llava::REMAPS);
    load::load_checked(model, bytes, &file, &remaps, &[], true)
}

fn save_lora(
    model: &Model,
    cfg: &PeftConfig,
    base_model: &str,
    dora: bool,
) -> Result<Vec<(String, Vec<u8>)>> {
    let mut modules: Vec<String> = Vec::new();
    let mut named = Vec::new();
    for r in params(model, |p, _, _| lora_key(p).is_some()) {
        let Some((key, flip)) = lora_key(&r.path) else {
            continue;
        };
        let module = hf_name(&r.path[..r.path.len() - 3].join("."));
        let leaf = module.rsplit('.').next().unwrap_or(&module).to_string();
        if !modules.contains(&leaf) {
            modules.push(leaf);
        }
        let vals = r.values.unwrap_or_default();
        // burn keeps a: [in, r], b: [r, out]; peft stores A: [r, in], B: [out, r].
        let (shape, vals) = if flip {
            transposed(&r.shape, &vals)
        } else {
            (r.shape, vals)
        };
        named.push((key, shape, vals));
    }
    let weights = safetensors_bytes(&named, WEIGHTS_FILE)?;
    let l = &cfg.lora;
    let config = json!({
        "peft_type": "LORA",
        "task_type": null,
        "auto_mapping": null,
        "base_model_name_or_path": base_model,
        "revision": null,
        "inference_mode": true,
        "r": l.r,
        // peft's `lora_alpha` is an int; keep whole values integral.
        "lora_alpha": if l.lora_alpha.fract() == 0.0 { json!(l.lora_alpha as i64) } else { json!(l.lora_alpha) },
        "lora_dropout": l.lora_dropout,
        "target_modules": modules,
        "exclude_modules": null,
        "use_rslora": l.use_rslora,
        "bias": "none",
        "fan_in_fan_out": false,
        "init_lora_weights": true,
        "modules_to_save": null,
        "layers_to_transform": null,
        "layers_pattern": null,
        "rank_pattern": {},
        "alpha_pattern": {},
        "use_dora": dora,
        "peft_version": "0.21.2",
    });
    adapter_folder(&config, weights)
}

async fn load_lora(
    model: Model,
    src: &impl FileSource,
    config: &serde_json::Value,
    cfg_file: &str,
) -> Result<Model> {
    let get_f = |k: &str, d: f64| config.get(k).and_then(|v| v.as_f64()).unwrap_or(d);
    let r = config
        .get("r")
        .and_then(|v| v.as_u64())
        .ok_or_else(|| Error::config(cfg_file, "r", "missing or not a positive integer"))?
        as usize;
    let settings = super::lora::LoraSettings {
        r,
        lora_alpha: get_f("lora_alpha", 8.0),
        lora_dropout: get_f("lora_dropout", 0.0),
        target_modules: None,
        use_rslora: config
            .get("use_rslora")
            .and_then(|v| v.as_bool())
            .unwrap_or(false),
        use_dora: false, // the method says it
    };
    let dora = config
        .get("use_dora")
        .and_then(|v| v.as_bool())
        .unwrap_or(false);
    let bytes = src.read(WEIGHTS_FILE).await?;
    let file = src.describe(WEIGHTS_FILE);
    let (tensors, modules) = read_tensors(
        &bytes,
        &file,
        |n| {
            n.strip_prefix(PREFIX)
                .and_then(|n| {
                    n.strip_suffix(".lora_A.weight")
                        .or_else(|| n.strip_suffix(".lora_B.weight"))
                        .or_else(|| n.strip_suffix(".lora_magnitude_vector").filter(|_| dora))
                })
                .map(str::to_string)
        },
        if dora {
            "peft DoRA tensor (`base_model.model.<module>.lora_A|lora_B.weight|lora_magnitude_vector`)"
        } else {
            "peft LoRA tensor (`base_model.model.<module>.lora_A|lora_B.weight`)"
        },
    )?;
    let mut cfg = PeftConfig::parse(if dora { "dora" } else { "lora" })?;
    cfg.lora = settings;
    let model = super::lora::attach(model, &cfg, Some(&modules))?;

    set_tensors(model, &tensors, &file, &lora_key)
}

/// LoRA factor path `<linear>.weight.lora.{a,b}` (DoRA: `<linear>.weight.dora.{a,b,magnitude}`)
/// → (peft key, whether burn keeps it transposed).
fn lora_key(segs: &[String]) -> Option<(String, bool)> {
    let n = segs.len();
    if n < 4 || segs[n - 3] != "weight" || !matches!(segs[n - 2].as_str(), "lora" | "dora") {
        return None;
    }
    let module = hf_name(&segs[..n - 3].join("."));
    match segs[n - 1].as_str() {
        "a" => Some((format!("{PREFIX}{module}.lora_A.weight"), true)),
        "b" => Some((format!("{PREFIX}{module}.lora_B.weight"), true)),
        "magnitude" => Some((format!("{PREFIX}{module}.lora_magnitude_vector"), false)),
        _ => None,
    }
}

/// IA3 vector path `<module>.{key,value,dense}_ia3` → peft `<module>.{key,value,dense}.ia3_l`.
fn ia3_key(segs: &[String]) -> Option<(String, bool)> {
    let last = segs.last()?;
    let target = last.strip_suffix("_ia3")?;
    let module = format!("{}.{target}", segs[..segs.len() - 1].join("."));
    Some((format!("{PREFIX}{}.ia3_l", hf_name(&module)), false))
}

type Tensors = std::collections::HashMap<String, (Vec<usize>, Vec<f32>)>;

/// Fills the parameters `rule` names from `tensors` (peft layout), checking every shape and
/// that every tensor of the file was used.
fn set_tensors(
    model: Model,
    tensors: &Tensors,
    file: &str,
    rule: &dyn Fn(&[String]) -> Option<(String, bool)>,
) -> Result<Model> {
    struct Setter<'a> {
        path: PathStack,
        tensors: &'a Tensors,
        rule: &'a dyn Fn(&[String]) -> Option<(String, bool)>,
        used: Vec<String>,
        errors: Vec<String>,
    }
    impl burn::module::ModuleMapper for Setter<'_> {
        fn enter_module(&mut self, name: &str, container_type: &str) {
            self.path.enter(name, container_type);
        }
        fn exit_module(&mut self, _name: &str, container_type: &str) {
            self.path.exit(container_type);
        }
        fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
            let Some((key, transposed)) = (self.rule)(self.path.segments()) else {
                return param;
            };
            let Some((shape, vals)) = self.tensors.get(&key) else {
                self.errors.push(format!("missing {key}"));
                return param;
            };
            let current: Vec<usize> = param.lazy_shape().to_vec();
            let fits = if transposed {
                shape.iter().rev().copied().collect::<Vec<_>>() == current
            } else {
                // IA3 vectors are stored as (out, 1) / (1, in); everything else as it is.
                shape.iter().product::<usize>() == current.iter().product::<usize>()
                    && (shape.len() != current.len() || *shape == current || shape.contains(&1))
            };
            if !fits {
                self.errors.push(format!(
                    "{key}: shape {shape:?} does not fit this model (parameter {current:?})"
                ));
                return param;
            }
            self.used.push(key);
            let data = burn::tensor::TensorData::new(vals.clone(), [vals.len()]);
            let shape = shape.clone();
            let grad = param.val().is_require_grad();
            param.map(|t| {
                let device = t.device();
                let flat = Tensor::<1>::from_data(data, &device);
                let v: Tensor<D> = if transposed {
                    flat.reshape([shape[0], shape[1]])
                        .transpose()
                        .reshape(t.shape())
                } else {
                    flat.reshape(t.shape())
                };
                v.set_require_grad(grad)
            })
        }
    }
    let mut setter = Setter {
        path: PathStack::default(),
        tensors,
        rule,
        used: Vec::new(),
        errors: Vec::new(),
    };
    let model = model.map(&mut setter);
    let unused: Vec<&String> = tensors
        .keys()
        .filter(|k| !setter.used.contains(k))
        .collect();
    if !unused.is_empty() {
        setter.errors.push(format!(
            "{} tensor(s) match no layer of this model, e.g. {}",
            unused.len(),
            unused[0]
        ));
    }
    if !setter.errors.is_empty() {
        return Err(Error::Weights {
            file: file.to_string(),
            reason: format!("does not fit this model: {}", setter.errors.join("; ")),
        });
    }
    Ok(model)
}

/// Reads every tensor of an adapter file as f32, checking each name with `module_of`.
fn read_tensors(
    bytes: &[u8],
    file: &str,
    module_of: impl Fn(&str) -> Option<String>,
    expected: &str,
) -> Result<(Tensors, Vec<String>)> {
    load::check_finite(bytes, file)?;
    let st = safetensors::SafeTensors::deserialize(bytes).map_err(|e| Error::Weights {
        file: file.to_string(),
        reason: e.to_string(),
    })?;
    let mut tensors = Tensors::new();
    let mut modules: Vec<String> = Vec::new();
    for (name, view) in st.tensors() {
        // LLaVA adapters from transformers 4 (`language_model.model.…`) name modules as
        // transformers 5 does now.
        let name = match name.strip_prefix(PREFIX) {
            Some(rest) => format!(
                "{PREFIX}{}",
                crate::models::export::llava_runtime_name(rest)
            ),
            None => name,
        };
        let module = module_of(&name).ok_or_else(|| Error::Weights {
            file: file.to_string(),
            reason: format!("`{name}` is not a {expected}"),
        })?;
        if view.dtype() != safetensors::Dtype::F32 {
            return Err(Error::Weights {
                file: file.to_string(),
                reason: format!(
                    "`{name}`: only f32 adapters are supported, found {:?}",
                    view.dtype()
                ),
            });
        }
        if !modules.contains(&module) {
            modules.push(module);
        }
        let vals = view
            .data()
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        tensors.insert(name.clone(), (view.shape().to_vec(), vals));
    }
    Ok((tensors, modules))
}

async fn load_ia3(model: Model, src: &impl FileSource) -> Result<Model> {
    let bytes = src.read(WEIGHTS_FILE).await?;
    let file = src.describe(WEIGHTS_FILE);
    let (tensors, modules) = read_tensors(
        &bytes,
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
    let model = super::ia3::attach(model, &cfg).map_err(|e| Error::Weights {
        file: file.clone(),
        reason: e.to_string(),
    })?;
    set_tensors(model, &tensors, &file, &ia3_key)
}

fn save_ia3(model: &Model, base_model: &str) -> Result<Vec<(String, Vec<u8>)>> {
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

fn native_key(segs: &[String]) -> String {
    format!("{PREFIX}{}", hf_name(&segs.join(".")))
}

/// Every trainable tensor as (`base_model.model.<HF path>`, shape, values), in module order,
/// with burn's parameter id: what adapters and checkpoints are made of.
pub(crate) fn trainable_tensors(model: &Model) -> Vec<(String, Vec<usize>, Vec<f32>, u64)> {
    params(model, |_, _, trainable| trainable)
        .into_iter()
        .filter(|r| r.trainable)
        .map(|r| {
            (
                native_key(&r.path),
                r.shape,
                r.values.unwrap_or_default(),
                r.id.val(),
            )
        })
        .collect()
}

/// Sets every trainable parameter of `model` (PEFT already applied) from a safetensors file
/// written from [`trainable_tensors`], and gives each the burn parameter id `ids` names (so an
/// optimizer state saved under those ids applies again). Every trainable parameter must be in
/// the file and every tensor of the file must be used.
pub(crate) fn restore_trainable(
    model: Model,
    bytes: &[u8],
    file: &str,
    ids: &std::collections::BTreeMap<String, u64>,
) -> Result<Model> {
    let (tensors, _) = read_tensors(
        bytes,
        file,
        |n| n.strip_prefix(PREFIX).map(str::to_string),
        "normtune checkpoint tensor (`base_model.model.<path>`)",
    )?;
    let wanted: Vec<String> = trainable_tensors_names(&model);
    if let Some(missing) = wanted.iter().find(|k| !tensors.contains_key(*k)) {
        return Err(Error::Weights {
            file: file.to_string(),
            reason: format!("has no `{missing}`, which trains under this run's PEFT config"),
        });
    }
    let rule = |segs: &[String]| {
        let key = native_key(segs);
        tensors.contains_key(&key).then_some((key, false))
    };
    let model = set_tensors(model, &tensors, file, &rule)?;
    struct Ids<'a> {
        path: PathStack,
        ids: &'a std::collections::BTreeMap<String, u64>,
    }
    impl burn::module::ModuleMapper for Ids<'_> {
        fn enter_module(&mut self, name: &str, container_type: &str) {
            self.path.enter(name, container_type);
        }
        fn exit_module(&mut self, _name: &str, container_type: &str) {
            self.path.exit(container_type);
        }
        fn map_float<const D: usize>(&mut self, mut param: Param<Tensor<D>>) -> Param<Tensor<D>> {
            if let Some(id) = self.ids.get(&native_key(self.path.segments())) {
                param.id = burn::module::ParamId::from(*id);
            }
            param
        }
    }
    Ok(model.map(&mut Ids {
        path: PathStack::default(),
        ids,
    }))
}

fn trainable_tensors_names(model: &Model) -> Vec<String> {
    params(model, |_, _, _| false)
        .into_iter()
        .filter(|r| r.trainable)
        .map(|r| native_key(&r.path))
        .collect()
}

fn save_native(
    model: &Model,
    cfg: &PeftConfig,
    base_model: &str,
) -> Result<Vec<(String, Vec<u8>)>> {
    let named: Vec<(String, Vec<usize>, Vec<f32>)> = trainable_tensors(model)
        .into_iter()
        .map(|(k, s, v, _)| (k, s, v))
        .collect();
    if named.is_empty() {
        return Err(Error::Input(
            "nothing trains under this PEFT config: there is no adapter to save".into(),
        ));
    }
    let weights = safetensors_bytes(&named, WEIGHTS_FILE)?;
    let config = json!({
        "peft_type": NATIVE,
        "base_model_name_or_path": base_model,
        "inference_mode": true,
        "normtune": cfg,
    });
    adapter_folder(&config, weights)
}

async fn load_native(
    model: Model,
    src: &impl FileSource,
    config: &serde_json::Value,
    cfg_file: &str,
) -> Result<Model> {
    let cfg: PeftConfig =
        serde_json::from_value(config.get("normtune").cloned().unwrap_or_default())
            .map_err(|e| Error::config(cfg_file, "normtune", e.to_string()))?;
    let model = super::select::apply(model, &cfg)
        .map_err(|e| Error::config(cfg_file, "normtune", e.to_string()))?;
    let bytes = src.read(WEIGHTS_FILE).await?;
    let file = src.describe(WEIGHTS_FILE);
    let (tensors, _) = read_tensors(
        &bytes,
        &file,
        |n| n.strip_prefix(PREFIX).map(str::to_string),
        "normtune adapter tensor (`base_model.model.<path>`)",
    )?;
    let rule = |segs: &[String]| {
        let key = native_key(segs);
        tensors.contains_key(&key).then_some((key, false))
    };
    set_tensors(model, &tensors, &file, &rule)
}

/// The decoder of a VQA or report model, where peft's `PREFIX_TUNING` applies to HF BLIP (peft on
/// `blip.text_decoder` with `task_type="CAUSAL_LM"`: the prefix enters the decoder's
/// self-attention as `past_key_values`, positions start after it).
fn decoder_text(model: &mut Model) -> Option<&mut crate::models::bert::BlipTextModel> {
    match model {
        Model::Vqa(m) => Some(&mut m.text_decoder.bert),
        Model::Captioner(m) => Some(&mut m.text_decoder.bert),
        Model::Classifier(_) | Model::Llava(_) => None,
    }
}

/// peft's prefix tuning on the decoder: one tensor `prompt_embeddings` `[virtual_tokens,
/// layers · 2 · hidden]` (with `prefix_projection`, peft saves the MLP's output, so the folder is
/// the same either way); loaded as P-tuning v2 embeddings, which compute exactly that.
async fn load_prefix(
    model: Model,
    src: &impl FileSource,
    config: &serde_json::Value,
    cfg_file: &str,
) -> Result<Model> {
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
    let model = super::prefix::attach(model, &cfg)
        .map_err(|e| Error::config(cfg_file, "peft_type", e.to_string()))?;
    let mut model = model;
    let Some(text) = decoder_text(&mut model) else {
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
    let bytes = src.read(WEIGHTS_FILE).await?;
    let file = src.describe(WEIGHTS_FILE);
    let (tensors, _) = read_tensors(
        &bytes,
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

fn save_prefix(
    model: &Model,
    cfg: &PeftConfig,
    base_model: &str,
) -> Result<Vec<(String, Vec<u8>)>> {
    let mut m = model.clone();
    let text = decoder_text(&mut m).ok_or_else(|| Error::Input("no text decoder".into()))?;
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

/// The two files of an adapter folder.
fn adapter_folder(config: &serde_json::Value, weights: Vec<u8>) -> Result<Vec<(String, Vec<u8>)>> {
    let config = serde_json::to_vec_pretty(config).map_err(|e| Error::json(CONFIG_FILE, e))?;
    Ok(vec![
        (CONFIG_FILE.to_string(), config),
        (WEIGHTS_FILE.to_string(), weights),
    ])
}
