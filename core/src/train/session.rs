//! A fine-tuning session as the browser runs it: a loaded model, a dataset whose images come
//! through a [`FileSource`], a PEFT config and a [`Trainer`], stepped one micro-batch at a time so
//! the caller (a Web Worker) can post events, pause and answer questions between steps. The CLI's
//! `normtune train` shares its pieces ([`load_batch`], [`Trainer`], [`evaluate`]) and adds files,
//! checkpoints and signals around them.

use super::eval::evaluate;
use super::trainer::{Batch, Event, Next, Plan, TrainConfig, Trainer};
use crate::data::{Augment, Example, Task, decode_image, task_of};
use crate::error::{Error, Result};
use crate::metrics::Scores;
use crate::models::Pipeline;
use crate::models::blip::GenConfig;
use crate::peft::{self, PeftConfig, TrainableReport};
use crate::source::FileSource;
use serde::{Deserialize, Serialize};

/// Reads, decodes and augments the images of micro-batch `next` of `examples` and makes the
/// training batch, each question rephrased through the template `templates` draws for it (MILE;
/// none with an empty pool): the one way both shells turn a plan position into tensors.
pub async fn load_batch(
    p: &Pipeline,
    examples: &[Example],
    next: &Next,
    images: &impl FileSource,
    augment: &Augment,
    templates: &crate::data::QuestionTemplates,
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
    if templates.templates().is_empty() {
        let batch: Vec<&Example> = next.indices.iter().map(|&i| &examples[i]).collect();
        return p.batch(&batch, &imgs);
    }
    let rephrased: Vec<Example> = next
        .indices
        .iter()
        .map(|&i| {
            let mut e = examples[i].clone();
            if let Some(q) = &e.question {
                e.question = Some(templates.apply(q, seed, next.epoch, i));
            }
            e
        })
        .collect();
    let batch: Vec<&Example> = rephrased.iter().collect();
    p.batch(&batch, &imgs)
}

/// How a session trains.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SessionConfig {
    /// Which parameters train.
    pub peft: PeftConfig,
    /// Optimiser settings (`total_steps` is set from the plan).
    pub train: TrainConfig,
    /// Examples per micro-batch.
    pub batch_size: usize,
    /// Passes over the training examples.
    pub epochs: usize,
    /// Seed of the data order, augmentation and new PEFT modules.
    pub seed: u64,
    /// Training-time augmentation.
    pub augment: Augment,
    /// Decoding for evaluation and answers.
    pub generation: GenConfig,
}

impl Default for SessionConfig {
    fn default() -> Self {
        Self {
            peft: PeftConfig::default(),
            train: TrainConfig {
                lr: 3e-3,
                ..TrainConfig::default()
            },
            batch_size: 8,
            epochs: 3,
            seed: 0,
            augment: Augment::default(),
            generation: GenConfig::default(),
        }
    }
}

/// What one [`Session::step`] did.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StepReport {
    /// The trainer's event (optimizer step, loss, lr).
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
}

/// A model being fine-tuned on a dataset.
pub struct Session<S: FileSource> {
    base: Pipeline,
    /// Tokenizer, preprocessing and the autodiff device for training batches (its model is an
    /// unallocated stand-in: the trainer owns the real one).
    batcher: Pipeline,
    trainer: Trainer,
    train: Vec<Example>,
    eval: Vec<Example>,
    images: S,
    cfg: SessionConfig,
    task: Task,
    report: TrainableReport,
    plan: Plan,
}

