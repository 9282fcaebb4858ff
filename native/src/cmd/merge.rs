//! `normtune merge`: base model + adapter → a plain HF model folder whose outputs equal the
//! adapted model's, written atomically.

use crate::cli::MergeArgs;
use crate::fs::{DirSource, read_file, write_folder_atomic};
use normtune_core::burn::module::Module;
use normtune_core::burn::tensor::Device;
use normtune_core::models::{Pipeline, export};
use normtune_core::peft::io::load_adapter;

pub fn run(a: MergeArgs) -> anyhow::Result<()> {
    if a.out.exists() {
        anyhow::bail!(
            "{}: already exists; choose a new output folder",
            a.out.display()
        );
    }
    let src = DirSource::open_model(&a.model)?;
    let device = Device::flex();
    let mut p = pollster::block_on(Pipeline::load(&src, &device))?;
    p.model = pollster::block_on(load_adapter(p.model, &DirSource::open(&a.adapter)?))?;
    // Fold IA3 vectors and reparameterisations (LoRA) into the base weights before writing them.
    let merged = normtune_core::peft::ia3::fold(p.model).materialize();
    if let Some(why) = normtune_core::peft::unmergeable(&merged) {
        anyhow::bail!("{}: {why}", a.adapter.display());
    }
    let weights = export::to_safetensors(&merged)?;

    let mut files = vec![("model.safetensors".to_string(), weights)];
    for f in normtune_core::models::folder::DESCRIPTION_FILES {
        let from = a.model.join(f);
        if from.is_file() {
            files.push((f.to_string(), read_file(&from)?));
        }
    }
    write_folder_atomic(&a.out, &files)?;
    eprintln!(
        "merged {} + {} → {}",
        a.model.display(),
        a.adapter.display(),
        a.out.display()
    );
    Ok(())
}
