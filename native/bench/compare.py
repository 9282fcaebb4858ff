#!/usr/bin/env python3
"""Runs `normtune bench` and the PyTorch reference on the same rows, in one run on one machine,
and prints the table BENCHMARKS.md records (markdown), plus the raw JSON lines.

    cargo build --release -p normtune
    python3 native/bench/compare.py --normtune target/release/normtune \
        --presets tiny,small --methods layernorm,lora,full --batch 4 --steps 10

Each configuration runs in its own process, normtune and PyTorch alternating, so slow drifts of
the machine hit both sides alike. With `--rounds N` every row runs N times, the side that goes
first swapping each round; a row's times are the median of its rounds' medians and its ratios the
median of the per-round ratios (their range is printed beside), so one noisy process moves
neither. Ratios are normtune / PyTorch (below 1: normtune is faster or smaller). The trainable-parameter counts of both sides must agree, else the row is not the same
experiment and the script stops.
"""

import argparse
import json
import os
import platform
import statistics
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


def forward_flops(cfg, b, lq, la):
    """Multiply-add FLOPs (2 per MAC) of one BLIP VQA forward pass: ViT, question encoder with
    cross-attention to the image, answer decoder with cross-attention to the question, LM head."""
    v, t = cfg["vision_config"], cfg["text_config"]
    dv, iv, p = v["hidden_size"], v["intermediate_size"], v["patch_size"]
    n = (v["image_size"] // p) ** 2 + 1
    vit = 2 * (n - 1) * 3 * p * p * dv + v["num_hidden_layers"] * (
        2 * n * 4 * dv * dv + 4 * n * n * dv + 2 * n * 2 * dv * iv)
    d, i, layers = t["hidden_size"], t["intermediate_size"], t["num_hidden_layers"]

    def bert(l, ctx, dctx):
        return layers * (2 * l * 4 * d * d + 4 * l * l * d          # self-attention
                         + 2 * l * 2 * d * d + 2 * ctx * 2 * dctx * d  # cross q, o; k, v
                         + 4 * l * ctx * d + 2 * l * 2 * d * i)      # cross scores; MLP
    head = 2 * la * (d * d + d * t["vocab_size"])
    return b * (vit + bert(lq, n, dv) + bert(la, lq, d) + head)


def summarize(runs):
    """One side's row over its rounds: the first run's fields, with the step and answer times
    the median of the rounds' medians and the peak RSS the median of the rounds' peaks."""
    v = dict(runs[0])
    for key in ("step_ms_median", "answer_ms_median", "peak_rss_mb"):
        xs = [x[key] for x in runs if x[key] is not None]
        v[key] = statistics.median(xs) if xs else float("nan")
    return v


def preset_config(name):
    with open(os.path.join(HERE, "presets", name + ".json")) as f:
        return json.load(f)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--normtune", required=True, help="the normtune binary (a release build)")
    p.add_argument("--presets", default="tiny,small")
    p.add_argument("--methods", default="layernorm,lora,full")
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--answers", type=int, default=5)
    p.add_argument("--llava-batch", type=int, default=2,
                   help="batch of the llava-* presets (issue 25 measures llava-smol at 2)")
    p.add_argument("--llava-answer-tokens", type=int, default=8,
                   help="tokens each greedy answer decodes on the llava-* presets")
    p.add_argument("--rounds", type=int, default=1,
                   help="runs of every row, the first side alternating (times: median of rounds)")
    p.add_argument("--out", help="also write the JSON lines here")
    p.add_argument("--recompute-attention", action="store_true",
                   help="normtune's side recomputes attention probabilities in the backward pass "
                        "(train.recompute_attention); PyTorch's side is unchanged (HF's eager "
                        "attention, or SDPA where the model uses it)")
    a = p.parse_args()
    def common(preset):
        llava = preset.startswith("llava")
        return (["--batch", str(a.llava_batch if llava else a.batch), "--steps", str(a.steps),
                 "--warmup", str(a.warmup), "--answers", str(a.answers), "--json"]
                + (["--answer-tokens", str(a.llava_answer_tokens)] if llava else []))
    peak = {}
    for side, cmd in (("normtune", [a.normtune, "bench", "--device", "cpu"]),
                      ("PyTorch", [sys.executable, os.path.join(HERE, "reference", "bench_torch.py")])):
        peak[side] = run(cmd + ["--matmul", "1024", "--steps", "10", "--json"])["gflops"]
    rows = []
    for preset in a.presets.split(","):
        for method in a.methods.split(","):
            cmds = {"normtune": [a.normtune, "bench", "--preset", preset, "--peft", method,
                                 "--device", "cpu"] + common(preset)
                                + (["--recompute-attention"] if a.recompute_attention else []),
                    "PyTorch": [sys.executable, os.path.join(HERE, "reference", "bench_torch.py"),
                                "--preset", preset, "--peft", method] + common(preset)}
            runs = {"normtune": [], "PyTorch": []}
            for r in range(a.rounds):
                for side in (("normtune", "PyTorch") if r % 2 == 0 else ("PyTorch", "normtune")):
                    runs[side].append(run(cmds[side]))
                ours, ref = runs["normtune"][-1], runs["PyTorch"][-1]
                if ours["trainable_params"] != ref["trainable_params"]:
                    sys.exit(f"{preset}/{method}: trainable params differ: normtune "
                             f"{ours['trainable_params']:,} vs PyTorch {ref['trainable_params']:,}")
                print(f"{preset}/{method} round {r + 1}: normtune {ours['step_ms_median']:.0f} ms, "
                      f"PyTorch {ref['step_ms_median']:.0f} ms", file=sys.stderr, flush=True)
            rows.append((preset, method, summarize(runs["normtune"]), summarize(runs["PyTorch"]),
                         runs))
    if a.out:
        with open(a.out, "w") as f:
            for preset, method, _, _, runs in rows:
                for ours, ref in zip(runs["normtune"], runs["PyTorch"]):
                    f.write(json.dumps({"preset": preset, "method": method, "normtune": ours,
                                        "pytorch": ref}) + "\n")

    print(f"Machine: {cpu_name()}, {os.cpu_count()} logical cores; {rows[0][3]['device']}; "
          f"batch {a.batch}, {a.warmup} warm-up + {a.steps} timed steps, {a.rounds} round(s), "
          f"denormals flushed on both sides"
          f"{'; normtune recomputes attention probabilities' if a.recompute_attention else ''}.\n")
    print("| shape | method | trainable | step ms normtune | step ms PyTorch | ratio | "
          "answer ms normtune | answer ms PyTorch | ratio | peak RSS MB normtune | "
          "peak RSS MB PyTorch | ratio |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for preset, method, o, r, runs in rows:
        def ratio(key):
            v = sorted(x[key] / y[key] for x, y in zip(runs["normtune"], runs["PyTorch"])
                       if x[key] is not None and y[key] is not None)
            if not v:
                return "–"
            mid = statistics.median(v)
            return f"{mid:.2f}" if len(v) == 1 else f"{mid:.2f} ({v[0]:.2f}–{v[-1]:.2f})"
        print(f"| {preset} | {method} | {o['trainable_params']:,} | "
              f"{o['step_ms_median']:.1f} | {r['step_ms_median']:.1f} | {ratio('step_ms_median')} | "
              f"{o['answer_ms_median']:.1f} | {r['answer_ms_median']:.1f} | "
              f"{ratio('answer_ms_median')} | "
              f"{o['peak_rss_mb']:.0f} | {r['peak_rss_mb']:.0f} | {ratio('peak_rss_mb')} |")
    print(f"\nPeak f32 matmul rate (1024x1024, median of 10): normtune {peak['normtune']:.1f} "
          f"GFLOP/s, PyTorch {peak['PyTorch']:.1f} GFLOP/s. Rate reached by a full fine-tuning "
          "step (3 x the analytic forward FLOPs / step time):\n")
    print("| shape | side | step GFLOP | GFLOP/s | share of that side's matmul peak |")
    print("|---|---|---:|---:|---:|")
    for preset, method, o, r, _ in rows:
        if method != "full" or preset.startswith("llava"):
            continue  # (the FLOP count below is BLIP's)
        fl = 3 * forward_flops(preset_config(preset), a.batch, o["question_len"], o["answer_len"]) / 1e9
        for side, x in (("normtune", o), ("PyTorch", r)):
            rate = fl / (x["step_ms_median"] / 1e3)
            print(f"| {preset} | {side} | {fl:.1f} | {rate:.1f} | {rate / peak[side]:.0%} |")
    print("\nLayerNorm tuning against full fine-tuning (same side, same shape):\n")
    print("| shape | side | LN step / full step | LN peak RSS / full peak RSS |")
    print("|---|---|---:|---:|")
    by = {(p, m): (o, r) for p, m, o, r, _ in rows}
    for preset in a.presets.split(","):
        if (preset, "layernorm") in by and (preset, "full") in by:
            (lo, lr), (fo, fr) = by[(preset, "layernorm")], by[(preset, "full")]
            for side, ln, full in (("normtune", lo, fo), ("PyTorch", lr, fr)):
                print(f"| {preset} | {side} | {ln['step_ms_median'] / full['step_ms_median']:.2f} | "
                      f"{ln['peak_rss_mb'] / full['peak_rss_mb']:.2f} |")


if __name__ == "__main__":
    main()
