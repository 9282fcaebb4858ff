//! `normtune demo`: the whole idea in one command, no download. LayerNorm-tunes the committed
//! demo base model (pre-trained on the benchmark's `source` domain) on a shifted target domain
//! and prints the zero-shot and tuned accuracy, the trainable share and the time.

use crate::cli::DemoArgs;
use crate::cmd::train::run_config;
use crate::config::resolve;
use crate::fs::{write_file_atomic, write_folder_atomic};
use anyhow::Context;
use normtune_core::demo::llava;
use normtune_core::demo::model::base_model_files;
use normtune_core::demo::{Domain, train_test_files};
use std::path::Path;

/// Writes the demo's inputs under `out`: the base model (`base/`) and train and test splits of
/// the target domain (`data/`).
pub fn prepare(
    out: &Path,
    domain: &Domain,
    studies: usize,
    test_studies: usize,
    seed: u64,
) -> anyhow::Result<()> {
    let base: Vec<(String, Vec<u8>)> = base_model_files()
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_vec()))
        .collect();
    prepare_with(out, &base, domain, studies, test_studies, seed)
}

/// As [`prepare`] with another base model folder's files.
pub fn prepare_with(
    out: &Path,
    base: &[(String, Vec<u8>)],
    domain: &Domain,
    studies: usize,
    test_studies: usize,
    seed: u64,
) -> anyhow::Result<()> {
    write_folder_atomic(&out.join("base"), base)?;
    let data = train_test_files(domain, studies, test_studies, seed)?;
    write_folder_atomic(&out.join("data"), &data)?;
    Ok(())
}

/// The run config for the inputs [`prepare`] wrote under `bench` (`model` = `bench/base`, data in
/// `bench/data`, out `run`), as a TOML table (written through the `toml` crate, so any path or
/// prompt is quoted right): VQA on the target domain's train split, scored on its test split,
/// greedy answers; `lr` omitted keeps the trainer's default. With `chat_prompt` (a LLaVA-style
/// base: ~90 tokens per question through its decoder) the questions become chats in that
/// format, 8 per step, with plain cross-entropy as LLaVA trains.
#[allow(clippy::too_many_arguments)]
pub fn run_table(
    bench: &Path,
    run: &Path,
    epochs: usize,
    seed: u64,
    lr: Option<f64>,
    peft: toml::Table,
    at_start: bool,
    chat_prompt: Option<&str>,
) -> anyhow::Result<toml::Table> {
    let data = bench.join("data");
    let file = |name: &str| data.join(name).display().to_string();
    let mut train = serde_json::json!({"warmup_steps": 10, "weight_decay": 0.0});
    if let Some(lr) = lr {
        train["lr"] = lr.into();
    }
    let mut v = serde_json::json!({
        "model": bench.join("base").display().to_string(),
        "out": run.display().to_string(),
        "batch_size": if chat_prompt.is_some() { 8 } else { 16 },
        "epochs": epochs,
        "seed": seed,
        "data": {
            "format": "jsonl",
            "train": file("train.vqa.jsonl"),
            "eval": file("test.vqa.jsonl"),
            "images": data.display().to_string(),
        },
        "train": train,
        "eval": {"at_start": at_start},
        "generation": {"num_beams": 1, "max_new_tokens": 4},
    });
    if let Some(p) = chat_prompt {
        v["chat_prompt"] = p.into();
        v["train"]["label_smoothing"] = 0.0.into();
    }
    let mut t = toml::Table::try_from(v)?;
    t.insert("peft".into(), peft.into());
    Ok(t)
}

/// A `--peft`-style spec (`layernorm`, `vision=frozen,decoder=lora`) as a run config's `[peft]`
/// table.
pub fn peft_table(spec: &str) -> anyhow::Result<toml::Table> {
    let cfg = normtune_core::peft::PeftConfig::parse(spec)?;
    let mut t = toml::Table::new();
    if let Some(m) = cfg.default_method {
        t.insert("default_method".into(), m.name().into());
    }
    if !cfg.placement.is_empty() {
        let placement: toml::Table = cfg
            .placement
            .iter()
            .map(|(k, m)| (k.clone(), toml::Value::from(m.name())))
            .collect();
        t.insert("placement".into(), placement.into());
    }
    Ok(t)
}

