//! Which device computes: WebGPU (adapter and limits shown) or the CPU, switchable.

use crate::bridge;
use crate::protocol::Backend;
use crate::state::AppState;
use leptos::prelude::*;

/// The device panel.
#[component]
pub fn DevicePanel() -> impl IntoView {
    let state = expect_context::<AppState>();
    let mb = |b: u64| format!("{} MB", b / 1_000_000);
    view! {
        <section id="device">
            <h2>"1 · Device"</h2>
            <p id="device-status">
                {move || match (state.backend.get(), state.device.get()) {
                    (Some(b), Some(d)) => format!("{}: {d}", b.label()),
                    (Some(b), None) => format!("{}: starting…", b.label()),
                    _ => "starting…".to_string(),
                }}
            </p>
            <Show when=move || state.limits.get().is_some()>
                <p class="note">
                    {move || {
                        let (buf, bind) = state.limits.get().unwrap_or_default();
                        format!("Largest buffer {}, largest storage binding {}.", mb(buf), mb(bind))
                    }}
                </p>
            </Show>
            <Show when=move || !state.webgpu_present.get()>
                <p class="note" id="no-webgpu">
                    "This browser does not expose WebGPU, so normtune runs on the CPU (burn's flex backend "
                    "compiled to WebAssembly, one thread per core where the page is cross-origin isolated): "
                    "correct, but several times slower. "
                    "Chrome or Edge 113+ (or Firefox/Safari with WebGPU enabled) use the GPU."
                </p>
            </Show>
            <div class="row">
                <button id="use-webgpu"
                    disabled=move || !state.webgpu_present.get() || state.backend.get() == Some(Backend::Webgpu)
                    on:click=move |_| bridge::start(state, Backend::Webgpu)>"Use WebGPU"</button>
                <button id="use-cpu"
                    disabled=move || state.backend.get() == Some(Backend::Cpu)
                    on:click=move |_| bridge::start(state, Backend::Cpu)>"Use the CPU"</button>
                <span class="note">"Switching starts a fresh worker: load the model and data again."</span>
            </div>
        </section>
    }
}
