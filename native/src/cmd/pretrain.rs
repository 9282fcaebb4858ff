//! `normtune pretrain`: trains the demo base model from scratch on the built-in benchmark's
//! `source` domain (the stand-in for a Med-VLP model's pre-training) and writes it as a plain HF
//! model folder in f16, with `pretrain.json` recording the exact command, seed and scores.
//!
//! The working files (generated data, initial weights, the training run with its
//! `metrics.jsonl`) stay in `<out>.work/`; the run can be continued with
//! `normtune train --resume <out>.work/run`.

use crate::cli::PretrainArgs;
use crate::cmd::train::run_config;
use crate::config::resolve;
use crate::fs::{DirSource, write_file_atomic, write_folder_atomic};
use anyhow::Context;
use normtune_core::burn::module::Module;
use normtune_core::demo::model::{REPORT_QUESTION, recipe_files};
use normtune_core::demo::{Domain, generate, to_files_named};
use normtune_core::device::choose;
use normtune_core::models::{Pipeline, export};
use normtune_core::peft::io::load_adapter;

pub fn run(a: PretrainArgs) -> anyhow::Result<()> {
    if let Some(gguf) = a.llava.clone() {
        return run_llava(a, &gguf);
    }
    let started = std::time::Instant::now();
    let work = begin(&a)?;

    // The recipe with freshly initialised weights (seeded: the same seed, the same start).
    let recipe = recipe_files();
    let dev = choose(a.device.device).map_err(anyhow::Error::msg)?;
    eprintln!("device: {}", dev.reason);
    dev.device.seed(a.seed);
    let mut init = recipe.clone();
    {
        let mut src = normtune_core::source::MemorySource::new();
        for (k, v) in &recipe {
            src.insert(k.clone(), v.clone());
        }
        let p = pollster::block_on(Pipeline::load_with(&src, &dev.device, false))?;
        init.push((
            "model.safetensors".into(),
            export::to_safetensors(&p.model)?,
        ));
    }
    write_folder_atomic(&work.join("init"), &init)?;

    // Source-domain data: a training split and a held-out split (other seed, other images).
    let source = Domain::source();
    let train = generate(&source, a.studies, a.seed);
    let mut data = to_files_named(&train, "train.")?;
    // Every image also paired with its report (answer to REPORT_QUESTION): dense supervision,
    // as image-report pre-training gives a Med-VLP model.
    for (name, bytes) in data.iter_mut() {
        if name == "train.vqa.jsonl" {
            for s in &train {
                let line = serde_json::json!({"id": format!("{}-report", s.id), "image": format!("images/{}.png", s.id), "question": REPORT_QUESTION, "answer": s.report, "answer_type": "OPEN", "kind": "report"});
                bytes.extend(line.to_string().into_bytes());
                bytes.push(b'\n');
            }
        }
    }
    let held_out = (a.studies / 20).clamp(20, 200);
    data.extend(to_files_named(
        &generate(&source, held_out, a.seed + 1),
        "test.",
    )?);
    write_folder_atomic(&work.join("data"), &data)?;

    let metrics = train_recipe(
        &work,
        &a,
        &Recipe {
            about: "full training of the demo model from scratch",
            checkpoint_every: 200,
            chat_prompt: None,
            peft: crate::cmd::demo::peft_table("full")?,
            warmup_steps: 100,
            weight_decay: 0.05,
            label_smoothing: None,
        },
    )?;

    // Fold the fully trained tensors into the initial weights and store them as f16.
    let tensors = trained(&work)?;
    let weights = export::safetensors_bytes_as(&tensors, "model.safetensors", true)?;
    let params = count(&tensors);
    let provenance = provenance(&a, held_out, params, started, metrics.clone());
    let mut files = recipe;
    files.push(("model.safetensors".into(), weights));
    files.push((
        "pretrain.json".into(),
        serde_json::to_vec_pretty(&provenance)?,
    ));
    write_folder_atomic(&a.out, &files)
        .with_context(|| format!("{}: cannot write the model", a.out.display()))?;
    eprintln!(
        "pretrained {} ({params} parameters, f16) in {:.0} s; held-out source-domain overall accuracy {}",
        a.out.display(),
        started.elapsed().as_secs_f64(),
        metrics["overall_acc"]
    );
    Ok(())
}

