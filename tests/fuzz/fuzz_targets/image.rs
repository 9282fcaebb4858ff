#![no_main]
//! `cargo fuzz run image`: see normtune_core::fuzz::image.
libfuzzer_sys::fuzz_target!(|bytes: &[u8]| {
    let _ = normtune_core::fuzz::run("image", bytes, normtune_fuzz::base());
});
