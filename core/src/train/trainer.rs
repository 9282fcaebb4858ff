//! The training loop (nanoGPT-style, in core so the browser runs the same code): AdamW with
//! decoupled weight decay, warmup + cosine schedule, gradient accumulation and clipping, label
//! smoothing. `step().await` runs one micro-batch and, every `grad_accum` micro-batches, one
//! optimizer step; it reads back only the loss, asynchronously.
//!
//! The trainer also owns the data order ([`Plan`]: a seeded permutation per epoch, so a seed fixes
//! it) and where the run is in it ([`Cursor`]); [`Trainer::checkpoint`] writes the trainable
//! tensors, the AdamW state, the cursor and the step, and [`Trainer::resume`] restores them so a
//! resumed run continues bit-identically.

use super::schedule::Schedule;
use crate::error::{Error, Result};
use crate::models::Model;
pub use crate::models::batch::Batch;
pub use crate::models::llava::chat_loss;
use burn::module::Module;
use burn::optim::grad_clipping::GradientClippingConfig;
use burn::optim::{GradientsAccumulator, GradientsParams, ModuleOptimizer};
use burn::tensor::{Device, Tensor};
use serde::{Deserialize, Serialize};

/// Optimisation settings (defaults: MILE's AdamW, weight decay 0.05, label smoothing 0.1; a
/// learning rate suited to LayerNorm tuning).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrainConfig {
    /// Peak learning rate (`learning_rate` is accepted too).
    #[serde(alias = "learning_rate")]
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
    /// burn's gradient checkpointing (its `Balanced` strategy: memory-bound operations are
    /// recomputed in the backward pass instead of kept): less activation memory for a little
    /// compute. Applied by [`super::Run`] when it makes the training device.
    pub gradient_checkpointing: bool,
    /// Attention keeps `q`, `k` and `v` and recomputes its probabilities in the backward pass
    /// instead of keeping every layer's `[batch, heads, q_len, k_len]` probabilities (like
    /// PyTorch's memory-efficient SDPA backward): the same losses and gradients, less memory,
    /// one more `q kᵀ` and softmax per layer. Set process-wide by [`Trainer::new`]
    /// ([`crate::models::common::set_attention_recompute`]).
    pub recompute_attention: bool,
    /// Store the frozen weights of a LLaVA model's language model in half precision (`"f16"` or
    /// `"bf16"`; see [`crate::peft::frozen`]): half their memory. Applied by [`super::Run`] after
    /// PEFT; `None` keeps everything in f32.
    pub frozen_dtype: Option<crate::models::walk::FrozenDtype>,
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
            gradient_checkpointing: false,
            recompute_attention: false,
            frozen_dtype: None,
        }
    }
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

/// The data order of a run: `epochs` passes over `examples` examples in micro-batches of
/// `batch_size`, each epoch a permutation drawn from `seed` (SplitMix64-driven Fisher-Yates).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    /// Training examples.
    pub examples: usize,
    /// Examples per micro-batch.
    pub batch_size: usize,
    /// Passes over the data.
    pub epochs: usize,
    /// Seed of the order.
    pub seed: u64,
}

impl Plan {
    /// Micro-batches per epoch.
    pub fn batches_per_epoch(&self) -> usize {
        self.examples.div_ceil(self.batch_size.max(1))
    }
    /// Micro-batches in the whole run.
    pub fn total_batches(&self) -> usize {
        self.batches_per_epoch() * self.epochs
    }
    /// Optimizer steps in the whole run.
    pub fn optimizer_steps(&self, grad_accum: usize) -> usize {
        self.total_batches().div_ceil(grad_accum.max(1))
    }
    /// The example order of `epoch`.
    pub fn order(&self, epoch: usize) -> Vec<usize> {
        let mut state = self.seed ^ (epoch as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        let mut next = || {
            state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        };
        let mut idx: Vec<usize> = (0..self.examples).collect();
        for i in (1..self.examples).rev() {
            idx.swap(i, (next() % (i as u64 + 1)) as usize);
        }
        idx
    }
}

/// Where a run is in its [`Plan`]: the next micro-batch to take.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cursor {
    /// Epoch of the next micro-batch.
    pub epoch: usize,
    /// Index of the next micro-batch within the epoch.
    pub batch: usize,
}

