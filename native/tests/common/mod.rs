//! What the CLI test binaries share: running the built `normtune` binary.

use std::path::PathBuf;
use std::process::Command;

/// The repository's `tests/fixtures`.
#[allow(dead_code)]
pub fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures")
}

/// Runs `normtune args…`: (exit code, stdout, stderr).
#[allow(dead_code)]
pub fn run(args: &[&str]) -> (Option<i32>, String, String) {
    run_env(args, &[])
}

/// Runs `normtune args…` with these environment variables: (exit code, stdout, stderr).
pub fn run_env(args: &[&str], env: &[(&str, &str)]) -> (Option<i32>, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_normtune"))
        .args(args)
        .envs(env.iter().copied())
        .output()
        .expect("run normtune");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

/// Runs `normtune args…`: (success, stdout, stderr).
#[allow(dead_code)]
pub fn normtune(args: &[&str]) -> (bool, String, String) {
    let (code, out, err) = run(args);
    (code == Some(0), out, err)
}
