#!/usr/bin/env python3
"""PyTorch + transformers + peft reference for `normtune bench`: the same model shape, batch,
PEFT method, optimizer and synthetic inputs, timed the same way, printed as the same JSON.

    pip install torch transformers peft
    python3 native/bench/reference/bench_torch.py --preset small --peft layernorm --batch 4 --steps 10

One configuration per process (so the peak RSS is this configuration's). On the CPU (default)
or `--device cuda` (the GPU benchmark, native/bench/gpu: every timed interval ends with
`torch.cuda.synchronize()`, and the row adds `peak_gpu_mb`, torch's peak allocation during
training). Denormals are flushed to zero (torch.set_flush_denormal(True)) unless
--keep-denormals, as `normtune bench` does by default. Threads: torch's default (one per core),
as burn flex uses every core. `--frozen-dtype bf16|f16` (LLaVA): the language model's frozen
Linear and embedding weights stored in that dtype, each product computed in it and its output
cast back to f32, as normtune's `train.frozen_dtype` does.

What is timed, per step: forward (BlipForQuestionAnswering with labels, label smoothing 0.1 as
HF BLIP VQA and normtune's default), backward, AdamW step (weight decay 0.05, as normtune's
default), zero_grad. The answer: `generate` greedy with a KV cache, exactly `--answer-tokens` new
tokens (min_new_tokens = max_new_tokens), batch 1.
"""

import argparse
import json
import os
import resource
import statistics
import time

import torch
from transformers import BlipConfig, BlipForQuestionAnswering

HERE = os.path.dirname(os.path.abspath(__file__))
PRESETS = os.path.join(HERE, "..", "presets")


def parse():
    p = argparse.ArgumentParser()
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--matmul", type=int, help="time an N x N f32 matmul instead (peak FLOP rate)")
    g.add_argument("--model", help="HF BLIP VQA folder (config.json; weights if present)")
    g.add_argument("--preset",
                   help="tiny, small, blip-base-224, blip-base-480, llava-smol, llava-7b")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--frozen-dtype", choices=["f16", "bf16"])
    p.add_argument("--peft", default="layernorm", choices=["layernorm", "lora", "full"])
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--question-len", type=int, default=16)
    p.add_argument("--answer-len", type=int, default=6)
    p.add_argument("--answers", type=int, default=5)
    p.add_argument("--answer-tokens", type=int, default=10)
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--keep-denormals", action="store_true")
    p.add_argument("--json", action="store_true")
    return p.parse_args()


DEV = torch.device("cpu")


def sync():
    if DEV.type == "cuda":
        torch.cuda.synchronize()


def device_line():
    if DEV.type == "cuda":
        return "cuda (torch %s, %s)" % (torch.__version__, torch.cuda.get_device_name(0))
    return "cpu (torch %s, %d threads)" % (torch.__version__, torch.get_num_threads())


def peak_gpu_mb():
    return torch.cuda.max_memory_allocated() / 2 ** 20 if DEV.type == "cuda" else None


def store_frozen(model, dtype):
    """normtune's `frozen_dtype`: the language model's frozen Linear and Embedding weights in
    `dtype`; a Linear casts its input to `dtype` and its output back to f32, an Embedding its
    output. Returns how many values are stored in `dtype`."""
    n = 0
    lm = [model.model.language_model, model.lm_head]
    for root in lm:
        for m in root.modules():
            if not isinstance(m, (torch.nn.Linear, torch.nn.Embedding)):
                continue
            if any(p.requires_grad for p in m.parameters()):
                continue
            m.to(dtype)
            n += sum(p.numel() for p in m.parameters())
            if isinstance(m, torch.nn.Linear):
                m.register_forward_pre_hook(lambda mod, args: (args[0].to(mod.weight.dtype),))
            m.register_forward_hook(lambda mod, args, out: out.float())
    return n


