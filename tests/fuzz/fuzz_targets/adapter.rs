#![no_main]
//! `cargo fuzz run adapter`: see normtune_core::fuzz::adapter.
libfuzzer_sys::fuzz_target!(|bytes: &[u8]| {
    let _ = normtune_core::fuzz::run("adapter", bytes, normtune_fuzz::base());
});
