//! The messages between the page and the worker. Each crosses `postMessage` as a JS object
//! `{msg, names, blobs}`: the message as JSON and its files as transferred `Uint8Array`s (a model
//! is hundreds of megabytes: it is moved, not copied or serialised).

use serde::{Deserialize, Serialize};
use wasm_bindgen::{JsCast, JsValue};

/// Named files travelling with a message.
pub type Files = Vec<(String, Vec<u8>)>;

/// Which backend the worker computes on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// WebGPU through wgpu.
    Webgpu,
    /// burn's pure-Rust `flex` backend in wasm (rayon on Web Workers where the build and page allow).
    Cpu,
}

impl Backend {
    /// What the user reads.
    pub fn label(self) -> &'static str {
        match self {
            Backend::Webgpu => "WebGPU",
            Backend::Cpu => "CPU (flex, wasm)",
        }
    }
}

/// Where the training data comes from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum DataChoice {
    /// The built-in benchmark's target domain (generated in the worker).
    Benchmark {
        /// `scanner-b`, `inverted`, `lowres`, `new-finding`.
        domain: String,
        /// Training studies (6–9 questions each).
        studies: usize,
        /// Test studies.
        test_studies: usize,
        /// Seed of the training split (the test split uses another).
        seed: u64,
    },
    /// The user's files (sent along): images plus an annotation file in `format`.
    Files {
        /// `vqa-rad`, `slake`, `path-vqa` or `jsonl`.
        format: String,
    },
}

/// Training settings chosen on the page.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TuneSettings {
    /// A PEFT spec as the CLI takes it (`layernorm`, `lora`, `vision=layernorm,decoder=frozen`).
    pub method: String,
    /// Passes over the training data.
    pub epochs: usize,
    /// Peak learning rate.
    pub lr: f64,
    /// Examples per step.
    pub batch_size: usize,
    /// Test questions scored before training and after each epoch (0 = all).
    pub eval_examples: usize,
    /// Seed of the data order and new adapter weights.
    pub seed: u64,
    /// More settings, one `key=value` each, as `normtune train` takes them after its config
    /// (`train.weight_decay=0.05`, `eval.every=20`, `peft.lora.r=16`): any run.toml key but the
    /// model, data and devices, which the page sets.
    #[serde(default)]
    pub overrides: Vec<String>,
}

/// Page → worker.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum ToWorker {
    /// Set up the device (once per worker: switching backends starts a new worker).
    Init {
        /// The backend.
        backend: Backend,
    },
    /// Load the bundled demo base model.
    LoadDemoModel,
    /// Load a HF model folder (the files travel along).
    LoadModel {
        /// The folder's name, for messages and `base_model_name_or_path`.
        name: String,
    },
    /// Prepare training and test data.
    LoadData(DataChoice),
    /// Start fine-tuning.
    Start(TuneSettings),
    /// Pause between steps.
    Pause,
    /// Continue after a pause.
    Resume,
    /// Stop training (the model keeps what it learnt so far).
    Stop,
    /// Answer a question about an image (sent along as `image`), base and tuned.
    Ask {
        /// The question.
        question: String,
    },
    /// Ask about test example `index` of the loaded data (its image and question).
    AskSample {
        /// Index into the test split.
        index: usize,
    },
    /// Write the adapter folder.
    Export,
    /// Load an adapter folder or zip (sent along) onto the base model.
    ImportAdapter,
    /// Keep the loaded model's files in the browser (OPFS) for later visits.
    KeepModel,
    /// Load a model kept in the browser.
    LoadKeptModel {
        /// Its directory ([`CachedModel::key`]).
        key: String,
    },
    /// Delete a model kept in the browser.
    DeleteKeptModel {
        /// Its directory ([`CachedModel::key`]).
        key: String,
    },
    /// Time training steps of the loaded model on synthetic inputs (`normtune bench`'s, so the
    /// figure compares with a native one): `warmup` untimed steps, then `steps` timed ones.
    TimeSteps {
        /// A PEFT spec, as for [`TuneSettings::method`].
        method: String,
        /// Examples per step.
        batch_size: usize,
        /// Untimed steps first.
        warmup: usize,
        /// Timed steps.
        steps: usize,
    },
}

/// Training steps timed on synthetic inputs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepTimes {
    /// The PEFT spec.
    pub method: String,
    /// Examples per step.
    pub batch_size: usize,
    /// Untimed steps before.
    pub warmup: usize,
    /// Each timed step, milliseconds.
    pub step_ms: Vec<f64>,
    /// The device line ([`FromWorker::Ready`]'s `adapter`).
    pub device: String,
}

impl StepTimes {
    /// The median step, milliseconds.
    pub fn median_ms(&self) -> f64 {
        let mut v = self.step_ms.clone();
        v.sort_by(f64::total_cmp);
        match v.len() {
            0 => f64::NAN,
            n if n % 2 == 1 => v[n / 2],
            n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
        }
    }
}

/// A model kept in the browser's private file system.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CachedModel {
    /// Its directory under `normtune-models/`.
    pub key: String,
    /// The model's name.
    pub name: String,
    /// Bytes of its files.
    pub bytes: u64,
    /// Number of files.
    pub files: usize,
    /// When it was kept (ms since the epoch).
    pub saved_ms: f64,
    /// False for a write that was cut short (no manifest): it can only be deleted.
    pub complete: bool,
}

/// Scores of one evaluation, in percent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalPoint {
    /// Optimizer step (0 = before training).
    pub step: usize,
    /// Overall accuracy.
    pub overall: f64,
    /// Closed (yes/no) accuracy.
    pub closed: Option<f64>,
    /// Open accuracy.
    pub open: Option<f64>,
    /// Questions scored.
    pub questions: usize,
}

