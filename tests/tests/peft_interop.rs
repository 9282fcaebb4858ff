//! HF peft interoperability for LayerNorm tuning, LoRA, DoRA, IA3 and prefix tuning, on the tiny BLIP VQA fixture:
//! (a) the adapter folder peft's `save_pretrained` wrote loads here and gives peft's outputs;
//! (b) the folder normtune writes has peft's exact keys, shapes, values and config fields.
//! Fixtures: `fixtures/make_peft_fixtures.py` (peft from PyPI).

use normtune_core::burn::tensor::Device;
use normtune_core::models::blip::GenConfig;
use normtune_core::models::{Model, Pipeline};
use normtune_core::peft::{self, PeftConfig, io};
use normtune_core::source::MemorySource;
use normtune_tests::*;

const LN: &str = "peft_ln_vqa";
const LORA: &str = "peft_lora_vqa";
const IA3: &str = "peft_ia3_vqa";
/// DoRA (`LoraConfig(use_dora=True)`), from `fixtures/make_dora_fixtures.py`, with gradients.
const DORA: &str = "peft_dora_vqa";
/// Prefix tuning of the text decoder (peft on `blip.text_decoder`, CAUSAL_LM, 5 virtual tokens,
/// no projection), from `fixtures/make_prefix_fixtures.py`.
const PREFIX: &str = "peft_prefix_vqa";

fn adapted(device: &Device, adapter: &MemorySource) -> Pipeline {
    let mut p = pollster::block_on(Pipeline::load(&folder("blip_vqa"), device)).unwrap();
    p.model = pollster::block_on(io::load_adapter(p.model, adapter)).unwrap();
    p
}

fn check_outputs(dir: &str, p: &Pipeline, device: &Device) {
    let Model::Vqa(m) = &p.model else { panic!() };
    let pixels = reference("blip_vqa", "pixel_values").float::<4>(device);
    let image = m.encode_image(pixels.clone());
    assert_close(
        "adapted vision_last_hidden_state",
        image.clone(),
        &reference(dir, "vision_last_hidden_state"),
        1e-4,
    );
    let ids = reference("blip_vqa", "input_ids").int::<2>(device);
    let mask = reference("blip_vqa", "attention_mask").float::<2>(device);
    let q = m.encode_question(&image, ids, Some(mask));
    assert_close(
        "adapted question_embeds",
        q.clone(),
        &reference(dir, "question_embeds"),
        1e-4,
    );
    let dec = reference("blip_vqa", "decoder_input_ids").int::<2>(device);
    let dec_mask = reference("blip_vqa", "decoder_attention_mask").float::<2>(device);
    assert_close(
        "adapted decoder_logits",
        m.answer_logits(&q, None, dec, Some(dec_mask)),
        &reference(dir, "decoder_logits"),
        1e-4,
    );

    let r = reference_json(dir);
    let tokens = p.special_tokens().unwrap();
    let questions = reference_json("blip_vqa")["questions"].clone();
    for (key, beams) in [("greedy_ids", 1), ("beam3_ids", 3)] {
        let expected = id_lists(&r["generation"][key]);
        for (i, want) in expected.iter().enumerate() {
            let ids = p.question_ids(questions[i].as_str().unwrap()).unwrap();
            let cfg = GenConfig {
                num_beams: beams,
                max_new_tokens: 8,
                length_penalty: 1.0,
            };
            let out = pollster::block_on(m.generate(
                pixels.clone().narrow(0, i, 1),
                ids,
                None,
                &tokens,
                &cfg,
            ))
            .unwrap();
            assert_eq!(&out[0], want, "{key} question {i}");
        }
    }
}

#[test]
fn peft_ln_tuning_adapter_loads_and_matches_peft() {
    let device = Device::flex();
    check_outputs(
        LN,
        &adapted(&device, &folder("peft_ln_vqa/adapter")),
        &device,
    );
}

