//! Component tests in headless Chromium (wasm-bindgen-test): the pieces the worker is built
//! from, on WebGPU (SwiftShader here) and on the CPU backend compiled to wasm. Run by
//! `tests/run.sh` with `wasm-bindgen-test-runner` (see `.cargo/config.toml` and
//! `app/webdriver.json`).

#![cfg(target_arch = "wasm32")]

use normtune_app::protocol::{FromWorker, ToWorker, decode, encode};
use normtune_core::burn::tensor::Device;
use normtune_core::data::{Format, read_examples};
use normtune_core::demo::{Domain, train_test_files};
use normtune_core::models::Pipeline;
use normtune_core::models::blip::GenConfig;
use normtune_core::peft::{self, PeftConfig};
use normtune_core::source::{FileSource, MemorySource};
use normtune_core::train::{Session, SessionConfig};
use wasm_bindgen_test::*;

wasm_bindgen_test_configure!(run_in_browser);

#[wasm_bindgen_test]
fn messages_and_files_cross_post_message_intact() {
    let files = vec![
        ("a/b.bin".to_string(), vec![0u8, 1, 255]),
        ("c".to_string(), Vec::new()),
    ];
    let (value, transfer) = encode(&ToWorker::AskSample { index: 3 }, files.clone());
    assert_eq!(transfer.length(), 2);
    let (msg, back) = decode::<ToWorker>(&value).unwrap();
    assert_eq!(msg, ToWorker::AskSample { index: 3 });
    assert_eq!(back, files);
    let (value, _) = encode(
        &FromWorker::Error {
            message: "x: y".into(),
        },
        Vec::new(),
    );
    assert!(
        decode::<ToWorker>(&value).is_err(),
        "a page message must not parse as a worker request"
    );
}

async fn webgpu() -> Device {
    thread_local! {
        static DEVICE: std::cell::RefCell<Option<Device>> = const { std::cell::RefCell::new(None) };
    }
    if let Some(d) = DEVICE.with(|d| d.borrow().clone()) {
        return d;
    }
    let d = Device::wgpu_options()
        .init_async()
        .await
        .expect("WebGPU adapter");
    DEVICE.with(|c| *c.borrow_mut() = Some(d.clone()));
    d
}

/// Tunes the demo model for one epoch of `studies` benchmark studies on `device`, exports the
/// adapter through the async readback path, loads it onto a fresh base model and checks the
/// loaded model answers `answers` test questions as the tuned one does; returns the losses.
/// (On WebGPU-SwiftShader a step takes about a minute whatever its size: keep these small.)
async fn tune_export_reload(
    device: Device,
    method: &str,
    studies: usize,
    answers: usize,
) -> Vec<f32> {
    let model = normtune_core::demo::model::base_model();
    let files = train_test_files(&Domain::named("scanner-b").unwrap(), studies, 1, 5).unwrap();
    let mut images = MemorySource::new();
    for (k, v) in files {
        images.insert(k, v);
    }
    let read = |bytes: Vec<u8>, name: &str, split: &str| {
        read_examples(&bytes, name, Format::Jsonl, split).unwrap()
    };
    let train = read(
        images.read("train.vqa.jsonl").await.unwrap(),
        "train.vqa.jsonl",
        "train",
    );
    let test = read(
        images.read("test.vqa.jsonl").await.unwrap(),
        "test.vqa.jsonl",
        "test",
    );
    let p = Pipeline::load(&model, &device.clone().autodiff())
        .await
        .unwrap();
    let cfg = SessionConfig {
        peft: PeftConfig::parse(method).unwrap(),
        batch_size: 8,
        epochs: 1,
        generation: GenConfig {
            num_beams: 1,
            max_new_tokens: 6,
            ..GenConfig::default()
        },
        ..SessionConfig::default()
    };
    let mut s = Session::new(p, train, test.clone(), images.clone(), cfg).unwrap();
    let mut losses = Vec::new();
    while let Some(r) = s.step().await.unwrap() {
        assert!(r.event.loss.is_finite());
        losses.push(r.event.loss);
    }
    assert_eq!(losses.len(), s.plan().total_batches());
    let adapter = s.export_adapter("demo").await.unwrap();
    let mut src = MemorySource::new();
    for (k, v) in adapter {
        src.insert(k, v);
    }
    let base = Pipeline::load(&model, &device).await.unwrap();
    let loaded = peft::io::load_adapter(base.model.clone(), &src)
        .await
        .unwrap();
    let reloaded = base.with_model(loaded);
    let tuned = s.tuned();
    let gen_cfg = GenConfig {
        num_beams: 1,
        max_new_tokens: 6,
        ..GenConfig::default()
    };
    for e in test.iter().take(answers) {
        let img = images.read(&e.image).await.unwrap();
        let q = e.question.as_deref().unwrap();
        let a = tuned
            .answer(tuned.image_tensor(&img, &e.image).unwrap(), q, &gen_cfg)
            .await
            .unwrap();
        let b = reloaded
            .answer(reloaded.image_tensor(&img, &e.image).unwrap(), q, &gen_cfg)
            .await
            .unwrap();
        assert_eq!(
            a.token_ids, b.token_ids,
            "{method}: the exported adapter answers differently"
        );
    }
    losses
}

#[wasm_bindgen_test]
async fn layernorm_tuning_exports_a_working_adapter_on_webgpu() {
    let losses = tune_export_reload(webgpu().await, "layernorm", 1, 2).await;
    assert!(!losses.is_empty());
}

#[wasm_bindgen_test]
async fn lora_exports_a_working_adapter_on_webgpu() {
    tune_export_reload(webgpu().await, "lora", 1, 2).await;
}

#[wasm_bindgen_test]
async fn layernorm_tuning_exports_a_working_adapter_on_the_cpu_backend() {
    tune_export_reload(Device::flex(), "layernorm", 3, 4).await;
}
