//! How much memory training will take, before it starts (`normtune inspect --estimate-memory`):
//! the weights, the trainable parameters' gradients and optimizer state, and the activations
//! burn's autodiff keeps for the backward pass.
//!
//! Activations are counted from what the backward pass of each operation in normtune's forward
//! keeps (burn 0.22, no checkpointing), with frozen weights: a matmul by a frozen weight keeps
//! nothing of its input; a norm keeps its input and its normalised output; attention keeps the
//! (rotated) queries, keys and values and two `[batch, heads, len, len]` tensors (softmax's
//! output and the exponentials under it); SwiGLU keeps four `[batch, len, intermediate]` tensors,
//! GELU-style MLPs two. Only components on the way back from the loss to the first trainable
//! parameter keep activations: with the tower frozen, its forward keeps nothing. Checked against
//! the measured peak on the CPU (`tests/tests/memory_estimate.rs`).

use super::{Model, ModelConfig};
use crate::error::{Error, Result};
use crate::peft::TrainableReport;
use serde::Serialize;

/// Bytes per f32.
const F32: u64 = 4;

/// A training run's memory, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct MemoryEstimate {
    /// Every parameter: f32, or 2 bytes for frozen weights kept in half precision.
    pub weights: u64,
    /// Gradients of the trainable parameters, and the accumulator that sums them over
    /// micro-batches.
    pub gradients: u64,
    /// AdamW's two moments per trainable parameter.
    pub optimizer: u64,
    /// What the forward pass keeps for the backward pass, at the peak (the start of backward).
    pub activations: u64,
    /// The sum.
    pub total: u64,
}

/// One stack of transformer layers as the estimate sees it.
struct Stack {
    layers: u64,
    hidden: u64,
    intermediate: u64,
    heads: u64,
    len: u64,
    /// `[batch, len, intermediate]` tensors its MLP keeps (SwiGLU 4, GELU / quick GELU 2).
    mlp_keeps: u64,
}

impl Stack {
    /// Floats kept per example: every layer's kept tensors, and once the gradients the backward
    /// pass of one layer holds at a time (of the attention probabilities, three
    /// `[heads, len, len]`; of the MLP, two `[len, intermediate]`).
    fn floats(&self) -> u64 {
        let (l, h, i) = (self.len, self.hidden, self.intermediate);
        // Two norms (input, output each), queries, keys, values: 7 of [len, hidden].
        let per_layer = 7 * l * h + self.mlp_keeps * l * i + 2 * self.heads * l * l;
        let transient = 3 * self.heads * l * l + 2 * l * i;
        self.layers * per_layer + u64::from(self.layers > 0) * transient
    }
}

/// The training memory of `model` (with its PEFT applied, as `report` counts it) for batches of
/// `batch` examples of `text_len` text tokens each (a LLaVA prompt also holds one token per image
/// feature), the last `answer_len` of them learned (the LM head runs from the position before
/// the answer on). `frozen` is `(values, dtype)` when that many frozen values are stored in a
/// 2-byte dtype (`train.frozen_dtype`, [`crate::peft::frozen::castable`] counts them).
pub fn estimate_training(
    model: &Model,
    config: &ModelConfig,
    report: &TrainableReport,
    batch: usize,
    text_len: usize,
    answer_len: usize,
    frozen: Option<(usize, crate::models::walk::FrozenDtype)>,
) -> Result<MemoryEstimate> {
    let (true, Some(c)) = (model.is_llava(), config.get::<super::llava::LlavaConfig>()) else {
        return Err(Error::Input(
            "the memory estimate is implemented for LLaVA-style models only so far".into(),
        ));
    };
    let trainable = report.trainable_params as u64;
    let weights = report.total_params as u64 * F32
        - frozen.map_or(0, |(n, dt)| n as u64 * (F32 - dt.bytes()));
    let gradients = 2 * trainable * F32;
    let optimizer = 2 * trainable * F32;
    let trains = |name: &str| {
        report
            .components
            .iter()
            .any(|r| r.name == name && r.trainable_params > 0)
    };
    // Activations are kept from the first component that trains onwards.
    let (vision_kept, projector_kept) = (trains("vision"), trains("vision") || trains("projector"));
    let decoder_kept = projector_kept || trains("decoder");
    let b = batch as u64;
    let v = &c.vision_config;
    let t = &c.text_config;
    let patches = ((v.image_size / v.patch_size.max(1)).pow(2) + 1) as u64;
    let image_tokens = c.image_tokens() as u64;
    let len = image_tokens + text_len as u64;
    let mut floats = 0;
    if vision_kept {
        // Every layer runs; the ones past the feature layer feed nothing, and burn drops them.
        let n = v.num_hidden_layers as i64;
        let used = if c.vision_feature_layer < 0 {
            n + 1 + c.vision_feature_layer
        } else {
            c.vision_feature_layer
        };
        floats += b * Stack {
            layers: used.clamp(0, n) as u64,
            hidden: v.hidden_size as u64,
            intermediate: v.intermediate_size as u64,
            heads: v.num_attention_heads as u64,
            len: patches,
            mlp_keeps: 2,
        }
        .floats();
        // The embeddings' and pre_layrnorm's output.
        floats += 2 * b * patches * v.hidden_size as u64;
    }
    if projector_kept {
        // linear_1's input, GELU's input and output.
        floats += b * image_tokens * (v.hidden_size as u64 + 2 * t.hidden_size as u64);
    }
    if decoder_kept {
        floats += b * Stack {
            layers: t.num_hidden_layers as u64,
            hidden: t.hidden_size as u64,
            intermediate: t.intermediate_size as u64,
            heads: t.num_attention_heads as u64,
            len,
            mlp_keeps: 4,
        }
        .floats();
        // The final norm; over the vocabulary (from the position before the answer on), the
        // logits, the log-softmax's exponentials and output, and at the start of backward their
        // gradients: measured 4.3 `[positions, vocab]` tensors per example (4000 to 16000
        // positions), counted as 4.5.
        let head = (answer_len.min(text_len) as u64 + 1).min(len);
        floats += b * len * (2 * t.hidden_size as u64) + b * head * t.vocab_size as u64 * 9 / 2;
    }
    let activations = floats * F32;
    Ok(MemoryEstimate {
        weights,
        gradients,
        optimizer,
        activations,
        total: weights + gradients + optimizer + activations,
    })
}
