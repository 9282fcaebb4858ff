//! What a run is: [`RunSpec`], the serde form of `run.toml`, read from TOML text with
//! `key=value` overrides (the CLI's command line, the browser's "more settings") and written back
//! as TOML. A misspelt key is answered with the nearest one the types know.

use super::trainer::{Plan, TrainConfig};
use crate::data::{Augment, Example, Format, Task};
use crate::error::{Error, Result};
use crate::metrics::primary_metric;
use crate::models::blip::GenConfig;
use crate::peft::PeftConfig;
use burn::tensor::Device;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// The data section of a run.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataSpec {
    /// vqa-rad, slake, path-vqa, iu-xray, nih-csv, label-list or jsonl.
    pub format: Format,
    /// Training file.
    pub train: PathBuf,
    /// Validation / test file (the training file's `test` split for IU-Xray, else required
    /// for evaluation; the training file itself when absent).
    pub eval: Option<PathBuf>,
    /// Folder the records' image paths are relative to.
    pub images: PathBuf,
    /// Split of `eval` to score (IU-Xray holds several in one file).
    #[serde(default = "default_split")]
    pub split: String,
    /// What to do with examples whose image file does not exist: `fail` (default) or `skip`
    /// (each skipped example is listed).
    #[serde(default)]
    pub on_missing: OnMissing,
    /// MILE's instruction templates: a file of question templates (one a line, `{question}`
    /// inside), one drawn per training sample per epoch from the run's seed; `"default"`: the
    /// built-in pool. Unset: questions as written.
    #[serde(default)]
    pub question_templates: Option<PathBuf>,
}

/// `data.on_missing`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OnMissing {
    /// Refuse to start, naming the examples.
    #[default]
    Fail,
    /// Drop them, listing each.
    Skip,
}

fn default_split() -> String {
    "test".into()
}

impl DataSpec {
    /// `format` files `train` and `eval` (none: the training file's), images under `images`;
    /// the defaults for the rest (the `test` split, fail on a missing image, no templates).
    pub fn new(
        format: Format,
        train: impl Into<PathBuf>,
        eval: Option<PathBuf>,
        images: impl Into<PathBuf>,
    ) -> Self {
        Self {
            format,
            train: train.into(),
            eval,
            images: images.into(),
            split: default_split(),
            on_missing: OnMissing::default(),
            question_templates: None,
        }
    }

    /// Checks that every example of `file`'s `examples` has its image (`exists(image path)`)
    /// before any training starts: fails naming them, or (with `on_missing = "skip"`) drops
    /// them. Returns the examples kept and one line per example skipped.
    pub fn keep_with_images(
        &self,
        examples: Vec<Example>,
        file: &str,
        exists: impl Fn(&str) -> bool,
    ) -> Result<(Vec<Example>, Vec<String>)> {
        let (ok, missing): (Vec<(usize, Example)>, Vec<(usize, Example)>) = examples
            .into_iter()
            .enumerate()
            .partition(|(_, e)| exists(&e.image));
        let kept: Vec<Example> = ok.into_iter().map(|(_, e)| e).collect();
        if missing.is_empty() {
            return Ok((kept, Vec::new()));
        }
        let images = self.images.display();
        match self.on_missing {
            OnMissing::Fail => {
                let named: Vec<String> = missing
                    .iter()
                    .take(3)
                    .map(|(i, e)| format!("example {} (id `{}`): `{}`", i + 1, e.id, e.image))
                    .collect();
                Err(Error::Input(format!(
                    "{file}: {} example(s) name images missing from {images}: {}{}; fix the paths or set data.on_missing=\"skip\"",
                    missing.len(),
                    named.join(", "),
                    if missing.len() > 3 { ", ..." } else { "" }
                )))
            }
            OnMissing::Skip if kept.is_empty() => Err(Error::Input(format!(
                "{file}: no example has its image in {images}"
            ))),
            OnMissing::Skip => {
                let skipped = missing
                    .iter()
                    .map(|(i, e)| {
                        format!(
                            "skipping {file} example {} (id `{}`): no image {}",
                            i + 1,
                            e.id,
                            self.images.join(&e.image).display()
                        )
                    })
                    .collect();
                Ok((kept, skipped))
            }
        }
    }
}

