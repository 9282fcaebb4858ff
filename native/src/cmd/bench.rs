//! `normtune bench`: training-step time (forward + backward + AdamW), samples/s, greedy answer
//! latency and peak memory of one PEFT method on one model shape, on synthetic inputs.
//!
//! The model is a HF BLIP VQA folder (`--model`; with only `config.json` it is initialised
//! randomly) or a preset shape (`--preset`, the same `config.json` files the PyTorch reference in
//! `native/bench/reference/` reads). One configuration per process, so the peak resident memory
//! belongs to it alone. Denormal floats are flushed to zero by default (randomly initialised
//! transformers produce many, and x86 cores slow down several-fold on them; the reference does
//! the same with `torch.set_flush_denormal(True)`).

use crate::cli::BenchArgs;
use crate::fs::DirSource;
use crate::sys::{median, peak_rss_mb};
use normtune_core::burn::module::Module;
use normtune_core::burn::tensor::{Distribution, Int, Tensor};
use normtune_core::device::choose;
use normtune_core::models::Pipeline;
use normtune_core::models::blip::generate::SpecialTokens;
use normtune_core::models::blip::{BlipConfig, BlipForQuestionAnswering, GenConfig};
use normtune_core::models::llava::{LlavaConfig, LlavaForConditionalGeneration};
use normtune_core::peft::{self, PeftConfig};
use normtune_core::source::{FileSource, MemorySource};
use normtune_core::train::synthetic::{self, ordinary_ids};
use normtune_core::train::{Batch, TrainConfig, Trainer};
use serde_json::json;
use std::time::Instant;

/// The preset shapes (HF `config.json` files, shared with the PyTorch reference).
pub const PRESETS: [(&str, &str); 6] = [
    ("tiny", include_str!("../../bench/presets/tiny.json")),
    ("small", include_str!("../../bench/presets/small.json")),
    (
        "blip-base-224",
        include_str!("../../bench/presets/blip-base-224.json"),
    ),
    (
        "blip-base-480",
        include_str!("../../bench/presets/blip-base-480.json"),
    ),
    // A small CLIP tower (6x384 at 224, patch 32: 49 image tokens) under the SmolLM2-135M
    // decoder's shape.
    (
        "llava-smol",
        include_str!("../../bench/presets/llava-smol.json"),
    ),
    // LLaVA-1.5-7B's shape (CLIP ViT-L/14 at 336: 576 image tokens; the LLaMA-7B decoder,
    // 32x4096, vocabulary 32,064): the GPU benchmark's large row (native/bench/gpu).
    (
        "llava-7b",
        include_str!("../../bench/presets/llava-7b.json"),
    ),
];

/// Sets the x86 flush-to-zero and denormals-are-zero bits for this thread, the other threads
/// of the rayon pool it runs on (the command's, started before this), and the threads it starts
/// afterwards (Linux copies the FP control state to new threads).
fn flush_denormals() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        let flush = || {
            #[allow(deprecated)]
            // SAFETY: only changes how this thread's SSE unit rounds subnormal results.
            unsafe {
                use std::arch::x86_64::{_mm_getcsr, _mm_setcsr};
                _mm_setcsr(_mm_getcsr() | 0x8040);
            }
        };
        flush();
        rayon::broadcast(|_| flush());
        true
    }
    #[cfg(not(target_arch = "x86_64"))]
    false
}

/// Whether the CPU optimizer step runs inside the backward pass (the trainer's default);
/// `NORMTUNE_OPTIMIZER_IN_BACKWARD=0` holds every gradient to the end of the pass instead, to
/// measure the two in one binary (BENCHMARKS.md).
fn optimizer_in_backward() -> bool {
    std::env::var("NORMTUNE_OPTIMIZER_IN_BACKWARD").as_deref() != Ok("0")
}

/// Median, min and max of `v` (NaN for none, as with `--answers 0`).
fn stats(v: &[f64]) -> (f64, f64, f64) {
    let mut s = v.to_vec();
    let median = median(&mut s).unwrap_or(f64::NAN);
    let end = |x: Option<&f64>| x.copied().unwrap_or(f64::NAN);
    (median, end(s.first()), end(s.last()))
}