/// The next micro-batch of a run.
#[derive(Debug, Clone, PartialEq)]
pub struct Next {
    /// Its epoch.
    pub epoch: usize,
    /// Whether it is the epoch's last micro-batch.
    pub ends_epoch: bool,
    /// The example indices.
    pub indices: Vec<usize>,
}

/// File names inside a checkpoint.
pub const CHECKPOINT_FILES: [&str; 3] = ["trainer.json", "trainable.safetensors", "optimizer.bpk"];

/// The JSON part of a checkpoint.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct CheckpointState {
    format: String,
    step: usize,
    last_lr: f64,
    cursor: Cursor,
    plan: Option<Plan>,
    config: TrainConfig,
    /// burn parameter id of each trainable tensor, by name.
    ids: std::collections::BTreeMap<String, u64>,
}

const CHECKPOINT_FORMAT: &str = "normtune-checkpoint-1";

/// Owns the model, optimizer, schedule, data order and position.
pub struct Trainer {
    /// `None` only while an optimizer step holds it (so the parameters it updates are not
    /// shared and the CPU AdamW updates them in place; see [`held`]).
    model: Option<Model>,
    optim: ModuleOptimizer,
    accum: GradientsAccumulator<Model>,
    cfg: TrainConfig,
    schedule: Schedule,
    step: usize,
    micro: usize,
    last_lr: f64,
    plan: Option<Plan>,
    cursor: Cursor,
    /// The current epoch's example order (drawn once per epoch, not per micro-batch).
    order: Option<(usize, Vec<usize>)>,
    /// Whether a whole-step micro-batch on the CPU updates each parameter inside the backward
    /// pass (the default; same results, less memory).
    in_backward: bool,
    /// Parameters the last such step updated only after the pass (their gradient's last part
    /// not seen; for the tests); `None` before the first such step.
    #[cfg_attr(not(test), allow(dead_code))]
    updated_late: Option<usize>,
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
        crate::models::common::set_attention_recompute(cfg.recompute_attention);
        let mut optim =
            ModuleOptimizer::from(super::adamw::FusedAdamW::new(cfg.weight_decay as f32));
        if let Some(n) = cfg.max_grad_norm {
            optim = optim.with_grad_clipping(GradientClippingConfig::Norm(n as f32).init());
        }
        let schedule = Schedule {
            lr: cfg.lr,
            min_lr: cfg.min_lr,
            warmup_steps: cfg.warmup_steps,
            total_steps: cfg.total_steps,
        };
        Ok(Self {
            model: Some(model),
            optim,
            accum: GradientsAccumulator::new(),
            cfg,
            schedule,
            step: 0,
            micro: 0,
            last_lr: 0.0,
            plan: None,
            cursor: Cursor::default(),
            in_backward: true,
            updated_late: None,
            order: None,
        })
    }

    /// Gives the trainer a data order to hand out with [`Trainer::next_batch`].
    pub fn with_plan(mut self, plan: Plan) -> Result<Self> {
        if plan.examples == 0 || plan.batch_size == 0 || plan.epochs == 0 {
            return Err(Error::Input(format!(
                "nothing to train: {} examples, batch size {}, {} epochs",
                plan.examples, plan.batch_size, plan.epochs
            )));
        }
        self.plan = Some(plan);
        Ok(self)
    }

    /// The example indices of the next micro-batch (advancing the cursor), or `None` when the
    /// plan is done.
    pub fn next_batch(&mut self) -> Option<Next> {
        let plan = self.plan?;
        if self.cursor.epoch >= plan.epochs {
            return None;
        }
        if self
            .order
            .as_ref()
            .is_none_or(|(e, _)| *e != self.cursor.epoch)
        {
            self.order = Some((self.cursor.epoch, plan.order(self.cursor.epoch)));
        }
        let order = &self.order.as_ref().expect("drawn above").1;
        let start = self.cursor.batch * plan.batch_size;
        let indices = order[start..(start + plan.batch_size).min(plan.examples)].to_vec();
        let epoch = self.cursor.epoch;
        self.cursor.batch += 1;
        let ends_epoch = self.cursor.batch == plan.batches_per_epoch();
        if ends_epoch {
            self.cursor = Cursor {
                epoch: epoch + 1,
                batch: 0,
            };
        }
        Some(Next {
            epoch,
            ends_epoch,
            indices,
        })
    }

    /// Where the run is.
    pub fn cursor(&self) -> Cursor {
        self.cursor
    }

    /// Optimizer steps taken.
    pub fn steps_done(&self) -> usize {
        self.step
    }

    /// The optimisation settings.
    pub fn config(&self) -> &TrainConfig {
        &self.cfg
    }

    /// Everything needed to continue bit-identically, as files: the trainable tensors, the AdamW
    /// state and the step / cursor. Only between optimizer steps (not mid-accumulation).
    /// Reads parameter values back synchronously, so call it natively.
    pub fn checkpoint(&self) -> Result<Vec<(String, Vec<u8>)>> {
        if self.micro != 0 {
            return Err(Error::Input(format!(
                "a checkpoint is only taken between optimizer steps ({} of {} micro-batches accumulated)",
                self.micro, self.cfg.grad_accum
            )));
        }
        let tensors = crate::peft::io::trainable_tensors(self.model());
        let ids = tensors
            .iter()
            .map(|(k, _, _, id)| (k.clone(), *id))
            .collect();
        let named: Vec<(String, Vec<usize>, Vec<f32>)> =
            tensors.into_iter().map(|(k, s, v, _)| (k, s, v)).collect();
        let weights = crate::models::export::safetensors_bytes(&named, CHECKPOINT_FILES[1])?;
        let optim = self
            .optim
            .into_bytes()
            .map_err(|e| Error::Input(format!("cannot serialise the optimizer state: {e:?}")))?;
        let state = CheckpointState {
            format: CHECKPOINT_FORMAT.into(),
            step: self.step,
            last_lr: self.last_lr,
            cursor: self.cursor,
            plan: self.plan,
            config: self.cfg.clone(),
            ids,
        };
        let json =
            serde_json::to_vec_pretty(&state).map_err(|e| Error::json(CHECKPOINT_FILES[0], e))?;
        Ok(vec![
            (CHECKPOINT_FILES[0].to_string(), json),
            (CHECKPOINT_FILES[1].to_string(), weights),
            (CHECKPOINT_FILES[2].to_string(), optim.to_vec()),
        ])
    }

    /// Continues a run from [`Trainer::checkpoint`]'s files: `model` is the base model on the
    /// autodiff device with the run's PEFT config applied; `plan` and `cfg` must be the run's
    /// (a changed batch size, seed, epoch count or optimiser setting is refused, as the
    /// continuation would not be the same run).
    pub async fn resume(
        model: Model,
        cfg: TrainConfig,
        plan: Plan,
        src: &impl crate::source::FileSource,
    ) -> Result<Self> {
        let file = src.describe(CHECKPOINT_FILES[0]);
        let state: CheckpointState = serde_json::from_slice(&src.read(CHECKPOINT_FILES[0]).await?)
            .map_err(|e| Error::json(&file, e))?;
        if state.format != CHECKPOINT_FORMAT {
            return Err(Error::config(
                &file,
                "format",
                format!("`{}` is not {CHECKPOINT_FORMAT}", state.format),
            ));
        }
        if state.plan != Some(plan) {
            return Err(Error::config(
                &file,
                "plan",
                format!(
                    "the checkpoint was taken with {:?}, this run has {plan:?}: resume with the run's own config",
                    state.plan
                ),
            ));
        }
        if state.config != cfg {
            return Err(Error::config(
                &file,
                "config",
                "the optimiser settings differ from the checkpoint's: resume with the run's own config",
            ));
        }
        let wfile = src.describe(CHECKPOINT_FILES[1]);
        let model = crate::peft::io::restore_trainable(
            model,
            &src.read(CHECKPOINT_FILES[1]).await?,
            &wfile,
            &state.ids,
        )?;
        let mut t = Self::new(model, cfg)?.with_plan(plan)?;
        let ofile = src.describe(CHECKPOINT_FILES[2]);
        let bytes = src.read(CHECKPOINT_FILES[2]).await?;
        t.optim = t
            .optim
            .from_bytes(burn::tensor::Bytes::from_bytes_vec(bytes))
            .map_err(|e| Error::Weights {
                file: ofile,
                reason: format!("not an optimizer state: {e:?}"),
            })?;
        t.step = state.step;
        t.last_lr = state.last_lr;
        t.cursor = state.cursor;
        Ok(t)
    }

    /// The model being trained.
    pub fn model(&self) -> &Model {
        held(&self.model)
    }

    /// Consumes the trainer, returning the model.
    pub fn into_model(self) -> Model {
        self.model
            .expect("the model is only taken during an optimizer step")
    }

    /// Whether an optimizer step that is one micro-batch runs inside the backward pass on the CPU
    /// (default on): each parameter is updated as soon as its gradient is final, so the
    /// gradients never all exist at once. The results are the same bit for bit; off, every
    /// gradient is held until the end of the pass (for comparing the two).
    pub fn set_optimizer_in_backward(&mut self, on: bool) {
        self.in_backward = on;
    }

    /// The loss of `batch` under the current model (differentiable).
    pub fn loss(&self, batch: &Batch) -> Result<Tensor<1>> {
        self.model().forward_loss(batch, self.cfg.label_smoothing)
    }

    /// One micro-batch: forward, backward, and an optimizer step when `grad_accum` micro-batches
    /// have been seen.
    pub async fn step(&mut self, batch: &Batch) -> Result<Event> {
        // Random draws inside the step (LoRA dropout) come from the device RNG, seeded from the
        // run's seed and the position in the plan, so a resumed run draws the same masks.
        if let Some(seed) = self.step_seed() {
            batch.device().seed(seed);
        }
        let loss = self.loss(batch)?;
        let value = self.finite_loss(&loss).await?;
        #[cfg(feature = "flex")]
        if self.cfg.grad_accum == 1 && self.in_backward && super::in_backward::applies(self.model())
        {
            // The optimizer step inside the backward pass: the same update, without holding
            // every gradient at once (`in_backward`).
            let mut late = 0;
            self.optimizer_step(|optim, lr, model| {
                let (model, n) = super::in_backward::step(model, optim, lr, loss);
                late = n;
                model
            });
            self.updated_late = Some(late);
            return Ok(Event {
                step: self.step,
                loss: value,
                lr: self.last_lr,
                applied: true,
            });
        }
        let scaled = loss / self.cfg.grad_accum as f64;
        let grads = GradientsParams::from_grads(scaled.backward(), self.model());
        self.accum.accumulate(held(&self.model), grads);
        Ok(self.end_micro_batch(value))
    }

    /// The loss's value, or an error if it is not finite (a diverging run).
    async fn finite_loss(&self, loss: &Tensor<1>) -> Result<f32> {
        let data = loss
            .clone()
            .into_data_async()
            .await
            .map_err(Error::device)?;
        let value = loss_value(data);
        if !value.is_finite() {
            return Err(self.diverged(value));
        }
        Ok(value)
    }

    /// The error for a loss that is not finite.
    fn diverged(&self, value: f32) -> Error {
        Error::Input(format!(
            "the loss is {value} at step {}: lower the learning rate",
            self.step
        ))
    }

    /// Counts a micro-batch whose gradients are accumulated; takes the optimizer step when
    /// `grad_accum` of them have been seen.
    fn end_micro_batch(&mut self, loss: f32) -> Event {
        self.micro += 1;
        let applied = self.micro == self.cfg.grad_accum;
        if applied {
            let grads = self.accum.grads();
            self.optimizer_step(|optim, lr, model| optim.step(lr, model, grads));
            self.micro = 0;
        }
        Event {
            step: self.step,
            loss,
            lr: self.last_lr,
            applied,
        }
    }

    /// One optimizer step at the schedule's learning rate: `update` maps the model with the
    /// optimizer. The model is moved, not cloned, into it: a parameter held twice would be
    /// copied before the CPU AdamW could update it in place.
    fn optimizer_step(&mut self, update: impl FnOnce(&mut ModuleOptimizer, f64, Model) -> Model) {
        self.last_lr = self.schedule.lr_at(self.step);
        let model = self.model.take().expect("the model is there between steps");
        self.model = Some(update(&mut self.optim, self.last_lr, model));
        self.step += 1;
    }

    /// As [`Self::step`], data-parallel over `devices` (autodiff devices; the first is the
    /// model's): the micro-batch is split into one shard per device, each device runs forward and
    /// backward on a fork of the model, the gradients are moved to the model's device and summed,
    /// and one optimizer step updates the model there (burn-train's multi-device strategy, with
    /// burn's `fork`, `GradientsParams::to_device` and `GradientsAccumulator`). Each shard's loss
    /// is weighted by its share of what the loss averages over (answer or report tokens, labels),
    /// so the summed gradient is the whole batch's: the result equals one device's step on the
    /// same batch, up to float rounding.
    ///
    /// Natively the replicas run concurrently, one thread each (each fork has its own autodiff
    /// graph, so their backward passes do not share a lock). The result does not depend on the
    /// threads' timing: the forward passes, where random draws happen (LoRA dropout), take turns
    /// in device order, each after seeding the RNG from the run's seed, the position in the plan
    /// and the replica, and the gradients are summed in device order. In the browser (one thread)
    /// they run one after another, with the same seeds and order, so the same result.
    pub async fn step_parallel(&mut self, batch: &Batch, devices: &[Device]) -> Result<Event> {
        if devices.len() <= 1 {
            return self.step(batch).await;
        }
        let shards = batch.shards(devices.len()).await?;
        let total: f64 = shards.iter().map(|(_, w)| w).sum();
        if !(total > 0.0) {
            return Err(Error::Input("the batch has nothing to learn from".into()));
        }
        // Each shard's share of what the batch's loss averages over.
        let shares: Vec<f64> = shards.iter().map(|(_, w)| w / total).collect();
        let step_seed = self.step_seed();
        let replicas: Vec<Replica> = shards
            .into_iter()
            .zip(devices)
            .zip(&shares)
            .enumerate()
            .map(|(i, (((shard, _), device), share))| Replica {
                model: self.model().clone(),
                shard,
                device: device.clone(),
                // So the summed gradient is the batch's mean, averaged over accumulation.
                scale: share / self.cfg.grad_accum as f64,
                seed: step_seed.map(|s| s ^ (i as u64 + 1).wrapping_mul(0x94D0_49BB_1331_11EB)),
            })
            .collect();
        let (main, smoothing) = (devices[0].clone(), self.cfg.label_smoothing);
        // Every replica must succeed before any gradient is accumulated.
        let outcomes = run_replicas(replicas, &main, smoothing)
            .await
            .into_iter()
            .collect::<Result<Vec<_>>>()?;
        let value: f64 = outcomes
            .iter()
            .zip(&shares)
            .map(|((loss, _), share)| *loss as f64 * share)
            .sum();
        if let Some((loss, _)) = outcomes.iter().find(|(loss, _)| !loss.is_finite()) {
            return Err(self.diverged(*loss));
        }
        for (_, grads) in outcomes {
            self.accum.accumulate(held(&self.model), grads);
        }
        Ok(self.end_micro_batch(value as f32))
    }

    /// The seed of the random draws inside the step at the cursor (LoRA dropout), from the run's
    /// seed and the position in the plan, so a resumed run draws the same masks; `None` without
    /// a plan.
    fn step_seed(&self) -> Option<u64> {
        self.plan.map(|plan| {
            let pos = (self.cursor.epoch * plan.batches_per_epoch() + self.cursor.batch) as u64;
            plan.seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ pos.wrapping_mul(0xBF58_476D_1CE4_E5B9)
        })
    }
}

