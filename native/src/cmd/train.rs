//! `normtune train`: one TOML run config plus `key=value` overrides → PEFT fine-tuning. The
//! run itself (PEFT, evaluation and checkpoint cadence, best tracking, stopping) is core's
//! [`Run`]; this shell reads the files, writes what the run's events carry and draws progress.
//! The run folder holds the resolved config, `metrics.jsonl` (one line per step and per
//! evaluation), `checkpoint/` (trainable tensors + AdamW state + data position, replaced
//! atomically), `best/` (the adapter with the best validation score), `adapter/` (the final one),
//! `predictions.jsonl` and `metrics.json`. Ctrl-C or SIGTERM checkpoints and exits; `--resume DIR`
//! continues bit-identically.

use crate::cli::TrainArgs;
use crate::config::{config_of, load_data};
use crate::fs::{DirSource, replace_folder_atomic, write_file_atomic};
use crate::sys::{interrupt_flag, median, peak_rss_mb, rss_mb};
use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};
use normtune_core::device::{DeviceChoice, choose, parse_device};
use normtune_core::train::{Run, RunEvent, RunSpec};
use std::io::{IsTerminal, Write};
use std::path::Path;
use std::sync::atomic::Ordering;

pub fn run(a: TrainArgs) -> anyhow::Result<()> {
    let (cfg, resuming) = config_of(&a)?;
    run_config(cfg, resuming, a.device.device)?;
    Ok(())
}

/// Runs (or resumes) a training run; returns what it writes to `metrics.json`.
pub fn run_config(
    cfg: RunSpec,
    resuming: bool,
    device: DeviceChoice,
) -> anyhow::Result<serde_json::Value> {
    if !resuming {
        anyhow::ensure!(
            !cfg.out.exists(),
            "{}: already exists; choose a new `out` (or --resume it)",
            cfg.out.display()
        );
    }
    let resolved = toml::to_string_pretty(&cfg)?;
    eprintln!("resolved config:\n{resolved}");
    let data = load_data(&cfg.data)?;
    let dev = match cfg.devices.first() {
        Some(first) => parse_device(first).map_err(|e| anyhow::anyhow!("devices: {e}"))?,
        None => choose(device).map_err(anyhow::Error::msg)?,
    };
    if cfg.devices.len() > 1 {
        let all = cfg.devices.join(", ");
        eprintln!(
            "devices: {all} (data parallel; the model and optimizer on {})",
            dev.reason
        );
    } else {
        eprintln!("device: {}", dev.reason);
    }
    let model = crate::fs::model_path(&cfg.model.to_string_lossy()).map_err(anyhow::Error::msg)?;
    let src = DirSource::open_model(&model)?;
    let out = cfg.out.clone();
    let mut run = pollster::block_on(Run::load(cfg, &src, &dev.device, data, true))?;
    eprintln!("peft: {}\n{}", run.describe(), run.report().peft_line());
    if let (Some(n), Some(dt)) = (run.frozen(), run.spec().train.frozen_dtype) {
        let saved = (n as u64 * (4 - dt.bytes())) as f64 / 1e6;
        eprintln!(
            "frozen weights: {n} values stored as {} ({saved:.1} MB saved)",
            dt.name()
        );
    }
    let log = Log(out.join("metrics.jsonl"));
    if resuming {
        let best = std::fs::read(out.join("best.json"))
            .ok()
            .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
            .and_then(|v| Some((v["step"].as_u64()? as usize, v["value"].as_f64()?)));
        let start = log.start_scores();
        let ck = DirSource::open(out.join("checkpoint"))?;
        run = pollster::block_on(run.resume(&ck, best, start))?;
        // Lines logged after the checkpoint (a crash between logging and checkpointing) are
        // dropped: the resumed run logs those batches again.
        truncate_log(&log.0, run.position())?;
        let per_epoch = run.plan().batches_per_epoch();
        let (epoch, batch) = (run.position() / per_epoch, run.position() % per_epoch);
        eprintln!(
            "resumed at step {} (epoch {epoch}, batch {batch})",
            run.steps_done()
        );
    } else {
        std::fs::create_dir_all(&out)
            .with_context(|| format!("{}: cannot create", out.display()))?;
        write_file_atomic(&out.join("config.toml"), resolved.as_bytes())?;
    }
    let bar = drive(&mut run, &out, &log)?;

    let (task, examples, metric) = (run.task(), run.data().eval.len(), run.metric().to_string());
    let report = run.report().clone();
    let finish = run.finish(|d, t| bar.set_message(format!("evaluating {d}/{t}")));
    let mut done = pollster::block_on(finish)?;
    bar.finish_and_clear();
    replace_folder_atomic(&out.join("adapter"), &done.adapter)?;
    let mut lines = Vec::new();
    for pr in &done.predictions {
        lines.extend(serde_json::to_vec(pr)?);
        lines.push(b'\n');
    }
    write_file_atomic(&out.join("predictions.jsonl"), &lines)?;
    let mut metrics = serde_json::json!({
        "task": task,
        "examples": examples,
        "trainable_params": report.trainable_params,
        "total_params": report.total_params,
        "best": done.best.map(|(s, v)| serde_json::json!({"step": s, "metric": metric, "value": v})),
        "start": done.start,
        "train_seconds": done.train_seconds,
        "step_ms_median": median(&mut done.step_ms),
        "peak_rss_mb": peak_rss_mb(),
    });
    for (k, v) in &done.scores {
        metrics[k] = v.clone();
    }
    write_file_atomic(
        &out.join("metrics.json"),
        &serde_json::to_vec_pretty(&metrics)?,
    )?;
    println!("{metrics}");
    let _ = log.append(serde_json::json!({"kind": "done"}));
    Ok(metrics)
}

