#![no_main]
//! `cargo fuzz run image`: see normtune_core::fuzz::image (no base model: nothing to load first).
libfuzzer_sys::fuzz_target!(|bytes: &[u8]| {
    let _ = normtune_core::fuzz::image(bytes);
});
