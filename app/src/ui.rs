//! The root component: starts the worker on WebGPU when the browser has it (else on the CPU,
//! saying so) and lays out one panel per step.

use crate::bridge;
use crate::components::{
    ask::AskPanel, data::DataPanel, device::DevicePanel, export::ExportPanel, model::ModelPanel,
    tune::TunePanel,
};
use crate::protocol::Backend;
use crate::state::AppState;
use leptos::prelude::*;

/// The app.
#[component]
pub fn App() -> impl IntoView {
    let state = AppState::new();
    provide_context(state);
    let present = bridge::webgpu_present();
    state.webgpu_present.set(present);
    bridge::start(
        state,
        if present {
            Backend::Webgpu
        } else {
            Backend::Cpu
        },
    );
    view! {
        <header>
            <h1>"normtune"</h1>
            <p class="tagline">
                "Fine-tune a medical vision-language model by training only its LayerNorm layers, in this tab. "
                "Your images never leave this computer: nothing is uploaded, nothing is stored unless you keep a model or download an adapter."
            </p>
        </header>
        <main>
            <ErrorBar />
            <DevicePanel />
            <ModelPanel />
            <DataPanel />
            <TunePanel />
            <AskPanel />
            <ExportPanel />
        </main>
    }
}

/// Errors and crashes, in place, with a way to continue.
#[component]
fn ErrorBar() -> impl IntoView {
    let state = expect_context::<AppState>();
    view! {
        <Show when=move || state.error.get().is_some()>
            <div class="error" id="error" role="alert">
                <span>{move || state.error.get().unwrap_or_default()}</span>
                <button on:click=move |_| state.error.set(None)>"Dismiss"</button>
            </div>
        </Show>
        <Show when=move || state.crashed.get().is_some()>
            <div class="error crashed" id="crashed" role="alert">
                <p>
                    <strong>"The computation stopped: "</strong>
                    {move || state.crashed.get().unwrap_or_default()}
                </p>
                <p>
                    "This happens when the GPU device is lost or runs out of memory. Start again with a "
                    "smaller batch size, or on the CPU:"
                </p>
                <button on:click=move |_| {
                    let b = state.backend.get_untracked().unwrap_or(Backend::Cpu);
                    bridge::start(state, b)
                }>"Restart on the same backend"</button>
                <button on:click=move |_| bridge::start(state, Backend::Cpu)>"Restart on the CPU"</button>
            </div>
        </Show>
    }
}
