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

/// One report-generation example (IU-Xray as R2Gen's `annotation.json` has it).
#[derive(Debug, Clone, PartialEq)]
pub struct ReportExample {
    /// Study id.
    pub id: String,
    /// Image paths (IU-Xray studies have a frontal and a lateral view).
    pub images: Vec<String>,
    /// Report text.
    pub report: String,
    /// `train`, `val` or `test`.
    pub split: String,
}

/// Parses an IU-Xray `annotation.json`: `{"train": [...], "val": [...], "test": [...]}` with
/// records `id`, `report`, `image_path` (a list) and `split`.
pub fn read_iu_xray(bytes: &[u8], file: &str) -> Result<Vec<ReportExample>> {
    let v: Value = serde_json::from_slice(bytes).map_err(|e| Error::json(file, e))?;
    let obj = v
        .as_object()
        .ok_or_else(|| Error::json(file, "expected an object with train / val / test lists"))?;
    let mut out = Vec::new();
    for (split, records) in obj {
        let records = records
            .as_array()
            .ok_or_else(|| Error::config(file, split, "expected a list of studies"))?;
        for (i, rec) in records.iter().enumerate() {
            let images = match rec.get("image_path") {
                Some(Value::Array(a)) => a
                    .iter()
                    .filter_map(|p| p.as_str().map(str::to_string))
                    .collect(),
                Some(Value::String(s)) => vec![s.clone()],
                _ => {
                    return Err(Error::config(
                        file,
                        &format!("{split}[{i}]: image_path"),
                        "missing",
                    ));
                }
            };
            out.push(ReportExample {
                id: field(rec, "id", file, i)?,
                images,
                report: field(rec, "report", file, i)?,
                split: optional(rec, "split").unwrap_or_else(|| split.clone()),
            });
        }
    }
    Ok(out)
}

/// One multi-label classification example.
#[derive(Debug, Clone, PartialEq)]
pub struct LabelExample {
    /// Image path.
    pub image: String,
    /// One 0/1 target per label.
    pub labels: Vec<bool>,
}

/// The 14 NIH ChestX-ray14 findings, in MED-PEFT's order.
pub const NIH_LABELS: [&str; 14] = [
    "Atelectasis",
    "Cardiomegaly",
    "Effusion",
    "Infiltration",
    "Mass",
    "Nodule",
    "Pneumonia",
    "Pneumothorax",
    "Consolidation",
    "Edema",
    "Emphysema",
    "Fibrosis",
    "Pleural_Thickening",
    "Hernia",
];

/// Parses NIH ChestX-ray14's `Data_Entry_2017.csv` (`Image Index`, `Finding Labels` split on `|`;
/// "No Finding" = no label) into targets over [`NIH_LABELS`].
pub fn read_nih_csv(bytes: &[u8], file: &str) -> Result<Vec<LabelExample>> {
    let (header, rows) = csv_rows(bytes, file)?;
    let col = |name: &str| {
        header
            .iter()
            .position(|h| h == name)
            .ok_or_else(|| Error::config(file, name, "column missing from the header"))
    };
    let (img, lab) = (col("Image Index")?, col("Finding Labels")?);
    let mut out = Vec::new();
    for (line, cells) in rows {
        let get = |c: usize| {
            cells
                .get(c)
                .map(|s| s.trim())
                .ok_or_else(|| Error::config(file, &format!("line {line}"), "too few columns"))
        };
        let findings: Vec<&str> = get(lab)?.split('|').map(str::trim).collect();
        for f in &findings {
            if *f != "No Finding" && !NIH_LABELS.contains(f) {
                return Err(Error::config(
                    file,
                    &format!("line {line}: Finding Labels"),
                    format!("unknown finding `{f}`"),
                ));
            }
        }
        out.push(LabelExample {
            image: get(img)?.to_string(),
            labels: NIH_LABELS.iter().map(|l| findings.contains(l)).collect(),
        });
    }
    Ok(out)
}

/// A CSV file's header and its non-empty rows with their 1-based line numbers (RFC 4180 quoting).
fn csv_rows(bytes: &[u8], file: &str) -> Result<(Vec<String>, Vec<(u64, Vec<String>)>)> {
    let mut reader = csv::ReaderBuilder::new().flexible(true).from_reader(bytes);
    let header: Vec<String> = reader
        .headers()
        .map_err(|e| Error::json(file, e))?
        .iter()
        .map(|h| h.trim().to_string())
        .collect();
    if header.iter().all(String::is_empty) {
        return Err(Error::Input(format!("{file}: empty file")));
    }
    let mut rows = Vec::new();
    for rec in reader.records() {
        let rec = rec.map_err(|e| Error::json(file, e))?;
        let line = rec.position().map_or(0, |p| p.line());
        if rec.iter().all(|c| c.trim().is_empty()) {
            continue;
        }
        rows.push((line, rec.iter().map(str::to_string).collect()));
    }
    Ok((header, rows))
}

