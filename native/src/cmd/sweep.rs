//! `normtune sweep`: one run per PEFT method / placement on the same data, seed and schedule,
//! then the papers' table (`results.csv`, `results.md`) and a plot of the score against the
//! trainable share (`results.svg`, `results.png`).
//!
//! Each point is a `normtune train` run in its own process (`<out>/<name>/`), so its peak memory
//! is its own and a crash or Ctrl-C loses at most one point: rerunning the same sweep skips
//! finished points and resumes an interrupted one from its checkpoint.

use crate::cli::SweepArgs;
use crate::cmd::demo::{peft_table, prepare, run_table};
use crate::fs::{read_file, write_file_atomic};
use anyhow::Context;
use normtune_core::demo::Domain;
use serde::Deserialize;
use std::path::{Path, PathBuf};

/// One point of the grid.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Point {
    /// Row name (also its folder name).
    pub name: String,
    /// PEFT spec, as `--peft`: `layernorm`, `vision=frozen,text_encoder=full,decoder=lora`, ...
    pub peft: String,
    /// Peak learning rate (default: the run config's).
    pub lr: Option<f64>,
    /// MILE's question templates for this point (`data.question_templates`: a file, or
    /// `default` for the built-in pool); default: the run config's.
    #[serde(default)]
    pub question_templates: Option<String>,
}

/// `sweep.toml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct SweepConfig {
    /// Folder for the points' runs and the results.
    out: PathBuf,
    /// A `normtune train` run config every point shares (its `out` and `[peft]` are replaced per
    /// point). Without it: the built-in benchmark (the demo base model on `domain`).
    run: Option<PathBuf>,
    /// Built-in benchmark: target domain.
    #[serde(default = "default_domain")]
    domain: String,
    /// Built-in benchmark: training studies.
    #[serde(default = "default_studies")]
    studies: usize,
    /// Built-in benchmark: test studies.
    #[serde(default = "default_test_studies")]
    test_studies: usize,
    /// Built-in benchmark: seed.
    #[serde(default = "default_seed")]
    seed: u64,
    /// `key=value` overrides applied to every point (e.g. `epochs=5`).
    #[serde(default)]
    overrides: Vec<String>,
    /// Names from the default grid to run (default: all of it). `[[point]]`s are added.
    methods: Option<Vec<String>>,
    /// Extra points.
    #[serde(default)]
    point: Vec<Point>,
}

fn default_domain() -> String {
    "scanner-b".into()
}
fn default_studies() -> usize {
    300
}
fn default_test_studies() -> usize {
    100
}
fn default_seed() -> u64 {
    1
}

/// The default grid: the methods of the three papers, each at a learning rate usual for it
/// (full fine-tuning low, the few-parameter methods higher). MILE's placements are named
/// vision-encoder-decoder with F = frozen, T = fully trained.
pub fn default_grid() -> Vec<Point> {
    normtune_core::peft::registry::presets()
        .map(|p| Point {
            name: p.name.into(),
            peft: p.spec.into(),
            lr: Some(p.lr),
            question_templates: None,
        })
        .collect()
}

/// A finished point's numbers.
#[derive(Debug, Clone)]
struct Row {
    name: String,
    peft: String,
    lr: Option<f64>,
    metrics: Option<serde_json::Value>,
    /// Share of test predictions equal to the most frequent one (1.0 = a constant answer).
    top_share: Option<f64>,
    error: Option<String>,
}

fn resolve_sweep(path: &Path) -> anyhow::Result<SweepConfig> {
    let text = String::from_utf8(read_file(path)?)
        .with_context(|| format!("{}: not UTF-8", path.display()))?;
    toml::from_str(&text).map_err(|e| anyhow::anyhow!("{}: {}", path.display(), e.message()))
}

