//! `normtune inspect --estimate-memory` against the peak memory measured on the CPU (burn flex),
//! for LN tuning of LLaVA-style models (tower and decoder norms, projector trainable): two
//! training steps, peak resident memory (Linux `VmHWM`, reset before loading) minus the
//! resident memory before the model existed. Alone in its test binary: other tests' memory in
//! the same process would count.

use normtune_core::burn::tensor::{Device, Tensor};
use normtune_core::models::clip::ClipVisionConfig;
use normtune_core::models::llama::LlamaConfig;
use normtune_core::models::llava::LlavaConfig;
use normtune_core::models::walk::FrozenDtype;
use normtune_core::models::{Model, ModelConfig, memory};
use normtune_core::peft::{self, PeftConfig};
use normtune_core::train::{Batch, TrainConfig, Trainer};

fn status_mib(key: &str) -> Option<f64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let l = s.lines().find(|l| l.starts_with(key))?;
    Some(l.split_whitespace().nth(1)?.parse::<f64>().ok()? / 1024.0)
}

/// (estimated total, measured, estimated activations) MiB for LN tuning a random LLaVA of this
/// shape.
#[allow(clippy::too_many_arguments)]
fn run(
    batch: usize,
    text_len: usize,
    hidden: usize,
    intermediate: usize,
    layers: usize,
    vocab: usize,
    vision_hidden: usize,
    vision_layers: usize,
) -> (f64, f64, f64) {
    let cfg = LlavaConfig {
        vision_config: ClipVisionConfig {
            hidden_size: vision_hidden,
            intermediate_size: 4 * vision_hidden,
            num_hidden_layers: vision_layers,
            num_attention_heads: vision_hidden / 32,
            image_size: 112,
            patch_size: 14,
            ..Default::default()
        },
        text_config: LlamaConfig {
            vocab_size: vocab,
            hidden_size: hidden,
            intermediate_size: intermediate,
            num_hidden_layers: layers,
            num_attention_heads: hidden / 64,
            num_key_value_heads: Some((hidden / 64 / 3).max(1)),
            max_position_embeddings: 4096,
            ..Default::default()
        },
        image_token_index: vocab as i64 - 1,
        projector_hidden_act: Default::default(),
        vision_feature_layer: -2,
        vision_feature_select_strategy: "default".into(),
        multimodal_projector_bias: true,
    };
    std::fs::write("/proc/self/clear_refs", "5").expect("reset VmHWM");
    let before = status_mib("VmRSS:").unwrap();
    let device = if std::env::var("NORMTUNE_MEMORY_CHECKPOINTING").is_ok() {
        Device::flex().autodiff().gradient_checkpointing()
    } else {
        Device::flex().autodiff()
    };
    let model = Model::Llava(cfg.init(&device));
    let placement = PeftConfig::parse("vision=layernorm,projector=full,decoder=layernorm").unwrap();
    let model = peft::apply(model, &placement).unwrap();
    let config = ModelConfig::Llava(cfg.clone());
    let report = peft::report(&model);
    // `train.frozen_dtype = "f16"`: the language model's frozen weights in half precision.
    let (model, frozen) = if std::env::var("NORMTUNE_MEMORY_FROZEN_F16").is_ok() {
        let castable = peft::frozen::castable(&model, &placement);
        let (model, n) = peft::store_frozen(model, FrozenDtype::F16).unwrap();
        assert_eq!(n, castable, "the estimate counts what is converted");
        (model, Some((n, FrozenDtype::F16)))
    } else {
        (model, None)
    };
    let est = memory::estimate_training(
        &model,
        &config,
        &report,
        batch,
        text_len,
        // What `learned` below covers: the second half and one more.
        text_len - text_len / 2 + 1,
        frozen,
    )
    .unwrap();
    let n = cfg.image_tokens();
    let ids: Vec<Vec<i64>> = (0..batch)
        .map(|_| {
            let mut r = vec![1i64];
            r.extend(std::iter::repeat_n(cfg.image_token_index, n));
            r.extend((0..text_len).map(|t| 5 + (t % 1000) as i64));
            r
        })
        .collect();
    let b = Batch::Chat {
        pixels: Tensor::zeros([batch, 3, 112, 112], &device),
        ids,
        learned: vec![vec![n + text_len / 2..1 + n + text_len]; batch],
    };
    let mut trainer = Trainer::new(model, TrainConfig::default()).unwrap();
    for _ in 0..2 {
        pollster::block_on(trainer.step(&b)).unwrap();
    }
    let peak = status_mib("VmHWM:").unwrap();
    drop(trainer);
    (
        est.total as f64 / 1048576.0,
        peak - before,
        est.activations as f64 / 1048576.0,
    )
}

/// (estimated, measured) MiB for a shape, run in a fresh process (this test binary again).
fn measure(name: &str, checkpointing: bool) -> (f64, f64, f64) {
    measure_with(name, checkpointing, false)
}

