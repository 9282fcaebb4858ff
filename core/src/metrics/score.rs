//! Named scores, as `normtune eval`, `normtune score`, training runs and the app report them:
//! one flat JSON object per task with fixed key names (`closed_acc`, `open_acc`, `open_recall`,
//! `overall_acc`; `bleu1`..`bleu4`, `rouge_l`, `cider`; `auroc_mean`, `auroc_per_class`).
//! Undefined values (an empty split, a class with one label value) are `null`, never 0.

use super::{bleu, cider_d, mean_auroc, rouge_l, vqa_accuracy};
use serde_json::{Map, Value, json};

/// A flat object of named scores.
pub type Scores = Map<String, Value>;

/// VQA scores of `(prediction, answer, answer_type)` triples.
pub fn score_vqa<'a>(items: impl IntoIterator<Item = (&'a str, &'a str, &'a str)>) -> Scores {
    let a = vqa_accuracy(items);
    let mut m = Scores::new();
    m.insert("overall_acc".into(), json!(a.overall));
    m.insert("closed_acc".into(), json!(a.closed));
    m.insert("open_acc".into(), json!(a.open));
    m.insert("open_recall".into(), json!(a.open_recall));
    m.insert("count".into(), json!(a.count));
    m
}

/// Text as the report metrics see it: lower case, every character that is not alphanumeric or
/// whitespace replaced by a space, words joined by one space (pycocoevalcap's scorers then
/// split on spaces; its PTB tokenizer, which needs Java, is not used).
pub fn report_tokens(text: &str) -> String {
    text.to_lowercase()
        .chars()
        .map(|c| {
            if c.is_alphanumeric() || c.is_whitespace() {
                c
            } else {
                ' '
            }
        })
        .collect::<String>()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

/// Report-generation scores of predictions against one or more references each.
pub fn score_reports(predictions: &[String], references: &[Vec<String>]) -> Scores {
    let cands: Vec<String> = predictions.iter().map(|p| report_tokens(p)).collect();
    let refs: Vec<Vec<String>> = references
        .iter()
        .map(|r| r.iter().map(|t| report_tokens(t)).collect())
        .collect();
    let c: Vec<&str> = cands.iter().map(String::as_str).collect();
    let r: Vec<Vec<&str>> = refs
        .iter()
        .map(|v| v.iter().map(String::as_str).collect())
        .collect();
    let mut m = Scores::new();
    if c.is_empty() {
        for k in ["bleu1", "bleu2", "bleu3", "bleu4", "rouge_l", "cider"] {
            m.insert(k.into(), Value::Null);
        }
    } else {
        let b = bleu(&c, &r).0;
        for (i, v) in b.iter().enumerate() {
            m.insert(format!("bleu{}", i + 1), json!(v));
        }
        m.insert("rouge_l".into(), json!(rouge_l(&c, &r).0));
        m.insert("cider".into(), json!(cider_d(&c, &r).0));
    }
    m.insert("count".into(), json!(c.len()));
    m
}

/// Multi-label classification scores: per-class AUROC (keyed by label name) and their mean
/// over the classes where it is defined.
pub fn score_classification(scores: &[Vec<f32>], labels: &[Vec<bool>], names: &[String]) -> Scores {
    let (per, mean) = mean_auroc(scores, labels);
    let mut per_class = Map::new();
    for (i, v) in per.iter().enumerate() {
        let name = names.get(i).cloned().unwrap_or_else(|| i.to_string());
        per_class.insert(name, json!(v));
    }
    let mut m = Scores::new();
    m.insert("auroc_mean".into(), json!(mean));
    m.insert("auroc_per_class".into(), Value::Object(per_class));
    m.insert("count".into(), json!(scores.len()));
    m
}

/// The score a run selects its best checkpoint by, for each task.
pub fn primary_metric(task: crate::data::Task) -> &'static str {
    match task {
        crate::data::Task::Vqa => "overall_acc",
        crate::data::Task::Report => "cider",
        crate::data::Task::Classification => "auroc_mean",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn undefined_is_null_not_zero() {
        let s = score_vqa([("yes", "yes", "CLOSED")]);
        assert_eq!(s["closed_acc"], json!(1.0));
        assert_eq!(s["open_acc"], Value::Null);
        let s = score_classification(
            &[vec![0.1, 0.9], vec![0.8, 0.2]],
            &[vec![false, true], vec![true, true]],
            &["a".into(), "b".into()],
        );
        assert_eq!(s["auroc_per_class"]["a"], json!(1.0));
        assert_eq!(s["auroc_per_class"]["b"], Value::Null);
        assert_eq!(s["auroc_mean"], json!(1.0));
        assert_eq!(report_tokens("Heart: normal-sized."), "heart normal sized");
    }
}

/// Scores a predictions file against a reference file, both JSON lines joined on `id` (every
/// reference needs exactly one prediction, and no prediction may be left over). VQA: predictions
/// `{"id", "answer"}`, references `{"id", "answer", "answer_type"}`; reports: `{"id", "report"}`
/// (a reference `report` may be a list of references); classification: `{"id", "scores": [..]}`
/// against `{"id", "labels": [0/1 ..]}` (optional `label_names` on the first reference line).
pub fn score_jsonl(
    task: crate::data::Task,
    pred: &[u8],
    pred_file: &str,
    refs: &[u8],
    ref_file: &str,
) -> crate::Result<Scores> {
    use crate::Error;
    use crate::data::Task;
    fn lines(bytes: &[u8], file: &str) -> crate::Result<Vec<(usize, String, Map<String, Value>)>> {
        let text = std::str::from_utf8(bytes).map_err(|e| Error::Json {
            file: file.into(),
            reason: e.to_string(),
        })?;
        let mut out: Vec<(usize, String, Map<String, Value>)> = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for (n, l) in text.lines().enumerate() {
            if l.trim().is_empty() {
                continue;
            }
            let at = |f: &str| format!("line {}: {f}", n + 1);
            let v: Value = serde_json::from_str(l).map_err(|e| Error::Json {
                file: file.into(),
                reason: format!("line {}: {e}", n + 1),
            })?;
            let Value::Object(o) = v else {
                return Err(Error::config(
                    file,
                    &at("id"),
                    "the line is not a JSON object",
                ));
            };
            let id = match o.get("id") {
                Some(Value::String(s)) => s.clone(),
                Some(Value::Number(x)) => x.to_string(),
                _ => return Err(Error::config(file, &at("id"), "missing")),
            };
            if !seen.insert(id.clone()) {
                return Err(Error::config(
                    file,
                    &at("id"),
                    format!("`{id}` appears twice"),
                ));
            }
            out.push((n + 1, id, o));
        }
        if out.is_empty() {
            return Err(Error::Input(format!("{file}: no lines")));
        }
        Ok(out)
    }
    let p = lines(pred, pred_file)?;
    let r = lines(refs, ref_file)?;
    let by_id: std::collections::HashMap<&str, &(usize, String, Map<String, Value>)> =
        p.iter().map(|x| (x.1.as_str(), x)).collect();
    let ref_ids: std::collections::HashSet<&str> = r.iter().map(|x| x.1.as_str()).collect();
    if let Some((line, id, _)) = p.iter().find(|x| !ref_ids.contains(x.1.as_str())) {
        return Err(Error::config(
            pred_file,
            &format!("line {line}: id"),
            format!("`{id}` is not in {ref_file}"),
        ));
    }
    let text =
        |o: &Map<String, Value>, file: &str, line: usize, f: &str| -> crate::Result<String> {
            match o.get(f) {
                Some(Value::String(s)) => Ok(s.clone()),
                Some(Value::Number(x)) => Ok(x.to_string()),
                _ => Err(Error::config(
                    file,
                    &format!("line {line}: {f}"),
                    "missing or not text",
                )),
            }
        };
    let mut pairs = Vec::with_capacity(r.len());
    for rr in &r {
        let pp = by_id.get(rr.1.as_str()).ok_or_else(|| {
            Error::config(
                pred_file,
                "id",
                format!("no prediction for `{}` ({ref_file} line {})", rr.1, rr.0),
            )
        })?;
        pairs.push((*pp, rr));
    }
    match task {
        Task::Vqa => {
            let mut items = Vec::with_capacity(pairs.len());
            for (pp, rr) in &pairs {
                let kind = match rr.2.get("answer_type") {
                    Some(Value::String(s)) => s.clone(),
                    _ => {
                        return Err(Error::config(
                            ref_file,
                            &format!("line {}: answer_type", rr.0),
                            "missing (CLOSED or OPEN)",
                        ));
                    }
                };
                items.push((
                    text(&pp.2, pred_file, pp.0, "answer")?,
                    text(&rr.2, ref_file, rr.0, "answer")?,
                    kind,
                ));
            }
            Ok(score_vqa(
                items
                    .iter()
                    .map(|(a, b, c)| (a.as_str(), b.as_str(), c.as_str())),
            ))
        }
        Task::Report => {
            let mut preds = Vec::new();
            let mut refs = Vec::new();
            for (pp, rr) in &pairs {
                preds.push(text(&pp.2, pred_file, pp.0, "report")?);
                refs.push(match rr.2.get("report") {
                    Some(Value::Array(a)) if !a.is_empty() && a.iter().all(Value::is_string) => a
                        .iter()
                        .map(|v| v.as_str().unwrap_or_default().to_string())
                        .collect(),
                    _ => vec![text(&rr.2, ref_file, rr.0, "report")?],
                });
            }
            Ok(score_reports(&preds, &refs))
        }
        Task::Classification => {
            let mut scores = Vec::new();
            let mut labels = Vec::new();
            let width = |o: &Map<String, Value>,
                         file: &str,
                         line: usize,
                         f: &str|
             -> crate::Result<Vec<f64>> {
                let bad = || {
                    Error::config(
                        file,
                        &format!("line {line}: {f}"),
                        "missing or not a list of numbers",
                    )
                };
                let a = o.get(f).and_then(Value::as_array).ok_or_else(bad)?;
                a.iter().map(|v| v.as_f64().ok_or_else(bad)).collect()
            };
            for (pp, rr) in &pairs {
                let s = width(&pp.2, pred_file, pp.0, "scores")?;
                let l = width(&rr.2, ref_file, rr.0, "labels")?;
                if s.len() != l.len() || l.is_empty() {
                    return Err(Error::config(
                        pred_file,
                        &format!("line {}: scores", pp.0),
                        format!("{} scores for {} labels", s.len(), l.len()),
                    ));
                }
                if let Some(x) = l.iter().find(|x| **x != 0.0 && **x != 1.0) {
                    return Err(Error::config(
                        ref_file,
                        &format!("line {}: labels", rr.0),
                        format!("`{x}` is not 0 or 1"),
                    ));
                }
                scores.push(s.iter().map(|&x| x as f32).collect::<Vec<f32>>());
                labels.push(l.iter().map(|&x| x == 1.0).collect::<Vec<bool>>());
            }
            if let Some(w) = labels.iter().map(Vec::len).find(|&w| w != labels[0].len()) {
                return Err(Error::Input(format!(
                    "{ref_file}: label lists differ in length ({w} and {})",
                    labels[0].len()
                )));
            }
            let names: Vec<String> = r[0]
                .2
                .get("label_names")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(|v| v.as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default();
            Ok(score_classification(&scores, &labels, &names))
        }
    }
}
