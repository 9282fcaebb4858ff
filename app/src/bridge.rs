//! The page's side of the worker: starting it, sending requests (files are transferred, not
//! copied), turning its messages into state, reading the user's files, blob URLs for downloads.

use crate::protocol::{Backend, Files, FromWorker, ToWorker, decode, encode};
use crate::state::AppState;
use leptos::prelude::*;
use std::cell::RefCell;
use wasm_bindgen::prelude::*;
use web_sys::{Worker, WorkerOptions};

/// The script trunk's loader shim writes for the worker binary.
pub const WORKER_SCRIPT: &str = "./normtune-worker_loader.js";

/// The CPU backend's threaded worker (www/cpu-worker.sh: the same worker binary without WebGPU,
/// built with WebAssembly threads), used on a cross-origin isolated page.
pub const CPU_WORKER_SCRIPT: &str = "./normtune-cpu-worker_loader.js";

/// Whether the global object (page or worker) has a truthy property `name`.
pub fn global_flag(name: &str) -> bool {
    js_sys::Reflect::get(&js_sys::global(), &JsValue::from_str(name))
        .map(|v| v.is_truthy())
        .unwrap_or(false)
}

/// Whether this page or worker may share memory between workers (served with COOP and COEP).
pub fn cross_origin_isolated() -> bool {
    global_flag("crossOriginIsolated")
}

/// The worker script for `backend`: the CPU gets rayon's threads where the page allows them.
pub fn worker_script(backend: Backend) -> &'static str {
    if backend == Backend::Cpu && cross_origin_isolated() {
        CPU_WORKER_SCRIPT
    } else {
        WORKER_SCRIPT
    }
}

struct Handle {
    worker: Worker,
    alive: bool,
    /// Requests sent before the worker listens.
    pending: Vec<(ToWorker, Files)>,
    _on_message: Closure<dyn FnMut(web_sys::MessageEvent)>,
    _on_error: Closure<dyn FnMut(web_sys::ErrorEvent)>,
}

thread_local! {
    static WORKER: RefCell<Option<Handle>> = const { RefCell::new(None) };
}

/// Starts a fresh worker on `backend` (ending the previous one and its state).
pub fn start(state: AppState, backend: Backend) {
    stop();
    state.reset_worker_state();
    state.crashed.set(None);
    state.error.set(None);
    state.backend.set(Some(backend));
    let opts = WorkerOptions::new();
    let worker = match Worker::new_with_options(worker_script(backend), &opts) {
        Ok(w) => w,
        Err(e) => {
            state
                .crashed
                .set(Some(format!("the worker could not start: {e:?}")));
            return;
        }
    };
    let on_message =
        Closure::<dyn FnMut(web_sys::MessageEvent)>::new(move |ev: web_sys::MessageEvent| {
            match decode::<FromWorker>(&ev.data()) {
                Ok((FromWorker::Alive, _)) => flush(),
                Ok((msg, files)) => state.apply(msg, files),
                Err(e) => state.error.set(Some(e)),
            }
        });
    let on_error =
        Closure::<dyn FnMut(web_sys::ErrorEvent)>::new(move |ev: web_sys::ErrorEvent| {
            state.crashed.set(Some(format!(
                "the worker stopped: {}",
                if ev.message().is_empty() {
                    "it could not load (see the browser console)".to_string()
                } else {
                    ev.message()
                }
            )));
        });
    worker.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
    worker.set_onerror(Some(on_error.as_ref().unchecked_ref()));
    WORKER.with(|w| {
        *w.borrow_mut() = Some(Handle {
            worker,
            alive: false,
            pending: vec![(ToWorker::Init { backend }, Vec::new())],
            _on_message: on_message,
            _on_error: on_error,
        })
    });
}

/// Ends the worker, if any.
pub fn stop() {
    WORKER.with(|w| {
        if let Some(h) = w.borrow_mut().take() {
            h.worker.terminate();
        }
    });
}

fn flush() {
    WORKER.with(|w| {
        if let Some(h) = w.borrow_mut().as_mut() {
            h.alive = true;
            for (msg, files) in std::mem::take(&mut h.pending) {
                let (v, t) = encode(&msg, files);
                let _ = h.worker.post_message_with_transfer(&v, &t);
            }
        }
    });
}

/// Sends a request with its files.
pub fn send(msg: ToWorker, files: Files) {
    WORKER.with(|w| match w.borrow_mut().as_mut() {
        Some(h) if h.alive => {
            let (v, t) = encode(&msg, files);
            let _ = h.worker.post_message_with_transfer(&v, &t);
        }
        Some(h) => h.pending.push((msg, files)),
        None => {}
    });
}

/// A `blob:` URL holding `bytes`.
pub fn blob_url(bytes: &[u8], mime: &str) -> String {
    let parts = js_sys::Array::new();
    parts.push(&js_sys::Uint8Array::from(bytes));
    let opts = web_sys::BlobPropertyBag::new();
    opts.set_type(mime);
    web_sys::Blob::new_with_u8_array_sequence_and_options(&parts, &opts)
        .ok()
        .and_then(|b| web_sys::Url::create_object_url_with_blob(&b).ok())
        .unwrap_or_default()
}

/// Reads the chosen or dropped files (names relative to a chosen folder), reporting progress.
pub async fn read_files(list: web_sys::FileList, state: AppState) -> Result<Files, String> {
    let files: Vec<web_sys::File> = (0..list.length()).filter_map(|i| list.get(i)).collect();
    let total: f64 = files.iter().map(|f| f.size()).sum();
    let mut done = 0.0;
    let mut out = Vec::with_capacity(files.len());
    for f in files {
        let rel = js_sys::Reflect::get(&f, &"webkitRelativePath".into())
            .ok()
            .and_then(|v| v.as_string())
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| f.name());
        let buf = wasm_bindgen_futures::JsFuture::from(f.array_buffer())
            .await
            .map_err(|e| format!("{rel}: cannot be read: {e:?}"))?;
        out.push((rel, js_sys::Uint8Array::new(&buf).to_vec()));
        done += f.size();
        state.busy.set(Some((
            "reading files".into(),
            (done / 1024.0) as usize,
            (total / 1024.0).max(1.0) as usize,
        )));
    }
    state.busy.set(None);
    Ok(out)
}

/// Whether the browser exposes WebGPU at all (`navigator.gpu`).
pub fn webgpu_present() -> bool {
    web_sys::window()
        .and_then(|w| js_sys::Reflect::get(&w.navigator(), &"gpu".into()).ok())
        .is_some_and(|g| !g.is_undefined() && !g.is_null())
}
