#!/usr/bin/env bash
# GPU dispatches (kernel launches) per LN-tuning training step on wgpu, counted by cubecl's own
# profiler: `normtune bench` runs with 1 and then 3 timed steps (same warm-up, same single
# answer) and every executed kernel is logged; the difference over 2 is the kernels one
# steady-state step launches (warm-up, autotune and the answer cancel out).
#
#   native/bench/dispatches.sh BINARY [PRESET] [BATCH]
#
# Compare a default build (burn's fusion + autotune: `cargo build -p normtune`) with one built
# with one fixed kernel per op (`cargo build -p normtune --no-default-features --features wgpu`)
# or as the browser runs burn (`--no-default-features --features fusion`). On a machine
# without a GPU, wgpu runs on lavapipe (software Vulkan): counts are exact, times are not.
set -euo pipefail
BIN="${1:?normtune binary}"
PRESET="${2:-tiny}"
BATCH="${3:-2}"
: "${XDG_RUNTIME_DIR:=$(mktemp -d)}"
export XDG_RUNTIME_DIR
count() {
  local log
  log="$(mktemp)"
  rm -f "$log"
  CUBECL_DEBUG_LOG="$log" CUBECL_DEBUG_OPTION=profile "$BIN" bench --preset "$PRESET" \
    --peft layernorm --batch "$BATCH" --steps "$1" --warmup 2 --answers 1 --answer-tokens 1 \
    --device gpu >/dev/null 2>&1
  grep -cE '^\| [0-9.]+(ns|µs|ms|s) +\|' "$log"
  rm -f "$log"
}
one="$(count 1)"
three="$(count 3)"
echo "{\"preset\": \"$PRESET\", \"batch\": $BATCH, \"kernels_1_step\": $one, \"kernels_3_steps\": $three, \"kernels_per_step\": $(( (three - one) / 2 ))}"
