//! LoRA (Hu et al. 2021; HF peft `tuners/lora`): a trainable low-rank update `scale · A·B` on
//! target Linear weights, everything else frozen. Built on burn's own `apply_lora`
//! reparameterisation; normtune chooses the targets per component and speaks peft's files.

use super::config::{Method, PeftConfig};
use super::io::{
    Adapter, PREFIX, PeftFormat, WEIGHTS_FILE, adapter_folder, only, read_tensors, set_tensors,
};
use super::select::component_of;
use crate::error::{Error, Result};
use crate::models::Model;
use crate::models::export::{hf_name, safetensors_bytes};
use crate::models::walk::params;
use crate::models::walk::transposed;
use burn::module::{Lora, Module, Param, ParamGroup, ParamId};
use burn::tensor::Tensor;
use serde::{Deserialize, Serialize};
use serde_json::json;

/// LoRA settings (peft `LoraConfig` names).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LoraSettings {
    /// Rank.
    pub r: usize,
    /// Scaling numerator: the update is scaled by `lora_alpha / r` (`/ √r` with rsLoRA).
    pub lora_alpha: f64,
    /// Dropout on the LoRA branch's input while training (peft's `lora_dropout`; not applied to
    /// `qkv.q`-style slice targets).
    pub lora_dropout: f64,
    /// Module names to adapt; default per component: `query`, `value` in BERT text models (peft's
    /// default for BERT, as MILE), `qkv` in the BLIP vision encoder, `q_proj`, `v_proj` in ViT.
    pub target_modules: Option<Vec<String>>,
    /// rsLoRA scaling `lora_alpha / √r`.
    pub use_rslora: bool,
    /// peft's `use_dora`: components whose method is `lora` get DoRA (the same as naming the
    /// method `dora`).
    pub use_dora: bool,
}

impl Default for LoraSettings {
    fn default() -> Self {
        // MILE: r = 8, alpha = 32, dropout 0.1.
        Self {
            r: 8,
            lora_alpha: 32.0,
            lora_dropout: 0.1,
            target_modules: None,
            use_rslora: false,
            use_dora: false,
        }
    }
}

impl LoraSettings {
    /// The factor burn's `Lora` divides by the rank, so that the scale is peft's.
    fn burn_alpha(&self) -> f64 {
        if self.use_rslora {
            self.lora_alpha * (self.r as f64).sqrt()
        } else {
            self.lora_alpha
        }
    }

    /// Target module names for a component.
    pub fn targets_for(&self, component: &str, model: &Model) -> Vec<String> {
        if let Some(t) = &self.target_modules {
            return t.clone();
        }
        let v = model.default_lora_targets(component);
        v.iter().map(|s| s.to_string()).collect()
    }
}

/// Linear weights (path, id) of the model.
fn linear_weights(model: &Model) -> Vec<(Vec<String>, ParamId)> {
    params(model, |_, _, _| false)
        .into_iter()
        .filter(|r| {
            r.shape.len() == 2
                && r.path.last().is_some_and(|l| l == "weight")
                && r.container == "Struct:Linear"
        })
        .map(|r| (r.path, r.id))
        .collect()
}

/// One LoRA pair for a slice of a fused projection.
#[derive(Module, Debug)]
pub struct LoraPair {
    /// `[d_in, r]`.
    pub a: Param<Tensor<2>>,
    /// `[r, d_slice]`, zero at init.
    pub b: Param<Tensor<2>>,
}

/// LoRA on chosen slices of a fused `qkv` projection (MED-PEFT's setting on timm / BLIP vision:
/// separate low-rank updates for the query and value thirds, none for the key), as a burn
/// reparameterisation: `W + scale · [A_q B_q | 0 | A_v B_v]`.
#[derive(Module, Debug)]
pub struct SliceLora {
    /// Query slice.
    pub q: Option<LoraPair>,
    /// Key slice.
    pub k: Option<LoraPair>,
    /// Value slice.
    pub v: Option<LoraPair>,
    /// `lora_alpha / r` (or `/ √r`).
    pub scale: f64,
}

impl burn::module::Reparameterization for SliceLora {
    const NAME: &'static str = "lora";

