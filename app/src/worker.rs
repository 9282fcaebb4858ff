//! The Web Worker: everything that touches a model runs here, off the page's thread, so the page
//! never freezes. It is a thin loop around normtune-core (the same loader, PEFT, trainer,
//! evaluation and adapter writer as the CLI): messages are queued by `onmessage` and handled one
//! at a time between training steps, so pausing, stopping and asking work while a run is going.

use crate::protocol::{
    Backend, DataChoice, EvalPoint, Files, FromWorker, Sample, StepTimes, ToWorker, TuneSettings,
    decode, encode,
};
use normtune_core::burn::tensor::Device;
use normtune_core::data::{Example, Format, QuestionTemplates, decode_image, read_examples};
use normtune_core::demo::{Domain, train_test_files};
use normtune_core::models::Pipeline;
use normtune_core::models::blip::GenConfig;
use normtune_core::peft::{self, PeftConfig};
use normtune_core::source::{FileSource, MemorySource};
use normtune_core::train::{DataSpec, EvalSpec, Run, RunData, RunEvent, RunSpec, TrainConfig};
use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::Rc;
use wasm_bindgen::prelude::*;
use web_sys::DedicatedWorkerGlobalScope;

type Inbox = Rc<RefCell<VecDeque<(ToWorker, Files)>>>;

fn scope() -> DedicatedWorkerGlobalScope {
    js_sys::global().unchecked_into()
}

/// Posts a message (and transfers its files) to the page.
fn post(msg: &FromWorker, files: Files) {
    let (value, transfer) = encode(msg, files);
    let _ = scope().post_message_with_transfer(&value, &transfer);
}

fn progress(what: &str, done: usize, total: usize) {
    post(
        &FromWorker::Progress {
            what: what.into(),
            done,
            total,
        },
        Vec::new(),
    );
}

/// Tells the page which models are kept in the browser (an unreadable store shows as an error).
async fn post_kept() {
    match crate::cache::list().await {
        Ok(models) => {
            let est = crate::cache::estimate().await;
            post(
                &FromWorker::Kept {
                    models,
                    used: est.map(|e| e.0),
                    quota: est.map(|e| e.1),
                },
                Vec::new(),
            );
        }
        Err(message) => post(&FromWorker::Error { message }, Vec::new()),
    }
}

/// Resolves after `ms` milliseconds, letting `onmessage` run meanwhile.
async fn sleep(ms: i32) {
    let p = js_sys::Promise::new(&mut |resolve, _| {
        let _ = scope().set_timeout_with_callback_and_timeout_and_arguments_0(&resolve, ms);
    });
    let _ = wasm_bindgen_futures::JsFuture::from(p).await;
}

/// The size of this worker's WebAssembly memory, MiB.
fn wasm_mb() -> f64 {
    wasm_bindgen::memory()
        .unchecked_into::<js_sys::WebAssembly::Memory>()
        .buffer()
        .unchecked_into::<js_sys::ArrayBuffer>()
        .byte_length() as f64
        / (1 << 20) as f64
}

/// How many threads the CPU backend runs on, or why only one (set once, before any message is
/// handled).
static THREADS: std::sync::OnceLock<Result<usize, String>> = std::sync::OnceLock::new();

/// Starts rayon's threads on Web Workers where the build has them (`+atomics`) and the page is
/// cross-origin isolated; one per logical core, as flex does natively.
async fn start_threads() -> Result<usize, String> {
    #[cfg(target_feature = "atomics")]
    {
        let n = scope().navigator().hardware_concurrency() as usize;
        if n <= 1 {
            return Err("the browser reports one logical core".into());
        }
        crate::threads::start(n).await
    }
    #[cfg(not(target_feature = "atomics"))]
    Err("this is the worker without WebAssembly threads (the page is not cross-origin isolated, or the backend is WebGPU)".into())
}

