//! Asking: a test example, or an image the user drops or picks with a typed question; the base
//! and the tuned model answer side by side.

use super::{input_files, read_then};
use crate::bridge;
use crate::protocol::ToWorker;
use crate::state::AppState;
use leptos::prelude::*;

/// The ask panel.
#[component]
pub fn AskPanel() -> impl IntoView {
    let state = expect_context::<AppState>();
    let question = RwSignal::new(String::new());
    let image: RwSignal<Option<(String, String)>> = RwSignal::new(None); // (name, blob url)
    let bytes = StoredValue::new_local(None::<Vec<u8>>);
    let take = move |list: web_sys::FileList| {
        read_then(list, state, move |files| {
            if let Some((name, b)) = files.into_iter().next() {
                image.set(Some((name, bridge::blob_url(&b, "image/*"))));
                bytes.set_value(Some(b));
            }
        })
    };
    let ask = move |_| {
        let Some(b) = bytes.get_value() else {
            state
                .error
                .set(Some("drop or choose an image first".into()));
            return;
        };
        let name = image.get_untracked().map(|(n, _)| n).unwrap_or_default();
        bridge::send(
            ToWorker::Ask {
                question: question.get_untracked(),
            },
            vec![(name, b)],
        );
    };
    let ready = move || state.model.get().is_some();
    view! {
        <section id="ask">
            <h2>"5 · Ask"</h2>
            {move || state.data.get().map(|d| view! {
                <div class="samples">
                    {d.test_samples.into_iter().enumerate().map(|(i, s)| view! {
                        <figure>
                            <img src=s.url alt="test image" />
                            <figcaption>{s.sample.question}</figcaption>
                            <button class="ask-sample" id=format!("ask-sample-{i}")
                                on:click=move |_| bridge::send(ToWorker::AskSample { index: i }, Vec::new())>"Ask"</button>
                        </figure>
                    }).collect_view()}
                </div>
            })}
            <div class="drop" id="drop"
                on:dragover=move |ev: leptos::ev::DragEvent| ev.prevent_default()
                on:drop=move |ev: leptos::ev::DragEvent| {
                    ev.prevent_default();
                    if let Some(list) = ev.data_transfer().and_then(|d| d.files()) { take(list) }
                }>
                {move || match image.get() {
                    Some((name, url)) => view! { <img src=url alt=name.clone() /> <span>{name.clone()}</span> }.into_any(),
                    None => view! { <span>"Drop an image here (PNG, JPEG, DICOM) or "</span> }.into_any(),
                }}
                <input type="file" id="ask-image" on:change=move |ev| { if let Some(l) = input_files(&ev) { take(l) } } />
            </div>
            <div class="row">
                <input type="text" id="question" placeholder="is there a pleural effusion?" size="48"
                    prop:value=move || question.get() on:input=move |ev| question.set(event_target_value(&ev)) />
                <button id="ask-button" disabled=move || !ready() on:click=ask>"Ask"</button>
            </div>
            <table id="answers">
                <thead><tr><th>"question"</th><th>"base model"</th><th>"tuned"</th><th>"reference"</th></tr></thead>
                <tbody>
                    {move || state.answers.get().into_iter().map(|a| view! {
                        <tr>
                            <td>{a.question}</td>
                            <td class="base">{a.base}</td>
                            <td class="tuned">{a.tuned.unwrap_or_else(|| "(not tuned yet)".into())}</td>
                            <td>{a.reference.unwrap_or_default()}</td>
                        </tr>
                    }).collect_view()}
                </tbody>
            </table>
        </section>
    }
}
