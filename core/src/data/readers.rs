//! Readers for the dataset files users download, with the exact field names of the public
//! releases: VQA-RAD (`image_name`, `question`, `answer`, `answer_type`, `qid`), SLAKE
//! (`img_name`, `question`, `answer`, `answer_type`, `q_lang`, `qid`; English by default) and a
//! generic JSON-lines format (`image`, `question`, `answer`, optional `answer_type`, `id`).
//! Bytes in, examples out; the error names the file, the record and the field.

use crate::error::{Error, Result};
use serde_json::Value;

/// One VQA example.
#[derive(Debug, Clone, PartialEq)]
pub struct VqaExample {
    /// Image file name, relative to the image folder.
    pub image: String,
    /// Question text.
    pub question: String,
    /// Reference answer.
    pub answer: String,
    /// `CLOSED` or `OPEN` (as the dataset says; `OPEN` when absent).
    pub answer_type: String,
    /// Dataset id (`qid`), or the record index.
    pub id: String,
}

/// The dataset formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum VqaFormat {
    /// VQA-RAD's JSON array.
    VqaRad,
    /// SLAKE's JSON array (English questions only).
    Slake,
    /// One JSON object per line.
    Jsonl,
}

impl std::str::FromStr for VqaFormat {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "vqa-rad" => Ok(Self::VqaRad),
            "slake" => Ok(Self::Slake),
            "jsonl" => Ok(Self::Jsonl),
            other => Err(Error::Input(format!(
                "unknown data format `{other}` (expected vqa-rad, slake or jsonl)"
            ))),
        }
    }
}

fn field(rec: &Value, name: &str, file: &str, i: usize) -> Result<String> {
    match rec.get(name) {
        Some(Value::String(s)) => Ok(s.clone()),
        // VQA-RAD stores some answers as numbers.
        Some(Value::Number(n)) => Ok(n.to_string()),
        Some(other) => Err(Error::config(
            file,
            &format!("record {i}: {name}"),
            format!("expected text, found {other}"),
        )),
        None => Err(Error::config(
            file,
            &format!("record {i}: {name}"),
            "missing",
        )),
    }
}

fn optional(rec: &Value, name: &str) -> Option<String> {
    match rec.get(name) {
        Some(Value::String(s)) => Some(s.clone()),
        Some(Value::Number(n)) => Some(n.to_string()),
        _ => None,
    }
}

/// Parses a VQA dataset file.
pub fn read_vqa(bytes: &[u8], file: &str, format: VqaFormat) -> Result<Vec<VqaExample>> {
    let records: Vec<Value> = match format {
        VqaFormat::Jsonl => std::str::from_utf8(bytes)
            .map_err(|e| Error::json(file, e))?
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
            .map(|(n, l)| {
                serde_json::from_str(l)
                    .map_err(|e| Error::json(file, format!("line {}: {e}", n + 1)))
            })
            .collect::<Result<_>>()?,
        _ => match serde_json::from_slice(bytes).map_err(|e| Error::json(file, e))? {
            Value::Array(a) => a,
            _ => {
                return Err(Error::json(
                    file,
                    "expected a JSON array of question records",
                ));
            }
        },
    };
    let image_field = match format {
        VqaFormat::VqaRad => "image_name",
        VqaFormat::Slake => "img_name",
        VqaFormat::Jsonl => "image",
    };
    let mut out = Vec::with_capacity(records.len());
    for (i, rec) in records.iter().enumerate() {
        if format == VqaFormat::Slake && optional(rec, "q_lang").is_some_and(|l| l != "en") {
            continue;
        }
        let answer_type = optional(rec, "answer_type")
            .unwrap_or_else(|| "OPEN".into())
            .to_uppercase();
        out.push(VqaExample {
            image: field(rec, image_field, file, i)?,
            question: field(rec, "question", file, i)?,
            answer: field(rec, "answer", file, i)?,
            answer_type,
            id: optional(
                rec,
                if format == VqaFormat::Jsonl {
                    "id"
                } else {
                    "qid"
                },
            )
            .unwrap_or_else(|| i.to_string()),
        });
    }
    if out.is_empty() {
        return Err(Error::Input(format!("{file}: no questions found")));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_three_formats() {
        let rad = br#"[{"qid": 1, "image_name": "synpic1.jpg", "question": "Is there a fracture?", "answer": "No", "answer_type": "CLOSED"},
                      {"qid": 2, "image_name": "synpic2.jpg", "question": "How many ribs?", "answer": 12, "answer_type": "OPEN"}]"#;
        let v = read_vqa(rad, "rad.json", VqaFormat::VqaRad).unwrap();
        assert_eq!(v.len(), 2);
        assert_eq!(v[1].answer, "12");
        assert_eq!(v[0].id, "1");
        let slake = br#"[{"img_name": "xmlab1/source.jpg", "question": "Is this a CT?", "answer": "Yes", "answer_type": "CLOSED", "q_lang": "en", "qid": 7},
                        {"img_name": "xmlab1/source.jpg", "question": "...", "answer": "...", "answer_type": "OPEN", "q_lang": "zh", "qid": 8}]"#;
        let v = read_vqa(slake, "slake.json", VqaFormat::Slake).unwrap();
        assert_eq!(v.len(), 1, "English only");
        let jsonl = b"{\"image\": \"a.png\", \"question\": \"q?\", \"answer\": \"a\"}\n\n{\"image\": \"b.png\", \"question\": \"r?\", \"answer\": \"b\", \"answer_type\": \"closed\"}\n";
        let v = read_vqa(jsonl, "d.jsonl", VqaFormat::Jsonl).unwrap();
        assert_eq!(
            (v[0].answer_type.as_str(), v[1].answer_type.as_str()),
            ("OPEN", "CLOSED")
        );
    }

    #[test]
    fn errors_name_file_record_and_field() {
        let e = read_vqa(
            br#"[{"image_name": "a.jpg", "answer": "no"}]"#,
            "rad.json",
            VqaFormat::VqaRad,
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("rad.json") && e.contains("record 0") && e.contains("question"),
            "{e}"
        );
        let e = read_vqa(b"{\"image\": 1}\nnot json", "d.jsonl", VqaFormat::Jsonl)
            .unwrap_err()
            .to_string();
        assert!(e.contains("d.jsonl") && e.contains("line 2"), "{e}");
    }
}
