#![no_main]
//! `cargo fuzz run gguf`: see normtune_core::fuzz::gguf.
libfuzzer_sys::fuzz_target!(|bytes: &[u8]| {
    let _ = normtune_core::fuzz::run("gguf", bytes, normtune_fuzz::base());
});
