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

/// A labelled number field bound to `value`. Input that does not parse, or lies outside
/// `min..=max`, keeps the last good value and marks the field invalid (with the reason as its
/// tooltip) instead of silently putting a default in its place.
#[component]
pub fn NumberInput<T>(
    id: &'static str,
    label: &'static str,
    value: RwSignal<T>,
    min: T,
    #[prop(optional)] max: Option<T>,
) -> impl IntoView
where
    T: std::str::FromStr + std::fmt::Display + PartialOrd + Copy + Send + Sync + 'static,
{
    let problem = RwSignal::new(None::<String>);
    let on_change = move |ev: leptos::ev::Event| {
        let raw = event_target_value(&ev);
        let checked = match raw.trim().parse::<T>() {
            Err(_) => Err(format!("`{raw}` is not a number")),
            Ok(v) if v < min => Err(format!("at least {min}")),
            Ok(v) if max.is_some_and(|m| v > m) => Err(format!("at most {}", max.unwrap())),
            Ok(v) => Ok(v),
        };
        match checked {
            Ok(v) => {
                value.set(v);
                problem.set(None);
            }
            Err(e) => problem.set(Some(format!(
                "{label}: {e}; keeping {}",
                value.get_untracked()
            ))),
        }
    };
    view! {
        <label>{label}" "
            <input type="number" id=id step="any" min=min.to_string() max=max.map(|m| m.to_string())
                class:invalid=move || problem.get().is_some()
                title=move || problem.get().unwrap_or_default()
                prop:value=move || value.get().to_string() on:change=on_change />
        </label>
    }
}

/// Reads `list` (with the progress bar) and hands the files to `then`; a read error goes to the
/// page's error bar.
pub fn read_then(
    list: web_sys::FileList,
    state: AppState,
    then: impl FnOnce(crate::protocol::Files) + 'static,
) {
    leptos::task::spawn_local(async move {
        match crate::bridge::read_files(list, state).await {
            Ok(files) => then(files),
            Err(e) => state.error.set(Some(e)),
        }
    });
}

/// [`read_then`] for the files an `<input type=file>` change event carries.
pub fn on_files(
    ev: &leptos::ev::Event,
    state: AppState,
    then: impl FnOnce(crate::protocol::Files) + 'static,
) {
    if let Some(list) = input_files(ev) {
        read_then(list, state, then);
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
