//! A run config (`run.toml`, what core's [`RunSpec`] holds) as the CLI reads it: TOML plus
//! `key=value` overrides, a misspelt key answered with the nearest known one, and the data
//! the config names read and checked before any model loads.

use crate::cli::TrainArgs;
use crate::fs::{DirSource, read_file, recover_folder};
use anyhow::Context;
use normtune_core::data::{Example, Format, QuestionTemplates, read_examples};
use normtune_core::train::{DataSpec, RunData, RunSpec};
use std::path::Path;

/// Turns serde's "unknown field `lerning_rate`, expected ..." into a message that names the key
/// and suggests the nearest known one.
fn explain(path: &Path, message: &str) -> String {
    if let Some(rest) = message.strip_prefix("unknown field `")
        && let Some((key, _)) = rest.split_once('`')
    {
        let known = RunSpec::known_keys();
        let mut best: Option<(&str, f64)> = None;
        for k in &known {
            let s = strsim::normalized_damerau_levenshtein(key, k);
            if best.is_none_or(|(_, b)| s > b) {
                best = Some((k, s));
            }
        }
        let hint = match best {
            Some((k, s)) if s >= 0.5 => format!("; did you mean `{k}`?"),
            _ => String::new(),
        };
        let expected = rest
            .split_once("expected ")
            .map(|(_, e)| format!(" (expected {e})"))
            .unwrap_or_default();
        return format!("{}: unknown key `{key}`{hint}{expected}", path.display());
    }
    format!("{}: {message}", path.display())
}

/// Applies `a.b.c=value` to a TOML table; the value is parsed as TOML, else taken as a string.
fn set(table: &mut toml::Table, key: &str, raw: &str) -> anyhow::Result<()> {
    let value: toml::Value = toml::from_str::<toml::Table>(&format!("v = {raw}"))
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(raw.to_string()));
    let mut parts: Vec<&str> = key.split('.').collect();
    let last = parts
        .pop()
        .filter(|l| !l.is_empty())
        .with_context(|| format!("override `{key}={raw}`: empty key"))?;
    let mut t = table;
    for p in parts {
        t = t
            .entry(p.to_string())
            .or_insert_with(|| toml::Value::Table(Default::default()))
            .as_table_mut()
            .with_context(|| format!("override `{key}`: `{p}` is not a section"))?;
    }
    t.insert(last.to_string(), value);
    Ok(())
}

/// Reads a run config and applies `key=value` overrides.
pub fn resolve(path: &Path, overrides: &[String]) -> anyhow::Result<RunSpec> {
    let text = String::from_utf8(read_file(path)?)
        .with_context(|| format!("{}: not UTF-8", path.display()))?;
    let mut table: toml::Table = toml::from_str(&text)
        .map_err(|e| anyhow::anyhow!("{}: {}", path.display(), e.message()))?;
    for o in overrides {
        let (k, v) = o
            .split_once('=')
            .with_context(|| format!("override `{o}`: expected key=value"))?;
        set(&mut table, k.trim(), v.trim())?;
    }
    let cfg: RunSpec = table
        .try_into()
        .map_err(|e: toml::de::Error| anyhow::anyhow!(explain(path, e.message())))?;
    cfg.validate(&path.display().to_string())?;
    Ok(cfg)
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
    #[test]
    fn a_misspelt_key_gets_the_nearest_known_one() {
        let e = super::explain(
            std::path::Path::new("run.toml"),
            "unknown field `frozen_dtpye`, expected one of ...",
        );
        assert!(e.contains("did you mean `frozen_dtype`?"), "{e}");
    }
}
