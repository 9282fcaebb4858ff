//! One training run, the same in both shells. A [`RunSpec`] (what `run.toml` holds) becomes a
//! [`Run`], which owns the run's policy: PEFT and `frozen_dtype`, gradient checkpointing and
//! data-parallel replicas, when to evaluate, which score is best, when to checkpoint, and
//! stopping at an optimizer-step boundary. It reports what happens as [`RunEvent`]s, pulled one
//! at a time with [`Run::next_event`]. The CLI writes the bytes the events carry and draws
//! progress; the browser's worker posts them to the page, answering messages between events.

use super::eval::{Prediction, evaluate};
use super::spec::RunSpec;
use super::trainer::{Batch, Event, Next, Plan, Trainer};
use crate::data::{Augment, Example, QuestionTemplates, Task, decode_image, task_of};
use crate::error::{Error, Result};
use crate::metrics::Scores;
use crate::models::{Pipeline, Processor};
use crate::peft::{self, TrainableReport};
use crate::source::FileSource;
use burn::tensor::Device;
use serde::Serialize;
use std::collections::VecDeque;
use web_time::Instant;

/// Files as (name, bytes): an adapter folder or a checkpoint.
pub type Files = Vec<(String, Vec<u8>)>;

/// The data a run trains and evaluates on.
pub struct RunData<S> {
    /// Training examples.
    pub train: Vec<Example>,
    /// Evaluation examples (none: no evaluation).
    pub eval: Vec<Example>,
    /// The images of both.
    pub images: S,
    /// MILE's question templates (empty: questions as written).
    pub templates: QuestionTemplates,
    /// The label names a labelled dataset declares, in order, and the file that declares them:
    /// a classifier's `id2label` must be the same.
    pub labels: Option<(String, Vec<String>)>,
}

/// Reads, decodes and augments the images of micro-batch `next` of `examples` and makes the
/// training batch, each question rephrased through the template `templates` draws for it (MILE;
/// none with an empty pool): the one way a plan position becomes tensors.
pub async fn load_batch(
    p: &Processor,
    examples: &[Example],
    next: &Next,
    images: &impl FileSource,
    augment: &Augment,
    templates: &QuestionTemplates,
    seed: u64,
) -> Result<Batch> {
    let mut imgs = Vec::with_capacity(next.indices.len());
    for &i in &next.indices {
        let e = &examples[i];
        let bytes = images.read(&e.image).await?;
        let img = decode_image(&bytes, &images.describe(&e.image))?;
        let text = format!("{} {}", e.question.as_deref().unwrap_or(""), e.target);
        imgs.push(augment.apply(&img, seed, next.epoch, i, &text));
    }
    let rephrased: Vec<Example> = next
        .indices
        .iter()
        .map(|&i| {
            let mut e = examples[i].clone();
            if let (Some(q), false) = (&e.question, templates.templates().is_empty()) {
                e.question = Some(templates.apply(q, seed, next.epoch, i));
            }
            e
        })
        .collect();
    let batch: Vec<&Example> = rephrased.iter().collect();
    p.batch(&batch, &imgs)
}

/// What one micro-batch did.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StepReport {
    /// The trainer's event (optimizer step, loss, lr, whether the step was applied).
    #[serde(flatten)]
    pub event: Event,
    /// Epoch of the micro-batch.
    pub epoch: usize,
    /// Whether it ended its epoch.
    pub ends_epoch: bool,
    /// Micro-batches done in the run.
    pub position: usize,
    /// Micro-batches in the run.
    pub total: usize,
    /// Examples in the micro-batch.
    pub examples: usize,
    /// Time of this micro-batch (its images, forward, backward, optimizer step), ms.
    pub step_ms: f64,
    /// Training time so far in this process (micro-batches only, evaluations left out), s.
    pub train_seconds: f64,
    /// Examples per second of training time.
    pub samples_per_s: f64,
}

/// What a run reports, in order.
#[derive(Debug, Clone)]
pub enum RunEvent {
    /// A micro-batch trained.
    Step(StepReport),
    /// An evaluation (`start`: the one before any training step).
    Eval {
        /// Whether this is the zero-shot evaluation before training.
        start: bool,
        /// Epoch of the last micro-batch.
        epoch: usize,
        /// Micro-batches done.
        position: usize,
        /// Optimizer steps done.
        step: usize,
        /// Examples scored.
        examples: usize,
        /// The scores.
        scores: Scores,
        /// The run's metric among them (`None` when undefined on these examples).
        value: Option<f64>,
    },
    /// A new best score; `adapter` is that model's adapter folder when the run keeps files.
    Best {
        /// Optimizer step.
        step: usize,
        /// The metric.
        metric: String,
        /// Its value.
        value: f64,
        /// The adapter folder (HF peft format where peft has one).
        adapter: Option<Files>,
    },
    /// A checkpoint (only when the run keeps files): everything needed to continue
    /// bit-identically.
    Checkpoint {
        /// Optimizer step.
        step: usize,
        /// The checkpoint folder's files.
        files: Files,
    },
    /// The run stopped at this optimizer step, as [`Run::stop`] asked (after that step's
    /// evaluation and checkpoint).
    Stopped {
        /// Optimizer step.
        step: usize,
    },
}

