#!/usr/bin/env bash
# Runs on the device machine (NVIDIA GPU, no Rust, no network), from the repository root, with
# .gpu and .gl carried (pack.sh made them): unpacks the Vulkan loaders and the binary, finds
# NVRTC, checks both burn GPU backends with a matmul, then runs native/bench/gpu/run.py.
# Writes $OUT/gpu.json and $OUT/log.txt (or ./gpu-out/ when OUT is unset).
set -u
OUT="${OUT:-$PWD/gpu-out}"; mkdir -p "$OUT"
exec > >(tee "$OUT/log.txt") 2>&1
for f in .gl/*.deb; do dpkg -x "$f" /; done; ldconfig
icd=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
[ -f "$icd" ] && export VK_DRIVER_FILES="$icd" \
    __EGL_VENDOR_LIBRARY_FILENAMES=/usr/local/nvidia/share/glvnd/egl_vendor.d/10_nvidia.json
xz -dc .gpu/normtune.xz > /tmp/normtune && chmod +x /tmp/normtune
# burn's CUDA backend compiles its kernels with NVRTC at run time: the toolkit's, else pip's.
nvrtc=$(ls /usr/local/cuda/lib64/libnvrtc.so* /usr/local/cuda/targets/x86_64-linux/lib/libnvrtc.so* \
    2>/dev/null | head -1)
[ -z "$nvrtc" ] && nvrtc=$(find /usr/local /opt -name 'libnvrtc.so*' 2>/dev/null | sort | head -1)
[ -n "$nvrtc" ] && export LD_LIBRARY_PATH="$(dirname "$nvrtc"):${LD_LIBRARY_PATH:-}"
echo "nvrtc: ${nvrtc:-not found}"
# ... and includes the toolkit's headers (CUDA_PATH, else /usr/local/cuda).
if [ -z "${CUDA_PATH:-}" ] && [ ! -f /usr/local/cuda/include/cuda.h ]; then
    h=$(find /usr/local /opt -name cuda.h -path '*include*' 2>/dev/null | head -1)
    [ -n "$h" ] && export CUDA_PATH="$(dirname "$(dirname "$h")")"
fi
echo "CUDA_PATH: ${CUDA_PATH:-/usr/local/cuda}"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
python3 -c 'import torch, transformers, peft; print("torch", torch.__version__, "transformers",
    transformers.__version__, "peft", peft.__version__)'
for d in ${MATMUL_DEVICES-cuda gpu}; do
    timeout 60 /tmp/normtune bench --matmul 4096 --steps 5 --device "$d" --json \
        > "$OUT/matmul-$d.json" || echo "matmul on $d failed"
    cat "$OUT/matmul-$d.json"
done
python3 native/bench/gpu/run.py --normtune /tmp/normtune --out "$OUT/gpu.json" \
    --budget "${BUDGET:-400}" ${ROWS:+--rows "$ROWS"} ${SIDES:+--sides "$SIDES"} \
    ${TIMEOUT:+--timeout "$TIMEOUT"}
