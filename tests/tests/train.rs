//! Training: the loss is HF's, and the loop actually fits (LayerNorm tuning lowers the loss;
//! full fine-tuning memorises two answers that greedy decoding then produces).

use normtune_core::burn::module::Module;
use normtune_core::burn::tensor::Device;
use normtune_core::data::decode_image;
use normtune_core::models::blip::GenConfig;
use normtune_core::models::{Model, Pipeline};
use normtune_core::peft::{self, PeftConfig};
use normtune_core::train::loss::lm_loss;
use normtune_core::train::{TrainConfig, Trainer};
use normtune_tests::*;

#[test]
fn lm_loss_matches_hf_with_label_smoothing() {
    let device = Device::flex();
    let p = pollster::block_on(Pipeline::load(&folder("blip_vqa"), &device)).unwrap();
    let Model::Vqa(m) = &p.model else { panic!() };
    let logits = vqa_decoder_logits(m, &device);
    let ids = reference("blip_vqa", "decoder_input_ids").int::<2>(&device);
    let dmask = reference("blip_vqa", "decoder_attention_mask").float::<2>(&device);
    let r = reference_json("blip_vqa");
    for (smoothing, key) in [(0.1, "decoder_loss"), (0.0, "decoder_loss_no_smoothing")] {
        let got = lm_loss(logits.clone(), ids.clone(), dmask.clone(), smoothing)
            .into_data()
            .iter::<f32>()
            .next()
            .unwrap();
        let want = r[key].as_f64().unwrap() as f32;
        println!("{key}: {got} vs HF {want}");
        assert!(
            (got - want).abs() <= 1e-5 * want.abs(),
            "{key}: {got} vs {want}"
        );
    }
}

fn fit(spec: &str, lr: f64, steps: usize) -> (Pipeline, Vec<f32>) {
    fit_on(spec, lr, steps, 1)
}

/// As `fit`, data-parallel over `devices` replicas (`Trainer::step_parallel`) when above 1.
fn fit_on(spec: &str, lr: f64, steps: usize, devices: usize) -> (Pipeline, Vec<f32>) {
    let device = Device::flex().autodiff();
    let mut p = pollster::block_on(Pipeline::load(&folder("blip_vqa"), &device)).unwrap();
    let img0 = decode_image(
        &std::fs::read(fixture("images/chest_32.png")).unwrap(),
        "chest_32.png",
    )
    .unwrap();
    let img1 = decode_image(
        &std::fs::read(fixture("images/chest_50x40.png")).unwrap(),
        "chest_50x40.png",
    )
    .unwrap();
    let batch = p
        .vqa_batch(&[
            (img0, "is there a left pleural effusion?", "yes"),
            (
                img1,
                "what organ is shown in this chest x ray image?",
                "the lung",
            ),
        ])
        .unwrap();
    let model = peft::apply(p.model, &PeftConfig::parse(spec).unwrap()).unwrap();
    let cfg = TrainConfig {
        lr,
        total_steps: steps,
        warmup_steps: 2,
        label_smoothing: 0.0,
        ..TrainConfig::default()
    };
    let mut t = Trainer::new(model, cfg).unwrap();
    let replicas = vec![device.clone(); devices];
    let losses: Vec<f32> = (0..steps)
        .map(|_| {
            if devices > 1 {
                pollster::block_on(t.step_parallel(&batch, &replicas))
            } else {
                pollster::block_on(t.step(&batch))
            }
            .unwrap()
            .loss
        })
        .collect();
    p.model = t.into_model();
    (p, losses)
}

#[test]
fn layernorm_tuning_lowers_the_loss() {
    let (_, losses) = fit("layernorm", 3e-2, 30);
    println!(
        "layernorm: loss {:.3} → {:.3}",
        losses[0],
        losses[losses.len() - 1]
    );
    assert!(losses[losses.len() - 1] < 0.5 * losses[0], "{losses:?}");
}

#[test]
fn full_fine_tuning_memorises_and_generation_says_it() {
    let (p, losses) = fit("full", 3e-3, 40);
    println!(
        "full: loss {:.3} → {:.3}",
        losses[0],
        losses[losses.len() - 1]
    );
    let device = Device::flex();
    let tok = p.tokenizer.as_ref().unwrap();
    let tokens = p.special_tokens().unwrap();
    let Model::Vqa(m) = &p.model.valid() else {
        panic!()
    };
    for (img, q, want) in [
        (
            "images/chest_32.png",
            "is there a left pleural effusion?",
            "yes",
        ),
        (
            "images/chest_50x40.png",
            "what organ is shown in this chest x ray image?",
            "the lung",
        ),
    ] {
        let pixels = p
            .image_tensor(&std::fs::read(fixture(img)).unwrap(), img)
            .unwrap()
            .to_device(&device);
        let ids = p.question_ids(q).unwrap().to_device(&device);
        let out = pollster::block_on(m.generate(
            pixels,
            ids,
            None,
            &tokens,
            &GenConfig {
                num_beams: 3,
                max_new_tokens: 5,
                length_penalty: 1.0,
            },
        ))
        .unwrap();
        assert_eq!(tok.decode(&out[0]).unwrap(), want, "{q}");
    }
}

/// Data parallel over two devices (two replicas of the CPU device: the same code path as two
/// GPUs) gives what one device gives on the same global batch: the two answers differ in length,
/// so the shards are weighted by their answer tokens, not their examples. (With dropout, as
/// LoRA's default, the shards draw other masks than one device would: same distribution, other
/// draws.)
#[test]
fn data_parallel_over_two_devices_equals_one_device() {
    for spec in ["layernorm", "full"] {
        let (one, l1) = fit_on(spec, 1e-2, 4, 1);
        let (two, l2) = fit_on(spec, 1e-2, 4, 2);
        for (a, b) in l1.iter().zip(&l2) {
            assert!((a - b).abs() <= 1e-5 * a.abs(), "{spec}: {l1:?} vs {l2:?}");
        }
        let values = |p: &Pipeline| -> Vec<Vec<f32>> {
            normtune_core::models::walk::params(&p.model, |_, _, t| t)
                .into_iter()
                .filter_map(|r| r.values)
                .collect()
        };
        let (v1, v2) = (values(&one), values(&two));
        assert!(!v1.is_empty());
        let worst = v1
            .iter()
            .zip(&v2)
            .map(|(a, b)| max_rel_err(b, a))
            .fold(0f32, f32::max);
        println!(
            "{spec}: losses {l1:?} (one device) vs {l2:?} (two); parameters within {worst:.2e}"
        );
        // Summing two shards' gradients rounds differently from one pass, and AdamW turns a
        // near-zero gradient's rounding into a full-size step (full fine-tuning has many such
        // parameters; repeated one-device runs differ too, by flex's threaded sums): the
        // parameters are held loosely there, the losses above tightly (a wrong weighting of the
        // shards moves the loss by 2% at the first step, 5% by the fourth).
        let tol = if spec == "full" { 1e-2 } else { 1e-4 };
        assert!(worst <= tol, "{spec}: parameters differ by {worst:.2e}");
    }
}