/// What a finished run leaves.
pub struct Finished {
    /// The final adapter folder.
    pub adapter: Files,
    /// Scores of the final model on every evaluation example.
    pub scores: Scores,
    /// Its predictions.
    pub predictions: Vec<Prediction>,
    /// The best evaluation during training: (step, value).
    pub best: Option<(usize, f64)>,
    /// The zero-shot scores (`eval.at_start`).
    pub start: Option<Scores>,
    /// Wall-clock time from the first micro-batch to the end of training (evaluations during
    /// training included), s.
    pub train_seconds: f64,
    /// Each micro-batch's time in this process, ms.
    pub step_ms: Vec<f64>,
}

/// Work queued after a micro-batch, done by the following [`Run::next_event`] calls.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Todo {
    EvalStart,
    Eval {
        epoch: usize,
        position: usize,
        step: usize,
    },
    Checkpoint {
        step: usize,
    },
    Stop {
        step: usize,
    },
}

/// A run in progress.
pub struct Run<S: FileSource> {
    spec: RunSpec,
    /// Tokenizer, preprocessing and the training device (the trainer owns the model).
    processor: Processor,
    trainer: Trainer,
    replicas: Vec<Device>,
    data: RunData<S>,
    task: Task,
    metric: String,
    report: TrainableReport,
    frozen: Option<usize>,
    plan: Plan,
    persist: bool,
    best: Option<(usize, f64)>,
    start: Option<Scores>,
    todo: VecDeque<Todo>,
    events: VecDeque<RunEvent>,
    stopping: bool,
    stopped: bool,
    at_boundary: bool,
    last_checkpoint: Option<usize>,
    first_step: Option<Instant>,
    step_ms: Vec<f64>,
    /// The sum of `step_ms`, s.
    train_seconds: f64,
    samples: usize,
}

impl<S: FileSource> Run<S> {
    /// Loads the model from `model` onto `device` for training, applies the spec's PEFT (and
    /// `frozen_dtype`) and plans the run over `data`. `persist`: whether the caller keeps files
    /// (checkpoints and best adapters are only made for one that does).
    pub async fn load(
        spec: RunSpec,
        model: &impl FileSource,
        device: &Device,
        data: RunData<S>,
        persist: bool,
    ) -> Result<Self> {
        spec.check_settings("the run")?;
        let train_file = spec.data.train.display().to_string();
        let task = task_of(&data.train, &train_file)?;
        if !data.eval.is_empty() && task_of(&data.eval, "the evaluation data")? != task {
            return Err(Error::Input(format!(
                "the evaluation data is for a different task than {train_file}"
            )));
        }
        let replicas = spec.replicas()?;
        let Pipeline {
            model,
            mut processor,
        } = Pipeline::load(model, &spec.train_device(device)).await?;
        if let Some(t) = &spec.chat_prompt {
            processor.set_chat_prompt(t)?;
        }
        if let Some((file, names)) = &data.labels {
            check_label_names(file, names, &processor)?;
        }
        // New PEFT modules (LoRA A, prefixes) draw their initial values from the device's RNG:
        // seeding it makes a run, and so its resumption, reproducible.
        device.seed(spec.seed);
        let model = peft::apply(model, &spec.peft)?;
        let report = peft::report(&model);
        let (model, frozen) = match spec.train.frozen_dtype {
            Some(dt) => {
                let (m, n) = peft::store_frozen(model, dt)?;
                (m, Some(n))
            }
            None => (model, None),
        };
        let plan = spec.plan(data.train.len());
        let mut tcfg = spec.train.clone();
        tcfg.total_steps = plan.optimizer_steps(tcfg.grad_accum);
        let trainer = Trainer::new(model, tcfg)?.with_plan(plan)?;
        let mut todo = VecDeque::new();
        if spec.eval.at_start {
            todo.push_back(Todo::EvalStart);
        }
        Ok(Self {
            metric: spec.metric(task),
            spec,
            processor,
            trainer,
            replicas,
            data,
            task,
            report,
            frozen,
            plan,
            persist,
            best: None,
            start: None,
            todo,
            events: VecDeque::new(),
            stopping: false,
            stopped: false,
            at_boundary: true,
            last_checkpoint: None,
            first_step: None,
            step_ms: Vec::new(),
            train_seconds: 0.0,
            samples: 0,
        })
    }