#[test]
fn peft_lora_and_ia3_adapters_load_and_match_peft_merged_too() {
    for dir in [LORA, IA3] {
        merged_matches(dir);
    }
}

fn merged_matches(dir: &str) {
    let device = Device::flex();
    let p = adapted(&device, &folder(&format!("{dir}/adapter")));
    check_outputs(dir, &p, &device);
    // merge_and_unload() in peft vs fold + materialize here.
    use normtune_core::burn::module::Module;
    let Model::Vqa(m) = &peft::ia3::fold(p.model.clone()).materialize() else {
        panic!()
    };
    let logits = vqa_decoder_logits(m, &device);
    assert_close(
        &format!("{dir} merged decoder_logits"),
        logits,
        &reference(dir, "merged_decoder_logits"),
        1e-4,
    );
}

/// The config normtune trains with to produce the fixture's adapter.
fn config_for(dir: &str) -> PeftConfig {
    if dir == PREFIX {
        let mut c =
            PeftConfig::parse("vision=frozen,text_encoder=frozen,decoder=ptuning-v2").unwrap();
        c.prefix.num_virtual_tokens = 5;
        return c;
    }
    if dir == LN {
        return PeftConfig::parse("layernorm").unwrap();
    }
    if dir == IA3 {
        return PeftConfig::parse("vision=frozen,text_encoder=ia3,decoder=ia3").unwrap();
    }
    let mut c = PeftConfig::parse(if dir == DORA { "dora" } else { "lora" }).unwrap();
    c.lora.r = 4;
    c.lora.lora_alpha = 8.0;
    c.lora.lora_dropout = 0.0;
    c
}

/// Loads peft's adapter, marks it trainable as normtune would, and writes it back.
fn rewrite(dir: &str) -> (Model, Vec<(String, Vec<u8>)>) {
    let device = Device::flex().autodiff();
    let p = adapted(&device, &folder(&format!("{dir}/adapter")));
    let cfg = config_for(dir);
    // LoRA and IA3 parameters are attached by loading; LN tuning marks which LayerNorms train.
    let model = if dir == LN {
        peft::apply(p.model, &cfg).unwrap()
    } else {
        p.model
    };
    let files = io::save_adapter(&model, &cfg, "tests/fixtures/blip_vqa").unwrap();
    (model, files)
}

#[test]
fn normtune_writes_the_adapters_peft_writes() {
    for dir in [LN, LORA, DORA, IA3, PREFIX] {
        same_files_as_peft(dir);
    }
}

