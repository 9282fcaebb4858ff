//! Writing a model back as a HF `model.safetensors`: HF names, PyTorch layouts (Linear weights
//! `[out, in]`), tied tensors left out as HF leaves them out. Used by `merge`.

use super::Model;
use crate::error::{Error, Result};

/// normtune module path → HF name: the inverse of the loaders' remaps (`layer_norm` →
/// `LayerNorm`, a text attention's `self_attn` → `self`, LayerNorm `gamma`/`beta` →
/// `weight`/`bias`, LLaVA's transformers 5 run-time names). ViT paths are transformers 5's own
/// names already.
pub fn hf_name(path: &str) -> String {
    let mut segs: Vec<String> = path.split('.').map(str::to_string).collect();
    for i in 0..segs.len() {
        if segs[i] == "layer_norm" {
            segs[i] = "LayerNorm".into();
        }
        if segs[i] == "self_attn"
            && i > 0
            && (segs[i - 1] == "attention" || segs[i - 1] == "crossattention")
        {
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
    llava_runtime_name(&segs.join("."))
}

/// A LLaVA checkpoint name as transformers ≥ 5 names the module at run time (what peft writes in
/// adapters): `model.language_model.…`, `model.vision_tower.…`, `model.multi_modal_projector.…`,
/// `lm_head.…`. transformers 4's names (`language_model.model.…`, `vision_tower.vision_model.…`)
/// are rewritten the same way; other names are returned as they are.
pub fn llava_runtime_name(name: &str) -> String {
    const RULES: &[(&str, &str)] = &[
        ("language_model.model.", "model.language_model."),
        ("language_model.lm_head.", "lm_head."),
        ("vision_tower.vision_model.", "model.vision_tower."),
        ("vision_tower.", "model.vision_tower."),
        ("multi_modal_projector.", "model.multi_modal_projector."),
    ];
    for (from, to) in RULES {
        if let Some(rest) = name.strip_prefix(from) {
            return format!("{to}{rest}");
        }
    }
    name.to_string()
}

/// Every parameter as `(HF name, PyTorch shape, f32 values)`, in module order.
pub fn hf_tensors(model: &Model) -> Vec<(String, Vec<usize>, Vec<f32>)> {
    super::walk::params(model, |_, _, _| true)
        .into_iter()
        .map(|r| {
            let name = hf_name(&r.dotted());
            let is_linear_weight = r.shape.len() == 2
                && r.path.last().is_some_and(|l| l == "weight")
                && r.container == "Struct:Linear";
            let values = r.values.unwrap_or_default();
            if is_linear_weight {
                // burn keeps Linear weights as [in, out]; PyTorch as [out, in].
                let (shape, t) = super::walk::transposed(&r.shape, &values);
                (name, shape, t)
            } else {
                (name, r.shape, values)
            }
        })
        .collect()
}

/// Serialises named f32 tensors as safetensors with `{"format": "pt"}` metadata.
pub fn safetensors_bytes(
    tensors: &[(String, Vec<usize>, Vec<f32>)],
    file: &str,
) -> Result<Vec<u8>> {
    safetensors_bytes_as(tensors, file, false)
}

/// As [`safetensors_bytes`], stored as f16 when `half` (rounded to nearest; values beyond
/// f16's range are refused rather than turned into infinities).
pub fn safetensors_bytes_as(
    tensors: &[(String, Vec<usize>, Vec<f32>)],
    file: &str,
    half: bool,
) -> Result<Vec<u8>> {
    let mut raw: Vec<(String, Vec<usize>, Vec<u8>)> = Vec::with_capacity(tensors.len());
    for (k, s, v) in tensors {
        let bytes = if half {
            if let Some(x) = v.iter().find(|x| x.abs() > 65504.0) {
                return Err(Error::Input(format!(
                    "{file}: tensor `{k}` holds {x}, beyond f16's range"
                )));
            }
            v.iter()
                .flat_map(|&x| ::half::f16::from_f32(x).to_le_bytes())
                .collect()
        } else {
            v.iter().flat_map(|x| x.to_le_bytes()).collect()
        };
        raw.push((k.clone(), s.clone(), bytes));
    }
    let dtype = if half {
        safetensors::Dtype::F16
    } else {
        safetensors::Dtype::F32
    };
    let views: Vec<(String, safetensors::tensor::TensorView)> = raw
        .iter()
        .map(|(k, s, b)| {
            safetensors::tensor::TensorView::new(dtype, s.clone(), b).map(|v| (k.clone(), v))
        })
        .collect::<std::result::Result<_, _>>()
        .map_err(|e| Error::Input(format!("{file}: {e}")))?;
    let meta = std::collections::HashMap::from([("format".to_string(), "pt".to_string())]);
    safetensors::serialize(views, Some(meta)).map_err(|e| Error::Input(format!("{file}: {e}")))
}

/// The model as a HF `model.safetensors`.
pub fn to_safetensors(model: &Model) -> Result<Vec<u8>> {
    safetensors_bytes(&hf_tensors(model), "model.safetensors")
}
