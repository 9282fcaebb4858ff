#!/bin/sh
# Builds this crate for wasm32 twice, against upstream gemm-f32 0.19.0 (12 x 4 tile) and the
# vendored copy (core/vendor/gemm-f32: 8 x 4, depth loop not unrolled), and times both in one
# headless Chromium page.
# Needs the browser suite's tools (tests/e2e's node_modules, Chromium). ~1 min warm.
set -eu
cd "$(dirname "$0")"
T="${CARGO_TARGET_DIR:-$HOME/.cache/normtune/target}-wasm-gemm"
build() { # $1: out name, $2...: extra cargo args
  name=$1; shift
  RUSTFLAGS="-C target-feature=+simd128" cargo build --release --target wasm32-unknown-unknown \
    --target-dir "$T/$name" "$@" >/dev/null
  cp "$T/$name/wasm32-unknown-unknown/release/wasm_gemm_bench.wasm" "$T/$name.wasm"
}
build upstream-12x4
build vendored --config 'patch.crates-io.gemm-f32.path="../../../core/vendor/gemm-f32"'
node time.mjs "$T/upstream-12x4.wasm" "$T/vendored.wasm"
