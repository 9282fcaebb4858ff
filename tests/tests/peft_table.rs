//! The PEFT method table (peft `tests/test_custom_models.py` style): every selective method ×
//! every model class × each check.
//! - the trainable count equals the count computed independently from the HF tensor names;
//! - after AdamW steps (weight decay on) only the selected parameters changed, and every frozen
//!   one is bit-identical.

use normtune_core::burn::module::{Module, ModuleVisitor, Param};
use normtune_core::burn::optim::{AdamWConfig, GradientsParams};
use normtune_core::burn::tensor::{Device, Tensor};
use normtune_core::models::{Model, Pipeline};
use normtune_core::peft::{self, PeftConfig};
use normtune_tests::*;
use std::collections::BTreeMap;

const MODELS: &[&str] = &["blip_vqa", "blip_caption", "vit_cls"];
const METHODS: &[&str] = &["full", "layernorm", "ffn", "attention", "bitfit", "frozen"];

/// What each method trains, written against HF's tensor names (not normtune's module tree).
fn hf_selects(method: &str, name: &str) -> bool {
    let lower = name.to_lowercase();
    let bert_ffn_out = name
        .split('.')
        .collect::<Vec<_>>()
        .windows(3)
        .any(|w| w[0].parse::<usize>().is_ok() && w[1] == "output" && w[2] == "dense");
    let head = name.starts_with("classifier.");
    head || match method {
        "full" => true,
        "frozen" => false,
        "layernorm" => lower.contains("norm"),
        "bitfit" => name.ends_with(".bias"),
        "ffn" => name.contains(".mlp.") || name.contains(".intermediate.") || bert_ffn_out,
        "attention" => name.contains("attention") || name.contains("self_attn"),
        _ => unreachable!(),
    }
}

