//! `normtune eval`: predict a dataset split with a model (and adapter) and score it.

use super::score::print_scores;
use crate::cli::EvalArgs;
use crate::fs::{DirSource, read_file, write_file_atomic};
use normtune_core::data::{read_examples, task_of};
use normtune_core::device::choose;
use normtune_core::models::Pipeline;
use normtune_core::models::blip::GenConfig;
use normtune_core::train::evaluate;

pub fn run(a: EvalArgs) -> anyhow::Result<()> {
    let name = a.data.display().to_string();
    let mut examples = read_examples(&read_file(&a.data)?, &name, a.format, &a.split)?;
    if let Some(n) = a.limit {
        examples.truncate(n.max(1));
    }
    let task = task_of(&examples, &name)?;
    let images = DirSource::open(a.images.clone().unwrap_or_else(|| {
        a.data
            .parent()
            .map(|p| p.to_path_buf())
            .unwrap_or_else(|| ".".into())
    }))?;
    let dev = choose(a.device.device).map_err(anyhow::Error::msg)?;
    eprintln!("device: {}", dev.reason);
    let mut p = pollster::block_on(Pipeline::load(
        &DirSource::open_model(&a.model)?,
        &dev.device,
    ))?;
    if let Some(t) = &a.chat_prompt {
        p.set_chat_prompt(&crate::cmd::infer::unescape(t))?;
    }
    if let Some(dir) = &a.adapter {
        p.model = pollster::block_on(normtune_core::peft::io::load_adapter(
            p.model,
            &DirSource::open(dir)?,
        ))?;
    }
    let generation = crate::cmd::infer::generation(
        &p,
        a.num_beams,
        a.max_new_tokens,
        GenConfig {
            num_beams: 1,
            max_new_tokens: 20,
            ..GenConfig::default()
        },
    );
    let (scores, preds) = pollster::block_on(evaluate(
        &p,
        task,
        &examples,
        &images,
        &generation,
        |d, t| eprint!("\r{d}/{t}   "),
    ))?;
    eprintln!();
    if let Some(path) = &a.predictions {
        let mut lines = Vec::new();
        for pr in &preds {
            lines.extend(serde_json::to_vec(pr)?);
            lines.push(b'\n');
        }
        write_file_atomic(path, &lines)?;
    }
    print_scores(&scores, a.json);
    Ok(())
}