/// One example shown on the page (its image travels along as `sample-<i>`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    /// Question.
    pub question: String,
    /// Reference answer.
    pub answer: String,
}

/// Worker → page.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum FromWorker {
    /// The worker runs (sent before `Init`).
    Alive,
    /// The device is ready.
    Ready {
        /// The backend in use.
        backend: Backend,
        /// Adapter name and driver, or the CPU note.
        adapter: String,
        /// Largest buffer the device allows, bytes (WebGPU).
        max_buffer: Option<u64>,
        /// Largest storage-buffer binding, bytes (WebGPU).
        max_binding: Option<u64>,
    },
    /// Something is under way.
    Progress {
        /// What.
        what: String,
        /// Done so far.
        done: usize,
        /// Out of.
        total: usize,
    },
    /// A model is loaded.
    ModelLoaded {
        /// Name.
        name: String,
        /// Architecture.
        architecture: String,
        /// Parameters.
        params: usize,
        /// Per component: name and parameters.
        components: Vec<(String, usize)>,
    },
    /// Data is ready.
    DataLoaded {
        /// Training examples.
        train: usize,
        /// Test examples.
        test: usize,
        /// A few training examples.
        samples: Vec<Sample>,
        /// A few test examples to ask about (their images travel as `test-<i>`).
        test_samples: Vec<Sample>,
    },
    /// Training started.
    Started {
        /// peft's trainable line.
        trainable: String,
        /// Trainable parameters.
        trainable_params: usize,
        /// Micro-batches in the run.
        total_batches: usize,
        /// The run as run.toml (every setting, defaults included).
        spec: String,
    },
    /// One micro-batch done.
    Step {
        /// Optimizer step.
        step: usize,
        /// Micro-batches done.
        position: usize,
        /// Micro-batches in all.
        total: usize,
        /// Loss.
        loss: f32,
        /// Learning rate.
        lr: f64,
        /// Steps per second over the run so far.
        steps_per_s: f64,
        /// Examples per second.
        samples_per_s: f64,
        /// Milliseconds this step took.
        step_ms: f64,
        /// The worker's WebAssembly memory after the step, MiB. It only ever grows, so a leak
        /// in the training loop shows as growth over steps.
        wasm_mb: f64,
    },
    /// An evaluation finished.
    Eval(EvalPoint),
    /// Timed training steps ([`ToWorker::TimeSteps`]).
    StepTimes(StepTimes),
    /// Training paused / resumed / stopped / finished.
    State {
        /// `paused`, `running`, `stopped` or `finished`.
        state: String,
    },
    /// Answers to a question.
    Answer {
        /// The question.
        question: String,
        /// The base model's answer.
        base: String,
        /// The tuned model's answer (none before tuning or importing).
        tuned: Option<String>,
        /// The reference answer, for a test sample.
        reference: Option<String>,
    },
    /// The adapter folder (files travel along, plus `adapter.zip`).
    Exported {
        /// Names of the folder's files.
        files: Vec<String>,
    },
    /// An adapter was imported.
    Imported {
        /// Its `peft_type`.
        peft_type: String,
    },
    /// The models kept in the browser (after the device is set up, and after each change).
    Kept {
        /// The models.
        models: Vec<CachedModel>,
        /// Bytes this origin stores, as the browser estimates it.
        used: Option<f64>,
        /// Bytes this origin may store.
        quota: Option<f64>,
    },
    /// A request failed; the worker is still usable.
    Error {
        /// One line naming the file and field where there is one.
        message: String,
    },
    /// The worker hit a panic (e.g. the GPU device was lost) and must be restarted.
    Crashed {
        /// The panic message.
        message: String,
    },
}

/// Packs a message and its files into the JS object `postMessage` sends, with the list of
/// buffers to transfer.
pub fn encode<T: Serialize>(msg: &T, files: Files) -> (JsValue, js_sys::Array) {
    let obj = js_sys::Object::new();
    let json = serde_json::to_string(msg)
        .unwrap_or_else(|e| format!("{{\"type\":\"error\",\"message\":\"{e}\"}}"));
    let names = js_sys::Array::new();
    let blobs = js_sys::Array::new();
    let transfer = js_sys::Array::new();
    for (name, bytes) in files {
        let arr = js_sys::Uint8Array::from(bytes.as_slice());
        transfer.push(&arr.buffer());
        names.push(&JsValue::from_str(&name));
        blobs.push(&arr);
    }
    let _ = js_sys::Reflect::set(&obj, &"msg".into(), &JsValue::from_str(&json));
    let _ = js_sys::Reflect::set(&obj, &"names".into(), &names);
    let _ = js_sys::Reflect::set(&obj, &"blobs".into(), &blobs);
    (obj.into(), transfer)
}

/// Unpacks [`encode`]'s object.
pub fn decode<T: for<'de> Deserialize<'de>>(data: &JsValue) -> Result<(T, Files), String> {
    let get =
        |k: &str| js_sys::Reflect::get(data, &JsValue::from_str(k)).unwrap_or(JsValue::UNDEFINED);
    let json = get("msg")
        .as_string()
        .ok_or("a message without a `msg` field")?;
    let msg: T = serde_json::from_str(&json).map_err(|e| format!("a malformed message: {e}"))?;
    let mut files = Vec::new();
    let names = get("names");
    let blobs = get("blobs");
    if let (Some(names), Some(blobs)) = (
        names.dyn_ref::<js_sys::Array>(),
        blobs.dyn_ref::<js_sys::Array>(),
    ) {
        for (n, b) in names.iter().zip(blobs.iter()) {
            let bytes = js_sys::Uint8Array::new(&b).to_vec();
            files.push((n.as_string().unwrap_or_default(), bytes));
        }
    }
    Ok((msg, files))
}
