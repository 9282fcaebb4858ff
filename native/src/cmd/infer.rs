//! `normtune infer`: answer, report or classify one image.

use crate::cli::InferArgs;
use crate::fs::{DirSource, read_file};
use normtune_core::device::choose;
use normtune_core::models::Pipeline;
use normtune_core::models::blip::GenConfig;
use serde_json::json;

pub fn run(a: InferArgs) -> anyhow::Result<()> {
    let dev = choose(a.device.device).map_err(anyhow::Error::msg)?;
    eprintln!("device: {}", dev.reason);
    let src = DirSource::open_model(&a.model)?;
    let image = read_file(&a.image)?;
    let mut p = pollster::block_on(Pipeline::load(&src, &dev.device))?;
    if let Some(t) = &a.chat_prompt {
        p.set_chat_prompt(&unescape(t))?;
    }
    let base = a.compare.then(|| p.model.clone());
    if let Some(dir) = &a.adapter {
        p.model = pollster::block_on(normtune_core::peft::io::load_adapter(
            p.model,
            &DirSource::open(dir)?,
        ))?;
    }
    let pixels = p.image_tensor(&image, &a.image.display().to_string())?;
    let gen_cfg = generation(&p, a.num_beams, a.max_new_tokens, GenConfig::default());
    if let Some(base) = base {
        return compare(p, base, pixels, &a, &gen_cfg);
    }
    let classifier = p.config.labels().is_some();
    match (classifier, &a.question, &a.candidates) {
        (true, ..) => {
            let scores = pollster::block_on(p.classify(pixels))?;
            if a.json {
                println!("{}", json!({ "labels": scores }));
            } else {
                for s in scores {
                    println!("{:<24} {:.4}", s.label, s.probability);
                }
            }
        }
        (_, Some(q), Some(c)) => {
            let ranked = pollster::block_on(p.rank(pixels, q, c))?;
            if a.json {
                let list: Vec<_> = ranked
                    .iter()
                    .map(|(a, s)| json!({ "answer": a, "log_likelihood": s }))
                    .collect();
                println!("{}", json!({ "answer": ranked[0].0, "ranking": list }));
            } else {
                println!("{}", ranked[0].0);
            }
        }
        (_, Some(q), None) => {
            let g = pollster::block_on(p.answer(pixels, q, &gen_cfg))?;
            print_generated(&g, "answer", a.json);
        }
        (_, None, _) => {
            let g = pollster::block_on(p.report(pixels, &gen_cfg))?;
            print_generated(&g, "report", a.json);
        }
    }
    Ok(())
}

fn print_generated(g: &normtune_core::models::Generated, key: &str, as_json: bool) {
    if as_json {
        let mut v = json!({ "token_ids": g.token_ids, "answer": g.text });
        if key != "answer" {
            v[key] = json!(g.text);
        }
        println!("{v}");
    } else {
        println!("{}", g.text);
    }
}

/// Base and adapted model side by side on the same input.
fn compare(
    mut p: Pipeline,
    base: normtune_core::models::Model,
    pixels: normtune_core::burn::tensor::Tensor<4>,
    a: &InferArgs,
    gen_cfg: &GenConfig,
) -> anyhow::Result<()> {
    let mut out = Vec::new();
    let tuned = std::mem::replace(&mut p.model, base);
    for (name, model) in [("base", None), ("tuned", Some(tuned))] {
        if let Some(m) = model {
            p.model = m;
        }
        let text = match (p.config.labels().is_some(), &a.question) {
            (true, _) => {
                let s = pollster::block_on(p.classify(pixels.clone()))?;
                s.iter()
                    .map(|l| format!("{} {:.4}", l.label, l.probability))
                    .collect::<Vec<_>>()
                    .join(", ")
            }
            (_, Some(q)) => pollster::block_on(p.answer(pixels.clone(), q, gen_cfg))?.text,
            (_, None) => pollster::block_on(p.report(pixels.clone(), gen_cfg))?.text,
        };
        out.push((name, text));
    }
    if a.json {
        println!("{}", json!({ "base": out[0].1, "tuned": out[1].1 }));
    } else {
        for (name, text) in out {
            println!("{name:<6} {text}");
        }
    }
    Ok(())
}

/// Decoding settings: the command line's, else the folder's `generation_config.json`, else
/// `base`.
pub fn generation(
    p: &Pipeline,
    num_beams: Option<usize>,
    max_new_tokens: Option<usize>,
    base: GenConfig,
) -> GenConfig {
    let mut g = p.gen_config(base);
    if let Some(n) = num_beams {
        g.num_beams = n;
    }
    if let Some(n) = max_new_tokens {
        g.max_new_tokens = n;
    }
    g
}

/// A template typed on the command line: `\n` written as two characters becomes a newline.
pub fn unescape(t: &str) -> String {
    t.replace("\\n", "\n")
}