pub fn run(a: BenchArgs) -> anyhow::Result<()> {
    anyhow::ensure!(a.batch >= 1, "--batch must be at least 1");
    anyhow::ensure!(a.steps >= 1, "--steps must be at least 1");
    let flushed = !a.keep_denormals && flush_denormals();
    let chosen = choose(a.device.device).map_err(anyhow::Error::msg)?;
    if let Some(shape) = a.matmul {
        return matmul_peak(shape, a.steps, a.warmup, &chosen.device, flushed, a.json);
    }
    let train_device = chosen.device.clone().autodiff();
    let (pipeline, name, weights) = match (&a.model, &a.preset) {
        (Some(dir), None) => {
            let src = DirSource::open_model(dir)?;
            let weights = pollster::block_on(src.exists("model.safetensors"))
                || pollster::block_on(src.exists("model.safetensors.index.json"));
            let p = pollster::block_on(Pipeline::load_with(&src, &train_device, weights))?;
            (p, dir.display().to_string(), weights)
        }
        (None, Some(preset)) => {
            let Some((_, json)) = PRESETS.iter().find(|(n, _)| n == preset) else {
                anyhow::bail!(
                    "--preset {preset}: unknown (one of {})",
                    PRESETS.map(|p| p.0).join(", ")
                );
            };
            let mut src = MemorySource::new();
            src.insert("config.json", json.as_bytes().to_vec());
            let p = pollster::block_on(Pipeline::load_with(&src, &train_device, false))?;
            (p, format!("preset {preset}"), false)
        }
        _ => anyhow::bail!("give exactly one of --model DIR and --preset NAME"),
    };
    if let Some(cfg) = pipeline.config.get::<LlavaConfig>() {
        let cfg = cfg.clone();
        return run_llava(&a, pipeline, &cfg, &name, weights, flushed, &chosen.reason);
    }
    anyhow::ensure!(
        a.frozen_dtype.is_none(),
        "--frozen-dtype: implemented for LLaVA models (their language model) only"
    );
    let cfg = match (
        pipeline.config.get::<BlipConfig>(),
        pipeline.model.get::<BlipForQuestionAnswering>(),
    ) {
        (Some(cfg), Some(_)) => cfg.clone(),
        _ => anyhow::bail!(
            "{name}: bench measures BLIP VQA and LLaVA models (BlipForQuestionAnswering, LlavaForConditionalGeneration)"
        ),
    };
    let device = pipeline.device.clone();
    let peft_cfg = PeftConfig::parse(&a.peft)?;
    device.seed(a.seed);
    let model = peft::apply(pipeline.model, &peft_cfg)?;
    let report = peft::report(&model);

    // Synthetic inputs (core's `train::synthetic`, as the web app's "Time a step" uses).
    let vocab = cfg.text_config.vocab_size as i64;
    let (lo, span) = ordinary_ids(vocab);
    let cls = if vocab > 101 { 101 } else { 0 };
    let bos = cfg
        .text_config
        .bos_token_id
        .ok_or_else(|| anyhow::anyhow!("{name}: text_config.bos_token_id missing"))?;
    let side = cfg.vision_config.image_size;
    let b = a.batch;
    let batch = synthetic::vqa_batch(&cfg, b, a.question_len, a.answer_len, a.seed, &device)?;

    let tcfg = TrainConfig {
        lr: a.lr,
        warmup_steps: 0,
        total_steps: a.warmup + a.steps,
        max_grad_norm: None,
        recompute_attention: a.recompute_attention,
        ..TrainConfig::default()
    };
    let mut trainer = Trainer::new(model, tcfg)?;
    let in_backward = optimizer_in_backward();
    trainer.set_optimizer_in_backward(in_backward);
    if !a.json {
        eprintln!(
            "{name}: {} | batch {b} | {} warm-up + {} timed steps | {} | denormals {}",
            report.peft_line(),
            a.warmup,
            a.steps,
            chosen.reason,
            if flushed { "flushed" } else { "kept" }
        );
    }
    let (times, losses) = time_steps(&mut trainer, &batch, &a, &device)?;
    let train_rss = peak_rss_mb();
    let (step_med, step_min, step_max) = stats(&times);

    // Greedy answer latency for one image and question, a fixed number of new tokens (the stop
    // token is never emitted, so every run decodes `answer_tokens` tokens).
    let (infer, merged) = merged_for_answers(trainer.into_model().valid(), &a);
    let Some(m) = infer.get::<BlipForQuestionAnswering>() else {
        unreachable!("checked above")
    };
    let inner = device.clone().inner();
    let pixels = Tensor::<4>::random([1, 3, side, side], Distribution::Normal(0.0, 1.0), &inner);
    let q = Tensor::<1, Int>::from_ints(
        (0..a.question_len as i64)
            .map(|i| if i == 0 { cls } else { lo + (i * 7919) % span })
            .collect::<Vec<_>>()
            .as_slice(),
        &inner,
    )
    .reshape([1, a.question_len]);
    let tokens = SpecialTokens {
        bos,
        eos: -1,
        pad: cfg.text_config.pad_token_id.unwrap_or(0),
    };
    let gen_cfg = GenConfig {
        num_beams: 1,
        max_new_tokens: a.answer_tokens,
        ..GenConfig::default()
    };
    let mut answer_times = Vec::new();
    for i in 0..a.answers + 1 {
        let t = Instant::now();
        let out =
            pollster::block_on(m.generate(pixels.clone(), q.clone(), None, &tokens, &gen_cfg))?;
        let ms = t.elapsed().as_secs_f64() * 1e3;
        anyhow::ensure!(
            out[0].len() == a.answer_tokens + 1,
            "generation stopped early ({} tokens)",
            out[0].len()
        );
        if i > 0 {
            answer_times.push(ms);
        }
    }
    let (answer_med, _, _) = stats(&answer_times);
    let v = json!({
        "model": name,
        "weights": weights,
        "peft": a.peft,
        "recompute_attention": a.recompute_attention,
        "device": chosen.reason,
        "batch": b,
        "replicas": a.replicas,
        "image_size": side,
        "question_len": a.question_len,
        "answer_len": a.answer_len,
        "warmup": a.warmup,
        "steps": a.steps,
        "denormals_flushed": flushed,
        "step_ms_median": step_med,
        "step_ms_min": step_min,
        "step_ms_max": step_max,
        "step_ms": times,
        "samples_per_s": b as f64 / (step_med / 1e3),
        "answer_tokens": a.answer_tokens,
        "answer_ms_median": answer_med,
        "answers_merged": merged, "optimizer_in_backward": in_backward,
        "peak_rss_mb": peak_rss_mb(),
        "train_peak_rss_mb": train_rss,
        "trainable_params": report.trainable_params,
        "total_params": report.total_params,
        "first_loss": losses.first(),
        "last_loss": losses.last(),
    });
    print_row(&a, &v);
    Ok(())
}

