//! `normtune train`: one TOML run config plus `key=value` overrides → PEFT fine-tuning with the
//! core trainer, progress on the terminal, events in `runs/<name>/events.jsonl`, evaluation, and
//! the adapter folder written atomically at the end.

use crate::cli::TrainArgs;
use crate::fs::{DirSource, read_file, write_folder_atomic};
use anyhow::Context;
use normtune_core::burn::module::Module;
use normtune_core::data::{VqaFormat, decode_image, read_iu_xray, read_vqa};
use normtune_core::device::choose;
use normtune_core::metrics::{bleu, cider_d, rouge_l, vqa_accuracy};
use normtune_core::models::Pipeline;
use normtune_core::models::blip::GenConfig;
use normtune_core::peft::{self, PeftConfig};
use normtune_core::train::{TrainConfig, Trainer};
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::{Path, PathBuf};

/// Dataset formats `train` reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
enum Format {
    /// VQA-RAD's JSON array.
    VqaRad,
    /// SLAKE's JSON array (English questions).
    Slake,
    /// JSON lines with `image`, `question`, `answer`.
    Jsonl,
    /// IU-Xray `annotation.json` (report generation): `train` split for training, `test` for eval.
    IuXray,
}

/// One example of either task: a question (VQA) or none (report generation).
#[derive(Debug, Clone)]
struct Item {
    image: String,
    question: Option<String>,
    target: String,
    answer_type: String,
}

/// The data section.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct DataConfig {
    /// `vqa-rad`, `slake`, `jsonl` or `iu-xray`.
    format: Format,
    /// Training questions file.
    train: PathBuf,
    /// Evaluation questions file (the training file when absent).
    eval: Option<PathBuf>,
    /// Folder the records' image names are relative to.
    images: PathBuf,
}

/// A run config.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RunConfig {
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
    /// Decoding for evaluation.
    #[serde(default)]
    generation: GenConfig,
}

