#![no_main]
//! `cargo fuzz run config`: see normtune_core::fuzz::config (no base model: nothing to load first).
libfuzzer_sys::fuzz_target!(|bytes: &[u8]| {
    let _ = normtune_core::fuzz::config(bytes);
});
