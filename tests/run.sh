#!/usr/bin/env bash
# The whole test suite on a fresh machine: installs what it needs (lavapipe for the wgpu smoke
# test, the wasm32 target), then builds and runs every test. The cargo target dir lives outside
# the clone so reruns are incremental.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/normtune/target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
# The Vulkan loader wants a runtime dir; headless CI has none (it would print "error:" lines).
if [ -z "${XDG_RUNTIME_DIR:-}" ]; then
  XDG_RUNTIME_DIR="$(mktemp -d)"
  export XDG_RUNTIME_DIR
fi
step() { printf '\n== %s (%s)\n' "$1" "$(date +%T)"; }

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
if ! ls /usr/share/vulkan/icd.d/lvp_icd*.json >/dev/null 2>&1; then
  step "installing lavapipe (software Vulkan for the wgpu smoke test)"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq mesa-vulkan-drivers libvulkan1 >/dev/null
fi
if ! rustup target list --installed | grep -q wasm32-unknown-unknown; then
  step "adding the wasm32 target"
  rustup target add wasm32-unknown-unknown
fi

step "real files from PyPI wheels into .assets/ (DICOM, report texts, label tables)"
./tests/fixtures/fetch_assets.sh

step "build"
cargo build --workspace --exclude normtune-app --tests
step "tests (flex CPU backend; one wgpu smoke test on lavapipe)"
cargo test --workspace --exclude normtune-app -- --test-threads=2
step "core compiles for wasm32 (no filesystem, threads or blocking readback in core)"
cargo check -p normtune-core --target wasm32-unknown-unknown
step "app compiles for wasm32"
cargo check -p normtune-app --target wasm32-unknown-unknown
# Test binaries are ~700 MB each; drop the ones no build has refreshed for two days, so a
# long-lived target dir (CI's cache) does not fill the disk with stale feature variants.
find "$CARGO_TARGET_DIR/debug/deps" -maxdepth 1 -type f ! -name '*.*' -mtime +2 -delete 2>/dev/null || true
step "done"