/// Evaluation during training.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EvalSpec {
    /// Optimizer steps between evaluations; 0 = at the end of every epoch.
    #[serde(default)]
    pub every: usize,
    /// Score that picks the best checkpoint (default: overall_acc, cider or auroc_mean).
    pub metric: Option<String>,
    /// Evaluate on at most this many examples during training (0 = all); the final evaluation
    /// always uses all.
    #[serde(default)]
    pub max_examples: usize,
    /// Also evaluate the model before any training step, on the same `max_examples` (the
    /// zero-shot baseline, kept as `start` in metrics.json).
    #[serde(default)]
    pub at_start: bool,
}

/// A run: what `run.toml` holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunSpec {
    /// HF model folder.
    pub model: PathBuf,
    /// Run folder to create.
    pub out: PathBuf,
    /// The data.
    pub data: DataSpec,
    /// Which parameters train.
    #[serde(default)]
    pub peft: PeftConfig,
    /// Optimiser settings (`total_steps` is set from the data).
    #[serde(default)]
    pub train: TrainConfig,
    /// Examples per micro-batch.
    #[serde(default = "default_batch")]
    pub batch_size: usize,
    /// Passes over the training examples.
    #[serde(default = "default_epochs")]
    pub epochs: usize,
    /// Seed of the data order, augmentation, templates and new PEFT modules.
    #[serde(default)]
    pub seed: u64,
    /// Optimizer steps between checkpoints (also taken at every evaluation and when stopped).
    #[serde(default = "default_checkpoint_every")]
    pub checkpoint_every: usize,
    /// Evaluation during training.
    #[serde(default)]
    pub eval: EvalSpec,
    /// Training-time image augmentation (off by default).
    #[serde(default)]
    pub augment: Augment,
    /// Decoding for evaluation.
    #[serde(default)]
    pub generation: GenConfig,
    /// Data-parallel training over these devices (`["cpu", "cpu"]`, `["gpu:0", "gpu:1"]`): each
    /// micro-batch is split across them and one optimizer step applies the summed gradients on
    /// the first. Empty (the default): one device, the shell's.
    #[serde(default)]
    pub devices: Vec<String>,
    /// LLaVA-style models: the conversation a question becomes (`<image>`, `{question}`);
    /// LLaVA-1.5's when unset.
    #[serde(default)]
    pub chat_prompt: Option<String>,
}

fn default_batch() -> usize {
    8
}
fn default_epochs() -> usize {
    3
}
fn default_checkpoint_every() -> usize {
    100
}

impl RunSpec {
    /// The smallest spec: these paths and every default.
    pub fn new(model: impl Into<PathBuf>, out: impl Into<PathBuf>, data: DataSpec) -> Self {
        Self {
            model: model.into(),
            out: out.into(),
            data,
            peft: PeftConfig::default(),
            train: TrainConfig::default(),
            batch_size: default_batch(),
            epochs: default_epochs(),
            seed: 0,
            checkpoint_every: default_checkpoint_every(),
            eval: EvalSpec::default(),
            augment: Augment::default(),
            generation: GenConfig::default(),
            devices: Vec::new(),
            chat_prompt: None,
        }
    }

    /// Refuses settings no run can use, device names included; `file` names where they came
    /// from.
    pub fn validate(&self, file: &str) -> Result<()> {
        self.check_settings(file)?;
        #[cfg(not(target_arch = "wasm32"))]
        for d in &self.devices {
            crate::device::parse_device(d)
                .map_err(|e| Error::Input(format!("{file}: devices: {e}")))?;
        }
        Ok(())
    }