/// Pulls the run's events until its plan is done: logs them, writes the files they carry,
/// draws progress, and turns a signal into a checkpointed stop.
fn drive(run: &mut Run<DirSource>, out: &Path, log: &Log) -> anyhow::Result<ProgressBar> {
    let interrupt = interrupt_flag()?;
    let interrupt_after: Option<usize> = std::env::var("NORMTUNE_INTERRUPT_AFTER")
        .ok()
        .and_then(|v| v.parse().ok());
    let total = run.plan().total_batches();
    let bar = ProgressBar::new(total as u64).with_style(
        ProgressStyle::with_template(
            "{spinner} [{bar:28}] {pos}/{len} micro-batches · {msg} · {elapsed_precise}, eta {eta}",
        )?
        .progress_chars("=> "),
    );
    let first = run.position();
    bar.set_position(first as u64);
    // Without a terminal (logs, CI) the bar hides itself: print a plain line now and then.
    let plain = !std::io::stderr().is_terminal();
    let say = |line: String| {
        if plain {
            eprintln!("{line}")
        } else {
            bar.println(line)
        }
    };
    let every = (total / 20).max(1);
    let started = std::time::Instant::now();
    let checkpoint = out.join("checkpoint");
    loop {
        let event = pollster::block_on(
            run.next_event(|d, t| bar.set_message(format!("evaluating {d}/{t}"))),
        );
        let event = match event {
            Ok(Some(e)) => e,
            Ok(None) => return Ok(bar),
            Err(e) => {
                bar.abandon();
                match run.last_checkpoint() {
                    None => anyhow::bail!("{e}; no checkpoint was written yet (step 0)"),
                    Some(s) => anyhow::bail!(
                        "{e}; the last good checkpoint (step {s}) is in {} (resume with --resume {})",
                        checkpoint.display(),
                        out.display()
                    ),
                }
            }
        };
        if interrupt.load(Ordering::SeqCst) != 0 {
            run.stop();
        }
        match event {
            RunEvent::Step(r) => {
                let (ev, position) = (&r.event, r.position);
                log.append(serde_json::json!({"kind": "train", "epoch": r.epoch, "batch": position, "step": ev.step, "loss": ev.loss, "lr": ev.lr, "samples_per_s": r.samples_per_s, "rss_mb": rss_mb()}))?;
                let msg = format!(
                    "step {} loss {:.4} lr {:.2e} {:.1} samples/s",
                    ev.step, ev.loss, ev.lr, r.samples_per_s
                );
                bar.set_position(position as u64);
                if plain && (position % every == 0 || position == total) {
                    let done = (position - first).max(1) as f64;
                    let eta = started.elapsed().as_secs_f64() / done * (total - position) as f64;
                    eprintln!("{position}/{total} {msg} eta {eta:.0}s");
                }
                bar.set_message(msg);
                if ev.applied && interrupt_after.is_some_and(|n| ev.step >= n) {
                    run.stop();
                }
            }
            RunEvent::Eval {
                start,
                epoch,
                position,
                step,
                scores,
                value,
                ..
            } => {
                let mut line = match start {
                    true => serde_json::json!({"kind": "start", "batch": 0, "step": 0}),
                    false => {
                        serde_json::json!({"kind": "eval", "epoch": epoch, "batch": position, "step": step})
                    }
                };
                for (k, v) in &scores {
                    line[k] = v.clone();
                }
                log.append(line)?;
                let value = value.map_or("undefined".into(), |v| format!("{v:.4}"));
                match start {
                    true => say(format!("before training: {} = {value}", run.metric())),
                    false => say(format!("eval at step {step}: {} = {value}", run.metric())),
                }
            }
            RunEvent::Best {
                step,
                metric,
                value,
                adapter,
            } => {
                replace_folder_atomic(&out.join("best"), &adapter.unwrap_or_default())?;
                let best = serde_json::json!({"step": step, "metric": metric, "value": value});
                write_file_atomic(
                    &out.join("best.json"),
                    serde_json::to_string_pretty(&best)?.as_bytes(),
                )?;
            }
            RunEvent::Checkpoint { files, .. } => replace_folder_atomic(&checkpoint, &files)?,
            RunEvent::Stopped { step } => {
                bar.abandon();
                let term =
                    interrupt.load(Ordering::SeqCst) == signal_hook::consts::SIGTERM as usize;
                eprintln!(
                    "interrupted{}: checkpoint at step {step} saved in {}; continue with `normtune train --resume {}`",
                    if term { " (SIGTERM)" } else { "" },
                    checkpoint.display(),
                    out.display()
                );
                std::process::exit(if term { 143 } else { 130 });
            }
        }
    }
}

/// `metrics.jsonl`: one JSON line per event.
struct Log(std::path::PathBuf);

impl Log {
    fn append(&self, line: serde_json::Value) -> anyhow::Result<()> {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.0)
            .with_context(|| format!("{}: cannot write", self.0.display()))?;
        writeln!(f, "{line}")?;
        Ok(())
    }

    /// The zero-shot scores a run logged before training (`kind = "start"`).
    fn start_scores(&self) -> Option<normtune_core::metrics::Scores> {
        let text = std::fs::read_to_string(&self.0).ok()?;
        let line = text
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .find(|v| v["kind"] == "start")?;
        let mut scores = line.as_object()?.clone();
        for k in ["kind", "batch", "step"] {
            scores.remove(k);
        }
        Some(scores)
    }
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
