//! Selective methods (full, LayerNorm, FFN, attention, BitFit, frozen): walk every parameter
//! with its HF-style path and set `require_grad` from the component's method.

use super::config::{Method, PeftConfig};
use crate::error::{Error, Result};
use crate::models::Model;
use crate::models::walk::{PathStack, param_paths};
use burn::module::{Module, ModuleMapper, Param};
use burn::tensor::Tensor;

/// The component a parameter path belongs to, from its first segment.
pub fn component_of(path: &[String]) -> &'static str {
    crate::models::ModelConfig::component_of(path)
}

/// Whether `method` trains the parameter at `path` (segments, leaf last), among the model's
/// own parameters (what an in-place method selects; see [`super::registry`]).
pub fn selects(method: Method, path: &[String]) -> bool {
    (super::registry::tuner(method).selects)(path)
}

struct Selector<'a> {
    cfg: &'a PeftConfig,
    path: PathStack,
}

impl Selector<'_> {
    fn trainable(&self) -> bool {
        trainable_at(self.cfg, self.path.segments())
    }
}

/// Whether the parameter at `path` trains under `cfg` (as [`apply`] adjusts it: see
/// [`effective`]).
pub(crate) fn trainable_at(cfg: &PeftConfig, path: &[String]) -> bool {
    {
        let method = cfg.method_for(component_of(path));
        // A parameter a method added (LoRA factors, IA3 vectors, prefixes, adapters) trains
        // under that method only.
        let mut adders = super::registry::adders(path).peekable();
        if adders.peek().is_some() {
            return adders.any(|m| m == method);
        }
        if cfg
            .modules_to_save
            .iter()
            .any(|m| path.iter().any(|s| s == m))
        {
            return true;
        }
        selects(method, path)
    }
}

/// `cfg` as [`apply`] applies it to a model with these components: a classifier's head trains
/// fully unless the placement names it (as HF peft does).
pub(crate) fn effective(cfg: &PeftConfig, components: &[&str]) -> PeftConfig {
    let mut cfg = cfg.clone();
    if components.iter().any(|c| cfg.head_unplaced(c))
        && !cfg.modules_to_save.iter().any(|m| m == "classifier")
    {
        cfg.modules_to_save.push("classifier".into());
    }
    cfg
}

impl ModuleMapper for Selector<'_> {
    fn enter_module(&mut self, name: &str, container_type: &str) {
        self.path.enter(name, container_type);
    }
    fn exit_module(&mut self, _name: &str, container_type: &str) {
        self.path.exit(container_type);
    }
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let grad = self.trainable();
        param.set_require_grad(grad)
    }
}

/// Applies `cfg`: every parameter of the model is frozen except those its component's method
/// (or `modules_to_save`) selects. A classifier's head trains fully unless the config names it.
pub fn apply(model: Model, cfg: &PeftConfig) -> Result<Model> {
    let components: Vec<&str> = model.components().iter().map(|c| c.name).collect();
    for comp in cfg.placement.keys() {
        if !components.contains(&comp.as_str()) {
            return Err(Error::Input(format!(
                "this model has no `{comp}` component (it has: {})",
                components.join(", ")
            )));
        }
    }
    let cfg = effective(cfg, &components);
    let known = param_paths(&model);
    for m in &cfg.modules_to_save {
        if !known.iter().any(|p| p.split('.').any(|s| s == m)) {
            return Err(Error::Input(format!(
                "modules_to_save: no module named `{m}` in this model"
            )));
        }
    }
    let used: Vec<Method> = components.iter().map(|c| cfg.method_for(c)).collect();
    let mut model = model;
    for step in super::registry::attach_steps(&used) {
        model = (step.run)(model, &cfg)?;
    }
    let mut selector = Selector {
        cfg: &cfg,
        path: PathStack::default(),
    };
    Ok(model.map(&mut selector))
}

/// Checks that every component `cfg` gives a method `in_group` is one of `places` (where this
/// model has modules for the method to attach to), a classifier's unplaced head aside (it trains
/// fully); the error names the method and the first component that has no place.
pub(crate) fn check_places(
    model: &Model,
    cfg: &PeftConfig,
    in_group: impl Fn(Method) -> bool,
    places: &[&str],
) -> Result<()> {
    for comp in model.components().iter().map(|c| c.name) {
        let method = cfg.method_for(comp);
        if cfg.head_unplaced(comp) || !in_group(method) || places.contains(&comp) {
            continue;
        }
        return Err(Error::Input(if places.is_empty() {
            format!(
                "`{}` is not implemented for this model: it has no place for it in `{comp}`",
                method.name()
            )
        } else {
            format!(
                "`{}` is available for this model's {}, not `{comp}`",
                method.name(),
                places.join(", ")
            )
        }));
    }
    Ok(())
}
