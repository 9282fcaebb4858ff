#![no_main]
//! `cargo fuzz run tokenizer`: see normtune_core::fuzz::tokenizer.
libfuzzer_sys::fuzz_target!(|bytes: &[u8]| {
    let _ = normtune_core::fuzz::run("tokenizer", bytes, normtune_fuzz::base());
});
