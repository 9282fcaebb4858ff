//! `normtune train`: one TOML run config plus `key=value` overrides → PEFT fine-tuning with the
//! core trainer. The run folder holds the resolved config, `metrics.jsonl` (one line per step
//! and per evaluation), `checkpoint/` (trainable tensors + AdamW state + data position, replaced
//! atomically), `best/` (the adapter with the best validation score), `adapter/` (the final one),
//! `predictions.jsonl` and `metrics.json`. Ctrl-C checkpoints and exits; `--resume DIR`
//! continues bit-identically.

use crate::cli::TrainArgs;
use crate::fs::{DirSource, read_file, recover_folder, replace_folder_atomic, write_file_atomic};
use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};
use normtune_core::data::{Augment, Example, Format, Task, read_examples, task_of};
use normtune_core::device::choose;
use normtune_core::metrics::{Scores, primary_metric};
use normtune_core::models::blip::GenConfig;
use normtune_core::models::{Model, Pipeline};
use normtune_core::peft::{self, PeftConfig};
use normtune_core::train::{Plan, TrainConfig, Trainer, evaluate, load_batch};
use serde::{Deserialize, Serialize};
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

/// The data section.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct DataConfig {
    /// vqa-rad, slake, path-vqa, iu-xray, nih-csv, label-list or jsonl.
    format: Format,
    /// Training file.
    train: PathBuf,
    /// Validation / test file (the training file's `test` split for IU-Xray, else required
    /// for evaluation; the training file itself when absent).
    eval: Option<PathBuf>,
    /// Folder the records' image paths are relative to.
    images: PathBuf,
    /// Split of `eval` to score (IU-Xray holds several in one file).
    #[serde(default = "default_split")]
    split: String,
    /// What to do with examples whose image file does not exist: `fail` (default) or `skip`
    /// (each skipped example is listed).
    #[serde(default)]
    on_missing: OnMissing,
    /// MILE's instruction templates: a file of question templates (one a line, `{question}`
    /// inside), one drawn per training sample per epoch from the run's seed; `"default"`: the
    /// built-in pool. Unset: questions as written.
    #[serde(default)]
    question_templates: Option<PathBuf>,
}

impl DataConfig {
    /// The template pool `question_templates` names (empty when unset).
    fn templates(&self) -> anyhow::Result<normtune_core::data::QuestionTemplates> {
        use normtune_core::data::QuestionTemplates;
        Ok(match &self.question_templates {
            None => QuestionTemplates::default(),
            Some(p) if p.as_os_str() == "default" => QuestionTemplates::default_pool(),
            Some(p) => {
                let file = p.display().to_string();
                let text = String::from_utf8(read_file(p)?)
                    .with_context(|| format!("{file}: not UTF-8"))?;
                QuestionTemplates::parse(&text, &file)?
            }
        })
    }
}

/// `data.on_missing`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
enum OnMissing {
    #[default]
    Fail,
    Skip,
}

/// Checks that every example's image exists before any training starts: fails naming them, or
/// (with `on_missing = "skip"`) drops them, listing each.
fn check_images(
    examples: Vec<Example>,
    file: &Path,
    data: &DataConfig,
) -> anyhow::Result<Vec<Example>> {
    let (ok, missing): (Vec<(usize, Example)>, Vec<(usize, Example)>) = examples
        .into_iter()
        .enumerate()
        .partition(|(_, e)| data.images.join(&e.image).is_file());
    if missing.is_empty() {
        return Ok(ok.into_iter().map(|(_, e)| e).collect());
    }
    let list = |n: usize| -> String {
        missing
            .iter()
            .take(n)
            .map(|(i, e)| format!("example {} (id `{}`): `{}`", i + 1, e.id, e.image))
            .collect::<Vec<_>>()
            .join(", ")
    };
    match data.on_missing {
        OnMissing::Fail => anyhow::bail!(
            "{}: {} example(s) name images missing from {}: {}{}; fix the paths or set data.on_missing=\"skip\"",
            file.display(),
            missing.len(),
            data.images.display(),
            list(3),
            if missing.len() > 3 { ", ..." } else { "" }
        ),
        OnMissing::Skip => {
            for (i, e) in &missing {
                eprintln!(
                    "skipping {} example {} (id `{}`): no image {}",
                    file.display(),
                    i + 1,
                    e.id,
                    data.images.join(&e.image).display()
                );
            }
            let kept: Vec<Example> = ok.into_iter().map(|(_, e)| e).collect();
            anyhow::ensure!(
                !kept.is_empty(),
                "{}: no example has its image in {}",
                file.display(),
                data.images.display()
            );
            Ok(kept)
        }
    }
}

