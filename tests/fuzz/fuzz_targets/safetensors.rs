#![no_main]
//! `cargo fuzz run safetensors`: see normtune_core::fuzz::safetensors.
libfuzzer_sys::fuzz_target!(|bytes: &[u8]| {
    let _ = normtune_core::fuzz::run("safetensors", bytes, normtune_fuzz::base());
});