    /// [`RunSpec::validate`] but the device names, which [`super::Run`] parses when it makes
    /// the replicas.
    pub(super) fn check_settings(&self, file: &str) -> Result<()> {
        let bad = |what: &str| Err(Error::Input(format!("{file}: {what} must be at least 1")));
        if self.batch_size == 0 {
            return bad("batch_size");
        }
        if self.epochs == 0 {
            return bad("epochs");
        }
        if self.checkpoint_every == 0 {
            return bad("checkpoint_every");
        }
        self.augment
            .validate()
            .map_err(|e| Error::Input(format!("{file}: {e}")))
    }

    /// The score that picks the best adapter for `task`.
    pub fn metric(&self, task: Task) -> String {
        self.eval
            .metric
            .clone()
            .unwrap_or_else(|| primary_metric(task).to_string())
    }

    /// The data order over `examples` training examples.
    pub fn plan(&self, examples: usize) -> Plan {
        Plan {
            examples,
            batch_size: self.batch_size,
            epochs: self.epochs,
            seed: self.seed,
        }
    }

    /// Every key a spec may hold, at any depth (for "did you mean" suggestions): read off the
    /// types themselves (a minimal spec, defaults filled in, serialised), so a new field is
    /// suggested without a list to keep; plus the aliases serde accepts.
    pub fn known_keys() -> Vec<String> {
        fn collect(v: &serde_json::Value, out: &mut Vec<String>) {
            if let serde_json::Value::Object(m) = v {
                for (k, v) in m {
                    out.push(k.clone());
                    collect(v, out);
                }
            }
        }
        let data = DataSpec::new(Format::Jsonl, "t", None, "i");
        let mut keys = vec!["learning_rate".to_string()];
        if let Ok(v) = serde_json::to_value(RunSpec::new("m", "o", data)) {
            collect(&v, &mut keys);
        }
        keys.sort();
        keys.dedup();
        keys
    }

    /// Reads `run.toml` text with `key=value` overrides applied (each value read as TOML, else
    /// taken as a string: `train.lr=3e-3`, `peft.default_method=lora`); errors name `file`, and
    /// a misspelt key is answered with the nearest known one.
    pub fn from_toml(text: &str, overrides: &[String], file: &str) -> Result<Self> {
        let table: toml::Table =
            toml::from_str(text).map_err(|e| Error::Input(format!("{file}: {}", e.message())))?;
        Self::from_table(table, overrides, file)
    }

    /// This spec with `key=value` overrides applied, as [`RunSpec::from_toml`] applies them.
    pub fn with_overrides(&self, overrides: &[String], file: &str) -> Result<Self> {
        let table =
            toml::Table::try_from(self).map_err(|e| Error::Input(format!("{file}: {e}")))?;
        Self::from_table(table, overrides, file)
    }

    /// The spec as `run.toml` text (every setting, defaults included).
    pub fn to_toml(&self) -> Result<String> {
        toml::to_string_pretty(self).map_err(|e| Error::Input(format!("run.toml: {e}")))
    }

    fn from_table(mut table: toml::Table, overrides: &[String], file: &str) -> Result<Self> {
        for o in overrides {
            let (k, v) = o
                .split_once('=')
                .ok_or_else(|| Error::Input(format!("override `{o}`: expected key=value")))?;
            set(&mut table, k.trim(), v.trim())?;
        }
        let spec: RunSpec = table
            .try_into()
            .map_err(|e: toml::de::Error| Error::Input(explain(file, e.message())))?;
        spec.validate(file)?;
        Ok(spec)
    }

    /// The autodiff device training runs on (with gradient checkpointing when asked).
    pub(super) fn train_device(&self, device: &Device) -> Device {
        if self.train.gradient_checkpointing {
            device.clone().autodiff().gradient_checkpointing()
        } else {
            device.clone().autodiff()
        }
    }

