#![no_main]
//! `cargo fuzz run safetensors`: see normtune_core::fuzz::weights.
libfuzzer_sys::fuzz_target!(
    // The base model loads before fuzzing starts, not inside the first input's time limit (under
    // load that first input exceeded -timeout).
    init: {
        normtune_fuzz::base();
    },
    |bytes: &[u8]| {
        let _ = normtune_core::fuzz::run("safetensors", bytes, normtune_fuzz::base());
    }
);
