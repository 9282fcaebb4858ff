#![no_main]
//! `cargo fuzz run dicom`: see normtune_core::fuzz::dicom (no base model: nothing to load first).
libfuzzer_sys::fuzz_target!(|bytes: &[u8]| {
    let _ = normtune_core::fuzz::dicom(bytes);
});