/// The LLaVA row: each example `<s>`, the image tokens, `question_len - 1` question tokens, then
/// `answer_len` answer tokens (the only ones learned), no label smoothing (HF's LLaVA loss has
/// none); the answer: greedy decoding of `answer_tokens` new tokens after the prompt, batch 1.
/// The model the answers are timed on: as the PyTorch reference (`merge_and_unload`), with its
/// LoRA (and IA3) weights folded into the base weights where every adapter can be, so each
/// decoded token costs what the base model's does. Frozen weights kept in f16/bf16 are left as
/// trained (their merge would change dtype). Returns whether it merged.
fn merged_for_answers(
    model: normtune_core::models::Model,
    a: &BenchArgs,
) -> (normtune_core::models::Model, bool) {
    if a.frozen_dtype.is_some() || peft::unmergeable(&model).is_some() {
        return (model, false);
    }
    let merged = peft::ia3::fold(model).materialize();
    (merged, true)
}

fn run_llava(
    a: &BenchArgs,
    pipeline: Pipeline,
    cfg: &normtune_core::models::llava::LlavaConfig,
    name: &str,
    weights: bool,
    flushed: bool,
    reason: &str,
) -> anyhow::Result<()> {
    let device = pipeline.device.clone();
    let peft_cfg = PeftConfig::parse(&a.peft)?;
    device.seed(a.seed);
    let model = peft::apply(pipeline.model, &peft_cfg)?;
    let report = peft::report(&model);
    let model = match a.frozen_dtype {
        Some(dt) => {
            let (m, n) = peft::store_frozen(model, dt)?;
            if !a.json {
                eprintln!("frozen weights: {n} values stored as {}", dt.name());
            }
            m
        }
        None => model,
    };
    let vocab = cfg.text_config.vocab_size as i64;
    let (lo, span) = ordinary_ids(vocab);
    let side = cfg.vision_config.image_size;
    let n = cfg.image_tokens();
    let b = a.batch;
    let mut x = a.seed.wrapping_mul(6364136223846793005);
    let mut tok = || {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        lo + ((x >> 33) as i64) % span
    };
    let row = |tok: &mut dyn FnMut() -> i64, len: usize| -> Vec<i64> {
        let mut r = vec![1];
        r.extend(std::iter::repeat_n(cfg.image_token_index, n));
        r.extend((1..len).map(|_| tok()));
        r
    };
    let ids: Vec<Vec<i64>> = (0..b)
        .map(|_| row(&mut tok, a.question_len + a.answer_len))
        .collect();
    let batch = Batch::Chat {
        pixels: Tensor::<4>::random([b, 3, side, side], Distribution::Normal(0.0, 1.0), &device),
        ids,
        learned: vec![vec![n + a.question_len..n + a.question_len + a.answer_len]; b],
    };
    let tcfg = TrainConfig {
        lr: a.lr,
        warmup_steps: 0,
        total_steps: a.warmup + a.steps,
        max_grad_norm: None,
        recompute_attention: a.recompute_attention,
        label_smoothing: 0.0,
        ..TrainConfig::default()
    };
    let mut trainer = Trainer::new(model, tcfg)?;
    let in_backward = optimizer_in_backward();
    trainer.set_optimizer_in_backward(in_backward);
    if !a.json {
        eprintln!(
            "{name}: {} | batch {b} | {} warm-up + {} timed steps | {reason} | denormals {}",
            report.peft_line(),
            a.warmup,
            a.steps,
            if flushed { "flushed" } else { "kept" }
        );
    }
    let (times, losses) = time_steps(&mut trainer, &batch, a, &device)?;
    let train_rss = peak_rss_mb();
    let (step_med, step_min, step_max) = stats(&times);
    let (infer, merged) = merged_for_answers(trainer.into_model().valid(), a);
    let Some(m) = infer.get::<LlavaForConditionalGeneration>() else {
        unreachable!("a LLaVA config builds a LLaVA model")
    };
    let inner = device.clone().inner();
    let pixels = Tensor::<4>::random([1, 3, side, side], Distribution::Normal(0.0, 1.0), &inner);
    let mut i = 0i64;
    let prompt = row(
        &mut || {
            i += 1;
            lo + (i * 7919) % span
        },
        a.question_len,
    );
    let mut answer_times = Vec::new();
    for i in 0..a.answers + 1 {
        let t = Instant::now();
        let out =
            pollster::block_on(m.generate_greedy(&prompt, pixels.clone(), a.answer_tokens, &[]))?;
        let ms = t.elapsed().as_secs_f64() * 1e3;
        anyhow::ensure!(out.len() == a.answer_tokens, "generation stopped early");
        if i > 0 {
            answer_times.push(ms);
        }
    }
    let (answer_med, _, _) = stats(&answer_times);
    let v = json!({
        "model": name, "weights": weights, "peft": a.peft, "frozen_dtype": a.frozen_dtype,
        "recompute_attention": a.recompute_attention, "device": reason, "batch": b, "replicas": a.replicas,
        "image_size": side, "image_tokens": n, "question_len": a.question_len,
        "answer_len": a.answer_len, "warmup": a.warmup, "steps": a.steps,
        "denormals_flushed": flushed, "step_ms_median": step_med, "step_ms_min": step_min,
        "step_ms_max": step_max, "step_ms": times,
        "samples_per_s": b as f64 / (step_med / 1e3), "answer_tokens": a.answer_tokens,
        "answer_ms_median": answer_med, "answers_merged": merged, "optimizer_in_backward": in_backward, "peak_rss_mb": peak_rss_mb(),
        "train_peak_rss_mb": train_rss, "trainable_params": report.trainable_params,
        "total_params": report.total_params, "first_loss": losses.first(),
        "last_loss": losses.last(),
    });
    print_row(a, &v);
    Ok(())
}

