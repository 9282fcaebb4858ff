//! One example type for every task and one entry point over every reader: what the trainer,
//! the evaluator and both shells use. A run config names a [`Format`]; [`read_examples`] turns a
//! file's bytes into [`Example`]s of the right [`Task`].

use super::readers::{
    VqaFormat, read_iu_xray, read_label_list, read_labels_csv, read_nih_csv, read_path_vqa,
    read_vqa,
};
use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// What a model is trained to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Task {
    /// Med-VQA: image + question → answer.
    Vqa,
    /// Report generation: image → report.
    Report,
    /// Multi-label image classification.
    Classification,
}

/// One example of any task.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Example {
    /// Dataset id (question id, study id, image name), unique within a file.
    pub id: String,
    /// Image path, relative to the image folder.
    pub image: String,
    /// The question (VQA only).
    pub question: Option<String>,
    /// The answer (VQA) or the report (report generation); empty for classification.
    pub target: String,
    /// `CLOSED` or `OPEN` (VQA only).
    pub answer_type: String,
    /// One 0/1 target per label (classification only).
    pub labels: Vec<bool>,
}

/// Dataset file formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Format {
    /// VQA-RAD's JSON array (`image_name`, `question`, `answer`, `answer_type`, `qid`).
    VqaRad,
    /// SLAKE's JSON array (`img_name`, ..., `q_lang`; English only).
    Slake,
    /// PathVQA converted to JSON or CSV (`image`, `question`, `answer`; yes/no answers CLOSED).
    PathVqa,
    /// IU-Xray `annotation.json` (`id`, `report`, `image_path`, `split`).
    IuXray,
    /// NIH ChestX-ray14 `Data_Entry_2017.csv` (`Image Index`, `Finding Labels`).
    NihCsv,
    /// MED-PEFT split list: `path label label ...`.
    LabelList,
    /// CSV with an image column and one 0/1 column per label.
    LabelsCsv,
    /// JSON lines: `image` + `question`/`answer`, or `report`, or `labels` (0/1 list).
    Jsonl,
}

impl Format {
    /// Every format, as written in configs.
    pub const NAMES: [&'static str; 8] = [
        "vqa-rad",
        "slake",
        "path-vqa",
        "iu-xray",
        "nih-csv",
        "label-list",
        "labels-csv",
        "jsonl",
    ];
}

impl std::str::FromStr for Format {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        serde_json::from_value(Value::String(s.to_string())).map_err(|_| {
            Error::Input(format!(
                "unknown data format `{s}` (expected one of {})",
                Format::NAMES.join(", ")
            ))
        })
    }
}

/// Reads the examples of `split` from a dataset file. The split matters only for formats that
/// hold several (IU-Xray's `train` / `val` / `test`); an empty result is an error naming the file.
pub fn read_examples(
    bytes: &[u8],
    file: &str,
    format: Format,
    split: &str,
) -> Result<Vec<Example>> {
    let vqa = |f: VqaFormat| -> Result<Vec<Example>> {
        Ok(read_vqa(bytes, file, f)?
            .into_iter()
            .map(|e| Example {
                id: e.id,
                image: e.image,
                question: Some(e.question),
                target: e.answer,
                answer_type: e.answer_type,
                labels: Vec::new(),
            })
            .collect())
    };
    let labelled = |v: Vec<super::readers::LabelExample>| -> Vec<Example> {
        v.into_iter()
            .map(|e| Example {
                id: e.image.clone(),
                image: e.image,
                labels: e.labels,
                ..Default::default()
            })
            .collect()
    };
    let out = match format {
        Format::VqaRad => vqa(VqaFormat::VqaRad)?,
        Format::Slake => vqa(VqaFormat::Slake)?,
        Format::PathVqa => read_path_vqa(bytes, file)?
            .into_iter()
            .map(|e| Example {
                id: e.id,
                image: e.image,
                question: Some(e.question),
                target: e.answer,
                answer_type: e.answer_type,
                labels: Vec::new(),
            })
            .collect(),
        Format::IuXray => read_iu_xray(bytes, file)?
            .into_iter()
            .filter(|e| e.split == split)
            .filter_map(|e| {
                Some(Example {
                    image: e.images.into_iter().next()?,
                    id: e.id,
                    target: e.report,
                    ..Default::default()
                })
            })
            .collect(),
        Format::NihCsv => labelled(read_nih_csv(bytes, file)?),
        Format::LabelList => labelled(read_label_list(bytes, file)?),
        Format::LabelsCsv => labelled(read_labels_csv(bytes, file)?.1),
        Format::Jsonl => read_jsonl(bytes, file)?,
    };
    if out.is_empty() {
        let what = if format == Format::IuXray {
            format!("no `{split}` studies with an image")
        } else {
            "no examples".to_string()
        };
        return Err(Error::Input(format!("{file}: {what}")));
    }
    Ok(out)
}

