//! The LLaVA-style demo model (`normtune demo --llava`): the folder [`llava::assemble`] builds
//! from the real SmolLM2-135M-Instruct GGUF (`.assets/smollm2/`, fetched by
//! `tests/fixtures/fetch_assets.sh`) and the committed tower is an ordinary HF LLaVA folder whose
//! decoder and tokenizer are transformers' SmolLM2 (`tests/fixtures/make_smollm2_reference.py`:
//! transformers' own GGUF loading), and whose tower is the committed one, bit for bit; the tower's
//! conversion from the BLIP demo model's ViT is exact apart from the `pre_layrnorm` it adds.

use normtune_core::burn::nn::LayerNormConfig;
use normtune_core::burn::tensor::{Device, Int, Tensor};
use normtune_core::demo::llava;
use normtune_core::demo::model::base_model;
use normtune_core::models::{Model, Pipeline, export, load};
use normtune_core::source::MemorySource;
use normtune_tests::*;

fn ints(v: &serde_json::Value) -> Vec<i64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_i64().unwrap())
        .collect()
}

#[test]
fn the_assembled_demo_folder_holds_transformers_smollm2_and_the_committed_tower() {
    let (r, g, file) = smollm2();
    let device = Device::flex();
    let committed = load::read_f32(llava::committed_vision(), "vision.safetensors").unwrap();
    assert!(
        committed.len() > 40,
        "the committed tower has {} tensors",
        committed.len()
    );
    let files = llava::assemble(&g, &file, &committed, &device).unwrap();
    drop(g);
    let mut src = MemorySource::new();
    for (k, v) in files {
        src.insert(k, v);
    }
    let mut p = pollster::block_on(Pipeline::load(&src, &device)).unwrap();
    let tok = p.tokenizer.clone().unwrap();

    // tokenizer.json gives transformers' ids.
    assert_eq!(
        tok.encode(r["prompt"].as_str().unwrap(), usize::MAX)
            .unwrap(),
        ints(&r["prompt_ids"])
    );
    for case in r["tokenizer_cases"].as_array().unwrap() {
        let text = case["text"].as_str().unwrap();
        assert_eq!(
            tok.encode(text, usize::MAX).unwrap(),
            ints(&case["ids"]),
            "tokens of {text:?}"
        );
    }

    let Model::Llava(m) = &p.model else {
        panic!("not a LLaVA model")
    };
    // The decoder: transformers' logits after the prompt.
    let prompt = ints(&r["prompt_ids"]);
    let v = m.language_model.model.embed_tokens.weight.dims()[0];
    let ids = Tensor::<1, Int>::from_ints(prompt.as_slice(), &device).reshape([1, prompt.len()]);
    let last: Vec<f32> = m
        .language_model
        .forward(ids, None, None)
        .slice([0..1, prompt.len() - 1..prompt.len(), 0..v])
        .into_data()
        .iter::<f32>()
        .collect();
    let picked: Vec<f32> = ints(&r["last_logits_ids"])
        .iter()
        .map(|&i| last[i as usize])
        .collect();
    let want: Vec<f32> = r["last_logits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect();
    let err = max_rel_err(&picked, &want);
    assert!(err < 1e-4, "logits after the prompt: relative error {err}");

    // The tower and projector: the committed values, exactly.
    let model_tensors = export::hf_tensors(&p.model);
    for (name, shape, values) in &committed {
        let (_, s, got) = model_tensors
            .iter()
            .find(|(k, _, _)| k == name)
            .unwrap_or_else(|| panic!("{name} not in the model"));
        assert_eq!(s, shape, "{name}");
        assert!(got == values, "{name} differs from the committed tensor");
    }
    let vision_params: usize = committed
        .iter()
        .map(|(_, s, _)| s.iter().product::<usize>())
        .sum();
    let tower_params: usize = llava::vision_part(model_tensors)
        .iter()
        .map(|(_, s, _)| s.iter().product::<usize>())
        .sum();
    assert_eq!(
        vision_params, tower_params,
        "every tower tensor is committed"
    );

    // The chat: SmolLM2's markers are single tokens, 64 image features in place of `<image>`.
    p.set_chat_prompt(llava::CHAT_PROMPT).unwrap();
    let ids = p.llava_prompt("is there a pleural effusion?").unwrap();
    let image = tok.token_id(llava::IMAGE_TOKEN).unwrap();
    assert_eq!(ids.iter().filter(|&&i| i == image).count(), 64);
    assert_eq!(ids[0], tok.token_id("<|im_start|>").unwrap());
}

/// The CLIP tower made from the BLIP demo ViT computes what the ViT computes on a
/// LayerNorm-normalised input (the `pre_layrnorm` BLIP lacks, identity-initialised): every layer's
/// output to float rounding. A wrong q/k/v split, a transposed weight or the patch bias not
/// folded into the positions would show here.
#[test]
fn the_tower_from_the_blip_demo_vit_is_the_vit_after_a_fresh_layernorm() {
    let device = Device::flex();
    let blip = pollster::block_on(Pipeline::load(&base_model(), &device)).unwrap();
    let Model::Vqa(blip) = &blip.model else {
        panic!("the demo base is a VQA model")
    };
    let bytes: Vec<u8> = normtune_core::demo::model::base_model_files()
        .into_iter()
        .find(|(k, _)| *k == "model.safetensors")
        .unwrap()
        .1
        .to_vec();
    let tower = llava::tower_from_blip(&bytes, "model.safetensors").unwrap();
    let (_, g, file) = smollm2();
    let files = llava::assemble(&g, &file, &tower, &device).unwrap();
    drop(g);
    let mut src = MemorySource::new();
    for (k, v) in files {
        src.insert(k, v);
    }
    let p = pollster::block_on(Pipeline::load(&src, &device)).unwrap();
    let Model::Llava(m) = &p.model else {
        panic!("not a LLaVA model")
    };

    let pixels = Tensor::<4>::random(
        [2, 3, 64, 64],
        normtune_core::burn::tensor::Distribution::Uniform(-1.0, 1.0),
        &device,
    );
    let clip = m.vision_tower.hidden_states(pixels.clone());
    let ln = LayerNormConfig::new(128).with_epsilon(1e-6).init(&device);
    let mut x = ln.forward(blip.vision_model.embeddings.forward(pixels));
    let (_, got) = values(clip[0].clone());
    let (_, want) = values(x.clone());
    assert!(max_rel_err(&got, &want) < 1e-5, "embeddings");
    for (i, layer) in blip.vision_model.encoder.layers.iter().enumerate() {
        x = layer.forward(x);
        let (_, got) = values(clip[i + 1].clone());
        let (_, want) = values(x.clone());
        let err = max_rel_err(&got, &want);
        assert!(err < 1e-4, "layer {i}: relative error {err}");
    }
    assert_eq!(clip.len(), 5);
}
