//! LLaVA from llama.cpp files: a K-quant decoder GGUF with a SentencePiece vocabulary plus an
//! `mmproj` GGUF in the legacy LLaVA converter's layout, put together in memory and checked
//! against transformers on the same weights (`tests/fixtures/make_llava_gguf_fixtures.py`): the
//! prompt's ids, image features, logits and the greedy continuation.

use normtune_core::burn::tensor::{Device, Tensor};
use normtune_core::gguf::Gguf;
use normtune_core::models::{Model, Pipeline, mmproj};
use normtune_tests::*;

fn gguf(name: &str) -> (Gguf, String) {
    let path = fixture("llava_gguf").join(name);
    let file = path.display().to_string();
    (
        Gguf::parse(std::fs::read(&path).unwrap(), &file).unwrap(),
        file,
    )
}

fn ints(v: &serde_json::Value) -> Vec<i64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_i64().unwrap())
        .collect()
}

fn floats(v: &serde_json::Value) -> Vec<f32> {
    v.as_array()
        .unwrap()
        .iter()
        .flat_map(|x| match x.as_array() {
            Some(row) => row.iter().map(|y| y.as_f64().unwrap() as f32).collect(),
            None => vec![x.as_f64().unwrap() as f32],
        })
        .collect()
}

/// The fixture pair loaded as the CLI loads it: a sharded folder made shard by shard.
fn pair_pipeline(device: &Device) -> Pipeline {
    let (decoder, dfile) = gguf("decoder.gguf");
    let (proj, pfile) = gguf("mmproj.gguf");
    let pair = mmproj::GgufPair::new(decoder, &dfile, &proj, &pfile).unwrap();
    pollster::block_on(Pipeline::load(&pair, device)).unwrap()
}

#[test]
fn a_k_quant_decoder_and_an_mmproj_file_match_transformers() {
    let device = Device::flex();
    let mut p = pair_pipeline(&device);
    let r = reference_json("llava_gguf");
    let prompt = r["prompt"].as_str().unwrap();
    p.set_chat_prompt(&prompt.replace("What is shown in this image?", "{question}"))
        .unwrap();
    let ids = p.llava_prompt("What is shown in this image?").unwrap();
    assert_eq!(ids, ints(&r["input_ids"]), "prompt ids");

    let Model::Llava(model) = &p.model else {
        panic!("not a LLaVA model")
    };
    let shape: Vec<usize> = ints(&r["pixel_shape"])
        .iter()
        .map(|&d| d as usize)
        .collect();
    let pixels = Tensor::<1>::from_floats(floats(&r["pixel_values"]).as_slice(), &device)
        .reshape([shape[0], shape[1], shape[2], shape[3]]);
    let feats: Vec<f32> = model
        .image_features(pixels.clone())
        .into_data()
        .iter::<f32>()
        .collect();
    let err = max_rel_err(&feats, &floats(&r["image_features"]));
    println!("image features: max relative error {err:.2e}");
    assert!(err <= 1e-4, "image features: {err:.2e}");

    let logits: Vec<f32> = model
        .forward(&ids, pixels.clone())
        .unwrap()
        .into_data()
        .iter::<f32>()
        .collect();
    let want = floats(&r["last_logits"]);
    let err = max_rel_err(&logits[logits.len() - want.len()..], &want);
    println!("logits: max relative error {err:.2e}");
    assert!(err <= 1e-4, "logits: {err:.2e}");

    let greedy = pollster::block_on(model.generate_greedy(&ids, pixels, 8, &[])).unwrap();
    assert_eq!(greedy, ints(&r["greedy"]), "greedy continuation");
}

#[test]
fn a_pair_that_does_not_belong_together_is_refused() {
    let (decoder, dfile) = gguf("decoder.gguf");
    let (proj, pfile) = gguf("mmproj.gguf");
    // Swapped: the decoder given as the mmproj file.
    let (proj_again, _) = gguf("mmproj.gguf");
    let e = mmproj::GgufPair::new(proj_again, &pfile, &decoder, &dfile)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("decoder.gguf") && e.contains("general.architecture") && e.contains("mmproj"),
        "{e}"
    );
    // The SmolLM2-shaped demo decoder (576 wide) under this 256-wide projector.
    let (small, sfile) = smollm2_gguf();
    let e = mmproj::GgufPair::new(small, &sfile, &proj, &pfile)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("projects images to 256 features") && e.contains("576 wide"),
        "{e}"
    );
}

fn smollm2_gguf() -> (Gguf, String) {
    let (_, g, file) = smollm2();
    (g, file)
}

