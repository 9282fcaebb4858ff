//! Replays the fuzzers' inputs (tests/fuzz, `cargo fuzz`) on the stable toolchain: every seed in
//! `tests/fuzz/seeds/<target>/` is a real file and must be accepted, and every input the fuzzers
//! kept in `tests/fuzz/corpus/<target>/` (coverage-minimised, crashes fixed) must be read without
//! a panic. A reader change that re-opens a crash the fuzzers once found fails here, in CI.

use normtune_core::fuzz::{Base, TARGETS, run};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz")
}

fn base() -> Base {
    let fix = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures");
    let rd = |p: &str| std::fs::read(fix.join(p)).unwrap();
    Base::from_files(
        &rd("blip_vqa/config.json"),
        &rd("blip_vqa/model.safetensors"),
        &rd("vit_cls/config.json"),
    )
    .unwrap()
}

fn files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = match std::fs::read_dir(dir) {
        Ok(rd) => rd
            .map(|e| e.unwrap().path())
            .filter(|p| p.is_file())
            .collect(),
        Err(_) => Vec::new(),
    };
    v.sort();
    v
}

#[test]
fn every_seed_is_accepted() {
    let base = base();
    let mut failures = Vec::new();
    for target in TARGETS {
        let seeds = files(&fuzz_dir().join("seeds").join(target));
        assert!(!seeds.is_empty(), "no seeds for `{target}`");
        for f in seeds {
            if let Err(e) = run(target, &std::fs::read(&f).unwrap(), &base) {
                failures.push(format!("{target}: {}: {e}", f.display()));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "seeds refused:\n{}",
        failures.join("\n")
    );
}

#[test]
fn no_corpus_input_panics() {
    let base = base();
    let mut panics = Vec::new();
    let mut n = 0;
    for target in TARGETS {
        for f in files(&fuzz_dir().join("corpus").join(target)) {
            let bytes = std::fs::read(&f).unwrap();
            n += 1;
            if catch_unwind(AssertUnwindSafe(|| run(target, &bytes, &base))).is_err() {
                panics.push(format!("{target}: {}", f.display()));
            }
        }
    }
    assert!(
        panics.is_empty(),
        "{} of {n} inputs panicked:\n{}",
        panics.len(),
        panics.join("\n")
    );
}