fn same_files_as_peft(dir: &str) {
    let (_, files) = rewrite(dir);
    let ours = &files.iter().find(|(n, _)| n == io::WEIGHTS_FILE).unwrap().1;
    let theirs = std::fs::read(fixture(&format!("{dir}/adapter")).join(io::WEIGHTS_FILE)).unwrap();
    let a = safetensors::SafeTensors::deserialize(ours).unwrap();
    let b = safetensors::SafeTensors::deserialize(&theirs).unwrap();
    let mut ka: Vec<String> = a.names().into_iter().map(String::from).collect();
    let mut kb: Vec<String> = b.names().into_iter().map(String::from).collect();
    ka.sort();
    kb.sort();
    assert_eq!(ka, kb, "{dir}: same tensor names as peft");
    for k in &ka {
        let (ta, tb) = (a.tensor(k).unwrap(), b.tensor(k).unwrap());
        assert_eq!(ta.shape(), tb.shape(), "{k}");
        assert_eq!(ta.data(), tb.data(), "{k}: values round-trip bit for bit");
    }
    let ours_cfg: serde_json::Value =
        serde_json::from_slice(&files.iter().find(|(n, _)| n == io::CONFIG_FILE).unwrap().1)
            .unwrap();
    let theirs_cfg: serde_json::Value = serde_json::from_slice(
        &std::fs::read(fixture(&format!("{dir}/adapter")).join(io::CONFIG_FILE)).unwrap(),
    )
    .unwrap();
    for field in [
        "r",
        "lora_alpha",
        "use_rslora",
        "use_dora",
        "bias",
        "fan_in_fan_out",
        "feedforward_modules",
    ] {
        assert_eq!(ours_cfg.get(field), theirs_cfg.get(field), "{dir}: {field}");
    }
    assert_eq!(ours_cfg["peft_type"], theirs_cfg["peft_type"]);
    if dir == PREFIX {
        for field in [
            "task_type",
            "num_virtual_tokens",
            "token_dim",
            "num_transformer_submodules",
            "num_attention_heads",
            "num_layers",
            "prefix_projection",
            "encoder_hidden_size",
        ] {
            assert_eq!(ours_cfg.get(field), theirs_cfg.get(field), "{dir}: {field}");
        }
        let mut src = MemorySource::new();
        for (name, bytes) in files {
            src.insert(name, bytes);
        }
        let flex = Device::flex();
        check_outputs(dir, &adapted(&flex, &src), &flex);
        return;
    }
    let mut ta: Vec<String> = serde_json::from_value(ours_cfg["target_modules"].clone()).unwrap();
    let mut tb: Vec<String> = serde_json::from_value(theirs_cfg["target_modules"].clone()).unwrap();
    ta.sort();
    tb.sort();
    assert_eq!(ta, tb, "target_modules");

    // And what normtune wrote loads back to the same outputs.
    let mut src = MemorySource::new();
    for (name, bytes) in files {
        src.insert(name, bytes);
    }
    let flex = Device::flex();
    check_outputs(dir, &adapted(&flex, &src), &flex);
}

#[test]
fn adapter_for_another_model_is_rejected() {
    let device = Device::flex();
    let p = pollster::block_on(Pipeline::load(&folder("blip_caption"), &device)).unwrap();
    let e = pollster::block_on(io::load_adapter(p.model, &folder("peft_ln_vqa/adapter")))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("adapter_model.safetensors")
            && (e.contains("text_encoder") || e.contains("shape")),
        "{e}"
    );
}

/// Writes `fixtures/<dir>/normtune_adapter/` (normtune's adapter + its decoder logits) for the
/// peft-side check in `make_peft_fixtures.py` (part 2). Run by hand:
/// `cargo test -p normtune-tests --test peft_interop -- --ignored`, then the script.
#[test]
#[ignore]
fn write_normtune_adapters_for_the_peft_check() {
    for dir in [LN, LORA, DORA, IA3, PREFIX] {
        let (model, files) = rewrite(dir);
        let out = fixture(&format!("{dir}/normtune_adapter"));
        std::fs::create_dir_all(&out).unwrap();
        for (name, bytes) in &files {
            std::fs::write(out.join(name), bytes).unwrap();
        }
        let Model::Vqa(m) = &model else { panic!() };
        let logits = vqa_decoder_logits(m, &Device::flex().autodiff());
        let (shape, vals) = values(logits);
        let bytes = normtune_core::models::export::safetensors_bytes(
            &[("decoder_logits".into(), shape, vals)],
            "outputs.safetensors",
        )
        .unwrap();
        std::fs::write(out.join("outputs.safetensors"), bytes).unwrap();
    }
}

