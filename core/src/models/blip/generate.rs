//! Greedy and beam-search decoding with a KV cache, matching HF `generate` (transformers 5
//! `_sample` / `_beam_search`) token for token. Device work stays on the device; only the chosen
//! ids (greedy) or the step's log-probabilities (beam search) are read back, asynchronously.

use crate::error::{Error, Result};
use crate::models::bert::model::CrossInput;
use crate::models::bert::{BlipTextLMHeadModel, KvCache};
use burn::tensor::activation::log_softmax;
use burn::tensor::{Int, Tensor, TensorData};
use serde::{Deserialize, Serialize};

/// Decoding settings (HF `GenerationConfig` names).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct GenConfig {
    /// 1 = greedy; more = beam search.
    pub num_beams: usize,
    /// Tokens to generate at most, after the prompt.
    pub max_new_tokens: usize,
    /// Beam scores are divided by `length ** length_penalty`.
    pub length_penalty: f32,
}

impl Default for GenConfig {
    fn default() -> Self {
        // MILE: beam search with 3 beams, at most 10 tokens.
        Self {
            num_beams: 3,
            max_new_tokens: 10,
            length_penalty: 1.0,
        }
    }
}

/// The ids generation needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpecialTokens {
    /// Decoder start (`[DEC]`).
    pub bos: i64,
    /// Stop token (`[SEP]`).
    pub eos: i64,
    /// Padding.
    pub pad: i64,
}

pub(crate) async fn read_f32(t: Tensor<1>) -> Result<Vec<f32>> {
    let data: TensorData = t.into_data_async().await.map_err(Error::device)?;
    Ok(data.iter::<f32>().collect())
}

async fn read_i64(t: Tensor<1, Int>) -> Result<Vec<i64>> {
    let data: TensorData = t.into_data_async().await.map_err(Error::device)?;
    Ok(data.iter::<i64>().collect())
}

/// Generates one sequence per row of `states` (prompt included in each result).
pub(crate) async fn generate(
    decoder: &BlipTextLMHeadModel,
    states: &Tensor<3>,
    mask: Option<Tensor<2>>,
    prompt: &[i64],
    tokens: &SpecialTokens,
    cfg: &GenConfig,
) -> Result<Vec<Vec<i64>>> {
    if prompt.is_empty() {
        return Err(Error::Input(
            "generation needs at least the decoder start token".into(),
        ));
    }
    if cfg.num_beams == 0 {
        return Err(Error::Input("num_beams must be at least 1".into()));
    }
    if cfg.num_beams == 1 {
        greedy(decoder, states, mask, prompt, tokens, cfg).await
    } else {
        beam_search(decoder, states, mask, prompt, tokens, cfg).await
    }
}

fn prompt_tensor(prompt: &[i64], rows: usize, device: &burn::tensor::Device) -> Tensor<2, Int> {
    let ids: Vec<i64> = (0..rows).flat_map(|_| prompt.iter().copied()).collect();
    Tensor::<1, Int>::from_ints(ids.as_slice(), device).reshape([rows, prompt.len()])
}

async fn greedy(
    decoder: &BlipTextLMHeadModel,
    states: &Tensor<3>,
    mask: Option<Tensor<2>>,
    prompt: &[i64],
    tokens: &SpecialTokens,
    cfg: &GenConfig,
) -> Result<Vec<Vec<i64>>> {
    let device = states.device();
    let batch = states.dims()[0];
    let mut seqs: Vec<Vec<i64>> = vec![prompt.to_vec(); batch];
    let mut open = vec![true; batch];
    let mut cache = KvCache::default();
    let mut input = prompt_tensor(prompt, batch, &device);
    for _ in 0..cfg.max_new_tokens {
        let cross = CrossInput {
            states,
            mask: mask.clone(),
        };
        let logits = decoder.forward(input, None, Some(cross), Some(&mut cache));
        let [b, l, v] = logits.dims();
        let next = read_i64(
            logits
                .narrow(1, l - 1, 1)
                .reshape([b, v])
                .argmax(1)
                .reshape([b]),
        )
        .await?;
        let mut step = Vec::with_capacity(batch);
        for (i, tok) in next.into_iter().enumerate() {
            // HF pads finished rows; here a finished row simply stops growing.
            let tok = if open[i] { tok } else { tokens.pad };
            if open[i] {
                seqs[i].push(tok);
                open[i] = tok != tokens.eos;
            }
            step.push(tok);
        }
        if open.iter().all(|o| !o) {
            break;
        }
        input = Tensor::<1, Int>::from_ints(step.as_slice(), &device).reshape([batch, 1]);
    }
    Ok(seqs)
}

/// One batch row's beam state, as HF keeps it.
struct Beams {
    running: Vec<Vec<i64>>,
    running_scores: Vec<f32>,
    finished: Vec<Vec<i64>>,
    finished_scores: Vec<f32>,
    is_finished: Vec<bool>,
    improvable: bool,
}

const NEG: f32 = -1.0e9;

/// Indices of the `k` largest values, largest first (stable: earlier index first on ties).
fn top_k(values: &[f32], k: usize) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..values.len()).collect();
    idx.sort_by(|&a, &b| {
        values[b]
            .partial_cmp(&values[a])
            .unwrap_or(std::cmp::Ordering::Equal)
    });
    idx.truncate(k);
    idx
}

