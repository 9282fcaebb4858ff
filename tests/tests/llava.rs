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

    let greedy = pollster::block_on(model.generate_greedy(&ids, pixels.clone(), 6, &[])).unwrap();
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

/// LN tuning of the LLaVA-style model with a trainable projector, on a batch of two chats of
/// different lengths (right-padded; only answers learned), against transformers' loss
/// (`labels=`) and its gradients (`tests/fixtures/make_llava_train_fixtures.py`).
#[test]
fn chat_loss_and_ln_tuning_gradients_match_hf() {
    ln_tuning_against_hf(None, 1e-4, 1e-3);
}

/// `train.frozen_dtype = "f16"`: the language model's frozen Linear and embedding weights are
/// stored in f16 and applied in f16 (f32 accumulation); the loss and every trainable gradient
/// stay within half precision's reach of HF's f32 values (measured: loss 2.1e-5 relative,
/// gradients 1.1e-3 at worst; f16 keeps 11 significant bits, 4.9e-4 relative per rounding).
#[test]
fn chat_loss_and_ln_tuning_gradients_with_frozen_f16_weights_stay_near_hf() {
    ln_tuning_against_hf(Some(FrozenDtype::F16), 5e-4, 1e-2);
}

use normtune_core::models::walk::FrozenDtype;

fn ln_tuning_against_hf(frozen: Option<FrozenDtype>, loss_tol: f32, grad_tol: f32) {
    use normtune_core::burn::optim::GradientsParams;
    use normtune_core::models::{Model, Pipeline, export::hf_name, walk};
    use normtune_core::peft::{self, PeftConfig};

    let device = Device::flex().autodiff();
    let p = pollster::block_on(Pipeline::load(&folder("llava/tiny"), &device)).unwrap();
    let cfg = PeftConfig::parse("vision=layernorm,projector=full,decoder=layernorm").unwrap();
    let model = peft::apply(p.model, &cfg).unwrap();
    let model = match frozen {
        Some(dt) => {
            let castable = peft::frozen::castable(&model, &cfg);
            let (model, n) = peft::store_frozen(model, dt).unwrap();
            let Model::Llava(m) = &model else {
                panic!("not a LLaVA model")
            };
            let lm = &m.language_model;
            // Every Linear weight of the decoder and the (tied) embedding, and nothing else.
            let layer = &lm.model.layers[0];
            let per_layer: usize = [
                &layer.self_attn.q_proj,
                &layer.self_attn.k_proj,
                &layer.self_attn.v_proj,
                &layer.self_attn.o_proj,
                &layer.mlp.gate_proj,
                &layer.mlp.up_proj,
                &layer.mlp.down_proj,
            ]
            .iter()
            .map(|l| {
                assert_eq!(l.weight.dtype(), dt.dtype());
                l.weight.dims().iter().product::<usize>()
            })
            .sum();
            let embed = lm
                .model
                .embed_tokens
                .weight
                .dims()
                .iter()
                .product::<usize>();
            let head = lm
                .lm_head
                .as_ref()
                .map_or(0, |h| h.weight.dims().iter().product::<usize>());
            assert_eq!(n, per_layer * lm.model.layers.len() + embed + head);
            assert_eq!(n, castable, "the memory estimate's count");
            assert_eq!(
                layer.input_layernorm.gamma.dtype(),
                normtune_core::burn::tensor::DType::F32,
                "a trainable norm stays f32"
            );
            model
        }
        None => model,
    };
    let Model::Llava(m) = &model else {
        panic!("not a LLaVA model")
    };
    let bytes = std::fs::read(fixture("llava/tiny/train_reference.json")).unwrap();
    let r: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    let ints = |v: &serde_json::Value| -> Vec<Vec<i64>> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|row| {
                row.as_array()
                    .unwrap()
                    .iter()
                    .map(|x| x.as_i64().unwrap())
                    .collect()
            })
            .collect()
    };
    let floats = |v: &serde_json::Value| -> Vec<f32> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap() as f32)
            .collect()
    };
    let (prompts, answers) = (ints(&r["prompts"]), ints(&r["answers"]));
    let ids: Vec<Vec<i64>> = prompts
        .iter()
        .zip(&answers)
        .map(|(p, a)| [p.as_slice(), a.as_slice()].concat())
        .collect();
    let spans: Vec<Vec<std::ops::Range<usize>>> = ids
        .iter()
        .zip(&prompts)
        .map(|(row, p)| vec![p.len()..row.len()])
        .collect();
    let pixels = floats(&r["pixel_values"]);
    let pixels = Tensor::<1>::from_floats(pixels.as_slice(), &device).reshape([2, 3, 28, 28]);

    let loss = normtune_core::train::trainer::chat_loss(m, pixels, &ids, &spans, 0.0).unwrap();
    let value = loss.clone().into_data().iter::<f32>().next().unwrap();
    let want = r["loss"].as_f64().unwrap() as f32;
    println!("loss {value} (HF {want})");
    assert!(
        (value - want).abs() <= loss_tol * want.abs(),
        "loss {value} vs {want}"
    );

    let grads = GradientsParams::from_grads(loss.backward(), &model);
    let rows = walk::params(&model, |_, _, _| false);
    let (mut compared, mut worst) = (0, 0f32);
    for row in rows.iter().filter(|r| r.trainable) {
        let name = hf_name(&row.dotted());
        let got: Vec<f32> = match row.shape.len() {
            1 => grads
                .get::<1>(row.id)
                .map(|g| g.into_data().iter().collect()),
            2 => grads.get::<2>(row.id).map(|g| {
                let v: Vec<f32> = g.into_data().iter().collect();
                // burn keeps Linear weights [in, out]; PyTorch [out, in].
                walk::transposed(&row.shape, &v).1
            }),
            d => panic!("{name}: a trainable {d}-D parameter"),
        }
        .unwrap_or_else(|| vec![0.0; row.shape.iter().product()]);
        match r["grads"].get(&name) {
            Some(g) => {
                let err = max_rel_err(&got, &floats(&g["values"]));
                assert!(err <= grad_tol, "{name}: gradient off by {err:.2e}");
                compared += 1;
                worst = worst.max(err);
            }
            // Unused by the forward (the tower's last layer and post_layernorm, past the
            // penultimate hidden state LLaVA reads): HF has no gradient; neither may we.
            None => assert!(got.iter().all(|x| *x == 0.0), "{name}: unexpected gradient"),
        }
    }
    assert_eq!(
        compared,
        r["grads"].as_object().unwrap().len(),
        "every HF gradient compared"
    );
    println!("{compared} gradients match, max relative error {worst:.2e}");
}

