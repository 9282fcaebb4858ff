//! The page's state: one set of signals, provided by context, changed by the worker's messages.

use crate::protocol::{Backend, CachedModel, EvalPoint, Files, FromWorker, Sample, StepTimes};
use leptos::prelude::*;

/// A model as the page shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelInfo {
    /// Name.
    pub name: String,
    /// Architecture.
    pub architecture: String,
    /// Parameters.
    pub params: usize,
    /// Per component.
    pub components: Vec<(String, usize)>,
}

/// An example shown on the page, its image as a blob URL.
#[derive(Debug, Clone, PartialEq)]
pub struct Shown {
    /// Question and answer.
    pub sample: Sample,
    /// `blob:` URL of its image.
    pub url: String,
}

/// Loaded data as the page shows it.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct DataInfo {
    /// Training examples.
    pub train: usize,
    /// Test examples.
    pub test: usize,
    /// A few training examples.
    pub samples: Vec<Shown>,
    /// A few test examples.
    pub test_samples: Vec<Shown>,
}

/// One answered question.
#[derive(Debug, Clone, PartialEq)]
pub struct AnswerRow {
    /// Question.
    pub question: String,
    /// Base model.
    pub base: String,
    /// Tuned model.
    pub tuned: Option<String>,
    /// Reference, for test examples.
    pub reference: Option<String>,
}

/// Speed of the run.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Speed {
    /// Steps per second.
    pub steps_per_s: f64,
    /// Examples per second.
    pub samples_per_s: f64,
    /// Last step, ms.
    pub step_ms: f64,
}

/// Every signal of the page.
#[derive(Clone, Copy)]
pub struct AppState {
    /// Whether `navigator.gpu` exists.
    pub webgpu_present: RwSignal<bool>,
    /// The backend the worker uses (or was asked to use).
    pub backend: RwSignal<Option<Backend>>,
    /// The device line once ready.
    pub device: RwSignal<Option<String>>,
    /// WebGPU limits (max buffer, max binding), bytes.
    pub limits: RwSignal<Option<(u64, u64)>>,
    /// Work under way: what, done, total.
    pub busy: RwSignal<Option<(String, usize, usize)>>,
    /// The last error (the worker is still usable).
    pub error: RwSignal<Option<String>>,
    /// The worker crashed (must be restarted).
    pub crashed: RwSignal<Option<String>>,
    /// The loaded model.
    pub model: RwSignal<Option<ModelInfo>>,
    /// The loaded data.
    pub data: RwSignal<Option<DataInfo>>,
    /// `idle`, `starting`, `running`, `paused`, `stopped`, `finished`.
    pub run_state: RwSignal<String>,
    /// peft's trainable line.
    pub trainable: RwSignal<Option<String>>,
    /// The running run as run.toml.
    pub spec: RwSignal<Option<String>>,
    /// (micro-batch position, loss).
    pub losses: RwSignal<Vec<(usize, f32)>>,
    /// (micro-batch position, the worker's WebAssembly memory in MiB).
    pub memory: RwSignal<Vec<(usize, f64)>>,
    /// Evaluations, the zero-shot one first.
    pub evals: RwSignal<Vec<EvalPoint>>,
    /// Speed.
    pub speed: RwSignal<Option<Speed>>,
    /// (done, total) micro-batches.
    pub position: RwSignal<(usize, usize)>,
    /// Answers, newest first.
    pub answers: RwSignal<Vec<AnswerRow>>,
    /// Exported files: (name, blob URL).
    pub exported: RwSignal<Vec<(String, String)>>,
    /// The imported adapter's type.
    pub imported: RwSignal<Option<String>>,
    /// Models kept in the browser, with the origin's (used, quota) bytes when the browser says.
    pub kept: RwSignal<Option<KeptModels>>,
    /// The last "Time a step" result; `Some(None)` while one runs.
    pub step_times: RwSignal<Option<Option<StepTimes>>>,
}

/// The models kept in the browser's private file system.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct KeptModels {
    /// The models.
    pub models: Vec<CachedModel>,
    /// Bytes the origin stores.
    pub used: Option<f64>,
    /// Bytes it may store.
    pub quota: Option<f64>,
}

impl AppState {
    /// Fresh signals.
    pub fn new() -> Self {
        Self {
            webgpu_present: RwSignal::new(false),
            backend: RwSignal::new(None),
            device: RwSignal::new(None),
            limits: RwSignal::new(None),
            busy: RwSignal::new(None),
            error: RwSignal::new(None),
            crashed: RwSignal::new(None),
            model: RwSignal::new(None),
            data: RwSignal::new(None),
            run_state: RwSignal::new("idle".into()),
            trainable: RwSignal::new(None),
            spec: RwSignal::new(None),
            losses: RwSignal::new(Vec::new()),
            memory: RwSignal::new(Vec::new()),
            evals: RwSignal::new(Vec::new()),
            speed: RwSignal::new(None),
            position: RwSignal::new((0, 0)),
            answers: RwSignal::new(Vec::new()),
            exported: RwSignal::new(Vec::new()),
            imported: RwSignal::new(None),
            kept: RwSignal::new(None),
            step_times: RwSignal::new(None),
        }
    }

