//! The base model behind an adapter (HF peft's `disable_adapter()`): every module a method
//! added is taken out again (IA3 vectors, prefixes, bottleneck adapters) and every LoRA update
//! is zeroed (burn keeps the frozen base weight under the LoRA factors, so `base + 0` is the
//! base exactly; a DoRA magnitude is also reset to the base's row norms, making its scale 1).
//! Methods that train base weights in place (LayerNorm tuning, FFN, attention, BitFit, full)
//! have no base left to return: for those, load the base model again.

use super::config::{Method, PeftConfig};
use crate::error::{Error, Result};
use crate::models::Model;
use crate::models::walk::PathStack;
use burn::module::{Module, ModuleMapper, Param};
use burn::tensor::Tensor;

/// A copy of `model` (trained with `cfg`) with its adapter switched off; `model` is unchanged.
pub fn disabled(model: &Model, cfg: &PeftConfig) -> Result<Model> {
    let components: Vec<&str> = model.components().iter().map(|c| c.name).collect();
    let in_place: Vec<String> = components
        .iter()
        .filter(|c| {
            let m = cfg.method_for(c);
            !m.adds_parameters() && m != Method::Frozen && !cfg.head_unplaced(c)
        })
        .map(|c| format!("{c}={}", cfg.method_for(c).name()))
        .collect();
    if !in_place.is_empty() || !cfg.modules_to_save.is_empty() {
        return Err(Error::Input(format!(
            "{} trains base weights in place, so there is no adapter to switch off: load the base model again to compare",
            if in_place.is_empty() {
                "modules_to_save".to_string()
            } else {
                in_place.join(", ")
            }
        )));
    }
    let mut m = model.clone();
    m.set_vision_adapters(None);
    for (_, text) in m.text_models_mut() {
        text.prefix = None;
        for layer in &mut text.encoder.layer {
            let mut atts = vec![&mut layer.attention];
            if let Some(ca) = &mut layer.crossattention {
                atts.push(ca);
            }
            for a in atts {
                a.self_attn.key_ia3 = None;
                a.self_attn.value_ia3 = None;
                a.output.dense_ia3 = None;
                a.output.adapter = None;
            }
            layer.output.dense_ia3 = None;
            layer.output.adapter = None;
        }
    }
    struct ZeroLoraB {
        path: PathStack,
        last_weight: Option<Tensor<2>>,
    }
    impl ModuleMapper for ZeroLoraB {
        fn enter_module(&mut self, name: &str, container_type: &str) {
            self.path.enter(name, container_type);
        }
        fn exit_module(&mut self, _name: &str, container_type: &str) {
            self.path.exit(container_type);
        }
        fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
            let segs = self.path.segments();
            let n = segs.len();
            if n >= 2 && matches!(segs[n - 2].as_str(), "lora" | "dora") && segs[n - 1] == "b" {
                param.map(|t| t.zeros_like())
            } else if n >= 2 && segs[n - 2] == "dora" && segs[n - 1] == "magnitude" {
                // With `B = 0` and the magnitude reset to the base's row norms, DoRA's scale is
                // exactly 1 (the base weight is visited just before its adapter's tensors).
                match self.last_weight.clone() {
                    Some(w) => param.map(|t| {
                        let shape = t.shape();
                        super::dora::row_norms(w.cast(t.dtype())).reshape(shape)
                    }),
                    None => param,
                }
            } else {
                if D == 2 && segs.last().is_some_and(|l| l == "weight") {
                    let t = param.val();
                    let d = t.dims();
                    self.last_weight = Some(t.reshape([d[0], d[D - 1]]));
                }
                param
            }
        }
    }
    Ok(m.map(&mut ZeroLoraB {
        path: PathStack::default(),
        last_weight: None,
    }))
}