/// Entry point of the worker binary.
pub fn start() {
    #[cfg(target_feature = "atomics")]
    if crate::threads::is_thread_worker() {
        // One of rayon's threads (www/normtune-thread.js): no app loop here.
        console_error_panic_hook::set_once();
        return;
    }
    std::panic::set_hook(Box::new(|info| {
        console_error_panic_hook::hook(info);
        post(
            &FromWorker::Crashed {
                message: info.to_string(),
            },
            Vec::new(),
        );
    }));
    let inbox: Inbox = Rc::new(RefCell::new(VecDeque::new()));
    let queue = inbox.clone();
    let on_message =
        Closure::<dyn FnMut(web_sys::MessageEvent)>::new(move |ev: web_sys::MessageEvent| {
            match decode::<ToWorker>(&ev.data()) {
                Ok(m) => queue.borrow_mut().push_back(m),
                Err(message) => post(&FromWorker::Error { message }, Vec::new()),
            }
        });
    scope().set_onmessage(Some(on_message.as_ref().unchecked_ref()));
    on_message.forget();
    post(&FromWorker::Alive, Vec::new());
    wasm_bindgen_futures::spawn_local(run(inbox));
}

async fn run(inbox: Inbox) {
    // Before any message: a model op would otherwise start rayon's default pool, which cannot
    // spawn threads in wasm, on this thread alone.
    let threads = start_threads().await;
    if let Err(why) = &threads {
        web_sys::console::info_1(
            &format!("normtune: the CPU backend runs on one thread: {why}").into(),
        );
    }
    let _ = THREADS.set(threads);
    let mut w = State::default();
    loop {
        let next = inbox.borrow_mut().pop_front();
        if let Some((msg, files)) = next {
            if let Err(message) = w.handle(msg, files).await {
                post(&FromWorker::Error { message }, Vec::new());
            }
            continue;
        }
        if w.run.as_ref().is_some_and(|r| r.running && !r.paused) {
            if let Err(message) = w.train_step().await {
                if let Some(r) = w.run.as_mut() {
                    r.running = false;
                }
                post(&FromWorker::Error { message }, Vec::new());
                post(
                    &FromWorker::State {
                        state: "stopped".into(),
                    },
                    Vec::new(),
                );
            }
            // Let the messages that arrived during the step in.
            sleep(0).await;
        } else {
            sleep(25).await;
        }
    }
}

/// A folder of files shared between the data set and a session without copying the bytes.
#[derive(Clone, Default)]
struct Shared(Rc<MemorySource>);

impl FileSource for Shared {
    async fn read(&self, name: &str) -> normtune_core::Result<Vec<u8>> {
        self.0.read(name).await
    }
    async fn exists(&self, name: &str) -> bool {
        self.0.exists(name).await
    }
}

struct Model {
    name: String,
    files: Shared,
    /// The base model for answers, on the inference device.
    base: Pipeline,
}

struct Data {
    train: Vec<Example>,
    test: Vec<Example>,
    images: Shared,
}

/// A training run: core's [`Run`] (all of the run's policy) and whether the page has it going.
struct Training {
    run: Run<Shared>,
    running: bool,
    paused: bool,
    /// Micro-batches trained in this run.
    steps: usize,
}

#[derive(Default)]
struct State {
    device: Option<(Backend, Device)>,
    /// The device line sent with `Ready`.
    adapter: String,
    limits: Option<(u64, u64)>,
    model: Option<Model>,
    data: Option<Data>,
    run: Option<Training>,
    /// An imported adapter on the base model (answers as "tuned" until the next run).
    imported: Option<Pipeline>,
}

fn err(e: impl std::fmt::Display) -> String {
    e.to_string()
}

impl State {
    fn device(&self) -> Result<&Device, String> {
        self.device
            .as_ref()
            .map(|(_, d)| d)
            .ok_or_else(|| "the device is not set up yet".to_string())
    }

