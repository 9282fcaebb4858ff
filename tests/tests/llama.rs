//! The LLaMA decoder against transformers' `LlamaForCausalLM` on the same weights
//! (`tests/fixtures/make_llama_fixtures.py`): logits of a left-padded batch, and greedy decoding
//! with the KV cache, for a grouped-query tied model and a multi-head untied one with biases.

use normtune_core::burn::tensor::{Device, Int, Tensor};
use normtune_core::models::llama;
use normtune_tests::*;

fn check(name: &str) {
    let device = Device::flex();
    let dir = fixture(&format!("llama/{name}"));
    let cfg_file = dir.join("config.json").display().to_string();
    let cfg = llama::config_from_json(&std::fs::read(dir.join("config.json")).unwrap(), &cfg_file)
        .unwrap();
    let weights = std::fs::read(dir.join("model.safetensors")).unwrap();
    let model = llama::load(&cfg, weights, "model.safetensors", &device)
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    let r = reference_json(&format!("llama/{name}"));
    let ints = |v: &serde_json::Value| -> Vec<i64> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_i64().unwrap())
            .collect()
    };
    let rows: Vec<Vec<i64>> = r["ids"].as_array().unwrap().iter().map(ints).collect();
    let masks: Vec<Vec<i64>> = r["mask"].as_array().unwrap().iter().map(ints).collect();
    let (b, l) = (rows.len(), rows[0].len());
    let ids = Tensor::<1, Int>::from_ints(rows.concat().as_slice(), &device).reshape([b, l]);
    let mask: Vec<f32> = masks.concat().iter().map(|&m| m as f32).collect();
    let mask = Tensor::<1>::from_floats(mask.as_slice(), &device).reshape([b, l]);
    let logits = model.forward(ids, Some(mask), None);
    let v = cfg.vocab_size;
    for (row, want) in r["logits"].as_array().unwrap().iter().enumerate() {
        let pad = masks[row].iter().filter(|&&m| m == 0).count();
        let got: Vec<f32> = logits
            .clone()
            .slice([row..row + 1, pad..l, 0..v])
            .into_data()
            .iter::<f32>()
            .collect();
        let want: Vec<f32> = want
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap() as f32)
            .collect();
        let err = max_rel_err(&got, &want);
        println!("{name} logits row {row}: max relative error {err:.2e}");
        assert!(
            err <= 1e-4,
            "{name} logits row {row}: max relative error {err:.2e}"
        );
    }
    let greedy = pollster::block_on(model.generate_greedy(&ints(&r["prompt"]), 8, None)).unwrap();
    assert_eq!(greedy, ints(&r["greedy"]), "{name}: greedy continuation");
}

#[test]
fn llama_with_grouped_query_attention_and_a_tied_head_matches_hf() {
    check("gqa_tied");
}

#[test]
fn llama_with_biases_and_a_wide_head_matches_hf() {
    check("mha");
}