fn default_split() -> String {
    "test".into()
}

/// Evaluation during training.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct EvalConfig {
    /// Optimizer steps between evaluations; 0 = at the end of every epoch.
    #[serde(default)]
    every: usize,
    /// Score that picks the best checkpoint (default: overall_acc, cider or auroc_mean).
    metric: Option<String>,
    /// Evaluate on at most this many examples during training (0 = all); the final evaluation
    /// always uses all.
    #[serde(default)]
    max_examples: usize,
    /// Also evaluate the model as loaded, before any training (the zero-shot baseline, kept as
    /// `start` in metrics.json).
    #[serde(default)]
    at_start: bool,
}

/// A run config.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunConfig {
    /// HF model folder.
    model: PathBuf,
    /// Run folder to create.
    out: PathBuf,
    data: DataConfig,
    #[serde(default)]
    peft: PeftConfig,
    #[serde(default)]
    train: TrainConfig,
    #[serde(default = "default_batch")]
    batch_size: usize,
    #[serde(default = "default_epochs")]
    epochs: usize,
    /// Seed of the data order.
    #[serde(default)]
    seed: u64,
    /// Optimizer steps between checkpoints (also taken at every evaluation and on Ctrl-C).
    #[serde(default = "default_checkpoint_every")]
    checkpoint_every: usize,
    #[serde(default)]
    eval: EvalConfig,
    /// Training-time image augmentation (off by default).
    #[serde(default)]
    augment: Augment,
    /// Decoding for evaluation.
    #[serde(default)]
    generation: GenConfig,
    /// Data-parallel training over these devices (`["cpu", "cpu"]`, `["gpu:0", "gpu:1"]`): each
    /// micro-batch is split across them and one optimizer step applies the summed gradients on
    /// the first. Empty (the default): one device, from `--device`.
    #[serde(default)]
    devices: Vec<String>,
    /// LLaVA-style models: the conversation a question becomes (`<image>`, `{question}`);
    /// LLaVA-1.5's when unset.
    #[serde(default)]
    chat_prompt: Option<String>,
}

fn default_batch() -> usize {
    8
}
fn default_epochs() -> usize {
    3
}
fn default_checkpoint_every() -> usize {
    100
}

/// Every key a run config may hold, at any depth (for "did you mean" suggestions): read off the
/// config types themselves (a minimal config, defaults filled in, serialised), so a new field is
/// suggested without a list to keep; plus the aliases serde accepts.
fn known_keys() -> Vec<String> {
    fn collect(v: &serde_json::Value, out: &mut Vec<String>) {
        if let serde_json::Value::Object(m) = v {
            for (k, v) in m {
                out.push(k.clone());
                collect(v, out);
            }
        }
    }
    let minimal =
        "model = \"m\"\nout = \"o\"\n[data]\nformat = \"jsonl\"\ntrain = \"t\"\nimages = \"i\"\n";
    let mut keys = vec!["learning_rate".to_string()];
    if let Ok(cfg) = toml::from_str::<RunConfig>(minimal)
        && let Ok(v) = serde_json::to_value(&cfg)
    {
        collect(&v, &mut keys);
    }
    keys.sort();
    keys.dedup();
    keys
}

