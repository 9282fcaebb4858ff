#!/usr/bin/env python3
"""Where a training step's matrix products go: every f32 product flex runs, grouped by operand
shapes and layouts, with its time per step and rate, from the trace flex writes when
`NORMTUNE_FLEX_TRACE_MATMUL=1` is set (one stderr line per product, see
core/vendor/burn-flex/NORMTUNE.md).

    NORMTUNE_FLEX_TRACE_MATMUL=1 normtune bench --preset small --peft layernorm --batch 4 \
        --steps 4 --warmup 1 --answers 0 --device cpu 2> trace.txt
    python3 native/bench/matmul_trace.py trace.txt

The products counted are those between the bench's first and last `step N:` lines (it prints
one as each step ends), divided by the steps between them: set-up, the first step and any
answers after the last are left out. A layout is `N` when the operand's last axis
is contiguous (row-major) and `T` when it is not (a transposed view, as a linear layer's input
gradient reads its weight). The trace's own cost (one clock read and one line per product) is
included in the step times, so read the shares, not the step.
"""

import argparse
import collections
import re


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("trace")
    ap.add_argument("--top", type=int, default=30)
    a = ap.parse_args()
    lines = open(a.trace).read().splitlines()
    marks = [i for i, l in enumerate(lines) if re.match(r"\s*step\s+\d+:", l)]
    if len(marks) < 2:
        raise SystemExit(f"{a.trace}: need a bench trace of at least two steps")
    steps = len(marks) - 1
    lines = [l for l in lines[marks[0] + 1:marks[-1]] if l.startswith("MM ")]
    rows = collections.defaultdict(lambda: [0, 0, 0])
    for line in lines:
        ns = int(line.split()[1])
        lhs, lhs_strides, rhs, rhs_strides = (
            [int(d) for d in g.split(",") if d.strip()] for g in re.findall(r"\[([\d, ]*)\]", line)[:4])
        batch = 1
        for d in (lhs if len(lhs) >= len(rhs) else rhs)[:-2]:
            batch *= d
        m, k, n = lhs[-2], lhs[-1], rhs[-1]
        layout = ("N" if lhs_strides[-1] == 1 else "T") + ("N" if rhs_strides[-1] == 1 else "T")
        r = rows[(tuple(lhs), tuple(rhs), layout)]
        r[0] += 1
        r[1] += ns
        r[2] += 2 * batch * m * k * n
    total_ns = sum(r[1] for r in rows.values())
    print(f"{total_ns / 1e6 / steps:.1f} ms of products per step, "
          f"{sum(r[2] for r in rows.values()) / 1e9 / steps:.1f} GFLOP per step\n")
    print("| ms per step | share | products per step | GFLOP/s | left | right | layout |")
    print("|---:|---:|---:|---:|---|---|---|")
    for (lhs, rhs, layout), (count, ns, flop) in sorted(rows.items(), key=lambda x: -x[1][1])[:a.top]:
        print(f"| {ns / 1e6 / steps:.2f} | {ns / total_ns:.1%} | {count / steps:g} | "
              f"{flop / ns:.0f} | {list(lhs)} | {list(rhs)} | {layout} |")


if __name__ == "__main__":
    main()
