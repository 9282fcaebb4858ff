//! `normtune inspect`: architecture, parameter counts per component, config, and what a PEFT
//! method would train (HF peft's trainable line).

use crate::cli::InspectArgs;
use crate::fs::{DirSource, read_file};
use normtune_core::burn::module::Module;
use normtune_core::device::choose;
use normtune_core::models::{Pipeline, memory};
use normtune_core::peft::{self, PeftConfig};
use normtune_core::source::FileSource;
use serde_json::json;

pub fn run(a: InspectArgs) -> anyhow::Result<()> {
    let peft_cfg = match (&a.peft, &a.peft_config) {
        (Some(spec), _) => Some(PeftConfig::parse(spec)?),
        (None, Some(path)) => Some(PeftConfig::from_json(
            &read_file(path)?,
            &path.display().to_string(),
        )?),
        (None, None) if a.estimate_memory => Some(PeftConfig::parse("layernorm")?),
        (None, None) => None,
    };
    let dev = choose(a.device.device).map_err(anyhow::Error::msg)?;
    // Trainability is a property of autodiff parameters: count it on the autodiff device.
    let device = if peft_cfg.is_some() {
        dev.device.clone().autodiff()
    } else {
        dev.device.clone()
    };
    let src = DirSource::open_model(&a.model)?;
    let with_weights = pollster::block_on(src.exists("model.safetensors"))
        || pollster::block_on(src.exists("model.safetensors.index.json"));
    if !with_weights {
        eprintln!(
            "note: no model.safetensors in {}: counting the architecture from config.json",
            a.model.display()
        );
    }
    let mut p = pollster::block_on(Pipeline::load_with(&src, &device, with_weights))?;
    let components = p.model.components();
    let total = p.model.num_params();
    let config = p.config.to_json();
    let arch = p.config.architecture();
    let trainable = match &peft_cfg {
        Some(cfg) => {
            p.model = peft::apply(p.model, cfg)?;
            // Without weights the model stays uninitialised: counted from shapes alone.
            Some(if with_weights {
                peft::report(&p.model)
            } else {
                peft::report_lazy(&p.model, cfg)
            })
        }
        None => None,
    };
    let frozen = match (a.frozen_dtype, &peft_cfg) {
        (Some(dt), Some(cfg)) => Some((peft::frozen::castable(&p.model, cfg), dt)),
        _ => None,
    };
    let estimate = match (&trainable, a.estimate_memory) {
        (Some(r), true) => Some(memory::estimate_training(
            &p.model,
            &p.config,
            r,
            a.batch,
            a.text_len,
            a.answer_len,
            frozen,
        )?),
        _ => None,
    };
    if a.json {
        let mut v = json!({ "architecture": arch, "total_params": total, "components": components, "config": config });
        if let (Some(r), Some(cfg)) = (&trainable, &peft_cfg) {
            v["peft"] = json!(cfg.describe(&components.iter().map(|c| c.name).collect::<Vec<_>>()));
            v["trainable_params"] = json!(r.trainable_params);
            v["trainable_percent"] = json!(r.percent());
            v["trainable_components"] = json!(r.components);
        }
        if let Some(e) = &estimate {
            v["memory_estimate"] = json!({
                "batch": a.batch, "text_len": a.text_len, "answer_len": a.answer_len.min(a.text_len), "bytes": e,
                "frozen_dtype": a.frozen_dtype, "frozen_half_values": frozen.map(|f| f.0),
            });
        }
        println!("{v}");
        return Ok(());
    }
    println!("architecture: {arch:?}");
    println!("parameters:   {total}");
    for c in &components {
        println!(
            "  {:<13} {:>12}  ({:.2}%)  {}",
            c.name,
            c.params,
            100.0 * c.params as f64 / total as f64,
            c.path
        );
    }
    if let (Some(r), Some(cfg)) = (&trainable, &peft_cfg) {
        println!(
            "peft: {}",
            cfg.describe(&components.iter().map(|c| c.name).collect::<Vec<_>>())
        );
        println!("{}", r.peft_line());
        for c in &r.components {
            println!(
                "  {:<13} {:>12} of {:>12} trainable",
                c.name, c.trainable_params, c.total_params
            );
        }
    }
    if let Some(e) = &estimate {
        let size = |b: u64| {
            if b >= 1 << 30 {
                format!("{:>9.2} GiB", b as f64 / (1u64 << 30) as f64)
            } else {
                format!("{:>9.1} MiB", b as f64 / (1u64 << 20) as f64)
            }
        };
        println!(
            "memory estimate (training, batch {}, {} text tokens, the last {} learned, {}):",
            a.batch,
            a.text_len,
            a.answer_len.min(a.text_len),
            match frozen {
                Some((n, dt)) => format!("{n} frozen values in {}, the rest f32", dt.name()),
                None => "f32".to_string(),
            }
        );
        println!("  weights      {}", size(e.weights));
        println!("  gradients    {}", size(e.gradients));
        println!("  optimizer    {}", size(e.optimizer));
        println!("  activations  {}", size(e.activations));
        println!("  total        {}", size(e.total));
    }
    println!("config:\n{}", serde_json::to_string_pretty(&config)?);
    Ok(())
}
