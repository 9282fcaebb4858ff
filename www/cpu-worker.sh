#!/bin/sh
# The CPU backend's threaded worker: trunk runs this after its own build (Trunk.toml's post_build
# hook). It builds the same worker binary as trunk does, without WebGPU and with WebAssembly
# threads, so burn's flex backend and gemm split their work across rayon's threads (one Web
# Worker each, app/src/threads.rs) as they do natively. On a cross-origin isolated page the CPU
# backend loads this worker (normtune-cpu-worker_loader.js); elsewhere it runs trunk's worker on
# one thread.
#
# `+atomics` needs the standard library rebuilt for it (`-Z build-std`), which only nightly can;
# the toolchain is pinned here and installed if absent.
# wgpu's browser types are not `Send` under `+atomics`, hence a second worker rather than one.
# Its own target dir: this build and trunk's must never share the uplifted `normtune-worker.wasm`.
set -eu
NIGHTLY=nightly-2026-05-20
if [ "${1:-}" = "--toolchain" ]; then echo "$NIGHTLY"; exit 0; fi
OUT="${TRUNK_STAGING_DIR:-$(dirname "$0")/dist}"
OUT="$(cd "$OUT" && pwd)"
cd "$(dirname "$0")/.."
TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}-threads"
PROFILE=debug
if [ "${TRUNK_PROFILE:-debug}" = release ]; then PROFILE=release; fi
if ! rustup run "$NIGHTLY" rustc --print sysroot >/dev/null 2>&1 ||
  [ ! -d "$(rustup run "$NIGHTLY" rustc --print sysroot)/lib/rustlib/src/rust/library" ]; then
  echo "cpu-worker.sh: installing $NIGHTLY with rust-src (WebAssembly threads need build-std)" >&2
  rustup toolchain install "$NIGHTLY" --profile minimal --component rust-src --target wasm32-unknown-unknown
fi
# The workspace's wasm flags (.cargo/config.toml: getrandom's backend, SIMD) plus threads, and a
# 4 GiB ceiling (wasm32's whole address space, as without threads: a shared memory must declare
# its maximum). The final link makes the memory shared and imported, and exports the TLS symbols
# wasm-bindgen's thread support needs to give each thread its own stack and thread-locals; these
# go to the worker binary alone (`cargo rustc`), so its dependencies' builds are not affected.
CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUSTFLAGS='--cfg getrandom_backend="wasm_js" -C target-feature=+simd128,+atomics,+bulk-memory,+mutable-globals -C link-arg=--max-memory=4294967296' \
  cargo "+$NIGHTLY" rustc -Z build-std=panic_abort,std --target wasm32-unknown-unknown \
  -p normtune-app --bin normtune-worker --no-default-features --profile "$([ $PROFILE = debug ] && echo dev || echo release)" \
  --target-dir "$TARGET_DIR" -- \
  -C link-arg=--shared-memory -C link-arg=--import-memory \
  -C link-arg=--export=__wasm_init_tls -C link-arg=--export=__tls_size \
  -C link-arg=--export=__tls_align -C link-arg=--export=__tls_base
wasm-bindgen --target no-modules --no-typescript --out-dir "$OUT" --out-name normtune-cpu-worker \
  "$TARGET_DIR/wasm32-unknown-unknown/$PROFILE/normtune-worker.wasm"
printf 'importScripts("./normtune-cpu-worker.js");wasm_bindgen("./normtune-cpu-worker_bg.wasm");\n' \
  > "$OUT/normtune-cpu-worker_loader.js"
