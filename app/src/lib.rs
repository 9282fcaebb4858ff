//! normtune in the browser. The page (`main.rs` → [`ui::App`]) is Leptos only; every model
//! operation runs in a Web Worker (`bin/normtune-worker.rs` → [`worker::start`]) on
//! normtune-core, the same code the CLI runs. They talk through [`protocol`].

pub mod bridge;
pub mod cache;
pub mod components;
pub mod protocol;
pub mod state;
#[cfg(target_feature = "atomics")]
pub mod threads;
pub mod ui;
pub mod worker;