/// Turns serde's "unknown field `lerning_rate`, expected ..." into a message that names the key
/// and suggests the nearest known one.
fn explain(path: &Path, message: &str) -> String {
    if let Some(rest) = message.strip_prefix("unknown field `")
        && let Some((key, _)) = rest.split_once('`')
    {
        let known = known_keys();
        let mut best: Option<(&str, f64)> = None;
        for k in &known {
            let s = strsim::normalized_damerau_levenshtein(key, k);
            if best.is_none_or(|(_, b)| s > b) {
                best = Some((k, s));
            }
        }
        let hint = match best {
            Some((k, s)) if s >= 0.5 => format!("; did you mean `{k}`?"),
            _ => String::new(),
        };
        let expected = rest
            .split_once("expected ")
            .map(|(_, e)| format!(" (expected {e})"))
            .unwrap_or_default();
        return format!("{}: unknown key `{key}`{hint}{expected}", path.display());
    }
    format!("{}: {message}", path.display())
}

/// Applies `a.b.c=value` to a TOML table; the value is parsed as TOML, else taken as a string.
fn set(table: &mut toml::Table, key: &str, raw: &str) -> anyhow::Result<()> {
    let value: toml::Value = toml::from_str::<toml::Table>(&format!("v = {raw}"))
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(raw.to_string()));
    let mut parts: Vec<&str> = key.split('.').collect();
    let last = parts
        .pop()
        .filter(|l| !l.is_empty())
        .with_context(|| format!("override `{key}={raw}`: empty key"))?;
    let mut t = table;
    for p in parts {
        t = t
            .entry(p.to_string())
            .or_insert_with(|| toml::Value::Table(Default::default()))
            .as_table_mut()
            .with_context(|| format!("override `{key}`: `{p}` is not a section"))?;
    }
    t.insert(last.to_string(), value);
    Ok(())
}

/// Reads a run config and applies `key=value` overrides.
pub fn resolve(path: &Path, overrides: &[String]) -> anyhow::Result<RunConfig> {
    let text = String::from_utf8(read_file(path)?)
        .with_context(|| format!("{}: not UTF-8", path.display()))?;
    let mut table: toml::Table = toml::from_str(&text)
        .map_err(|e| anyhow::anyhow!("{}: {}", path.display(), e.message()))?;
    for o in overrides {
        let (k, v) = o
            .split_once('=')
            .with_context(|| format!("override `{o}`: expected key=value"))?;
        set(&mut table, k.trim(), v.trim())?;
    }
    let cfg: RunConfig = table
        .try_into()
        .map_err(|e: toml::de::Error| anyhow::anyhow!(explain(path, e.message())))?;
    anyhow::ensure!(
        cfg.batch_size > 0,
        "{}: batch_size must be at least 1",
        path.display()
    );
    anyhow::ensure!(
        cfg.epochs > 0,
        "{}: epochs must be at least 1",
        path.display()
    );
    cfg.augment
        .validate()
        .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    anyhow::ensure!(
        cfg.checkpoint_every > 0,
        "{}: checkpoint_every must be at least 1",
        path.display()
    );
    Ok(cfg)
}

fn read_split(path: &Path, format: Format, split: &str) -> anyhow::Result<Vec<Example>> {
    Ok(read_examples(
        &read_file(path)?,
        &path.display().to_string(),
        format,
        split,
    )?)
}

/// Ctrl-C (SIGINT) or SIGTERM (what batch schedulers send before killing a job) records the
/// signal (the loop checkpoints at the next optimizer-step boundary and exits 130 or 143, as a
/// shell reports them); a second signal ends the process at once. `NORMTUNE_INTERRUPT_AFTER=N`
/// raises the same flag after N optimizer steps, so tests can interrupt at an exact step.
fn interrupt_flag() -> anyhow::Result<Arc<AtomicUsize>> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let seen = Arc::new(AtomicBool::new(false));
    let which = Arc::new(AtomicUsize::new(0));
    for (sig, code) in [(SIGINT, 130), (SIGTERM, 143)] {
        // Registered first, so it sees the flag as the earlier signal left it.
        signal_hook::flag::register_conditional_shutdown(sig, code, seen.clone())?;
        signal_hook::flag::register(sig, seen.clone())?;
        signal_hook::flag::register_usize(sig, which.clone(), sig as usize)?;
    }
    Ok(which)
}

