//! Training runs end to end: interrupt (Ctrl-C or at an exact step) and resume bit-identically,
//! `eval` and `score` agreeing with each other, classification training.

use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

mod common;
use common::run_env as run;

/// Runs normtune, which must succeed, and parses the JSON object it prints.
fn run_json(args: &[&str]) -> serde_json::Value {
    let (code, out, err) = run(args, &[]);
    assert_eq!(code, Some(0), "{err}");
    serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("{e}: {out}"))
}

fn tmp(name: &str) -> PathBuf {
    let p = std::env::temp_dir().join(format!("normtune-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&p);
    p
}

/// `train` on the tiny VQA fixture with a run folder and extra overrides.
fn train_args(out: &Path, extra: &[&str]) -> Vec<String> {
    let r = root();
    let mut v: Vec<String> = vec![
        "train".into(),
        "--config".into(),
        r.join("tests/fixtures/data/tiny_vqa.toml")
            .display()
            .to_string(),
        format!("out=\"{}\"", out.display()),
        format!("model=\"{}\"", r.join("tests/fixtures/blip_vqa").display()),
        format!(
            "data.train=\"{}\"",
            r.join("tests/fixtures/data/tiny_vqa.jsonl").display()
        ),
        format!(
            "data.images=\"{}\"",
            r.join("tests/fixtures/images").display()
        ),
        "batch_size=1".into(),
        "epochs=6".into(),
        "seed=7".into(),
        "eval.every=4".into(),
        "generation.num_beams=1".into(),
        "--device".into(),
        "cpu".into(),
    ];
    v.extend(extra.iter().map(|s| s.to_string()));
    v
}

fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

/// The `metrics.jsonl` lines of training steps, in order.
fn train_lines(out: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(out.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|l| l["kind"] == "train")
        .collect()
}

fn train_losses(out: &Path) -> Vec<(u64, f64)> {
    train_lines(out)
        .iter()
        .map(|l| (l["step"].as_u64().unwrap(), l["loss"].as_f64().unwrap()))
        .collect()
}

fn bytes(p: PathBuf) -> Vec<u8> {
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// On one device, and data-parallel over two replicas (which run concurrently: their dropout
/// masks must come from the step's position, not from which thread drew first).
#[test]
fn interrupted_and_resumed_runs_equal_an_uninterrupted_one() {
    for devices in ["devices=[]", "devices=[\"cpu\", \"cpu\"]"] {
        interrupted_and_resumed(devices);
    }
}

fn interrupted_and_resumed(devices: &str) {
    // LoRA on the decoder (dropout 0.1) and LayerNorm elsewhere, with gradient accumulation and
    // augmentation: the AdamW state, the schedule position, the data order, the dropout masks
    // and the image draws all have to come back exactly.
    let extra = [
        "peft.placement.decoder=\"lora\"",
        "train.grad_accum=2",
        "train.lr=1e-2",
        "augment.crop=0.1",
        "augment.contrast=0.1",
        devices,
    ];
    let full = tmp("resume-full");
    let (code, _, err) = run(&strs(&train_args(&full, &extra)), &[]);
    assert_eq!(code, Some(0), "{err}");

    // Interrupted after optimizer step 2 (of 6): checkpoint, exit 130, then resume.
    let cut = tmp("resume-cut");
    let (code, _, err) = run(
        &strs(&train_args(&cut, &extra)),
        &[("NORMTUNE_INTERRUPT_AFTER", "2")],
    );
    assert_eq!(code, Some(130), "{err}");
    assert!(err.contains("--resume"), "tells how to continue: {err}");
    assert!(
        !cut.join("adapter").exists(),
        "no final adapter from an interrupted run"
    );
    let cut_s = cut.display().to_string();
    let (code, _, err) = run(&["train", "--resume", &cut_s, "--device", "cpu"], &[]);
    assert_eq!(code, Some(0), "{err}");
    assert!(err.contains("resumed at step 2"), "{err}");

    for f in [
        "adapter/adapter_model.safetensors",
        "best/adapter_model.safetensors",
    ] {
        assert!(
            bytes(full.join(f)) == bytes(cut.join(f)),
            "{f} differs between the uninterrupted and the resumed run ({devices})"
        );
    }
    assert_eq!(
        train_losses(&full),
        train_losses(&cut),
        "same loss at every step ({devices})"
    );
    assert_eq!(
        bytes(full.join("predictions.jsonl")),
        bytes(cut.join("predictions.jsonl"))
    );
    // Overrides are refused on resume (the run's own config is the one that continues).
    let (code, _, err) = run(&["train", "--resume", &cut_s, "epochs=9"], &[]);
    assert_eq!(code, Some(1));
    assert!(err.contains("overrides are not allowed"), "{err}");
    std::fs::remove_dir_all(&full).unwrap();
    std::fs::remove_dir_all(&cut).unwrap();
}

#[test]
fn ctrl_c_or_sigterm_checkpoints_and_the_run_resumes() {
    let full = tmp("sigint-full");
    // 400 micro-batches: seconds of work, so Ctrl-C lands mid-run.
    let long = ["epochs=200", "eval.every=1000"];
    let (code, _, err) = run(&strs(&train_args(&full, &long)), &[]);
    assert_eq!(code, Some(0), "{err}");

    // Ctrl-C, then SIGTERM (what schedulers send before killing a job): each checkpoints,
    // exits as a shell reports the signal, and the resumed run ends as the uninterrupted one.
    for (signal, code, said) in [
        ("INT", 130, "interrupted: "),
        ("TERM", 143, "interrupted (SIGTERM): "),
    ] {
        let cut = tmp(&format!("sig{signal}-cut"));
        let child = Command::new(env!("CARGO_BIN_EXE_normtune"))
            .args(train_args(&cut, &long))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        // Wait for the first logged step, then send the signal.
        let t0 = std::time::Instant::now();
        while std::fs::read_to_string(cut.join("metrics.jsonl"))
            .map_or(true, |s| s.lines().count() < 2)
        {
            assert!(
                t0.elapsed().as_secs() < 120,
                "no training step within 2 minutes"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let status = Command::new("kill")
            .args([&format!("-{signal}"), &child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let out = child.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(code), "{err}");
        assert!(err.contains(&format!("{said}checkpoint at step")), "{err}");
        assert!(!cut.join("adapter").exists());
        let cut_s = cut.display().to_string();
        let (code, _, err) = run(&["train", "--resume", &cut_s, "--device", "cpu"], &[]);
        assert_eq!(code, Some(0), "{err}");
        assert!(
            bytes(full.join("adapter/adapter_model.safetensors"))
                == bytes(cut.join("adapter/adapter_model.safetensors")),
            "SIG{signal}"
        );
        std::fs::remove_dir_all(&cut).unwrap();
    }
    std::fs::remove_dir_all(&full).unwrap();
}

#[test]
fn eval_and_score_agree_and_score_rejects_bad_files() {
    let r = root();
    let preds = tmp("eval-preds.jsonl");
    let data = r.join("tests/fixtures/data/tiny_vqa.jsonl");
    let eval = run_json(&[
        "eval",
        "--model",
        r.join("tests/fixtures/blip_vqa").to_str().unwrap(),
        "--data",
        data.to_str().unwrap(),
        "--format",
        "jsonl",
        "--images",
        r.join("tests/fixtures/images").to_str().unwrap(),
        "--predictions",
        preds.to_str().unwrap(),
        "--json",
        "--device",
        "cpu",
    ]);
    assert_eq!(eval["count"], 2);
    for k in ["overall_acc", "closed_acc", "open_acc", "open_recall"] {
        assert!(eval.get(k).is_some(), "{k} in {eval}");
    }
    let score = run_json(&[
        "score",
        "--task",
        "vqa",
        "--pred",
        preds.to_str().unwrap(),
        "--ref",
        data.to_str().unwrap(),
        "--json",
    ]);
    assert_eq!(
        score, eval,
        "score on eval's predictions gives eval's numbers"
    );

    // Hand-written predictions: one right closed answer, one open answer with half the tokens.
    let p2 = tmp("score-p2.jsonl");
    std::fs::write(
        &p2,
        "{\"id\": \"q1\", \"answer\": \"lung tissue\"}\n{\"id\": \"q0\", \"answer\": \"Yes.\"}\n",
    )
    .unwrap();
    let s = run_json(&[
        "score",
        "--task",
        "vqa",
        "--pred",
        p2.to_str().unwrap(),
        "--ref",
        data.to_str().unwrap(),
        "--json",
    ]);
    assert_eq!(
        (
            s["closed_acc"].as_f64(),
            s["open_acc"].as_f64(),
            s["open_recall"].as_f64(),
            s["overall_acc"].as_f64()
        ),
        (Some(1.0), Some(0.0), Some(1.0), Some(0.5)),
        "\"the lung\" normalises to \"lung\", which \"lung tissue\" recalls: {s}"
    );
    // A missing prediction and an unknown id are named with file and line.
    std::fs::write(&p2, "{\"id\": \"q0\", \"answer\": \"yes\"}\n").unwrap();
    let (code, _, err) = run(
        &[
            "score",
            "--task",
            "vqa",
            "--pred",
            p2.to_str().unwrap(),
            "--ref",
            data.to_str().unwrap(),
        ],
        &[],
    );
    assert_eq!(code, Some(1));
    assert!(
        err.contains("no prediction for `q1`") && err.contains("line 2"),
        "{err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    std::fs::write(
        &p2,
        "{\"id\": \"q0\", \"answer\": \"yes\"}\n{\"id\": \"zz\", \"answer\": \"no\"}\n",
    )
    .unwrap();
    let (_, _, err) = run(
        &[
            "score",
            "--task",
            "vqa",
            "--pred",
            p2.to_str().unwrap(),
            "--ref",
            data.to_str().unwrap(),
        ],
        &[],
    );
    assert!(
        err.contains("score-p2") && err.contains("line 2: id") && err.contains("`zz`"),
        "{err}"
    );
    let _ = std::fs::remove_file(&preds);
    let _ = std::fs::remove_file(&p2);
}

/// Both classifier families (ViT's class token, CLIP's mean patch token) train on the same
/// label list through the same command.
#[test]
fn trains_a_multi_label_classifier_and_reports_auroc() {
    let r = root();
    // LayerNorm tuning moves a few hundred parameters: a larger step, as the papers use.
    for (model, method, lr) in [
        ("vit_cls", "full", "1e-2"),
        ("clip_cls", "full", "1e-2"),
        ("clip_cls", "layernorm", "5e-2"),
    ] {
        let out = tmp(&format!("cls-{model}-{method}"));
        let m = run_json(&[
            "train",
            "--config",
            r.join("tests/fixtures/data/tiny_vqa.toml")
                .to_str()
                .unwrap(),
            &format!("out=\"{}\"", out.display()),
            &format!(
                "model=\"{}\"",
                r.join("tests/fixtures").join(model).display()
            ),
            "data.format=\"label-list\"",
            &format!(
                "data.train=\"{}\"",
                r.join("tests/fixtures/data/tiny_labels.txt").display()
            ),
            &format!(
                "data.images=\"{}\"",
                r.join("tests/fixtures/images").display()
            ),
            &format!("peft.default_method=\"{method}\""),
            &format!("train.lr={lr}"),
            "train.label_smoothing=0.0",
            "epochs=30",
            "--device",
            "cpu",
        ]);
        assert_eq!(m["task"], "classification", "{model} {method}");
        assert_eq!(
            m["auroc_mean"], 1.0,
            "{model} {method} separates the two images on every defined class: {m}"
        );
        assert!(
            m["auroc_per_class"]["Infiltration"].is_null(),
            "a class with one label value is undefined, not 0.5: {m}"
        );
        assert_eq!(m["auroc_per_class"]["Atelectasis"], 1.0, "{model} {method}");
        std::fs::remove_dir_all(&out).unwrap();
    }
}

#[test]
fn a_diverging_run_stops_naming_the_step_and_keeps_the_last_good_checkpoint() {
    let out = tmp("nan");
    let (code, _, err) = run(
        &strs(&train_args(
            &out,
            &[
                "peft.default_method=\"full\"",
                "train.lr=1e12",
                "train.max_grad_norm=1e30",
                "checkpoint_every=1",
                "epochs=20",
                "eval.every=1000",
            ],
        )),
        &[],
    );
    assert_eq!(code, Some(1), "{err}");
    let last = err.trim().lines().last().unwrap();
    assert!(
        last.contains("the loss is") && last.contains("at step"),
        "{last}"
    );
    assert!(last.contains("last good checkpoint (step"), "{last}");
    let state: serde_json::Value =
        serde_json::from_slice(&bytes(out.join("checkpoint/trainer.json"))).unwrap();
    let good = state["step"].as_u64().unwrap();
    assert!(
        last.contains(&format!("(step {good})")),
        "{last} vs checkpoint step {good}"
    );
    assert!(
        !out.join("adapter").exists(),
        "no adapter from a diverged run"
    );
    std::fs::remove_dir_all(&out).unwrap();
}

/// A GPU out of memory, made real on whatever wgpu adapter there is (lavapipe on CI): a LoRA
/// rank of 50M makes every LoRA matrix several GB, past any adapter's buffer limit (2 GiB on
/// lavapipe), so wgpu refuses the allocation on burn's device thread and the step fails.
#[test]
fn a_device_out_of_memory_fails_in_one_line_and_writes_no_adapter() {
    let out = tmp("gpu-oom");
    let mut args = train_args(
        &out,
        &[
            "peft.default_method=\"lora\"",
            "peft.lora.r=50000000",
            "epochs=1",
            "eval.every=1000",
        ],
    );
    let device = args.iter().position(|a| a == "--device").unwrap();
    args[device + 1] = "gpu".into();
    let (code, _, err) = run(&strs(&args), &[("RUST_BACKTRACE", "0")]);
    assert_eq!(code, Some(1), "{err}");
    let lines: Vec<&str> = err
        .lines()
        .filter(|l| !l.starts_with("error: XDG_RUNTIME_DIR")) // the Vulkan loader's, not ours
        .collect();
    let last = lines.last().copied().unwrap_or_default();
    assert!(
        last.starts_with("error: device: out of device memory or past a device limit")
            && last.contains("batch_size")
            && last.contains("no checkpoint was written yet"),
        "one line saying what happened and what to change: {err}"
    );
    assert!(
        !err.contains("panicked") && !err.contains("stack backtrace"),
        "no panic report: {err}"
    );
    assert!(
        !out.join("adapter").exists(),
        "no adapter from a failed run"
    );
    let _ = std::fs::remove_dir_all(&out);
}

#[test]
fn labels_must_match_the_classifier() {
    let r = root();
    let out = tmp("cls-names");
    let csv = tmp("labels.csv");
    std::fs::write(&csv, "image,Effusion,Nodule\nchest_32.png,1,0\n").unwrap();
    let (code, _, err) = run(
        &[
            "train",
            "--config",
            r.join("tests/fixtures/data/tiny_vqa.toml")
                .to_str()
                .unwrap(),
            &format!("out=\"{}\"", out.display()),
            &format!("model=\"{}\"", r.join("tests/fixtures/vit_cls").display()),
            "data.format=\"labels-csv\"",
            &format!("data.train=\"{}\"", csv.display()),
            &format!(
                "data.images=\"{}\"",
                r.join("tests/fixtures/images").display()
            ),
            "--device",
            "cpu",
        ],
        &[],
    );
    assert_eq!(code, Some(1));
    assert!(
        err.contains("labels.csv")
            && err.contains("Effusion, Nodule")
            && err.contains("Atelectasis"),
        "{err}"
    );
    assert!(!out.exists() || !out.join("adapter").exists());
    let _ = std::fs::remove_file(&csv);
    let _ = std::fs::remove_dir_all(&out);
}

#[test]
fn trains_on_a_folder_of_dicom_files_with_a_csv_of_labels_then_evaluates_and_scores() {
    let r = root();
    let dicom = r.join(".assets/pydicom-data");
    assert!(
        dicom.is_dir(),
        "run tests/fixtures/fetch_assets.sh first (tests/run.sh does)"
    );
    let out = tmp("dicom-run");
    let csv = tmp("dicom-labels.csv");
    // Real CR chest (MONOCHROME1), CT, MR and RLE files; labels in the classifier's own order.
    std::fs::write(
        &csv,
        "image,Atelectasis,Cardiomegaly,Effusion,Infiltration,Pneumothorax\n\
         RG1_UNCR.dcm,1,0,1,0,0\n\
         693_UNCI.dcm,0,1,0,0,1\n\
         MR2_UNCR.dcm,1,1,0,0,0\n\
         emri_small_RLE.dcm,0,0,1,0,1\n",
    )
    .unwrap();
    let m = run_json(&[
        "train",
        "--config",
        r.join("tests/fixtures/data/tiny_vqa.toml")
            .to_str()
            .unwrap(),
        &format!("out=\"{}\"", out.display()),
        &format!("model=\"{}\"", r.join("tests/fixtures/vit_cls").display()),
        "data.format=\"labels-csv\"",
        &format!("data.train=\"{}\"", csv.display()),
        &format!("data.images=\"{}\"", dicom.display()),
        "peft.default_method=\"layernorm\"",
        "train.lr=3e-2",
        "train.label_smoothing=0.0",
        "epochs=40",
        "eval.every=20",
        "--device",
        "cpu",
    ]);
    assert_eq!(m["task"], "classification");
    assert!(m["auroc_per_class"]["Infiltration"].is_null(), "{m}");
    let auroc = m["auroc_mean"].as_f64().unwrap();
    assert!(
        auroc >= 0.75,
        "LayerNorm tuning separates the four studies: {m}"
    );

    // The same numbers from `eval` with the adapter, and from `score` on its predictions.
    let preds = tmp("dicom-preds.jsonl");
    let e = run_json(&[
        "eval",
        "--model",
        r.join("tests/fixtures/vit_cls").to_str().unwrap(),
        "--adapter",
        out.join("adapter").to_str().unwrap(),
        "--data",
        csv.to_str().unwrap(),
        "--format",
        "labels-csv",
        "--images",
        dicom.to_str().unwrap(),
        "--predictions",
        preds.to_str().unwrap(),
        "--json",
        "--device",
        "cpu",
    ]);
    assert!(
        (e["auroc_mean"].as_f64().unwrap() - auroc).abs() < 1e-9,
        "{e} vs {m}"
    );
    let refs = tmp("dicom-refs.jsonl");
    let lines: Vec<String> = std::fs::read_to_string(&csv)
        .unwrap()
        .lines()
        .skip(1)
        .map(|l| {
            let cells: Vec<&str> = l.split(',').collect();
            format!(
                "{{\"id\": \"{}\", \"labels\": [{}]}}",
                cells[0],
                cells[1..].join(",")
            )
        })
        .collect();
    std::fs::write(&refs, lines.join("\n")).unwrap();
    let s = run_json(&[
        "score",
        "--task",
        "classification",
        "--pred",
        preds.to_str().unwrap(),
        "--ref",
        refs.to_str().unwrap(),
        "--json",
    ]);
    assert_eq!(s["auroc_mean"], e["auroc_mean"]);
    for p in [&csv, &preds, &refs] {
        let _ = std::fs::remove_file(p);
    }
    std::fs::remove_dir_all(&out).unwrap();
}

#[test]
fn missing_images_fail_before_training_or_are_skipped_by_name() {
    let r = root();
    let data = tmp("missing.jsonl");
    std::fs::write(
        &data,
        "{\"id\": \"a\", \"image\": \"chest_32.png\", \"question\": \"q?\", \"answer\": \"yes\"}\n\
         {\"id\": \"b\", \"image\": \"nope.png\", \"question\": \"q?\", \"answer\": \"no\"}\n",
    )
    .unwrap();
    let out = tmp("missing-run");
    let base = [
        "train".to_string(),
        "--config".into(),
        r.join("tests/fixtures/data/tiny_vqa.toml")
            .display()
            .to_string(),
        format!("out=\"{}\"", out.display()),
        format!("model=\"{}\"", r.join("tests/fixtures/blip_vqa").display()),
        format!("data.train=\"{}\"", data.display()),
        format!(
            "data.images=\"{}\"",
            r.join("tests/fixtures/images").display()
        ),
        "epochs=1".into(),
        "--device".into(),
        "cpu".into(),
    ];
    let (code, _, err) = run(&strs(&base), &[]);
    assert_eq!(code, Some(1));
    assert!(
        err.contains("missing.jsonl")
            && err.contains("example 2 (id `b`)")
            && err.contains("nope.png"),
        "{err}"
    );
    assert!(!out.exists(), "nothing written before the data is checked");
    let mut skip = base.to_vec();
    skip.push("data.on_missing=\"skip\"".into());
    let (code, _, err) = run(&strs(&skip), &[]);
    assert_eq!(code, Some(0), "{err}");
    assert!(err.contains("skipping") && err.contains("id `b`"), "{err}");
    let _ = std::fs::remove_file(&data);
    std::fs::remove_dir_all(&out).unwrap();
}

#[test]
fn runs_killed_at_random_steps_resume_bit_identically() {
    // SIGKILL gives no chance to checkpoint: with a checkpoint after every optimizer step, the
    // resumed run must still equal the uninterrupted one, whatever step the kill lands on.
    let long = [
        "epochs=60",
        "eval.every=1000",
        "checkpoint_every=1",
        "peft.placement.decoder=\"lora\"",
    ];
    let full = tmp("kill-full");
    let (code, _, err) = run(&strs(&train_args(&full, &long)), &[]);
    assert_eq!(code, Some(0), "{err}");
    let want = bytes(full.join("adapter/adapter_model.safetensors"));
    let mut seed = std::process::id() as u64;
    for round in 0..3 {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let kill_after = 3 + (seed >> 33) as usize % 60;
        let cut = tmp(&format!("kill-{round}"));
        let mut child = Command::new(env!("CARGO_BIN_EXE_normtune"))
            .args(train_args(&cut, &long))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let t0 = std::time::Instant::now();
        while std::fs::read_to_string(cut.join("metrics.jsonl"))
            .map_or(true, |s| s.lines().count() < kill_after)
        {
            assert!(t0.elapsed().as_secs() < 120, "no progress");
            if child.try_wait().unwrap().is_some() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        let _ = child.kill(); // SIGKILL
        let _ = child.wait();
        if cut.join("checkpoint").exists() || cut.join(".checkpoint.old").exists() {
            let cut_s = cut.display().to_string();
            let (code, _, err) = run(&["train", "--resume", &cut_s, "--device", "cpu"], &[]);
            assert_eq!(
                code,
                Some(0),
                "round {round} (killed after ~{kill_after} lines): {err}"
            );
            assert!(
                bytes(cut.join("adapter/adapter_model.safetensors")) == want,
                "round {round}: killed after ~{kill_after} lines, resumed run differs"
            );
            assert_eq!(
                train_losses(&full),
                train_losses(&cut),
                "round {round}: same losses"
            );
        }
        std::fs::remove_dir_all(&cut).unwrap();
    }
    std::fs::remove_dir_all(&full).unwrap();
}

#[test]
fn the_benchmark_exports_as_a_dataset_that_train_reads() {
    let r = root();
    let data = tmp("demo-data");
    let d = data.display().to_string();
    let (code, _, err) = run(
        &[
            "demo-data",
            "--domain",
            "scanner-b",
            "--studies",
            "6",
            "--seed",
            "3",
            "--out",
            &d,
        ],
        &[],
    );
    assert_eq!(code, Some(0), "{err}");
    let vqa = std::fs::read_to_string(data.join("vqa.jsonl")).unwrap();
    assert!(vqa.lines().count() >= 30, "5–7 questions per study");
    assert!(
        vqa.contains("do you see fluid in the pleural space?"),
        "scanner-b's own phrasing"
    );
    assert!(data.join("images/scanner-b-s3-0.png").is_file());
    // Again with the same seed: the same bytes.
    let again = tmp("demo-data-again");
    let a = again.display().to_string();
    run(
        &[
            "demo-data",
            "--domain",
            "scanner-b",
            "--studies",
            "6",
            "--seed",
            "3",
            "--out",
            &a,
        ],
        &[],
    );
    assert_eq!(
        bytes(data.join("vqa.jsonl")),
        bytes(again.join("vqa.jsonl"))
    );
    assert_eq!(
        bytes(data.join("images/scanner-b-s3-5.png")),
        bytes(again.join("images/scanner-b-s3-5.png"))
    );
    let (code, _, err) = run(
        &[
            "demo-data",
            "--domain",
            "scanner-c",
            "--out",
            &tmp("x").display().to_string(),
        ],
        &[],
    );
    assert_eq!(code, Some(1));
    assert!(
        err.contains("scanner-c") && err.contains("scanner-b"),
        "{err}"
    );
    // The folder trains as it is (jsonl format, images relative to it).
    let out = tmp("demo-train");
    let m = run_json(&[
        "train",
        "--config",
        r.join("tests/fixtures/data/tiny_vqa.toml")
            .to_str()
            .unwrap(),
        &format!("out=\"{}\"", out.display()),
        &format!("model=\"{}\"", r.join("tests/fixtures/blip_vqa").display()),
        &format!("data.train=\"{}\"", data.join("vqa.jsonl").display()),
        &format!("data.images=\"{}\"", data.display()),
        "epochs=1",
        "batch_size=8",
        "eval.max_examples=4",
        "generation.num_beams=1",
        "--device",
        "cpu",
    ]);
    assert!(
        m["closed_acc"].is_number() && m["open_acc"].is_number(),
        "{m}"
    );
    for p in [&data, &again, &out] {
        std::fs::remove_dir_all(p).unwrap();
    }
}

/// Resident memory (MiB) logged with each training step, in step order.
fn rss_by_step(out: &Path) -> Vec<f64> {
    train_lines(out)
        .iter()
        .map(|l| l["rss_mb"].as_f64().expect("rss_mb on every train line"))
        .collect()
}

fn median_of(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

#[test]
fn a_long_run_keeps_its_memory_flat() {
    // Soak: NORMTUNE_SOAK_STEPS optimizer steps (1500 here, 20000 for the closing note's run) of
    // LN-tuning with checkpoints every 100 steps. Resident memory in the last tenth of the run
    // against the second tenth (after warm-up): a leak of 10 KB per step would add 15 MB here;
    // the allocator's own noise is well under that.
    let steps: usize = std::env::var("NORMTUNE_SOAK_STEPS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1500);
    let out = tmp("soak");
    let epochs = format!("epochs={}", steps / 2);
    let args = train_args(
        &out,
        &[
            "batch_size=1",
            &epochs,
            "eval.every=1000000",
            "checkpoint_every=100",
        ],
    );
    let (code, _, err) = run(&strs(&args), &[]);
    assert_eq!(code, Some(0), "{err}");
    let rss = rss_by_step(&out);
    assert_eq!(rss.len(), steps, "one line per step");
    let tenth = steps / 10;
    let early = median_of(&rss[tenth..2 * tenth]);
    let late = median_of(&rss[steps - tenth..]);
    eprintln!("soak: {steps} steps, RSS {early:.1} MiB (2nd tenth) -> {late:.1} MiB (last tenth)");
    assert!(
        late - early < 16.0,
        "resident memory grew from {early:.1} to {late:.1} MiB over {steps} steps"
    );
    std::fs::remove_dir_all(&out).unwrap();
}

/// Runs `normtune ARGS` with its run folder on a `kib`-KiB tmpfs mounted at `mnt` inside a
/// private user + mount namespace (`unshare`, no root needed, invisible outside), then lists
/// what is left on that filesystem (`<path> <size>` lines after a `--- files` marker on stdout).
/// `None` where the namespace cannot be made.
fn run_on_small_disk(
    mnt: &Path,
    kib: usize,
    args: &[&str],
) -> Option<(Option<i32>, String, String)> {
    std::fs::create_dir_all(mnt).unwrap();
    // Can this machine make the namespace and mount a tmpfs in it at all?
    let probe = Command::new("unshare")
        .args([
            "--user",
            "--map-root-user",
            "--mount",
            "mount",
            "-t",
            "tmpfs",
            "-o",
            "size=16k",
            "tmpfs",
        ])
        .arg(mnt)
        .output();
    if !probe.is_ok_and(|o| o.status.success()) {
        return None;
    }
    let script = r#"mount -t tmpfs -o size="$1"k tmpfs "$2" || exit 99
mnt="$2"; shift 2
"$@"; rc=$?
echo '--- files'; cd "$mnt" && find . -mindepth 1 -printf '%p %s\n'
exit $rc"#;
    let out = Command::new("unshare")
        .args([
            "--user",
            "--map-root-user",
            "--mount",
            "sh",
            "-c",
            script,
            "sh",
        ])
        .arg(kib.to_string())
        .arg(mnt)
        .arg(env!("CARGO_BIN_EXE_normtune"))
        .args(args)
        .output()
        .expect("run unshare");
    Some((
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    ))
}

#[test]
fn a_full_disk_fails_naming_the_file_and_leaves_nothing_half_written() {
    let mnt = tmp("full-disk");
    let out = mnt.join("run");
    // Room for the run folder and its log, not for the first checkpoint.
    let args = train_args(&out, &["checkpoint_every=1"]);
    let Some((code, stdout, err)) = run_on_small_disk(&mnt, 48, &strs(&args)) else {
        eprintln!("SKIPPED: no user + mount namespace here (unshare), cannot fill a disk");
        return;
    };
    assert_ne!(code, Some(99), "could not mount the tmpfs: {err}");
    assert_eq!(code, Some(1), "{err}");
    let last = err.trim_end().lines().last().unwrap_or_default();
    assert!(
        last.starts_with("error: ")
            && last.contains(&mnt.display().to_string())
            && last.contains("No space left on device"),
        "one line naming the file and the reason: {err}"
    );
    let files = stdout.split("--- files").nth(1).unwrap_or_default();
    assert!(
        !files.contains(".tmp-"),
        "a temporary file or folder was left behind:\n{files}"
    );
    assert!(
        !files.lines().any(|l| l.starts_with("./run/adapter")),
        "no final adapter from a failed run:\n{files}"
    );
    let _ = std::fs::remove_dir_all(&mnt);
}

/// A folder's files in memory, named relative to it (as the browser holds dropped files).
fn memory_source(dir: &Path) -> normtune_core::source::MemorySource {
    let mut src = normtune_core::source::MemorySource::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_file() {
            let name = p.file_name().unwrap().to_str().unwrap().to_string();
            src.insert(name, bytes(p));
        }
    }
    src
}

/// The CLI and the browser's worker drive the same core `Run`: the spec `normtune train` wrote
/// to `config.toml`, run again in this process the way the worker runs it (files in memory, no
/// files kept), gives the same loss at every micro-batch, the same evaluations and a
/// byte-identical adapter. LoRA with dropout, so the seeded initialisation and the dropout
/// masks are covered too (a different dropout rate on one side fails it).
#[test]
fn the_cli_and_the_browsers_path_run_one_spec_identically() {
    use normtune_core::train::{Run, RunData, RunEvent, RunSpec};
    let out = tmp("same-spec");
    let args = train_args(
        &out,
        &[
            "peft.default_method=\"lora\"",
            "epochs=3",
            "batch_size=1",
            "eval.every=0",
            "eval.at_start=true",
        ],
    );
    run_json(&strs(&args));
    let spec: RunSpec =
        toml::from_str(&std::fs::read_to_string(out.join("config.toml")).unwrap()).unwrap();
    let cli_evals: Vec<serde_json::Value> = std::fs::read_to_string(out.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|l| l["kind"] == "eval" || l["kind"] == "start")
        .collect();

    let examples = normtune_core::data::read_examples(
        &bytes(spec.data.train.clone()),
        "train",
        spec.data.format,
        "train",
    )
    .unwrap();
    let data = RunData {
        train: examples.clone(),
        eval: examples,
        images: memory_source(&spec.data.images),
        templates: Default::default(),
        labels: None,
    };
    let model = memory_source(&spec.model);
    let device = normtune_core::burn::tensor::Device::flex();
    let mut run = pollster::block_on(Run::load(spec, &model, &device, data, false)).unwrap();
    let (mut losses, mut evals) = (Vec::new(), Vec::new());
    while let Some(e) = pollster::block_on(run.next_event(|_, _| {})).unwrap() {
        match e {
            RunEvent::Step(r) => losses.push((r.event.step as u64, r.event.loss as f64)),
            RunEvent::Eval { step, scores, .. } => evals.push((step, scores)),
            RunEvent::Best { adapter, .. } => assert!(adapter.is_none(), "no files kept"),
            RunEvent::Checkpoint { .. } => panic!("a run that keeps no files checkpoints"),
            RunEvent::Stopped { .. } => panic!("nothing asked it to stop"),
        }
    }
    let cli_losses = train_losses(&out);
    assert_eq!(losses.len(), 6, "3 epochs of 2 micro-batches");
    assert_eq!(losses, cli_losses, "the same loss at every micro-batch");
    assert_eq!(evals.len(), 4, "before training and after each epoch");
    assert_eq!(evals.len(), cli_evals.len());
    for ((step, scores), line) in evals.iter().zip(&cli_evals) {
        assert_eq!(line["step"].as_u64(), Some(*step as u64));
        for (k, v) in scores {
            assert_eq!(&line[k], v, "{k} at step {step}");
        }
    }
    let done = pollster::block_on(run.finish(|_, _| {})).unwrap();
    assert!(!done.adapter.is_empty());
    for (name, b) in &done.adapter {
        assert!(
            bytes(out.join("adapter").join(name)) == *b,
            "adapter/{name} differs between the two paths"
        );
    }
    let _ = std::fs::remove_dir_all(&out);
}
