//! The LLaMA decoder against transformers' `LlamaForCausalLM` on the same weights
//! (`tests/fixtures/make_llama_fixtures.py`): logits of a left-padded batch, and greedy decoding
//! with the KV cache, for a grouped-query tied model and a multi-head untied one with biases; and
//! the real SmolLM2-135M-Instruct Q4_1 GGUF (`.assets/smollm2/`) against transformers' own GGUF
//! loading (`tests/fixtures/make_smollm2_reference.py`): per-token log-likelihood of a text,
//! logits after a prompt and the greedy continuation.

use normtune_core::burn::tensor::{Device, Int, Tensor};
use normtune_core::models::llama;
use normtune_tests::*;

fn ints(v: &serde_json::Value) -> Vec<i64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_i64().unwrap())
        .collect()
}

fn floats(v: &serde_json::Value) -> Vec<f64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

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
    let greedy = pollster::block_on(model.generate_greedy(&ints(&r["prompt"]), 8, &[])).unwrap();
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

#[test]
fn the_real_smollm2_gguf_matches_transformers() {
    use normtune_core::burn::tensor::activation::log_softmax;
    let (r, g, file) = smollm2();
    // The tokenizer the file describes, as transformers builds it.
    let tok = normtune_core::tokenizer::TextTokenizer::from_gguf(&g, &file).unwrap();
    let text_ids = tok.encode(r["text"].as_str().unwrap(), usize::MAX).unwrap();
    let prompt_ids = tok
        .encode(r["prompt"].as_str().unwrap(), usize::MAX)
        .unwrap();
    let device = Device::flex();
    let t0 = std::time::Instant::now();
    let (cfg, model) = llama::from_gguf(&g, &file, &device).unwrap();
    drop(g);
    let loaded = t0.elapsed().as_secs_f64();
    assert_eq!(
        (
            cfg.num_hidden_layers,
            cfg.hidden_size,
            cfg.num_attention_heads,
            cfg.kv_heads()
        ),
        (30, 576, 9, 3)
    );

    assert_eq!(text_ids, ints(&r["text_ids"]), "tokens of the text");
    assert_eq!(prompt_ids, ints(&r["prompt_ids"]), "tokens of the prompt");
    for case in r["tokenizer_cases"].as_array().unwrap() {
        let text = case["text"].as_str().unwrap();
        let ids = tok.encode(text, usize::MAX).unwrap();
        assert_eq!(ids, ints(&case["ids"]), "tokens of {text:?}");
        let skip_special = tok.decode(&ids).unwrap();
        let want = case["decoded"].as_str().unwrap();
        // HF decoded without skipping special tokens; ours skips them, so compare on text
        // without the chat markers.
        let plain = want.replace("<|im_start|>", "").replace("<|im_end|>", "");
        assert_eq!(skip_special, plain, "decoding of {text:?}");
    }

    // Per-token negative log-likelihood of the text.
    let ids = ints(&r["text_ids"]);
    let n = ids.len();
    let x = Tensor::<1, Int>::from_ints(ids.as_slice(), &device).reshape([1, n]);
    let logp = log_softmax(model.forward(x, None, None), 2);
    let logp: Vec<f32> = logp.into_data().iter::<f32>().collect();
    let v = cfg.vocab_size;
    let nll: Vec<f64> = (0..n - 1)
        .map(|i| -(logp[i * v + ids[i + 1] as usize] as f64))
        .collect();
    let want = floats(&r["nll"]);
    let worst = nll
        .iter()
        .zip(&want)
        .map(|(a, b)| (a - b).abs())
        .fold(0f64, f64::max);
    let ppl = (nll.iter().sum::<f64>() / nll.len() as f64).exp();
    let want_ppl = r["perplexity"].as_f64().unwrap();
    println!(
        "SmolLM2 GGUF: loaded in {loaded:.1} s; perplexity {ppl:.4} (transformers {want_ppl:.4}); \
         worst per-token NLL difference {worst:.2e}"
    );
    assert!(worst < 2e-3, "per-token NLL differs by {worst}");
    assert!(
        (ppl / want_ppl - 1.0).abs() < 1e-4,
        "perplexity {ppl} vs {want_ppl}"
    );

    // The logits after the prompt, at 40 ids (its top 20 and 20 fixed ones).
    let prompt = ints(&r["prompt_ids"]);
    let p = Tensor::<1, Int>::from_ints(prompt.as_slice(), &device).reshape([1, prompt.len()]);
    let last: Vec<f32> = model
        .forward(p, None, None)
        .slice([0..1, prompt.len() - 1..prompt.len(), 0..v])
        .into_data()
        .iter::<f32>()
        .collect();
    let picked: Vec<f32> = ints(&r["last_logits_ids"])
        .iter()
        .map(|&i| last[i as usize])
        .collect();
    let want: Vec<f32> = floats(&r["last_logits"])
        .iter()
        .map(|&x| x as f32)
        .collect();
    let err = max_rel_err(&picked, &want);
    println!("SmolLM2 GGUF: logits after the prompt, max relative error {err:.2e}");
    assert!(
        err < 1e-4,
        "logits after the prompt: max relative error {err:.2e}"
    );

    let greedy = pollster::block_on(model.generate_greedy(&prompt, 16, &[])).unwrap();
    assert_eq!(
        greedy,
        ints(&r["greedy_ids"]),
        "greedy continuation of the prompt"
    );
    assert_eq!(
        tok.decode(&greedy).unwrap(),
        r["greedy_text"].as_str().unwrap()
    );
}

/// A LLaMA built from its config alone starts where HF's does: linear and embedding weights
/// ~ N(0, initializer_range), RMSNorm weights 1 (burn's own defaults would start a 30-layer
/// stack with losses in the hundreds).
#[test]
fn a_llama_from_config_is_initialised_as_hf_does() {
    use normtune_core::models::llama::LlamaConfig;
    let cfg = LlamaConfig {
        vocab_size: 2000,
        hidden_size: 128,
        intermediate_size: 256,
        num_hidden_layers: 2,
        num_attention_heads: 4,
        initializer_range: 0.05,
        ..Default::default()
    };
    let m = cfg.init(&normtune_core::burn::tensor::Device::flex());
    let std = |v: Vec<f32>| {
        let n = v.len() as f64;
        let mean = v.iter().map(|&x| x as f64).sum::<f64>() / n;
        (v.iter().map(|&x| (x as f64 - mean).powi(2)).sum::<f64>() / n).sqrt()
    };
    let q = std(m.model.layers[0]
        .self_attn
        .q_proj
        .weight
        .val()
        .into_data()
        .iter()
        .collect());
    let e = std(m
        .model
        .embed_tokens
        .weight
        .val()
        .into_data()
        .iter()
        .collect());
    assert!((q / 0.05 - 1.0).abs() < 0.05, "q_proj std {q}");
    assert!((e / 0.05 - 1.0).abs() < 0.05, "embedding std {e}");
    let g: Vec<f32> = m.model.norm.gamma.val().into_data().iter().collect();
    assert!(g.iter().all(|&x| x == 1.0));
}