struct Run {
    cfg: RunConfig,
    out: PathBuf,
    task: Task,
    train: Vec<Example>,
    templates: normtune_core::data::QuestionTemplates,
    eval: Vec<Example>,
    images: DirSource,
    metric: String,
    best: Option<(usize, f64)>,
}

impl Run {
    fn log(&self, line: serde_json::Value) -> anyhow::Result<()> {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.out.join("metrics.jsonl"))
            .with_context(|| {
                format!("{}: cannot write", self.out.join("metrics.jsonl").display())
            })?;
        writeln!(f, "{line}")?;
        Ok(())
    }

    fn evaluate(
        &self,
        p: &Pipeline,
        limit: usize,
        bar: &ProgressBar,
    ) -> anyhow::Result<(Scores, Vec<normtune_core::train::Prediction>)> {
        let n = if limit == 0 {
            self.eval.len()
        } else {
            limit.min(self.eval.len())
        };
        let r = pollster::block_on(evaluate(
            p,
            self.task,
            &self.eval[..n],
            &self.images,
            &self.cfg.generation,
            |d, t| bar.set_message(format!("evaluating {d}/{t}")),
        ))?;
        Ok(r)
    }
}

pub fn run(a: TrainArgs) -> anyhow::Result<()> {
    let (cfg, resuming) = config_of(&a)?;
    run_config(cfg, resuming, a.device.device)?;
    Ok(())
}

/// The run's config: the file plus overrides, or the resumed run's own.
fn config_of(a: &TrainArgs) -> anyhow::Result<(RunConfig, bool)> {
    let (cfg, resuming) = match (&a.resume, &a.config) {
        (Some(dir), None) => {
            anyhow::ensure!(
                a.overrides.is_empty(),
                "--resume continues a run with its own config; overrides are not allowed"
            );
            let cfg = resolve(&dir.join("config.toml"), &[])?;
            recover_folder(&dir.join("checkpoint"));
            anyhow::ensure!(
                dir.join("checkpoint").join("trainer.json").is_file(),
                "{}: no checkpoint to resume from",
                dir.join("checkpoint").display()
            );
            (
                RunConfig {
                    out: dir.clone(),
                    ..cfg
                },
                true,
            )
        }
        (None, Some(path)) => (resolve(path, &a.overrides)?, false),
        _ => anyhow::bail!("give either --config FILE [key=value ...] or --resume RUN_DIR"),
    };
    Ok((cfg, resuming))
}

