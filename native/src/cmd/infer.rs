//! `normtune infer`: answer, report or classify one image.

use crate::cli::InferArgs;
use crate::fs::{DirSource, read_file};
use normtune_core::device::choose;
use normtune_core::models::blip::GenConfig;
use normtune_core::models::{Architecture, Pipeline};
use serde_json::json;

pub fn run(a: InferArgs) -> anyhow::Result<()> {
    let dev = choose(a.device.device);
    eprintln!("device: {}", dev.reason);
    let src = DirSource::open(&a.model)?;
    let image = read_file(&a.image)?;
    let mut p = pollster::block_on(Pipeline::load(&src, &dev.device))?;
    if let Some(dir) = &a.adapter {
        p.model = pollster::block_on(normtune_core::peft::io::load_adapter(
            p.model,
            &DirSource::open(dir)?,
        ))?;
    }
    let pixels = p.image_tensor(&image, &a.image.display().to_string())?;
    let gen_cfg = GenConfig {
        num_beams: a.num_beams,
        max_new_tokens: a.max_new_tokens,
        ..GenConfig::default()
    };
    let arch = p.config.architecture();
    match (arch, &a.question, &a.candidates) {
        (Architecture::ViTForImageClassification, ..) => {
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
