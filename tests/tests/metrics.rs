//! Metrics against their reference implementations (pycocoevalcap 1.2 scorers on pre-tokenised
//! text, scikit-learn 1.9 `roc_auc_score`, and the pinned VQA normalisation), from
//! `fixtures/make_metric_fixtures.py`.

use normtune_core::metrics::{
    bleu, cider_d, mean_auroc, normalize_answer, rouge_l, token_recall, vqa_accuracy,
};
use normtune_tests::*;

fn close(got: f64, want: f64, what: &str) {
    assert!(
        (got - want).abs() <= 1e-9 * want.abs().max(1.0),
        "{what}: {got} vs {want}"
    );
}

fn f64s(v: &serde_json::Value) -> Vec<f64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

#[test]
fn report_metrics_match_pycocoevalcap() {
    let r = reference_json("metrics");
    let examples = r["report"]["examples"].as_array().unwrap();
    for (name, sub) in r["report"]["subsets"].as_object().unwrap() {
        let ids: Vec<usize> = sub["ids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| {
                i.as_str()
                    .map_or_else(|| i.as_u64().unwrap() as usize, |s| s.parse().unwrap())
            })
            .collect();
        let cands: Vec<&str> = ids
            .iter()
            .map(|&i| examples[i]["candidate"].as_str().unwrap())
            .collect();
        let refs: Vec<Vec<&str>> = ids
            .iter()
            .map(|&i| {
                examples[i]["references"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|x| x.as_str().unwrap())
                    .collect()
            })
            .collect();

        let (corpus, per) = bleu(&cands, &refs);
        let want = f64s(&sub["bleu"]["corpus"]);
        for k in 0..4 {
            close(corpus[k], want[k], &format!("{name} corpus BLEU-{}", k + 1));
            let want_per = f64s(&sub["bleu"]["per_example"][k]);
            for (i, w) in want_per.iter().enumerate() {
                close(per[i][k], *w, &format!("{name} BLEU-{} example {i}", k + 1));
            }
        }
        let (corpus, per) = rouge_l(&cands, &refs);
        close(
            corpus,
            sub["rouge_l"]["corpus"].as_f64().unwrap(),
            &format!("{name} ROUGE-L"),
        );
        for (i, w) in f64s(&sub["rouge_l"]["per_example"]).iter().enumerate() {
            close(per[i], *w, &format!("{name} ROUGE-L example {i}"));
        }
        let (corpus, per) = cider_d(&cands, &refs);
        close(
            corpus,
            sub["cider"]["corpus"].as_f64().unwrap(),
            &format!("{name} CIDEr-D"),
        );
        for (i, w) in f64s(&sub["cider"]["per_example"]).iter().enumerate() {
            close(per[i], *w, &format!("{name} CIDEr-D example {i}"));
        }
        println!(
            "{name}: BLEU-4 {:.5} ROUGE-L {:.5} CIDEr-D {:.5}",
            bleu(&cands, &refs).0[3],
            rouge_l(&cands, &refs).0,
            cider_d(&cands, &refs).0
        );
    }
}

#[test]
fn auroc_matches_scikit_learn() {
    let r = reference_json("metrics")["auroc"].clone();
    let scores: Vec<Vec<f32>> = r["scores"]
        .as_array()
        .unwrap()
        .iter()
        .map(|row| f64s(row).iter().map(|x| *x as f32).collect())
        .collect();
    let labels: Vec<Vec<bool>> = r["labels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|row| {
            row.as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_i64().unwrap() != 0)
                .collect()
        })
        .collect();
    let (per, mean) = mean_auroc(&scores, &labels);
    for (c, w) in f64s(&r["per_class"]).iter().enumerate() {
        close(per[c].unwrap(), *w, &format!("class {c}"));
    }
    close(mean.unwrap(), r["mean"].as_f64().unwrap(), "mean AUROC");
    // A class with no positive has no AUROC and is left out of the mean.
    let labels6: Vec<Vec<bool>> = labels
        .iter()
        .map(|row| row.iter().copied().chain([false]).collect())
        .collect();
    let scores6: Vec<Vec<f32>> = scores
        .iter()
        .map(|row| row.iter().copied().chain([0.5]).collect())
        .collect();
    let (per6, mean6) = mean_auroc(&scores6, &labels6);
    assert!(per6[5].is_none());
    close(
        mean6.unwrap(),
        r["with_degenerate"]["mean"].as_f64().unwrap(),
        "mean over defined classes",
    );
}

#[test]
fn vqa_accuracy_matches_the_pinned_definition() {
    let r = reference_json("metrics")["vqa"].clone();
    let items = r["items"].as_array().unwrap();
    for it in items {
        assert_eq!(
            normalize_answer(it["prediction"].as_str().unwrap()),
            it["norm_prediction"].as_str().unwrap()
        );
        assert_eq!(
            normalize_answer(it["answer"].as_str().unwrap()),
            it["norm_answer"].as_str().unwrap()
        );
    }
    let acc = vqa_accuracy(items.iter().map(|it| {
        (
            it["prediction"].as_str().unwrap(),
            it["answer"].as_str().unwrap(),
            it["answer_type"].as_str().unwrap(),
        )
    }));
    close(
        acc.overall.unwrap(),
        r["overall"]["accuracy"].as_f64().unwrap(),
        "overall",
    );
    close(
        acc.closed.unwrap(),
        r["closed"]["accuracy"].as_f64().unwrap(),
        "closed",
    );
    close(
        acc.open.unwrap(),
        r["open"]["accuracy"].as_f64().unwrap(),
        "open",
    );
    for it in items {
        close(
            token_recall(
                it["prediction"].as_str().unwrap(),
                it["answer"].as_str().unwrap(),
            ),
            it["token_recall"].as_f64().unwrap(),
            "token recall",
        );
    }
    close(
        acc.open_recall.unwrap(),
        r["open_recall"].as_f64().unwrap(),
        "open recall",
    );
}
