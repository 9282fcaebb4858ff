//! rayon on Web Workers: the CPU backend's threads in the browser.
//!
//! Built only into the CPU backend's worker compiled with `+atomics` (www/cpu-worker.sh, a pinned
//! nightly's `build-std`): the worker's memory is then a `SharedArrayBuffer`, and each rayon
//! thread but the first is one more dedicated worker (`www/normtune-thread.js`) that instantiates
//! the same module on that same memory and runs one of rayon's `ThreadBuilder`s for good. The
//! first is the app's worker itself (`use_current_thread`): left outside the pool, it could only
//! hand work to a sleeping thread and wait, and every parallel op paid a cold wake-up (2 threads
//! were slower than 1; BENCHMARKS.md). burn's flex backend and gemm then split their work across
//! the threads exactly as they do natively.
//!
//! Order matters, as in wasm-bindgen-rayon (whose idea this is): a worker starts only once the
//! thread that created it returns to its event loop, and rayon's `build_global` blocks until every
//! thread has started. So the thread workers are started first and awaited until each has its
//! module running and is blocked waiting for a `ThreadBuilder`; only then is the pool built,
//! handing one builder to each.
//!
//! Shared memory needs a cross-origin isolated page (COOP `same-origin` + COEP `require-corp`);
//! `trunk serve` sets both (www/Trunk.toml), and static hosts must too (www/README.md).

use rayon::ThreadBuilder;
use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Mutex, OnceLock};
use wasm_bindgen::prelude::*;

/// Builders travel from `build_global`'s spawn handler to the waiting thread workers.
static HANDOFF: OnceLock<(Mutex<Sender<ThreadBuilder>>, Mutex<Receiver<ThreadBuilder>>)> =
    OnceLock::new();

fn handoff() -> &'static (Mutex<Sender<ThreadBuilder>>, Mutex<Receiver<ThreadBuilder>>) {
    HANDOFF.get_or_init(|| {
        let (tx, rx) = channel();
        (Mutex::new(tx), Mutex::new(rx))
    })
}

/// Run by `normtune-thread.js` once the module is instantiated on the shared memory: waits for
/// this thread's `ThreadBuilder` and runs rayon's worker loop on it (it never returns).
#[wasm_bindgen]
pub fn normtune_thread_main() {
    let builder = handoff().1.lock().ok().and_then(|rx| rx.recv().ok());
    if let Some(builder) = builder {
        builder.run();
    }
}

/// True when this instance runs in one of the thread workers (which must not start the app's
/// message loop): `normtune-thread.js` sets `self.normtuneThread` before instantiating.
pub fn is_thread_worker() -> bool {
    crate::bridge::global_flag("normtuneThread")
}

/// Builds rayon's global pool of `n` ≥ 2 threads: this worker and `n - 1` thread workers, started
/// and awaited until each is ready first. Returns the pool's size; on any failure (no
/// `SharedArrayBuffer`, a worker that cannot start) the error says why, and rayon is left to run
/// everything on the calling thread.
pub async fn start(n: usize) -> Result<usize, String> {
    if !crate::bridge::cross_origin_isolated() {
        return Err(
            "the page is not cross-origin isolated (COOP/COEP headers), so no shared memory".into(),
        );
    }
    let module = wasm_bindgen::module();
    let memory = wasm_bindgen::memory();
    // The calling worker is thread 0 of the pool (`use_current_thread`); n - 1 more are started.
    let mut ready = Vec::with_capacity(n - 1);
    for i in 1..n {
        let opts = web_sys::WorkerOptions::new();
        opts.set_name(&format!("normtune rayon thread {i}"));
        let worker = web_sys::Worker::new_with_options("./normtune-thread.js", &opts)
            .map_err(|e| format!("thread worker {i} could not start: {e:?}"))?;
        let w = worker.clone();
        // Resolves on the worker's first message ("ready"), rejects on its error event.
        let p = js_sys::Promise::new(&mut |resolve, reject| {
            w.set_onmessage(Some(&resolve));
            w.set_onerror(Some(&reject));
        });
        let msg = js_sys::Array::of2(&module, &memory);
        worker
            .post_message(&msg)
            .map_err(|e| format!("thread worker {i}: {e:?}"))?;
        ready.push((worker, p));
    }
    for (i, (worker, p)) in (1..).zip(ready) {
        wasm_bindgen_futures::JsFuture::from(p).await.map_err(|e| {
            let msg = js_sys::Reflect::get(&e, &JsValue::from_str("message"))
                .ok()
                .and_then(|m| m.as_string())
                .unwrap_or_else(|| format!("{e:?}"));
            format!("thread worker {i} failed to start: {msg}")
        })?;
        worker.set_onmessage(None);
        worker.set_onerror(None);
        // The worker object must outlive this function; the thread runs for the page's life.
        std::mem::forget(worker);
    }
    rayon::ThreadPoolBuilder::new()
        .num_threads(n)
        .use_current_thread()
        .thread_name(|i| format!("normtune rayon thread {i}"))
        .spawn_handler(|thread| {
            handoff()
                .0
                .lock()
                .map_err(|_| std::io::Error::other("the thread hand-off lock is poisoned"))?
                .send(thread)
                .map_err(|_| std::io::Error::other("no thread worker is waiting"))
        })
        .build_global()
        .map_err(|e| format!("rayon's pool could not be built: {e}"))?;
    Ok(rayon::current_num_threads())
}
