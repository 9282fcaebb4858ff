#!/usr/bin/env bash
# Fuzzes every reader of untrusted bytes with libFuzzer (cargo fuzz, nightly), each target for
# FUZZ_RUNS executions or FUZZ_SECONDS, whichever comes first, JOBS targets at a time; then
# minimises each corpus. Crashes land in artifacts/<target>/ (git-ignored).
#
#   tests/fuzz/run.sh                    all targets, 1M runs or 30 min each
#   tests/fuzz/run.sh dicom image        some targets
#   FUZZ_RUNS=10000 tests/fuzz/run.sh    a quick pass
#
# Needs: rustup's nightly toolchain and `cargo install cargo-fuzz`. The seeds are made by
# make_seeds.py (needs .assets/, from tests/fixtures/fetch_assets.sh, and pillow).
set -euo pipefail
cd "$(dirname "$0")"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/normtune/fuzz-target}"
RUNS="${FUZZ_RUNS:-1000000}"
SECONDS_EACH="${FUZZ_SECONDS:-1800}"
JOBS="${JOBS:-2}"
TARGETS=("$@")
[ ${#TARGETS[@]} -gt 0 ] || TARGETS=(config safetensors adapter tokenizer dataset dicom image zip)
[ -d seeds ] || python3 make_seeds.py
cargo +nightly fuzz build -O --debug-assertions
mkdir -p logs
fuzz_one() {
  local t="$1"
  mkdir -p "corpus/$t" "artifacts/$t"
  # -rss_limit_mb / -malloc_limit_mb: an input that makes a reader allocate over 2 GiB is a bug
  # (sizes must be checked against the input before allocating); -timeout: a hang is a bug too.
  # Fork mode: a crash, out-of-memory or hang is saved to artifacts/<target>/ and fuzzing goes
  # on, so one run finds several; each finding is then replayed by hand (`cargo fuzz run T FILE`).
  cargo +nightly fuzz run -O --debug-assertions "$t" "corpus/$t" "seeds/$t" -- \
    -fork=1 -ignore_crashes=1 -ignore_ooms=1 -ignore_timeouts=1 \
    -runs="$RUNS" -max_total_time="$SECONDS_EACH" -rss_limit_mb=2048 -malloc_limit_mb=2048 \
    -timeout=10 >"logs/$t.log" 2>&1 || true
  local last; last="$(grep -E '^#[0-9]+: cov' "logs/$t.log" | tail -1)"
  echo "$t: ${last%% ft:*} | $(grep -oE 'oom/timeout/crash: [0-9/]+' "logs/$t.log" | tail -1) | $(ls "artifacts/$t" | wc -l) findings"
}
rc=0
pids=()
for t in "${TARGETS[@]}"; do
  fuzz_one "$t" & pids+=($!)
  if [ ${#pids[@]} -ge "$JOBS" ]; then wait "${pids[0]}" || rc=1; pids=("${pids[@]:1}"); fi
done
for p in "${pids[@]}"; do wait "$p" || rc=1; done
# Keep only inputs that add coverage, and none that is a seed already.
for t in "${TARGETS[@]}"; do
  cargo +nightly fuzz cmin -O --debug-assertions "$t" "corpus/$t" >>"logs/$t.log" 2>&1
  for s in "seeds/$t"/*; do
    h="$(sha1sum "$s" | cut -d' ' -f1)"; rm -f "corpus/$t/$h"
  done
  echo "$t: $(ls "corpus/$t" | wc -l) corpus files"
done
exit $rc