/// Parses PathVQA as users convert its release to JSON (an array of `image`, `question`,
/// `answer` records, optional `answer_type` and `id`/`qid`) or CSV (the same columns). Image
/// names without an extension get `.jpg` (the release's `train_0422` → `train_0422.jpg`);
/// without `answer_type`, yes/no answers are CLOSED and the rest OPEN, as the PathVQA paper splits them.
pub fn read_path_vqa(bytes: &[u8], file: &str) -> Result<Vec<VqaExample>> {
    let first = bytes.iter().find(|b| !b.is_ascii_whitespace());
    let records: Vec<(String, Value)> = if matches!(first, Some(b'[')) {
        match serde_json::from_slice(bytes).map_err(|e| Error::json(file, e))? {
            Value::Array(a) => a
                .into_iter()
                .enumerate()
                .map(|(i, v)| (format!("record {i}"), v))
                .collect(),
            _ => unreachable!("starts with ["),
        }
    } else {
        let (header, rows) = csv_rows(bytes, file)?;
        rows.into_iter()
            .map(|(line, cells)| {
                let obj: serde_json::Map<String, Value> = header
                    .iter()
                    .zip(cells)
                    .map(|(h, c)| (h.clone(), Value::String(c)))
                    .collect();
                (format!("line {line}"), Value::Object(obj))
            })
            .collect()
    };
    let mut out = Vec::with_capacity(records.len());
    for (i, (at, rec)) in records.iter().enumerate() {
        let get = |name: &str| -> Result<String> {
            optional(rec, name)
                .ok_or_else(|| Error::config(file, &format!("{at}: {name}"), "missing"))
        };
        let mut image = get("image")?;
        if !image.rsplit('/').next().unwrap_or(&image).contains('.') {
            image.push_str(".jpg");
        }
        let answer = get("answer")?;
        let answer_type = optional(rec, "answer_type")
            .map(|t| t.to_uppercase())
            .unwrap_or_else(|| {
                let a = answer.trim().to_lowercase();
                if a == "yes" || a == "no" {
                    "CLOSED"
                } else {
                    "OPEN"
                }
                .to_string()
            });
        out.push(VqaExample {
            image,
            question: get("question")?,
            answer,
            answer_type,
            id: optional(rec, "id")
                .or_else(|| optional(rec, "qid"))
                .unwrap_or_else(|| i.to_string()),
        });
    }
    if out.is_empty() {
        return Err(Error::Input(format!("{file}: no questions found")));
    }
    Ok(out)
}

/// Parses a CSV of labels: an image column (`image`, `path`, `Image Index` or `filename`) and one
/// 0/1 column per label (the header names the labels; other columns are refused so a typo does
/// not silently become a label). Returns the label names and the examples.
pub fn read_labels_csv(bytes: &[u8], file: &str) -> Result<(Vec<String>, Vec<LabelExample>)> {
    let (header, rows) = csv_rows(bytes, file)?;
    let img = header
        .iter()
        .position(|h| matches!(h.as_str(), "image" | "path" | "Image Index" | "filename"))
        .ok_or_else(|| {
            Error::config(
                file,
                "image",
                "no image column (`image`, `path`, `Image Index` or `filename`)",
            )
        })?;
    let names: Vec<String> = header
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != img)
        .map(|(_, h)| h.clone())
        .collect();
    if names.is_empty() {
        return Err(Error::config(file, "header", "no label columns"));
    }
    let mut out = Vec::with_capacity(rows.len());
    for (line, cells) in rows {
        if cells.len() != header.len() {
            return Err(Error::config(
                file,
                &format!("line {line}"),
                format!("{} columns, the header has {}", cells.len(), header.len()),
            ));
        }
        let mut labels = Vec::with_capacity(names.len());
        for (i, c) in cells.iter().enumerate() {
            if i == img {
                continue;
            }
            labels.push(match c.trim() {
                "1" | "1.0" => true,
                "0" | "0.0" => false,
                other => {
                    return Err(Error::config(
                        file,
                        &format!("line {line}: {}", header[i]),
                        format!("`{other}` is not 0 or 1"),
                    ));
                }
            });
        }
        out.push(LabelExample {
            image: cells[img].trim().to_string(),
            labels,
        });
    }
    Ok((names, out))
}