/// The trainable line is peft's `print_trainable_parameters()` character for character where
/// the two count the same parameters: LoRA and IA3 add their tensors to the base. (peft's LN
/// tuning keeps a trainable copy of each LayerNorm, so its "all params" is larger by the copies;
/// normtune trains the LayerNorms in place.)
#[test]
fn trainable_line_matches_peft() {
    let device = Device::flex().autodiff();
    for dir in [LORA, DORA, IA3] {
        let p = pollster::block_on(Pipeline::load(&folder("blip_vqa"), &device)).unwrap();
        let model = peft::apply(p.model, &config_for(dir)).unwrap();
        let want = reference_json(dir)["peft_trainable_line"]
            .as_str()
            .unwrap()
            .to_string();
        assert_eq!(peft::report(&model).peft_line(), want, "{dir}");
    }
    let p = pollster::block_on(Pipeline::load(&folder("blip_vqa"), &device)).unwrap();
    let rep = peft::report(&peft::apply(p.model, &config_for(LN)).unwrap());
    let want = reference_json(LN)["peft_trainable_line"]
        .as_str()
        .unwrap()
        .to_string();
    let copies = rep.trainable_params;
    let peft_all = rep.total_params + copies;
    assert!(
        want.starts_with(&format!(
            "trainable params: {} || all params: {} ||",
            peft::report::thousands(copies),
            peft::report::thousands(peft_all)
        )),
        "{want}"
    );
}

#[test]
fn peft_prefix_tuning_adapter_loads_and_matches_peft() {
    let device = Device::flex();
    let p = adapted(&device, &folder(&format!("{PREFIX}/adapter")));
    check_outputs(PREFIX, &p, &device);
    // The prefix changes the answers: the base model's ids differ (recorded by the script).
    let r = reference_json(PREFIX);
    assert_ne!(
        r["generation"]["greedy_ids"],
        r["generation"]["base_greedy_ids"]
    );
}

#[test]
fn peft_dora_adapter_loads_and_matches_peft_merged_too() {
    merged_matches(DORA);
}

/// The gradient of every DoRA tensor equals peft's for the same loss: peft treats the column
/// norm `‖W + s·B·A‖` as a constant (DoRA paper, section 4.3), and so must normtune.
#[test]
fn dora_gradients_match_peft() {
    use normtune_core::burn::optim::GradientsParams;
    use normtune_core::models::export::hf_name;
    use normtune_core::models::walk::params;
    let device = Device::flex().autodiff();
    let p = adapted(&device, &folder(&format!("{DORA}/adapter")));
    let model = peft::apply(p.model, &config_for(DORA)).unwrap();
    let Model::Vqa(m) = &model else { panic!() };
    let logits = vqa_decoder_logits(m, &device);
    let n = logits.dims().iter().product::<usize>() as f64;
    let loss = (logits * reference(DORA, "grad_weights").float::<3>(&device))
        .sum()
        .div_scalar(n);
    let want = reference_json(DORA)["grad_loss"].as_f64().unwrap();
    let got = values(loss.clone()).1[0] as f64;
    assert!(
        (got - want).abs() <= 1e-5 * want.abs(),
        "loss {got} vs peft {want}"
    );
    let grads = GradientsParams::from_grads(loss.backward(), &model);
    let mut checked = 0;
    for row in params(&model, |_, _, _| false) {
        let k = row.path.len();
        if k < 4 || row.path[k - 2] != "dora" {
            continue;
        }
        let module = hf_name(&row.path[..k - 3].join("."));
        let (key, got) = match row.path[k - 1].as_str() {
            "magnitude" => (
                "lora_magnitude_vector".to_string(),
                values(grads.get::<1>(row.id).expect("magnitude gradient")),
            ),
            // burn keeps A as [in, r] and B as [r, out]: peft's transposed.
            ab => (
                format!("lora_{}.weight", ab.to_uppercase()),
                values(grads.get::<2>(row.id).expect("factor gradient").transpose()),
            ),
        };
        let expected = reference(DORA, &format!("grad.base_model.model.{module}.{key}"));
        assert_eq!(got.0, expected.shape, "{module}.{key}");
        let err = max_rel_err(&got.1, &expected.values);
        assert!(
            err <= 1e-4,
            "{module}.{key}: gradient max relative error {err:.2e}"
        );
        checked += 1;
    }
    assert_eq!(
        checked,
        reference_json(DORA)["adapter_keys"]
            .as_array()
            .unwrap()
            .len()
    );
    println!("{checked} DoRA gradients match peft's");
}
