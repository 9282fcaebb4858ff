//! Methods that add parameters (LoRA, DoRA, IA3), peft-style checks: at init they change no output;
//! they train exactly what peft trains (counted from HF tensor names); only the new parameters
//! move; merged == unmerged; save → load round trip identical.

use normtune_core::burn::module::{Module, ModuleVisitor, Param};
use normtune_core::burn::optim::{AdamWConfig, GradientsParams};
use normtune_core::burn::tensor::{Device, Tensor};
use normtune_core::models::{Model, Pipeline};
use normtune_core::peft::{self, PeftConfig, io};
use normtune_core::source::MemorySource;
use normtune_tests::*;

fn lora_cfg(spec: &str, r: usize) -> PeftConfig {
    let mut c = PeftConfig::parse(spec).unwrap();
    c.lora.r = r;
    c.lora.lora_alpha = 2.0 * r as f64;
    c
}

fn logits(m: &Model, device: &Device) -> Tensor<3> {
    let Model::Vqa(m) = m else { panic!() };
    vqa_decoder_logits(m, device)
}

fn host(t: Tensor<3>) -> Vec<f32> {
    values(t).1
}

/// `[out, in]` of every HF Linear weight whose module name is a target, in the given prefixes.
fn hf_targets(prefixes: &[&str], targets: &[&str]) -> Vec<(usize, usize)> {
    let bytes = std::fs::read(fixture("blip_vqa/model.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    st.tensors()
        .iter()
        .filter(|(k, t)| {
            t.shape().len() == 2
                && prefixes.iter().any(|p| k.starts_with(p))
                && targets.iter().any(|m| k.ends_with(&format!(".{m}.weight")))
        })
        .map(|(_, t)| (t.shape()[0], t.shape()[1]))
        .collect()
}

/// r·(in + out) for every targeted weight (LoRA's factors).
fn hf_lora_count(r: usize, prefixes: &[&str], targets: &[&str]) -> usize {
    hf_targets(prefixes, targets)
        .iter()
        .map(|(o, i)| r * (o + i))
        .sum()
}

/// Output features of every targeted weight (DoRA's magnitudes).
fn hf_out_features(prefixes: &[&str], targets: &[&str]) -> usize {
    hf_targets(prefixes, targets).iter().map(|(o, _)| o).sum()
}

fn trained(cfg: &PeftConfig) -> (Model, Vec<(bool, Vec<f32>)>, Vec<(bool, Vec<f32>)>) {
    let device = Device::flex().autodiff();
    let p = pollster::block_on(Pipeline::load(&folder("blip_vqa"), &device)).unwrap();
    let model = peft::apply(p.model, cfg).unwrap();
    let snap = |m: &Model| {
        struct V(Vec<(bool, Vec<f32>)>);
        impl ModuleVisitor for V {
            fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<D>>) {
                let v = p.val();
                self.0
                    .push((v.is_require_grad(), v.into_data().iter::<f32>().collect()));
            }
        }
        let mut v = V(Vec::new());
        m.visit(&mut v);
        v.0
    };
    let before = snap(&model);
    let mut optim = AdamWConfig::new().with_weight_decay(0.05).init();
    let mut model = model;
    for _ in 0..2 {
        let out = logits(&model, &device).reshape([-1]);
        let loss = (out.clone() * out).mean();
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        model = optim.step(1e-2, model, grads);
    }
    let after = snap(&model);
    (model, before, after)
}

/// IA3 on peft's BERT defaults: key/value outputs and every `output.dense` input.
fn hf_ia3_count(prefixes: &[&str]) -> usize {
    let bytes = std::fs::read(fixture("blip_vqa/model.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    st.tensors()
        .iter()
        .filter(|(k, t)| t.shape().len() == 2 && prefixes.iter().any(|p| k.starts_with(p)))
        .map(|(k, t)| {
            if k.ends_with(".key.weight") || k.ends_with(".value.weight") {
                t.shape()[0] // out features
            } else if k.ends_with(".output.dense.weight") {
                t.shape()[1] // in features
            } else {
                0
            }
        })
        .sum()
}

fn ia3_cfg(spec: &str) -> PeftConfig {
    PeftConfig::parse(spec).unwrap()
}

#[test]
fn adapters_at_init_change_no_output() {
    let device = Device::flex();
    for cfg in [
        lora_cfg("lora", 4),
        lora_cfg("dora", 4),
        ia3_cfg("vision=frozen,text_encoder=ia3,decoder=ia3"),
        bottleneck_cfg(8),
    ] {
        let p = pollster::block_on(Pipeline::load(&folder("blip_vqa"), &device)).unwrap();
        let base = host(logits(&p.model, &device));
        let adapted = peft::apply(p.model, &cfg).unwrap();
        assert_eq!(host(logits(&adapted, &device)), base);
    }
}

#[test]
fn adapters_train_exactly_their_parameters() {
    for (spec, prefixes, targets) in [
        (
            "vision=frozen,text_encoder=lora,decoder=lora",
            vec!["text_encoder.", "text_decoder."],
            vec!["query", "value"],
        ),
        (
            "lora",
            vec!["vision_model.", "text_encoder.", "text_decoder."],
            vec!["query", "value", "qkv"],
        ),
    ] {
        let cfg = lora_cfg(spec, 4);
        check_training(&cfg, hf_lora_count(4, &prefixes, &targets), ".lora.");
    }
    // DoRA: LoRA's factors plus one magnitude per output feature (trained with LoRA dropout).
    let (prefixes, targets) = (["text_encoder.", "text_decoder."], ["query", "value"]);
    check_training(
        &lora_cfg("vision=frozen,text_encoder=dora,decoder=dora", 4),
        hf_lora_count(4, &prefixes, &targets) + hf_out_features(&prefixes, &targets),
        ".dora.",
    );
    check_training(
        &ia3_cfg("vision=frozen,text_encoder=ia3,decoder=ia3"),
        hf_ia3_count(&["text_encoder.", "text_decoder."]),
        "_ia3",
    );
}

fn check_training(cfg: &PeftConfig, expected: usize, marker: &str) {
    let spec = format!("{:?}", cfg.placement);
    let (model, before, after) = trained(cfg);
    let rep = peft::report(&model);
    assert_eq!(rep.trainable_params, expected, "{spec}");
    assert!(
        rep.trainable_paths.iter().all(|p| p.contains(marker)),
        "{spec}: {:?}",
        rep.trainable_paths
    );
    for (i, ((t, b), (_, a))) in before.iter().zip(&after).enumerate() {
        if *t {
            assert!(b != a, "{spec}: adapter parameter #{i} did not change");
        } else {
            assert!(b == a, "{spec}: frozen parameter #{i} changed");
        }
    }
    println!("{spec}: {}", rep.peft_line());
}

#[test]
fn adapters_merged_equal_unmerged_and_round_trip() {
    merged_and_round_trip(&lora_cfg("lora", 4));
    merged_and_round_trip(&lora_cfg("dora", 4));
    merged_and_round_trip(&ia3_cfg("vision=frozen,text_encoder=ia3,decoder=ia3"));
}

fn merged_and_round_trip(cfg: &PeftConfig) {
    let (model, _, _) = trained(cfg);
    let device = Device::flex();
    let model = model.valid();
    let unmerged = host(logits(&model, &device));
    let materialized = peft::ia3::fold(model.clone()).materialize();
    let base = pollster::block_on(Pipeline::load(&folder("blip_vqa"), &device))
        .unwrap()
        .model;
    assert_eq!(
        materialized.num_params(),
        base.num_params(),
        "merging removes the factors"
    );
    assert_ne!(
        host(logits(&base, &device)),
        unmerged,
        "training moved the adapter away from identity"
    );
    let merged = host(logits(&materialized, &device));
    let err = max_rel_err(&merged, &unmerged);
    println!("merged vs unmerged: max relative error {err:.2e}");
    assert!(err <= 1e-5, "{err}");

    // save → load into a fresh base: the same outputs.
    let files = io::save_adapter(&model, cfg, "blip_vqa").unwrap();
    let mut src = MemorySource::new();
    for (n, b) in files {
        src.insert(n, b);
    }
    let base = pollster::block_on(Pipeline::load(&folder("blip_vqa"), &device)).unwrap();
    let loaded = pollster::block_on(io::load_adapter(base.model, &src)).unwrap();
    assert_eq!(host(logits(&loaded, &device)), unmerged, "round trip");
}

#[test]
fn bad_lora_configs_are_rejected() {
    let device = Device::flex();
    let load = || {
        pollster::block_on(Pipeline::load(&folder("blip_vqa"), &device))
            .unwrap()
            .model
    };
    let e = peft::apply(load(), &lora_cfg("lora", 0))
        .unwrap_err()
        .to_string();
    assert!(e.contains("r must be at least 1"), "{e}");
    let mut cfg = lora_cfg("lora", 4);
    cfg.lora.target_modules = Some(vec!["not_a_module".into()]);
    let e = peft::apply(load(), &cfg).unwrap_err().to_string();
    assert!(e.contains("not_a_module"), "{e}");
}

/// Prefix tuning / P-tuning v2 counts from the decoder's HF shapes: virtual tokens × layers ×
/// 2 × hidden (P-tuning v2), plus the embedding and MLP with the projection.
fn hf_prefix_count(n: usize, projection: bool) -> usize {
    let bytes = std::fs::read(fixture("blip_vqa/model.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let hidden = st
        .tensor("text_decoder.bert.embeddings.word_embeddings.weight")
        .unwrap()
        .shape()[1];
    let layers = st
        .names()
        .iter()
        .filter(|k| k.ends_with(".attention.self.query.weight") && k.starts_with("text_decoder."))
        .count();
    let width = layers * 2 * hidden;
    if projection {
        n * hidden + hidden * hidden + hidden + hidden * width + width
    } else {
        n * width
    }
}

#[test]
fn prefix_methods_train_exactly_their_parameters() {
    check_training(
        &PeftConfig::parse("vision=frozen,text_encoder=frozen,decoder=ptuning-v2").unwrap(),
        hf_prefix_count(10, false),
        ".prefix.",
    );
    check_training(
        &PeftConfig::parse("vision=frozen,text_encoder=frozen,decoder=prefix").unwrap(),
        hf_prefix_count(10, true),
        ".prefix.",
    );
}

/// Incremental decoding (prefix seeded into the KV cache, one token at a time) and one
/// teacher-forced pass over the same tokens must agree: positions, masks and the prefix are
/// handled the same way on both paths.
#[test]
fn prefix_generation_agrees_with_teacher_forcing() {
    use normtune_core::burn::tensor::Int;
    use normtune_core::models::blip::GenConfig;
    let device = Device::flex();
    for spec in [
        "vision=frozen,text_encoder=ptuning-v2,decoder=prefix",
        "vision=frozen,text_encoder=prefix,decoder=ptuning-v2",
    ] {
        let p = pollster::block_on(Pipeline::load(&folder("blip_vqa"), &device)).unwrap();
        let tokens = p.special_tokens().unwrap();
        let base = host(logits(&p.model, &device));
        let ids = p.question_ids("is there a left pleural effusion?").unwrap();
        let model = peft::apply(p.model, &PeftConfig::parse(spec).unwrap()).unwrap();
        assert_ne!(
            host(logits(&model, &device)),
            base,
            "{spec}: the prefix changes the output"
        );
        let Model::Vqa(m) = &model else { panic!() };
        let pixels = reference("blip_vqa", "pixel_values")
            .float::<4>(&device)
            .narrow(0, 0, 1);
        let cfg = GenConfig {
            num_beams: 1,
            max_new_tokens: 6,
            length_penalty: 1.0,
        };
        let out = pollster::block_on(m.generate(pixels.clone(), ids.clone(), None, &tokens, &cfg))
            .unwrap()
            .remove(0);
        let image = m.encode_image(pixels);
        let q = m.encode_question(&image, ids, None);
        let len = out.len();
        let seq = Tensor::<1, Int>::from_ints(out.as_slice(), &device).reshape([1, len]);
        let tf = m
            .answer_logits(&q, None, seq, None)
            .argmax(2)
            .reshape([len]);
        let tf: Vec<i64> = tf.into_data().iter::<i64>().collect();
        assert_eq!(
            &tf[..len - 1],
            &out[1..],
            "{spec}: greedy ids = teacher-forced argmax"
        );
    }
}

fn bottleneck_cfg(m: usize) -> PeftConfig {
    let mut c = PeftConfig::parse("adapter").unwrap();
    c.adapter.bottleneck_size = m;
    c
}

/// Houlsby adapters from HF shapes: one per text `output.dense` (attention, cross-attention,
/// feed-forward) and two per vision block, each `d·m + m + m·d + d`.
fn hf_adapter_count(m: usize) -> usize {
    let bytes = std::fs::read(fixture("blip_vqa/model.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let per = |d: usize| d * m + m + m * d + d;
    st.tensors()
        .iter()
        .map(|(k, t)| {
            if k.ends_with(".output.dense.weight") {
                per(t.shape()[0])
            } else if k.starts_with("vision_model.") && k.ends_with(".self_attn.projection.weight")
            {
                2 * per(t.shape()[0])
            } else {
                0
            }
        })
        .sum()
}

#[test]
fn bottleneck_adapters_train_exactly_their_parameters() {
    check_training(&bottleneck_cfg(8), hf_adapter_count(8), "adapter.");
}

/// Methods peft has no file format for travel in normtune's own adapter folder (`NORMTUNE`):
/// only the trainable tensors plus the `PeftConfig`; loading re-creates the modules and gives
/// the trained model's outputs exactly.
#[test]
fn native_adapter_folders_round_trip() {
    let device = Device::flex();
    for spec in [
        "vision=frozen,text_encoder=frozen,decoder=prefix",
        "vision=frozen,text_encoder=ptuning-v2,decoder=ptuning-v2",
        "adapter",
        "vision=layernorm,text_encoder=ffn,decoder=bitfit",
    ] {
        let mut cfg = PeftConfig::parse(spec).unwrap();
        cfg.adapter.bottleneck_size = 8;
        let (model, _, _) = trained(&cfg);
        // Trainability lives on the autodiff model: save from it, compare outputs without it.
        let files = io::save_adapter(&model, &cfg, "blip_vqa").unwrap();
        let want = host(logits(&model.valid(), &device));
        let config: serde_json::Value =
            serde_json::from_slice(&files.iter().find(|(n, _)| n == io::CONFIG_FILE).unwrap().1)
                .unwrap();
        assert_eq!(config["peft_type"], io::NATIVE, "{spec}");
        let mut src = MemorySource::new();
        for (n, b) in files {
            src.insert(n, b);
        }
        let base = pollster::block_on(Pipeline::load(&folder("blip_vqa"), &device)).unwrap();
        let loaded = pollster::block_on(io::load_adapter(base.model, &src)).unwrap();
        assert_eq!(host(logits(&loaded, &device)), want, "{spec}");
        let unmergeable = peft::unmergeable(&loaded).is_some();
        assert_eq!(
            unmergeable,
            spec.contains("prefix") || spec.contains("ptuning") || spec == "adapter",
            "{spec}"
        );
    }
}

#[test]
fn disabling_the_adapter_gives_the_base_output() {
    let device = Device::flex();
    let base = {
        let p = pollster::block_on(Pipeline::load(&folder("blip_vqa"), &device)).unwrap();
        host(logits(&p.model, &device))
    };
    let mut prefix =
        PeftConfig::parse("vision=frozen,text_encoder=prefix,decoder=ptuning-v2").unwrap();
    prefix.prefix.num_virtual_tokens = 3;
    for cfg in [
        lora_cfg("lora", 4),
        lora_cfg("dora", 4),
        ia3_cfg("vision=frozen,text_encoder=ia3,decoder=ia3"),
        bottleneck_cfg(8),
        prefix,
    ] {
        let spec = format!("{:?}", cfg.placement);
        // Trained (two AdamW steps), so the adapter really changes the output...
        let (model, _, _) = trained(&cfg);
        let model = model.valid();
        let tuned = host(logits(&model, &device));
        assert_ne!(tuned, base, "{spec}: training changed the output");
        // ...and switching it off gives the base model's output bit for bit, leaving the
        // adapted model as it was.
        let off = peft::disabled(&model, &cfg).unwrap();
        assert_eq!(host(logits(&off, &device)), base, "{spec}");
        assert_eq!(
            host(logits(&model, &device)),
            tuned,
            "{spec}: the adapted model is untouched"
        );
    }
    let e = peft::disabled(
        &pollster::block_on(Pipeline::load(&folder("blip_vqa"), &device))
            .unwrap()
            .model,
        &PeftConfig::parse("layernorm").unwrap(),
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("vision=layernorm") && e.contains("load the base model again"),
        "{e}"
    );
}

#[test]
fn lora_on_query_and_value_slices_of_fused_qkv() {
    // MED-PEFT's LoRA on a fused qkv: separate updates for the query and value thirds only.
    let mut cfg = PeftConfig::parse("vision=lora,text_encoder=frozen,decoder=frozen").unwrap();
    cfg.lora.r = 4;
    cfg.lora.target_modules = Some(vec!["qkv.q".into(), "qkv.v".into()]);
    let device = Device::flex();
    let p = pollster::block_on(Pipeline::load(&folder("blip_vqa"), &device)).unwrap();
    let base = host(logits(&p.model, &device));
    let adapted = peft::apply(p.model, &cfg).unwrap();
    assert_eq!(
        host(logits(&adapted, &device)),
        base,
        "B = 0 at init: no change"
    );
    // Count: per layer r·(in + out/3) for q and for v, nothing for k.
    let (layers, hidden) = {
        let c: serde_json::Value =
            serde_json::from_slice(&std::fs::read(fixture("blip_vqa/config.json")).unwrap())
                .unwrap();
        (
            c["vision_config"]["num_hidden_layers"].as_u64().unwrap() as usize,
            c["vision_config"]["hidden_size"].as_u64().unwrap() as usize,
        )
    };
    // Trained: the vision encoder's output moves, the key slice of every qkv stays the base's.
    let (model, before, after) = trained(&cfg);
    let report = peft::report(&model);
    assert_eq!(report.trainable_params, layers * 2 * 4 * (hidden + hidden));
    let moved = before
        .iter()
        .zip(&after)
        .filter(|(b, a)| b.1 != a.1)
        .count();
    assert_eq!(moved, layers * 4, "a_q, b_q, a_v, b_v in every layer moved");
    let merged = model.clone().valid().materialize();
    let rows = normtune_core::models::walk::params(&merged, |p, _, _| {
        p.last().is_some_and(|l| l == "weight") && p.iter().any(|s| s == "qkv")
    });
    let base_rows = {
        let p = pollster::block_on(Pipeline::load(&folder("blip_vqa"), &device)).unwrap();
        normtune_core::models::walk::params(&p.model, |p, _, _| {
            p.last().is_some_and(|l| l == "weight") && p.iter().any(|s| s == "qkv")
        })
    };
    let rows: Vec<_> = rows.into_iter().filter(|r| r.values.is_some()).collect();
    let base_rows: Vec<_> = base_rows
        .into_iter()
        .filter(|r| r.values.is_some())
        .collect();
    assert_eq!((rows.len(), base_rows.len()), (layers, layers));
    for (m, b) in rows.iter().zip(&base_rows) {
        let (mv, bv) = (m.values.as_ref().unwrap(), b.values.as_ref().unwrap());
        let (d_in, d_out) = (m.shape[0], m.shape[1]);
        let third = d_out / 3;
        let col_changed = |lo: usize, hi: usize| {
            (0..d_in).any(|i| (lo..hi).any(|j| mv[i * d_out + j] != bv[i * d_out + j]))
        };
        assert!(
            col_changed(0, third) && col_changed(2 * third, d_out),
            "q and v thirds updated"
        );
        assert!(
            !col_changed(third, 2 * third),
            "the key third is the base's"
        );
    }
    // No peft format: saved as normtune's folder, and it loads back to the same output.
    let files = peft::io::save_adapter(&model, &cfg, "blip_vqa").unwrap();
    let cfg_json: serde_json::Value = serde_json::from_slice(
        &files
            .iter()
            .find(|f| f.0 == "adapter_config.json")
            .unwrap()
            .1,
    )
    .unwrap();
    assert_eq!(cfg_json["peft_type"], "NORMTUNE");
    let mut src = MemorySource::new();
    for (n, b) in files {
        src.insert(n, b);
    }
    let fresh = pollster::block_on(Pipeline::load(&folder("blip_vqa"), &device)).unwrap();
    let loaded = pollster::block_on(peft::io::load_adapter(fresh.model, &src)).unwrap();
    assert_eq!(
        host(logits(&loaded, &device)),
        host(logits(&model.valid(), &device))
    );
}

#[test]
fn lora_dropout_acts_on_the_lora_branch_only_while_training() {
    let mut cfg = lora_cfg("vision=frozen,text_encoder=lora,decoder=lora", 4);
    cfg.lora.lora_dropout = 0.5;
    let (model, _, _) = trained(&cfg);
    let ad = Device::flex().autodiff();
    let (a, b) = (host(logits(&model, &ad)), host(logits(&model, &ad)));
    assert_ne!(a, b, "two training forwards draw different dropout masks");
    // Inference (no autodiff): deterministic, and equal to the merged weights' output.
    let flex = Device::flex();
    let valid = model.clone().valid();
    let v = host(logits(&valid, &flex));
    assert_eq!(v, host(logits(&valid, &flex)));
    let merged = host(logits(&valid.materialize(), &flex));
    let scale = v.iter().fold(0f32, |m, x| m.max(x.abs()));
    let err = v
        .iter()
        .zip(&merged)
        .fold(0f32, |m, (x, y)| m.max((x - y).abs()))
        / scale;
    assert!(err < 1e-5, "unmerged vs merged {err}");
    // Without dropout the training forward is the inference forward.
    let mut none = cfg.clone();
    none.lora.lora_dropout = 0.0;
    let (m0, _, _) = trained(&none);
    let t0 = host(logits(&m0, &ad));
    let i0 = host(logits(&m0.valid(), &flex));
    // (x·W + s·x·A·B and x·(W + s·A·B) round differently: compare relative to the largest logit.)
    let scale = i0.iter().fold(0f32, |m, x| m.max(x.abs()));
    let err = t0
        .iter()
        .zip(&i0)
        .fold(0f32, |m, (x, y)| m.max((x - y).abs()))
        / scale;
    assert!(err < 1e-5, "{err}");
}
