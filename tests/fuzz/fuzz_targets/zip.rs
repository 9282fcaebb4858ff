#![no_main]
//! `cargo fuzz run zip`: see normtune_core::fuzz::zip.
libfuzzer_sys::fuzz_target!(|bytes: &[u8]| {
    let _ = normtune_core::fuzz::run("zip", bytes, normtune_fuzz::base());
});