    async fn handle(&mut self, msg: ToWorker, files: Files) -> Result<(), String> {
        match msg {
            ToWorker::Init { backend } => self.init(backend).await,
            ToWorker::LoadDemoModel => {
                let files: Files = normtune_core::demo::model::base_model_files()
                    .into_iter()
                    .map(|(k, v)| (k.to_string(), v.to_vec()))
                    .collect();
                self.load_model("normtune-demo-base".into(), files).await
            }
            ToWorker::LoadModel { name } => self.load_model(name, files).await,
            ToWorker::LoadData(choice) => self.load_data(choice, files).await,
            ToWorker::Start(s) => self.start(s).await,
            ToWorker::Pause | ToWorker::Resume => {
                let pause = msg == ToWorker::Pause;
                let r = self.run.as_mut().ok_or("no training run")?;
                if r.running {
                    r.paused = pause;
                }
                post(
                    &FromWorker::State {
                        state: if pause { "paused" } else { "running" }.into(),
                    },
                    Vec::new(),
                );
                Ok(())
            }
            ToWorker::Stop => {
                if let Some(r) = self.run.as_mut() {
                    r.running = false;
                }
                post(
                    &FromWorker::State {
                        state: "stopped".into(),
                    },
                    Vec::new(),
                );
                Ok(())
            }
            ToWorker::Ask { question } => {
                let (_, image) = files
                    .into_iter()
                    .next()
                    .ok_or("drop or choose an image first")?;
                self.ask(&question, &image, "the chosen image", None).await
            }
            ToWorker::AskSample { index } => {
                let data = self.data.as_ref().ok_or("load data first")?;
                let e = data.test.get(index).ok_or("no such test example")?.clone();
                let image = data.images.read(&e.image).await.map_err(err)?;
                let q = e.question.clone().ok_or("this example has no question")?;
                self.ask(&q, &image, &e.image, Some(e.target.clone())).await
            }
            ToWorker::TimeSteps {
                method,
                batch_size,
                warmup,
                steps,
            } => self.time_steps(method, batch_size, warmup, steps).await,
            ToWorker::Export => self.export().await,
            ToWorker::ImportAdapter => self.import(files).await,
            ToWorker::KeepModel => {
                let m = self.model.as_ref().ok_or("load a model first")?;
                let files: Vec<(&str, &[u8])> = m.files.0.iter().collect();
                let total = files.iter().map(|(_, b)| b.len()).sum::<usize>();
                progress(
                    &format!(
                        "keeping {} ({:.1} MB) in this browser",
                        m.name,
                        total as f64 / 1e6
                    ),
                    0,
                    1,
                );
                let kept = crate::cache::save(&m.name, &files).await;
                progress("kept", 1, 1);
                post_kept().await;
                kept
            }
            ToWorker::LoadKeptModel { key } => {
                progress("reading the kept model", 0, 1);
                let (name, files) = crate::cache::load(&key).await?;
                self.load_model(name, files).await
            }
            ToWorker::DeleteKeptModel { key } => {
                let deleted = crate::cache::delete(&key).await;
                post_kept().await;
                deleted
            }
        }
    }

    async fn init(&mut self, backend: Backend) -> Result<(), String> {
        if self.device.is_some() {
            return Err("the device is already set up; reload to switch".into());
        }
        let (device, adapter, max_buffer, max_binding) = match backend {
            #[cfg(feature = "webgpu")]
            Backend::Webgpu => {
                let (device, setup) = Device::wgpu_options()
                    .init_with_setup_async()
                    .await
                    .map_err(|e| format!("WebGPU could not start: {e:?}"))?;
                let info = setup.adapter.get_info();
                let limits = setup.adapter.limits();
                let name = if info.name.is_empty() {
                    format!("{:?} adapter", info.device_type)
                } else {
                    info.name.clone()
                };
                (
                    device,
                    format!(
                        "{name} ({:?}{})",
                        info.backend,
                        if info.driver.is_empty() {
                            String::new()
                        } else {
                            format!(", {}", info.driver)
                        }
                    ),
                    Some(limits.max_buffer_size),
                    Some(limits.max_storage_buffer_binding_size as u64),
                )
            }
            #[cfg(not(feature = "webgpu"))]
            Backend::Webgpu => {
                return Err(
                    "this is the CPU backend's worker (built without WebGPU); reload the page"
                        .into(),
                );
            }
            Backend::Cpu => (
                Device::flex(),
                match THREADS.get() {
                    Some(Ok(n)) => format!(
                        "burn flex on {n} wasm threads (Web Workers): correct everywhere, slower than a GPU"
                    ),
                    _ => {
                        "burn flex on one wasm thread: correct everywhere, slower than a GPU".into()
                    }
                },
                None,
                None,
            ),
        };
        self.limits = max_buffer.zip(max_binding);
        self.device = Some((backend, device));
        self.adapter = adapter.clone();
        post(
            &FromWorker::Ready {
                backend,
                adapter,
                max_buffer,
                max_binding,
            },
            Vec::new(),
        );
        post_kept().await;
        Ok(())
    }

