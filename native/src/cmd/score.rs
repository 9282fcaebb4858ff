//! `normtune score`: one pinned metric for everyone's predictions.

use crate::cli::{ScoreArgs, TaskArg};
use crate::fs::read_file;
use normtune_core::data::Task;
use normtune_core::metrics::{Scores, score_jsonl};

pub fn run(a: ScoreArgs) -> anyhow::Result<()> {
    let task = match a.task {
        TaskArg::Vqa => Task::Vqa,
        TaskArg::Report => Task::Report,
        TaskArg::Classification => Task::Classification,
    };
    let scores = score_jsonl(
        task,
        &read_file(&a.pred)?,
        &a.pred.display().to_string(),
        &read_file(&a.reference)?,
        &a.reference.display().to_string(),
    )?;
    print_scores(&scores, a.json);
    Ok(())
}

/// Prints scores as one JSON object or as `name value` lines.
pub fn print_scores(scores: &Scores, json: bool) {
    if json {
        println!("{}", serde_json::Value::Object(scores.clone()));
        return;
    }
    for (k, v) in scores {
        match v {
            serde_json::Value::Object(per) => {
                for (name, x) in per {
                    println!("{:<24} {}", format!("{k}.{name}"), fmt(x));
                }
            }
            _ => println!("{k:<24} {}", fmt(v)),
        }
    }
}

fn fmt(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::Null => "undefined".into(),
        serde_json::Value::Number(n) if n.is_f64() => format!("{:.4}", n.as_f64().unwrap_or(0.0)),
        other => other.to_string(),
    }
}