    fn apply<const D: usize>(&self, base: Tensor<D>) -> Tensor<D> {
        let shape = base.shape();
        let dims = shape.clone().to_vec();
        let (d_in, d_out) = (dims[0], dims[dims.len() - 1] / 3);
        let device = base.device();
        let part = |p: &Option<LoraPair>| match p {
            Some(p) => p.a.val().matmul(p.b.val()).mul_scalar(self.scale),
            None => Tensor::<2>::zeros([d_in, d_out], &device),
        };
        let delta = Tensor::cat(vec![part(&self.q), part(&self.k), part(&self.v)], 1);
        base + delta.reshape(shape)
    }
}

struct SliceReparameterizer<'a> {
    targets: &'a [String],
    slices: [bool; 3],
    r: usize,
    scale: f64,
}

impl burn::module::Reparameterizer for SliceReparameterizer<'_> {
    type Reparam = SliceLora;

    fn reparameterize<const D: usize>(
        &mut self,
        path: &str,
        param: Param<Tensor<D>>,
    ) -> (Param<Tensor<D>>, Option<SliceLora>) {
        let hf = crate::models::export::hf_name(path);
        let Some(module) = hf.strip_suffix(".weight") else {
            return (param, None);
        };
        // burn's path includes enum variants (`Vqa.vision_model...`): match on the HF tail.
        let hit = self
            .targets
            .iter()
            .any(|t| module == t || module.ends_with(&format!(".{t}")));
        if D != 2 || !hit {
            return (param, None);
        }
        let dims = param.lazy_shape().to_vec();
        let (d_in, d_out) = (dims[0], dims[1] / 3);
        let device = param.lazy_device();
        // peft's init: A ~ kaiming_uniform(a=√5) = U(±1/√fan_in), B = 0.
        let a_init = burn::nn::Initializer::KaimingUniform {
            gain: 1.0 / 3f64.sqrt(),
            fan_out_only: false,
        };
        let pair = |on: bool| {
            on.then(|| LoraPair {
                a: a_init.init_with([d_in, self.r], Some(d_in), Some(self.r), &device),
                b: burn::nn::Initializer::Zeros.init([self.r, d_out], &device),
            })
        };
        let reparam = SliceLora {
            q: pair(self.slices[0]),
            k: pair(self.slices[1]),
            v: pair(self.slices[2]),
            scale: self.scale,
        };
        (param.set_require_grad(false), Some(reparam))
    }
}

/// Splits `qkv.q`-style targets (a slice of a fused projection) from whole-module targets.
fn slice_targets(targets: &[String]) -> (Vec<String>, [bool; 3]) {
    let mut modules = Vec::new();
    let mut slices = [false; 3];
    for t in targets {
        if let Some((m, s)) = t.rsplit_once('.')
            && let Some(i) = ["q", "k", "v"].iter().position(|x| *x == s)
            && m.ends_with("qkv")
        {
            slices[i] = true;
            if !modules.contains(&m.to_string()) {
                modules.push(m.to_string());
            }
        }
    }
    (modules, slices)
}

impl LoraSettings {
    /// Whether a target names a slice of a fused projection (`qkv.q`, `qkv.v`): such adapters
    /// have no peft format and are written as normtune's own folder.
    pub fn has_slices(&self) -> bool {
        self.target_modules
            .as_ref()
            .is_some_and(|t| !slice_targets(t).0.is_empty())
    }
}