async fn beam_search(
    decoder: &BlipTextLMHeadModel,
    states: &Tensor<3>,
    mask: Option<Tensor<2>>,
    prompt: &[i64],
    tokens: &SpecialTokens,
    cfg: &GenConfig,
) -> Result<Vec<Vec<i64>>> {
    let device = states.device();
    let [batch, s_len, s_dim] = states.dims();
    let k = cfg.num_beams;
    let keep = 2 * k; // HF: max(2, 1 + number of eos ids) * num_beams, with one eos id
    let prompt_len = prompt.len();
    let max_len = prompt_len + cfg.max_new_tokens;
    // Every beam of a row attends to that row's states.
    let rows: Vec<i64> = (0..batch)
        .flat_map(|b| std::iter::repeat_n(b as i64, k))
        .collect();
    let rows = Tensor::<1, Int>::from_ints(rows.as_slice(), &device);
    let states = states.clone().select(0, rows.clone());
    let mask = mask.map(|m| m.select(0, rows));
    debug_assert_eq!(states.dims(), [batch * k, s_len, s_dim]);

    let mut beams: Vec<Beams> = (0..batch)
        .map(|_| Beams {
            running: vec![prompt.to_vec(); k],
            running_scores: (0..k).map(|i| if i == 0 { 0.0 } else { NEG }).collect(),
            finished: vec![prompt.to_vec(); k],
            finished_scores: vec![NEG; k],
            is_finished: vec![false; k],
            improvable: true,
        })
        .collect();
    let mut cache = KvCache::default();
    let mut input = prompt_tensor(prompt, batch * k, &device);
    let mut cur_len = prompt_len;
    while cur_len < max_len {
        let cross = CrossInput {
            states: &states,
            mask: mask.clone(),
        };
        let logits = decoder.forward(input, None, Some(cross), Some(&mut cache));
        let [bk, l, v] = logits.dims();
        let logp = log_softmax(logits.narrow(1, l - 1, 1).reshape([bk, v]), 1);
        let logp = read_f32(logp.reshape([bk * v])).await?;

        let mut all_hit = true;
        let mut source_rows = Vec::with_capacity(batch * k);
        let mut next_tokens = Vec::with_capacity(batch * k);
        let norm = ((cur_len + 1 - prompt_len) as f32).powf(cfg.length_penalty);
        for (b, st) in beams.iter_mut().enumerate() {
            let mut acc = Vec::with_capacity(k * v);
            for beam in 0..k {
                let row = &logp[(b * k + beam) * v..(b * k + beam + 1) * v];
                acc.extend(row.iter().map(|lp| lp + st.running_scores[beam]));
            }
            let top = top_k(&acc, keep);
            let cand: Vec<(usize, i64, f32)> = top
                .iter()
                .map(|&i| (i / v, (i % v) as i64, acc[i]))
                .collect();
            let hits: Vec<bool> = cand
                .iter()
                .map(|&(_, t, _)| t == tokens.eos || cur_len + 1 >= max_len)
                .collect();
            all_hit &= hits.iter().all(|h| *h);

            // Next running beams: the best continuations that did not stop.
            let run_scores: Vec<f32> = cand
                .iter()
                .zip(&hits)
                .map(|(c, &h)| c.2 + if h { NEG } else { 0.0 })
                .collect();
            let next = top_k(&run_scores, k);
            let new_running: Vec<Vec<i64>> = next
                .iter()
                .map(|&j| {
                    let mut s = st.running[cand[j].0].clone();
                    s.push(cand[j].1);
                    s
                })
                .collect();

            // Finished hypotheses: the top-k candidates that stopped compete with the kept ones.
            let mut merged: Vec<(Vec<i64>, f32, bool)> = (0..k)
                .map(|i| {
                    (
                        st.finished[i].clone(),
                        st.finished_scores[i],
                        st.is_finished[i],
                    )
                })
                .collect();
            for (j, c) in cand.iter().enumerate() {
                let just_finished = hits[j] && j < k;
                let mut score = c.2 / norm;
                if !st.improvable {
                    score += NEG;
                }
                if !just_finished {
                    score += NEG;
                }
                let mut s = st.running[c.0].clone();
                s.push(c.1);
                merged.push((s, score, just_finished));
            }
            let merged_scores: Vec<f32> = merged.iter().map(|m| m.1).collect();
            let best = top_k(&merged_scores, k);
            st.finished = best.iter().map(|&i| merged[i].0.clone()).collect();
            st.finished_scores = best.iter().map(|&i| merged[i].1).collect();
            st.is_finished = best.iter().map(|&i| merged[i].2).collect();

            for &j in &next {
                source_rows.push((b * k + cand[j].0) as i64);
                next_tokens.push(cand[j].1);
            }
            st.running = new_running;
            st.running_scores = next.iter().map(|&j| run_scores[j]).collect();
        }
        cur_len += 1;
        // HF's heuristic (early_stopping = False): stop a row once its best running beam, at the
        // current length, cannot beat the worst finished one.
        let norm_now = ((cur_len - prompt_len) as f32).powf(cfg.length_penalty);
        for st in &mut beams {
            let best_running = st.running_scores[0] / norm_now;
            let worst = st
                .finished_scores
                .iter()
                .copied()
                .fold(f32::INFINITY, f32::min);
            let beats = st
                .is_finished
                .iter()
                .any(|&f| best_running > if f { worst } else { NEG });
            st.improvable &= beats;
        }
        if all_hit || !beams.iter().any(|st| st.improvable) {
            break;
        }
        cache.select_rows(Tensor::<1, Int>::from_ints(source_rows.as_slice(), &device));
        input =
            Tensor::<1, Int>::from_ints(next_tokens.as_slice(), &device).reshape([batch * k, 1]);
    }
    Ok(beams
        .into_iter()
        .map(|st| st.finished.into_iter().next().unwrap_or_default())
        .collect())
}
