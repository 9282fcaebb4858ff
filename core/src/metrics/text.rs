//! Report-generation metrics exactly as pycocoevalcap's scorers compute them when called on
//! pre-tokenised text (tokens separated by single spaces): `Bleu(4)` (closest reference length,
//! corpus-level brevity penalty), `Rouge` (LCS F-measure, beta 1.2, best precision and recall
//! over references) and `Cider` (CIDEr-D: document frequencies from the references of the scored
//! corpus, clipped tf-idf, Gaussian length penalty with sigma 6, × 10).

use std::collections::HashMap;

type Ngram<'a> = Vec<&'a str>;

fn tokens(s: &str) -> Vec<&str> {
    s.split(' ').filter(|t| !t.is_empty()).collect()
}

fn ngram_counts<'a>(toks: &[&'a str], n: usize) -> HashMap<Ngram<'a>, usize> {
    let mut counts = HashMap::new();
    for k in 1..=n {
        for w in toks.windows(k) {
            *counts.entry(w.to_vec()).or_insert(0) += 1;
        }
    }
    counts
}

/// BLEU-1..4: `(corpus scores, per-example scores)`; `per_example[i][k]` is BLEU-(k+1) of example i.
pub fn bleu(candidates: &[&str], references: &[Vec<&str>]) -> ([f64; 4], Vec<[f64; 4]>) {
    const N: usize = 4;
    const TINY: f64 = 1e-15;
    const SMALL: f64 = 1e-9;
    let (mut total_test, mut total_ref) = (0usize, 0usize);
    let (mut total_guess, mut total_correct) = ([0usize; N], [0usize; N]);
    let mut per = Vec::with_capacity(candidates.len());
    let score = |guess: &[usize; N], correct: &[usize; N], testlen: usize, reflen: usize| {
        let mut out = [0f64; N];
        let mut b = 1.0f64;
        for k in 0..N {
            b *= (correct[k] as f64 + TINY) / (guess[k] as f64 + SMALL);
            out[k] = b.powf(1.0 / (k as f64 + 1.0));
        }
        let ratio = (testlen as f64 + TINY) / (reflen as f64 + SMALL);
        if ratio < 1.0 {
            for o in &mut out {
                *o *= (1.0 - 1.0 / ratio).exp();
            }
        }
        out
    };
    for (cand, refs) in candidates.iter().zip(references) {
        let test = tokens(cand);
        let mut maxcounts: HashMap<Ngram, usize> = HashMap::new();
        let mut reflens = Vec::new();
        for r in refs {
            let rt = tokens(r);
            reflens.push(rt.len());
            for (g, c) in ngram_counts(&rt, N) {
                let e = maxcounts.entry(g).or_insert(0);
                *e = (*e).max(c);
            }
        }
        // "closest": the reference length nearest the candidate's, the shorter on a tie.
        let reflen = reflens
            .iter()
            .map(|&l| ((l as i64 - test.len() as i64).abs(), l))
            .min()
            .map_or(0, |x| x.1);
        let mut guess = [0usize; N];
        let mut correct = [0usize; N];
        for k in 0..N {
            guess[k] = test.len().saturating_sub(k);
        }
        for (g, c) in ngram_counts(&test, N) {
            correct[g.len() - 1] += c.min(*maxcounts.get(&g).unwrap_or(&0));
        }
        per.push(score(&guess, &correct, test.len(), reflen));
        total_test += test.len();
        total_ref += reflen;
        for k in 0..N {
            total_guess[k] += guess[k];
            total_correct[k] += correct[k];
        }
    }
    (
        score(&total_guess, &total_correct, total_test, total_ref),
        per,
    )
}

fn lcs(a: &[&str], b: &[&str]) -> usize {
    let mut prev = vec![0usize; b.len() + 1];
    for x in a {
        let mut cur = vec![0usize; b.len() + 1];
        for (j, y) in b.iter().enumerate() {
            cur[j + 1] = if x == y {
                prev[j] + 1
            } else {
                cur[j].max(prev[j + 1])
            };
        }
        prev = cur;
    }
    prev[b.len()]
}