    async fn load_model(&mut self, name: String, files: Files) -> Result<(), String> {
        let device = self.device()?.clone();
        let mut src = MemorySource::new();
        let strip = common_folder(&files);
        for (k, v) in files {
            src.insert(k[strip..].to_string(), v);
        }
        for need in ["config.json", "model.safetensors"] {
            if !src.exists(need).await {
                return Err(format!(
                    "{name}: the folder has no `{need}` (a HF model folder: config.json, model.safetensors, tokenizer.json or vocab.txt)"
                ));
            }
        }
        // Each tensor becomes one GPU buffer: refuse what the adapter cannot hold before
        // allocating anything.
        let weights = src.read("model.safetensors").await.map_err(err)?;
        if let Some((_, max_binding)) = self.limits {
            let names = normtune_core::models::load::tensor_names(
                &weights,
                &format!("{name}/model.safetensors"),
            )
            .map_err(err)?;
            if let Some((t, shape)) = names
                .iter()
                .find(|(_, s)| 4 * s.iter().product::<usize>() as u64 > max_binding)
            {
                return Err(format!(
                    "{name}/model.safetensors: tensor `{t}` {shape:?} needs {} MB as f32, more than this GPU's largest buffer binding ({} MB): use the CPU backend or a smaller model",
                    4 * shape.iter().product::<usize>() / 1_000_000,
                    max_binding / 1_000_000
                ));
            }
        }
        drop(weights);
        progress("loading weights", 0, 1);
        let p = Pipeline::load(&src, &device).await.map_err(err)?;
        let report = peft::report(&p.model);
        post(
            &FromWorker::ModelLoaded {
                name: name.clone(),
                architecture: format!("{:?}", p.config.architecture()),
                params: report.total_params,
                components: report
                    .components
                    .iter()
                    .map(|c| (c.name.clone(), c.total_params))
                    .collect(),
            },
            Vec::new(),
        );
        progress("loading weights", 1, 1);
        self.model = Some(Model {
            name,
            files: Shared(Rc::new(src)),
            base: p,
        });
        self.run = None;
        self.imported = None;
        Ok(())
    }

    async fn load_data(&mut self, choice: DataChoice, files: Files) -> Result<(), String> {
        let (train, test, images) = match choice {
            DataChoice::Benchmark {
                domain,
                studies,
                test_studies,
                seed,
            } => {
                let d = Domain::named(&domain).map_err(err)?;
                progress("drawing the benchmark", 0, 1);
                let files =
                    train_test_files(&d, studies.max(1), test_studies.max(1), seed).map_err(err)?;
                let mut src = MemorySource::new();
                for (k, v) in files {
                    src.insert(k, v);
                }
                let mut split = Vec::new();
                for (name, part) in [("train.vqa.jsonl", "train"), ("test.vqa.jsonl", "test")] {
                    let bytes = src.read(name).await.map_err(err)?;
                    split.push(read_examples(&bytes, name, Format::Jsonl, part).map_err(err)?);
                }
                let test = split.pop().unwrap_or_default();
                let train = split.pop().unwrap_or_default();
                (train, test, src)
            }
            DataChoice::Files { format } => user_data(&format, files)?,
        };
        if train.is_empty() {
            return Err("the training split is empty".into());
        }
        let images = Shared(Rc::new(images));
        let mut shown = Vec::new();
        let mut samples = Vec::new();
        for (i, e) in train.iter().take(4).enumerate() {
            shown.push((format!("sample-{i}"), thumbnail(&images, e).await?));
            samples.push(sample(e));
        }
        let mut test_samples = Vec::new();
        for (i, e) in test.iter().take(6).enumerate() {
            shown.push((format!("test-{i}"), thumbnail(&images, e).await?));
            test_samples.push(sample(e));
        }
        post(
            &FromWorker::DataLoaded {
                train: train.len(),
                test: test.len(),
                samples,
                test_samples,
            },
            shown,
        );
        self.data = Some(Data {
            train,
            test,
            images,
        });
        Ok(())
    }

