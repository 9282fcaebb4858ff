#![no_main]
//! `cargo fuzz run zip`: see normtune_core::fuzz::zip (no base model: nothing to load first).
libfuzzer_sys::fuzz_target!(|bytes: &[u8]| {
    let _ = normtune_core::fuzz::zip(bytes);
});