/// ROUGE-L: `(corpus mean, per-example scores)`.
pub fn rouge_l(candidates: &[&str], references: &[Vec<&str>]) -> (f64, Vec<f64>) {
    const BETA: f64 = 1.2;
    let per: Vec<f64> = candidates
        .iter()
        .zip(references)
        .map(|(cand, refs)| {
            let c = tokens(cand);
            let (mut p_max, mut r_max) = (0f64, 0f64);
            for r in refs {
                let rt = tokens(r);
                let l = lcs(&rt, &c) as f64;
                p_max = p_max.max(if c.is_empty() {
                    0.0
                } else {
                    l / c.len() as f64
                });
                r_max = r_max.max(if rt.is_empty() {
                    0.0
                } else {
                    l / rt.len() as f64
                });
            }
            if p_max != 0.0 && r_max != 0.0 {
                (1.0 + BETA * BETA) * p_max * r_max / (r_max + BETA * BETA * p_max)
            } else {
                0.0
            }
        })
        .collect();
    let mean = if per.is_empty() {
        0.0
    } else {
        per.iter().sum::<f64>() / per.len() as f64
    };
    (mean, per)
}

/// CIDEr-D: `(corpus mean, per-example scores)`. Document frequencies come from the references
/// of this corpus, so scores depend on which examples are scored together (as in pycocoevalcap).
pub fn cider_d(candidates: &[&str], references: &[Vec<&str>]) -> (f64, Vec<f64>) {
    const N: usize = 4;
    const SIGMA: f64 = 6.0;
    let crefs: Vec<Vec<HashMap<Ngram, usize>>> = references
        .iter()
        .map(|refs| refs.iter().map(|r| ngram_counts(&tokens(r), N)).collect())
        .collect();
    let mut df: HashMap<Ngram, f64> = HashMap::new();
    for refs in &crefs {
        let mut seen: std::collections::HashSet<&Ngram> = std::collections::HashSet::new();
        for r in refs {
            seen.extend(r.keys());
        }
        for g in seen {
            *df.entry(g.clone()).or_insert(0.0) += 1.0;
        }
    }
    let ref_len = (crefs.len() as f64).ln();
    let per: Vec<f64> = candidates
        .iter()
        .zip(&crefs)
        .map(|(cand, refs)| {
            let (vh, nh, lh) = counts_to_vec(&ngram_counts(&tokens(cand), N), &df, ref_len);
            let mut score = [0f64; N];
            for r in refs {
                let (vr, nr, lr) = counts_to_vec(r, &df, ref_len);
                let delta = lh as f64 - lr as f64;
                for n in 0..N {
                    let mut val = 0f64;
                    for (g, &h) in &vh[n] {
                        let rv = vr[n].get(g).copied().unwrap_or(0.0);
                        val += h.min(rv) * rv;
                    }
                    if nh[n] != 0.0 && nr[n] != 0.0 {
                        val /= nh[n] * nr[n];
                    }
                    score[n] += val * (-(delta * delta) / (2.0 * SIGMA * SIGMA)).exp();
                }
            }
            score.iter().sum::<f64>() / N as f64 / refs.len() as f64 * 10.0
        })
        .collect();
    let mean = if per.is_empty() {
        0.0
    } else {
        per.iter().sum::<f64>() / per.len() as f64
    };
    (mean, per)
}

type TfIdf<'a> = (Vec<HashMap<Ngram<'a>, f64>>, [f64; 4], usize);

/// pycocoevalcap's `counts2vec`; its "length" counts bigrams (n index 1), a quirk kept here.
fn counts_to_vec<'a>(
    counts: &HashMap<Ngram<'a>, usize>,
    df: &HashMap<Ngram<'_>, f64>,
    ref_len: f64,
) -> TfIdf<'a> {
    let mut vec: Vec<HashMap<Ngram<'a>, f64>> = vec![HashMap::new(); 4];
    let mut norm = [0f64; 4];
    let mut length = 0usize;
    for (g, &tf) in counts {
        let d = df.get(g).copied().unwrap_or(0.0).max(1.0).ln();
        let n = g.len() - 1;
        let v = tf as f64 * (ref_len - d);
        vec[n].insert(g.clone(), v);
        norm[n] += v * v;
        if n == 1 {
            length += tf;
        }
    }
    (vec, norm.map(f64::sqrt), length)
}
