//! Frozen weights in half precision (`frozen_dtype = "f16"` in a run config): what a 7B user
//! needs to fit one GPU next to LayerNorm tuning. The LLaVA language model's frozen `Linear` and
//! embedding weights are stored as f16 or bf16 and applied in that dtype (`x` cast down, the
//! product cast back to f32; `gemm`'s f16 kernels accumulate in f32 on the CPU); norms, the
//! residual stream, attention scores, the loss and every trainable parameter stay f32. Weights
//! that train or carry a LoRA adapter are left in f32.

use crate::error::Result;
use crate::models::Model;
use crate::models::walk::FrozenDtype;

/// `model` with its language model's frozen weights stored as `dtype` (after PEFT is applied,
/// so what trains is known), and how many values were converted.
pub fn store_frozen(model: Model, dtype: FrozenDtype) -> Result<(Model, usize)> {
    model.store_frozen(dtype)
}

/// How many values [`store_frozen`] would convert under `cfg`, from shapes alone (the memory
/// estimate; the model may be uninitialised).
pub fn castable(model: &Model, cfg: &super::PeftConfig) -> usize {
    let names: Vec<&str> = model.components().iter().map(|c| c.name).collect();
    let cfg = super::select::effective(cfg, &names);
    model.frozen_castable(&|path| super::select::trainable_at(&cfg, path))
}
