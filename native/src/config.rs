//! A run config (`run.toml`, core's [`RunSpec`]) as the CLI reads it: the file plus the command
//! line's `key=value` overrides (or a resumed run's own config), and the data the config names,
//! read and checked before any model loads.

use crate::cli::TrainArgs;
use crate::fs::{DirSource, read_file, recover_folder};
use anyhow::Context;
use normtune_core::data::{Example, Format, QuestionTemplates, read_examples};
use normtune_core::train::{DataSpec, RunData, RunSpec};
use std::path::Path;

/// Reads a run config and applies `key=value` overrides.
pub fn resolve(path: &Path, overrides: &[String]) -> anyhow::Result<RunSpec> {
    let text = String::from_utf8(read_file(path)?)
        .with_context(|| format!("{}: not UTF-8", path.display()))?;
    Ok(RunSpec::from_toml(
        &text,
        overrides,
        &path.display().to_string(),
    )?)
}

/// The run's data, read and checked before the model loads (a typo in a dataset file fails
/// first): both splits, with every image present (or skipped, by name), the question
/// templates and a labelled dataset's label names.
pub fn load_data(data: &DataSpec) -> anyhow::Result<RunData<DirSource>> {
    let split = |path: &Path, split: &str| -> anyhow::Result<Vec<Example>> {
        let file = path.display().to_string();
        let all = read_examples(&read_file(path)?, &file, data.format, split)?;
        let (kept, skipped) =
            data.keep_with_images(all, &file, |image| data.images.join(image).is_file())?;
        skipped.iter().for_each(|line| eprintln!("{line}"));
        Ok(kept)
    };
    let train = split(&data.train, "train")?;
    let eval = match &data.eval {
        Some(path) => split(path, &data.split)?,
        None if data.format == Format::IuXray => split(&data.train, &data.split)?,
        None => train.clone(),
    };
    let templates = match &data.question_templates {
        None => QuestionTemplates::default(),
        Some(p) if p.as_os_str() == "default" => QuestionTemplates::default_pool(),
        Some(p) => {
            let file = p.display().to_string();
            let text =
                String::from_utf8(read_file(p)?).with_context(|| format!("{file}: not UTF-8"))?;
            QuestionTemplates::parse(&text, &file)?
        }
    };
    let file = data.train.display().to_string();
    let labels = match data.format {
        Format::LabelsCsv => {
            Some(normtune_core::data::read_labels_csv(&read_file(&data.train)?, &file)?.0)
        }
        Format::NihCsv => Some(
            normtune_core::data::NIH_LABELS
                .iter()
                .map(|s| s.to_string())
                .collect(),
        ),
        _ => None,
    };
    Ok(RunData {
        train,
        eval,
        images: DirSource::open(&data.images)?,
        templates,
        labels: labels.map(|l| (file, l)),
    })
}

/// The run's config: the file plus overrides, or the resumed run's own.
pub fn config_of(a: &TrainArgs) -> anyhow::Result<(RunSpec, bool)> {
    let (cfg, resuming) = match (&a.resume, &a.config) {
        (Some(dir), None) => {
            anyhow::ensure!(
                a.overrides.is_empty(),
                "--resume continues a run with its own config; overrides are not allowed"
            );
            let cfg = resolve(&dir.join("config.toml"), &[])?;
            recover_folder(&dir.join("checkpoint"));
            anyhow::ensure!(
                dir.join("checkpoint").join("trainer.json").is_file(),
                "{}: no checkpoint to resume from",
                dir.join("checkpoint").display()
            );
            (
                RunSpec {
                    out: dir.clone(),
                    ..cfg
                },
                true,
            )
        }
        (None, Some(path)) => (resolve(path, &a.overrides)?, false),
        _ => anyhow::bail!("give either --config FILE [key=value ...] or --resume RUN_DIR"),
    };
    Ok((cfg, resuming))
}

#[cfg(test)]
mod tests {
    /// The run config the README shows is one `normtune train` reads.
    #[test]
    fn the_readmes_run_config_parses() {
        let readme = include_str!("../../README.md");
        let (_, rest) = readme
            .split_once("```toml\n")
            .expect("a toml block in README.md");
        let (block, _) = rest.split_once("```").expect("the block ends");
        let spec = normtune_core::train::RunSpec::from_toml(block, &["epochs=5".into()], "README")
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((spec.epochs, spec.train.lr), (5, 3e-3));
    }
}
