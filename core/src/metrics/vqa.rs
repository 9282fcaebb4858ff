//! Med-VQA accuracy. One pinned definition: exact match after [`normalize_answer`], reported
//! overall and split by `answer_type` (CLOSED / OPEN). No substring matching: LLaVA-Med's
//! closed check counted "no" as found in "normal".

use serde::Serialize;

/// Lower-case, trim, drop trailing periods, collapse runs of whitespace.
pub fn normalize_answer(s: &str) -> String {
    let lower = s.to_lowercase();
    let trimmed = lower.trim().trim_end_matches('.').trim();
    trimmed.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Accuracy overall and per answer type, in [0, 1]; `None` where a split is empty.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct VqaAccuracy {
    /// All questions.
    pub overall: Option<f64>,
    /// CLOSED (yes/no and other closed-set) questions.
    pub closed: Option<f64>,
    /// OPEN questions.
    pub open: Option<f64>,
}

/// Accuracy of `(prediction, answer, answer_type)` triples.
pub fn vqa_accuracy<'a>(
    items: impl IntoIterator<Item = (&'a str, &'a str, &'a str)>,
) -> VqaAccuracy {
    let (mut n, mut hit, mut nc, mut hc, mut no, mut ho) =
        (0usize, 0usize, 0usize, 0usize, 0usize, 0usize);
    for (pred, answer, kind) in items {
        let ok = normalize_answer(pred) == normalize_answer(answer);
        n += 1;
        hit += ok as usize;
        if kind.trim().eq_ignore_ascii_case("closed") {
            nc += 1;
            hc += ok as usize;
        } else {
            no += 1;
            ho += ok as usize;
        }
    }
    let rate = |h: usize, n: usize| (n > 0).then(|| h as f64 / n as f64);
    VqaAccuracy {
        overall: rate(hit, n),
        closed: rate(hc, nc),
        open: rate(ho, no),
    }
}