    /// Continues from a checkpoint's files (`checkpoint`), with the best score and zero-shot
    /// scores the run had reached; the spec must be the checkpointed run's.
    pub async fn resume(
        self,
        checkpoint: &impl FileSource,
        best: Option<(usize, f64)>,
        start: Option<Scores>,
    ) -> Result<Self> {
        let cfg = self.trainer.config().clone();
        let model = self.trainer.into_model();
        let trainer = Trainer::resume(model, cfg, self.plan, checkpoint).await?;
        let step = trainer.steps_done();
        Ok(Self {
            trainer,
            best,
            start,
            todo: VecDeque::new(),
            last_checkpoint: Some(step),
            ..self
        })
    }

    /// Asks the run to stop at the next optimizer-step boundary (now, if it is at one), after
    /// that step's evaluation, with a checkpoint; [`RunEvent::Stopped`] follows them.
    pub fn stop(&mut self) {
        if self.stopping {
            return;
        }
        self.stopping = true;
        if self.at_boundary {
            let step = self.trainer.steps_done();
            if !self.todo.contains(&Todo::Checkpoint { step }) {
                self.todo.push_back(Todo::Checkpoint { step });
            }
            self.todo.push_back(Todo::Stop { step });
        }
    }

    /// The next thing the run does: a micro-batch, an evaluation, a new best, a checkpoint;
    /// `None` when the plan is done (then [`Run::finish`]) or the run has stopped.
    /// `progress(done, total)` is called during evaluations.
    pub async fn next_event(
        &mut self,
        mut progress: impl FnMut(usize, usize),
    ) -> Result<Option<RunEvent>> {
        loop {
            if let Some(e) = self.events.pop_front() {
                return Ok(Some(e));
            }
            if let Some(t) = self.todo.pop_front() {
                self.run_todo(t, &mut progress).await?;
                continue;
            }
            if self.stopped {
                return Ok(None);
            }
            let Some(next) = self.trainer.next_batch() else {
                return Ok(None);
            };
            self.train_step(next).await?;
        }
    }

    async fn train_step(&mut self, next: Next) -> Result<()> {
        let t0 = Instant::now();
        self.first_step.get_or_insert(t0);
        let batch = load_batch(
            &self.processor,
            &self.data.train,
            &next,
            &self.data.images,
            &self.spec.augment,
            &self.data.templates,
            self.spec.seed,
        )
        .await?;
        let event = self.trainer.step_parallel(&batch, &self.replicas).await?;
        drop(batch);
        let ms = t0.elapsed().as_secs_f64() * 1e3;
        self.step_ms.push(ms);
        self.samples += next.indices.len();
        self.train_seconds += ms / 1e3;
        let train_seconds = self.train_seconds;
        let position = self.position();
        self.at_boundary = event.applied;
        if event.applied {
            let step = event.step;
            let eval_now = !self.data.eval.is_empty()
                && match self.spec.eval.every {
                    0 => next.ends_epoch,
                    n => step % n == 0,
                };
            if eval_now {
                self.todo.push_back(Todo::Eval {
                    epoch: next.epoch,
                    position,
                    step,
                });
            }
            if eval_now || self.stopping || step % self.spec.checkpoint_every == 0 {
                self.todo.push_back(Todo::Checkpoint { step });
            }
            if self.stopping {
                self.todo.push_back(Todo::Stop { step });
            }
        }
        self.events.push_back(RunEvent::Step(StepReport {
            event,
            epoch: next.epoch,
            ends_epoch: next.ends_epoch,
            position,
            total: self.plan.total_batches(),
            examples: next.indices.len(),
            step_ms: ms,
            train_seconds,
            samples_per_s: self.samples as f64 / train_seconds.max(1e-9),
        }));
        Ok(())
    }

    async fn run_todo(&mut self, t: Todo, progress: &mut impl FnMut(usize, usize)) -> Result<()> {
        match t {
            Todo::EvalStart => {
                if !self.data.eval.is_empty() {
                    let (scores, _) = self.scheduled_eval(true, 0, 0, 0, progress).await?;
                    self.start = Some(scores);
                }
            }
            Todo::Eval {
                epoch,
                position,
                step,
            } => {
                let (_, value) = self
                    .scheduled_eval(false, epoch, position, step, progress)
                    .await?;
                if let Some(v) = value
                    && self.best.is_none_or(|(_, b)| v > b)
                {
                    self.best = Some((step, v));
                    let adapter = match self.persist {
                        true => Some(self.export_adapter().await?),
                        false => None,
                    };
                    self.events.push_back(RunEvent::Best {
                        step,
                        metric: self.metric.clone(),
                        value: v,
                        adapter,
                    });
                }
            }
            Todo::Checkpoint { step } => {
                if self.persist {
                    let files = self.trainer.checkpoint()?;
                    self.last_checkpoint = Some(step);
                    self.events.push_back(RunEvent::Checkpoint { step, files });
                }
            }
            Todo::Stop { step } => {
                self.stopped = true;
                self.todo.clear();
                self.events.push_back(RunEvent::Stopped { step });
            }
        }
        Ok(())
    }

