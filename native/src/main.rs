//! `normtune`: fine-tune and run medical vision-language models from the command line.

mod cli;
mod cmd;
mod config;
mod fs;
mod plot;
mod sys;

use clap::Parser;
use std::sync::OnceLock;

/// The first panic on a thread other than main: burn's device threads catch their panics (a
/// wgpu validation error such as a buffer over the device's limit) and fail the operations that
/// follow, so the error main reports is often a consequence; this is the cause.
static THREAD_PANIC: OnceLock<String> = OnceLock::new();

fn main() -> std::process::ExitCode {
    keep_freed_memory();
    quiet_panics();
    let _pool = join_a_pool();
    let cli = cli::Cli::parse();
    match cmd::run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            let mut line = normtune_core::error::one_line(&format!("{e:#}"));
            if let Some(cause) = THREAD_PANIC.get().filter(|c| !line.contains(c.as_str())) {
                line.push_str(&format!(" (first failure, on a device thread: {cause})"));
            }
            eprintln!("error: {line}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Makes main thread 0 of a rayon pool of its own (`use_current_thread`, as the browser's CPU
/// worker does, `app/src/threads.rs`), so that flex's and `gemm`'s parallel loops start from a
/// worker of the pool they run on. The pool lives until main returns.
///
/// Outside any pool, every parallel op of a training step or a decoded token was injected into
/// rayon's global pool: main woke a sleeping worker, slept on a latch until both workers
/// finished, and was woken again, while between ops the idle workers spun and yielded beside
/// it, three busy threads on two cores. From a thread of the pool the op is pushed on its own
/// queue, main runs it, and only the other thread is woken to steal a half. On the 2-core
/// machine a `tiny` LN-tuning run switches context ~5 K times instead of ~95 K, and its step
/// takes 46 ms instead of 53–58 (BENCHMARKS.md, 2026-12-06, third session, which has the other
/// shapes). Running the command inside the pool (`install`) measured the same, with a thread hop
/// and panics to carry back to main.
/// The pool's size follows rayon's (`RAYON_NUM_THREADS`, else one thread per core). Threads a
/// command starts itself (data-parallel replicas) use rayon's global pool, as before.
fn join_a_pool() -> Option<rayon::ThreadPool> {
    rayon::ThreadPoolBuilder::new()
        .use_current_thread()
        .thread_name(|i| format!("normtune rayon thread {i}"))
        .build()
        .ok()
}

/// glibc's allocator keeps freed memory for reuse instead of handing it back to the kernel.
///
/// By default glibc serves blocks from 128 KiB up (a threshold that only adapts as blocks are
/// freed) with `mmap` and returns them with `munmap`, and trims the heap's top above 128 KiB of
/// free space, so the tensors a training step allocates and frees (activations, gradients,
/// optimizer moments: megabytes each) come back as fresh pages every step: a page fault and a
/// kernel page clear per 4 KiB, and TLB shootdowns across the threads on every unmap. Blocks up
/// to 32 MiB (glibc's maximum) now come from the heap and nothing is trimmed, so a step reuses
/// the previous step's memory. Peak RSS is unchanged (the freed memory is what the next step
/// allocates again); BLIP `small` full fine-tuning steps 12–16 % faster (BENCHMARKS.md,
/// 2026-12-04, issue 25).
fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets allocator parameters; called first thing in main, before any
    // other thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, i32::MAX);
    }
}

/// Panics print one line, not a page of backtrace: on main as `error: internal error ...` (a bug
/// in normtune; the exit code is 101), on other threads not at all, kept for the error main
/// reports. `NORMTUNE_DEBUG=1` or `RUST_BACKTRACE` restores Rust's own report as well.
fn quiet_panics() {
    let on = |var: &str| std::env::var(var).is_ok_and(|v| !v.is_empty() && v != "0");
    let verbose = on("RUST_BACKTRACE") || on("NORMTUNE_DEBUG");
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let payload = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "a panic without a message".into());
        let message = normtune_core::error::one_line(&payload);
        if std::thread::current().name() == Some("main") {
            let at = info
                .location()
                .map(|l| format!(" at {}:{}", l.file(), l.line()))
                .unwrap_or_default();
            eprintln!("error: internal error{at}: {message} (a bug in normtune: please report it)");
        } else {
            let _ = THREAD_PANIC.set(message);
        }
        if verbose {
            default(info);
        }
    }));
}
