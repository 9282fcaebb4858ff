//! Frozen weights in half precision (`frozen_dtype = "f16"` in a run config): what a 7B user
//! needs to fit one GPU next to LayerNorm tuning. The LLaVA language model's frozen `Linear` and
//! embedding weights are stored as f16 or bf16 and applied in that dtype (`x` cast down, the
//! product cast back to f32; `gemm`'s f16 kernels accumulate in f32 on the CPU); norms, the
//! residual stream, attention scores, the loss and every trainable parameter stay f32. Weights
//! that train or carry a LoRA adapter are left in f32.

use crate::error::{Error, Result};
use crate::models::Model;
use crate::models::walk::{self, FrozenDtype};

/// `model` with its language model's frozen weights stored as `dtype` (after PEFT is applied,
/// so what trains is known), and how many values were converted.
pub fn store_frozen(model: Model, dtype: FrozenDtype) -> Result<(Model, usize)> {
    match model {
        Model::Llava(mut m) => {
            // A device that cannot compute in the dtype (WGSL has no bf16; an adapter without
            // `shader-f16` no f16) would fail compiling the first kernel, on a device thread.
            let device = m.language_model.model.embed_tokens.weight.device();
            if !device.supports_dtype(dtype.dtype()) {
                return Err(Error::Input(format!(
                    "frozen_dtype = \"{}\": this device cannot compute in {} (wgpu's WGSL has no \
                     bf16, and f16 needs an adapter with shader-f16); use {} or leave it unset",
                    dtype.name(),
                    dtype.name(),
                    if matches!(dtype, FrozenDtype::Bf16) {
                        "f16"
                    } else {
                        "bf16 on the CPU"
                    },
                )));
            }
            let (lm, n) = walk::store_frozen(m.language_model, dtype.dtype());
            m.language_model = lm;
            Ok((Model::Llava(m), n))
        }
        _ => Err(Error::Input(
            "frozen_dtype: implemented for LLaVA-style models (their language model) only so far"
                .into(),
        )),
    }
}

/// How many values [`store_frozen`] would convert under `cfg`, from shapes alone (the memory
/// estimate; the model may be uninitialised).
pub fn castable(model: &Model, cfg: &super::PeftConfig) -> usize {
    let Model::Llava(m) = model else {
        return 0;
    };
    let names: Vec<&str> = model.components().iter().map(|c| c.name).collect();
    let cfg = super::select::effective(cfg, &names);
    walk::frozen_castable(&m.language_model, &["language_model"], |path| {
        super::select::trainable_at(&cfg, path)
    })
}