    /// Scores the first `eval.max_examples` evaluation examples (0 = all) with the model as it
    /// is now and queues the [`RunEvent::Eval`]; returns the scores and the run's metric.
    async fn scheduled_eval(
        &mut self,
        start: bool,
        epoch: usize,
        position: usize,
        step: usize,
        progress: &mut impl FnMut(usize, usize),
    ) -> Result<(Scores, Option<f64>)> {
        let all = self.data.eval.len();
        let examples = match self.spec.eval.max_examples {
            0 => all,
            n => n.min(all),
        };
        let (scores, _) = self.evaluate(examples, progress).await?;
        let value = scores.get(&self.metric).and_then(|v| v.as_f64());
        self.events.push_back(RunEvent::Eval {
            start,
            epoch,
            position,
            step,
            examples,
            scores: scores.clone(),
            value,
        });
        Ok((scores, value))
    }

    /// Scores the first `n` evaluation examples with the model as it is now.
    async fn evaluate(
        &self,
        n: usize,
        progress: &mut impl FnMut(usize, usize),
    ) -> Result<(Scores, Vec<Prediction>)> {
        evaluate(
            &self.tuned(),
            self.task,
            &self.data.eval[..n],
            &self.data.images,
            &self.spec.generation,
            progress,
        )
        .await
    }

    /// Ends a run whose plan is done: the final adapter, then the final model scored on every
    /// evaluation example.
    pub async fn finish(self, mut progress: impl FnMut(usize, usize)) -> Result<Finished> {
        let adapter = self.export_adapter().await?;
        let train_seconds = self.first_step.map_or(0.0, |t| t.elapsed().as_secs_f64());
        let (scores, predictions) = if self.data.eval.is_empty() {
            (Scores::new(), Vec::new())
        } else {
            self.evaluate(self.data.eval.len(), &mut progress).await?
        };
        Ok(Finished {
            adapter,
            scores,
            predictions,
            best: self.best,
            start: self.start,
            train_seconds,
            step_ms: self.step_ms,
        })
    }

    /// The adapter folder of the model as it is now (HF peft format where peft has one), read
    /// back asynchronously so it works on WebGPU.
    pub async fn export_adapter(&self) -> Result<Files> {
        let base = self.spec.model.display().to_string();
        peft::io::save_adapter_async(self.trainer.model(), &self.spec.peft, &base).await
    }

    /// The model as it is now, for inference.
    pub fn tuned(&self) -> Pipeline {
        self.processor.with_model(self.trainer.model().clone())
    }

    /// Micro-batches done.
    pub fn position(&self) -> usize {
        let c = self.trainer.cursor();
        c.epoch * self.plan.batches_per_epoch() + c.batch
    }

    /// The spec.
    pub fn spec(&self) -> &RunSpec {
        &self.spec
    }
    /// What trains, in peft's words.
    pub fn report(&self) -> &TrainableReport {
        &self.report
    }
    /// Frozen values stored in `frozen_dtype`, when set.
    pub fn frozen(&self) -> Option<usize> {
        self.frozen
    }
    /// The data order.
    pub fn plan(&self) -> Plan {
        self.plan
    }
    /// The task of the data.
    pub fn task(&self) -> Task {
        self.task
    }
    /// The metric that picks the best adapter.
    pub fn metric(&self) -> &str {
        &self.metric
    }
    /// Optimizer steps taken.
    pub fn steps_done(&self) -> usize {
        self.trainer.steps_done()
    }
    /// The step of the last checkpoint made (or resumed from).
    pub fn last_checkpoint(&self) -> Option<usize> {
        self.last_checkpoint
    }
    /// The data.
    pub fn data(&self) -> &RunData<S> {
        &self.data
    }
    /// The PEFT placement, component by component (`vision=layernorm, ...`).
    pub fn describe(&self) -> String {
        let names: Vec<&str> = self
            .trainer
            .model()
            .components()
            .iter()
            .map(|c| c.name)
            .collect();
        self.spec.peft.describe(&names)
    }
}

/// A labelled dataset must name the classifier's labels in the classifier's order.
fn check_label_names(file: &str, names: &[String], p: &Processor) -> Result<()> {
    let Some(model) = p.config.labels() else {
        return Ok(());
    };
    if names != model.as_slice() {
        return Err(Error::Input(format!(
            "{file}: labels [{}] are not the model's id2label [{}] (same names, same order)",
            names.join(", "),
            model.join(", ")
        )));
    }
    Ok(())
}