/// Attaches LoRA to the target Linear weights of every component whose method is `lora`
/// (`only`: restrict to these HF-style module paths, as an adapter file lists them).
/// A target `qkv.q` / `qkv.k` / `qkv.v` adapts that slice of a fused projection only.
pub(crate) fn attach(model: Model, cfg: &PeftConfig, only: Option<&[String]>) -> Result<Model> {
    let s = &cfg.lora;
    if s.r == 0 {
        return Err(Error::Input("lora.r must be at least 1".into()));
    }
    let mut model = model;
    if let Some(t) = &s.target_modules {
        let (fused, slices) = slice_targets(t);
        if !fused.is_empty() {
            if let Some(c) = model
                .components()
                .iter()
                .find(|c| cfg.method_for(c.name) == Method::Dora)
            {
                return Err(Error::Input(format!(
                    "DoRA (`{}`) adapts whole modules: the slice targets {t:?} have no DoRA form                      (use `lora` for slices, or name the whole `qkv`)",
                    c.name
                )));
            }
            let weights = linear_weights(&model);
            let mut paths = Vec::new();
            for (path, _) in &weights {
                let comp = component_of(path);
                if cfg.method_for(comp) == Method::Lora
                    && fused.iter().any(|f| *f == path[path.len() - 2])
                {
                    paths.push(crate::models::export::hf_name(
                        &path[..path.len() - 1].join("."),
                    ));
                }
            }
            if paths.is_empty() {
                return Err(Error::Input(format!(
                    "LoRA slice targets {t:?} match no fused projection in a `lora` component"
                )));
            }
            let scale = s.burn_alpha() / s.r as f64;
            model = model.apply_reparameterization(SliceReparameterizer {
                targets: &paths,
                slices,
                r: s.r,
                scale,
            });
            let rest: Vec<String> = t
                .iter()
                .filter(|x| slice_targets(std::slice::from_ref(x)).0.is_empty())
                .cloned()
                .collect();
            if rest.is_empty() {
                return Ok(model);
            }
            let mut cfg2 = cfg.clone();
            cfg2.lora.target_modules = Some(rest);
            return attach(model, &cfg2, only);
        }
    }
    let weights = linear_weights(&model);
    let (mut lora_ids, mut dora_ids) = (Vec::new(), Vec::new());
    for comp in model.components().iter().map(|c| c.name) {
        let method = cfg.method_for(comp);
        // A classifier's head trains fully unless the placement names it (`select::effective`),
        // as peft's `modules_to_save`: `--peft lora` on a classifier adapts its tower.
        if !method.is_lora() || cfg.head_unplaced(comp) {
            continue;
        }
        let ids = if method == Method::Dora {
            &mut dora_ids
        } else {
            &mut lora_ids
        };
        let targets = s.targets_for(comp, &model);
        let mut hit = 0;
        for (path, id) in &weights {
            if component_of(path) != comp {
                continue;
            }
            let module = &path[path.len() - 2];
            let selected = match only {
                Some(list) => list.iter().any(|m| {
                    *m == crate::models::export::hf_name(&path[..path.len() - 1].join("."))
                }),
                None => targets.iter().any(|t| t == module),
            };
            if selected {
                ids.push(*id);
                hit += 1;
            }
        }
        if hit == 0 && only.is_none() {
            return Err(Error::Input(format!(
                "LoRA target modules {targets:?} match no Linear layer in the `{comp}` component"
            )));
        }
    }
    let mut model = model
        .apply_lora(Lora::new(s.r, s.burn_alpha()).set_param_group(ParamGroup::from_ids(lora_ids)));
    if !dora_ids.is_empty() {
        model = model.apply_reparameterization(super::dora::DoraReparameterizer {
            group: ParamGroup::from_ids(dora_ids),
            r: s.r,
            scale: s.burn_alpha() / s.r as f64,
        });
    }
    model.set_lora_dropout(s.lora_dropout);
    Ok(model)
}

/// peft's `LORA` format, LoRA or (`use_dora`) DoRA for every adapted module.
pub const FORMAT: PeftFormat = PeftFormat {
    peft_type: "LORA",
    holds: |model, cfg| only(model, cfg, &[Method::Lora]) || only(model, cfg, &[Method::Dora]),
    save,
    load,
};

fn save(model: &Model, cfg: &PeftConfig, base_model: &str) -> Result<Vec<(String, Vec<u8>)>> {
    let dora = model
        .components()
        .iter()
        .any(|c| cfg.method_for(c.name) == Method::Dora);
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

fn load(model: Model, a: &Adapter) -> Result<Model> {
    let (config, cfg_file) = (&a.config, a.config_file.as_str());
    let get_f = |k: &str, d: f64| config.get(k).and_then(|v| v.as_f64()).unwrap_or(d);
    let r = config
        .get("r")
        .and_then(|v| v.as_u64())
        .ok_or_else(|| Error::config(cfg_file, "r", "missing or not a positive integer"))?
        as usize;
    let settings = LoraSettings {
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
    let file = &a.weights_file;
    let (tensors, modules) = read_tensors(
        &a.weights,
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
    let model = attach(model, &cfg, Some(&modules))?;
    set_tensors(model, &tensors, file, &lora_key)
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
