//! End-to-end runs of the `normtune` binary on the committed HF fixtures.

use std::process::Command;

mod common;
use common::{fixtures, normtune, run};

fn metrics_lines(run: &std::path::Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(run.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn reference(rel: &str) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(fixtures().join(rel).join("reference.json")).unwrap())
        .unwrap()
}

fn ids(v: &serde_json::Value) -> Vec<i64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_i64().unwrap())
        .collect()
}

#[test]
fn infer_json_prints_the_ids_hf_generated() {
    let model = fixtures().join("blip_vqa");
    let image = fixtures().join("images/chest_32.png");
    let r = reference("blip_vqa");
    let q = r["questions"][0].as_str().unwrap();
    for (beams, max_new, key) in [("1", "8", "greedy_ids"), ("3", "8", "beam3_ids")] {
        let (ok, out, err) = normtune(&[
            "infer",
            "--model",
            model.to_str().unwrap(),
            "--image",
            image.to_str().unwrap(),
            "--question",
            q,
            "--num-beams",
            beams,
            "--max-new-tokens",
            max_new,
            "--json",
            "--device",
            "cpu",
        ]);
        assert!(ok, "{err}");
        let v: serde_json::Value = serde_json::from_str(out.trim()).expect("one JSON object");
        assert_eq!(ids(&v["token_ids"]), ids(&r["generation"][key][0]), "{key}");
        assert!(v["answer"].is_string());
    }
}

#[test]
fn infer_without_question_writes_a_report() {
    let model = fixtures().join("blip_caption");
    let image = fixtures().join("images/chest_32.png");
    let r = reference("blip_caption");
    let (ok, out, err) = normtune(&[
        "infer",
        "--model",
        model.to_str().unwrap(),
        "--image",
        image.to_str().unwrap(),
        "--num-beams",
        "1",
        "--max-new-tokens",
        "10",
        "--json",
        "--device",
        "cpu",
    ]);
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(ids(&v["token_ids"]), ids(&r["generation"]["greedy_ids"][0]));
    assert!(v["report"].is_string());
}

#[test]
fn infer_classifies_with_the_hf_probabilities() {
    let model = fixtures().join("vit_cls");
    let image = fixtures().join("images/chest_32.png");
    let (ok, out, err) = normtune(&[
        "infer",
        "--model",
        model.to_str().unwrap(),
        "--image",
        image.to_str().unwrap(),
        "--json",
        "--device",
        "cpu",
    ]);
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    let bytes = std::fs::read(fixtures().join("vit_cls/reference.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let probs: Vec<f32> = st
        .tensor("probs")
        .unwrap()
        .data()
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect();
    let labels = v["labels"].as_array().unwrap();
    assert_eq!(labels.len(), 5);
    for (i, l) in labels.iter().enumerate() {
        let p = l["probability"].as_f64().unwrap() as f32;
        assert!(
            (p - probs[i]).abs() < 1e-4,
            "label {i}: {p} vs {}",
            probs[i]
        );
    }
    assert_eq!(labels[1]["label"], "Cardiomegaly");
}

#[test]
fn inspect_counts_every_parameter_of_the_file() {
    for rel in ["blip_vqa", "blip_caption", "vit_cls"] {
        let model = fixtures().join(rel);
        let (ok, out, err) = normtune(&[
            "inspect",
            "--model",
            model.to_str().unwrap(),
            "--json",
            "--device",
            "cpu",
        ]);
        assert!(ok, "{err}");
        let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
        // HF saves each tied tensor once, so the file's element count is HF's num_parameters().
        let bytes = std::fs::read(model.join("model.safetensors")).unwrap();
        let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
        let in_file: usize = st
            .tensors()
            .iter()
            .map(|(_, t)| t.shape().iter().product::<usize>())
            .sum();
        assert_eq!(
            v["total_params"].as_u64().unwrap() as usize,
            in_file,
            "{rel}"
        );
        let parts: u64 = v["components"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["params"].as_u64().unwrap())
            .sum();
        assert_eq!(parts as usize, in_file, "{rel}: components add up");
    }
}

#[test]
fn bad_input_gives_one_line_errors() {
    let model = fixtures().join("blip_vqa");
    let good_image = fixtures().join("images/chest_32.png");
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            vec![
                "--model".into(),
                "/nonexistent/model".into(),
                "--image".into(),
                good_image.display().to_string(),
                "--question".into(),
                "is it?".into(),
            ],
            "/nonexistent/model",
        ),
        (
            vec![
                "--model".into(),
                model.display().to_string(),
                "--image".into(),
                fixtures()
                    .join("images/not_an_image.png")
                    .display()
                    .to_string(),
                "--question".into(),
                "is it?".into(),
            ],
            "not_an_image.png",
        ),
        (
            vec![
                "--model".into(),
                model.display().to_string(),
                "--image".into(),
                "/nonexistent.png".into(),
                "--question".into(),
                "is it?".into(),
            ],
            "/nonexistent.png",
        ),
        (
            vec![
                "--model".into(),
                model.display().to_string(),
                "--image".into(),
                good_image.display().to_string(),
                "--question".into(),
                "".into(),
            ],
            "question",
        ),
    ];
    for (args, needle) in cases {
        let mut all = vec!["infer".to_string(), "--device".into(), "cpu".into()];
        all.extend(args);
        let refs: Vec<&str> = all.iter().map(String::as_str).collect();
        let (ok, out, err) = normtune(&refs);
        assert!(!ok, "should fail: {all:?}");
        assert!(out.is_empty(), "nothing on stdout: {out}");
        assert!(!err.contains("panicked"), "no panic: {err}");
        let lines: Vec<&str> = err.lines().filter(|l| l.starts_with("error:")).collect();
        assert_eq!(lines.len(), 1, "one error line: {err}");
        assert!(lines[0].contains(needle), "error names {needle}: {err}");
    }
}

