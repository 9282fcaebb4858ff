#!/usr/bin/env python3
"""The GPU benchmark: `normtune bench` on burn's CUDA backend and on wgpu (Vulkan), and the
PyTorch reference on CUDA, row by row on the same GPU, in one command, into one JSON file.

On a machine with an NVIDIA GPU (pack.sh builds and packs the binary, device.sh runs this there):

    python3 native/bench/gpu/run.py --normtune .gpu/normtune --out gpu.json

Here, without a GPU, the same script end to end on the CPU (small shapes, one step each; the
sides become normtune on cuda, which records its one-line error where there is no driver, normtune
on flex and PyTorch on the CPU), to check the plumbing before device time is spent:

    python3 native/bench/gpu/run.py --dry-run --normtune $CARGO_TARGET_DIR/debug/normtune

Rows (BENCHMARKS.md, issue 27): BLIP-base at 224 (LN, LoRA, full; batch 16), the `llava-smol`
shape (LN; batch 8) and LLaVA-1.5-7B's shape (LN, frozen weights in f16, random init, batch 1).
Each configuration runs in its own process, the three sides one after another per row. Per run:
steps/s, the answer latency (greedy, batch 1), and the GPU's peak memory as `nvidia-smi` sees it
(memory.used sampled every 100 ms, less the idle reading before the run: the same measure for
every side, allocator caches included); PyTorch's own peak allocation is kept too. A run that
fails or outlasts its time is recorded with its error and the rest go on; the whole stays inside
--budget seconds.
"""

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
TORCH_BENCH = os.path.join(HERE, "..", "reference", "bench_torch.py")

# (row, preset, peft, batch, extra bench arguments, seconds allowed per run), the flagship
# first: a budget cut leaves out the end of the list.
ROWS = [
    ("blip-base-224 LN", "blip-base-224", "layernorm", 16, [], 100),
    ("llava-smol LN", "llava-smol", "layernorm", 8, ["--answer-tokens", "16"], 100),
    # f16, not bf16: WGSL has no bf16 (cubecl-wgpu panics compiling it, 2026-12-04 run).
    ("llava-7b LN f16", "llava-7b", "layernorm", 1,
     ["--frozen-dtype", "f16", "--answer-tokens", "16"], 200),
    ("blip-base-224 LoRA", "blip-base-224", "lora", 16, [], 100),
    ("blip-base-224 full", "blip-base-224", "full", 16, [], 100),
]
TIMING = ["--steps", "10", "--warmup", "3", "--answers", "3"]
TIMING_7B = ["--steps", "5", "--warmup", "2", "--answers", "2"]
# The dry run: the same rows on shapes the CPU runs in seconds.
DRY_PRESET = {"blip-base-224": "tiny", "llava-smol": "llava-smol", "llava-7b": "llava-smol"}
DRY_TIMING = ["--steps", "1", "--warmup", "0", "--answers", "1", "--answer-tokens", "2"]


class GpuMemory:
    """The GPU's memory.used (MiB) sampled by nvidia-smi while a run lasts; None without one."""

    def __init__(self):
        self.proc, self.peak, self.idle = None, None, None
        if shutil.which("nvidia-smi"):
            self.idle = self.read_once()

    @staticmethod
    def read_once():
        try:
            out = subprocess.run(["nvidia-smi", "--query-gpu=memory.used",
                                  "--format=csv,noheader,nounits", "-i", "0"],
                                 capture_output=True, text=True, timeout=20).stdout
            return float(out.split()[0])
        except (OSError, ValueError, IndexError, subprocess.TimeoutExpired):
            return None

    def __enter__(self):
        if self.idle is None:
            return self
        self.proc = subprocess.Popen(["nvidia-smi", "--query-gpu=memory.used",
                                      "--format=csv,noheader,nounits", "-i", "0", "-lms", "100"],
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        self.peak = self.idle

        def read():
            for line in self.proc.stdout:
                try:
                    self.peak = max(self.peak, float(line.strip()))
                except ValueError:
                    pass

        self.thread = threading.Thread(target=read, daemon=True)
        self.thread.start()
        return self

    def __exit__(self, *exc):
        if self.proc:
            self.proc.terminate()
            self.proc.wait()
            self.thread.join(timeout=2)

    def used_mb(self):
        return None if self.peak is None else self.peak - self.idle


def run_one(cmd, timeout):
    """Runs one configuration; returns (row JSON or None, error or None, seconds, GPU MiB)."""
    t = time.time()
    with GpuMemory() as mem:
        try:
            out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired as e:
            tail = (e.stderr or b"")[-400:]
            tail = tail.decode(errors="replace") if isinstance(tail, bytes) else tail
            return None, f"timed out after {timeout:.0f} s; {tail.strip()}", time.time() - t, \
                mem.used_mb()
    secs = time.time() - t
    if out.returncode != 0:
        return None, f"exit {out.returncode}: {out.stderr.strip()[-600:]}", secs, mem.used_mb()
    try:
        return json.loads(out.stdout.strip().splitlines()[-1]), None, secs, mem.used_mb()
    except (ValueError, IndexError):
        return None, f"no JSON in output: {out.stdout[-300:]!r}", secs, mem.used_mb()


def machine():
    m = {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
         "python": sys.version.split()[0]}
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                m["cpu"] = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    if shutil.which("nvidia-smi"):
        q = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total",
                            "--format=csv,noheader"], capture_output=True, text=True)
        m["gpu"] = q.stdout.strip()
    return m