impl<S: FileSource> Session<S> {
    /// Applies `cfg.peft` to `pipeline`'s model (loaded on an autodiff device) and plans the run
    /// over `train`; `eval` is scored by [`Session::evaluate`]. The base model is kept for
    /// side-by-side answers.
    pub fn new(
        mut pipeline: Pipeline,
        train: Vec<Example>,
        eval: Vec<Example>,
        images: S,
        cfg: SessionConfig,
    ) -> Result<Self> {
        if cfg.batch_size == 0 || cfg.epochs == 0 {
            return Err(Error::Input(
                "batch size and epochs must be at least 1".into(),
            ));
        }
        if cfg.train.frozen_dtype.is_some() {
            return Err(Error::Input(
                "frozen_dtype is applied by `normtune train` only (not in a session)".into(),
            ));
        }
        let task = task_of(&train, "the training data")?;
        if !eval.is_empty() && task_of(&eval, "the evaluation data")? != task {
            return Err(Error::Input(
                "the evaluation data is for a different task than the training data".into(),
            ));
        }
        let base = pipeline.with_model(pipeline.model.clone());
        // New PEFT modules (LoRA A, prefixes) draw from the device RNG: a seed fixes them.
        base.device.seed(cfg.seed);
        let stand_in = crate::models::init_model(&pipeline.config, &burn::tensor::Device::flex());
        let model = peft::apply(std::mem::replace(&mut pipeline.model, stand_in), &cfg.peft)?;
        let report = peft::report(&model);
        let plan = Plan {
            examples: train.len(),
            batch_size: cfg.batch_size,
            epochs: cfg.epochs,
            seed: cfg.seed,
        };
        let mut tcfg = cfg.train.clone();
        tcfg.total_steps = plan.optimizer_steps(tcfg.grad_accum);
        let trainer = Trainer::new(model, tcfg)?.with_plan(plan)?;
        Ok(Self {
            base,
            batcher: pipeline,
            trainer,
            train,
            eval,
            images,
            cfg,
            task,
            report,
            plan,
        })
    }

    /// One micro-batch (and an optimizer step when due); `None` when the run is done.
    pub async fn step(&mut self) -> Result<Option<StepReport>> {
        let Some(next) = self.trainer.next_batch() else {
            return Ok(None);
        };
        let batch = load_batch(
            &self.batcher,
            &self.train,
            &next,
            &self.images,
            &self.cfg.augment,
            &crate::data::QuestionTemplates::default(),
            self.cfg.seed,
        )
        .await?;
        let event = self.trainer.step(&batch).await?;
        let c = self.trainer.cursor();
        Ok(Some(StepReport {
            event,
            epoch: next.epoch,
            ends_epoch: next.ends_epoch,
            position: c.epoch * self.plan.batches_per_epoch() + c.batch,
            total: self.plan.total_batches(),
            examples: next.indices.len(),
        }))
    }

    /// The model as it is now, for inference.
    pub fn tuned(&self) -> Pipeline {
        self.base.with_model(self.trainer.model().clone())
    }

    /// The model as loaded, before any training.
    pub fn base(&self) -> &Pipeline {
        &self.base
    }

    /// Scores the first `limit` evaluation examples (0 = all) with the current model.
    pub async fn evaluate(
        &self,
        limit: usize,
        progress: impl FnMut(usize, usize),
    ) -> Result<Scores> {
        self.evaluate_with(&self.tuned(), limit, progress).await
    }

    /// Scores the first `limit` evaluation examples (0 = all) with `p` (e.g. the base model).
    pub async fn evaluate_with(
        &self,
        p: &Pipeline,
        limit: usize,
        progress: impl FnMut(usize, usize),
    ) -> Result<Scores> {
        let n = if limit == 0 {
            self.eval.len()
        } else {
            limit.min(self.eval.len())
        };
        let (scores, _) = evaluate(
            p,
            self.task,
            &self.eval[..n],
            &self.images,
            &self.cfg.generation,
            progress,
        )
        .await?;
        Ok(scores)
    }

    /// The adapter folder (HF peft format where peft has one), read back asynchronously so it
    /// works on WebGPU; `base_model` goes into `base_model_name_or_path`.
    pub async fn export_adapter(&self, base_model: &str) -> Result<Vec<(String, Vec<u8>)>> {
        peft::io::save_adapter_async(self.trainer.model(), &self.cfg.peft, base_model).await
    }

    /// What trains, in peft's words.
    pub fn report(&self) -> &TrainableReport {
        &self.report
    }

    /// The run's data order.
    pub fn plan(&self) -> Plan {
        self.plan
    }

    /// The task of the data.
    pub fn task(&self) -> Task {
        self.task
    }

    /// The session's settings.
    pub fn config(&self) -> &SessionConfig {
        &self.cfg
    }

    /// Optimizer steps taken.
    pub fn steps_done(&self) -> usize {
        self.trainer.steps_done()
    }

    /// The evaluation examples.
    pub fn eval_examples(&self) -> &[Example] {
        &self.eval
    }

    /// The training examples.
    pub fn train_examples(&self) -> &[Example] {
        &self.train
    }

    /// The images of both splits.
    pub fn images(&self) -> &S {
        &self.images
    }
}
