//! Evaluation: predictions for a split and their named scores, the same code for `normtune eval`,
//! periodic evaluation during training and the app. Images come through a [`FileSource`].

use crate::data::{Example, Task};
use crate::error::{Error, Result};
use crate::metrics::{Scores, score_classification, score_reports, score_vqa};
use crate::models::Pipeline;
use crate::models::blip::GenConfig;
use crate::source::FileSource;
use serde::Serialize;

/// One prediction, as the `score` verb reads it back (`{"id", "answer"}`, `{"id", "report"}` or
/// `{"id", "scores"}`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Prediction {
    /// The example's id.
    pub id: String,
    /// The generated answer (VQA).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub answer: Option<String>,
    /// The generated report.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub report: Option<String>,
    /// Per-label probabilities (classification).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scores: Option<Vec<f32>>,
}

/// Predicts one example.
pub async fn predict(
    p: &Pipeline,
    example: &Example,
    images: &impl FileSource,
    generation: &GenConfig,
) -> Result<Prediction> {
    let bytes = images.read(&example.image).await?;
    let pixels = p.image_tensor(&bytes, &images.describe(&example.image))?;
    let mut out = Prediction {
        id: example.id.clone(),
        answer: None,
        report: None,
        scores: None,
    };
    if let Some(q) = &example.question {
        out.answer = Some(p.answer(pixels, q, generation).await?.text);
    } else if !example.labels.is_empty() {
        let s = p.classify(pixels).await?;
        if s.len() != example.labels.len() {
            return Err(Error::Input(format!(
                "example `{}` has {} labels, the classifier has {}",
                example.id,
                example.labels.len(),
                s.len()
            )));
        }
        out.scores = Some(s.into_iter().map(|l| l.probability).collect());
    } else {
        out.report = Some(p.report(pixels, generation).await?.text);
    }
    Ok(out)
}

/// Scores predictions (in the order of `examples`) with the task's metrics.
pub fn score(
    task: Task,
    examples: &[Example],
    predictions: &[Prediction],
    label_names: &[String],
) -> Scores {
    match task {
        Task::Vqa => score_vqa(examples.iter().zip(predictions).map(|(e, p)| {
            (
                p.answer.as_deref().unwrap_or(""),
                e.target.as_str(),
                e.answer_type.as_str(),
            )
        })),
        Task::Report => {
            let preds: Vec<String> = predictions
                .iter()
                .map(|p| p.report.clone().unwrap_or_default())
                .collect();
            let refs: Vec<Vec<String>> = examples.iter().map(|e| vec![e.target.clone()]).collect();
            score_reports(&preds, &refs)
        }
        Task::Classification => {
            let s: Vec<Vec<f32>> = predictions
                .iter()
                .map(|p| p.scores.clone().unwrap_or_default())
                .collect();
            let l: Vec<Vec<bool>> = examples.iter().map(|e| e.labels.clone()).collect();
            score_classification(&s, &l, label_names)
        }
    }
}

/// Predicts every example and scores the lot; `progress(done, total)` after each.
pub async fn evaluate(
    p: &Pipeline,
    task: Task,
    examples: &[Example],
    images: &impl FileSource,
    generation: &GenConfig,
    mut progress: impl FnMut(usize, usize),
) -> Result<(Scores, Vec<Prediction>)> {
    let mut preds = Vec::with_capacity(examples.len());
    for (i, e) in examples.iter().enumerate() {
        preds.push(predict(p, e, images, generation).await?);
        progress(i + 1, examples.len());
    }
    let names = p.config.labels().unwrap_or_default();
    Ok((score(task, examples, &preds, &names), preds))
}
