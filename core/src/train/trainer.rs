//! The training loop (nanoGPT-style, in core so the browser runs the same code): AdamW with
//! decoupled weight decay, warmup + cosine schedule, gradient accumulation and clipping, label
//! smoothing. `step().await` runs one micro-batch and, every `grad_accum` micro-batches, one
//! optimizer step; it reads back only the loss, asynchronously.

use super::loss::{bce_with_logits, lm_loss};
use super::schedule::Schedule;
use crate::error::{Error, Result};
use crate::models::Model;
use burn::optim::grad_clipping::GradientClippingConfig;
use burn::optim::{AdamWConfig, GradientsAccumulator, GradientsParams, ModuleOptimizer};
use burn::tensor::{Int, Tensor};
use serde::{Deserialize, Serialize};

/// Optimisation settings (defaults: MILE's AdamW, weight decay 0.05, label smoothing 0.1; a
/// learning rate suited to LayerNorm tuning).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrainConfig {
    /// Peak learning rate.
    pub lr: f64,
    /// Final learning rate of the cosine decay.
    pub min_lr: f64,
    /// Linear warmup, in optimizer steps.
    pub warmup_steps: usize,
    /// Total optimizer steps (the cosine reaches `min_lr` there).
    pub total_steps: usize,
    /// AdamW decoupled weight decay.
    pub weight_decay: f64,
    /// Micro-batches per optimizer step.
    pub grad_accum: usize,
    /// Clip the global gradient norm to this value.
    pub max_grad_norm: Option<f64>,
    /// Label smoothing of the LM loss.
    pub label_smoothing: f64,
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            lr: 1e-3,
            min_lr: 0.0,
            warmup_steps: 0,
            total_steps: 1000,
            weight_decay: 0.05,
            grad_accum: 1,
            max_grad_norm: Some(1.0),
            label_smoothing: 0.1,
        }
    }
}

/// One training batch, already on the trainer's device.
#[derive(Debug, Clone)]
pub enum Batch {
    /// Med-VQA: images, questions, answers (answers start with the decoder start token).
    Vqa {
        /// `[batch, 3, h, w]`.
        pixels: Tensor<4>,
        /// `[batch, q_len]`.
        question_ids: Tensor<2, Int>,
        /// `[batch, q_len]`, 0/1.
        question_mask: Tensor<2>,
        /// `[batch, a_len]`.
        answer_ids: Tensor<2, Int>,
        /// `[batch, a_len]`, 0/1.
        answer_mask: Tensor<2>,
    },
    /// Report generation: images and reports (starting with the decoder start token).
    Report {
        /// `[batch, 3, h, w]`.
        pixels: Tensor<4>,
        /// `[batch, len]`.
        ids: Tensor<2, Int>,
        /// `[batch, len]`, 0/1.
        mask: Tensor<2>,
    },
    /// Multi-label classification.
    Classify {
        /// `[batch, channels, h, w]`.
        pixels: Tensor<4>,
        /// `[batch, labels]`, 0/1.
        targets: Tensor<2>,
    },
}

/// What one `step` did.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Event {
    /// Optimizer steps taken so far.
    pub step: usize,
    /// The micro-batch's loss.
    pub loss: f32,
    /// Learning rate of the last optimizer step.
    pub lr: f64,
    /// Whether this micro-batch completed an optimizer step.
    pub applied: bool,
}

/// Owns the model, optimizer and schedule.
pub struct Trainer {
    model: Model,
    optim: ModuleOptimizer,
    accum: GradientsAccumulator<Model>,
    cfg: TrainConfig,
    schedule: Schedule,
    step: usize,
    micro: usize,
    last_lr: f64,
}

impl Trainer {
    /// A trainer for `model`, which must live on an autodiff device with PEFT already applied.
    pub fn new(model: Model, cfg: TrainConfig) -> Result<Self> {
        if cfg.grad_accum == 0 {
            return Err(Error::Input("grad_accum must be at least 1".into()));
        }
        if !(cfg.lr > 0.0) {
            return Err(Error::Input(format!("lr must be positive, got {}", cfg.lr)));
        }
        let optim = AdamWConfig::new()
            .with_weight_decay(cfg.weight_decay as f32)
            .with_grad_clipping(
                cfg.max_grad_norm
                    .map(|n| GradientClippingConfig::Norm(n as f32)),
            )
            .init();
        let schedule = Schedule {
            lr: cfg.lr,
            min_lr: cfg.min_lr,
            warmup_steps: cfg.warmup_steps,
            total_steps: cfg.total_steps,
        };
        Ok(Self {
            model,
            optim,
            accum: GradientsAccumulator::new(),
            cfg,
            schedule,
            step: 0,
            micro: 0,
            last_lr: 0.0,
        })
    }

    /// The model being trained.
    pub fn model(&self) -> &Model {
        &self.model
    }

    /// Consumes the trainer, returning the model.
    pub fn into_model(self) -> Model {
        self.model
    }

    /// The loss of `batch` under the current model (differentiable).
    pub fn loss(&self, batch: &Batch) -> Result<Tensor<1>> {
        let s = self.cfg.label_smoothing;
        match (&self.model, batch) {
            (
                Model::Vqa(m),
                Batch::Vqa {
                    pixels,
                    question_ids,
                    question_mask,
                    answer_ids,
                    answer_mask,
                },
            ) => {
                let image = m.encode_image(pixels.clone());
                let q =
                    m.encode_question(&image, question_ids.clone(), Some(question_mask.clone()));
                let logits = m.answer_logits(
                    &q,
                    Some(question_mask.clone()),
                    answer_ids.clone(),
                    Some(answer_mask.clone()),
                );
                Ok(lm_loss(logits, answer_ids.clone(), answer_mask.clone(), s))
            }
            (Model::Captioner(m), Batch::Report { pixels, ids, mask }) => {
                let image = m.encode_image(pixels.clone());
                Ok(lm_loss(
                    m.text_logits(&image, ids.clone(), Some(mask.clone())),
                    ids.clone(),
                    mask.clone(),
                    s,
                ))
            }
            (Model::Classifier(m), Batch::Classify { pixels, targets }) => {
                Ok(bce_with_logits(m.forward(pixels.clone()), targets.clone()))
            }
            _ => Err(Error::Input(
                "this batch is for a different kind of model (VQA / report / classification)"
                    .into(),
            )),
        }
    }

    /// One micro-batch: forward, backward, and an optimizer step when `grad_accum` micro-batches
    /// have been seen.
    pub async fn step(&mut self, batch: &Batch) -> Result<Event> {
        let loss = self.loss(batch)?;
        let value = loss
            .clone()
            .into_data_async()
            .await
            .map_err(|e| Error::Device(format!("{e:?}")))?
            .iter::<f32>()
            .next()
            .unwrap_or(f32::NAN);
        if !value.is_finite() {
            return Err(Error::Input(format!(
                "the loss is {value} at step {}: lower the learning rate",
                self.step
            )));
        }
        let scaled = loss / self.cfg.grad_accum as f64;
        let grads = GradientsParams::from_grads(scaled.backward(), &self.model);
        self.accum.accumulate(&self.model, grads);
        self.micro += 1;
        let mut applied = false;
        if self.micro == self.cfg.grad_accum {
            self.last_lr = self.schedule.lr_at(self.step);
            self.model = self
                .optim
                .step(self.last_lr, self.model.clone(), self.accum.grads());
            self.step += 1;
            self.micro = 0;
            applied = true;
        }
        Ok(Event {
            step: self.step,
            loss: value,
            lr: self.last_lr,
            applied,
        })
    }
}