def median_or_none(v):
    """The median, or None for no values (`--answers 0`), as `normtune bench` writes it."""
    return statistics.median(v) if v else None


def peak_rss_mb():
    # Linux ru_maxrss is in KiB.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def main():
    global DEV
    a = parse()
    DEV = torch.device(a.device)
    flushed = False if a.keep_denormals else bool(torch.set_flush_denormal(True))
    torch.manual_seed(a.seed)
    if a.matmul:
        n = a.matmul
        x, y = torch.randn(n, n), torch.randn(n, n)
        times = []
        for i in range(a.warmup + a.steps):
            t = time.perf_counter()
            x @ y
            if i >= a.warmup:
                times.append((time.perf_counter() - t) * 1e3)
        med = statistics.median(times)
        v = {"matmul": n, "ms_median": med, "ms_min": min(times), "ms_max": max(times),
             "gflops": 2 * n ** 3 / (med / 1e3) / 1e9, "denormals_flushed": flushed}
        print(json.dumps(v) if a.json else f"matmul {n}: {med:.1f} ms = {v['gflops']:.1f} GFLOP/s")
        return
    if a.preset and a.preset.startswith("llava"):
        return llava(a, flushed)
    if a.model:
        cfg = BlipConfig.from_pretrained(a.model)
        weights = os.path.exists(os.path.join(a.model, "model.safetensors"))
        with DEV:
            model = (BlipForQuestionAnswering.from_pretrained(a.model) if weights
                     else BlipForQuestionAnswering(cfg))
        name = a.model
    else:
        with open(os.path.join(PRESETS, a.preset + ".json")) as f:
            cfg = BlipConfig.from_dict(json.load(f))
        with DEV:
            model = BlipForQuestionAnswering(cfg)
        weights = False
        name = "preset " + a.preset
    cfg.text_config.label_smoothing = 0.1
    model.config.text_config.label_smoothing = 0.1
    model.text_decoder.label_smoothing = 0.1
    model.train()

    if a.peft == "layernorm":
        for p in model.parameters():
            p.requires_grad_(False)
        for m in model.modules():
            if isinstance(m, torch.nn.LayerNorm):
                for p in m.parameters():
                    p.requires_grad_(True)
    elif a.peft == "lora":
        from peft import LoraConfig, get_peft_model
        # normtune's default LoRA (MILE's): r 8, alpha 32, dropout 0.1, on the text models'
        # query/value and the vision encoder's fused qkv.
        model = get_peft_model(model, LoraConfig(r=8, lora_alpha=32, lora_dropout=0.1,
                                                 target_modules=["query", "value", "qkv"]))
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())

    tc, vc = cfg.text_config, cfg.vision_config
    g = torch.Generator().manual_seed(a.seed)
    b, side = a.batch, vc.image_size
    pixels = torch.randn(b, 3, side, side, generator=g)
    lo, hi = 1000, tc.vocab_size - 10
    q = torch.randint(lo, hi, (b, a.question_len), generator=g)
    q[:, 0] = 101
    # HF BLIP VQA training feeds `labels` as the decoder input too (already starting with the
    # decoder start token) and scores labels[:, 1:], as normtune does with its answer ids.
    labels = torch.randint(lo, hi, (b, a.answer_len), generator=g)
    labels[:, 0] = tc.bos_token_id
    pixels, q, labels = pixels.to(DEV), q.to(DEV), labels.to(DEV)
    params = [p for p in model.parameters() if p.requires_grad]
    optim = torch.optim.AdamW(params, lr=a.lr, weight_decay=0.05)

    times, losses = [], []
    for i in range(a.warmup + a.steps):
        t = time.perf_counter()
        out = model(input_ids=q, pixel_values=pixels, labels=labels,
                    attention_mask=torch.ones_like(q))
        out.loss.backward()
        optim.step()
        optim.zero_grad(set_to_none=True)
        sync()
        ms = (time.perf_counter() - t) * 1e3
        losses.append(float(out.loss))
        if i >= a.warmup:
            times.append(ms)
        if not a.json:
            print(f"  step {i + 1:>3}: {ms:>9.1f} ms  loss {losses[-1]:.4f}", flush=True)
    train_rss, train_gpu = peak_rss_mb(), peak_gpu_mb()

    model.eval()
    m = model.merge_and_unload() if a.peft == "lora" else model
    px1 = torch.randn(1, 3, side, side, generator=g).to(DEV)
    q1 = torch.tensor([[101] + [1000 + (i * 7919) % (tc.vocab_size - 1010)
                                for i in range(1, a.question_len)]]).to(DEV)
    answer_times = []
    with torch.no_grad():
        for i in range(a.answers + 1):
            t = time.perf_counter()
            out = m.generate(input_ids=q1, pixel_values=px1, max_new_tokens=a.answer_tokens,
                             min_new_tokens=a.answer_tokens, num_beams=1, do_sample=False)
            sync()
            ms = (time.perf_counter() - t) * 1e3
            assert out.shape[1] == a.answer_tokens + 1, out.shape
            if i > 0:
                answer_times.append(ms)

    v = {
        "model": name, "weights": weights, "peft": a.peft, "device": device_line(), "batch": b, "image_size": side,
        "question_len": a.question_len, "answer_len": a.answer_len, "warmup": a.warmup,
        "steps": a.steps, "denormals_flushed": flushed,
        "step_ms_median": statistics.median(times), "step_ms_min": min(times),
        "step_ms_max": max(times), "step_ms": times,
        "samples_per_s": b / (statistics.median(times) / 1e3),
        "answer_tokens": a.answer_tokens, "answer_ms_median": median_or_none(answer_times),
        "peak_rss_mb": peak_rss_mb(), "train_peak_rss_mb": train_rss,
        "peak_gpu_mb": train_gpu,
        "trainable_params": trainable, "total_params": total,
        "first_loss": losses[0], "last_loss": losses[-1],
    }
    print(json.dumps(v) if a.json else
          f"step {v['step_ms_median']:.1f} ms median | {v['samples_per_s']:.2f} samples/s | "
          f"answer {v['answer_ms_median'] or float('nan'):.1f} ms | peak RSS {v['peak_rss_mb']:.0f} MB | "
          f"trainable {trainable:,} / {total:,}")


