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
cargo build --workspace --exclude normtune-app --tests --bins
step "tests (flex CPU backend; one wgpu smoke test on lavapipe)"
cargo test --workspace --exclude normtune-app -- --test-threads=2
step "core compiles for wasm32 (no filesystem, threads or blocking readback in core)"
cargo check -p normtune-core --target wasm32-unknown-unknown
step "app (page and worker) compiles for wasm32"
cargo check -p normtune-app --target wasm32-unknown-unknown --bins

# The browser suite: trunk build, wasm-bindgen-test component tests in headless Chromium and the
# Playwright end-to-end test. Opt-in for now (NORMTUNE_BROWSER_TESTS=1): a cold wasm build of
# burn plus building trunk from crates.io takes longer than CI's budget on a fresh machine.
if [ "${NORMTUNE_BROWSER_TESTS:-0}" = 1 ]; then
  if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then
    step "installing Debian's Chromium and ChromeDriver (browser tests)"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium chromium-driver >/dev/null
  fi
  # trunk and wasm-bindgen come from crates.io (no GitHub downloads here), built once into
  # ~/.cargo/bin with their own target dir; wasm-bindgen must match the version in Cargo.lock.
  WASM_BINDGEN="$(awk '/^name = "wasm-bindgen"$/ {getline; gsub(/[^0-9.]/, ""); print; exit}' Cargo.lock)"
  TOOLS_TARGET="$(dirname "$CARGO_TARGET_DIR")/tools"
  if ! trunk --version 2>/dev/null | grep -q '0\.21\.14'; then
    step "building trunk 0.21.14 from crates.io (once; ~15 min on 2 cores)"
    CARGO_TARGET_DIR="$TOOLS_TARGET" cargo install trunk --version 0.21.14 --locked
  fi
  if ! wasm-bindgen --version 2>/dev/null | grep -q "$WASM_BINDGEN"; then
    step "building wasm-bindgen-cli $WASM_BINDGEN from crates.io (once; ~5 min)"
    CARGO_TARGET_DIR="$TOOLS_TARGET" cargo install wasm-bindgen-cli --version "=$WASM_BINDGEN" --force
  fi
  step "playwright-core from npm (drives Debian's Chromium; no browser download)"
  (cd tests/e2e && npm ci --no-audit --no-fund --loglevel=error)
  # wasm builds get their own target dir: native and wasm builds never wait on each other's lock.
  export WASM_TARGET_DIR="${WASM_TARGET_DIR:-$(dirname "$CARGO_TARGET_DIR")/wasm-target}"
  step "web app: trunk build (dev profile, no wasm-opt)"
  (cd www && CARGO_TARGET_DIR="$WASM_TARGET_DIR" trunk build)
  step "component tests in headless Chromium (wasm-bindgen-test: WebGPU and the wasm CPU backend)"
  (cd app && CARGO_TARGET_DIR="$WASM_TARGET_DIR" CHROMEDRIVER=/usr/bin/chromedriver \
    WASM_BINDGEN_TEST_TIMEOUT=900 cargo test --target wasm32-unknown-unknown --test browser)
  step "browser end-to-end: tune, ask and export on WebGPU (SwiftShader) and on the CPU backend"
  NORMTUNE_BIN="$CARGO_TARGET_DIR/debug/normtune" NORMTUNE_DIST="$PWD/www/dist" \
    NORMTUNE_ARTIFACTS="${NORMTUNE_ARTIFACTS:-$(dirname "$CARGO_TARGET_DIR")/e2e-artifacts}" \
    node --test --test-concurrency=1 tests/e2e/
fi
# Test binaries are ~700 MB each; drop the ones no build has refreshed for two days, so a
# long-lived target dir (CI's cache) does not fill the disk with stale feature variants.
find "$CARGO_TARGET_DIR/debug/deps" -maxdepth 1 -type f ! -name '*.*' -mtime +2 -delete 2>/dev/null || true
step "done"