#[test]
fn merge_writes_a_plain_model_with_the_adapted_outputs() {
    let base = fixtures().join("blip_vqa");
    let adapter = fixtures().join("peft_ln_vqa/adapter");
    let out = std::env::temp_dir().join(format!("normtune-merge-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    let (ok, _, err) = normtune(&[
        "merge",
        "--model",
        base.to_str().unwrap(),
        "--adapter",
        adapter.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(ok, "{err}");
    assert!(!out.join("adapter_config.json").exists() && out.join("model.safetensors").exists());
    let image = fixtures().join("images/chest_32.png");
    let q = reference("blip_vqa")["questions"][1]
        .as_str()
        .unwrap()
        .to_string();
    let run = |extra: &[&str], model: &std::path::Path| {
        let mut args = vec![
            "infer",
            "--model",
            model.to_str().unwrap(),
            "--image",
            image.to_str().unwrap(),
            "--question",
            &q,
            "--json",
            "--device",
            "cpu",
        ];
        args.extend_from_slice(extra);
        let (ok, out, err) = normtune(&args);
        assert!(ok, "{err}");
        serde_json::from_str::<serde_json::Value>(out.trim()).unwrap()
    };
    let merged = run(&[], &out);
    let adapted = run(&["--adapter", adapter.to_str().unwrap()], &base);
    let plain = run(&[], &base);
    assert_eq!(merged["token_ids"], adapted["token_ids"]);
    assert_ne!(
        merged["token_ids"], plain["token_ids"],
        "the adapter changes the answer on this input"
    );
    // A second merge into the same folder is refused and leaves it intact.
    let (ok, _, err) = normtune(&[
        "merge",
        "--model",
        base.to_str().unwrap(),
        "--adapter",
        adapter.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(!ok && err.contains("already exists"), "{err}");
    std::fs::remove_dir_all(&out).unwrap();
}

/// Published counts on the MISS shape (ViT-B/16 at 480 + BERT-base encoder and decoder), from a
/// config.json alone: LayerNorm tuning 153,600 (0.042%, arXiv 2404.16385) and MILE's
/// F-LoRA-LoRA r=4 589,824 (0.163%), F-IA3-IA3 184,320 (0.051%), F-F-Prefix 14.77M (3.93%) and
/// F-F-PTv2 184,320 (0.051%) (arXiv 2403.06407).
#[test]
fn inspect_reproduces_the_papers_trainable_counts() {
    let dir = std::env::temp_dir().join(format!("normtune-miss-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("config.json"),
        r#"{"model_type":"blip","architectures":["BlipForQuestionAnswering"],"text_config":{"vocab_size":30524,"num_attention_heads":12},"vision_config":{"image_size":480,"layer_norm_eps":1e-6}}"#,
    )
    .unwrap();
    let lora = dir.join("f_lora_lora.json");
    std::fs::write(&lora, r#"{"placement": {"vision": "frozen", "text_encoder": "lora", "decoder": "lora"}, "lora": {"r": 4}}"#).unwrap();
    let run = |extra: &[&str]| {
        let mut args = vec![
            "inspect",
            "--model",
            dir.to_str().unwrap(),
            "--json",
            "--device",
            "cpu",
        ];
        args.extend_from_slice(extra);
        let (ok, out, err) = normtune(&args);
        assert!(ok, "{err}");
        serde_json::from_str::<serde_json::Value>(out.trim()).unwrap()
    };
    let ln = run(&["--peft", "layernorm"]);
    assert_eq!(ln["total_params"], 361_478_972u64);
    assert_eq!(ln["trainable_params"], 153_600);
    let fl = run(&["--peft-config", lora.to_str().unwrap()]);
    assert_eq!(fl["trainable_params"], 589_824);
    // MILE's F-IA3-IA3: 184,320 (0.051%).
    let fi = run(&["--peft", "vision=frozen,text_encoder=ia3,decoder=ia3"]);
    assert_eq!(fi["trainable_params"], 184_320);
    // MILE's F-F-Prefix 14.77M (3.93%) and F-F-PTv2 184,320 (0.051%), 10 virtual tokens.
    let fp = run(&["--peft", "vision=frozen,text_encoder=frozen,decoder=prefix"]);
    assert_eq!(fp["trainable_params"], 14_772_480);
    let fv = run(&[
        "--peft",
        "vision=frozen,text_encoder=frozen,decoder=ptuning-v2",
    ]);
    assert_eq!(fv["trainable_params"], 184_320);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn train_fits_saves_an_adapter_and_infer_uses_it() {
    let root = fixtures().join("../..");
    let out = std::env::temp_dir().join(format!("normtune-train-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    let config = fixtures().join("data/tiny_vqa.toml");
    let out_arg = format!("out=\"{}\"", out.display());
    let model_arg = format!(
        "model=\"{}\"",
        root.join("tests/fixtures/blip_vqa").display()
    );
    let train_arg = format!(
        "data.train=\"{}\"",
        root.join("tests/fixtures/data/tiny_vqa.jsonl").display()
    );
    let images_arg = format!(
        "data.images=\"{}\"",
        root.join("tests/fixtures/images").display()
    );
    let (ok, stdout, err) = normtune(&[
        "train",
        "--config",
        config.to_str().unwrap(),
        &out_arg,
        &model_arg,
        &train_arg,
        &images_arg,
        "peft.default_method=\"full\"",
        "train.lr=3e-3",
        "epochs=40",
        "train.label_smoothing=0.0",
        "eval.every=20",
        "--device",
        "cpu",
    ]);
    assert!(ok, "{err}");
    assert!(
        err.contains("trainable params:"),
        "prints the trainable line: {err}"
    );
    let metrics: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(
        metrics["overall_acc"], 1.0,
        "memorises both answers: {metrics}"
    );
    let lines = metrics_lines(&out);
    let events: Vec<&serde_json::Value> = lines.iter().filter(|l| l["kind"] == "train").collect();
    assert_eq!(events.len(), 40);
    let evals: Vec<&serde_json::Value> = lines.iter().filter(|l| l["kind"] == "eval").collect();
    assert_eq!(evals.len(), 2, "evaluated at steps 20 and 40");
    assert_eq!(evals[1]["overall_acc"], 1.0);
    assert_eq!(
        metrics["best"]["step"],
        evals
            .iter()
            .fold((0, -1.0), |b, e| {
                let v = e["overall_acc"].as_f64().unwrap();
                if v > b.1 {
                    (e["step"].as_u64().unwrap(), v)
                } else {
                    b
                }
            })
            .0
    );
    assert!(out.join("best/adapter_model.safetensors").exists());
    assert!(out.join("checkpoint/optimizer.bpk").exists());
    let preds = std::fs::read_to_string(out.join("predictions.jsonl")).unwrap();
    assert!(
        preds.contains("\"id\":\"q0\"") && preds.contains("\"answer\":\"yes\""),
        "{preds}"
    );
    let (first, last) = (
        events[0]["loss"].as_f64().unwrap(),
        events[39]["loss"].as_f64().unwrap(),
    );
    assert!(last < 0.05 * first, "loss {first} -> {last}");
    assert!(out.join("config.toml").exists() && out.join("adapter/adapter_config.json").exists());

    let image = fixtures().join("images/chest_32.png");
    let adapter = out.join("adapter");
    let (ok, answer, err) = normtune(&[
        "infer",
        "--model",
        root.join("tests/fixtures/blip_vqa").to_str().unwrap(),
        "--adapter",
        adapter.to_str().unwrap(),
        "--image",
        image.to_str().unwrap(),
        "--question",
        "is there a left pleural effusion?",
        "--device",
        "cpu",
    ]);
    assert!(ok, "{err}");
    assert_eq!(answer.trim(), "yes");
    // Side by side: the base model's answer next to the tuned one, the same as infer without
    // the adapter gives.
    let (ok, both, err) = normtune(&[
        "infer",
        "--model",
        root.join("tests/fixtures/blip_vqa").to_str().unwrap(),
        "--adapter",
        adapter.to_str().unwrap(),
        "--compare",
        "--json",
        "--image",
        image.to_str().unwrap(),
        "--question",
        "is there a left pleural effusion?",
        "--device",
        "cpu",
    ]);
    assert!(ok, "{err}");
    let both: serde_json::Value = serde_json::from_str(both.trim()).unwrap();
    let (ok, plain, _) = normtune(&[
        "infer",
        "--model",
        root.join("tests/fixtures/blip_vqa").to_str().unwrap(),
        "--image",
        image.to_str().unwrap(),
        "--question",
        "is there a left pleural effusion?",
        "--device",
        "cpu",
        "--json",
    ]);
    assert!(ok);
    let plain: serde_json::Value = serde_json::from_str(plain.trim()).unwrap();
    assert_eq!(
        (both["tuned"].as_str(), &both["base"]),
        (Some("yes"), &plain["answer"])
    );

    // The run folder exists now: a second run refuses to overwrite it.
    let (ok, _, err) = normtune(&[
        "train",
        "--config",
        config.to_str().unwrap(),
        &out_arg,
        &model_arg,
        &train_arg,
        &images_arg,
        "--device",
        "cpu",
    ]);
    assert!(!ok && err.contains("already exists"), "{err}");
    std::fs::remove_dir_all(&out).unwrap();
}

#[test]
fn train_config_errors_name_the_file_and_field() {
    let config = fixtures().join("data/tiny_vqa.toml");
    let (ok, _, err) = normtune(&[
        "train",
        "--config",
        config.to_str().unwrap(),
        "train.lerning_rate=1",
        "--device",
        "cpu",
    ]);
    assert!(
        !ok && err.contains("tiny_vqa.toml")
            && err.contains("`lerning_rate`")
            && err.contains("did you mean `learning_rate`"),
        "{err}"
    );
    let (ok, _, err) = normtune(&[
        "train",
        "--config",
        "/nonexistent/run.toml",
        "--device",
        "cpu",
    ]);
    assert!(!ok && err.contains("/nonexistent/run.toml"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn train_writes_reports_and_scores_them() {
    let root = fixtures().join("../..");
    let out = std::env::temp_dir().join(format!("normtune-train-report-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    let config = fixtures().join("data/tiny_vqa.toml");
    let args = [
        format!("out=\"{}\"", out.display()),
        format!(
            "model=\"{}\"",
            root.join("tests/fixtures/blip_caption").display()
        ),
        format!(
            "data.train=\"{}\"",
            root.join("tests/fixtures/data/tiny_iu_xray.json").display()
        ),
        format!(
            "data.images=\"{}\"",
            root.join("tests/fixtures/images").display()
        ),
        "data.format=\"iu-xray\"".into(),
        "peft.default_method=\"full\"".into(),
        "train.lr=3e-3".into(),
        "epochs=40".into(),
        "train.label_smoothing=0.0".into(),
        "generation.max_new_tokens=12".into(),
        "eval.every=1000".into(),
    ];
    let mut all = vec![
        "train",
        "--config",
        config.to_str().unwrap(),
        "--device",
        "cpu",
    ];
    all.extend(args.iter().map(String::as_str));
    let (ok, stdout, err) = normtune(&all);
    assert!(ok, "{err}");
    let metrics: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    // The test split holds one memorised study: its report comes back word for word.
    assert_eq!(metrics["examples"], 1);
    assert!(
        (metrics["bleu4"].as_f64().unwrap() - 1.0).abs() < 1e-6,
        "{metrics}"
    );
    assert!(
        (metrics["rouge_l"].as_f64().unwrap() - 1.0).abs() < 1e-9,
        "{metrics}"
    );
    std::fs::remove_dir_all(&out).unwrap();
}

/// `normtune bench` on the `tiny` preset trains exactly the parameters HF + peft train for the
/// same config and method (counts from `tests/fixtures/bench/make_bench_fixture.py`), and
/// reports what the issue asks for; bad arguments get one-line errors.
#[test]
fn bench_counts_what_peft_counts_and_reports_its_fields() {
    let counts: serde_json::Value =
        serde_json::from_slice(&std::fs::read(fixtures().join("bench/tiny_counts.json")).unwrap())
            .unwrap();
    for method in ["layernorm", "lora", "full"] {
        let (ok, out, err) = normtune(&[
            "bench",
            "--preset",
            "tiny",
            "--peft",
            method,
            "--batch",
            "2",
            "--steps",
            "2",
            "--warmup",
            "1",
            "--answers",
            "1",
            "--answer-tokens",
            "3",
            "--json",
            "--device",
            "cpu",
        ]);
        assert!(ok, "{method}: {err}");
        let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
        assert_eq!(
            v["trainable_params"], counts[method]["trainable_params"],
            "{method}"
        );
        assert_eq!(
            v["total_params"], counts[method]["total_params"],
            "{method}"
        );
        assert_eq!(v["step_ms"].as_array().unwrap().len(), 2);
        let (min, med, max) = (
            v["step_ms_min"].as_f64().unwrap(),
            v["step_ms_median"].as_f64().unwrap(),
            v["step_ms_max"].as_f64().unwrap(),
        );
        assert!(0.0 < min && min <= med && med <= max, "{v}");
        assert!(v["samples_per_s"].as_f64().unwrap() > 0.0);
        assert!(v["answer_ms_median"].as_f64().unwrap() > 0.0);
        // Answers from the merged model, as the PyTorch reference's `merge_and_unload`.
        assert_eq!(v["answers_merged"], true, "{method}");
        assert!(v["peak_rss_mb"].as_f64().unwrap() > 1.0);
        assert!(v["last_loss"].as_f64().unwrap().is_finite());
    }
    // A user's own folder, here the demo model with its 147-token vocabulary: the synthetic
    // questions and answers stay inside it. Data-parallel over two concurrent replicas of the
    // CPU (`--replicas 2`), the first loss (before any update) is the one-device loss; with
    // `--answers 0` no answer is timed.
    let demo = |replicas: &str| -> serde_json::Value {
        let (ok, out, err) = normtune(&[
            "bench",
            "--model",
            fixtures()
                .join("../../core/assets/demo-base")
                .to_str()
                .unwrap(),
            "--batch",
            "4",
            "--steps",
            "1",
            "--warmup",
            "0",
            "--answers",
            "0",
            "--replicas",
            replicas,
            "--json",
            "--device",
            "cpu",
        ]);
        assert!(ok, "{err}");
        serde_json::from_str(out.trim()).unwrap()
    };
    let (one, two) = (demo("1"), demo("2"));
    assert_eq!(one["total_params"], 2_485_395);
    assert_eq!((&one["replicas"], &two["replicas"]), (&1.into(), &2.into()));
    assert!(one["answer_ms_median"].is_null(), "{one}");
    let (a, b) = (
        one["first_loss"].as_f64().unwrap(),
        two["first_loss"].as_f64().unwrap(),
    );
    assert!(
        a.is_finite() && (a - b).abs() <= 1e-5 * a.abs(),
        "{a} vs {b}"
    );
    let (ok, _, err) = normtune(&["bench", "--replicas", "0"]);
    assert!(!ok && err.contains("--replicas"), "{err}");
    // `--matmul MxKxN[t]`: one product of a model's shape, the right operand optionally a
    // transposed view (a linear layer's input gradient).
    let (ok, out, err) = normtune(&[
        "bench", "--matmul", "40x24x8t", "--steps", "2", "--warmup", "0", "--json", "--device",
        "cpu",
    ]);
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(
        (&v["m"], &v["k"], &v["n"]),
        (&40.into(), &24.into(), &8.into())
    );
    assert_eq!(v["transposed"], true);
    assert!(v["gflops"].as_f64().unwrap() > 0.0, "{v}");
    // `BxMxKxN[t]`: attention's batched per-head products.
    let (ok, out, err) = normtune(&[
        "bench",
        "--matmul",
        "6x20x8x20t",
        "--steps",
        "2",
        "--warmup",
        "0",
        "--json",
        "--device",
        "cpu",
    ]);
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(
        (&v["batch"], &v["matmul"]),
        (&6.into(), &"6x20x8x20t".into())
    );
    for bad in ["40x24", "0x2x2", "12t", "2x3x4x5x6", "0x2x2x2"] {
        let (ok, _, err) = normtune(&["bench", "--matmul", bad]);
        assert!(!ok && err.contains(&format!("`{bad}`")), "{bad}: {err}");
    }
    let (ok, _, err) = normtune(&["bench", "--preset", "huge"]);
    assert!(
        !ok && err.trim().lines().count() == 1 && err.contains("--preset huge"),
        "{err}"
    );
    let (ok, _, err) = normtune(&["bench", "--model", "/nonexistent/model"]);
    assert!(!ok && err.contains("/nonexistent/model"), "{err}");
}

/// LN tuning of the LLaVA-style model from the command line: the tower's LayerNorms and the
/// decoder's RMSNorms, plus the projector, train (counted from the checkpoint's own tensor
/// names); the loss falls; the saved adapter, applied by `infer`, gives the run's own answers.
#[test]
fn train_ln_tunes_the_llava_model_and_infer_applies_its_adapter() {
    let root = fixtures().join("../..");
    let model = root.join("tests/fixtures/llava/tiny");
    let out = std::env::temp_dir().join(format!("normtune-llava-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    let config = fixtures().join("data/tiny_llava.toml");
    // `normtune train` on the tiny LLaVA and the tiny VQA set into `dir`, with `extra` overrides.
    let train = |dir: &std::path::Path, extra: &[&str]| {
        let (out, model) = (
            format!("out=\"{}\"", dir.display()),
            format!("model=\"{}\"", model.display()),
        );
        let data = format!(
            "data.train=\"{}\"",
            root.join("tests/fixtures/data/tiny_vqa.jsonl").display()
        );
        let images = format!(
            "data.images=\"{}\"",
            root.join("tests/fixtures/images").display()
        );
        let mut args = vec![
            "train",
            "--config",
            config.to_str().unwrap(),
            &out,
            &model,
            &data,
            &images,
        ];
        args.extend_from_slice(extra);
        args.extend_from_slice(&["--device", "cpu"]);
        normtune(&args)
    };
    let (ok, stdout, err) = train(&out, &[]);
    assert!(ok, "{err}");
    // Every norm weight and bias of the checkpoint, and the projector.
    let bytes = std::fs::read(model.join("model.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let want: usize = st
        .tensors()
        .iter()
        .filter(|(k, _)| k.contains("norm") || k.starts_with("multi_modal_projector."))
        .map(|(_, t)| t.shape().iter().product::<usize>())
        .sum();
    let metrics: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(metrics["trainable_params"], want, "{metrics}");
    let losses: Vec<f64> = metrics_lines(&out)
        .iter()
        .filter(|l| l["kind"] == "train")
        .map(|l| l["loss"].as_f64().unwrap())
        .collect();
    assert_eq!(losses.len(), 30);
    assert!(
        losses[29] < 0.6 * losses[0],
        "the loss falls: {} → {}",
        losses[0],
        losses[29]
    );
    // burn's gradient checkpointing recomputes instead of keeping: the same run, the same losses.
    let ck = out.with_extension("ckpt");
    let _ = std::fs::remove_dir_all(&ck);
    let (ok, _, err) = train(&ck, &["train.gradient_checkpointing=true"]);
    assert!(ok, "{err}");
    let ck_losses: Vec<f64> = metrics_lines(&ck)
        .iter()
        .filter(|l| l["kind"] == "train")
        .map(|l| l["loss"].as_f64().unwrap())
        .collect();
    for (a, b) in losses.iter().zip(&ck_losses) {
        assert!(
            (a - b).abs() <= 1e-5 * a.abs(),
            "{losses:?} vs {ck_losses:?}"
        );
    }
    let _ = std::fs::remove_dir_all(&ck);
    // The language model's frozen weights in f16 (`train.frozen_dtype`): the run trains the same
    // parameters, says how many values it converted (every decoder Linear weight and the
    // embedding: all decoder values but the norms'), and its losses stay within half
    // precision's reach of the f32 run's.
    let half = out.with_extension("f16");
    let _ = std::fs::remove_dir_all(&half);
    let (ok, half_stdout, err) = train(&half, &["train.frozen_dtype=\"f16\""]);
    assert!(ok, "{err}");
    let decoder_frozen: usize = st
        .tensors()
        .iter()
        .filter(|(k, _)| k.starts_with("language_model.") && !k.contains("norm"))
        .map(|(_, t)| t.shape().iter().product::<usize>())
        .sum();
    assert!(
        err.contains(&format!(
            "frozen weights: {decoder_frozen} values stored as f16"
        )),
        "{err}"
    );
    let half_metrics: serde_json::Value = serde_json::from_str(half_stdout.trim()).unwrap();
    assert_eq!(half_metrics["trainable_params"], want);
    let half_losses: Vec<f64> = metrics_lines(&half)
        .iter()
        .filter(|l| l["kind"] == "train")
        .map(|l| l["loss"].as_f64().unwrap())
        .collect();
    assert_eq!(half_losses.len(), losses.len());
    let worst = losses
        .iter()
        .zip(&half_losses)
        .map(|(a, b)| (a - b).abs() / a.abs())
        .fold(0f64, f64::max);
    println!("f16 frozen weights: losses within {worst:.2e} of the f32 run's");
    assert!(worst <= 5e-3, "{losses:?} vs {half_losses:?}");
    let _ = std::fs::remove_dir_all(&half);
    let preds: Vec<serde_json::Value> = std::fs::read_to_string(out.join("predictions.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let questions = [
        ("q0", "chest_32.png", "is there a left pleural effusion?"),
        (
            "q1",
            "chest_50x40.png",
            "what organ is shown in this chest x ray image?",
        ),
    ];
    for (id, image, q) in questions {
        let (ok, stdout, err) = normtune(&[
            "infer",
            "--model",
            model.to_str().unwrap(),
            "--image",
            root.join("tests/fixtures/images")
                .join(image)
                .to_str()
                .unwrap(),
            "--question",
            q,
            "--adapter",
            out.join("adapter").to_str().unwrap(),
            "--max-new-tokens",
            "5",
            "--device",
            "cpu",
        ]);
        assert!(ok, "{err}");
        let p = preds.iter().find(|p| p["id"] == id).unwrap();
        assert_eq!(stdout.trim(), p["answer"].as_str().unwrap(), "{id}");
    }
    // Folded into the weights (`merge`), the model answers as base + adapter did.
    let merged = out.with_extension("merged");
    let _ = std::fs::remove_dir_all(&merged);
    let (ok, _, err) = normtune(&[
        "merge",
        "--model",
        model.to_str().unwrap(),
        "--adapter",
        out.join("adapter").to_str().unwrap(),
        "--out",
        merged.to_str().unwrap(),
    ]);
    assert!(ok, "{err}");
    let (id, image, q) = questions[1];
    let (ok, stdout, err) = normtune(&[
        "infer",
        "--model",
        merged.to_str().unwrap(),
        "--image",
        root.join("tests/fixtures/images")
            .join(image)
            .to_str()
            .unwrap(),
        "--question",
        q,
        "--max-new-tokens",
        "5",
        "--device",
        "cpu",
    ]);
    assert!(ok, "{err}");
    let p = preds.iter().find(|p| p["id"] == id).unwrap();
    assert_eq!(stdout.trim(), p["answer"].as_str().unwrap(), "merged");
    let _ = std::fs::remove_dir_all(&merged);
    let _ = std::fs::remove_dir_all(&out);
}

/// `inspect --estimate-memory` prints its parts and their sum; on a model it does not cover it
/// says so in one line. (Its accuracy against measured peaks: tests/tests/memory_estimate.rs.)
#[test]
fn inspect_estimates_training_memory_for_llava() {
    let model = fixtures().join("llava/tiny");
    let (ok, out, err) = normtune(&[
        "inspect",
        "--model",
        model.to_str().unwrap(),
        "--peft",
        "vision=layernorm,projector=full,decoder=layernorm",
        "--estimate-memory",
        "--batch",
        "4",
        "--json",
        "--device",
        "cpu",
    ]);
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    let e = &v["memory_estimate"]["bytes"];
    let part = |k: &str| e[k].as_u64().unwrap();
    assert_eq!(v["memory_estimate"]["batch"], 4);
    assert_eq!(part("weights"), 4 * v["total_params"].as_u64().unwrap());
    // AdamW's two moments of every trainable parameter.
    assert_eq!(
        part("optimizer"),
        8 * v["trainable_params"].as_u64().unwrap()
    );
    assert_eq!(
        part("total"),
        part("weights") + part("gradients") + part("optimizer") + part("activations")
    );
    let (ok, _, err) = normtune(&[
        "inspect",
        "--model",
        fixtures().join("blip_vqa").to_str().unwrap(),
        "--estimate-memory",
        "--device",
        "cpu",
    ]);
    assert!(!ok);
    assert!(
        err.trim().lines().count() == 1 && err.contains("LLaVA-style models only"),
        "{err}"
    );
}

/// A 7B architecture (llava-1.5-7b's config.json, no weights) is counted and its training memory
/// estimated without building its 28 GB of weights: parameter counts as transformers counts
/// them (`tests/fixtures/make_llava_7b_config.py`, on the meta device).
#[test]
fn inspect_counts_and_estimates_a_7b_llava_from_its_config_alone() {
    let dir = fixtures().join("llava/llava-1.5-7b-config");
    let r: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("reference.json")).unwrap()).unwrap();
    let (ok, out, err) = normtune(&[
        "inspect",
        "--model",
        dir.to_str().unwrap(),
        "--peft",
        "vision=frozen,projector=full,decoder=layernorm",
        "--estimate-memory",
        "--batch",
        "1",
        "--json",
        "--device",
        "cpu",
    ]);
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["total_params"], r["total_params"]);
    for c in v["components"].as_array().unwrap() {
        let name = c["name"].as_str().unwrap();
        assert_eq!(c["params"], r[name], "{name}");
    }
    assert_eq!(
        v["trainable_params"].as_u64().unwrap(),
        r["projector"].as_u64().unwrap() + r["decoder_norms"].as_u64().unwrap()
    );
    let weights = v["memory_estimate"]["bytes"]["weights"].as_u64().unwrap();
    assert_eq!(weights, 4 * r["total_params"].as_u64().unwrap());
    // With the language model's frozen weights in f16: everything of the decoder but its norms
    // (LLaMA's Linear layers have no biases) takes 2 bytes a value.
    let (ok, out, err) = normtune(&[
        "inspect",
        "--model",
        dir.to_str().unwrap(),
        "--peft",
        "vision=frozen,projector=full,decoder=layernorm",
        "--estimate-memory",
        "--frozen-dtype",
        "f16",
        "--json",
        "--device",
        "cpu",
    ]);
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    let half = r["decoder"].as_u64().unwrap() - r["decoder_norms"].as_u64().unwrap();
    assert_eq!(v["memory_estimate"]["frozen_half_values"], half);
    assert_eq!(
        v["memory_estimate"]["bytes"]["weights"].as_u64().unwrap(),
        4 * r["total_params"].as_u64().unwrap() - 2 * half
    );
}

/// `devices = ["cpu", "cpu"]` trains data-parallel (two replicas; on GPUs `gpu:0`, `gpu:1`) and
/// gives the losses one device gives on the same batches.
#[test]
fn train_on_two_devices_gives_the_one_device_losses() {
    let root = fixtures().join("../..");
    let config = fixtures().join("data/tiny_vqa.toml");
    let run = |devices: &str, tag: &str| -> Vec<f64> {
        let out = std::env::temp_dir().join(format!("normtune-dp-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&out);
        let (ok, _, err) = normtune(&[
            "train",
            "--config",
            config.to_str().unwrap(),
            &format!("out=\"{}\"", out.display()),
            &format!(
                "model=\"{}\"",
                root.join("tests/fixtures/blip_vqa").display()
            ),
            &format!(
                "data.train=\"{}\"",
                root.join("tests/fixtures/data/tiny_vqa.jsonl").display()
            ),
            &format!(
                "data.images=\"{}\"",
                root.join("tests/fixtures/images").display()
            ),
            "epochs=4",
            "eval.every=0",
            devices,
            "--device",
            "cpu",
        ]);
        assert!(ok, "{err}");
        if tag == "two" {
            assert!(err.contains("data parallel"), "{err}");
        }
        let losses = metrics_lines(&out)
            .iter()
            .filter(|l| l["kind"] == "train")
            .map(|l| l["loss"].as_f64().unwrap())
            .collect();
        let _ = std::fs::remove_dir_all(&out);
        losses
    };
    let one = run("devices=[]", "one");
    let two = run("devices=[\"cpu\", \"cpu\"]", "two");
    assert_eq!(one.len(), 4);
    for (a, b) in one.iter().zip(&two) {
        assert!((a - b).abs() <= 1e-5 * a.abs(), "{one:?} vs {two:?}");
    }
    let (ok, _, err) = normtune(&[
        "train",
        "--config",
        config.to_str().unwrap(),
        "devices=[\"cpu\", \"tpu\"]",
    ]);
    assert!(!ok && err.contains("unknown device `tpu`"), "{err}");
    // CUDA in a build without the `cuda` feature (or on a machine without the driver): one line
    // saying so, before anything is trained.
    let (ok, _, err) = normtune(&[
        "train",
        "--config",
        config.to_str().unwrap(),
        "devices=[\"cpu\", \"cuda:1\"]",
    ]);
    assert!(!ok && err.contains("device `cuda:1`"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
}

/// `--device cuda` where burn's CUDA backend cannot run (this build has no `cuda` feature, or
/// the machine no driver) is a one-line error, not a CPU run under a GPU label; `auto` says why
/// it did not pick CUDA.
#[test]
fn cuda_that_cannot_run_is_refused_and_auto_says_why() {
    let (code, out, err) = run(&[
        "bench",
        "--preset",
        "tiny",
        "--steps",
        "1",
        "--warmup",
        "0",
        "--answers",
        "1",
        "--json",
        "--device",
        "cuda:1",
    ]);
    if code == Some(0) {
        return; // a machine where CUDA runs (a `--features cuda` build there): nothing to check
    }
    assert!(out.is_empty(), "{out}");
    assert!(err.contains("--device cuda:1: "), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    let (ok, _, err) = normtune(&[
        "bench",
        "--preset",
        "tiny",
        "--steps",
        "1",
        "--warmup",
        "0",
        "--answers",
        "1",
        "--device",
        "auto",
    ]);
    assert!(ok && err.contains("not cuda: "), "{err}");
}

/// The GPU benchmark's large row, `--preset llava-7b`, is LLaVA-1.5-7B's shape as transformers
/// builds it from that config: the same total and LayerNorm/RMSNorm-trainable counts
/// (tests/fixtures/bench/make_bench_fixture.py, on the meta device).
#[test]
fn the_llava_7b_preset_counts_what_transformers_counts() {
    let counts: serde_json::Value = serde_json::from_slice(
        &std::fs::read(fixtures().join("bench/llava7b_counts.json")).unwrap(),
    )
    .unwrap();
    let dir = std::env::temp_dir().join(format!("normtune-llava7b-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(
        fixtures().join("../../native/bench/presets/llava-7b.json"),
        dir.join("config.json"),
    )
    .unwrap();
    let (ok, out, err) = normtune(&[
        "inspect",
        "--model",
        dir.to_str().unwrap(),
        "--peft",
        "layernorm",
        "--json",
    ]);
    let _ = std::fs::remove_dir_all(&dir);
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["total_params"], counts["layernorm"]["total_params"]);
    assert_eq!(
        v["trainable_params"],
        counts["layernorm"]["trainable_params"]
    );
}

/// A LLaVA chat template of one's own (`chat_prompt`: here LLaVA-Med v1.5's Mistral format)
/// trains and answers; `infer --chat-prompt` with it gives the run's answers; a template
/// without `{question}` is refused in one line.
#[test]
fn a_llava_chat_prompt_of_ones_own_trains_and_answers() {
    let root = fixtures().join("../..");
    let model = root.join("tests/fixtures/llava/tiny");
    let out = std::env::temp_dir().join(format!("normtune-llava-chat-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    let template = r"[INST] <image>\n{question} [/INST]";
    let (ok, _, err) = normtune(&[
        "train",
        "--config",
        fixtures().join("data/tiny_llava.toml").to_str().unwrap(),
        &format!("out=\"{}\"", out.display()),
        &format!("model=\"{}\"", model.display()),
        &format!(
            "data.train=\"{}\"",
            root.join("tests/fixtures/data/tiny_vqa.jsonl").display()
        ),
        &format!(
            "data.images=\"{}\"",
            root.join("tests/fixtures/images").display()
        ),
        &format!("chat_prompt=\"{template}\""),
        "--device",
        "cpu",
    ]);
    assert!(ok, "{err}");
    let preds = std::fs::read_to_string(out.join("predictions.jsonl")).unwrap();
    let q1: serde_json::Value = preds
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .find(|p| p["id"] == "q1")
        .unwrap();
    let infer = |t: &str| {
        normtune(&[
            "infer",
            "--model",
            model.to_str().unwrap(),
            "--image",
            root.join("tests/fixtures/images/chest_50x40.png")
                .to_str()
                .unwrap(),
            "--question",
            "what organ is shown in this chest x ray image?",
            "--adapter",
            out.join("adapter").to_str().unwrap(),
            "--chat-prompt",
            t,
            "--max-new-tokens",
            "5",
            "--device",
            "cpu",
        ])
    };
    let (ok, stdout, err) = infer(template);
    assert!(ok, "{err}");
    assert_eq!(stdout.trim(), q1["answer"].as_str().unwrap());
    let (ok, _, err) = infer("USER: <image> ASSISTANT:");
    assert!(
        !ok && err.contains("needs `{question}`")
            && err.lines().filter(|l| l.starts_with("error")).count() == 1,
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&out);
}

/// `--model org/name[@revision]` finds a snapshot in the HuggingFace cache as huggingface_hub
/// lays it out (`refs/<rev>` → `snapshots/<commit>/`), offline; a miss names where it looked.
#[test]
fn a_model_id_resolves_in_the_huggingface_cache() {
    let cache = std::env::temp_dir().join(format!("normtune-hf-cache-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&cache);
    let repo = cache.join("models--radiology--tiny-vqa");
    let sha = "0123456789abcdef0123456789abcdef01234567";
    let snapshot = repo.join("snapshots").join(sha);
    std::fs::create_dir_all(&snapshot).unwrap();
    std::fs::create_dir_all(repo.join("refs")).unwrap();
    std::fs::write(repo.join("refs/main"), sha).unwrap();
    for e in std::fs::read_dir(fixtures().join("blip_vqa")).unwrap() {
        let p = e.unwrap().path();
        std::fs::copy(&p, snapshot.join(p.file_name().unwrap())).unwrap();
    }
    let image = fixtures().join("images/chest_32.png");
    let run = |model: &str| {
        let out = Command::new(env!("CARGO_BIN_EXE_normtune"))
            .env("HF_HUB_CACHE", &cache)
            .args([
                "infer",
                "--device",
                "cpu",
                "--json",
                "--num-beams",
                "1",
                "--model",
                model,
            ])
            .args([
                "--image",
                image.to_str().unwrap(),
                "--question",
                "is there a mass?",
            ])
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).to_string(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    let direct = {
        let (ok, out, err) = run(fixtures().join("blip_vqa").to_str().unwrap());
        assert!(ok, "{err}");
        out
    };
    for id in [
        "radiology/tiny-vqa",
        "radiology/tiny-vqa@main",
        &format!("radiology/tiny-vqa@{sha}"),
    ] {
        let (ok, out, err) = run(id);
        assert!(ok, "{id}: {err}");
        assert_eq!(out, direct, "{id}");
    }
    let (ok, _, err) = run("radiology/other-model");
    assert!(
        !ok && err.contains("not in the HuggingFace cache")
            && err.contains("models--radiology--other-model"),
        "{err}"
    );
    let (ok, _, err) = run("radiology/tiny-vqa@v2");
    assert!(
        !ok && err.contains("no snapshot for revision `v2`"),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&cache);
}

/// LLaVA as llama.cpp users hold it, end to end: a K-quant decoder GGUF (SentencePiece
/// vocabulary) + an mmproj GGUF as `--model`, LN/RMSNorm tuning (projector trained) on a
/// LLaVA-format conversation file (every gpt turn learned) through LLaVA-Med's Mistral prompt
/// with MILE's default question templates; a peft LN_TUNING adapter comes out, the loss falls,
/// and `infer` on the pair (given as the folder holding it) with that adapter answers as the
/// run's predictions.
#[test]
fn a_gguf_pair_trains_on_llava_conversations_and_infer_answers_as_the_run() {
    let root = fixtures().join("../..");
    let pair = root.join("tests/fixtures/llava_gguf");
    let out = std::env::temp_dir().join(format!("normtune-llava-gguf-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    let config = fixtures().join("data/tiny_llava_gguf.toml");
    let rel = |p: &str| root.join(p).display().to_string();
    let (ok, stdout, err) = normtune(&[
        "train",
        "--config",
        config.to_str().unwrap(),
        &format!("out=\"{}\"", out.display()),
        &format!(
            "model=\"{},{}\"",
            rel("tests/fixtures/llava_gguf/decoder.gguf"),
            rel("tests/fixtures/llava_gguf/mmproj.gguf")
        ),
        &format!(
            "data.train=\"{}\"",
            rel("tests/fixtures/data/tiny_llava_conversations.json")
        ),
        &format!("data.images=\"{}\"", rel("tests/fixtures/images")),
        "--device",
        "cpu",
    ]);
    assert!(ok, "{err}");
    // Trainable: every norm of both files (the tower's LayerNorms, the decoder's RMSNorms), the
    // CLIP post_layernorm transformers' model has (the mmproj drops it: 2 x width), and the
    // projector.
    let mut want = 0usize;
    let mut width = 0usize;
    for f in ["decoder.gguf", "mmproj.gguf"] {
        let path = pair.join(f);
        let g = normtune_core::gguf::Gguf::parse(std::fs::read(&path).unwrap(), f).unwrap();
        for t in &g.tensors {
            let n = &t.name;
            if n.contains("norm") || n.contains(".ln") || n.contains("_ln") || n.starts_with("mm.")
            {
                want += t.numel();
            }
            if n == "v.pre_ln.weight" {
                width = t.numel();
            }
        }
    }
    want += 2 * width;
    let metrics: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(metrics["trainable_params"], want, "{metrics}");
    let losses: Vec<f64> = metrics_lines(&out)
        .iter()
        .filter(|l| l["kind"] == "train")
        .map(|l| l["loss"].as_f64().unwrap())
        .collect();
    assert!(
        losses[losses.len() - 1] < 0.5 * losses[0],
        "the loss falls: {losses:?}"
    );
    let adapter: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("adapter/adapter_config.json")).unwrap())
            .unwrap();
    assert_eq!(adapter["peft_type"], "LN_TUNING");
    let preds: Vec<serde_json::Value> = std::fs::read_to_string(out.join("predictions.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    for (id, image, q) in [
        ("c0", "chest_32.png", "Is there a left pleural effusion?"),
        (
            "c1",
            "chest_50x40.png",
            "What organ is shown in this chest X-ray?",
        ),
    ] {
        let (ok, stdout, err) = normtune(&[
            "infer",
            "--model",
            pair.to_str().unwrap(),
            "--chat-prompt",
            "[INST] <image>\n{question} [/INST]",
            "--image",
            &rel(&format!("tests/fixtures/images/{image}")),
            "--question",
            q,
            "--adapter",
            out.join("adapter").to_str().unwrap(),
            "--max-new-tokens",
            "4",
            "--device",
            "cpu",
        ]);
        assert!(ok, "{err}");
        let p = preds.iter().find(|p| p["id"] == id).unwrap();
        assert_eq!(stdout.trim(), p["answer"].as_str().unwrap(), "{id}");
    }
    // One GGUF alone is not a LLaVA model: the error says what is missing.
    let (ok, _, err) = normtune(&[
        "infer",
        "--model",
        pair.join("decoder.gguf").to_str().unwrap(),
        "--image",
        &rel("tests/fixtures/images/chest_32.png"),
        "--question",
        "q?",
    ]);
    assert!(
        !ok && err.contains("mmproj") && err.lines().count() <= 2,
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&out);
}