/// A checkpoint in shards (transformers' `save_pretrained(max_shard_size=...)`: three
/// `model-0000k-of-00003.safetensors` and `model.safetensors.index.json`) loads to the same model
/// as the single file; an index naming a missing shard, or a shard missing a tensor the index
/// places there, is one error naming the file.
#[test]
fn a_sharded_checkpoint_loads_as_the_single_file() {
    use normtune_core::models::{Model, Pipeline};
    use normtune_core::source::MemorySource;

    let device = Device::flex();
    let one = pollster::block_on(Pipeline::load(&folder("llava/tiny"), &device)).unwrap();
    let src = folder("llava/tiny_sharded");
    let sharded = pollster::block_on(Pipeline::load(&src, &device)).unwrap();
    let r = reference_json("llava/tiny");
    let ids: Vec<i64> = r["input_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_i64().unwrap())
        .collect();
    let pixels: Vec<f32> = r["pixel_values"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect();
    let pixels = Tensor::<1>::from_floats(pixels.as_slice(), &device).reshape([1, 3, 28, 28]);
    let logits = |p: &Pipeline| -> Vec<f32> {
        let Model::Llava(m) = &p.model else { panic!() };
        m.forward(&ids, pixels.clone())
            .unwrap()
            .into_data()
            .iter::<f32>()
            .collect()
    };
    assert_eq!(logits(&one), logits(&sharded));

    let index = "model.safetensors.index.json";
    let without = |drop: &str| {
        let mut m = MemorySource::new();
        for entry in std::fs::read_dir(fixture("llava/tiny_sharded")).unwrap() {
            let e = entry.unwrap();
            let name = e.file_name().to_string_lossy().to_string();
            if name != drop {
                m.insert(&name, std::fs::read(e.path()).unwrap());
            }
        }
        m
    };
    let e = pollster::block_on(Pipeline::load(
        &without("model-00002-of-00003.safetensors"),
        &device,
    ))
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("model-00002-of-00003.safetensors") && e.lines().count() == 1,
        "{e}"
    );
    // The index places a tensor in a shard that does not hold it.
    let mut m = without("");
    let bytes = std::fs::read(fixture("llava/tiny_sharded").join(index)).unwrap();
    let mut v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    let key = "language_model.model.norm.weight";
    let held = v["weight_map"][key].as_str().unwrap().to_string();
    let other = [
        "model-00001-of-00003.safetensors",
        "model-00003-of-00003.safetensors",
    ]
    .into_iter()
    .find(|s| *s != held)
    .unwrap();
    v["weight_map"][key] = other.into();
    m.insert(index, serde_json::to_vec(&v).unwrap());
    let e = pollster::block_on(Pipeline::load(&m, &device))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains(&format!("{other}: has no tensor `{key}`")) && e.contains(index),
        "{e}"
    );
}

