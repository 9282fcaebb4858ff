//! Losses as HF computes them: the LM loss of `BlipTextLMHeadModel` (shifted cross-entropy,
//! ignored positions, label smoothing as `torch.nn.CrossEntropyLoss(label_smoothing=ε)`) and the
//! multi-label loss of `ViTForImageClassification` (`BCEWithLogitsLoss`, mean).

use burn::tensor::activation::{log_sigmoid, log_softmax};
use burn::tensor::{Int, Tensor};

/// Next-token cross-entropy: `logits[:, :-1]` against `ids[:, 1:]`, counting only target
/// positions where `mask` is 1; `smoothing` mixes in the uniform distribution
/// (`(1-ε)·nll + ε·mean_v(-log p_v)`). Mean over counted tokens.
///
/// # Shapes
/// - logits: `[batch, len, vocab]`, ids and mask: `[batch, len]` → scalar `[1]`
pub fn lm_loss(
    logits: Tensor<3>,
    ids: Tensor<2, Int>,
    mask: Tensor<2>,
    smoothing: f64,
) -> Tensor<1> {
    let [b, l, v] = logits.dims();
    let logp = log_softmax(logits.narrow(1, 0, l - 1), 2);
    let targets = ids.narrow(1, 1, l - 1).unsqueeze_dim::<3>(2);
    let nll = logp.clone().gather(2, targets).reshape([b, l - 1]).neg();
    let uniform = logp.sum_dim(2).reshape([b, l - 1]).neg() / v as f64;
    let per_token = nll * (1.0 - smoothing) + uniform * smoothing;
    let m = mask.narrow(1, 1, l - 1);
    (per_token * m.clone()).sum() / m.sum()
}

/// `BCEWithLogitsLoss` (mean over every element), the multi-label loss.
///
/// # Shapes
/// - logits, targets (0/1): `[batch, labels]` → scalar `[1]`
pub fn bce_with_logits(logits: Tensor<2>, targets: Tensor<2>) -> Tensor<1> {
    // -[y·log σ(x) + (1-y)·log σ(-x)], stable through log-sigmoid.
    let pos = log_sigmoid(logits.clone()) * targets.clone();
    let neg = log_sigmoid(logits.neg()) * (targets.neg() + 1.0);
    (pos + neg).mean().neg()
}