fn measure_with(name: &str, checkpointing: bool, frozen_f16: bool) -> (f64, f64, f64) {
    let mut cmd = std::process::Command::new(std::env::current_exe().unwrap());
    cmd.args([
        "the_memory_estimate_is_within_20_percent_of_the_measured_peak",
        "--exact",
        "--nocapture",
        "--test-threads",
        "1",
    ])
    .env("NORMTUNE_MEMORY_SHAPE", name);
    if checkpointing {
        cmd.env("NORMTUNE_MEMORY_CHECKPOINTING", "1");
    }
    if frozen_f16 {
        cmd.env("NORMTUNE_MEMORY_FROZEN_F16", "1");
    }
    let out = cmd.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout
        .lines()
        .find_map(|l| l.split_once("RESULT ").map(|(_, r)| r))
        .unwrap_or_else(|| panic!("{name}: {stdout}{}", String::from_utf8_lossy(&out.stderr)));
    let v: Vec<f64> = line.split(' ').map(|x| x.parse().unwrap()).collect();
    (v[0], v[1], v[2])
}

const SHAPES: &[(&str, [usize; 8])] = &[
    // A 257-token prompt: attention-heavy.
    ("attention-heavy", [2, 192, 256, 768, 4, 4000, 128, 2]),
    // The SmolLM2-135M decoder's shape (576 wide, 30 layers, 9 heads, 3 KV heads, 49,152-token
    // vocabulary) under a small tower.
    ("SmolLM2-135M-shaped", [2, 64, 576, 1536, 30, 49152, 192, 4]),
];

#[test]
fn the_memory_estimate_is_within_20_percent_of_the_measured_peak() {
    if status_mib("VmHWM:").is_none() || std::fs::write("/proc/self/clear_refs", "5").is_err() {
        eprintln!("skipped: needs Linux's /proc/self/status and clear_refs");
        return;
    }
    // Each shape in a fresh process (this test binary again), so neither the test harness nor an
    // earlier shape's freed memory is counted.
    if let Ok(name) = std::env::var("NORMTUNE_MEMORY_SHAPE") {
        let [b, t, h, i, l, v, vh, vl] = SHAPES.iter().find(|s| s.0 == name).unwrap().1;
        let (est, measured, activations) = run(b, t, h, i, l, v, vh, vl);
        println!("RESULT {est} {measured} {activations}");
        return;
    }
    for (name, _) in SHAPES {
        let (est, measured, activations) = measure(name, false);
        let ratio = est / measured;
        println!("{name}: estimated {est:.1} MiB, measured {measured:.1} MiB, ratio {ratio:.3}");
        assert!(
            (0.8..=1.2).contains(&ratio),
            "{name}: estimated {est:.1} MiB, measured {measured:.1} MiB"
        );
        if *name == "SmolLM2-135M-shaped" {
            // burn's gradient checkpointing (`train.gradient_checkpointing`) keeps less. Its
            // Balanced strategy recomputes only memory-bound outputs (SiLU, products, norms,
            // softmax), and since LayerNorm/RMSNorm and softmax are one op each it frees little:
            // 43–48 MiB of the estimate's 438 MiB of activations (4.2–4.6 % of the peak) on the
            // hosts where this was measured, run to run within 1 MiB; 28.5 MiB (2.8 %) since
            // grouped-query attention stopped copying keys and values per query head (copies
            // checkpointing did not keep, so its saving shrank with them). The bound (2 %, ~8 MiB
            // above that noise) fails if checkpointing is off or keeps more.
            let (_, with, _) = measure(name, true);
            println!(
                "{name} with gradient checkpointing: measured {with:.1} MiB, {:.1} MiB less; the estimate's activations {activations:.1} MiB",
                measured - with
            );
            assert!(
                with < 0.98 * measured,
                "checkpointing: {with:.1} MiB vs {measured:.1} MiB without"
            );
            // Frozen weights in f16 (`train.frozen_dtype`): the estimate still holds, and the
            // peak falls by at least half the bytes the conversion frees (the decoder's ~134M
            // frozen values: ~256 MiB), which it could not if a forward kept f32 copies (the
            // peak would then not fall at all). Only half: the measured fall varies by host
            // and build more than the estimate models (299 MiB of ~310 on the 2-core host where
            // this was written; 243 MiB on a 2-core Xeon with the patched flex, 214 MiB
            // there while its buffers were 64-byte aligned, 276 MiB on a 2-core AMD EPYC once
            // softmax and LayerNorm were differentiated as one op each; where the rest goes is
            // not found).
            let (est16, measured16, _) = measure_with(name, false, true);
            let ratio16 = est16 / measured16;
            println!(
                "{name} with frozen weights in f16: estimated {est16:.1} MiB, measured {measured16:.1} MiB, ratio {ratio16:.3}"
            );
            assert!(
                (0.8..=1.2).contains(&ratio16),
                "f16: estimated {est16:.1} MiB, measured {measured16:.1} MiB"
            );
            let freed = est - est16;
            assert!(
                measured - measured16 > 0.5 * freed,
                "f16 frozen weights: measured {measured16:.1} MiB vs {measured:.1} MiB in f32; expected about {freed:.1} MiB less"
            );
        }
    }
}