/// One data-parallel replica's work: a shard on its device, and the model it forks there.
struct Replica {
    model: Model,
    shard: Batch,
    device: Device,
    /// The factor of this shard's loss in the batch's.
    scale: f64,
    /// The RNG seed for its forward pass.
    seed: Option<u64>,
}

/// A replica's loss value and its scaled gradients, on the model's device.
type Outcome = Result<(f32, GradientsParams)>;

impl Replica {
    /// Forks the model onto the replica's device and runs the forward pass there.
    fn forward(self, smoothing: f64) -> Result<(Model, Tensor<1>, f64)> {
        if let Some(seed) = self.seed {
            self.device.seed(seed);
        }
        let replica = self.model.fork(&self.device);
        let loss = replica.forward_loss(&self.shard.to_device(&self.device), smoothing)?;
        Ok((replica, loss, self.scale))
    }
}

/// The backward pass of a replica's `loss`, its gradients moved to `main`.
fn backward(replica: &Model, loss: Tensor<1>, scale: f64, main: &Device) -> GradientsParams {
    let grads = (loss * scale).backward();
    GradientsParams::from_grads(grads, replica).to_device(main, replica)
}

/// Runs the replicas, one thread each, returning their outcomes in device order. The forward
/// passes take turns in device order (a turnstile), so the RNG draws they make do not depend on
/// timing; reading the losses and the backward passes overlap.
#[cfg(not(target_arch = "wasm32"))]
async fn run_replicas(replicas: Vec<Replica>, main: &Device, smoothing: f64) -> Vec<Outcome> {
    use std::sync::{Condvar, Mutex};
    let turn = (Mutex::new(0usize), Condvar::new());
    std::thread::scope(|scope| {
        let threads: Vec<_> = replicas
            .into_iter()
            .enumerate()
            .map(|(i, replica)| {
                let turn = &turn;
                scope.spawn(move || -> Outcome {
                    let forward = {
                        let (next, changed) = turn;
                        let mut at = changed
                            .wait_while(next.lock().unwrap(), |n| *n != i)
                            .unwrap();
                        // The turn passes on whatever the forward pass returns.
                        let forward = replica.forward(smoothing);
                        *at += 1;
                        changed.notify_all();
                        forward
                    };
                    let (model, loss, scale) = forward?;
                    let value = loss_value(loss.clone().try_into_data().map_err(Error::device)?);
                    Ok((value, backward(&model, loss, scale, main)))
                })
            })
            .collect();
        threads
            .into_iter()
            .map(|t| {
                t.join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
            })
            .collect()
    })
}

