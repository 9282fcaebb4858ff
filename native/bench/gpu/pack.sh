#!/usr/bin/env bash
# Prepares the GPU benchmark's luggage here (no GPU needed), in the repository root:
#   .gpu/normtune.xz  normtune built with burn's CUDA backend (and wgpu), stripped, compressed
#   .gl/*.deb         the Vulkan/EGL loader packages the device machine lacks (Debian, amd64)
# Both folders are ignored by git (.git/info/exclude). Then, on the device machine, from the
# repository root with both folders carried:  bash native/bench/gpu/device.sh
#
# PROFILE=release for a release build (37 min cold on 2 cores); the default is the dev profile,
# whose dependencies (burn, cubecl, gemm) are built at opt-level 3 as in release and which shares
# the test suite's build. NO_LLVM=1 where GitHub cannot be reached (see below).
# CUDARC_CUDA_VERSION picks the CUDA API the bindings are built for
# (default 13000: the device machine's driver 580 and toolkit 13.0; nvcc is not needed here).
set -euo pipefail
cd "$(dirname "$0")/../../.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/normtune/target}"
export CUDARC_CUDA_VERSION="${CUDARC_CUDA_VERSION:-13000}"
profile="${PROFILE:-dev}"
dir=$([ "$profile" = dev ] && echo debug || echo "$profile")
mkdir -p .gpu
if [ -z "${NO_LLVM:-}" ]; then
    # burn's CUDA backend links cubecl-llvm, whose build script downloads a prebuilt LLVM from
    # GitHub (tracel-llvm-bundler): this needs a machine that reaches GitHub.
    cargo build -p normtune --features cuda --profile "$profile"
else
    # NO_LLVM=1: where GitHub is out of reach (this workplace). DOCS_RS=1 makes both LLVM build
    # scripts skip the download; the LLVM symbols are then stubbed (each aborts naming itself).
    # wgpu runs from such a binary; burn CUDA does not (cubecl-cuda 0.11 calls LLVM at start-up,
    # BENCHMARKS.md "GPU"). Only the final link sees the stubs.
    export DOCS_RS=1
    cargo build -p normtune --features cuda --profile "$profile" 2>/dev/null || true
    cargo rustc -p normtune --features cuda --bin normtune --profile "$profile" \
        -- -C link-arg=-Wl,--error-limit=0 2>&1 | grep -o 'undefined symbol: [A-Za-z0-9_]*' \
        | sort -u | awk '{print $3}' > .gpu/llvm_symbols.txt || true
    { echo '#include <stdio.h>'; echo '#include <stdlib.h>'
      echo 'static void missing(const char *n) { fprintf(stderr, "normtune: %s: built without LLVM (NO_LLVM=1)\n", n); abort(); }'
      while read -r f; do echo "void $f(void) { missing(\"$f\"); }"; done < .gpu/llvm_symbols.txt
    } > .gpu/llvm_stubs.c
    cc -O1 -c -fPIC -o .gpu/llvm_stubs.o .gpu/llvm_stubs.c
    cargo rustc -p normtune --features cuda --bin normtune --profile "$profile" \
        -- -C link-arg="$PWD/.gpu/llvm_stubs.o"
fi
grep -qx '/.gpu/' .git/info/exclude || echo /.gpu/ >> .git/info/exclude
grep -qx '/.gl/' .git/info/exclude || echo /.gl/ >> .git/info/exclude
strip -o .gpu/normtune "$CARGO_TARGET_DIR/$dir/normtune"
xz -T2 -9e -f .gpu/normtune
ls -l .gpu/normtune.xz
if ! ls .gl/*.deb >/dev/null 2>&1; then
    mkdir -p .gl /tmp/amd64/partial
    o='-oAPT::Architecture=amd64 -oAPT::Architectures=amd64 -oDir::State::Lists=/tmp/amd64'
    apt-get $o update
    (cd .gl && apt-get $o download libvulkan1 libegl1 libglvnd0 libopengl0 libgl1 libglx0 libgles2)
fi
ls .gl