    async fn start(&mut self, s: TuneSettings) -> Result<(), String> {
        if self.run.as_ref().is_some_and(|r| r.running) {
            return Err("a run is going: stop it first".into());
        }
        let device = self.device()?.clone();
        let model = self.model.as_ref().ok_or("load a model first")?;
        let data = self.data.as_ref().ok_or("load data first")?;
        if !(s.lr > 0.0) || s.epochs == 0 || s.batch_size == 0 {
            return Err("epochs, batch size and learning rate must be positive".into());
        }
        progress("preparing the model", 0, 1);
        let data = RunData {
            train: data.train.clone(),
            eval: data.test.clone(),
            images: data.images.clone(),
            templates: QuestionTemplates::default(),
            labels: None,
        };
        let spec = spec_of(&s, &model.name)?;
        let run = Run::load(spec, &model.files, &device, data, false)
            .await
            .map_err(err)?;
        let report = run.report().clone();
        let spec = format!(
            "# This page's run. To repeat it natively, point model, out and data at your folders\n\
             # (data: a JSONL file with image paths) and run `normtune train --config run.toml`.\n{}",
            run.spec().to_toml().map_err(err)?
        );
        post(
            &FromWorker::Started {
                trainable: report.peft_line(),
                trainable_params: report.trainable_params,
                total_batches: run.plan().total_batches(),
                spec,
            },
            Vec::new(),
        );
        self.imported = None;
        self.run = Some(Training {
            run,
            running: true,
            paused: false,
            steps: 0,
        });
        post(
            &FromWorker::State {
                state: "running".into(),
            },
            Vec::new(),
        );
        Ok(())
    }

    /// The run's next event (the zero-shot evaluation first, then micro-batches and the
    /// evaluations the run's cadence asks for), posted to the page.
    async fn train_step(&mut self) -> Result<(), String> {
        let r = self.run.as_mut().ok_or("no run")?;
        let event = r
            .run
            .next_event(|d, t| {
                if d % 8 == 0 || d == t {
                    progress("evaluating", d, t)
                }
            })
            .await
            .map_err(err)?;
        match event {
            None | Some(RunEvent::Stopped { .. }) => {
                r.running = false;
                post(
                    &FromWorker::State {
                        state: "finished".into(),
                    },
                    Vec::new(),
                );
            }
            Some(RunEvent::Step(rep)) => {
                r.steps += 1;
                let secs = rep.train_seconds.max(1e-9);
                post(
                    &FromWorker::Step {
                        step: rep.event.step,
                        position: rep.position,
                        total: rep.total,
                        loss: rep.event.loss,
                        lr: rep.event.lr,
                        steps_per_s: r.steps as f64 / secs,
                        samples_per_s: rep.samples_per_s,
                        step_ms: rep.step_ms,
                        wasm_mb: wasm_mb(),
                    },
                    Vec::new(),
                );
            }
            Some(RunEvent::Eval {
                step,
                examples,
                scores,
                ..
            }) => {
                let pct = |k: &str| scores.get(k).and_then(|v| v.as_f64()).map(|v| 100.0 * v);
                post(
                    &FromWorker::Eval(EvalPoint {
                        step,
                        overall: pct("overall_acc").unwrap_or(0.0),
                        closed: pct("closed_acc"),
                        open: pct("open_acc"),
                        questions: examples,
                    }),
                    Vec::new(),
                );
            }
            // The browser keeps no files during a run: the adapter is exported on request.
            Some(RunEvent::Best { .. } | RunEvent::Checkpoint { .. }) => {}
        }
        Ok(())
    }

