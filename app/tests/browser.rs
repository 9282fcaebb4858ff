//! Component tests in headless Chromium (wasm-bindgen-test): the pieces the worker is built
//! from, on WebGPU (SwiftShader here) and on the CPU backend compiled to wasm. Run by
//! `tests/run.sh` with `wasm-bindgen-test-runner` (see `.cargo/config.toml` and
//! `app/webdriver.json`).

#![cfg(target_arch = "wasm32")]

use normtune_app::protocol::{FromWorker, ToWorker, decode, encode};
use normtune_core::burn::tensor::Device;
use normtune_core::data::{Format, QuestionTemplates, read_examples};
use normtune_core::demo::{Domain, train_test_files};
use normtune_core::models::Pipeline;
use normtune_core::models::blip::GenConfig;
use normtune_core::peft::{self, PeftConfig};
use normtune_core::source::{FileSource, MemorySource};
use normtune_core::train::{DataSpec, Run, RunData, RunEvent, RunSpec};
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

/// Matrix products on the CPU backend against sums in f64, on shapes on both sides of gemm's
/// WebAssembly microkernel tile (8 x 4 here: core/vendor/gemm-f32/NORMTUNE.md), with operands
/// contiguous and seen through a transpose, batched and not: every edge case of the tiling.
#[wasm_bindgen_test]
async fn cpu_matrix_products_match_f64_sums_across_the_kernel_tile() {
    use normtune_core::burn::tensor::{Tensor, TensorData};
    let device = Device::flex();
    let value =
        |i: usize, salt: u64| (((i as u64 * 2654435761 + salt * 97) % 1999) as f32 / 999.5) - 1.0;
    let mut checked = 0;
    for &(batch, m, k, n) in &[
        (1, 1, 1, 1),
        (1, 1, 7, 5),
        (1, 5, 9, 1),
        (1, 7, 8, 4),
        (1, 8, 9, 5),
        (1, 9, 10, 8),
        (1, 17, 12, 3),
        (1, 11, 16, 2),
        (1, 12, 17, 3),
        (1, 13, 33, 4),
        (1, 24, 64, 6),
        (1, 25, 65, 7),
        (2, 36, 128, 9),
        (3, 37, 31, 10),
        (1, 100, 300, 129),
        (1, 260, 130, 67),
        (4, 65, 32, 65),
    ] {
        for transposed in [false, true] {
            let a: Vec<f32> = (0..batch * m * k).map(|i| value(i, 1)).collect();
            let b: Vec<f32> = (0..batch * k * n).map(|i| value(i, 2)).collect();
            let lhs = Tensor::<3>::from_data(TensorData::new(a.clone(), [batch, m, k]), &device);
            // The right operand as stored (k x n), or stored n x k and seen through a transpose.
            let rhs = if transposed {
                let bt: Vec<f32> = (0..batch * n * k)
                    .map(|i| {
                        let (bi, r, c) = (i / (n * k), (i / k) % n, i % k);
                        b[bi * k * n + c * n + r]
                    })
                    .collect();
                Tensor::<3>::from_data(TensorData::new(bt, [batch, n, k]), &device).swap_dims(1, 2)
            } else {
                Tensor::<3>::from_data(TensorData::new(b.clone(), [batch, k, n]), &device)
            };
            let got = lhs
                .matmul(rhs)
                .into_data_async()
                .await
                .expect("readback")
                .to_vec::<f32>()
                .unwrap();
            assert_eq!(got.len(), batch * m * n);
            for bi in 0..batch {
                for i in 0..m {
                    for j in 0..n {
                        let (mut exact, mut size) = (0f64, 0f64);
                        for p in 0..k {
                            let t =
                                a[bi * m * k + i * k + p] as f64 * b[bi * k * n + p * n + j] as f64;
                            exact += t;
                            size += t.abs();
                        }
                        let g = got[bi * m * n + i * n + j] as f64;
                        // f32 accumulation: |error| <= k * eps * sum |a b| (a loose bound; an
                        // element computed from the wrong inputs misses it by far).
                        assert!(
                            (g - exact).abs() <= 1e-6 + k as f64 * 1.2e-7 * size,
                            "{batch}x{m}x{k}x{n} (rhs transposed: {transposed}) [{bi},{i},{j}]: {g} vs {exact}"
                        );
                        checked += 1;
                    }
                }
            }
        }
    }
    assert!(checked > 50_000, "{checked} elements");
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
    let data = DataSpec::new(
        Format::Jsonl,
        "train.vqa.jsonl",
        Some("test.vqa.jsonl".into()),
        "",
    );
    let mut spec = RunSpec::new("demo", "", data);
    spec.peft = PeftConfig::parse(method).unwrap();
    spec.train.lr = 3e-3;
    spec.batch_size = 8;
    spec.epochs = 1;
    let data = RunData {
        train,
        eval: Vec::new(),
        images: images.clone(),
        templates: QuestionTemplates::default(),
        labels: None,
    };
    let mut run = Run::load(spec, &model, &device, data, false).await.unwrap();
    let mut losses = Vec::new();
    while let Some(e) = run.next_event(|_, _| {}).await.unwrap() {
        if let RunEvent::Step(r) = e {
            assert!(r.event.loss.is_finite());
            losses.push(r.event.loss);
        }
    }
    assert_eq!(losses.len(), run.plan().total_batches());
    let adapter = run.export_adapter().await.unwrap();
    let mut src = MemorySource::new();
    for (k, v) in adapter {
        src.insert(k, v);
    }
    let base = Pipeline::load(&model, &device).await.unwrap();
    let loaded = peft::io::load_adapter(base.model.clone(), &src)
        .await
        .unwrap();
    let reloaded = base.with_model(loaded);
    let tuned = run.tuned();
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

/// Keeping a model in the browser (OPFS): what is saved loads back byte for byte (a file larger
/// than one write chunk, an empty file, a name with a slash); a second save replaces the first; a
/// directory whose manifest is missing (a write cut short) is listed as incomplete and refused;
/// deleting everything leaves the origin's private file system as it was.
#[wasm_bindgen_test]
async fn kept_models_round_trip_through_the_private_file_system() {
    use normtune_app::cache;
    use wasm_bindgen::JsCast;
    use wasm_bindgen_futures::JsFuture;
    let big: Vec<u8> = (0..(16 << 20) + 1234)
        .map(|i: u32| (i * 7 % 251) as u8)
        .collect();
    let files = [
        ("config.json", &b"{\"x\": 1}"[..]),
        ("model.safetensors", &big[..]),
        ("empty.txt", &[][..]),
    ];
    assert!(
        cache::list().await.unwrap().is_empty(),
        "the store starts empty"
    );
    cache::save("org/model", &files).await.unwrap();
    let listed = cache::list().await.unwrap();
    assert_eq!(listed.len(), 1);
    let m = &listed[0];
    assert_eq!(
        (m.key.as_str(), m.name.as_str()),
        ("org_model", "org/model")
    );
    assert_eq!(m.bytes as usize, 8 + big.len());
    assert_eq!(m.files, 3);
    assert!(m.complete);
    let (name, back) = cache::load("org_model").await.unwrap();
    assert_eq!(name, "org/model");
    let want: Vec<(String, Vec<u8>)> = files
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_vec()))
        .collect();
    assert_eq!(back, want, "the kept files must load back byte for byte");

    // Keeping it again replaces the first copy (one entry, the new files only).
    cache::save("org/model", &[("config.json", &b"{}"[..])])
        .await
        .unwrap();
    let listed = cache::list().await.unwrap();
    assert_eq!((listed.len(), listed[0].files, listed[0].bytes), (1, 1, 2));

    // A directory without a manifest: listed as incomplete, refused with a reason.
    let top: web_sys::FileSystemDirectoryHandle = JsFuture::from(
        web_sys::window()
            .unwrap()
            .navigator()
            .storage()
            .get_directory(),
    )
    .await
    .unwrap()
    .unchecked_into();
    let root: web_sys::FileSystemDirectoryHandle =
        JsFuture::from(top.get_directory_handle(cache::ROOT))
            .await
            .unwrap()
            .unchecked_into();
    let opts = web_sys::FileSystemGetDirectoryOptions::new();
    opts.set_create(true);
    JsFuture::from(root.get_directory_handle_with_options("cut", &opts))
        .await
        .unwrap();
    let listed = cache::list().await.unwrap();
    let cut = listed
        .iter()
        .find(|m| m.key == "cut")
        .expect("the cut directory is listed");
    assert!(!cut.complete);
    let e = cache::load("cut").await.unwrap_err();
    assert!(e.contains("incomplete"), "{e}");
    assert!(
        cache::load("nothing")
            .await
            .unwrap_err()
            .contains("no model `nothing`")
    );

    cache::delete("cut").await.unwrap();
    cache::delete("org_model").await.unwrap();
    assert!(cache::list().await.unwrap().is_empty());
    let left = js_sys::Array::new();
    let it = top.keys();
    loop {
        let next = JsFuture::from(it.next().unwrap()).await.unwrap();
        if js_sys::Reflect::get(&next, &"done".into())
            .unwrap()
            .as_bool()
            .unwrap()
        {
            break;
        }
        left.push(&js_sys::Reflect::get(&next, &"value".into()).unwrap());
    }
    assert_eq!(
        left.length(),
        0,
        "deleting every kept model must leave OPFS empty: {left:?}"
    );
}
