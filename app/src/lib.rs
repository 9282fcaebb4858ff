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

/// Runs the module's static constructors (its `.init_array`: the `inventory` registrations of
/// cubecl and burn, several hundred) once; both binaries invoke it first thing in `main`.
///
/// wasm-ld links a binary with a `main` as a "command" and, unless the module refers to
/// `__wasm_call_ctors` itself, wraps *every* export in a call to it (`….command_export`), on the
/// assumption that a command is entered once. A worker is entered thousands of times: each
/// resolved promise, message, closure and `externref` table slot is a call from JavaScript, and
/// each re-ran every constructor (`inventory` ignores a second registration, so only the time was
/// lost: 10 % of the one-thread CPU worker's profile, and 24 % of a core while idle, BENCHMARKS.md).
/// Referring to the symbol turns the wrapping off, for the whole module; so this is a macro, which
/// puts the reference in the binary that invokes it, not in this library: a binary that links the
/// library without invoking it (the wasm-bindgen-test component tests) keeps the wrapped exports
/// and with them its constructors. The flag keeps a second call (a rayon thread's worker entering
/// `main` on the shared memory) from running them again.
#[macro_export]
macro_rules! run_constructors_once {
    () => {{
        #[cfg(target_arch = "wasm32")]
        {
            use std::sync::atomic::{AtomicBool, Ordering};
            unsafe extern "C" {
                fn __wasm_call_ctors();
            }
            static DONE: AtomicBool = AtomicBool::new(false);
            if !DONE.swap(true, Ordering::SeqCst) {
                // SAFETY: wasm-ld's synthetic constructor runner, called once, before anything
                // reads what the constructors register.
                unsafe { __wasm_call_ctors() };
            }
        }
    }};
}
