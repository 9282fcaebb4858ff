#!/usr/bin/env python3
"""Runs `normtune bench` and the PyTorch reference on the same rows, in one run on one machine,
and prints the table BENCHMARKS.md records (markdown), plus the raw JSON lines.

    cargo build --release -p normtune
    python3 native/bench/compare.py --normtune target/release/normtune \
        --presets tiny,small --methods layernorm,lora,full --batch 4 --steps 10

Each configuration runs in its own process, normtune and PyTorch alternating, so slow drifts of
the machine hit both sides alike. Ratios are normtune / PyTorch (below 1: normtune is faster or
smaller). The trainable-parameter counts of both sides must agree, else the row is not the same
experiment and the script stops.
"""

import argparse
import json
import os
import platform
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def run(cmd):
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"failed: {' '.join(cmd)}\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def cpu_name():
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--normtune", required=True, help="the normtune binary (a release build)")
    p.add_argument("--presets", default="tiny,small")
    p.add_argument("--methods", default="layernorm,lora,full")
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--answers", type=int, default=5)
    p.add_argument("--out", help="also write the JSON lines here")
    a = p.parse_args()
    common = ["--batch", str(a.batch), "--steps", str(a.steps), "--warmup", str(a.warmup),
              "--answers", str(a.answers), "--json"]
    rows = []
    for preset in a.presets.split(","):
        for method in a.methods.split(","):
            ours = run([a.normtune, "bench", "--preset", preset, "--peft", method,
                        "--device", "cpu"] + common)
            ref = run([sys.executable, os.path.join(HERE, "reference", "bench_torch.py"),
                       "--preset", preset, "--peft", method] + common)
            if ours["trainable_params"] != ref["trainable_params"]:
                sys.exit(f"{preset}/{method}: trainable params differ: normtune "
                         f"{ours['trainable_params']:,} vs PyTorch {ref['trainable_params']:,}")
            rows.append((preset, method, ours, ref))
            print(f"{preset}/{method}: normtune {ours['step_ms_median']:.0f} ms, "
                  f"PyTorch {ref['step_ms_median']:.0f} ms", file=sys.stderr, flush=True)
    if a.out:
        with open(a.out, "w") as f:
            for preset, method, ours, ref in rows:
                f.write(json.dumps({"preset": preset, "method": method, "normtune": ours,
                                    "pytorch": ref}) + "\n")

    print(f"Machine: {cpu_name()}, {os.cpu_count()} logical cores; {rows[0][3]['device']}; "
          f"batch {a.batch}, {a.warmup} warm-up + {a.steps} timed steps, denormals flushed "
          f"on both sides.\n")
    print("| shape | method | trainable | step ms normtune | step ms PyTorch | ratio | "
          "answer ms normtune | answer ms PyTorch | ratio | peak RSS MB normtune | "
          "peak RSS MB PyTorch | ratio |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for preset, method, o, r in rows:
        print(f"| {preset} | {method} | {o['trainable_params']:,} | "
              f"{o['step_ms_median']:.1f} ({o['step_ms_min']:.0f}–{o['step_ms_max']:.0f}) | "
              f"{r['step_ms_median']:.1f} ({r['step_ms_min']:.0f}–{r['step_ms_max']:.0f}) | "
              f"{o['step_ms_median'] / r['step_ms_median']:.2f} | "
              f"{o['answer_ms_median']:.1f} | {r['answer_ms_median']:.1f} | "
              f"{o['answer_ms_median'] / r['answer_ms_median']:.2f} | "
              f"{o['peak_rss_mb']:.0f} | {r['peak_rss_mb']:.0f} | "
              f"{o['peak_rss_mb'] / r['peak_rss_mb']:.2f} |")
    print("\nLayerNorm tuning against full fine-tuning (same side, same shape):\n")
    print("| shape | side | LN step / full step | LN peak RSS / full peak RSS |")
    print("|---|---|---:|---:|")
    by = {(p, m): (o, r) for p, m, o, r in rows}
    for preset in a.presets.split(","):
        if (preset, "layernorm") in by and (preset, "full") in by:
            (lo, lr), (fo, fr) = by[(preset, "layernorm")], by[(preset, "full")]
            for side, ln, full in (("normtune", lo, fo), ("PyTorch", lr, fr)):
                print(f"| {preset} | {side} | {ln['step_ms_median'] / full['step_ms_median']:.2f} | "
                      f"{ln['peak_rss_mb'] / full['peak_rss_mb']:.2f} |")


if __name__ == "__main__":
    main()
