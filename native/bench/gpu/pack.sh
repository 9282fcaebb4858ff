#!/usr/bin/env bash
# Prepares the GPU benchmark's luggage here (no GPU needed), in the repository root:
#   .gpu/normtune.xz  normtune built with burn's CUDA backend (and wgpu), stripped, compressed
#   .gl/*.deb         the Vulkan/EGL loader packages the device machine lacks (Debian, amd64)
# Both folders are ignored by git (.git/info/exclude). Then, on the device machine, from the
# repository root with both folders carried:  bash native/bench/gpu/device.sh
#
# PROFILE=release for a release build (37 min cold on 2 cores); the default is the dev profile,
# whose dependencies (burn, cubecl, gemm) are built at opt-level 3 as in release and which shares
# the test suite's build.
# CUDARC_CUDA_VERSION picks the CUDA API the bindings are built for
# (default 13000: the device machine's driver 580 and toolkit 13.0; nvcc is not needed here).
set -euo pipefail
cd "$(dirname "$0")/../../.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/normtune/target}"
export CUDARC_CUDA_VERSION="${CUDARC_CUDA_VERSION:-13000}"
profile="${PROFILE:-dev}"
dir=$([ "$profile" = dev ] && echo debug || echo "$profile")
mkdir -p .gpu
# burn's CUDA backend compiles its kernels with NVRTC at run time; cubecl's LLVM backend, whose
# build script would download LLVM from GitHub, is left out (core/vendor/cubecl-cuda/NORMTUNE.md),
# so this builds offline. `autotune-cache`: cubecl keeps its autotune results on disk (under
# ./target/ on the device), so each row's process skips the tuning an earlier row's did on the
# same backend; on 2026-12-04 start-up, shader compiles and autotuning took most of a BLIP-base
# row's 131 s on wgpu (BENCHMARKS.md "GPU").
cargo build -p normtune --features cuda,autotune-cache --profile "$profile"
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
