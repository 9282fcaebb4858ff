//! Area under the ROC curve, as scikit-learn's `roc_auc_score` (ties count one half), and the
//! MED-PEFT multi-label summary: the mean of the per-class AUROCs.

/// AUROC of `scores` against binary `labels`; `None` when only one class is present (where
/// scikit-learn raises "Only one class present in y_true").
pub fn auroc(scores: &[f32], labels: &[bool]) -> Option<f64> {
    assert_eq!(
        scores.len(),
        labels.len(),
        "scores and labels differ in length"
    );
    let pos = labels.iter().filter(|l| **l).count();
    let neg = labels.len() - pos;
    if pos == 0 || neg == 0 {
        return None;
    }
    // Mann-Whitney U with average ranks for ties.
    let mut idx: Vec<usize> = (0..scores.len()).collect();
    idx.sort_by(|&a, &b| {
        scores[a]
            .partial_cmp(&scores[b])
            .unwrap_or(std::cmp::Ordering::Equal)
    });
    let mut rank_sum_pos = 0.0f64;
    let mut i = 0;
    while i < idx.len() {
        let mut j = i;
        while j + 1 < idx.len() && scores[idx[j + 1]] == scores[idx[i]] {
            j += 1;
        }
        let avg_rank = (i + j) as f64 / 2.0 + 1.0;
        for &k in &idx[i..=j] {
            if labels[k] {
                rank_sum_pos += avg_rank;
            }
        }
        i = j + 1;
    }
    let (p, n) = (pos as f64, neg as f64);
    Some((rank_sum_pos - p * (p + 1.0) / 2.0) / (p * n))
}

/// Per-class AUROCs of a `[samples][classes]` score matrix and the mean over the classes where
/// it is defined (classes with a single label value are skipped, and reported as `None`).
pub fn mean_auroc(scores: &[Vec<f32>], labels: &[Vec<bool>]) -> (Vec<Option<f64>>, Option<f64>) {
    let classes = scores.first().map_or(0, Vec::len);
    let per: Vec<Option<f64>> = (0..classes)
        .map(|c| {
            let s: Vec<f32> = scores.iter().map(|r| r[c]).collect();
            let l: Vec<bool> = labels.iter().map(|r| r[c]).collect();
            auroc(&s, &l)
        })
        .collect();
    let defined: Vec<f64> = per.iter().flatten().copied().collect();
    let mean = (!defined.is_empty()).then(|| defined.iter().sum::<f64>() / defined.len() as f64);
    (per, mean)
}
