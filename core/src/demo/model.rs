//! The demo base model: a small BLIP-style VQA model (ViT + BERT encoder with cross-attention +
//! BERT decoder) that `normtune pretrain` trains from scratch on the benchmark's `source` domain.
//! This module holds its recipe (vocabulary, `config.json`, `preprocessor_config.json`) and the
//! committed result, so `normtune demo` and the browser app need no download.

use super::bench::{Domain, generate};
use crate::source::MemorySource;

/// Special tokens, in id order: BLIP's ids are read from the config, so they can be small.
pub const SPECIALS: [&str; 6] = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "[DEC]"];

/// BERT's basic pre-tokenisation for the benchmark's plain ASCII text: lower case, words and
/// single punctuation marks.
fn words(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    for c in text.chars() {
        if c.is_ascii_alphanumeric() {
            cur.push(c.to_ascii_lowercase());
        } else {
            if !cur.is_empty() {
                out.push(std::mem::take(&mut cur));
            }
            if c.is_ascii_punctuation() {
                out.push(c.to_string());
            }
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// The question that asks for the whole report: pre-training pairs every image with its report
/// this way (as a Med-VLP model is pre-trained on image-report pairs), so the VQA model learns
/// every finding from each image, and can write a report when asked.
pub const REPORT_QUESTION: &str = "what are the findings?";

/// The demo model's WordPiece vocabulary (`vocab.txt` lines): the special tokens, every word
/// of every domain's questions, answers and reports, then single characters and `##`
/// continuations, so any other word still tokenises (letter by letter) instead of becoming
/// `[UNK]`.
pub fn vocabulary() -> Vec<String> {
    let mut words_seen: std::collections::BTreeSet<String> =
        words(REPORT_QUESTION).into_iter().collect();
    for name in Domain::NAMES {
        let domain = Domain::target(name).expect("a known domain");
        for s in generate(&domain, 400, 0) {
            for q in &s.questions {
                words_seen.extend(words(&q.question));
                words_seen.extend(words(&q.answer));
            }
            words_seen.extend(words(&s.report));
        }
    }
    let chars: Vec<String> = ('a'..='z').chain('0'..='9').map(String::from).collect();
    let punct: Vec<String> = ".,?!'-:;/()%+&".chars().map(String::from).collect();
    let mut vocab: Vec<String> = SPECIALS.iter().map(|s| s.to_string()).collect();
    let push = |t: String, vocab: &mut Vec<String>| {
        if !vocab.contains(&t) {
            vocab.push(t);
        }
    };
    for t in punct.iter().chain(&chars).cloned().chain(words_seen) {
        push(t, &mut vocab);
    }
    for c in &chars {
        push(format!("##{c}"), &mut vocab);
    }
    vocab
}

/// Image side the demo model sees.
pub const IMAGE_SIZE: usize = 64;

/// The demo model's `config.json` (HF `BlipConfig`, `BlipForQuestionAnswering`): ViT 4 × 128
/// on 64 px images in 8 px patches, text encoder and decoder 3 × 128, 4 heads everywhere.
pub fn config_json(vocab_size: usize) -> serde_json::Value {
    serde_json::json!({
        "architectures": ["BlipForQuestionAnswering"],
        "model_type": "blip",
        "tie_word_embeddings": true,
        "vision_config": {
            "hidden_size": 128, "intermediate_size": 512, "num_hidden_layers": 4,
            "num_attention_heads": 4, "image_size": IMAGE_SIZE, "patch_size": 8,
            "hidden_act": "gelu", "layer_norm_eps": 1e-6, "attention_dropout": 0.0,
            "initializer_range": 0.02
        },
        "text_config": {
            "vocab_size": vocab_size, "hidden_size": 128, "encoder_hidden_size": 128,
            "intermediate_size": 512, "num_hidden_layers": 3, "num_attention_heads": 4,
            "max_position_embeddings": 64, "hidden_act": "gelu", "layer_norm_eps": 1e-12,
            "hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0,
            "initializer_range": 0.02, "bos_token_id": 5, "eos_token_id": 3,
            "pad_token_id": 0, "sep_token_id": 3, "is_decoder": true,
            "tie_word_embeddings": true
        }
    })
}

/// The demo model's `preprocessor_config.json`: grey radiographs as RGB, 64 × 64, scaled to
/// [-1, 1].
pub fn preprocessor_json() -> serde_json::Value {
    serde_json::json!({
        "image_processor_type": "BlipImageProcessor",
        "do_resize": true, "size": {"height": IMAGE_SIZE, "width": IMAGE_SIZE}, "resample": 3,
        "do_rescale": true, "rescale_factor": 1.0 / 255.0,
        "do_normalize": true, "image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5],
        "do_convert_rgb": true
    })
}

/// The recipe's files without weights: `config.json`, `vocab.txt`, `preprocessor_config.json`.
pub fn recipe_files() -> Vec<(String, Vec<u8>)> {
    let vocab = vocabulary();
    let pretty = |v: serde_json::Value| serde_json::to_vec_pretty(&v).expect("json");
    vec![
        ("config.json".into(), pretty(config_json(vocab.len()))),
        ("vocab.txt".into(), (vocab.join("\n") + "\n").into_bytes()),
        (
            "preprocessor_config.json".into(),
            pretty(preprocessor_json()),
        ),
    ]
}

/// The committed demo base model (made by `normtune pretrain`, see its `pretrain.json`), as
/// `(file name, bytes)`.
pub fn base_model_files() -> Vec<(&'static str, &'static [u8])> {
    vec![
        (
            "config.json",
            include_bytes!("../../assets/demo-base/config.json"),
        ),
        (
            "vocab.txt",
            include_bytes!("../../assets/demo-base/vocab.txt"),
        ),
        (
            "preprocessor_config.json",
            include_bytes!("../../assets/demo-base/preprocessor_config.json"),
        ),
        (
            "model.safetensors",
            include_bytes!("../../assets/demo-base/model.safetensors"),
        ),
        (
            "pretrain.json",
            include_bytes!("../../assets/demo-base/pretrain.json"),
        ),
    ]
}

/// The committed demo base model as a file source `Pipeline::load` reads.
pub fn base_model() -> MemorySource {
    let mut src = MemorySource::new();
    for (name, bytes) in base_model_files() {
        src.insert(name, bytes.to_vec());
    }
    src
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_benchmark_word_is_one_token_and_other_words_still_tokenise() {
        let vocab = vocabulary();
        let tok = crate::tokenizer::TextTokenizer::from_vocab_txt(
            vocab.join("\n").as_bytes(),
            "vocab.txt",
        )
        .unwrap();
        let s = &generate(&Domain::source(), 1, 0)[0];
        let ids = tok.encode(&s.questions[0].question, 64).unwrap();
        assert!(!ids.contains(&1), "{ids:?}");
        assert_eq!(ids.len(), words(&s.questions[0].question).len() + 2);
        let ids = tok.encode("is there atelectasis?", 64).unwrap();
        assert!(!ids.contains(&1), "{ids:?}");
        assert_eq!(
            tok.decode(&ids).unwrap().replace(' ', ""),
            "isthereatelectasis?"
        );
        // Deterministic: the committed vocab.txt is this one.
        assert_eq!(vocab, vocabulary());
    }
}
