#![no_main]
//! `cargo fuzz run tokenizer`: see normtune_core::fuzz::tokenizer (no base model: nothing to load first).
libfuzzer_sys::fuzz_target!(|bytes: &[u8]| {
    let _ = normtune_core::fuzz::tokenizer(bytes);
});