pub fn run(a: DemoArgs) -> anyhow::Result<()> {
    // The LLaVA demo runs ~90 tokens per question through a 135M-parameter decoder: fewer
    // studies, one epoch.
    let small = a.llava.is_some();
    let studies = a.studies.unwrap_or(if small { 60 } else { 300 });
    let test_studies = a.test_studies.unwrap_or(if small { 30 } else { 100 });
    let epochs = a.epochs.unwrap_or(if small { 1 } else { 3 });
    let lr = a.lr.unwrap_or(if small { 1e-3 } else { 3e-3 });
    let domain = Domain::named(&a.domain)?;
    anyhow::ensure!(
        studies > 0 && epochs > 0 && test_studies > 0,
        "--studies, --test-studies and --epochs must be at least 1"
    );
    let out = a.out.clone().unwrap_or_else(|| {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        Path::new("runs").join(format!("demo-{t}"))
    });
    anyhow::ensure!(
        !out.exists(),
        "{}: already exists; choose a new --out",
        out.display()
    );
    let started = std::time::Instant::now();
    let what = match a.llava {
        Some(_) => "LLaVA-style demo model (SmolLM2-135M-Instruct + small tower)",
        None => "demo base model",
    };
    eprintln!(
        "normtune demo: {} of the {what} on the `{}` domain ({} training studies, {} test studies) → {}",
        a.method,
        domain.name,
        studies,
        test_studies,
        out.display()
    );
    let run = run_table(
        &out,
        &out.join("run"),
        epochs,
        a.seed,
        Some(lr),
        peft_table(&a.method)?,
        true,
        a.llava.as_ref().map(|_| llava::CHAT_PROMPT),
    )?;
    match &a.llava {
        None => prepare(&out, &domain, studies, test_studies, a.seed)?,
        Some(gguf) => {
            let base = llava_base(gguf, a.vision.as_deref())?;
            prepare_with(&out, &base, &domain, studies, test_studies, a.seed)?;
        }
    }
    let config = out.join("demo.toml");
    let toml = format!(
        "# Written by `normtune demo`; rerun with `normtune train --config {}`.\n{}",
        config.display().to_string().replace('\n', " "),
        toml::to_string(&run)?
    );
    write_file_atomic(&config, toml.as_bytes())?;
    let m = run_config(resolve(&config, &[])?, false, a.device.device)?;

    let pct = |v: &serde_json::Value| {
        v.as_f64()
            .map_or("  n/a".to_string(), |x| format!("{:5.1}", 100.0 * x))
    };
    let start = &m["start"];
    let trainable = m["trainable_params"].as_u64().unwrap_or(0);
    let total = m["total_params"].as_u64().unwrap_or(1).max(1);
    println!();
    println!(
        "{what} on `{}` ({} test questions), accuracy %:",
        domain.name, m["examples"]
    );
    println!("                    closed   open  overall");
    println!(
        "  zero-shot          {}  {}  {}",
        pct(&start["closed_acc"]),
        pct(&start["open_acc"]),
        pct(&start["overall_acc"])
    );
    println!(
        "  {:<18} {}  {}  {}",
        format!("{}-tuned", a.method),
        pct(&m["closed_acc"]),
        pct(&m["open_acc"]),
        pct(&m["overall_acc"])
    );
    println!(
        "trainable {trainable} of {total} parameters ({:.3}%); training {:.0} s, demo total {:.0} s; run folder {}",
        100.0 * trainable as f64 / total as f64,
        m["train_seconds"].as_f64().unwrap_or(0.0),
        started.elapsed().as_secs_f64(),
        out.join("run").display()
    );
    Ok(())
}

/// The LLaVA-style demo's base model folder: the GGUF decoder under the committed tower and
/// projector (or those of `vision/vision.safetensors`).
pub fn llava_base(gguf: &Path, vision: Option<&Path>) -> anyhow::Result<Vec<(String, Vec<u8>)>> {
    let file = gguf.display().to_string();
    let bytes = std::fs::read(gguf).with_context(|| {
        format!("{file}: cannot read (tests/fixtures/fetch_assets.sh fetches SmolLM2-135M-Instruct into .assets/smollm2/)")
    })?;
    let g = normtune_core::gguf::Gguf::parse(bytes, &file)?;
    let (name, weights) = match vision {
        Some(dir) => {
            let f = dir.join("vision.safetensors");
            let b = std::fs::read(&f).with_context(|| format!("{}: cannot read", f.display()))?;
            (f.display().to_string(), b)
        }
        None => (
            "demo-llava/vision.safetensors".to_string(),
            llava::committed_vision().to_vec(),
        ),
    };
    let tensors = normtune_core::models::load::read_f32(&weights, &name)?;
    let device = normtune_core::burn::tensor::Device::flex();
    Ok(llava::assemble(&g, &file, &tensors, &device)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Paths and prompts with quotes, backslashes and newlines survive the written config (the
    /// old `format!` writer produced TOML that did not parse, or named another folder).
    #[test]
    fn the_written_run_config_reads_back_whatever_the_paths_hold() {
        let bench = Path::new("/tmp/a \"quoted\" \\ folder");
        let prompt = "USER: <image>\n{question} \"ASSISTANT\":";
        let t = run_table(
            bench,
            &bench.join("run"),
            2,
            5,
            Some(1e-3),
            peft_table("vision=layernorm,decoder=lora").unwrap(),
            true,
            Some(prompt),
        )
        .unwrap();
        let back: toml::Table = toml::from_str(&toml::to_string(&t).unwrap()).unwrap();
        assert_eq!(
            back["model"].as_str(),
            Some("/tmp/a \"quoted\" \\ folder/base")
        );
        assert_eq!(back["chat_prompt"].as_str(), Some(prompt));
        assert_eq!(back["peft"]["placement"]["decoder"].as_str(), Some("lora"));
        assert_eq!(back["train"]["lr"].as_float(), Some(1e-3));
    }
}
