//! The adapter: export (the CLI's peft-compatible folder, as a zip and as files) and import.

use super::on_files;
use crate::bridge;
use crate::protocol::ToWorker;
use crate::state::AppState;
use leptos::prelude::*;

/// The export panel.
#[component]
pub fn ExportPanel() -> impl IntoView {
    let state = expect_context::<AppState>();
    let tuned = move || {
        !state.evals.get().iter().all(|e| e.step == 0)
            || matches!(
                state.run_state.get().as_str(),
                "stopped" | "finished" | "paused"
            )
    };
    let on_import = move |ev: leptos::ev::Event| {
        on_files(&ev, state, |files| {
            bridge::send(ToWorker::ImportAdapter, files)
        })
    };
    view! {
        <section id="export">
            <h2>"6 · Adapter"</h2>
            <div class="row">
                <button id="export-button" disabled=move || !tuned()
                    on:click=move |_| bridge::send(ToWorker::Export, Vec::new())>"Export the adapter"</button>
                <span class="note">"The same folder `normtune train` writes (HF peft format where peft has one): "
                    <code>"normtune infer --model DIR --adapter ADAPTER_DIR"</code> " uses it."</span>
            </div>
            <ul id="downloads">
                {move || state.exported.get().into_iter().map(|(name, url)| view! {
                    <li><a href=url download=name.clone() id=format!("download-{}", name.replace('.', "-"))>{name.clone()}</a></li>
                }).collect_view()}
            </ul>
            <div class="row">
                <label class="file">"Import an adapter (its folder's two files, or its zip): "
                    <input type="file" id="import-adapter" multiple=true disabled=move || state.model.get().is_none() on:change=on_import />
                </label>
                {move || state.imported.get().map(|t| view! { <span id="imported">{format!("imported a {t} adapter: answers now compare it with the base model")}</span> })}
            </div>
        </section>
    }
}