def fmt(x, nd=0):
    return "—" if x is None else f"{x:,.{nd}f}"


def table(results, sides):
    head = "| row | " + " | ".join(f"{s} step ms" for s in sides) + " | " + \
        " | ".join(f"{s} / {sides[-1]}" for s in sides[:-1]) + " | " + \
        " | ".join(f"{s} answer ms" for s in sides) + " | " + \
        " | ".join(f"{s} GPU MiB" for s in sides) + " | trainable |"
    lines = [head, "|" + "---|" * (1 + 4 * len(sides) - 1 + 1)]
    for row in dict.fromkeys(r["row"] for r in results):
        by = {r["side"]: r for r in results if r["row"] == row}
        step = {s: (by.get(s) or {}).get("result", {}).get("step_ms_median") for s in sides}
        ans = {s: (by.get(s) or {}).get("result", {}).get("answer_ms_median") for s in sides}
        mem = {s: (by.get(s) or {}).get("gpu_mb") for s in sides}
        ref = step[sides[-1]]
        ratios = [fmt(step[s] / ref, 2) if step[s] and ref else "—" for s in sides[:-1]]
        cells = [fmt(step[s], 1) if step[s] else ("failed" if s in by else "—") for s in sides]
        # Every side must train the same parameters, else the row compares different things.
        counts = {r["result"]["trainable_params"] for r in by.values() if "result" in r}
        trainable = fmt(counts.pop()) if len(counts) == 1 else ("DIFFER" if counts else "—")
        lines.append(f"| {row} | " + " | ".join(cells) + " | " + " | ".join(ratios) + " | " +
                     " | ".join(fmt(ans[s], 1) for s in sides) + " | " +
                     " | ".join(fmt(mem[s]) for s in sides) + f" | {trainable} |")
    return "\n".join(lines)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--normtune", required=True, help="the normtune binary (built with --features cuda)")
    p.add_argument("--out", default="gpu.json")
    p.add_argument("--budget", type=float, default=450.0, help="seconds for all runs together")
    p.add_argument("--dry-run", action="store_true", help="the CPU here: small shapes, one step")
    p.add_argument("--rows", help="comma-separated row names to run (default: all)")
    p.add_argument("--timeout", type=float, help="seconds per run instead of the row's own")
    p.add_argument("--sides", help="comma-separated sides to run, e.g. 'normtune wgpu,PyTorch cuda'")
    a = p.parse_args()
    start = time.time()
    nt = os.path.abspath(a.normtune)
    if a.dry_run:
        # cuda too: without a driver here its one-line error is recorded and the rows go on,
        # as a failed side does on the device; with one, it runs the small shapes.
        sides = [("normtune cuda", [nt, "bench", "--device", "cuda"]),
                 ("normtune cpu", [nt, "bench", "--device", "cpu"])]
        try:
            subprocess.run([sys.executable, "-c", "import torch, transformers"], check=True,
                           capture_output=True)
            sides.append(("PyTorch cpu", [sys.executable, TORCH_BENCH, "--device", "cpu"]))
        except subprocess.CalledProcessError:
            print("dry run: no torch/transformers here, PyTorch side left out", file=sys.stderr)
    else:
        sides = [("normtune cuda", [nt, "bench", "--device", "cuda"]),
                 ("normtune wgpu", [nt, "bench", "--device", "gpu"]),
                 ("PyTorch cuda", [sys.executable, TORCH_BENCH, "--device", "cuda"])]
    if a.sides:
        sides = [s for s in sides if s[0] in a.sides.split(",")]
    wanted = set(a.rows.split(",")) if a.rows else None
    results = []
    for row, preset, peft, batch, extra, timeout in ROWS:
        if wanted and row not in wanted:
            continue
        if a.dry_run:
            preset, batch = DRY_PRESET[preset], min(batch, 2)
            timing = DRY_TIMING + [x for i, x in enumerate(extra) if not (
                x == "--answer-tokens" or (i and extra[i - 1] == "--answer-tokens"))]
        else:
            timing = (TIMING_7B if preset == "llava-7b" else TIMING) + extra
        args = ["--preset", preset, "--peft", peft, "--batch", str(batch), "--json"] + timing
        for side, base in sides:
            left = a.budget - (time.time() - start)
            rec = {"row": row, "side": side, "cmd": " ".join(base[1:] + args)}
            if left < 15:
                rec["error"] = "skipped: the budget was spent"
            else:
                res, err, secs, gpu = run_one(base + args, min(a.timeout or timeout, left))
                rec.update({"seconds": round(secs, 1), "gpu_mb": gpu})
                if res is not None:
                    rec["result"] = res
                else:
                    rec["error"] = err
            results.append(rec)
            r = rec.get("result", {})
            print(f"{row:<22} {side:<14} " + (
                f"step {r['step_ms_median']:9.1f} ms  answer {r['answer_ms_median']:8.1f} ms  "
                f"GPU {fmt(rec.get('gpu_mb'))} MiB  ({rec['seconds']} s)" if r else
                f"FAILED: {rec['error'][:300]}"), flush=True)
    names = [s for s, _ in sides]
    md = table(results, names)
    doc = {"machine": machine(), "dry_run": a.dry_run, "seconds": round(time.time() - start, 1),
           "rows": results, "table": md}
    tmp = a.out + ".part"
    with open(tmp, "w") as f:
        json.dump(doc, f, indent=1)
    os.replace(tmp, a.out)
    print(md)
    print(f"wrote {a.out} ({doc['seconds']} s)")


if __name__ == "__main__":
    main()