    /// The data-parallel replicas `devices` names, as training devices.
    pub(super) fn replicas(&self) -> Result<Vec<Device>> {
        #[cfg(not(target_arch = "wasm32"))]
        {
            self.devices
                .iter()
                .map(|d| {
                    crate::device::parse_device(d)
                        .map(|c| self.train_device(&c.device))
                        .map_err(|e| Error::Input(format!("devices: {e}")))
                })
                .collect()
        }
        #[cfg(target_arch = "wasm32")]
        {
            if self.devices.is_empty() {
                Ok(Vec::new())
            } else {
                Err(Error::Input(
                    "devices: data-parallel training is not available in the browser".into(),
                ))
            }
        }
    }
}

/// Applies `a.b.c=value` to a TOML table; the value is read as TOML, else taken as a string.
fn set(table: &mut toml::Table, key: &str, raw: &str) -> Result<()> {
    let value: toml::Value = toml::from_str::<toml::Table>(&format!("v = {raw}"))
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(raw.to_string()));
    let mut parts: Vec<&str> = key.split('.').collect();
    let last = parts
        .pop()
        .filter(|l| !l.is_empty())
        .ok_or_else(|| Error::Input(format!("override `{key}={raw}`: empty key")))?;
    let mut t = table;
    for p in parts {
        t = t
            .entry(p.to_string())
            .or_insert_with(|| toml::Value::Table(Default::default()))
            .as_table_mut()
            .ok_or_else(|| Error::Input(format!("override `{key}`: `{p}` is not a section")))?;
    }
    t.insert(last.to_string(), value);
    Ok(())
}

/// Turns serde's "unknown field `lerning_rate`, expected ..." into a message that names the key
/// and suggests the nearest known one.
fn explain(file: &str, message: &str) -> String {
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
        return format!("{file}: unknown key `{key}`{hint}{expected}");
    }
    format!("{file}: {message}")
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_suggested_keys_come_from_the_spec_types() {
        let k = super::RunSpec::known_keys();
        for key in [
            "model",
            "question_templates",
            "gradient_checkpointing",
            "recompute_attention",
            "frozen_dtype",
            "num_beams",
            "at_start",
            "default_method",
            "learning_rate",
        ] {
            assert!(k.iter().any(|x| x == key), "{key} in {k:?}");
        }
    }

    #[test]
    fn a_misspelt_key_gets_the_nearest_known_one() {
        let e = super::explain(
            "run.toml",
            "unknown field `frozen_dtpye`, expected one of ...",
        );
        assert!(e.contains("did you mean `frozen_dtype`?"), "{e}");
    }

    #[test]
    fn overrides_apply_to_a_spec_and_it_reads_back_from_its_toml() {
        let text = "model = \"m\"\nout = \"o\"\n[data]\nformat = \"jsonl\"\ntrain = \"t\"\nimages = \"i\"\n";
        let over = [
            "train.lr=3e-3".to_string(),
            "peft.default_method=lora".into(),
        ];
        let spec = super::RunSpec::from_toml(text, &over, "run.toml").unwrap();
        assert_eq!(spec.train.lr, 3e-3);
        let again = spec.with_overrides(&["epochs=5".into()], "x").unwrap();
        assert_eq!((again.epochs, again.train.lr), (5, 3e-3));
        let back = super::RunSpec::from_toml(&again.to_toml().unwrap(), &[], "back").unwrap();
        assert_eq!(back.to_toml().unwrap(), again.to_toml().unwrap());
        let e = spec
            .with_overrides(&["train.lerning_rate=1".into()], "the settings")
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with(
                "the settings: unknown key `lerning_rate`; did you mean `learning_rate`?"
            ),
            "{e}"
        );
        let e = spec
            .with_overrides(&["epochs=0".into()], "s")
            .unwrap_err()
            .to_string();
        assert_eq!(e, "s: epochs must be at least 1");
    }
}