    /// Times training steps of the loaded model on `normtune bench`'s synthetic inputs (its
    /// defaults: 16 question and 6 answer tokens, seed 0, learning rate 1e-4). Each step is timed
    /// to its loss readback; on the CPU backend that is the whole step.
    async fn time_steps(
        &mut self,
        method: String,
        batch: usize,
        warmup: usize,
        steps: usize,
    ) -> Result<(), String> {
        if self.run.as_ref().is_some_and(|r| r.running) {
            return Err("a run is going: stop it before timing steps".into());
        }
        if batch == 0 || steps == 0 {
            return Err("batch size and steps must be positive".into());
        }
        let device = self.device()?.clone();
        let model = self.model.as_ref().ok_or("load a model first")?;
        progress("timing training steps", 0, warmup + steps);
        let train_device = device.clone().autodiff();
        let p = Pipeline::load(&model.files, &train_device)
            .await
            .map_err(err)?;
        let cfg = p
            .config
            .get::<normtune_core::models::blip::BlipConfig>()
            .cloned()
            .ok_or("timing a step works on BLIP VQA models (the demo model is one)")?;
        let peft_cfg = PeftConfig::parse(&method).map_err(err)?;
        train_device.seed(0);
        let model = peft::apply(p.model, &peft_cfg).map_err(err)?;
        let inputs =
            normtune_core::train::synthetic::vqa_batch(&cfg, batch, 16, 6, 0, &train_device)
                .map_err(err)?;
        let mut trainer = normtune_core::train::Trainer::new(
            model,
            TrainConfig {
                lr: 1e-4,
                warmup_steps: 0,
                total_steps: warmup + steps,
                max_grad_norm: None,
                ..TrainConfig::default()
            },
        )
        .map_err(err)?;
        let clock = scope()
            .performance()
            .ok_or("no performance clock in this worker")?;
        let mut step_ms = Vec::with_capacity(steps);
        for i in 0..warmup + steps {
            let t = clock.now();
            trainer.step(&inputs).await.map_err(err)?;
            if i >= warmup {
                step_ms.push(clock.now() - t);
            }
            progress("timing training steps", i + 1, warmup + steps);
        }
        post(
            &FromWorker::StepTimes(StepTimes {
                method,
                batch_size: batch,
                warmup,
                step_ms,
                device: self.adapter.clone(),
            }),
            Vec::new(),
        );
        Ok(())
    }

    async fn ask(
        &self,
        question: &str,
        image: &[u8],
        name: &str,
        reference: Option<String>,
    ) -> Result<(), String> {
        let model = self.model.as_ref().ok_or("load a model first")?;
        let base = answer(
            model.base.with_model(model.base.model.clone()),
            image,
            name,
            question,
        )
        .await?;
        let tuned_p = match (&self.imported, &self.run) {
            (Some(p), _) => Some(p.with_model(p.model.clone())),
            (None, Some(r)) => Some(r.run.tuned()),
            _ => None,
        };
        let tuned = match tuned_p {
            Some(p) => Some(answer(p, image, name, question).await?),
            None => None,
        };
        post(
            &FromWorker::Answer {
                question: question.into(),
                base,
                tuned,
                reference,
            },
            Vec::new(),
        );
        Ok(())
    }

    async fn export(&self) -> Result<(), String> {
        self.model.as_ref().ok_or("load a model first")?;
        let r = self
            .run
            .as_ref()
            .ok_or("nothing is tuned yet: fine-tune first")?;
        progress("writing the adapter", 0, 1);
        let files = r.run.export_adapter().await.map_err(err)?;
        let zip = zip_files(&files)?;
        let names = files.iter().map(|(k, _)| k.clone()).collect();
        let mut out = files;
        out.push(("adapter.zip".into(), zip));
        post(&FromWorker::Exported { files: names }, out);
        progress("writing the adapter", 1, 1);
        Ok(())
    }

