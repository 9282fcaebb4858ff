//! Med-VQA accuracy. One pinned definition: exact match after [`normalize_answer`], reported
//! overall and split by `answer_type` (CLOSED / OPEN), plus LLaVA-Med-style open token recall,
//! reported separately and named as such. No substring matching: LLaVA-Med's closed check
//! counted "no" as found in "normal".

use serde::Serialize;

const ARTICLES: [&str; 3] = ["a", "an", "the"];

/// Lower-case; apostrophes dropped; every other character that is neither alphanumeric nor
/// whitespace becomes a space, except a `.` between two ASCII digits (decimals); the articles
/// a / an / the dropped; words joined by one space.
pub fn normalize_answer(s: &str) -> String {
    let chars: Vec<char> = s.to_lowercase().chars().collect();
    let mut out = String::with_capacity(chars.len());
    for (i, &c) in chars.iter().enumerate() {
        if c.is_alphanumeric() || c.is_whitespace() {
            out.push(c);
        } else if c == '.'
            && i > 0
            && i + 1 < chars.len()
            && chars[i - 1].is_ascii_digit()
            && chars[i + 1].is_ascii_digit()
        {
            out.push(c);
        } else if c != '\'' {
            out.push(' ');
        }
    }
    out.split_whitespace()
        .filter(|t| !ARTICLES.contains(t))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Fraction of the distinct normalised answer tokens found among the prediction's tokens (an
/// answer that normalises to nothing scores 1 only for an empty prediction).
pub fn token_recall(prediction: &str, answer: &str) -> f64 {
    let (p, a) = (normalize_answer(prediction), normalize_answer(answer));
    let mut reference: Vec<&str> = a.split_whitespace().collect();
    reference.sort_unstable();
    reference.dedup();
    if reference.is_empty() {
        return if p.is_empty() { 1.0 } else { 0.0 };
    }
    let got: Vec<&str> = p.split_whitespace().collect();
    reference.iter().filter(|t| got.contains(t)).count() as f64 / reference.len() as f64
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
    /// Mean [`token_recall`] over OPEN questions.
    pub open_recall: Option<f64>,
    /// Questions scored.
    pub count: usize,
}

/// Accuracy of `(prediction, answer, answer_type)` triples.
pub fn vqa_accuracy<'a>(
    items: impl IntoIterator<Item = (&'a str, &'a str, &'a str)>,
) -> VqaAccuracy {
    let (mut n, mut hit, mut nc, mut hc, mut no, mut ho) =
        (0usize, 0usize, 0usize, 0usize, 0usize, 0usize);
    let mut recall = 0.0;
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
            recall += token_recall(pred, answer);
        }
    }
    let rate = |h: usize, n: usize| (n > 0).then(|| h as f64 / n as f64);
    VqaAccuracy {
        overall: rate(hit, n),
        closed: rate(hc, nc),
        open: rate(ho, no),
        open_recall: (no > 0).then(|| recall / no as f64),
        count: n,
    }
}