/// A peft LoRA adapter on the LLaVA decoder (transformers 5 names, `model.language_model.…`)
/// loads and gives peft's logits; written back, it has peft's keys and values.
#[test]
fn a_peft_lora_adapter_on_the_decoder_matches_peft() {
    peft_adapter_on_the_decoder_matches_peft("llava/lora", "lora");
}

/// The same for a peft DoRA adapter (every tensor random, magnitudes included;
/// `fixtures/make_dora_fixtures.py`).
#[test]
fn a_peft_dora_adapter_on_the_decoder_matches_peft() {
    peft_adapter_on_the_decoder_matches_peft("llava/dora", "dora");
}

fn peft_adapter_on_the_decoder_matches_peft(dir: &str, method: &str) {
    use normtune_core::models::Pipeline;
    use normtune_core::peft::io;

    let device = Device::flex();
    let p = pollster::block_on(Pipeline::load(&folder("llava/tiny"), &device)).unwrap();
    let model = pollster::block_on(io::load_adapter(p.model, &folder(dir))).unwrap();
    let err = adapter_logits_error(&model, dir, &device);
    println!("logits with the peft {method} adapter: max relative error {err:.2e}");
    assert!(err <= 1e-4, "{err:.2e}");

    // Saved again: peft's keys and values.
    let spec = format!("vision=frozen,projector=frozen,decoder={method}");
    let mut cfg = normtune_core::peft::PeftConfig::parse(&spec).unwrap();
    cfg.lora.r = 4;
    cfg.lora.lora_alpha = 8.0;
    let files = io::save_adapter(&model, &cfg, "tests/fixtures/llava/tiny").unwrap();
    let ours = &files.iter().find(|(n, _)| n == io::WEIGHTS_FILE).unwrap().1;
    let theirs = std::fs::read(fixture(dir).join(io::WEIGHTS_FILE)).unwrap();
    assert_same_tensors(ours, &theirs);
}