    async fn import(&mut self, files: Files) -> Result<(), String> {
        let model = self.model.as_ref().ok_or("load a model first")?;
        let files = unzip_if_zip(files)?;
        let strip = common_folder(&files);
        let mut src = MemorySource::new();
        for (k, v) in files {
            src.insert(k[strip..].to_string(), v);
        }
        let config: serde_json::Value =
            serde_json::from_slice(&src.read(peft::io::CONFIG_FILE).await.map_err(|_| {
                format!(
                    "the adapter has no `{}` (choose the adapter folder or its zip)",
                    peft::io::CONFIG_FILE
                )
            })?)
            .map_err(|e| format!("{}: {e}", peft::io::CONFIG_FILE))?;
        let loaded = peft::io::load_adapter(model.base.model.clone(), &src)
            .await
            .map_err(err)?;
        self.imported = Some(model.base.with_model(loaded));
        post(
            &FromWorker::Imported {
                peft_type: config["peft_type"].as_str().unwrap_or("?").to_string(),
            },
            Vec::new(),
        );
        Ok(())
    }
}

async fn answer(p: Pipeline, image: &[u8], name: &str, question: &str) -> Result<String, String> {
    let pixels = p.image_tensor(image, name).map_err(err)?;
    p.answer(pixels, question, &generation())
        .await
        .map(|g| g.text)
        .map_err(err)
}

/// Greedy answers of at most 10 tokens: beam search costs several times more device round trips,
/// which a software WebGPU adapter feels.
fn generation() -> GenConfig {
    GenConfig {
        num_beams: 1,
        max_new_tokens: 10,
        ..GenConfig::default()
    }
}

/// The run a page's settings describe: the page's data (train and test), evaluated before
/// training and after every epoch on `eval_examples` test questions, greedy answers; then the
/// page's "more settings" over it, as the CLI applies its command line over a config.
fn spec_of(s: &TuneSettings, model: &str) -> Result<RunSpec, String> {
    let data = DataSpec::new(Format::Jsonl, "train", Some("test".into()), "");
    let mut spec = RunSpec::new(model, "", data);
    spec.peft = PeftConfig::parse(&s.method).map_err(err)?;
    spec.train = TrainConfig {
        lr: s.lr,
        warmup_steps: 10,
        weight_decay: 0.0,
        ..TrainConfig::default()
    };
    spec.batch_size = s.batch_size;
    spec.epochs = s.epochs;
    spec.seed = s.seed;
    spec.eval = EvalSpec {
        max_examples: s.eval_examples,
        at_start: true,
        ..EvalSpec::default()
    };
    spec.generation = generation();
    for o in &s.overrides {
        let key = o.split('=').next().unwrap_or_default().trim();
        if let Some(top @ ("model" | "out" | "data" | "devices")) = key.split('.').next() {
            return Err(format!(
                "more settings: `{key}`: the page sets `{top}` (choose the model and data above)"
            ));
        }
    }
    spec.with_overrides(&s.overrides, "more settings")
        .map_err(err)
}

fn sample(e: &Example) -> Sample {
    Sample {
        question: e.question.clone().unwrap_or_default(),
        answer: e.target.clone(),
    }
}

/// The example's image as PNG for the page (DICOM and other formats are decoded here).
async fn thumbnail(images: &Shared, e: &Example) -> Result<Vec<u8>, String> {
    let bytes = images.read(&e.image).await.map_err(err)?;
    if bytes.starts_with(b"\x89PNG") {
        return Ok(bytes);
    }
    let img = decode_image(&bytes, &e.image).map_err(err)?;
    let mut png = Vec::new();
    img.write_to(
        &mut std::io::Cursor::new(&mut png),
        normtune_core::image::ImageFormat::Png,
    )
    .map_err(|e2| format!("{}: {e2}", e.image))?;
    Ok(png)
}

/// The length of the folder prefix every name shares (`folder/`), so a picked folder's files are
/// named as inside it.
fn common_folder(files: &Files) -> usize {
    let Some(first) = files.first() else { return 0 };
    let Some((top, _)) = first.0.split_once('/') else {
        return 0;
    };
    let prefix = format!("{top}/");
    if files.iter().all(|(k, _)| k.starts_with(&prefix)) {
        prefix.len()
    } else {
        0
    }
}

