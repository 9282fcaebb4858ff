#![no_main]
//! `cargo fuzz run dataset`: see normtune_core::fuzz::dataset (no base model: nothing to load first).
libfuzzer_sys::fuzz_target!(|bytes: &[u8]| {
    let _ = normtune_core::fuzz::dataset(bytes);
});
