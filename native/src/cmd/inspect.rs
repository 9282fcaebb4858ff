//! `normtune inspect`: architecture, parameter counts per component, config.

use crate::cli::InspectArgs;
use crate::fs::DirSource;
use normtune_core::burn::module::Module;
use normtune_core::device::choose;
use normtune_core::models::{ModelConfig, Pipeline};
use serde_json::json;

pub fn run(a: InspectArgs) -> anyhow::Result<()> {
    let dev = choose(a.device.device);
    let src = DirSource::open(&a.model)?;
    let p = pollster::block_on(Pipeline::load(&src, &dev.device))?;
    let components = p.model.components();
    let total = p.model.num_params();
    let config = match &p.config {
        ModelConfig::Blip(_, c) => serde_json::to_value(c)?,
        ModelConfig::Vit(c) => serde_json::to_value(c)?,
    };
    let arch = p.config.architecture();
    if a.json {
        println!("{}", json!({ "architecture": arch, "total_params": total, "components": components, "config": config }));
        return Ok(());
    }
    println!("architecture: {arch:?}");
    println!("parameters:   {total}");
    for c in &components {
        println!("  {:<13} {:>12}  ({:.2}%)  {}", c.name, c.params, 100.0 * c.params as f64 / total as f64, c.path);
    }
    println!("config:\n{}", serde_json::to_string_pretty(&config)?);
    Ok(())
}