/// A two-turn LLaVA conversation (every answer learned, human turns masked) through the pair's
/// model: the row's ids and learned spans equal transformers' tokenisation of the whole
/// conversation in LLaVA-Med's Mistral format (spans by tokenised prefix lengths, as LLaVA's
/// preprocessing finds them), and the loss equals HF's with -100 elsewhere.
#[test]
fn a_multi_turn_conversation_is_laid_out_and_learned_as_llava_does() {
    let device = Device::flex();
    let mut p = pair_pipeline(&device);
    p.set_chat_prompt("[INST] <image>\n{question} [/INST]")
        .unwrap();
    let r = reference_json("llava_gguf");
    let c = &r["conversation"];
    let turns: Vec<(String, String)> = c["turns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t[0].as_str().unwrap().to_string(),
                t[1].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let example = normtune_core::data::Example {
        id: "c".into(),
        image: "x.png".into(),
        question: Some(turns[0].0.clone()),
        target: turns[0].1.clone(),
        answer_type: "OPEN".into(),
        turns: turns[1..].to_vec(),
        ..Default::default()
    };
    let image = normtune_core::image::DynamicImage::new_rgb8(32, 32);
    let batch = p.batch(&[&example], &[image]).unwrap();
    let normtune_core::train::Batch::Chat { ids, learned, .. } = batch else {
        panic!("not a chat batch")
    };
    assert_eq!(ids[0], ints(&c["ids"]), "conversation ids");
    let want: Vec<std::ops::Range<usize>> = c["learned"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s[0].as_u64().unwrap() as usize..s[1].as_u64().unwrap() as usize)
        .collect();
    assert_eq!(learned[0], want, "learned spans");

    let Model::Llava(model) = &p.model else {
        panic!("not a LLaVA model")
    };
    let shape: Vec<usize> = ints(&r["pixel_shape"])
        .iter()
        .map(|&d| d as usize)
        .collect();
    let pixels = Tensor::<1>::from_floats(floats(&r["pixel_values"]).as_slice(), &device)
        .reshape([shape[0], shape[1], shape[2], shape[3]]);
    let loss = normtune_core::train::trainer::chat_loss(model, pixels, &ids, &learned, 0.0)
        .unwrap()
        .into_data()
        .iter::<f32>()
        .next()
        .unwrap();
    let want = c["loss"].as_f64().unwrap() as f32;
    println!("conversation loss {loss} vs HF {want}");
    assert!((loss - want).abs() <= 1e-4 * want.abs(), "{loss} vs {want}");
}

/// With a chat template (no prompt override), a follow-up turn is what the template adds for the
/// new user message and the generation prompt after rendering the conversation so far (ChatML
/// here): its own turn markers, not the first turn's image prompt again.
#[test]
fn a_follow_up_turn_is_what_the_chat_template_adds() {
    let device = Device::flex();
    let mut p = pair_pipeline(&device);
    let chatml = "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}";
    p.chat_template = Some(normtune_core::models::chat::ChatTemplate::new(
        chatml, "t.jinja",
    ));
    let so_far = [("What is it?".to_string(), "A chest X-ray.".to_string())];
    let got = p.followup_prompt(&so_far, "Which side?").unwrap();
    let want = p
        .tokenizer
        .as_ref()
        .unwrap()
        .encode_plain("<|im_start|>user\nWhich side?<|im_end|>\n<|im_start|>assistant\n")
        .unwrap();
    assert_eq!(got, want);
    // A multimodal template (typed content parts, as llava-hf folders carry) gets every turn as
    // parts, the image only in the first (the newline after `{% endfor %}` goes: jinja2's
    // trim_blocks, as transformers renders).
    let parts = "{% for m in messages %}{{ m['role'] }}:{% for c in m['content'] %}{% if c['type'] == 'image' %} <image>{% else %} {{ c['text'] }}{% endif %}{% endfor %}\n{% endfor %}{% if add_generation_prompt %}assistant:{% endif %}";
    p.chat_template = Some(normtune_core::models::chat::ChatTemplate::new(
        parts,
        "parts.jinja",
    ));
    let got = p.followup_prompt(&so_far, "Which side?").unwrap();
    let want = p
        .tokenizer
        .as_ref()
        .unwrap()
        .encode_plain("user: Which side?assistant:")
        .unwrap();
    assert_eq!(got, want);
    // A template that re-renders earlier turns differently once one is added is refused.
    p.chat_template = Some(normtune_core::models::chat::ChatTemplate::new(
        "{{ messages | length }}{% for m in messages %}{{ m['content'] }}{% endfor %}",
        "odd.jinja",
    ));
    let e = p
        .followup_prompt(&so_far, "Which side?")
        .unwrap_err()
        .to_string();
    assert!(e.contains("odd.jinja") && e.contains("prefix"), "{e}");
}