pub fn run(a: SweepArgs) -> anyhow::Result<()> {
    let cfg = match &a.config {
        Some(p) => resolve_sweep(p)?,
        None => SweepConfig {
            out: a.out.clone().unwrap_or_else(|| PathBuf::from("runs/sweep")),
            run: None,
            domain: default_domain(),
            studies: default_studies(),
            test_studies: default_test_studies(),
            seed: default_seed(),
            overrides: vec![],
            methods: None,
            point: vec![],
        },
    };
    let cfg = SweepConfig {
        out: a.out.clone().unwrap_or(cfg.out.clone()),
        ..cfg
    };
    let grid = default_grid();
    let mut points: Vec<Point> = match &cfg.methods {
        None if !cfg.point.is_empty() => vec![],
        None => grid.clone(),
        Some(names) => names
            .iter()
            .map(|n| {
                grid.iter().find(|p| &p.name == n).cloned().ok_or_else(|| {
                    anyhow::anyhow!(
                        "methods: unknown `{n}` (the default grid has: {})",
                        grid.iter()
                            .map(|p| p.name.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    )
                })
            })
            .collect::<anyhow::Result<_>>()?,
    };
    points.extend(cfg.point.iter().cloned());
    anyhow::ensure!(!points.is_empty(), "the sweep has no points");
    for (i, p) in points.iter().enumerate() {
        anyhow::ensure!(
            !p.name.is_empty()
                && p.name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
                && !p.name.starts_with('.'),
            "point `{}`: a name is a folder name (letters, digits, - _ .)",
            p.name
        );
        anyhow::ensure!(
            points[..i].iter().all(|q| q.name != p.name),
            "point `{}` appears twice",
            p.name
        );
        peft_table(&p.peft).with_context(|| format!("point `{}`", p.name))?;
    }
    std::fs::create_dir_all(&cfg.out)
        .with_context(|| format!("{}: cannot create", cfg.out.display()))?;

    // The shared run config: the user's, or the built-in benchmark's.
    let base_table: toml::Table = match &cfg.run {
        Some(path) => {
            let text = String::from_utf8(read_file(path)?)
                .with_context(|| format!("{}: not UTF-8", path.display()))?;
            toml::from_str(&text)
                .map_err(|e| anyhow::anyhow!("{}: {}", path.display(), e.message()))?
        }
        None => {
            let domain = Domain::named(&cfg.domain).context("domain")?;
            let bench = cfg.out.join("benchmark");
            if !bench.join("data").join("test.vqa.jsonl").is_file() {
                let _ = std::fs::remove_dir_all(&bench);
                prepare(&bench, &domain, cfg.studies, cfg.test_studies, cfg.seed)?;
            }
            // `out`, `[peft]`, `lr` and `at_start` are set per point.
            run_table(
                &bench,
                Path::new("unused"),
                3,
                cfg.seed,
                None,
                toml::Table::new(),
                false,
                None,
            )?
        }
    };

    let exe = std::env::current_exe().context("cannot find the normtune executable")?;
    let device = format!("{:?}", a.device.device).to_lowercase();
    let mut rows = Vec::new();
    let started = std::time::Instant::now();
    for (i, p) in points.iter().enumerate() {
        let dir = cfg.out.join(&p.name);
        let done = dir.join("metrics.json");
        let t0 = std::time::Instant::now();
        if !done.is_file() {
            let mut table = base_table.clone();
            table.insert("out".into(), dir.display().to_string().into());
            let peft = peft_table(&p.peft)?;
            table.insert("peft".into(), peft.into());
            let eval = table
                .entry("eval")
                .or_insert_with(|| toml::Value::Table(Default::default()));
            if let Some(e) = eval.as_table_mut() {
                // The zero-shot row needs the untouched model scored once.
                e.insert("at_start".into(), (i == 0).into());
            }
            let point_cfg = cfg.out.join(format!("{}.toml", p.name));
            let mut text = toml::to_string_pretty(&table)?;
            for o in &cfg.overrides {
                text.push_str(&format!("# override: {o}\n"));
            }
            write_file_atomic(&point_cfg, text.as_bytes())?;
            let mut cmd = std::process::Command::new(&exe);
            cmd.arg("train").arg("--device").arg(&device);
            if dir.join("checkpoint").join("trainer.json").is_file() {
                cmd.arg("--resume").arg(&dir);
            } else {
                let _ = std::fs::remove_dir_all(&dir);
                cmd.arg("--config").arg(&point_cfg);
                cmd.args(&cfg.overrides);
                if let Some(lr) = p.lr {
                    cmd.arg(format!("train.lr={lr:e}"));
                }
                if let Some(t) = &p.question_templates {
                    cmd.arg(format!("data.question_templates={t}"));
                }
            }
            let log = std::fs::File::create(cfg.out.join(format!("{}.log", p.name)))?;
            eprintln!(
                "[{}/{}] {} ({}{}) …",
                i + 1,
                points.len(),
                p.name,
                p.peft,
                p.lr.map(|l| format!(", lr {l:e}")).unwrap_or_default()
            );
            let status = cmd
                .stdout(std::process::Stdio::null())
                .stderr(log)
                .status()
                .context("cannot start normtune train")?;
            if status.code() == Some(130) {
                anyhow::bail!(
                    "interrupted during `{}`; rerun the same sweep to continue",
                    p.name
                );
            }
            if !status.success() {
                let log = std::fs::read_to_string(cfg.out.join(format!("{}.log", p.name)))
                    .unwrap_or_default();
                let why = log
                    .lines()
                    .rev()
                    .find(|l| l.starts_with("error") || l.starts_with("Error"))
                    .unwrap_or("failed (see its log)")
                    .to_string();
                eprintln!("    {}: {why}", p.name);
                rows.push(Row {
                    name: p.name.clone(),
                    peft: p.peft.clone(),
                    lr: p.lr,
                    metrics: None,
                    top_share: None,
                    error: Some(why),
                });
                continue;
            }
        }
        let metrics: serde_json::Value = serde_json::from_slice(&read_file(&done)?)
            .with_context(|| format!("{}: not JSON", done.display()))?;
        let top_share = top_answer_share(&dir.join("predictions.jsonl"));
        eprintln!(
            "    {}: {} in {:.0} s",
            p.name,
            summary(&metrics),
            t0.elapsed().as_secs_f64()
        );
        rows.push(Row {
            name: p.name.clone(),
            peft: p.peft.clone(),
            lr: p.lr,
            metrics: Some(metrics),
            top_share,
            error: None,
        });
    }
    write_results(&cfg.out, &rows)?;
    eprintln!(
        "sweep of {} points in {:.0} s: {}",
        rows.len(),
        started.elapsed().as_secs_f64(),
        ["results.csv", "results.md", "results.svg", "results.png"]
            .map(|f| cfg.out.join(f).display().to_string())
            .join(", ")
    );
    Ok(())
}

/// The score columns of a task, in the papers' order.
fn score_keys(task: &str) -> &'static [&'static str] {
    match task {
        "vqa" => &["closed_acc", "open_acc", "overall_acc", "open_recall"],
        "report" => &["bleu1", "bleu4", "rouge_l", "cider"],
        _ => &["auroc_mean"],
    }
}

