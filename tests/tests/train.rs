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
    let losses: Vec<f32> = (0..steps)
        .map(|_| pollster::block_on(t.step(&batch)).unwrap().loss)
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
