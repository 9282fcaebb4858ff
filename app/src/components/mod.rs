//! One component per panel.

pub mod ask;
pub mod chart;
pub mod data;
pub mod device;
pub mod export;
pub mod model;
pub mod tune;

use crate::state::AppState;
use leptos::prelude::*;

/// The progress bar of whatever the worker is doing.
#[component]
pub fn Busy() -> impl IntoView {
    let state = expect_context::<AppState>();
    view! {
        <Show when=move || state.busy.get().is_some()>
            {move || {
                let (what, done, total) = state.busy.get().unwrap_or_default();
                view! {
                    <div class="busy">
                        <span>{what.clone()}</span>
                        <progress max=total value=done></progress>
                    </div>
                }
            }}
        </Show>
    }
}

/// The files an `<input type=file>` change event carries.
pub fn input_files(ev: &leptos::ev::Event) -> Option<web_sys::FileList> {
    use wasm_bindgen::JsCast;
    ev.target()?
        .dyn_into::<web_sys::HtmlInputElement>()
        .ok()?
        .files()
}

/// A `NodeRef` for a file input that picks a whole folder (`webkitdirectory`, which the view
/// macro has no attribute for).
pub fn folder_input() -> NodeRef<leptos::html::Input> {
    let r = NodeRef::<leptos::html::Input>::new();
    Effect::new(move || {
        if let Some(el) = r.get() {
            let _ = el.set_attribute("webkitdirectory", "");
        }
    });
    r
}