/// Runs (or resumes) a training run; returns what it writes to `metrics.json`.
pub fn run_config(
    cfg: RunConfig,
    resuming: bool,
    device: normtune_core::device::DeviceChoice,
) -> anyhow::Result<serde_json::Value> {
    for d in &cfg.devices {
        normtune_core::device::parse_device(d).map_err(|e| anyhow::anyhow!("devices: {e}"))?;
    }
    if !resuming {
        anyhow::ensure!(
            !cfg.out.exists(),
            "{}: already exists; choose a new `out` (or --resume it)",
            cfg.out.display()
        );
    }
    let resolved = toml::to_string_pretty(&cfg)?;
    eprintln!("resolved config:\n{resolved}");

    // Data first: a typo in a dataset file fails before the model loads.
    let train = read_split(&cfg.data.train, cfg.data.format, "train")?;
    let train = check_images(train, &cfg.data.train, &cfg.data)?;
    let eval = match &cfg.data.eval {
        Some(path) => check_images(
            read_split(path, cfg.data.format, &cfg.data.split)?,
            path,
            &cfg.data,
        )?,
        None if cfg.data.format == Format::IuXray => check_images(
            read_split(&cfg.data.train, cfg.data.format, &cfg.data.split)?,
            &cfg.data.train,
            &cfg.data,
        )?,
        None => train.clone(),
    };
    let train_file = cfg.data.train.display().to_string();
    let task = task_of(&train, &train_file)?;
    anyhow::ensure!(
        task_of(&eval, "the evaluation data")? == task,
        "the evaluation data is for a different task than {train_file}"
    );
    let images = DirSource::open(&cfg.data.images)?;
    let metric = cfg
        .eval
        .metric
        .clone()
        .unwrap_or_else(|| primary_metric(task).to_string());

    let dev = match cfg.devices.first() {
        Some(first) => normtune_core::device::parse_device(first)
            .map_err(|e| anyhow::anyhow!("devices: {e}"))?,
        None => choose(device).map_err(anyhow::Error::msg)?,
    };
    let train_device = |d: &normtune_core::burn::tensor::Device| {
        if cfg.train.gradient_checkpointing {
            d.clone().autodiff().gradient_checkpointing()
        } else {
            d.clone().autodiff()
        }
    };
    let mut replicas = Vec::new();
    for d in &cfg.devices {
        let c =
            normtune_core::device::parse_device(d).map_err(|e| anyhow::anyhow!("devices: {e}"))?;
        replicas.push(train_device(&c.device));
    }
    if replicas.len() > 1 {
        eprintln!(
            "devices: {} (data parallel; the model and optimizer on {})",
            cfg.devices.join(", "),
            dev.reason
        );
    } else {
        eprintln!("device: {}", dev.reason);
    }
    let device = train_device(&dev.device);
    let model = crate::fs::model_path(&cfg.model.to_string_lossy()).map_err(anyhow::Error::msg)?;
    let src = DirSource::open_model(&model)?;
    let mut p = pollster::block_on(Pipeline::load(&src, &device))?;
    if let Some(t) = &cfg.chat_prompt {
        p.set_chat_prompt(t)?;
    }
    check_label_names(&cfg.data, &p)?;
    // New PEFT modules (LoRA A, prefixes) draw their initial values from the device's RNG:
    // seeding it makes a run, and so its resumption, reproducible.
    dev.device.seed(cfg.seed);
    let stand_in = placeholder(&p);
    let model = peft::apply(std::mem::replace(&mut p.model, stand_in), &cfg.peft)?;
    let report = peft::report(&model);
    let names: Vec<&str> = model.components().iter().map(|c| c.name).collect();
    eprintln!(
        "peft: {}\n{}",
        cfg.peft.describe(&names),
        report.peft_line()
    );
    let model = match cfg.train.frozen_dtype {
        Some(dt) => {
            let (m, n) = peft::store_frozen(model, dt)?;
            eprintln!(
                "frozen weights: {n} values stored as {} ({:.1} MB saved)",
                dt.name(),
                (n as u64 * (4 - dt.bytes())) as f64 / 1e6
            );
            m
        }
        None => model,
    };

    let plan = Plan {
        examples: train.len(),
        batch_size: cfg.batch_size,
        epochs: cfg.epochs,
        seed: cfg.seed,
    };
    let mut tcfg = cfg.train.clone();
    tcfg.total_steps = plan.optimizer_steps(tcfg.grad_accum);
    let out = cfg.out.clone();
    let mut trainer = if resuming {
        let ck = DirSource::open(out.join("checkpoint"))?;
        let t = pollster::block_on(Trainer::resume(model, tcfg, plan, &ck))?;
        // Lines logged after the checkpoint (a crash between logging and checkpointing) are
        // dropped: the resumed run logs those batches again.
        let at = t.cursor().epoch * plan.batches_per_epoch() + t.cursor().batch;
        truncate_log(&out.join("metrics.jsonl"), at)?;
        eprintln!(
            "resumed at step {} (epoch {}, batch {})",
            t.steps_done(),
            t.cursor().epoch,
            t.cursor().batch
        );
        t
    } else {
        std::fs::create_dir_all(&out)
            .with_context(|| format!("{}: cannot create", out.display()))?;
        write_file_atomic(&out.join("config.toml"), resolved.as_bytes())?;
        Trainer::new(model, tcfg)?.with_plan(plan)?
    };
    let best = std::fs::read(out.join("best.json"))
        .ok()
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        .and_then(|v| Some((v["step"].as_u64()? as usize, v["value"].as_f64()?)));
    let templates = cfg.data.templates()?;
    let mut run = Run {
        cfg,
        out,
        task,
        train,
        templates,
        eval,
        images,
        metric,
        best,
    };

    let interrupt = interrupt_flag()?;
    let interrupt_after: Option<usize> = std::env::var("NORMTUNE_INTERRUPT_AFTER")
        .ok()
        .and_then(|v| v.parse().ok());
    let total = plan.total_batches();
    let bar = ProgressBar::new(total as u64).with_style(
        ProgressStyle::with_template(
            "{spinner} [{bar:28}] {pos}/{len} micro-batches · {msg} · {elapsed_precise}, eta {eta}",
        )?
        .progress_chars("=> "),
    );
    let start_position = trainer.cursor().epoch * plan.batches_per_epoch() + trainer.cursor().batch;
    bar.set_position(start_position as u64);
    // Without a terminal (logs, CI) the bar hides itself: print a plain line now and then.
    let plain = !std::io::stderr().is_terminal();
    let every = (total / 20).max(1);
    let mut start_scores: Option<serde_json::Value> = None;
    if run.cfg.eval.at_start {
        if resuming {
            start_scores = std::fs::read_to_string(run.out.join("metrics.jsonl"))
                .ok()
                .and_then(|t| {
                    t.lines()
                        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
                        .find(|v| v["kind"] == "start")
                });
        } else {
            let ep = p.with_model(trainer.model().clone());
            let (scores, _) = run.evaluate(&ep, 0, &bar)?;
            let mut line = serde_json::json!({"kind": "start", "batch": 0, "step": 0});
            for (k, v) in &scores {
                line[k] = v.clone();
            }
            run.log(line.clone())?;
            let msg = format!(
                "before training: {} = {}",
                run.metric,
                scores
                    .get(&run.metric)
                    .and_then(|v| v.as_f64())
                    .map_or("undefined".into(), |v| format!("{v:.4}"))
            );
            if plain {
                eprintln!("{msg}");
            } else {
                bar.println(msg);
            }
            start_scores = Some(line);
        }
        if let Some(v) = start_scores.as_mut().and_then(|v| v.as_object_mut()) {
            for k in ["kind", "batch", "step"] {
                v.remove(k);
            }
        }
    }
    let started = std::time::Instant::now();
    let mut step_ms: Vec<f64> = Vec::new();
    let (mut seen, mut done_here) = (0usize, 0usize);
    let mut last_checkpoint = trainer.steps_done();
    while let Some(next) = trainer.next_batch() {
        let batch = pollster::block_on(load_batch(
            &p,
            &run.train,
            &next,
            &run.images,
            &run.cfg.augment,
            &run.templates,
            run.cfg.seed,
        ))?;
        let t0 = std::time::Instant::now();
        let ev = match pollster::block_on(trainer.step_parallel(&batch, &replicas)) {
            Ok(ev) => ev,
            Err(e) => {
                bar.abandon();
                let checkpoint = run.out.join("checkpoint");
                if !checkpoint.join("trainer.json").exists() {
                    anyhow::bail!("{e}; no checkpoint was written yet (step {last_checkpoint})");
                }
                anyhow::bail!(
                    "{e}; the last good checkpoint (step {last_checkpoint}) is in {} (resume with --resume {})",
                    checkpoint.display(),
                    run.out.display()
                );
            }
        };
        step_ms.push(t0.elapsed().as_secs_f64() * 1e3);
        seen += next.indices.len();
        done_here += 1;
        let rate = seen as f64 / started.elapsed().as_secs_f64();
        let position = trainer.cursor().epoch * plan.batches_per_epoch() + trainer.cursor().batch;
        run.log(serde_json::json!({"kind": "train", "epoch": next.epoch, "batch": position, "step": ev.step, "loss": ev.loss, "lr": ev.lr, "samples_per_s": rate, "rss_mb": rss_mb()}))?;
        let msg = format!(
            "step {} loss {:.4} lr {:.2e} {rate:.1} samples/s",
            ev.step, ev.loss, ev.lr
        );
        bar.set_position(position as u64);
        if plain && (position % every == 0 || position == total) {
            let eta =
                started.elapsed().as_secs_f64() / done_here as f64 * (total - position) as f64;
            eprintln!("{position}/{total} {msg} eta {eta:.0}s");
        }
        bar.set_message(msg);
        if !ev.applied {
            continue;
        }
        let step = ev.step;
        let eval_now = if run.cfg.eval.every == 0 {
            next.ends_epoch
        } else {
            step % run.cfg.eval.every == 0
        };
        if eval_now {
            let ep = p.with_model(trainer.model().clone());
            let (scores, _) = run.evaluate(&ep, run.cfg.eval.max_examples, &bar)?;
            let value = scores.get(&run.metric).and_then(|v| v.as_f64());
            let mut line = serde_json::json!({"kind": "eval", "epoch": next.epoch, "batch": position, "step": step});
            for (k, v) in &scores {
                line[k] = v.clone();
            }
            run.log(line)?;
            let line = format!(
                "eval at step {step}: {} = {}",
                run.metric,
                value.map_or("undefined".into(), |v| format!("{v:.4}"))
            );
            // A hidden bar (no terminal) prints nothing: say it plainly then.
            if plain {
                eprintln!("{line}");
            } else {
                bar.println(line);
            }
            if let Some(v) = value
                && run.best.is_none_or(|(_, b)| v > b)
            {
                run.best = Some((step, v));
                let files = peft::io::save_adapter(
                    trainer.model(),
                    &run.cfg.peft,
                    &run.cfg.model.display().to_string(),
                )?;
                replace_folder_atomic(&run.out.join("best"), &files)?;
                write_file_atomic(
                    &run.out.join("best.json"),
                    serde_json::to_string_pretty(
                        &serde_json::json!({"step": step, "metric": run.metric, "value": v}),
                    )?
                    .as_bytes(),
                )?;
            }
        }
        let signal = interrupt.load(Ordering::SeqCst);
        let interrupted = signal != 0 || interrupt_after.is_some_and(|n| step >= n);
        if eval_now || interrupted || step % run.cfg.checkpoint_every == 0 {
            replace_folder_atomic(&run.out.join("checkpoint"), &trainer.checkpoint()?)?;
            last_checkpoint = step;
        }
        if interrupted {
            bar.abandon();
            let term = signal == signal_hook::consts::SIGTERM as usize;
            eprintln!(
                "interrupted{}: checkpoint at step {step} saved in {}; continue with `normtune train --resume {}`",
                if term { " (SIGTERM)" } else { "" },
                run.out.join("checkpoint").display(),
                run.out.display()
            );
            std::process::exit(if term { 143 } else { 130 });
        }
    }

    // Adapter first (trainability lives on the autodiff model), then the final evaluation.
    let model = trainer.into_model();
    let files =
        peft::io::save_adapter(&model, &run.cfg.peft, &run.cfg.model.display().to_string())?;
    replace_folder_atomic(&run.out.join("adapter"), &files)?;
    let ep = p.with_model(model.clone());
    drop(model);
    let (scores, preds) = run.evaluate(&ep, 0, &bar)?;
    bar.finish_and_clear();
    let mut lines = Vec::new();
    for pr in &preds {
        lines.extend(serde_json::to_vec(pr)?);
        lines.push(b'\n');
    }
    write_file_atomic(&run.out.join("predictions.jsonl"), &lines)?;
    let mut metrics = serde_json::json!({
        "task": run.task,
        "examples": run.eval.len(),
        "trainable_params": report.trainable_params,
        "total_params": report.total_params,
        "best": run.best.map(|(s, v)| serde_json::json!({"step": s, "metric": run.metric, "value": v})),
        "start": start_scores,
        "train_seconds": started.elapsed().as_secs_f64(),
        "step_ms_median": median(&mut step_ms),
        "peak_rss_mb": peak_rss_mb(),
    });
    for (k, v) in &scores {
        metrics[k] = v.clone();
    }
    write_file_atomic(
        &run.out.join("metrics.json"),
        &serde_json::to_vec_pretty(&metrics)?,
    )?;
    println!("{metrics}");
    let _ = run.log(serde_json::json!({"kind": "done"}));
    Ok(metrics)
}