/// The task a set of examples is for (all must agree).
pub fn task_of(examples: &[Example], file: &str) -> Result<Task> {
    let kind = |e: &Example| {
        if e.question.is_some() {
            Task::Vqa
        } else if !e.labels.is_empty() {
            Task::Classification
        } else {
            Task::Report
        }
    };
    let first = examples
        .first()
        .map(kind)
        .ok_or_else(|| Error::Input(format!("{file}: no examples")))?;
    if let Some((i, _)) = examples.iter().enumerate().find(|(_, e)| kind(e) != first) {
        return Err(Error::Input(format!(
            "{file}: example {i} is for a different task than example 0 (mixed VQA / report / labels)"
        )));
    }
    Ok(first)
}

fn read_jsonl(bytes: &[u8], file: &str) -> Result<Vec<Example>> {
    let text = std::str::from_utf8(bytes).map_err(|e| Error::json(file, e))?;
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let at = |field: &str| format!("line {}: {field}", n + 1);
        let rec: Value = serde_json::from_str(line)
            .map_err(|e| Error::json(file, format!("line {}: {e}", n + 1)))?;
        let text_of = |name: &str| -> Result<Option<String>> {
            match rec.get(name) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(s)) => Ok(Some(s.clone())),
                Some(Value::Number(x)) => Ok(Some(x.to_string())),
                Some(other) => Err(Error::config(
                    file,
                    &at(name),
                    format!("expected text, found {other}"),
                )),
            }
        };
        let image =
            text_of("image")?.ok_or_else(|| Error::config(file, &at("image"), "missing"))?;
        let id = text_of("id")?.unwrap_or_else(|| (n + 1).to_string());
        let mut e = Example {
            id,
            image,
            ..Default::default()
        };
        if let Some(q) = text_of("question")? {
            e.question = Some(q);
            e.target =
                text_of("answer")?.ok_or_else(|| Error::config(file, &at("answer"), "missing"))?;
            e.answer_type = text_of("answer_type")?
                .unwrap_or_else(|| "OPEN".into())
                .to_uppercase();
        } else if let Some(r) = text_of("report")? {
            e.target = r;
        } else if let Some(labels) = rec.get("labels") {
            let arr = labels
                .as_array()
                .ok_or_else(|| Error::config(file, &at("labels"), "expected a list of 0/1"))?;
            e.labels = arr
                .iter()
                .map(|v| match v.as_f64() {
                    Some(x) if x == 0.0 => Ok(false),
                    Some(x) if x == 1.0 => Ok(true),
                    _ => Err(Error::config(
                        file,
                        &at("labels"),
                        format!("`{v}` is not 0 or 1"),
                    )),
                })
                .collect::<Result<_>>()?;
            if e.labels.is_empty() {
                return Err(Error::config(file, &at("labels"), "empty list"));
            }
        } else {
            return Err(Error::config(
                file,
                &at("question"),
                "missing (a line needs `question` + `answer`, `report`, or `labels`)",
            ));
        }
        out.push(e);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_entry_point_for_every_format() {
        let jsonl = b"{\"image\": \"a.png\", \"report\": \"Heart normal.\"}\n{\"image\": \"b.png\", \"labels\": [0, 1], \"id\": \"b\"}\n";
        let v = read_examples(jsonl, "d.jsonl", Format::Jsonl, "train").unwrap();
        assert_eq!(v[0].target, "Heart normal.");
        assert_eq!(v[1].labels, vec![false, true]);
        assert!(
            task_of(&v, "d.jsonl")
                .unwrap_err()
                .to_string()
                .contains("example 1")
        );
        let e = read_examples(
            b"{\"image\": \"a.png\", \"labels\": [2]}\n",
            "d.jsonl",
            Format::Jsonl,
            "train",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("d.jsonl") && e.contains("line 1: labels"), "{e}");
        let e = read_examples(
            b"{\"question\": \"q\"}\n",
            "d.jsonl",
            Format::Jsonl,
            "train",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("line 1: image") && e.contains("missing"), "{e}");
        assert!("vqa-rad".parse::<Format>().is_ok());
        let e = "vqarad".parse::<Format>().unwrap_err().to_string();
        assert!(e.contains("path-vqa"), "{e}");
        let iu = br#"{"train": [{"id": "s1", "report": "r", "image_path": ["s1/0.png"], "split": "train"}], "test": []}"#;
        let e = read_examples(iu, "annotation.json", Format::IuXray, "test")
            .unwrap_err()
            .to_string();
        assert!(e.contains("annotation.json") && e.contains("`test`"), "{e}");
    }
}
