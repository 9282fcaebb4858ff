#![no_main]
//! `cargo fuzz run dataset`: see normtune_core::fuzz::dataset.
libfuzzer_sys::fuzz_target!(|bytes: &[u8]| {
    let _ = normtune_core::fuzz::run("dataset", bytes, normtune_fuzz::base());
});