/// The largest relative error of the LLaVA model's logits against `<rel>/reference.json`'s, on
/// its `input_ids` and the first training image of `llava/tiny`.
fn adapter_logits_error(model: &normtune_core::models::Model, rel: &str, device: &Device) -> f32 {
    let normtune_core::models::Model::Llava(m) = model else {
        panic!("not a LLaVA model")
    };
    let r = reference_json(rel);
    let ids: Vec<i64> = r["input_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_i64().unwrap())
        .collect();
    let t = serde_json::from_slice::<serde_json::Value>(
        &std::fs::read(fixture("llava/tiny/train_reference.json")).unwrap(),
    )
    .unwrap();
    let pixels: Vec<f32> = t["pixel_values"].as_array().unwrap()[..3 * 28 * 28]
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect();
    let pixels = Tensor::<1>::from_floats(pixels.as_slice(), device).reshape([1, 3, 28, 28]);
    let got: Vec<f32> = m
        .forward(&ids, pixels)
        .unwrap()
        .into_data()
        .iter()
        .collect();
    let want: Vec<f32> = r["logits"]["values"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect();
    max_rel_err(&got, &want)
}

/// Two safetensors files hold the same names, shapes and f32 values.
fn assert_same_tensors(ours: &[u8], theirs: &[u8]) {
    let (a, b) = (
        safetensors::SafeTensors::deserialize(ours).unwrap(),
        safetensors::SafeTensors::deserialize(theirs).unwrap(),
    );
    let mut ka: Vec<String> = a.names().into_iter().map(String::from).collect();
    let mut kb: Vec<String> = b.names().into_iter().map(String::from).collect();
    ka.sort();
    kb.sort();
    assert_eq!(ka, kb);
    let f = |d: &[u8]| -> Vec<f32> {
        d.chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect()
    };
    for k in &ka {
        let (x, y) = (a.tensor(k).unwrap(), b.tensor(k).unwrap());
        assert_eq!(x.shape(), y.shape(), "{k}");
        assert_eq!(f(x.data()), f(y.data()), "{k}");
    }
}

/// The lazy count (`inspect` on a config without weights) agrees with the count read from the
/// parameters themselves, for several placements.
#[test]
fn the_lazy_trainable_count_agrees_with_the_parameters() {
    use normtune_core::models::Pipeline;
    use normtune_core::peft::{self, PeftConfig};
    let device = Device::flex().autodiff();
    for spec in [
        "layernorm",
        "vision=layernorm,projector=full,decoder=layernorm",
        "vision=frozen,projector=frozen,decoder=lora",
        "bitfit",
        "full",
    ] {
        let p = pollster::block_on(Pipeline::load(&folder("llava/tiny"), &device)).unwrap();
        let cfg = PeftConfig::parse(spec).unwrap();
        let model = peft::apply(p.model, &cfg).unwrap();
        assert_eq!(
            peft::report_lazy(&model, &cfg),
            peft::report(&model),
            "{spec}"
        );
    }
}

/// Configs and tokenizers that do not fit the model are refused in one line naming the field.
#[test]
fn an_image_token_or_a_tokenizer_outside_the_vocabulary_is_refused() {
    use normtune_core::models::Pipeline;
    let mut cfg: serde_json::Value =
        serde_json::from_slice(&std::fs::read(fixture("llava/tiny/config.json")).unwrap()).unwrap();
    cfg["image_token_index"] = 80.into();
    let e = llava::LlavaConfig::from_json(&serde_json::to_vec(&cfg).unwrap(), "config.json")
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("image_token_index") && e.contains("80 is outside"),
        "{e}"
    );
    // A vocabulary 10 tokens smaller than the tokenizer's: the words past it are refused.
    let mut cfg: serde_json::Value =
        serde_json::from_slice(&std::fs::read(fixture("llava/tiny/config.json")).unwrap()).unwrap();
    let mut src = folder("llava/tiny");
    cfg["text_config"]["vocab_size"] = 70.into();
    cfg["image_token_index"] = 69.into();
    src.insert("config.json", serde_json::to_vec(&cfg).unwrap());
    let device = Device::flex();
    let e = pollster::block_on(Pipeline::load_with(&src, &device, false))
        .unwrap()
        .llava_prompt("is there a left pleural effusion?")
        .map(|_| ())
        .and_then(|_| {
            pollster::block_on(Pipeline::load_with(&src, &device, false))
                .unwrap()
                .llava_prompt("w75 w76")
                .map(|_| ())
        })
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("outside the model's vocabulary of 70") && e.lines().count() == 1,
        "{e}"
    );
}

