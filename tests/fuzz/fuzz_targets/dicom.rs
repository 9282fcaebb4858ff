#![no_main]
//! `cargo fuzz run dicom`: see normtune_core::fuzz::dicom.
libfuzzer_sys::fuzz_target!(|bytes: &[u8]| {
    let _ = normtune_core::fuzz::run("dicom", bytes, normtune_fuzz::base());
});
