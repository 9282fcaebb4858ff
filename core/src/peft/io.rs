//! Adapter folders in HF peft 0.21's format: `adapter_config.json` + `adapter_model.safetensors`
//! (metadata `{"format": "pt"}`), keys `base_model.model.<HF module path>.<method tensors>` with
//! the adapter name dropped. Each method's file writes and reads its own `peft_type`
//! ([`PeftFormat`], named in its registry row); this file picks the format, reads the folder,
//! fills parameters from it, and writes normtune's own format for what peft has none for.

use super::config::{Method, PeftConfig};
use crate::error::{Error, Result};
use crate::models::export::{hf_name, safetensors_bytes};
use crate::models::walk::{PathStack, params};
use crate::models::{Model, load};
use crate::source::FileSource;
use burn::module::{Module, Param};
use burn::tensor::Tensor;
use serde_json::json;

/// File names of an adapter folder.
pub const CONFIG_FILE: &str = "adapter_config.json";
/// File names of an adapter folder.
pub const WEIGHTS_FILE: &str = "adapter_model.safetensors";

pub(super) const PREFIX: &str = "base_model.model.";

/// `peft_type` of normtune's own adapter folders: every combination peft has no format for
/// (prefix, P-tuning v2, bottleneck adapters, selective methods, mixed placements). The tensors
/// are the trainable parameters under `base_model.model.<path>`, in normtune's layout, and
/// `normtune` in the config holds the `PeftConfig` that re-creates the modules.
pub const NATIVE: &str = "NORMTUNE";

/// Writes the adapter folder for `model` trained with `cfg`: only the trainable tensors, in
/// the first of peft's formats (the registry's, in its order) that holds exactly what trains,
/// else in normtune's own. LayerNorm tuning is written exactly as peft's `LNTuningConfig`
/// writes it (no extra fields: peft warns about keys it does not know).
///
/// Reads parameter values back synchronously, so call it natively (the browser saves through
/// [`save_adapter_async`]).
pub fn save_adapter(
    model: &Model,
    cfg: &PeftConfig,
    base_model: &str,
) -> Result<Vec<(String, Vec<u8>)>> {
    match super::registry::formats().find(|f| (f.holds)(model, cfg)) {
        Some(f) => (f.save)(model, cfg, base_model),
        None => save_native(model, cfg, base_model),
    }
}

/// One of peft's adapter formats (`peft_type`), written and read by the method's own file and
/// named in its registry row.
pub struct PeftFormat {
    /// `peft_type` in `adapter_config.json`.
    pub peft_type: &'static str,
    /// Whether the format holds exactly what trains in `model` under the config.
    pub holds: fn(&Model, &PeftConfig) -> bool,
    /// Writes the folder's files (`base_model_name_or_path` given).
    pub save: fn(&Model, &PeftConfig, &str) -> Result<Vec<(String, Vec<u8>)>>,
    /// Puts a folder into a base model: its `adapter_config.json` and weights, each with the
    /// name errors give it.
    pub load: fn(Model, &Adapter) -> Result<Model>,
}

/// An adapter folder as read: its config and its weights file.
pub struct Adapter {
    /// `adapter_config.json`.
    pub config: serde_json::Value,
    /// Where the config came from (for errors).
    pub config_file: String,
    /// `adapter_model.safetensors`.
    pub weights: Vec<u8>,
    /// Where the weights came from (for errors).
    pub weights_file: String,
}

/// What peft's single-method formats share: nothing but the method's own modules trains (no
/// `modules_to_save`, no classifier head trained whole, no LoRA slice targets), and every
/// component is frozen or `method`, which at least one uses.
pub(super) fn only(model: &Model, cfg: &PeftConfig, methods: &[Method]) -> bool {
    let components: Vec<&str> = model.components().iter().map(|c| c.name).collect();
    let head_trains = components.iter().any(|c| cfg.head_unplaced(c));
    cfg.modules_to_save.is_empty()
        && !head_trains
        && !cfg.lora.has_slices()
        && components
            .iter()
            .all(|c| cfg.method_for(c) == Method::Frozen || methods.contains(&cfg.method_for(c)))
        && components
            .iter()
            .any(|c| methods.contains(&cfg.method_for(c)))
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
    let config_file = src.describe(CONFIG_FILE);
    let config: serde_json::Value = serde_json::from_slice(&src.read(CONFIG_FILE).await?)
        .map_err(|e| Error::json(&config_file, e))?;
    let peft_type = config
        .get("peft_type")
        .and_then(|v| v.as_str())
        .ok_or_else(|| Error::config(&config_file, "peft_type", "missing"))?
        .to_string();
    let format = super::registry::formats().find(|f| f.peft_type == peft_type);
    if format.is_none() && peft_type != NATIVE {
        let known: Vec<&str> = super::registry::formats().map(|f| f.peft_type).collect();
        return Err(Error::config(
            &config_file,
            "peft_type",
            format!(
                "`{peft_type}` adapters are not supported yet ({} are, LORA with or without DoRA)",
                known.join(", ")
            ),
        ));
    }
    let adapter = Adapter {
        weights: src.read(WEIGHTS_FILE).await?,
        weights_file: src.describe(WEIGHTS_FILE),
        config,
        config_file,
    };
    match format {
        Some(f) => (f.load)(model, &adapter),
        None => load_native(model, &adapter),
    }
}

pub(super) type Tensors = std::collections::HashMap<String, (Vec<usize>, Vec<f32>)>;

/// Fills the parameters `rule` names from `tensors` (peft layout), checking every shape and
/// that every tensor of the file was used.
pub(super) fn set_tensors(
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
pub(super) fn read_tensors(
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

fn load_native(model: Model, a: &Adapter) -> Result<Model> {
    let cfg: PeftConfig =
        serde_json::from_value(a.config.get("normtune").cloned().unwrap_or_default())
            .map_err(|e| Error::config(&a.config_file, "normtune", e.to_string()))?;
    let model = super::select::apply(model, &cfg)
        .map_err(|e| Error::config(&a.config_file, "normtune", e.to_string()))?;
    let (tensors, _) = read_tensors(
        &a.weights,
        &a.weights_file,
        |n| n.strip_prefix(PREFIX).map(str::to_string),
        "normtune adapter tensor (`base_model.model.<path>`)",
    )?;
    let rule = |segs: &[String]| {
        let key = native_key(segs);
        tensors.contains_key(&key).then_some((key, false))
    };
    set_tensors(model, &tensors, &a.weights_file, &rule)
}

/// The two files of an adapter folder.
pub(super) fn adapter_folder(
    config: &serde_json::Value,
    weights: Vec<u8>,
) -> Result<Vec<(String, Vec<u8>)>> {
    let config = serde_json::to_vec_pretty(config).map_err(|e| Error::json(CONFIG_FILE, e))?;
    Ok(vec![
        (CONFIG_FILE.to_string(), config),
        (WEIGHTS_FILE.to_string(), weights),
    ])
}