fn hf_trainable_count(rel: &str, method: &str) -> usize {
    let bytes = std::fs::read(fixture(rel).join("model.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    st.tensors()
        .iter()
        .filter(|(k, _)| hf_selects(method, k))
        .map(|(_, t)| t.shape().iter().product::<usize>())
        .sum()
}

/// Every parameter's path, trainability and values, in module order.
fn snapshot(m: &Model) -> Vec<(String, bool, Vec<f32>)> {
    #[derive(Default)]
    struct V(Vec<String>, Vec<(String, bool, Vec<f32>)>);
    impl ModuleVisitor for V {
        fn enter_module(&mut self, name: &str, _container: &str) {
            self.0.push(name.to_string());
        }
        fn exit_module(&mut self, _name: &str, _container: &str) {
            self.0.pop();
        }
        fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<D>>) {
            let v = p.val();
            self.1.push((
                self.0.join("."),
                v.is_require_grad(),
                v.into_data().iter::<f32>().collect(),
            ));
        }
    }
    let mut v = V::default();
    m.visit(&mut v);
    v.1
}

/// Trainable parameters the forward pass does not use, so no optimizer can move them: with an
/// untied LM head that has its own `decoder.bias`, HF's forward ignores `cls.predictions.bias`.
fn unused_in_forward(rel: &str, path: &str) -> bool {
    rel == "blip_caption" && path.ends_with("cls.predictions.bias")
}

fn loss(m: &Model, device: &Device, rel: &str) -> Tensor<1> {
    let pixels = reference(rel, "pixel_values").float::<4>(device);
    let out = match m {
        Model::Vqa(m) => {
            let image = m.encode_image(pixels);
            let ids = reference(rel, "input_ids").int::<2>(device);
            let mask = reference(rel, "attention_mask").float::<2>(device);
            let q = m.encode_question(&image, ids, Some(mask.clone()));
            let dec = reference(rel, "decoder_input_ids").int::<2>(device);
            m.answer_logits(&q, Some(mask), dec, None).reshape([-1])
        }
        Model::Captioner(m) => {
            let image = m.encode_image(pixels);
            m.text_logits(&image, reference(rel, "input_ids").int::<2>(device), None)
                .reshape([-1])
        }
        Model::Classifier(m) => m.forward(pixels).reshape([-1]),
        Model::Llava(_) | Model::ClipClassifier(_) => {
            unreachable!("the table's models are BLIP and ViT")
        }
    };
    (out.clone() * out).mean()
}

#[test]
fn selective_methods_train_exactly_what_they_select() {
    let device = Device::flex().autodiff();
    let mut lines = BTreeMap::new();
    for rel in MODELS {
        for method in METHODS {
            let p = pollster::block_on(Pipeline::load(&folder(rel), &device)).unwrap();
            let cfg = PeftConfig::parse(method).unwrap();
            let model = peft::apply(p.model, &cfg).unwrap();
            let rep = peft::report(&model);
            let expected = hf_trainable_count(rel, method);
            assert_eq!(
                rep.trainable_params, expected,
                "{rel} {method}: trainable count vs HF names; trainable: {:?}",
                rep.trainable_paths
            );
            lines.insert(format!("{rel:13} {method:10}"), rep.peft_line());
            if rep.trainable_params == 0 {
                continue;
            }
            let before = snapshot(&model);
            let mut optim = AdamWConfig::new().with_weight_decay(0.05).init();
            let mut model = model;
            for _ in 0..2 {
                let grads =
                    GradientsParams::from_grads(loss(&model, &device, rel).backward(), &model);
                model = optim.step(1e-2, model, grads);
            }
            let after = snapshot(&model);
            for ((path, trainable, b), (_, _, a)) in before.iter().zip(&after) {
                if *trainable && !unused_in_forward(rel, path) {
                    assert!(b != a, "{rel} {method}: trainable {path} did not change");
                } else {
                    assert!(b == a, "{rel} {method}: frozen {path} changed");
                }
            }
        }
    }
    for (k, v) in lines {
        println!("{k} {v}");
    }
}

#[test]
fn placement_mixes_methods_per_component() {
    let device = Device::flex().autodiff();
    let p = pollster::block_on(Pipeline::load(&folder("blip_vqa"), &device)).unwrap();
    let cfg = PeftConfig::parse("vision=layernorm,text_encoder=full,decoder=frozen").unwrap();
    let rep = peft::report(&peft::apply(p.model, &cfg).unwrap());
    let by: BTreeMap<_, _> = rep
        .components
        .iter()
        .map(|c| (c.name.as_str(), (c.trainable_params, c.total_params)))
        .collect();
    let ln_vision: usize = {
        let bytes = std::fs::read(fixture("blip_vqa/model.safetensors")).unwrap();
        let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
        st.tensors()
            .iter()
            .filter(|(k, _)| k.starts_with("vision_model.") && k.contains("norm"))
            .map(|(_, t)| t.shape().iter().product::<usize>())
            .sum()
    };
    assert_eq!(by["vision"].0, ln_vision);
    assert_eq!(by["text_encoder"].0, by["text_encoder"].1);
    assert_eq!(by["decoder"].0, 0);
    assert_eq!(rep.trainable_params, ln_vision + by["text_encoder"].1);
}

#[test]
fn bad_peft_configs_fail_before_training() {
    let device = Device::flex().autodiff();
    let load = || {
        pollster::block_on(Pipeline::load(&folder("vit_cls"), &device))
            .unwrap()
            .model
    };
    let e = peft::apply(load(), &PeftConfig::parse("decoder=full").unwrap())
        .unwrap_err()
        .to_string();
    assert!(e.contains("decoder"), "{e}");
    let cfg = PeftConfig {
        modules_to_save: vec!["pooler_head".into()],
        ..PeftConfig::parse("layernorm").unwrap()
    };
    let e = peft::apply(load(), &cfg).unwrap_err().to_string();
    assert!(e.contains("pooler_head"), "{e}");
    assert!(
        PeftConfig::parse("loraa")
            .unwrap_err()
            .to_string()
            .contains("loraa")
    );
}
