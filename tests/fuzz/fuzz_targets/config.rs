#![no_main]
//! `cargo fuzz run config`: see normtune_core::fuzz::config.
libfuzzer_sys::fuzz_target!(|bytes: &[u8]| {
    let _ = normtune_core::fuzz::run("config", bytes, normtune_fuzz::base());
});