/// Parses a MED-PEFT split list: one `path label label ...` line per image (0/1 labels).
pub fn read_label_list(bytes: &[u8], file: &str) -> Result<Vec<LabelExample>> {
    let text = std::str::from_utf8(bytes).map_err(|e| Error::json(file, e))?;
    let mut out: Vec<LabelExample> = Vec::new();
    for (n, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let mut parts = line.split_whitespace();
        let image = parts.next().unwrap_or_default().to_string();
        let labels = parts
            .map(|p| match p {
                "0" => Ok(false),
                "1" => Ok(true),
                other => Err(Error::config(
                    file,
                    &format!("line {}", n + 1),
                    format!("label `{other}` is not 0 or 1"),
                )),
            })
            .collect::<Result<Vec<bool>>>()?;
        if let Some(first) = out.first()
            && first.labels.len() != labels.len()
        {
            return Err(Error::config(
                file,
                &format!("line {}", n + 1),
                format!(
                    "{} labels, the first line has {}",
                    labels.len(),
                    first.labels.len()
                ),
            ));
        }
        out.push(LabelExample { image, labels });
    }
    Ok(out)
}

#[cfg(test)]
mod more_tests {
    use super::*;

    #[test]
    fn reads_a_csv_of_labels() {
        let csv = b"image,Effusion,Nodule\nct/1.dcm,1,0\nct/2.dcm,0,1\n";
        let (names, v) = read_labels_csv(csv, "labels.csv").unwrap();
        assert_eq!(names, vec!["Effusion", "Nodule"]);
        assert_eq!(
            (v[0].image.as_str(), v[1].labels.clone()),
            ("ct/1.dcm", vec![false, true])
        );
        let e = read_labels_csv(b"image,Effusion\na.dcm,yes\n", "labels.csv")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("labels.csv") && e.contains("line 2: Effusion") && e.contains("`yes`"),
            "{e}"
        );
        let e = read_labels_csv(b"img,Effusion\na.dcm,1\n", "labels.csv")
            .unwrap_err()
            .to_string();
        assert!(e.contains("no image column"), "{e}");
    }

    #[test]
    fn reads_path_vqa_json_and_csv() {
        let json = br#"[{"image": "train_0422", "question": "Is this an adenoma?", "answer": "yes"},
                        {"image": "train_0423.png", "question": "What is present?", "answer": "necrosis", "qid": "q9"}]"#;
        let v = read_path_vqa(json, "train.json").unwrap();
        assert_eq!(v[0].image, "train_0422.jpg");
        assert_eq!(
            (v[0].answer_type.as_str(), v[1].answer_type.as_str()),
            ("CLOSED", "OPEN")
        );
        assert_eq!(
            (v[1].image.as_str(), v[1].id.as_str()),
            ("train_0423.png", "q9")
        );
        let csv = b"image,question,answer\ntest_1,\"Where, exactly, is it?\",liver\n\ntest_2,Is it benign?,No\n";
        let v = read_path_vqa(csv, "test.csv").unwrap();
        assert_eq!(v[0].question, "Where, exactly, is it?");
        assert_eq!((v.len(), v[1].answer_type.as_str()), (2, "CLOSED"));
        let e = read_path_vqa(b"image,question\na,b\n", "t.csv")
            .unwrap_err()
            .to_string();
        assert!(e.contains("t.csv") && e.contains("line 2: answer"), "{e}");
    }

    #[test]
    fn reads_iu_xray_nih_and_lists() {
        let iu = br#"{"train": [{"id": "CXR1_1_IM-0001", "report": "The heart is normal in size.", "image_path": ["CXR1_1_IM-0001/0.png", "CXR1_1_IM-0001/1.png"], "split": "train"}], "test": []}"#;
        let v = read_iu_xray(iu, "annotation.json").unwrap();
        assert_eq!(
            (v.len(), v[0].images.len(), v[0].split.as_str()),
            (1, 2, "train")
        );
        let csv = b"Image Index,Finding Labels,Follow-up #,Patient ID\n00000001_000.png,Cardiomegaly|Effusion,0,1\n00000002_000.png,No Finding,0,2\n";
        let v = read_nih_csv(csv, "Data_Entry_2017.csv").unwrap();
        assert_eq!(v[0].labels.iter().filter(|l| **l).count(), 2);
        assert!(v[0].labels[1] && v[0].labels[2] && !v[1].labels.iter().any(|l| *l));
        let e = read_nih_csv(b"Image Index,Finding Labels\na.png,Bogus\n", "d.csv")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("d.csv") && e.contains("line 2") && e.contains("Bogus"),
            "{e}"
        );
        let quoted = b"Image Index,Finding Labels\n\"a,1.png\",\"Mass|Nodule\"\n";
        let v = read_nih_csv(quoted, "q.csv").unwrap();
        assert_eq!((v[0].image.as_str(), v[0].labels[4]), ("a,1.png", true));
        let v =
            read_label_list(b"images/a.png 0 1 0\nimages/b.png 1 1 0\n", "train_1.txt").unwrap();
        assert_eq!(v[1].labels, vec![true, true, false]);
        let e = read_label_list(b"a.png 0 1\nb.png 0 2\n", "l.txt")
            .unwrap_err()
            .to_string();
        assert!(e.contains("l.txt") && e.contains("line 2"), "{e}");
    }
}
