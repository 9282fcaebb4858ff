//! Synthetic inputs for timing a training step: the shapes of a real batch, values that need no
//! data set. `normtune bench` and the web app's "Time a step" both use them, so a step timed in
//! the browser and one timed natively run the same computation.

use super::trainer::Batch;
use crate::error::{Error, Result};
use crate::models::blip::BlipConfig;
use burn::tensor::{Device, Distribution, Int, Tensor};

/// The ids synthetic inputs draw from, `lo..lo + span`: the vocabulary's ordinary range as the
/// PyTorch reference (`native/bench/reference/`) takes it, `1000..vocab - 10`, or the middle half
/// of a small vocabulary (a user's model may have a few hundred tokens: the demo model has 147).
pub fn ordinary_ids(vocab: i64) -> (i64, i64) {
    if vocab >= 2020 {
        (1000, vocab - 1010)
    } else {
        (vocab / 4, (vocab / 2).max(1))
    }
}

/// `rows` rows of `len` ids drawn from [`ordinary_ids`] by a 64-bit LCG seeded with `seed`, each
/// row opening with `first`.
pub fn id_rows(
    vocab: i64,
    rows: usize,
    len: usize,
    first: i64,
    seed: u64,
    device: &Device,
) -> Tensor<2, Int> {
    let (lo, span) = ordinary_ids(vocab);
    let step = |x: u64| {
        x.wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407)
    };
    let mut x = step(seed);
    let mut v = Vec::with_capacity(rows * len);
    for i in 0..rows * len {
        x = step(x);
        let tok = lo + ((x >> 33) as i64) % span;
        v.push(if i % len == 0 { first } else { tok });
    }
    Tensor::<1, Int>::from_ints(v.as_slice(), device).reshape([rows, len])
}

/// A BLIP VQA batch of `batch` examples: pixels ~ N(0, 1) (what normalisation produces; drawn
/// from the device's generator, so seed it first), questions of `question_len` ids opening with
/// BERT's `[CLS]` (id 101, or 0 in a vocabulary too small to have it), answers of `answer_len`
/// ids opening with the decoder's BOS, no padding.
pub fn vqa_batch(
    cfg: &BlipConfig,
    batch: usize,
    question_len: usize,
    answer_len: usize,
    seed: u64,
    device: &Device,
) -> Result<Batch> {
    let vocab = cfg.text_config.vocab_size as i64;
    let cls = if vocab > 101 { 101 } else { 0 };
    let bos = cfg.text_config.bos_token_id.ok_or_else(|| Error::Config {
        file: "config.json".into(),
        field: "text_config.bos_token_id".into(),
        reason: "missing (a VQA answer opens with it)".into(),
    })?;
    if batch == 0 || question_len == 0 || answer_len == 0 {
        return Err(Error::Input(
            "a synthetic batch needs at least one example and one question and answer token".into(),
        ));
    }
    let side = cfg.vision_config.image_size;
    Ok(Batch::Vqa {
        pixels: Tensor::<4>::random(
            [batch, 3, side, side],
            Distribution::Normal(0.0, 1.0),
            device,
        ),
        question_ids: id_rows(vocab, batch, question_len, cls, seed, device),
        question_mask: Tensor::<2>::ones([batch, question_len], device),
        answer_ids: id_rows(vocab, batch, answer_len, bos, seed, device),
        answer_mask: Tensor::<2>::ones([batch, answer_len], device),
    })
}