/// Prints a row: the JSON object with `--json`, else one line from its fields.
fn print_row(a: &BenchArgs, v: &serde_json::Value) {
    if a.json {
        println!("{v}");
        return;
    }
    let f = |k: &str| v[k].as_f64().unwrap_or(f64::NAN);
    println!(
        "step {:.1} ms median (min {:.1}, max {:.1}) | {:.2} samples/s | answer {:.1} ms ({} tokens) | peak RSS {} MB",
        f("step_ms_median"),
        f("step_ms_min"),
        f("step_ms_max"),
        f("samples_per_s"),
        f("answer_ms_median"),
        a.answer_tokens,
        peak_rss_mb().map_or("?".into(), |m| format!("{m:.0}"))
    );
}

/// Runs `warmup + steps` training steps, each timed whole (the device synchronised); returns
/// the timed steps' milliseconds and every step's loss.
fn time_steps(
    trainer: &mut Trainer,
    batch: &Batch,
    a: &BenchArgs,
    device: &normtune_core::burn::tensor::Device,
) -> anyhow::Result<(Vec<f64>, Vec<f32>)> {
    let mut times = Vec::with_capacity(a.steps);
    let mut losses = Vec::with_capacity(a.warmup + a.steps);
    let replicas = vec![device.clone(); a.replicas as usize];
    for i in 0..a.warmup + a.steps {
        let t = Instant::now();
        let ev = pollster::block_on(trainer.step_parallel(batch, &replicas))?;
        // The loss readback waits for the forward pass; the optimizer update may still be queued
        // on an asynchronous device: wait for it too, so each step is timed whole.
        device
            .sync()
            .map_err(|e| anyhow::anyhow!("device: {e:?}"))?;
        let ms = t.elapsed().as_secs_f64() * 1e3;
        losses.push(ev.loss);
        if i >= a.warmup {
            times.push(ms);
        }
        if !a.json {
            eprintln!("  step {:>3}: {ms:>9.1} ms  loss {:.4}", i + 1, ev.loss);
        }
    }
    Ok((times, losses))
}

