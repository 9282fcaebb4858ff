//! The built-in benchmark's verbs end to end: `pretrain` (deterministic, f16 HF folder that the
//! other verbs load), `demo` (zero-shot vs tuned on a shifted domain) and `sweep` (table, plots,
//! failed points reported, finished points not rerun).

use std::path::{Path, PathBuf};

mod common;
use common::run;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn tmp(name: &str) -> PathBuf {
    let p = std::env::temp_dir().join(format!("normtune-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&p);
    let _ = std::fs::remove_dir_all(p.with_extension("work"));
    p
}

fn json(path: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

/// The JSON header of a safetensors file (tensor name → dtype, shape, offsets).
fn header(path: &Path) -> serde_json::Value {
    let b = std::fs::read(path).unwrap();
    let n = u64::from_le_bytes(b[..8].try_into().unwrap()) as usize;
    serde_json::from_slice(&b[8..8 + n]).unwrap()
}

/// The dtype of every tensor in a safetensors file.
fn dtypes(path: &Path) -> Vec<String> {
    header(path)
        .as_object()
        .unwrap()
        .iter()
        .filter(|(k, _)| *k != "__metadata__")
        .map(|(_, v)| v["dtype"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn pretrain_is_deterministic_and_writes_an_f16_model_the_other_verbs_load() {
    let args = |out: &Path| {
        vec![
            "pretrain".to_string(),
            "--out".into(),
            out.display().to_string(),
            "--studies".into(),
            "12".into(),
            "--epochs".into(),
            "1".into(),
            "--batch-size".into(),
            "8".into(),
            "--seed".into(),
            "5".into(),
            "--device".into(),
            "cpu".into(),
        ]
    };
    let (a, b) = (tmp("pretrain-a"), tmp("pretrain-b"));
    for out in [&a, &b] {
        let v = args(out);
        let (code, _, err) = run(&v.iter().map(String::as_str).collect::<Vec<_>>());
        assert_eq!(code, Some(0), "{err}");
    }
    let weights = |p: &Path| std::fs::read(p.join("model.safetensors")).unwrap();
    assert_eq!(weights(&a), weights(&b), "same seed, same weights");
    assert!(
        dtypes(&a.join("model.safetensors"))
            .iter()
            .all(|d| d == "F16")
    );
    let prov = json(&a.join("pretrain.json"));
    assert!(
        prov["command"].as_str().unwrap().contains("--seed 5"),
        "{prov}"
    );
    assert_eq!(prov["studies"], 12);
    // The recipe files are the committed demo model's (same vocabulary and shapes).
    for f in ["config.json", "vocab.txt", "preprocessor_config.json"] {
        assert_eq!(
            std::fs::read(a.join(f)).unwrap(),
            std::fs::read(root().join("core/assets/demo-base").join(f)).unwrap(),
            "{f} differs from the committed demo model's: re-run `normtune pretrain`"
        );
    }
    // `infer` loads it and answers.
    let img = a.with_extension("work").join("data/images");
    let first = std::fs::read_dir(&img)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let (code, out, err) = run(&[
        "infer",
        "--model",
        &a.display().to_string(),
        "--image",
        &first.display().to_string(),
        "--question",
        "is there a pleural effusion?",
        "--device",
        "cpu",
    ]);
    assert_eq!(code, Some(0), "{err}");
    assert!(!out.trim().is_empty());
    // An existing output is refused before any work.
    let v = args(&a);
    let (code, _, err) = run(&v.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(code, Some(1));
    assert!(err.contains("already exists"), "{err}");
}

#[test]
fn the_demo_tunes_layernorm_only_and_reports_zero_shot_and_tuned_accuracy() {
    let out = tmp("demo");
    let (code, stdout, err) = run(&[
        "demo",
        "--studies",
        "24",
        "--test-studies",
        "8",
        "--epochs",
        "1",
        "--out",
        &out.display().to_string(),
        "--device",
        "cpu",
    ]);
    assert_eq!(code, Some(0), "{err}");
    assert!(
        stdout.contains("zero-shot") && stdout.contains("layernorm-tuned"),
        "{stdout}"
    );
    let m = json(&out.join("run/metrics.json"));
    let (trainable, total) = (
        m["trainable_params"].as_f64().unwrap(),
        m["total_params"].as_f64().unwrap(),
    );
    assert!(trainable > 0.0 && trainable / total < 0.01, "{m}");
    assert!(m["start"]["overall_acc"].is_number(), "{m}");
    assert!(m["overall_acc"].is_number(), "{m}");
    // The base model on disk is the committed one.
    assert_eq!(
        std::fs::read(out.join("base/model.safetensors")).unwrap(),
        std::fs::read(root().join("core/assets/demo-base/model.safetensors")).unwrap()
    );
    let (code, _, err) = run(&["demo", "--domain", "scanner-x", "--out", "x"]);
    assert_eq!(code, Some(1));
    assert!(
        err.contains("scanner-x") && err.contains("new-finding"),
        "{err}"
    );
}

#[test]
fn sweep_writes_the_table_and_plots_reports_failures_and_skips_finished_points() {
    let r = root();
    let dir = tmp("sweep");
    std::fs::create_dir_all(&dir).unwrap();
    let run_cfg = dir.join("run.toml");
    std::fs::write(
        &run_cfg,
        format!(
            r#"model = "{m}"
out = "unused"
batch_size = 2
epochs = 2
seed = 3
[data]
format = "jsonl"
train = "{d}"
images = "{i}"
[generation]
num_beams = 1
max_new_tokens = 3
"#,
            m = r.join("tests/fixtures/blip_vqa").display(),
            d = r.join("tests/fixtures/data/tiny_vqa.jsonl").display(),
            i = r.join("tests/fixtures/images").display(),
        ),
    )
    .unwrap();
    let out = dir.join("out");
    let sweep = dir.join("sweep.toml");
    std::fs::write(
        &sweep,
        format!(
            r#"out = "{o}"
run = "{r}"
overrides = ["train.warmup_steps=1"]
methods = ["full", "layernorm", "F-F-LoRA"]
[[point]]
name = "ia3-everywhere"
peft = "ia3"
lr = 1e-3
"#,
            o = out.display(),
            r = run_cfg.display()
        ),
    )
    .unwrap();
    let args = [
        "sweep",
        "--config",
        &sweep.display().to_string(),
        "--device",
        "cpu",
    ];
    let (code, _, err) = run(&args);
    assert_eq!(code, Some(0), "{err}");
    // IA3 has no place in the vision encoder: the point fails with that reason, the rest run.
    assert!(
        err.contains("ia3-everywhere") && err.contains("vision"),
        "{err}"
    );
    let csv = std::fs::read_to_string(out.join("results.csv")).unwrap();
    let mut rows = csv::Reader::from_reader(csv.as_bytes());
    let header: Vec<String> = rows.headers().unwrap().iter().map(String::from).collect();
    for col in [
        "method",
        "trainable_params",
        "trainable_pct",
        "step_ms_median",
        "peak_rss_mb",
        "closed_acc",
        "open_acc",
        "overall_acc",
        "top_answer_share",
    ] {
        assert!(header.iter().any(|h| h == col), "{col} in {header:?}");
    }
    let col = |name: &str| header.iter().position(|h| h == name).unwrap();
    let recs: Vec<csv::StringRecord> = rows.records().map(|r| r.unwrap()).collect();
    let names: Vec<&str> = recs.iter().map(|r| &r[0]).collect();
    assert_eq!(
        names,
        [
            "zero-shot",
            "full",
            "layernorm",
            "F-F-LoRA",
            "ia3-everywhere"
        ]
    );
    let trainable = |i: usize| recs[i][col("trainable_params")].parse::<u64>().unwrap();
    let total = recs[1][col("total_params")].parse::<u64>().unwrap();
    assert_eq!(trainable(1), total, "full trains everything");
    assert!(trainable(2) < trainable(3) && trainable(3) < trainable(1));
    assert!(recs[2][col("peak_rss_mb")].parse::<f64>().unwrap() > 1.0);
    assert!(recs[4][col("error")].contains("vision"));
    // Every point's run config and log are kept.
    let md = std::fs::read_to_string(out.join("results.md")).unwrap();
    assert!(
        md.contains("| F-F-LoRA | vision=frozen, text_encoder=frozen, decoder=lora"),
        "{md}"
    );
    let svg = std::fs::read_to_string(out.join("results.svg")).unwrap();
    assert!(svg.contains("<svg") && svg.contains("F-F-LoRA") && svg.contains("log scale"));
    let png = image::open(out.join("results.png")).unwrap();
    assert_eq!((png.width(), png.height()), (900, 560));
    // Not blank: the plot drew dark pixels (text, axes, points).
    assert!(png.to_luma8().pixels().filter(|p| p[0] < 100).count() > 1000);

    // Run again: finished points are not retrained.
    let stamp = std::fs::metadata(out.join("layernorm/metrics.json"))
        .unwrap()
        .modified()
        .unwrap();
    let (code, _, err) = run(&args);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(
        std::fs::metadata(out.join("layernorm/metrics.json"))
            .unwrap()
            .modified()
            .unwrap(),
        stamp
    );

    // A bad spec is refused up front, naming the point.
    std::fs::write(
        &sweep,
        format!(
            "out = \"{}\"\n[[point]]\nname = \"x\"\npeft = \"loraa\"\n",
            dir.join("bad").display()
        ),
    )
    .unwrap();
    let (code, _, err) = run(&args);
    assert_eq!(code, Some(1));
    assert!(err.contains("point `x`") && err.contains("loraa"), "{err}");
    assert!(!dir.join("bad").exists());
}

/// The LLaVA-style demo's two verbs on the real SmolLM2-135M-Instruct GGUF (`.assets/smollm2/`,
/// from `tests/fixtures/fetch_assets.sh`), shrunk to a study or two: `pretrain --llava` writes
/// the tower and projector only (f16, the names the demo's folder has), and `demo --llava
/// --vision` puts them under the decoder, LayerNorm-tunes the result (every LayerNorm and RMSNorm
/// weight and bias, nothing else) and prints the table; its adapter answers through `infer`.
#[test]
fn llava_pretrain_and_demo_run_on_the_real_smollm2() {
    let gguf = root().join(".assets/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf");
    assert!(
        gguf.exists(),
        "{}: missing; run tests/fixtures/fetch_assets.sh",
        gguf.display()
    );
    let gguf = gguf.display().to_string();
    let tower = tmp("llava-tower");
    pretrain_llava(&gguf, &tower, &["--seed", "3"]);
    let names: Vec<String> = header(&tower.join("vision.safetensors"))
        .as_object()
        .unwrap()
        .keys()
        .filter(|k| *k != "__metadata__")
        .cloned()
        .collect();
    assert!(
        names.iter().all(|k| k.starts_with("model.vision_tower.")
            || k.starts_with("model.multi_modal_projector.")),
        "{names:?}"
    );
    assert!(
        names
            .iter()
            .any(|k| k.starts_with("model.multi_modal_projector."))
    );
    assert!(
        dtypes(&tower.join("vision.safetensors"))
            .iter()
            .all(|d| d == "F16")
    );
    assert!(
        json(&tower.join("pretrain.json"))["command"]
            .as_str()
            .unwrap()
            .contains("--llava SmolLM2-135M-Instruct.Q4_1.gguf")
    );

    let out = tmp("llava-demo");
    let stdout = demo_llava(&gguf, &tower, &out);
    assert!(
        stdout.contains("zero-shot") && stdout.contains("layernorm-tuned"),
        "{stdout}"
    );
    // The GGUF's chat template travels into the folder it builds.
    let tok_cfg = json(&out.join("base/tokenizer_config.json"));
    assert!(
        tok_cfg["chat_template"]
            .as_str()
            .unwrap()
            .contains("<|im_start|>"),
        "{tok_cfg}"
    );
    let m = json(&out.join("run/metrics.json"));
    // Trainable: the norms of the folder's checkpoint, counted from its names.
    let norms: u64 = header(&out.join("base/model.safetensors"))
        .as_object()
        .unwrap()
        .iter()
        .filter(|(k, _)| k.contains("norm") || k.contains("layrnorm"))
        .map(|(_, v)| {
            v["shape"]
                .as_array()
                .unwrap()
                .iter()
                .map(|d| d.as_u64().unwrap())
                .product::<u64>()
        })
        .sum();
    assert_eq!(m["trainable_params"].as_u64().unwrap(), norms, "{m}");
    let toml: toml::Value =
        toml::from_str(&std::fs::read_to_string(out.join("demo.toml")).unwrap()).unwrap();
    assert_eq!(
        toml["chat_prompt"].as_str(),
        Some(normtune_core::demo::llava::CHAT_PROMPT)
    );

    // The tuned model answers through `infer` with the saved adapter and the demo's chat format.
    let img = std::fs::read_dir(out.join("data/images"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let (code, _, err) = run(&[
        "infer",
        "--model",
        &out.join("base").display().to_string(),
        "--adapter",
        &out.join("run/adapter").display().to_string(),
        "--image",
        &img.display().to_string(),
        "--question",
        "is there a pleural effusion?",
        "--chat-prompt",
        normtune_core::demo::llava::CHAT_PROMPT,
        "--device",
        "cpu",
    ]);
    assert_eq!(code, Some(0), "{err}");
    let _ = std::fs::remove_dir_all(&out);
    let _ = std::fs::remove_dir_all(tower.with_extension("work"));
}

/// The LLaVA-style demo on a K-quant GGUF decoder with a SentencePiece vocabulary (the fixture
/// decoder of `tests/fixtures/make_llava_gguf_fixtures.py`: Q4_K/Q6_K, `<image>` in its
/// vocabulary; no small Apache/MIT K-quant GGUF ships on PyPI): `pretrain --llava` makes a tower
/// and projector for it, `demo --llava` LN-tunes under them and reports.
#[test]
fn llava_pretrain_and_demo_run_on_a_k_quant_gguf() {
    let gguf = root().join("tests/fixtures/llava_gguf/decoder.gguf");
    let gguf = gguf.display().to_string();
    let tower = tmp("kquant-tower");
    pretrain_llava(&gguf, &tower, &[]);
    let out = tmp("kquant-demo");
    let stdout = demo_llava(&gguf, &tower, &out);
    assert!(
        stdout.contains("zero-shot") && stdout.contains("layernorm-tuned"),
        "{stdout}"
    );
    // The image placeholder is the vocabulary's own `<image>`.
    let cfg = json(&out.join("base/config.json"));
    let tok = json(&out.join("base/tokenizer.json"));
    let image = tok["model"]["vocab"]["<image>"].as_u64().unwrap();
    assert_eq!(cfg["image_token_index"].as_u64(), Some(image));
    let _ = std::fs::remove_dir_all(&tower);
    let _ = std::fs::remove_dir_all(&out);
}

/// `pretrain --llava GGUF` into `tower` (1 study, 1 epoch, batch 4, `extra` flags), which must
/// succeed.
fn pretrain_llava(gguf: &str, tower: &Path, extra: &[&str]) {
    let tower = tower.display().to_string();
    let mut args = vec![
        "pretrain",
        "--llava",
        gguf,
        "--out",
        &tower,
        "--studies",
        "1",
        "--epochs",
        "1",
        "--batch-size",
        "4",
        "--device",
        "cpu",
    ];
    args.extend_from_slice(extra);
    let (code, _, err) = run(&args);
    assert_eq!(code, Some(0), "{err}");
}

/// `demo --llava GGUF --vision tower` into `out` (1 study, 1 test study, 1 epoch), which must
/// succeed; its stdout.
fn demo_llava(gguf: &str, tower: &Path, out: &Path) -> String {
    let (tower, out) = (tower.display().to_string(), out.display().to_string());
    let (code, stdout, err) = run(&[
        "demo",
        "--llava",
        gguf,
        "--vision",
        &tower,
        "--studies",
        "1",
        "--test-studies",
        "1",
        "--epochs",
        "1",
        "--out",
        &out,
        "--device",
        "cpu",
    ]);
    assert_eq!(code, Some(0), "{err}");
    stdout
}