def llava(a, flushed):
    """The LLaVA row, as `normtune bench` runs it: each example <s>, the image tokens,
    question_len - 1 question tokens and answer_len answer tokens, labels only on the answer;
    `layernorm` trains every LayerNorm and RMSNorm; `lora` puts peft LoRA (r 8, alpha 32, no
    dropout: normtune applies none on LLaVA) on q_proj/v_proj and the projector's two linears."""
    from transformers import LlavaConfig, LlavaForConditionalGeneration
    with open(os.path.join(PRESETS, a.preset + ".json")) as f:
        cfg = LlavaConfig.from_dict(json.load(f))
    with DEV:
        model = LlavaForConditionalGeneration(cfg).train()
    if a.peft == "layernorm":
        for p in model.parameters():
            p.requires_grad_(False)
        for m in model.modules():
            if isinstance(m, torch.nn.LayerNorm) or type(m).__name__.endswith("RMSNorm"):
                for p in m.parameters():
                    p.requires_grad_(True)
    elif a.peft == "lora":
        from peft import LoraConfig, get_peft_model
        # normtune's LoRA defaults (MILE's: r 8, alpha 32, dropout 0.1), as the BLIP row.
        model = get_peft_model(model, LoraConfig(
            r=8, lora_alpha=32, lora_dropout=0.1,
            target_modules=["q_proj", "v_proj", "linear_1", "linear_2"]))
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    if a.frozen_dtype:
        store_frozen(model, {"f16": torch.float16, "bf16": torch.bfloat16}[a.frozen_dtype])
    if DEV.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    vc, tc = cfg.vision_config, cfg.text_config
    n = (vc.image_size // vc.patch_size) ** 2
    g = torch.Generator().manual_seed(a.seed)
    b, side = a.batch, vc.image_size
    pixels = torch.randn(b, 3, side, side, generator=g)
    lo, hi = 1000, tc.vocab_size - 10
    text = torch.randint(lo, hi, (b, a.question_len + a.answer_len - 1), generator=g)
    ids = torch.cat([torch.ones(b, 1, dtype=torch.long),
                     torch.full((b, n), cfg.image_token_index, dtype=torch.long), text], 1)
    labels = torch.full_like(ids, -100)
    labels[:, n + a.question_len:] = ids[:, n + a.question_len:]
    pixels, ids, labels = pixels.to(DEV), ids.to(DEV), labels.to(DEV)
    params = [p for p in model.parameters() if p.requires_grad]
    optim = torch.optim.AdamW(params, lr=a.lr, weight_decay=0.05)
    times, losses = [], []
    for i in range(a.warmup + a.steps):
        t = time.perf_counter()
        out = model(input_ids=ids, pixel_values=pixels, labels=labels)
        out.loss.backward()
        optim.step()
        optim.zero_grad(set_to_none=True)
        sync()
        ms = (time.perf_counter() - t) * 1e3
        losses.append(float(out.loss))
        if i >= a.warmup:
            times.append(ms)
        if not a.json:
            print(f"  step {i + 1:>3}: {ms:>9.1f} ms  loss {losses[-1]:.4f}", flush=True)
    train_rss, train_gpu = peak_rss_mb(), peak_gpu_mb()
    model.eval()
    m = model.merge_and_unload() if a.peft == "lora" else model
    px1 = torch.randn(1, 3, side, side, generator=g).to(DEV)
    prompt = torch.tensor([[1] + [cfg.image_token_index] * n
                           + [1000 + (i * 7919) % (tc.vocab_size - 1010)
                              for i in range(1, a.question_len)]]).to(DEV)
    answer_times = []
    with torch.no_grad():
        for i in range(a.answers + 1):
            t = time.perf_counter()
            out = m.generate(input_ids=prompt, pixel_values=px1, max_new_tokens=a.answer_tokens,
                             min_new_tokens=a.answer_tokens, num_beams=1, do_sample=False)
            sync()
            ms = (time.perf_counter() - t) * 1e3
            assert out.shape[1] == prompt.shape[1] + a.answer_tokens, out.shape
            if i > 0:
                answer_times.append(ms)
    v = {
        "model": "preset " + a.preset, "weights": False, "peft": a.peft,
        "frozen_dtype": a.frozen_dtype,
        "device": device_line(),
        "batch": b, "image_size": side, "image_tokens": n, "question_len": a.question_len,
        "answer_len": a.answer_len, "warmup": a.warmup, "steps": a.steps,
        "denormals_flushed": flushed, "step_ms_median": statistics.median(times),
        "step_ms_min": min(times), "step_ms_max": max(times), "step_ms": times,
        "samples_per_s": b / (statistics.median(times) / 1e3),
        "answer_tokens": a.answer_tokens, "answer_ms_median": median_or_none(answer_times),
        "peak_rss_mb": peak_rss_mb(), "train_peak_rss_mb": train_rss,
        "peak_gpu_mb": train_gpu,
        "trainable_params": trainable, "total_params": total,
        "first_loss": losses[0], "last_loss": losses[-1],
    }
    print(json.dumps(v) if a.json else
          f"step {v['step_ms_median']:.1f} ms median | {v['samples_per_s']:.2f} samples/s | "
          f"answer {v['answer_ms_median'] or float('nan'):.1f} ms | peak RSS {v['peak_rss_mb']:.0f} MB | "
          f"trainable {trainable:,} / {total:,}")


if __name__ == "__main__":
    main()
