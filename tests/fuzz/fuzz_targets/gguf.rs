#![no_main]
//! `cargo fuzz run gguf`: see normtune_core::fuzz::gguf (no base model: nothing to load first).
libfuzzer_sys::fuzz_target!(|bytes: &[u8]| {
    let _ = normtune_core::fuzz::gguf(bytes);
});