/// In the browser (one thread) the replicas run one after another, in device order.
#[cfg(target_arch = "wasm32")]
async fn run_replicas(replicas: Vec<Replica>, main: &Device, smoothing: f64) -> Vec<Outcome> {
    in_turn(replicas, main, smoothing).await
}

/// The replicas one after another from this thread, in device order.
#[cfg(any(target_arch = "wasm32", test))]
async fn in_turn(replicas: Vec<Replica>, main: &Device, smoothing: f64) -> Vec<Outcome> {
    let mut outcomes = Vec::new();
    for replica in replicas {
        let outcome = async {
            let (model, loss, scale) = replica.forward(smoothing)?;
            let data = loss
                .clone()
                .into_data_async()
                .await
                .map_err(Error::device)?;
            Ok((loss_value(data), backward(&model, loss, scale, main)))
        };
        outcomes.push(outcome.await);
    }
    outcomes
}

/// The first value of a read-back loss (NaN if there is none).
fn loss_value(data: burn::tensor::TensorData) -> f32 {
    data.iter::<f32>().next().unwrap_or(f32::NAN)
}

/// The trainer's model (always there outside an optimizer step).
fn held(model: &Option<Model>) -> &Model {
    model
        .as_ref()
        .expect("the model is only taken during an optimizer step")
}

