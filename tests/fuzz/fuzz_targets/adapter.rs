#![no_main]
//! `cargo fuzz run adapter`: see normtune_core::fuzz::adapter.
libfuzzer_sys::fuzz_target!(
    // The base model loads before fuzzing starts, not inside the first input's time limit (under
    // load that first input exceeded -timeout).
    init: {
        normtune_fuzz::base();
    },
    |bytes: &[u8]| {
        let _ = normtune_core::fuzz::run("adapter", bytes, normtune_fuzz::base());
    }
);