/// The LLaVA-style demo's stage 1: the tower (from the BLIP demo base's ViT) and a fresh
/// projector trained under the frozen GGUF decoder on source-domain questions, as SmolLM2 chats;
/// only the tower and projector are written (`vision.safetensors`, f16) with `pretrain.json`.
fn run_llava(a: PretrainArgs, gguf_path: &std::path::Path) -> anyhow::Result<()> {
    use normtune_core::demo::llava;
    use normtune_core::demo::model::base_model_files;
    let started = std::time::Instant::now();
    let work = begin(&a)?;
    let file = gguf_path.display().to_string();
    let bytes = std::fs::read(gguf_path).with_context(|| format!("{file}: cannot read"))?;
    let g = normtune_core::gguf::Gguf::parse(bytes, &file)?;
    let blip = base_model_files()
        .into_iter()
        .find(|(k, _)| *k == "model.safetensors")
        .map(|(_, v)| v)
        .context("the demo base model has no model.safetensors")?;
    let tower = llava::tower_from_blip(blip, "demo-base/model.safetensors")?;
    let device = normtune_core::burn::tensor::Device::flex();
    device.seed(a.seed);
    let init = llava::assemble(&g, &file, &tower, &device)?;
    drop(g);
    write_folder_atomic(&work.join("init"), &init)?;
    drop(init);

    let source = Domain::source();
    let mut data = to_files_named(&generate(&source, a.studies, a.seed), "train.")?;
    // Held-out questions are answered one by one (greedy): a small split.
    let held_out = (a.studies / 25).clamp(5, 20);
    data.extend(to_files_named(
        &generate(&source, held_out, a.seed + 1),
        "test.",
    )?);
    write_folder_atomic(&work.join("data"), &data)?;
    let metrics = train_recipe(
        &work,
        &a,
        &Recipe {
            about: "the demo tower and projector under a frozen decoder",
            checkpoint_every: 100,
            chat_prompt: Some(llava::CHAT_PROMPT),
            peft: crate::cmd::demo::peft_table("vision=full,projector=full,decoder=frozen")?,
            warmup_steps: 20,
            weight_decay: 0.0,
            // LLaVA's recipe: plain cross-entropy (smoothing over a 49k vocabulary would pull the
            // frozen decoder's answers towards the uniform distribution).
            label_smoothing: Some(0.0),
        },
    )?;

    let tensors = llava::vision_part(trained(&work)?);
    let weights = export::safetensors_bytes_as(&tensors, "vision.safetensors", true)?;
    let params = count(&tensors);
    let provenance = provenance(&a, held_out, params, started, metrics.clone());
    let files = vec![
        ("vision.safetensors".to_string(), weights),
        (
            "pretrain.json".to_string(),
            serde_json::to_vec_pretty(&provenance)?,
        ),
    ];
    write_folder_atomic(&a.out, &files)
        .with_context(|| format!("{}: cannot write the tower", a.out.display()))?;
    eprintln!(
        "pretrained the LLaVA demo's tower and projector {} ({params} parameters, f16) in {:.0} s; held-out source-domain overall accuracy {}",
        a.out.display(),
        started.elapsed().as_secs_f64(),
        metrics["overall_acc"]
    );
    Ok(())
}

/// Refuses an existing output or working folder and zero counts; returns the working folder
/// (`<out>.work`).
/// What differs between the two pretraining runs' configs.
struct Recipe {
    /// The config's first comment: what the run trains.
    about: &'static str,
    checkpoint_every: usize,
    /// A LLaVA chat template (`chat_prompt`), if any.
    chat_prompt: Option<&'static str>,
    /// The `[peft]` table.
    peft: toml::Table,
    warmup_steps: usize,
    weight_decay: f64,
    /// `train.label_smoothing` when not the default.
    label_smoothing: Option<f64>,
}

