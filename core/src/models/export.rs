//! Writing a model back as a HF `model.safetensors`: HF names, PyTorch layouts (Linear weights
//! `[out, in]`), tied tensors left out as HF leaves them out. Used by `merge`.

use super::Model;
use crate::error::{Error, Result};
use burn::module::{Module, ModuleVisitor, Param};
use burn::tensor::Tensor;

/// normtune module path → HF name: the inverse of the loaders' remaps (`layer_norm` →
/// `LayerNorm`, a text attention's `self_attn` → `self`, LayerNorm `gamma`/`beta` →
/// `weight`/`bias`). ViT paths are transformers 5's own names already.
pub fn hf_name(path: &str) -> String {
    let mut segs: Vec<String> = path.split('.').map(str::to_string).collect();
    for i in 0..segs.len() {
        if segs[i] == "layer_norm" {
            segs[i] = "LayerNorm".into();
        }
        if segs[i] == "self_attn" && i > 0 && (segs[i - 1] == "attention" || segs[i - 1] == "crossattention") {
            segs[i] = "self".into();
        }
    }
    if let Some(last) = segs.last_mut() {
        match last.as_str() {
            "gamma" => *last = "weight".into(),
            "beta" => *last = "bias".into(),
            _ => {}
        }
    }
    segs.join(".")
}

/// Every parameter as `(HF name, PyTorch shape, f32 values)`, in module order.
pub fn hf_tensors(model: &Model) -> Vec<(String, Vec<usize>, Vec<f32>)> {
    #[derive(Default)]
    struct V {
        path: Vec<String>,
        containers: Vec<String>,
        out: Vec<(String, Vec<usize>, Vec<f32>)>,
    }
    impl ModuleVisitor for V {
        fn enter_module(&mut self, name: &str, container_type: &str) {
            if !container_type.starts_with("Enum") {
                self.path.push(name.to_string());
            }
            self.containers.push(container_type.to_string());
        }
        fn exit_module(&mut self, _name: &str, container_type: &str) {
            if !container_type.starts_with("Enum") {
                self.path.pop();
            }
            self.containers.pop();
        }
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            let t = param.val();
            let is_linear_weight = D == 2
                && self.path.last().is_some_and(|l| l == "weight")
                && self.containers.last().is_some_and(|c| c == "Struct:Linear");
            let (shape, vals) = if is_linear_weight {
                let t = t.transpose();
                (t.dims().to_vec(), t.into_data().iter::<f32>().collect())
            } else {
                (t.dims().to_vec(), t.into_data().iter::<f32>().collect())
            };
            self.out.push((hf_name(&self.path.join(".")), shape, vals));
        }
    }
    let mut v = V::default();
    model.visit(&mut v);
    v.out
}

/// Serialises named f32 tensors as safetensors with `{"format": "pt"}` metadata.
pub fn safetensors_bytes(tensors: &[(String, Vec<usize>, Vec<f32>)], file: &str) -> Result<Vec<u8>> {
    let raw: Vec<(String, Vec<usize>, Vec<u8>)> =
        tensors.iter().map(|(k, s, v)| (k.clone(), s.clone(), v.iter().flat_map(|x| x.to_le_bytes()).collect())).collect();
    let views: Vec<(String, safetensors::tensor::TensorView)> = raw
        .iter()
        .map(|(k, s, b)| safetensors::tensor::TensorView::new(safetensors::Dtype::F32, s.clone(), b).map(|v| (k.clone(), v)))
        .collect::<std::result::Result<_, _>>()
        .map_err(|e| Error::Input(format!("{file}: {e}")))?;
    let meta = std::collections::HashMap::from([("format".to_string(), "pt".to_string())]);
    safetensors::serialize(views, Some(meta)).map_err(|e| Error::Input(format!("{file}: {e}")))
}

/// The model as a HF `model.safetensors`.
pub fn to_safetensors(model: &Model) -> Result<Vec<u8>> {
    safetensors_bytes(&hf_tensors(model), "model.safetensors")
}
