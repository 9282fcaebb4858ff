//! The data: the built-in benchmark's shifted domain, or the user's folder / zip of images with
//! a VQA-RAD, SLAKE, PathVQA or JSONL file.

use super::{Busy, input_files};
use crate::bridge;
use crate::protocol::{DataChoice, ToWorker};
use crate::state::AppState;
use leptos::prelude::*;

/// The data panel.
#[component]
pub fn DataPanel() -> impl IntoView {
    let state = expect_context::<AppState>();
    let domain = RwSignal::new("scanner-b".to_string());
    let studies = RwSignal::new(48usize);
    let test_studies = RwSignal::new(8usize);
    let format = RwSignal::new("jsonl".to_string());
    let ready = move || state.model.get().is_some();
    let draw = move |_| {
        bridge::send(
            ToWorker::LoadData(DataChoice::Benchmark {
                domain: domain.get_untracked(),
                studies: studies.get_untracked(),
                test_studies: test_studies.get_untracked(),
                seed: 1,
            }),
            Vec::new(),
        )
    };
    let on_files = move |ev: leptos::ev::Event| {
        let Some(list) = input_files(&ev) else { return };
        leptos::task::spawn_local(async move {
            match bridge::read_files(list, state).await {
                Ok(files) => bridge::send(
                    ToWorker::LoadData(DataChoice::Files {
                        format: format.get_untracked(),
                    }),
                    files,
                ),
                Err(e) => state.error.set(Some(e)),
            }
        });
    };
    let data_folder = super::folder_input();
    view! {
        <section id="data">
            <h2>"3 · Data"</h2>
            <div class="row">
                <label>"Benchmark domain "
                    <select id="domain" on:change=move |ev| domain.set(event_target_value(&ev))>
                        <option value="scanner-b" selected=true>"scanner-b (low contrast, noise, blur, new wording)"</option>
                        <option value="inverted">"inverted (polarity, new wording)"</option>
                        <option value="lowres">"lowres (32 px)"</option>
                        <option value="new-finding">"new-finding (a finding never seen)"</option>
                    </select>
                </label>
                <label>"studies "
                    <input type="number" id="studies" min="1" max="2000" prop:value=move || studies.get().to_string()
                        on:change=move |ev| studies.set(event_target_value(&ev).parse().unwrap_or(48)) />
                </label>
                <label>"test studies "
                    <input type="number" id="test-studies" min="1" max="500" prop:value=move || test_studies.get().to_string()
                        on:change=move |ev| test_studies.set(event_target_value(&ev).parse().unwrap_or(8)) />
                </label>
                <button id="draw-data" disabled=move || !ready() on:click=draw>"Draw the benchmark"</button>
            </div>
            <div class="row">
                <label>"or your own: format "
                    <select id="format" on:change=move |ev| format.set(event_target_value(&ev))>
                        <option value="jsonl" selected=true>"JSONL (image, question, answer, answer_type)"</option>
                        <option value="vqa-rad">"VQA-RAD"</option>
                        <option value="slake">"SLAKE"</option>
                        <option value="path-vqa">"PathVQA"</option>
                    </select>
                </label>
                <label class="file">"folder "
                    <input type="file" id="data-folder" node_ref=data_folder multiple=true disabled=move || !ready() on:change=on_files />
                </label>
                <label class="file">"or zip "
                    <input type="file" id="data-zip" accept=".zip" disabled=move || !ready() on:change=on_files />
                </label>
            </div>
            <p class="note">"Images: PNG, JPEG or DICOM. One annotation file is split 4:1 into train and test; files named …train… and …test… are used as they are."</p>
            <Busy />
            {move || state.data.get().map(|d| view! {
                <p id="data-info">{format!("{} training and {} test questions.", d.train, d.test)}</p>
                <div class="samples">
                    {d.samples.into_iter().map(|s| view! {
                        <figure>
                            <img src=s.url alt="training image" />
                            <figcaption>{s.sample.question} " → " <strong>{s.sample.answer}</strong></figcaption>
                        </figure>
                    }).collect_view()}
                </div>
            })}
        </section>
    }
}