/// The median of measured times (sorts `v`); `None` when `v` is empty.
pub fn median(v: &mut [f64]) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    })
}

/// The process's peak resident memory in MiB (Linux `VmHWM`); `None` where the OS does not
/// tell.
pub fn peak_rss_mb() -> Option<f64> {
    status_mb("VmHWM:")
}

/// The process's resident memory now, in MiB (Linux `VmRSS`), logged with every step so a
/// leak shows as a rising line in `metrics.jsonl`.
pub fn rss_mb() -> Option<f64> {
    status_mb("VmRSS:")
}

fn status_mb(field: &str) -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix(field))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kb / 1024.0)
}

/// Keeps the `metrics.jsonl` lines of micro-batches up to `position`.
fn truncate_log(path: &Path, position: usize) -> anyhow::Result<()> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return Ok(());
    };
    let kept: String = text
        .lines()
        .filter(|l| {
            serde_json::from_str::<serde_json::Value>(l)
                .ok()
                .and_then(|v| v["batch"].as_u64())
                .is_some_and(|b| b as usize <= position)
        })
        .map(|l| format!("{l}\n"))
        .collect();
    write_file_atomic(path, kept.as_bytes())
}

/// A labelled dataset must name the classifier's labels in the classifier's order.
fn check_label_names(data: &DataConfig, p: &Pipeline) -> anyhow::Result<()> {
    let normtune_core::models::ModelConfig::Vit(c) = &p.config else {
        return Ok(());
    };
    let file = data.train.display().to_string();
    let names: Vec<String> = match data.format {
        Format::LabelsCsv => {
            normtune_core::data::read_labels_csv(&read_file(&data.train)?, &file)?.0
        }
        Format::NihCsv => normtune_core::data::NIH_LABELS
            .iter()
            .map(|s| s.to_string())
            .collect(),
        _ => return Ok(()),
    };
    let model = c.labels();
    anyhow::ensure!(
        names == model,
        "{file}: labels [{}] are not the model's id2label [{}] (same names, same order)",
        names.join(", "),
        model.join(", ")
    );
    Ok(())
}

/// A stand-in left in the pipeline while the trainer owns the model (burn initialises lazily,
/// so it allocates nothing).
fn placeholder(p: &Pipeline) -> Model {
    normtune_core::models::init_model(&p.config, &normtune_core::burn::tensor::Device::flex())
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_suggested_keys_come_from_the_config_types() {
        let k = super::known_keys();
        for key in [
            "model",
            "question_templates",
            "gradient_checkpointing",
            "frozen_dtype",
            "num_beams",
            "at_start",
            "default_method",
            "learning_rate",
        ] {
            assert!(k.iter().any(|x| x == key), "{key} in {k:?}");
        }
        let e = super::explain(
            std::path::Path::new("run.toml"),
            "unknown field `frozen_dtpye`, expected one of ...",
        );
        assert!(e.contains("did you mean `frozen_dtype`?"), "{e}");
    }
}
