#!/usr/bin/env python3
"""One f32 matrix product per shape, normtune (`bench --matmul`) against PyTorch, alternating in
one run on one machine, and the table BENCHMARKS.md records.

    cargo build --release -p normtune
    python3 native/bench/compare_matmul.py --normtune target/release/normtune \
        788x384x1152 788x384x384 788x1152x384t 1024

A shape is `MxKxN` ([M, K] x [K, N]) or `N` (square); a trailing `t` takes the right operand as
the transposed view of an [N, K] tensor, as a linear layer's input gradient reads its weight.
`BxMxKxN[t]` is B such products as one batched product ([B, M, K] x [B, K, N]), as attention's
per-head products are.
Both sides time the product plus a sum of it (so an asynchronous device has finished), after
warm-up runs, and report the median. PyTorch uses as many threads as normtune's rayon pool
(all cores) and flushes denormals, as `normtune bench` does.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time


def parse(spec):
    t = spec.endswith("t")
    dims = [int(d) for d in spec.rstrip("t").split("x")]
    if len(dims) == 1 and not t:
        dims = dims * 3
    if len(dims) == 3:
        dims = [1] + dims
    if len(dims) != 4 or min(dims) < 1:
        sys.exit(f"`{spec}` is not N or [Bx]MxKxN[t]")
    return (*dims, t)


def torch_ms(spec, steps, warmup):
    import torch

    torch.set_num_threads(os.cpu_count())
    torch.set_flush_denormal(True)
    b, m, k, n, t = parse(spec)
    if b == 1:
        x = torch.randn(m, k)
        y = torch.randn(n, k).t() if t else torch.randn(k, n)
    else:
        x = torch.randn(b, m, k)
        y = torch.randn(b, n, k).transpose(1, 2) if t else torch.randn(b, k, n)
    times = []
    for i in range(warmup + steps):
        start = time.perf_counter()
        (x @ y).sum().item()
        if i >= warmup:
            times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def normtune_ms(binary, spec, steps, warmup):
    cmd = [binary, "bench", "--matmul", spec, "--steps", str(steps), "--warmup", str(warmup),
           "--device", "cpu", "--json"]
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"failed: {' '.join(cmd)}\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])["ms_median"]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--normtune", required=True, help="normtune binary (a release build)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("shapes", nargs="+")
    a = ap.parse_args()
    for s in a.shapes:
        parse(s)
    runs = {s: ([], []) for s in a.shapes}
    for r in range(a.rounds):
        for s in a.shapes:
            runs[s][0].append(normtune_ms(a.normtune, s, a.steps, a.warmup))
            # PyTorch in its own process, as normtune is.
            out = subprocess.run([sys.executable, __file__, "--torch-one", s, str(a.steps),
                                  str(a.warmup)], capture_output=True, text=True, check=True)
            runs[s][1].append(float(out.stdout))
            print(f"round {r + 1} {s}: normtune {runs[s][0][-1]:.3f} ms, "
                  f"PyTorch {runs[s][1][-1]:.3f} ms", file=sys.stderr)
    print(f"{a.rounds} rounds, median of the round medians; GFLOP/s = 2·B·M·K·N / time.\n")
    print("| product | normtune ms | PyTorch ms | ratio | normtune GFLOP/s | PyTorch GFLOP/s |")
    print("|---|---:|---:|---:|---:|---:|")
    for s in a.shapes:
        b, m, k, n, t = parse(s)
        ours, theirs = (statistics.median(v) for v in runs[s])
        rate = lambda ms: 2 * b * m * k * n / (ms / 1e3) / 1e9
        print(f"| {s} | {ours:.3f} | {theirs:.3f} | "
              f"{ours / theirs:.2f} | {rate(ours):.0f} | {rate(theirs):.0f} |")


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "--torch-one":
        print(torch_ms(sys.argv[2], int(sys.argv[3]), int(sys.argv[4])))
    else:
        main()