fn primary(task: &str) -> &'static str {
    normtune_core::metrics::primary_metric(match task {
        "vqa" => normtune_core::data::Task::Vqa,
        "report" => normtune_core::data::Task::Report,
        _ => normtune_core::data::Task::Classification,
    })
}

fn summary(m: &serde_json::Value) -> String {
    let task = m["task"].as_str().unwrap_or("vqa");
    score_keys(task)
        .iter()
        .map(|k| {
            format!(
                "{k} {}",
                m[k].as_f64().map_or("n/a".into(), |v| format!("{v:.3}"))
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// How often the most frequent prediction occurs: 1.0 means the model answers every question
/// the same way (MILE's collapse).
fn top_answer_share(path: &Path) -> Option<f64> {
    let text = std::fs::read_to_string(path).ok()?;
    let mut counts: std::collections::HashMap<String, usize> = Default::default();
    let mut n = 0;
    for line in text.lines() {
        let v: serde_json::Value = serde_json::from_str(line).ok()?;
        let a = v["answer"].as_str().or(v["report"].as_str())?;
        *counts.entry(a.trim().to_lowercase()).or_default() += 1;
        n += 1;
    }
    let top = counts.values().max()?;
    Some(*top as f64 / n as f64)
}

fn fmt_opt(v: Option<f64>, digits: usize) -> String {
    v.map_or(String::new(), |x| format!("{x:.digits$}"))
}

fn write_results(out: &Path, rows: &[Row]) -> anyhow::Result<()> {
    let task = rows
        .iter()
        .find_map(|r| r.metrics.as_ref()?["task"].as_str().map(str::to_string))
        .unwrap_or_else(|| "vqa".into());
    let keys = score_keys(&task);
    let zero_shot = rows
        .iter()
        .find_map(|r| r.metrics.as_ref().map(|m| m["start"].clone()))
        .filter(|s| s.is_object());
    // The CSV through the csv crate (quoting a PEFT spec's commas or an error's quotes right).
    let mut csv = csv::Writer::from_writer(Vec::new());
    let mut header: Vec<String> = [
        "method",
        "peft",
        "lr",
        "trainable_params",
        "total_params",
        "trainable_pct",
        "step_ms_median",
        "peak_rss_mb",
        "train_seconds",
    ]
    .map(String::from)
    .into();
    header.extend(keys.iter().map(|k| k.to_string()));
    header.extend(["top_answer_share".into(), "error".into()]);
    csv.write_record(&header)?;
    let mut md = format!(
        "| method | PEFT placement (vision, text encoder, decoder) | lr | trainable params | trainable % | step ms | peak RSS MB | {} | top-answer share |\n|---|---|---|---:|---:|---:|---:|{}---:|\n",
        keys.join(" | "),
        "---:|".repeat(keys.len())
    );
    if let Some(z) = &zero_shot {
        let mut rec: Vec<String> = ["zero-shot", "none", "", "0", "", "0", "", "", ""]
            .map(String::from)
            .into();
        md.push_str("| zero-shot | none | | 0 | 0 | | | ");
        for k in keys {
            rec.push(fmt_opt(z[k].as_f64(), 4));
            md.push_str(&format!(
                "{} | ",
                fmt_opt(z[k].as_f64().map(|v| 100.0 * v), 1)
            ));
        }
        rec.extend([String::new(), String::new()]);
        csv.write_record(&rec)?;
        md.push_str(" |\n");
    }
    let mut points = Vec::new();
    for r in rows {
        let lr = r.lr.map(|l| format!("{l:e}")).unwrap_or_default();
        let Some(m) = &r.metrics else {
            let mut fields = vec![r.name.clone(), r.peft.clone(), lr.clone()];
            fields.extend(std::iter::repeat_n(String::new(), 6 + keys.len() + 1));
            fields.push(r.error.clone().unwrap_or_default());
            csv.write_record(&fields)?;
            md.push_str(&format!(
                "| {} | {} | {lr} | failed: {} |\n",
                r.name,
                r.peft,
                r.error.clone().unwrap_or_default()
            ));
            continue;
        };
        let trainable = m["trainable_params"].as_u64().unwrap_or(0);
        let total = m["total_params"].as_u64().unwrap_or(1).max(1);
        let pct = 100.0 * trainable as f64 / total as f64;
        let mut rec = vec![
            r.name.clone(),
            r.peft.clone(),
            lr.clone(),
            trainable.to_string(),
            total.to_string(),
            format!("{pct:.4}"),
            fmt_opt(m["step_ms_median"].as_f64(), 1),
            fmt_opt(m["peak_rss_mb"].as_f64(), 0),
            fmt_opt(m["train_seconds"].as_f64(), 1),
        ];
        md.push_str(&format!(
            "| {} | {} | {lr} | {trainable} | {} | {} | {} | ",
            r.name,
            r.peft.replace(',', ", "),
            if pct >= 1.0 {
                format!("{pct:.1}")
            } else {
                format!("{pct:.3}")
            },
            fmt_opt(m["step_ms_median"].as_f64(), 0),
            fmt_opt(m["peak_rss_mb"].as_f64(), 0),
        ));
        for k in keys {
            rec.push(fmt_opt(m[k].as_f64(), 4));
            md.push_str(&format!(
                "{} | ",
                fmt_opt(m[k].as_f64().map(|v| 100.0 * v), 1)
            ));
        }
        rec.extend([fmt_opt(r.top_share, 3), String::new()]);
        csv.write_record(&rec)?;
        md.push_str(&format!("{} |\n", fmt_opt(r.top_share, 2)));
        if let Some(v) = m[primary(&task)].as_f64() {
            points.push((r.name.clone(), pct, v));
        }
    }
    md.push_str(
        "\nScores in % on the test split; step ms = median micro-batch training step (forward, backward, optimizer); top-answer share = fraction of test predictions equal to the most frequent one (1.00 = a constant answer).\n",
    );
    let csv = csv
        .into_inner()
        .map_err(|e| anyhow::anyhow!("results.csv: {e}"))?;
    write_file_atomic(&out.join("results.csv"), &csv)?;
    write_file_atomic(&out.join("results.md"), md.as_bytes())?;
    let zero = zero_shot.as_ref().and_then(|z| z[primary(&task)].as_f64());
    crate::plot::score_vs_trainable(out, &points, zero, primary(&task))?;
    Ok(())
}
