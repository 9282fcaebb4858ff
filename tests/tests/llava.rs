//! The LLaVA-style model against transformers' `LlavaForConditionalGeneration` on the same
//! weights (`tests/fixtures/make_llava_fixtures.py`): projected image features, logits of a
//! prompt with the image spliced in, greedy continuation.

use normtune_core::burn::tensor::{Device, Tensor};
use normtune_core::models::llava;
use normtune_tests::*;

#[test]
fn tiny_llava_matches_hf() {
    let device = Device::flex();
    let dir = fixture("llava/tiny");
    let cfg = llava::LlavaConfig::from_json(
        &std::fs::read(dir.join("config.json")).unwrap(),
        "llava/tiny/config.json",
    )
    .unwrap();
    assert_eq!(cfg.image_tokens(), 16);
    let model = llava::load(
        &cfg,
        std::fs::read(dir.join("model.safetensors")).unwrap(),
        "model.safetensors",
        &device,
    )
    .unwrap();
    let r = reference_json("llava/tiny");
    let floats = |v: &serde_json::Value| -> Vec<f32> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap() as f32)
            .collect()
    };
    let ids: Vec<i64> = r["input_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_i64().unwrap())
        .collect();
    let pixels = floats(&r["pixel_values"]);
    let pixels = Tensor::<1>::from_floats(pixels.as_slice(), &device).reshape([1, 3, 28, 28]);

    let feats: Vec<f32> = model
        .image_features(pixels.clone())
        .into_data()
        .iter::<f32>()
        .collect();
    let err = max_rel_err(&feats, &floats(&r["image_features"]["values"]));
    println!("image features: max relative error {err:.2e}");
    assert!(err <= 1e-4, "image features: {err:.2e}");

    let logits: Vec<f32> = model
        .forward(&ids, pixels.clone())
        .unwrap()
        .into_data()
        .iter::<f32>()
        .collect();
    let err = max_rel_err(&logits, &floats(&r["logits"]["values"]));
    println!("logits: max relative error {err:.2e}");
    assert!(err <= 1e-4, "logits: {err:.2e}");

    let greedy = pollster::block_on(model.generate_greedy(&ids, pixels.clone(), 6, None)).unwrap();
    let want: Vec<i64> = r["greedy"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_i64().unwrap())
        .collect();
    assert_eq!(greedy, want, "greedy continuation");

    // A prompt whose image tokens do not match the image is refused, not silently misaligned.
    let e = model.forward(&ids[..10], pixels).unwrap_err().to_string();
    assert!(
        e.contains("5 image token(s)") && e.contains("16 feature(s)"),
        "{e}"
    );
}
