//! Bad input gives one clear error naming the file and field, never a panic.

use normtune_core::burn::tensor::Device;
use normtune_core::models::Pipeline;
use normtune_core::source::MemorySource;
use normtune_tests::*;
use safetensors::tensor::{Dtype, TensorView};
use std::collections::HashMap;

fn load_err(src: &MemorySource) -> String {
    match pollster::block_on(Pipeline::load(src, &Device::flex())) {
        Ok(_) => panic!("loading should fail"),
        Err(e) => e.to_string(),
    }
}

/// Rewrites `model.safetensors` of a fixture through `edit` (name → (shape, f32 values)).
fn edited_weights(
    rel: &str,
    edit: impl FnOnce(&mut HashMap<String, (Vec<usize>, Vec<f32>)>),
) -> MemorySource {
    let mut src = folder(rel);
    let bytes = std::fs::read(fixture(rel).join("model.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut tensors: HashMap<String, (Vec<usize>, Vec<f32>)> = st
        .tensors()
        .into_iter()
        .map(|(k, v)| {
            let vals = v
                .data()
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
                .collect();
            (k, (v.shape().to_vec(), vals))
        })
        .collect();
    edit(&mut tensors);
    let raw: Vec<(String, Vec<usize>, Vec<u8>)> = tensors
        .into_iter()
        .map(|(k, (s, v))| (k, s, v.iter().flat_map(|x| x.to_le_bytes()).collect()))
        .collect();
    let views: Vec<(String, TensorView)> = raw
        .iter()
        .map(|(k, s, b)| {
            (
                k.clone(),
                TensorView::new(Dtype::F32, s.clone(), b).unwrap(),
            )
        })
        .collect();
    src.insert(
        "model.safetensors",
        safetensors::serialize(views, None).unwrap(),
    );
    src
}

#[test]
fn missing_weights_file_is_named() {
    let mut src = folder("blip_vqa");
    src.remove("model.safetensors");
    let e = load_err(&src);
    assert!(e.contains("model.safetensors"), "{e}");
}

#[test]
fn missing_tensor_is_named() {
    let key = "vision_model.post_layernorm.weight";
    let e = load_err(&edited_weights("blip_vqa", |t| {
        t.remove(key);
    }));
    assert!(
        e.contains("model.safetensors") && e.contains("missing") && e.contains("post_layernorm"),
        "{e}"
    );
}

#[test]
fn unexpected_tensor_is_named() {
    let e = load_err(&edited_weights("vit_cls", |t| {
        t.insert("vit.extra_head.weight".into(), (vec![2], vec![0.0, 1.0]));
    }));
    assert!(e.contains("unexpected") && e.contains("extra_head"), "{e}");
}

#[test]
fn wrong_shape_is_named() {
    let key = "classifier.weight";
    let e = load_err(&edited_weights("vit_cls", |t| {
        let (shape, vals) = t.get_mut(key).unwrap();
        shape.reverse();
        let _ = vals;
    }));
    assert!(
        e.contains("classifier") && e.to_lowercase().contains("shape"),
        "{e}"
    );
}

#[test]
fn unknown_model_type_is_named() {
    let mut src = folder("vit_cls");
    src.insert(
        "config.json",
        br#"{"model_type": "gpt2", "architectures": ["GPT2LMHeadModel"]}"#.to_vec(),
    );
    let e = load_err(&src);
    assert!(
        e.contains("config.json") && e.contains("model_type") && e.contains("gpt2"),
        "{e}"
    );
}

/// A `model_type` normtune has a family for, with an architecture it does not implement (a
/// whole `CLIPModel`, not the image classifier), is named before any weight is read.
#[test]
fn an_architecture_without_a_family_is_named() {
    let mut src = folder("clip_cls");
    let config = std::fs::read_to_string(fixture("clip_cls/config.json")).unwrap();
    src.insert(
        "config.json",
        config
            .replace("CLIPForImageClassification", "CLIPModel")
            .into_bytes(),
    );
    let e = load_err(&src);
    assert!(
        e.contains("config.json")
            && e.contains("architectures")
            && e.contains("`CLIPModel` is not supported (CLIPForImageClassification)"),
        "{e}"
    );
}

#[test]
fn malformed_config_is_named() {
    let mut src = folder("blip_vqa");
    src.insert("config.json", b"{ not json".to_vec());
    let e = load_err(&src);
    assert!(e.contains("config.json"), "{e}");
    let mut src = folder("blip_vqa");
    src.insert("config.json", br#"{"model_type": "blip", "architectures": ["BlipForQuestionAnswering"], "vision_config": {"hidden_size": 48, "num_attention_heads": 5}}"#.to_vec());
    let e = load_err(&src);
    assert!(e.contains("num_attention_heads"), "{e}");
}

#[test]
fn not_an_image_is_named() {
    let p = pollster::block_on(Pipeline::load(&folder("blip_vqa"), &Device::flex())).unwrap();
    let bytes = std::fs::read(fixture("images/not_an_image.png")).unwrap();
    let e = p
        .image_tensor(&bytes, "not_an_image.png")
        .unwrap_err()
        .to_string();
    assert!(e.contains("not_an_image.png") && e.contains("image"), "{e}");
}

#[test]
fn empty_question_is_rejected() {
    let p = pollster::block_on(Pipeline::load(&folder("blip_vqa"), &Device::flex())).unwrap();
    let bytes = std::fs::read(fixture("images/chest_32.png")).unwrap();
    let pixels = p.image_tensor(&bytes, "chest_32.png").unwrap();
    let e = pollster::block_on(p.answer(pixels, "   ", &Default::default()))
        .unwrap_err()
        .to_string();
    assert!(e.contains("question"), "{e}");
}

#[test]
fn nan_weights_are_named() {
    let key = "text_encoder.encoder.layer.0.output.dense.weight";
    let e = load_err(&edited_weights("blip_vqa", |t| {
        let (_, vals) = t.get_mut(key).unwrap();
        vals[3] = f32::NAN;
        vals[7] = f32::INFINITY;
    }));
    assert!(
        e.contains("model.safetensors") && e.contains(key) && e.contains("2 NaN or infinite"),
        "{e}"
    );
    assert_eq!(e.lines().count(), 1, "{e}");
}

#[test]
fn a_truncated_checkpoint_is_named() {
    let mut src = folder("blip_vqa");
    let bytes = std::fs::read(fixture("blip_vqa").join("model.safetensors")).unwrap();
    src.insert("model.safetensors", bytes[..bytes.len() / 2].to_vec());
    let e = load_err(&src);
    assert!(
        e.contains("model.safetensors") && e.contains("not a safetensors file"),
        "{e}"
    );
}

#[test]
fn an_image_declaring_far_more_pixels_than_its_bytes_is_refused_at_once() {
    // Found by fuzzing: 1,169 bytes of JPEG declaring 2304 x 12584 x 3 pixels, which the decoder
    // produced in full (20 s under ASan).
    let bytes = std::fs::read(fixture("../fuzz/corpus/image/found-jpeg-bomb.jpg")).unwrap();
    let t0 = std::time::Instant::now();
    let e = normtune_core::data::decode_image(&bytes, "bomb.jpg")
        .unwrap_err()
        .to_string();
    assert_eq!(
        e,
        "bomb.jpg: not a readable image: declares 12584 x 2304 pixels in 1169 bytes: refused as a decompression bomb"
    );
    assert!(t0.elapsed().as_secs_f64() < 1.0, "{:?}", t0.elapsed());
    // A real image still decodes.
    let png = std::fs::read(fixture("images/chest_50x40.png")).unwrap();
    normtune_core::data::decode_image(&png, "chest_50x40.png").unwrap();
}
