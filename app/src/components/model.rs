//! The model: the bundled demo base model, or a HF folder from disk.

use super::{Busy, on_files};
use crate::bridge;
use crate::protocol::ToWorker;
use crate::state::AppState;
use leptos::prelude::*;

/// The model panel.
#[component]
pub fn ModelPanel() -> impl IntoView {
    let state = expect_context::<AppState>();
    let ready = move || state.device.get().is_some();
    let on_folder = move |ev: leptos::ev::Event| {
        on_files(&ev, state, |files| {
            let name = files
                .first()
                .and_then(|(k, _)| k.split_once('/').map(|(top, _)| top.to_string()))
                .unwrap_or_else(|| "model".into());
            // Only what a model folder needs crosses to the worker.
            let keep = [
                "config.json",
                "model.safetensors",
                "tokenizer.json",
                "vocab.txt",
                "preprocessor_config.json",
            ];
            let files = files
                .into_iter()
                .filter(|(k, _)| keep.iter().any(|n| k.rsplit('/').next() == Some(*n)))
                .collect();
            bridge::send(ToWorker::LoadModel { name }, files);
        })
    };
    let model_folder = super::folder_input();
    view! {
        <section id="model">
            <h2>"2 · Model"</h2>
            <div class="row">
                <button id="load-demo" disabled=move || !ready()
                    on:click=move |_| bridge::send(ToWorker::LoadDemoModel, Vec::new())>
                    "Load the demo model (2.5M parameters, bundled)"
                </button>
                <label class="file">
                    "or a HF model folder: "
                    <input type="file" id="model-folder" node_ref=model_folder multiple=true
                        disabled=move || !ready() on:change=on_folder />
                </label>
            </div>
            <p class="note">
                "A folder with config.json, model.safetensors and tokenizer.json or vocab.txt "
                "(BlipForQuestionAnswering). It is read into this tab's memory only."
            </p>
            <Busy />
            {move || state.model.get().map(|m| view! {
                <p id="model-info">
                    <strong>{m.name.clone()}</strong>
                    {format!(" · {} · {} parameters (", m.architecture, thousands(m.params))}
                    {m.components.iter().map(|(c, n)| format!("{c} {}", thousands(*n))).collect::<Vec<_>>().join(", ")}
                    ")"
                </p>
            })}
        </section>
    }
}

/// `1234567` → `1,234,567`.
pub fn thousands(n: usize) -> String {
    normtune_core::peft::report::thousands(n)
}