fn unzip_if_zip(files: Files) -> Result<Files, String> {
    if files.len() != 1 || !files[0].0.to_ascii_lowercase().ends_with(".zip") {
        return Ok(files);
    }
    let (name, bytes) = files.into_iter().next().expect("one file");
    normtune_core::source::unzip(&name, bytes, normtune_core::source::MAX_UNZIPPED).map_err(err)
}

fn zip_files(files: &Files) -> Result<Vec<u8>, String> {
    let mut buf = std::io::Cursor::new(Vec::new());
    {
        let mut z = zip::ZipWriter::new(&mut buf);
        let opts =
            zip::write::FileOptions::default().compression_method(zip::CompressionMethod::Deflated);
        for (k, v) in files {
            z.start_file(format!("adapter/{k}"), opts).map_err(err)?;
            std::io::Write::write_all(&mut z, v).map_err(err)?;
        }
        z.finish().map_err(err)?;
    }
    Ok(buf.into_inner())
}

/// The user's data: images plus one annotation file (or `train` and `test` ones), from a folder
/// or a zip. Image paths are resolved relative to the folder, else by file name.
fn user_data(
    format: &str,
    files: Files,
) -> Result<(Vec<Example>, Vec<Example>, MemorySource), String> {
    let format: Format = format.parse().map_err(err)?;
    let files = unzip_if_zip(files)?;
    let strip = common_folder(&files);
    let is_annotation = |k: &str| {
        let l = k.to_ascii_lowercase();
        l.ends_with(".json") || l.ends_with(".jsonl") || l.ends_with(".csv")
    };
    let mut notes: Vec<(String, Vec<u8>)> = Vec::new();
    let mut src = MemorySource::new();
    let mut names: Vec<String> = Vec::new();
    for (k, v) in files {
        let k = k[strip..].to_string();
        if is_annotation(&k) {
            notes.push((k, v));
        } else {
            names.push(k.clone());
            src.insert(k, v);
        }
    }
    let pick = |word: &str| {
        notes
            .iter()
            .find(|(k, _)| k.to_ascii_lowercase().contains(word))
    };
    let read =
        |(k, v): &(String, Vec<u8>), split: &str| read_examples(v, k, format, split).map_err(err);
    let (mut train, mut test) = match (pick("train"), pick("test")) {
        (Some(tr), Some(te)) => (read(tr, "train")?, read(te, "test")?),
        _ if notes.len() == 1 => {
            // One file: every fifth example is held out for testing.
            let all = read(&notes[0], "train")?;
            let (te, tr): (Vec<_>, Vec<_>) =
                all.into_iter().enumerate().partition(|(i, _)| i % 5 == 4);
            (
                tr.into_iter().map(|(_, e)| e).collect(),
                te.into_iter().map(|(_, e)| e).collect(),
            )
        }
        _ if notes.is_empty() => {
            return Err(format!(
                "no annotation file (.json, .jsonl or .csv in the {format:?} format) among the chosen files"
            ));
        }
        _ => {
            return Err(format!(
                "{} annotation files ({}): keep one, or name them with `train` and `test`",
                notes.len(),
                notes
                    .iter()
                    .map(|(k, _)| k.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
    };
    let mut missing = Vec::new();
    for e in train.iter_mut().chain(test.iter_mut()) {
        if names.contains(&e.image) {
            continue;
        }
        let base = e.image.rsplit('/').next().unwrap_or(&e.image).to_string();
        let found: Vec<&String> = names
            .iter()
            .filter(|n| n.rsplit('/').next() == Some(base.as_str()))
            .collect();
        match found.as_slice() {
            [one] => e.image = (*one).clone(),
            _ => missing.push(format!("`{}` (id `{}`)", e.image, e.id)),
        }
    }
    if !missing.is_empty() {
        return Err(format!(
            "{} example(s) name images that are not among the chosen files: {}{}",
            missing.len(),
            missing
                .iter()
                .take(3)
                .cloned()
                .collect::<Vec<_>>()
                .join(", "),
            if missing.len() > 3 { ", ..." } else { "" }
        ));
    }
    Ok((train, test, src))
}