#[cfg(all(test, feature = "flex"))]
mod tests {
    use super::*;
    use crate::models::Family;
    use crate::models::blip::{BlipConfig, BlipForQuestionAnswering};
    use burn::module::{ModuleVisitor, Param};
    use burn::tensor::{Distribution, Int, TensorData};

    /// Every gradient's bits, in parameter order.
    fn grad_bits(model: &Model, grads: &GradientsParams) -> Vec<Vec<u32>> {
        struct Collect<'a>(&'a GradientsParams, Vec<Vec<u32>>);
        impl ModuleVisitor for Collect<'_> {
            fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
                if let Some(g) = self.0.get::<D>(param.id) {
                    self.1
                        .push(g.into_data().iter::<f32>().map(f32::to_bits).collect());
                }
            }
        }
        let mut c = Collect(grads, Vec::new());
        model.visit(&mut c);
        c.1
    }

    /// In the test process: runs the test `name` again alone in a child process (the flex
    /// device's one RNG is shared by the tests of a binary running beside each other), asserts
    /// it passed there, and returns true. In that child: returns false, so the test runs.
    fn ran_alone_in_a_child(name: &str) -> bool {
        const ALONE: &str = "NORMTUNE_TEST_ALONE";
        if std::env::var_os(ALONE).is_some() {
            return false;
        }
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                &format!("train::trainer::tests::{name}"),
                "--test-threads=1",
            ])
            .env(ALONE, "1")
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && text.contains("1 passed"),
            "the test alone in a child process failed:\n{text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        true
    }

    /// A VQA batch for `BlipConfig::tiny(64)`: random images, ids in 2..62 from a fixed sequence.
    fn tiny_batch(
        rows: usize,
        question: usize,
        answer: usize,
        size: usize,
        device: &Device,
    ) -> Batch {
        let ids = |len: usize, salt: i64| {
            let v: Vec<i64> = (0..rows * len)
                .map(|i| 2 + (i as i64 * 7 + salt) % 60)
                .collect();
            Tensor::<2, Int>::from_data(TensorData::new(v, [rows, len]), device)
        };
        Batch::Vqa {
            pixels: Tensor::random(
                [rows, 3, size, size],
                Distribution::Normal(0.0, 1.0),
                device,
            ),
            question_ids: ids(question, 1),
            question_mask: Tensor::ones([rows, question], device),
            answer_ids: ids(answer, 5),
            answer_mask: Tensor::ones([rows, answer], device),
        }
    }

    /// Every trainable parameter's bits, in parameter order.
    fn param_bits(model: &Model) -> Vec<Vec<u32>> {
        struct Collect(Vec<Vec<u32>>);
        impl ModuleVisitor for Collect {
            fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
                let t = param.val();
                if t.is_require_grad() {
                    self.0
                        .push(t.into_data().iter::<f32>().map(f32::to_bits).collect());
                }
            }
        }
        let mut c = Collect(Vec::new());
        model.visit(&mut c);
        c.0
    }

    /// The optimizer step inside the backward pass gives the plain step's results bit for bit
    /// (losses, and every trainable parameter after three steps, which also reads the AdamW
    /// moments of the first two, with the default clipping and weight decay) for full
    /// fine-tuning, LoRA with dropout and LN tuning, and every parameter's gradient is seen
    /// final inside the pass (none is left for after it). Run alone in a child process, as the
    /// test below, since dropout draws from the process's one flex RNG.
    #[test]
    fn optimizer_in_backward_equals_the_plain_step() {
        if ran_alone_in_a_child("optimizer_in_backward_equals_the_plain_step") {
            return;
        }
        let cfg = BlipConfig::tiny(64);
        let size = cfg.vision_config.image_size;
        for method in ["full", "lora", "layernorm"] {
            let run = |in_backward: bool| {
                let device = Device::flex().autodiff();
                device.seed(11);
                let model = Model::from(BlipForQuestionAnswering::init(&cfg, &device));
                let model =
                    crate::peft::apply(model, &crate::peft::PeftConfig::parse(method).unwrap())
                        .unwrap();
                assert!(crate::train::in_backward::applies(&model), "{method}");
                let batch = tiny_batch(3, 9, 5, size, &device);
                let cfg = TrainConfig {
                    lr: 3e-2,
                    warmup_steps: 1,
                    total_steps: 3,
                    ..TrainConfig::default()
                };
                let mut trainer = Trainer::new(model, cfg).unwrap();
                trainer.set_optimizer_in_backward(in_backward);
                let mut losses = Vec::new();
                for _ in 0..3 {
                    let event = pollster::block_on(trainer.step(&batch)).unwrap();
                    assert!(event.applied);
                    losses.push(event.loss.to_bits());
                    // The step ran inside the backward pass (or not), and every gradient was
                    // seen complete there.
                    let expected = in_backward.then_some(0);
                    assert_eq!(trainer.updated_late, expected, "{method}");
                }
                (losses, param_bits(trainer.model()))
            };
            let (a, b) = (run(true), run(false));
            assert!(
                a.1.iter().any(|p| !p.is_empty()),
                "{method}: nothing trained"
            );
            assert_eq!(a.0, b.0, "{method}: losses");
            assert_eq!(a.1, b.1, "{method}: parameters");
        }
    }

    /// Two CPU replicas of a LoRA model with dropout, one thread each, give bit for bit what
    /// they give one after another from one thread (the data-parallel step before replicas ran
    /// concurrently): the same losses and the same gradients, dropout masks included. Run
    /// several times, since a race would show only in some interleavings.
    ///
    /// The flex device's RNG is one per process, and the tests beside this one in this binary
    /// (AdamW's, drawing random tensors) draw from it while they run: a draw between a replica's
    /// seeding and its dropout masks failed this bit-for-bit comparison in one suite run. So the
    /// test runs itself again, alone, in a child process, and passes when the child passes.
    #[test]
    fn concurrent_replicas_equal_replicas_in_turn() {
        if ran_alone_in_a_child("concurrent_replicas_equal_replicas_in_turn") {
            return;
        }
        let device = Device::flex().autodiff();
        device.seed(7);
        let model = Model::from(BlipForQuestionAnswering::init(
            &BlipConfig::tiny(64),
            &device,
        ));
        let model =
            crate::peft::apply(model, &crate::peft::PeftConfig::parse("lora").unwrap()).unwrap();
        let size = BlipConfig::tiny(64).vision_config.image_size;
        // Enough rows that the two forward passes would overlap if they did not take turns.
        let rows = 32;
        let batch = tiny_batch(rows, 12, 6, size, &device);
        let shards = pollster::block_on(batch.shards(2)).unwrap();
        let replicas = || -> Vec<Replica> {
            shards
                .iter()
                .enumerate()
                .map(|(i, (shard, w))| Replica {
                    model: model.clone(),
                    shard: shard.clone(),
                    device: device.clone(),
                    scale: *w,
                    seed: Some(11 + i as u64),
                })
                .collect()
        };
        let summary = |outcomes: Vec<Outcome>| -> Vec<(u32, Vec<Vec<u32>>)> {
            outcomes
                .into_iter()
                .map(|o| {
                    let (loss, grads) = o.unwrap();
                    (loss.to_bits(), grad_bits(&model, &grads))
                })
                .collect()
        };
        let want = summary(pollster::block_on(in_turn(replicas(), &device, 0.1)));
        assert!(want.iter().all(|(_, g)| !g.is_empty()));
        assert_ne!(want[0].1, want[1].1, "the shards' gradients differ");
        for round in 0..4 {
            let got = summary(pollster::block_on(run_replicas(replicas(), &device, 0.1)));
            assert!(
                got == want,
                "round {round}: concurrent replicas differ from replicas in turn"
            );
        }
        // The seeds decide the masks: other seeds give other gradients.
        let mut reseeded = replicas();
        reseeded[0].seed = Some(99);
        let other = summary(pollster::block_on(run_replicas(reseeded, &device, 0.1)));
        assert_ne!(
            other[0].1, want[0].1,
            "dropout draws from the replica's seed"
        );
    }
}
