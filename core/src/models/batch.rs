//! A training batch: what a [`super::Processor`] makes of examples and images, already on the
//! model's device, for any family (VQA, report, classification, LLaVA chat).

use crate::error::{Error, Result};
use burn::tensor::{Device, Int, Tensor};

/// One training batch, already on the trainer's device.
#[derive(Debug, Clone)]
pub enum Batch {
    /// Med-VQA: images, questions, answers (answers start with the decoder start token).
    Vqa {
        /// `[batch, 3, h, w]`.
        pixels: Tensor<4>,
        /// `[batch, q_len]`.
        question_ids: Tensor<2, Int>,
        /// `[batch, q_len]`, 0/1.
        question_mask: Tensor<2>,
        /// `[batch, a_len]`.
        answer_ids: Tensor<2, Int>,
        /// `[batch, a_len]`, 0/1.
        answer_mask: Tensor<2>,
    },
    /// Report generation: images and reports (starting with the decoder start token).
    Report {
        /// `[batch, 3, h, w]`.
        pixels: Tensor<4>,
        /// `[batch, len]`.
        ids: Tensor<2, Int>,
        /// `[batch, len]`, 0/1.
        mask: Tensor<2>,
    },
    /// Multi-label classification.
    Classify {
        /// `[batch, channels, h, w]`.
        pixels: Tensor<4>,
        /// `[batch, labels]`, 0/1.
        targets: Tensor<2>,
    },
    /// A LLaVA-style chat: each row a prompt (with its image tokens) then the answer and the
    /// end-of-sequence token; rows may differ in length.
    Chat {
        /// `[batch, 3, h, w]`.
        pixels: Tensor<4>,
        /// Token ids per row.
        ids: Vec<Vec<i64>>,
        /// Per row, the spans of tokens learned (each answer and the end-of-sequence token after
        /// it; one span per turn of a conversation), in order; the rest (image, prompts) is not.
        learned: Vec<Vec<std::ops::Range<usize>>>,
    },
}

impl Batch {
    /// The batch's images, `[batch, 3, h, w]`.
    pub fn pixels(&self) -> &Tensor<4> {
        match self {
            Batch::Vqa { pixels, .. }
            | Batch::Report { pixels, .. }
            | Batch::Classify { pixels, .. }
            | Batch::Chat { pixels, .. } => pixels,
        }
    }

    /// The device the batch is on.
    pub fn device(&self) -> Device {
        self.pixels().device()
    }

    /// `n` shards of consecutive rows (sizes differing by at most one; fewer when the batch has
    /// fewer rows), each with what its loss averages over: answer or report tokens past the
    /// first (as the LM loss counts them), learned chat tokens, or label entries.
    pub async fn shards(&self, n: usize) -> Result<Vec<(Batch, f64)>> {
        let rows = self.pixels().dims()[0];
        let n = n.clamp(1, rows.max(1));
        let mut out = Vec::with_capacity(n);
        let mut start = 0;
        for k in 0..n {
            let len = rows / n + usize::from(k < rows % n);
            let r = start..start + len;
            start += len;
            let rows4 = |t: &Tensor<4>| {
                let d = t.dims();
                t.clone().slice([r.clone(), 0..d[1], 0..d[2], 0..d[3]])
            };
            let rows2 = |t: &Tensor<2>| {
                let d = t.dims();
                t.clone().slice([r.clone(), 0..d[1]])
            };
            let rows2i = |t: &Tensor<2, Int>| {
                let d = t.dims();
                t.clone().slice([r.clone(), 0..d[1]])
            };
            // Tokens the LM loss averages over: the mask past the first position.
            let counted = |m: Tensor<2>| async move {
                let l = m.dims()[1];
                if l < 2 {
                    return Ok(0.0);
                }
                let s = m.narrow(1, 1, l - 1).sum();
                s.into_data_async()
                    .await
                    .map_err(Error::device)
                    .map(|d| d.iter::<f32>().next().unwrap_or(0.0) as f64)
            };
            out.push(match self {
                Batch::Vqa {
                    pixels,
                    question_ids,
                    question_mask,
                    answer_ids,
                    answer_mask,
                } => {
                    let am = rows2(answer_mask);
                    let w = counted(am.clone()).await?;
                    (
                        Batch::Vqa {
                            pixels: rows4(pixels),
                            question_ids: rows2i(question_ids),
                            question_mask: rows2(question_mask),
                            answer_ids: rows2i(answer_ids),
                            answer_mask: am,
                        },
                        w,
                    )
                }
                Batch::Report { pixels, ids, mask } => {
                    let m = rows2(mask);
                    let w = counted(m.clone()).await?;
                    (
                        Batch::Report {
                            pixels: rows4(pixels),
                            ids: rows2i(ids),
                            mask: m,
                        },
                        w,
                    )
                }
                Batch::Classify { pixels, targets } => {
                    let t = rows2(targets);
                    let w = t.dims().iter().product::<usize>() as f64;
                    (
                        Batch::Classify {
                            pixels: rows4(pixels),
                            targets: t,
                        },
                        w,
                    )
                }
                Batch::Chat {
                    pixels,
                    ids,
                    learned,
                } => {
                    let w = learned[r.clone()]
                        .iter()
                        .flatten()
                        .map(|s| s.len())
                        .sum::<usize>() as f64;
                    (
                        Batch::Chat {
                            pixels: rows4(pixels),
                            ids: ids[r.clone()].to_vec(),
                            learned: learned[r.clone()].to_vec(),
                        },
                        w,
                    )
                }
            });
        }
        Ok(out)
    }

    /// The batch on `device`.
    pub fn to_device(self, device: &Device) -> Batch {
        match self {
            Batch::Vqa {
                pixels,
                question_ids,
                question_mask,
                answer_ids,
                answer_mask,
            } => Batch::Vqa {
                pixels: pixels.to_device(device),
                question_ids: question_ids.to_device(device),
                question_mask: question_mask.to_device(device),
                answer_ids: answer_ids.to_device(device),
                answer_mask: answer_mask.to_device(device),
            },
            Batch::Report { pixels, ids, mask } => Batch::Report {
                pixels: pixels.to_device(device),
                ids: ids.to_device(device),
                mask: mask.to_device(device),
            },
            Batch::Classify { pixels, targets } => Batch::Classify {
                pixels: pixels.to_device(device),
                targets: targets.to_device(device),
            },
            Batch::Chat {
                pixels,
                ids,
                learned,
            } => Batch::Chat {
                pixels: pixels.to_device(device),
                ids,
                learned,
            },
        }
    }
}
