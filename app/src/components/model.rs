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
            let keep = |n: &str| {
                n == "model.safetensors"
                    || normtune_core::models::folder::DESCRIPTION_FILES.contains(&n)
            };
            let files = files
                .into_iter()
                .filter(|(k, _)| k.rsplit('/').next().is_some_and(keep))
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
                <div class="row">
                    <button id="keep-model" on:click=move |_| bridge::send(ToWorker::KeepModel, Vec::new())>
                        "Keep this model in the browser"
                    </button>
                    <span class="note">"Stored in this browser's private file system for this site only (nothing is uploaded); load it on a later visit without picking the folder again."</span>
                </div>
            })}
            <KeptList />
        </section>
    }
}

/// The models kept in the browser: load or delete each; how much storage the site uses.
#[component]
fn KeptList() -> impl IntoView {
    let state = expect_context::<AppState>();
    let mb = |b: f64| format!("{:.1} MB", b / 1e6);
    view! {
        {move || state.kept.get().map(|k| {
            let usage = match (k.used, k.quota) {
                (Some(u), Some(q)) => format!("This site stores {} of the {} the browser allows it.", mb(u), mb(q)),
                _ => "The browser does not report this site's storage quota.".to_string(),
            };
            view! {
                <div id="kept">
                    <h3>"Kept in this browser"</h3>
                    {if k.models.is_empty() {
                        view! { <p class="note" id="kept-empty">"No model is kept."</p> }.into_any()
                    } else {
                        view! {
                            <ul>
                                {k.models.into_iter().map(|m| {
                                    let load_key = m.key.clone();
                                    let del_key = m.key.clone();
                                    let saved = js_sys::Date::new(&wasm_bindgen::JsValue::from_f64(m.saved_ms))
                                        .to_locale_string("en-GB", &wasm_bindgen::JsValue::UNDEFINED);
                                    view! {
                                        <li data-key=m.key.clone()>
                                            <strong>{m.name.clone()}</strong>
                                            {if m.complete {
                                                format!(" · {} in {} files · kept {}", mb(m.bytes as f64), m.files, String::from(saved))
                                            } else {
                                                " · incomplete (a write was cut short): delete it".to_string()
                                            }}
                                            " "
                                            <button class="load" disabled=move || !m.complete || state.device.get().is_none()
                                                on:click=move |_| bridge::send(ToWorker::LoadKeptModel { key: load_key.clone() }, Vec::new())>"Load"</button>
                                            " "
                                            <button class="delete"
                                                on:click=move |_| bridge::send(ToWorker::DeleteKeptModel { key: del_key.clone() }, Vec::new())>"Delete"</button>
                                        </li>
                                    }
                                }).collect_view()}
                            </ul>
                        }.into_any()
                    }}
                    <p class="note" id="storage-usage">{usage}</p>
                </div>
            }
        })}
    }
}

/// `1234567` → `1,234,567`.
pub fn thousands(n: usize) -> String {
    normtune_core::peft::report::thousands(n)
}