    /// Forgets everything the worker held (a new worker starts empty).
    pub fn reset_worker_state(&self) {
        self.device.set(None);
        self.limits.set(None);
        self.busy.set(None);
        self.model.set(None);
        self.data.set(None);
        self.run_state.set("idle".into());
        self.trainable.set(None);
        self.losses.set(Vec::new());
        self.memory.set(Vec::new());
        self.evals.set(Vec::new());
        self.speed.set(None);
        self.position.set((0, 0));
        self.exported.set(Vec::new());
        self.imported.set(None);
        self.kept.set(None);
        self.step_times.set(None);
    }

    /// Applies one message from the worker.
    pub fn apply(&self, msg: FromWorker, files: Files) {
        let url_of = |name: &str| {
            files
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| crate::bridge::blob_url(v, "image/png"))
                .unwrap_or_default()
        };
        match msg {
            FromWorker::Alive => {}
            FromWorker::Ready {
                backend,
                adapter,
                max_buffer,
                max_binding,
            } => {
                self.backend.set(Some(backend));
                self.device.set(Some(adapter));
                self.limits.set(max_buffer.zip(max_binding));
            }
            FromWorker::Progress { what, done, total } => {
                self.busy.set((done < total).then_some((what, done, total)));
            }
            FromWorker::ModelLoaded {
                name,
                architecture,
                params,
                components,
            } => {
                self.error.set(None);
                self.model.set(Some(ModelInfo {
                    name,
                    architecture,
                    params,
                    components,
                }));
            }
            FromWorker::DataLoaded {
                train,
                test,
                samples,
                test_samples,
            } => {
                self.busy.set(None);
                self.error.set(None);
                let shown = |prefix: &str, v: Vec<Sample>| {
                    v.into_iter()
                        .enumerate()
                        .map(|(i, sample)| Shown {
                            url: url_of(&format!("{prefix}-{i}")),
                            sample,
                        })
                        .collect()
                };
                self.data.set(Some(DataInfo {
                    train,
                    test,
                    samples: shown("sample", samples),
                    test_samples: shown("test", test_samples),
                }));
            }
            FromWorker::Started {
                trainable,
                total_batches,
                spec,
                ..
            } => {
                self.error.set(None);
                self.trainable.set(Some(trainable));
                self.spec.set(Some(spec));
                self.losses.set(Vec::new());
                self.memory.set(Vec::new());
                self.evals.set(Vec::new());
                self.speed.set(None);
                self.exported.set(Vec::new());
                self.imported.set(None);
                self.position.set((0, total_batches));
            }
            FromWorker::Step {
                position,
                total,
                loss,
                steps_per_s,
                samples_per_s,
                step_ms,
                wasm_mb,
                ..
            } => {
                self.busy.set(None);
                self.losses.update(|l| l.push((position, loss)));
                self.memory.update(|m| m.push((position, wasm_mb)));
                self.position.set((position, total));
                self.speed.set(Some(Speed {
                    steps_per_s,
                    samples_per_s,
                    step_ms,
                }));
            }
            FromWorker::Eval(p) => {
                self.busy.set(None);
                self.evals.update(|e| e.push(p));
            }
            FromWorker::State { state } => {
                self.busy.set(None);
                self.run_state.set(state);
            }
            FromWorker::Answer {
                question,
                base,
                tuned,
                reference,
            } => {
                self.busy.set(None);
                self.error.set(None);
                self.answers.update(|a| {
                    a.insert(
                        0,
                        AnswerRow {
                            question,
                            base,
                            tuned,
                            reference,
                        },
                    )
                });
            }
            FromWorker::Exported { .. } => {
                self.busy.set(None);
                let links = files
                    .iter()
                    .map(|(k, v)| {
                        let mime = if k.ends_with(".json") {
                            "application/json"
                        } else {
                            "application/octet-stream"
                        };
                        (k.clone(), crate::bridge::blob_url(v, mime))
                    })
                    .collect();
                self.exported.set(links);
            }
            FromWorker::Imported { peft_type } => {
                self.busy.set(None);
                self.error.set(None);
                self.imported.set(Some(peft_type));
            }
            FromWorker::Kept {
                models,
                used,
                quota,
            } => {
                // After a keep or delete that failed, its error follows this message.
                self.error.set(None);
                self.kept.set(Some(KeptModels {
                    models,
                    used,
                    quota,
                }));
            }
            FromWorker::StepTimes(t) => {
                self.busy.set(None);
                self.step_times.set(Some(Some(t)));
            }
            FromWorker::Error { message } => {
                self.busy.set(None);
                if self.step_times.get_untracked() == Some(None) {
                    self.step_times.set(None);
                }
                self.error.set(Some(message));
                // A start the worker refused (bad settings, no model) never ran: the page can
                // start again.
                if self.run_state.get_untracked() == "starting" {
                    self.run_state.set("idle".into());
                }
            }
            FromWorker::Crashed { message } => {
                self.busy.set(None);
                self.crashed.set(Some(message));
                if matches!(
                    self.run_state.get_untracked().as_str(),
                    "running" | "paused" | "starting"
                ) {
                    self.run_state.set("stopped".into());
                }
            }
        }
    }
}

impl Default for AppState {
    fn default() -> Self {
        Self::new()
    }
}
