//! The data: the built-in benchmark's shifted domain, or the user's folder / zip of images with
//! a VQA-RAD, SLAKE, PathVQA or JSONL file.

use super::{Busy, NumberInput, on_files};
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
    let on_data_files = move |ev: leptos::ev::Event| {
        on_files(&ev, state, move |files| {
            let format = format.get_untracked();
            bridge::send(ToWorker::LoadData(DataChoice::Files { format }), files)
        })
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
                <NumberInput id="studies" label="studies" value=studies min=1usize max=2000 />
                <NumberInput id="test-studies" label="test studies" value=test_studies min=1usize max=500 />
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
                    <input type="file" id="data-folder" node_ref=data_folder multiple=true disabled=move || !ready() on:change=on_data_files />
                </label>
                <label class="file">"or zip "
                    <input type="file" id="data-zip" accept=".zip" disabled=move || !ready() on:change=on_data_files />
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