/// The README's LLaVA recipe (LayerNorm tuning with a trainable projector) is peft's
/// `LN_TUNING` with `modules_to_save = ["multi_modal_projector"]`: peft's adapter
/// (tests/fixtures/make_llava_ln_adapter.py) loads and gives peft's logits, and normtune writes
/// the same file back (keys, values, target and saved modules), so peft loads normtune's.
#[test]
fn the_llava_recipe_is_a_peft_ln_tuning_adapter_with_the_projector_saved() {
    use normtune_core::models::Pipeline;
    use normtune_core::peft::{self, PeftConfig, io};

    let device = Device::flex();
    let p = pollster::block_on(Pipeline::load(&folder("llava/tiny"), &device)).unwrap();
    let model = pollster::block_on(io::load_adapter(p.model, &folder("llava/ln_tuning"))).unwrap();
    let err = adapter_logits_error(&model, "llava/ln_tuning", &device);
    println!("logits with peft's LN_TUNING + projector adapter: max relative error {err:.2e}");
    assert!(err <= 1e-4, "{err:.2e}");
    let r = reference_json("llava/ln_tuning");

    // The same trained state, written by normtune: peft's file.
    let cfg = PeftConfig::parse("vision=layernorm,projector=full,decoder=layernorm").unwrap();
    let train = Device::flex().autodiff();
    let p = pollster::block_on(Pipeline::load(&folder("llava/tiny"), &train)).unwrap();
    let model = peft::apply(p.model, &cfg).unwrap();
    let model = pollster::block_on(io::load_adapter(model, &folder("llava/ln_tuning"))).unwrap();
    assert_eq!(
        peft::report::report(&model).trainable_params as u64,
        r["trainable"].as_u64().unwrap()
    );
    let files = io::save_adapter(&model, &cfg, "tests/fixtures/llava/tiny").unwrap();
    let file = |name: &str| files.iter().find(|(n, _)| n == name).unwrap().1.clone();
    let ours: serde_json::Value = serde_json::from_slice(&file(io::CONFIG_FILE)).unwrap();
    let theirs: serde_json::Value = serde_json::from_slice(
        &std::fs::read(fixture("llava/ln_tuning").join(io::CONFIG_FILE)).unwrap(),
    )
    .unwrap();
    assert_eq!(ours["peft_type"], "LN_TUNING");
    assert_eq!(ours["modules_to_save"], theirs["modules_to_save"]);
    let set = |v: &serde_json::Value| {
        let mut s: Vec<String> = v
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_str().unwrap().to_string())
            .collect();
        s.sort();
        s
    };
    assert_eq!(set(&ours["target_modules"]), set(&theirs["target_modules"]));
    let theirs = std::fs::read(fixture("llava/ln_tuning").join(io::WEIGHTS_FILE)).unwrap();
    assert_same_tensors(&file(io::WEIGHTS_FILE), &theirs);
}

/// Methods that attach to modules the LLaVA family does not have (IA3 and prefixes on BERT text
/// models, bottleneck adapters on BLIP/ViT towers) are refused by name, not silently skipped:
/// the family says where each method can attach.
#[test]
fn methods_without_a_place_in_llava_are_refused() {
    use normtune_core::models::Pipeline;
    use normtune_core::peft::{self, PeftConfig};
    let device = Device::flex().autodiff();
    let p = pollster::block_on(Pipeline::load(&folder("llava/tiny"), &device)).unwrap();
    for spec in [
        "vision=layernorm,projector=full,decoder=ia3",
        "vision=layernorm,projector=full,decoder=prefix",
        "vision=adapter,projector=full,decoder=layernorm",
    ] {
        let e = peft::apply(p.model.clone(), &PeftConfig::parse(spec).unwrap()).unwrap_err();
        let (comp, method) = spec
            .split(',')
            .filter_map(|x| x.split_once('='))
            .find(|(_, m)| !matches!(*m, "layernorm" | "full"))
            .unwrap();
        assert_eq!(
            e.to_string(),
            format!(
                "`{method}` is not implemented for this model: it has no place for it in `{comp}`"
            ),
            "{spec}"
        );
    }
}
