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
    /// A conversation's turns after the first (`question` / `target` hold the first): each a
    /// human turn and the answer learned after it.
    pub turns: Vec<(String, String)>,
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
    /// LLaVA / ShareGPT conversations (LLaVA-Med, axolotl, LLaMA-Factory), a JSON array or JSON
    /// lines: `id`, `image`, `conversations: [{from: human|gpt, value}]` with `<image>` in the
    /// first human turn; or LLaVA-Med's VQA evaluation lines (`question_id`, `image`, `text`,
    /// `answer` or `gpt4_answer`).
    Llava,
}

impl Format {
    /// Every format, as written in configs.
    pub const NAMES: [&'static str; 9] = [
        "vqa-rad",
        "slake",
        "path-vqa",
        "iu-xray",
        "nih-csv",
        "label-list",
        "labels-csv",
        "jsonl",
        "llava",
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
                ..Default::default()
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
                ..Default::default()
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
        Format::Llava => read_llava(bytes, file)?,
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

/// A record's field `name` as text (a number as written), `None` when absent or null; any other
/// value is an error naming `file` and `at`.
fn text_field(rec: &Value, name: &str, file: &str, at: &str) -> Result<Option<String>> {
    match rec.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(Value::Number(x)) => Ok(Some(x.to_string())),
        Some(other) => Err(Error::config(
            file,
            at,
            format!("expected text, found {other}"),
        )),
    }
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
        let text_of = |name: &str| text_field(&rec, name, file, &at(name));
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

/// LLaVA's conversation records (see [`Format::Llava`]), from a JSON array or JSON lines.
fn read_llava(bytes: &[u8], file: &str) -> Result<Vec<Example>> {
    let text = std::str::from_utf8(bytes).map_err(|e| Error::json(file, e))?;
    let records: Vec<(String, Value)> = if text.trim_start().starts_with('[') {
        let v: Vec<Value> = serde_json::from_str(text).map_err(|e| Error::json(file, e))?;
        v.into_iter()
            .enumerate()
            .map(|(i, r)| (format!("record {i}"), r))
            .collect()
    } else {
        text.lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
            .map(|(n, l)| {
                serde_json::from_str(l)
                    .map(|r| (format!("line {}", n + 1), r))
                    .map_err(|e| Error::json(file, format!("line {}: {e}", n + 1)))
            })
            .collect::<Result<_>>()?
    };
    let mut out = Vec::with_capacity(records.len());
    for (at, rec) in records {
        let field = |name: &str| format!("{at}: {name}");
        let text_of = |name: &str| text_field(&rec, name, file, &field(name));
        let id = text_of("id")?.or(text_of("question_id")?);
        let at_id = match &id {
            Some(id) => format!("{at} (id {id})"),
            None => at.clone(),
        };
        let image = text_of("image")?.ok_or_else(|| {
            Error::config(
                file,
                &format!("{at_id}: image"),
                "missing (text-only conversations cannot train an image model)",
            )
        })?;
        let id = id.unwrap_or_else(|| at.clone());
        let Some(conv) = rec.get("conversations") else {
            // LLaVA-Med's evaluation lines.
            let q = text_of("text")?.ok_or_else(|| {
                Error::config(
                    file,
                    &format!("{at_id}: conversations"),
                    "missing (a record needs `conversations`, or `text` + `answer`)",
                )
            })?;
            let a = text_of("answer")?
                .or(text_of("gpt4_answer")?)
                .ok_or_else(|| Error::config(file, &format!("{at_id}: answer"), "missing"))?;
            let kind = text_of("answer_type")?.map(|t| t.to_uppercase());
            let closed = matches!(a.trim().to_lowercase().as_str(), "yes" | "no");
            out.push(Example {
                id,
                image,
                question: Some(strip_image_tag(&q)),
                target: a,
                answer_type: kind.unwrap_or(if closed { "CLOSED" } else { "OPEN" }.into()),
                ..Default::default()
            });
            continue;
        };
        let bad = |why: String| Error::config(file, &format!("{at_id}: conversations"), why);
        let turns = conv
            .as_array()
            .ok_or_else(|| bad("expected a list of {from, value} turns".into()))?;
        let mut pairs: Vec<(String, String)> = Vec::new();
        let mut pending: Option<String> = None;
        for (i, t) in turns.iter().enumerate() {
            let from = t.get("from").or(t.get("role")).and_then(Value::as_str);
            let value = t
                .get("value")
                .or(t.get("content"))
                .and_then(Value::as_str)
                .ok_or_else(|| bad(format!("turn {i} has no text `value`")))?;
            match (from, &pending) {
                (Some("human" | "user"), None) => pending = Some(value.to_string()),
                (Some("gpt" | "assistant"), Some(q)) => {
                    pairs.push((q.clone(), value.to_string()));
                    pending = None;
                }
                (Some("system"), None) if pairs.is_empty() => {}
                (Some(f), _) => {
                    return Err(bad(format!(
                        "turn {i} is from `{f}` where a {} turn was expected (turns alternate \
                         human, gpt)",
                        if pending.is_some() { "gpt" } else { "human" }
                    )));
                }
                (None, _) => return Err(bad(format!("turn {i} has no `from`"))),
            }
        }
        if pairs.is_empty() {
            return Err(bad("no human turn answered by a gpt turn".into()));
        }
        if !pairs[0].0.contains("<image>") {
            return Err(bad(
                "the first human turn has no `<image>` (where the image goes)".into(),
            ));
        }
        if let Some(k) = pairs
            .iter()
            .skip(1)
            .position(|(q, _)| q.contains("<image>"))
        {
            return Err(bad(format!(
                "turn pair {} holds a second `<image>`; one image, in the first turn, is read",
                k + 1
            )));
        }
        let mut pairs = pairs.into_iter();
        let (q, a) = pairs.next().expect("checked non-empty");
        out.push(Example {
            id,
            image,
            question: Some(strip_image_tag(&q)),
            target: a,
            answer_type: "OPEN".into(),
            labels: Vec::new(),
            turns: pairs.collect(),
        });
    }
    Ok(out)
}

/// A human turn without its `<image>` tag and the newline LLaVA writes beside it (the model's
/// prompt puts the image where its template says).
fn strip_image_tag(q: &str) -> String {
    q.replacen("<image>\n", "", 1)
        .replacen("\n<image>", "", 1)
        .replacen("<image>", "", 1)
        .trim()
        .to_string()
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

    #[test]
    fn llava_conversations_read_as_json_or_json_lines() {
        let json = br#"[{"id": "a1", "image": "x/1.png", "conversations": [
            {"from": "human", "value": "<image>\nWhat modality is this?"},
            {"from": "gpt", "value": "A chest X-ray."},
            {"from": "human", "value": "Any effusion?"},
            {"from": "gpt", "value": "No."}]},
          {"id": 7, "image": "2.png", "conversations": [
            {"from": "human", "value": "Describe it.\n<image>"},
            {"from": "gpt", "value": "Normal heart."}]}]"#;
        let v = read_examples(json, "c.json", Format::Llava, "train").unwrap();
        assert_eq!(v.len(), 2);
        assert_eq!(v[0].question.as_deref(), Some("What modality is this?"));
        assert_eq!(v[0].target, "A chest X-ray.");
        assert_eq!(v[0].turns, [("Any effusion?".into(), "No.".into())]);
        assert_eq!(
            (v[1].id.as_str(), v[1].question.as_deref()),
            ("7", Some("Describe it."))
        );
        assert!(v[1].turns.is_empty());
        let lines = b"{\"question_id\": 3, \"image\": \"p.jpg\", \"text\": \"Is there a mass?\", \"gpt4_answer\": \"yes\"}\n";
        let v = read_examples(lines, "eval.jsonl", Format::Llava, "test").unwrap();
        assert_eq!(
            (v[0].id.as_str(), v[0].answer_type.as_str()),
            ("3", "CLOSED")
        );
        assert_eq!(v[0].target, "yes");
    }

    #[test]
    fn malformed_conversations_are_refused_naming_the_record() {
        let cases: [(&[u8], &str); 5] = [
            (br#"[{"id": "a", "image": "1.png", "conversations": [{"from": "gpt", "value": "hi"}]}]"#,
             "(id a): conversations`: turn 0 is from `gpt` where a human turn"),
            (br#"[{"id": "b", "image": "1.png", "conversations": [{"from": "human", "value": "q"}, {"from": "gpt", "value": "a"}]}]"#,
             "has no `<image>`"),
            (br#"[{"id": "c", "conversations": [{"from": "human", "value": "<image> q"}, {"from": "gpt", "value": "a"}]}]"#,
             "record 0 (id c): image`: missing"),
            (br#"[{"id": "d", "image": "1.png", "conversations": [{"from": "human", "value": "<image> q"}]}]"#,
             "no human turn answered"),
            (br#"[{"id": "e", "image": "1.png", "conversations": [{"from": "human", "value": "<image> q"}, {"from": "gpt", "value": "a"}, {"from": "human", "value": "<image> again"}, {"from": "gpt", "value": "b"}]}]"#,
             "second `<image>`"),
        ];
        for (bytes, want) in cases {
            let e = read_examples(bytes, "c.json", Format::Llava, "train")
                .unwrap_err()
                .to_string();
            assert!(e.contains("c.json") && e.contains(want), "{e}");
        }
    }
}