/// Times `steps` M×K by K×N matmuls (B of them at once, batched, as attention's) after
/// `warmup` untimed ones (N×N ones: the practical peak of the device).
fn matmul_peak(
    shape: crate::cli::MatmulShape,
    steps: usize,
    warmup: usize,
    device: &normtune_core::burn::tensor::Device,
    flushed: bool,
    json: bool,
) -> anyhow::Result<()> {
    let crate::cli::MatmulShape {
        batch,
        m,
        k,
        n,
        transposed,
    } = shape;
    let normal = Distribution::Normal(0.0, 1.0);
    // Batch 1: the 2-D product a linear layer runs; more: a batched 3-D product (attention's).
    // Either way the product and its sum (so an asynchronous device finishes the whole product).
    let product: Box<dyn Fn() -> Tensor<1>> = if batch == 1 {
        let x = Tensor::<2>::random([m, k], normal, device);
        let y = if transposed {
            Tensor::<2>::random([n, k], normal, device).transpose()
        } else {
            Tensor::<2>::random([k, n], normal, device)
        };
        Box::new(move || x.clone().matmul(y.clone()).sum())
    } else {
        let x = Tensor::<3>::random([batch, m, k], normal, device);
        let y = if transposed {
            Tensor::<3>::random([batch, n, k], normal, device).swap_dims(1, 2)
        } else {
            Tensor::<3>::random([batch, k, n], normal, device)
        };
        Box::new(move || x.clone().matmul(y.clone()).sum())
    };
    let mut times = Vec::with_capacity(steps);
    for i in 0..warmup + steps {
        let t = Instant::now();
        let z = product();
        // Wait for the whole product: reading back one element of it did not (on the H200 over
        // Vulkan, with fusion, it reported 2 PFLOP/s for f32).
        let _ = z.into_data();
        device
            .sync()
            .map_err(|e| anyhow::anyhow!("device: {e:?}"))?;
        let ms = t.elapsed().as_secs_f64() * 1e3;
        if i >= warmup {
            times.push(ms);
        }
    }
    let (med, min, max) = stats(&times);
    let gflops = 2.0 * (batch * m * k * n) as f64 / (med / 1e3) / 1e9;
    let b = if batch == 1 {
        String::new()
    } else {
        format!("{batch}x")
    };
    let label = format!("{b}{m}x{k}x{n}{}", if transposed { "t" } else { "" });
    if json {
        println!(
            "{}",
            json!({ "matmul": label, "batch": batch, "m": m, "k": k, "n": n, "transposed": transposed,
                    "ms_median": med, "ms_min": min, "ms_max": max,
                    "gflops": gflops, "denormals_flushed": flushed })
        );
    } else {
        println!(
            "matmul {label}: {med:.2} ms median (min {min:.2}, max {max:.2}) = {gflops:.1} GFLOP/s"
        );
    }
    Ok(())
}