fn default_batch() -> usize {
    8
}
fn default_epochs() -> usize {
    3
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

fn resolve(path: &Path, overrides: &[String]) -> anyhow::Result<RunConfig> {
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
        .map_err(|e: toml::de::Error| anyhow::anyhow!("{}: {}", path.display(), e.message()))?;
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
    Ok(cfg)
}

/// A deterministic permutation (SplitMix64-driven Fisher-Yates), so a seed fixes the data order.
fn shuffled(n: usize, seed: u64, epoch: usize) -> Vec<usize> {
    let mut state = seed ^ (epoch as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    let mut next = || {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    };
    let mut idx: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        idx.swap(i, (next() % (i as u64 + 1)) as usize);
    }
    idx
}

pub fn run(a: TrainArgs) -> anyhow::Result<()> {
    let cfg = resolve(&a.config, &a.overrides)?;
    anyhow::ensure!(
        !cfg.out.exists(),
        "{}: already exists; choose a new `out`",
        cfg.out.display()
    );
    let resolved = toml::to_string_pretty(&cfg)?;
    eprintln!("resolved config:\n{resolved}");

    let dev = choose(a.device.device);
    eprintln!("device: {}", dev.reason);
    let device = dev.device.clone().autodiff();
    let src = DirSource::open(&cfg.model)?;
    let mut p = pollster::block_on(Pipeline::load(&src, &device))?;
    let read = |path: &Path, split: &str| -> anyhow::Result<Vec<Item>> {
        let (bytes, name) = (read_file(path)?, path.display().to_string());
        let vqa = |f: VqaFormat| -> anyhow::Result<Vec<Item>> {
            Ok(read_vqa(&bytes, &name, f)?
                .into_iter()
                .map(|e| Item {
                    image: e.image,
                    question: Some(e.question),
                    target: e.answer,
                    answer_type: e.answer_type,
                })
                .collect())
        };
        match cfg.data.format {
            Format::VqaRad => vqa(VqaFormat::VqaRad),
            Format::Slake => vqa(VqaFormat::Slake),
            Format::Jsonl => vqa(VqaFormat::Jsonl),
            Format::IuXray => {
                let items: Vec<Item> = read_iu_xray(&bytes, &name)?
                    .into_iter()
                    .filter(|e| e.split == split)
                    .filter_map(|e| {
                        let image = e.images.into_iter().next()?;
                        Some(Item {
                            image,
                            question: None,
                            target: e.report,
                            answer_type: String::new(),
                        })
                    })
                    .collect();
                anyhow::ensure!(
                    !items.is_empty(),
                    "{name}: no `{split}` studies with an image"
                );
                Ok(items)
            }
        }
    };
    let train = read(&cfg.data.train, "train")?;
    let eval = read(cfg.data.eval.as_ref().unwrap_or(&cfg.data.train), "test").or_else(|e| {
        if cfg.data.eval.is_none() {
            Ok(train.clone())
        } else {
            Err(e)
        }
    })?;
    let load_image = |name: &str| -> anyhow::Result<normtune_core::image::DynamicImage> {
        let path = cfg.data.images.join(name);
        Ok(decode_image(
            &read_file(&path)?,
            &path.display().to_string(),
        )?)
    };
    let train_images: Vec<normtune_core::image::DynamicImage> = train
        .iter()
        .map(|e| load_image(&e.image))
        .collect::<anyhow::Result<_>>()?;

    p.model = peft::apply(p.model, &cfg.peft)?;
    let report = peft::report(&p.model);
    let names: Vec<&str> = p.model.components().iter().map(|c| c.name).collect();
    eprintln!(
        "peft: {}\n{}",
        cfg.peft.describe(&names),
        report.peft_line()
    );

    let steps_per_epoch = train.len().div_ceil(cfg.batch_size);
    let mut tcfg = cfg.train.clone();
    tcfg.total_steps = (steps_per_epoch * cfg.epochs).div_ceil(tcfg.grad_accum.max(1));
    // The trainer owns the model while the pipeline keeps building batches; burn initialises
    // parameters lazily, so the placeholder left behind allocates nothing.
    let placeholder =
        normtune_core::models::init_model(&p.config, &normtune_core::burn::tensor::Device::flex());
    let model = std::mem::replace(&mut p.model, placeholder);
    let mut trainer = Trainer::new(model, tcfg)?;

    std::fs::create_dir_all(&cfg.out)
        .with_context(|| format!("{}: cannot create", cfg.out.display()))?;
    std::fs::write(cfg.out.join("config.toml"), &resolved)?;
    let mut events = std::fs::File::create(cfg.out.join("events.jsonl"))?;
    let total = steps_per_epoch * cfg.epochs;
    let mut done = 0usize;
    let started = std::time::Instant::now();
    let mut seen = 0usize;
    for epoch in 0..cfg.epochs {
        for chunk in shuffled(train.len(), cfg.seed, epoch).chunks(cfg.batch_size) {
            let batch = if train[0].question.is_some() {
                let items: Vec<(normtune_core::image::DynamicImage, &str, &str)> = chunk
                    .iter()
                    .map(|&i| {
                        (
                            train_images[i].clone(),
                            train[i].question.as_deref().unwrap_or(""),
                            train[i].target.as_str(),
                        )
                    })
                    .collect();
                p.vqa_batch(&items)?
            } else {
                let items: Vec<(normtune_core::image::DynamicImage, &str)> = chunk
                    .iter()
                    .map(|&i| (train_images[i].clone(), train[i].target.as_str()))
                    .collect();
                p.report_batch(&items)?
            };
            let ev = pollster::block_on(trainer.step(&batch))?;
            seen += chunk.len();
            let rate = seen as f64 / started.elapsed().as_secs_f64();
            writeln!(
                events,
                "{}",
                serde_json::json!({"epoch": epoch, "step": ev.step, "loss": ev.loss, "lr": ev.lr, "samples_per_s": rate})
            )?;
            done += 1;
            let eta = started.elapsed().as_secs_f64() / done as f64 * (total - done) as f64;
            eprint!(
                "\r{done}/{total} loss {:.4} lr {:.2e} {rate:.1} samples/s eta {eta:.0}s   ",
                ev.loss, ev.lr
            );
        }
    }
    eprintln!();

    // Adapter first (trainability lives on the autodiff model), then evaluate without autodiff.
    let model = trainer.into_model();
    let files = peft::io::save_adapter(&model, &cfg.peft, &cfg.model.display().to_string())?;
    write_folder_atomic(&cfg.out.join("adapter"), &files)?;
    p.model = model.valid();
    p.device = p.device.clone().inner();
    let mut preds = Vec::with_capacity(eval.len());
    for e in &eval {
        let pixels = p.image_tensor(&read_file(&cfg.data.images.join(&e.image))?, &e.image)?;
        let g = match &e.question {
            Some(q) => pollster::block_on(p.answer(pixels, q, &cfg.generation))?,
            None => pollster::block_on(p.report(pixels, &cfg.generation))?,
        };
        preds.push(g.text);
    }
    let scores = if eval[0].question.is_some() {
        let acc = vqa_accuracy(
            eval.iter()
                .zip(&preds)
                .map(|(e, p)| (p.as_str(), e.target.as_str(), e.answer_type.as_str())),
        );
        serde_json::json!({ "vqa_accuracy": acc })
    } else {
        // pycocoevalcap's scorers on text tokenised as: lower case, punctuation removed.
        let norm = |t: &str| -> String {
            t.to_lowercase()
                .chars()
                .map(|c| {
                    if c.is_alphanumeric() || c.is_whitespace() {
                        c
                    } else {
                        ' '
                    }
                })
                .collect::<String>()
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ")
        };
        let cands: Vec<String> = preds.iter().map(|p| norm(p)).collect();
        let refs: Vec<Vec<String>> = eval.iter().map(|e| vec![norm(&e.target)]).collect();
        let c: Vec<&str> = cands.iter().map(String::as_str).collect();
        let r: Vec<Vec<&str>> = refs
            .iter()
            .map(|v| v.iter().map(String::as_str).collect())
            .collect();
        serde_json::json!({ "bleu": bleu(&c, &r).0, "rouge_l": rouge_l(&c, &r).0, "cider_d": cider_d(&c, &r).0 })
    };
    let mut metrics = serde_json::json!({ "examples": eval.len(), "trainable_params": report.trainable_params, "total_params": report.total_params });
    for (k, v) in scores.as_object().into_iter().flatten() {
        metrics[k] = v.clone();
    }
    std::fs::write(
        cfg.out.join("metrics.json"),
        serde_json::to_vec_pretty(&metrics)?,
    )?;
    println!("{metrics}");
    Ok(())
}