/// Writes `work/pretrain.toml` (model `work/init`, data `work/data`, out `work/run`) for `r` and
/// runs it as `normtune train` does; returns the run's final metrics.
fn train_recipe(
    work: &std::path::Path,
    a: &PretrainArgs,
    r: &Recipe,
) -> anyhow::Result<serde_json::Value> {
    let data = work.join("data");
    let file = |name: &str| data.join(name).display().to_string();
    let mut v = serde_json::json!({
        "model": work.join("init").display().to_string(),
        "out": work.join("run").display().to_string(),
        "batch_size": a.batch_size,
        "epochs": a.epochs,
        "seed": a.seed,
        "checkpoint_every": r.checkpoint_every,
        "data": {
            "format": "jsonl",
            "train": file("train.vqa.jsonl"),
            "eval": file("test.vqa.jsonl"),
            "images": data.display().to_string(),
        },
        "train": {
            "lr": a.lr,
            "warmup_steps": r.warmup_steps,
            "weight_decay": r.weight_decay,
            "max_grad_norm": 1.0,
        },
        "eval": {"every": 0},
        "generation": {"num_beams": 1, "max_new_tokens": 4},
    });
    if let Some(p) = r.chat_prompt {
        v["chat_prompt"] = p.into();
    }
    if let Some(l) = r.label_smoothing {
        v["train"]["label_smoothing"] = l.into();
    }
    let mut table = toml::Table::try_from(v)?;
    table.insert("peft".into(), r.peft.clone().into());
    let verb = if r.chat_prompt.is_some() {
        "pretrain --llava"
    } else {
        "pretrain"
    };
    let toml = format!(
        "# Written by `normtune {verb}`: {}.\n{}",
        r.about,
        toml::to_string(&table)?
    );
    let config = work.join("pretrain.toml");
    write_file_atomic(&config, toml.as_bytes())?;
    run_config(resolve(&config, &[])?, false, a.device.device)
}

fn begin(a: &PretrainArgs) -> anyhow::Result<std::path::PathBuf> {
    anyhow::ensure!(
        !a.out.exists(),
        "{}: already exists; choose a new output folder",
        a.out.display()
    );
    anyhow::ensure!(
        a.studies > 0 && a.epochs > 0 && a.batch_size > 0,
        "--studies, --epochs and --batch-size must be at least 1"
    );
    let work = a.out.with_extension("work");
    anyhow::ensure!(
        !work.exists(),
        "{}: already exists (a previous pretraining's working folder); remove it or choose another --out",
        work.display()
    );
    Ok(work)
}

/// The trained model's tensors (HF names, f32): `<work>/init` with the run's adapter (the fully
/// trained tensors) folded in.
fn trained(work: &std::path::Path) -> anyhow::Result<Vec<(String, Vec<usize>, Vec<f32>)>> {
    let device = normtune_core::burn::tensor::Device::flex();
    let mut p = pollster::block_on(Pipeline::load(
        &DirSource::open(work.join("init"))?,
        &device,
    ))?;
    p.model = pollster::block_on(load_adapter(
        p.model,
        &DirSource::open(work.join("run").join("adapter"))?,
    ))?;
    Ok(export::hf_tensors(&p.model.materialize()))
}

fn count(tensors: &[(String, Vec<usize>, Vec<f32>)]) -> usize {
    tensors
        .iter()
        .map(|(_, s, _)| s.iter().product::<usize>())
        .sum()
}

/// `pretrain.json`: the exact command, the recipe's numbers and the held-out scores.
fn provenance(
    a: &PretrainArgs,
    held_out: usize,
    params: usize,
    started: std::time::Instant,
    metrics: serde_json::Value,
) -> serde_json::Value {
    let decoder = a.llava.as_ref().map(|g| {
        g.file_name()
            .map(|f| f.to_string_lossy().to_string())
            .unwrap_or_default()
    });
    let mut v = serde_json::json!({
        "made_by": format!("normtune {}", env!("CARGO_PKG_VERSION")),
        "command": format!(
            "normtune pretrain {}--out {} --studies {} --epochs {} --batch-size {} --lr {:e} --seed {} --device {}",
            decoder.as_ref().map(|d| format!("--llava {d} ")).unwrap_or_default(),
            a.out.display(), a.studies, a.epochs, a.batch_size, a.lr, a.seed,
            format!("{:?}", a.device.device).to_lowercase()
        ),
        "seed": a.seed,
        "domain": "source",
        "studies": a.studies,
        "held_out_studies": held_out,
        "epochs": a.epochs,
        "batch_size": a.batch_size,
        "lr": a.lr,
        "params": params,
        "dtype": "float16",
        "seconds": started.elapsed().as_secs_f64(),
        "held_out_scores": metrics,
    });
    if let Some(d) = decoder {
        v["decoder"] = d.into();
    }
    v
}
