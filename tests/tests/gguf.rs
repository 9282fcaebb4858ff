//! The GGUF reader against gguf-py, llama.cpp's reference reader and dequantiser
//! (`tests/fixtures/make_gguf_fixtures.py`): a small file with every metadata type and F32, F16,
//! BF16, Q8_0, Q4_0 and Q4_1 tensors, value for value; K-quants and Q5_0/Q5_1 on random blocks; and the real SmolLM2-135M-Instruct Q4_1
//! file (`.assets/smollm2/`, from `tests/fixtures/fetch_assets.sh`), tensor for tensor.

use normtune_core::gguf::{Gguf, Value};
use serde_json::Value as Json;
use std::path::PathBuf;

fn fixture(p: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(p)
}

fn json(p: &str) -> Json {
    serde_json::from_slice(&std::fs::read(fixture(p)).unwrap()).unwrap()
}

fn open(path: PathBuf) -> Gguf {
    let bytes = std::fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; run tests/fixtures/fetch_assets.sh (tests/run.sh does)",
            path.display()
        )
    });
    Gguf::parse(bytes, &path.display().to_string()).unwrap()
}

/// Whether a metadata value equals gguf-py's (JSON numbers are f64; an f32 is compared as f32).
fn same(v: &Value, j: &Json) -> bool {
    match (v, j) {
        (Value::U64(a), _) => j.as_u64() == Some(*a),
        (Value::I64(a), _) => j.as_i64() == Some(*a),
        (Value::F32(a), _) => j.as_f64().map(|x| x as f32) == Some(*a),
        (Value::F64(a), _) => j.as_f64() == Some(*a),
        (Value::Bool(a), Json::Bool(b)) => a == b,
        (Value::Str(a), Json::String(b)) => a == b,
        (Value::Array(a), Json::Array(b)) => {
            a.len() == b.len() && a.iter().zip(b).all(|(x, y)| same(x, y))
        }
        _ => false,
    }
}

fn shape(j: &Json) -> Vec<usize> {
    j.as_array()
        .unwrap()
        .iter()
        .map(|d| d.as_u64().unwrap() as usize)
        .collect()
}

#[test]
fn a_small_file_reads_as_gguf_py_reads_it() {
    let r = json("gguf/tiny.json");
    let g = open(fixture("gguf/tiny.gguf"));
    assert_eq!(g.version as u64, r["version"].as_u64().unwrap());
    let meta = r["metadata"].as_object().unwrap();
    assert_eq!(g.metadata.len(), meta.len(), "{:?}", g.metadata.keys());
    for (k, want) in meta {
        let got = g.get(k).unwrap_or_else(|| panic!("no metadata `{k}`"));
        assert!(same(got, want), "`{k}`: {got:?} vs gguf-py {want}");
    }
    values_match(&g, &r);
}

/// Every tensor of `g` has the type, shape and values (bit for bit) the fixture lists.
fn values_match(g: &Gguf, r: &Json) {
    let tensors = r["tensors"].as_object().unwrap();
    assert_eq!(g.tensors.len(), tensors.len());
    for (name, want) in tensors {
        let t = g.tensor(name).unwrap();
        assert_eq!(t.kind.name(), want["type"].as_str().unwrap(), "{name}");
        let (s, v) = g.dequantize(name).unwrap();
        assert_eq!(s, shape(&want["shape"]), "{name}");
        let want: Vec<f32> = want["values"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap() as f32)
            .collect();
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(
            bits(&v),
            bits(&want),
            "{name}: dequantised values differ from gguf-py's"
        );
    }
}

/// The K-quants (what `Q4_K_M`, `Q5_K_M`, `Q6_K` files hold) and Q5_0/Q5_1, on random blocks, so
/// every bit of every field is exercised: bit for bit gguf-py's dequantiser (Q8_K: ggml's).
#[test]
fn k_quants_dequantise_as_gguf_py_does() {
    let r = json("gguf/kquants.json");
    let g = open(fixture("gguf/kquants.gguf"));
    values_match(&g, &r);
    let kinds: Vec<String> = g.tensors.iter().map(|t| t.kind.name()).collect();
    assert_eq!(
        kinds,
        [
            "Q5_0", "Q5_1", "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K", "Q8_K"
        ]
    );
}

#[test]
fn the_real_smollm2_file_dequantises_as_gguf_py_does() {
    let r = json("gguf/smollm2.json");
    let path = fixture("../../.assets/smollm2").join(r["file"].as_str().unwrap());
    let g = open(path);
    for (k, want) in r["metadata"].as_object().unwrap() {
        if let Some(base) = k.strip_suffix(".len") {
            let Some(Value::Array(a)) = g.get(base) else {
                panic!("`{base}` is not an array")
            };
            assert_eq!(a.len() as u64, want.as_u64().unwrap(), "{k}");
        } else if let Some(base) = k.strip_suffix("[:8]").or(k.strip_suffix("[:4]")) {
            let Some(Value::Array(a)) = g.get(base) else {
                panic!("`{base}` is not an array")
            };
            let want = want.as_array().unwrap();
            assert!(same(
                &Value::Array(a[..want.len()].to_vec()),
                &Json::Array(want.clone())
            ));
        } else {
            let got = g.get(k).unwrap_or_else(|| panic!("no metadata `{k}`"));
            assert!(same(got, want), "`{k}`: {got:?} vs gguf-py {want}");
        }
    }
    let tensors = r["tensors"].as_object().unwrap();
    assert_eq!(g.tensors.len(), tensors.len());
    let mut kinds = std::collections::BTreeMap::<String, usize>::new();
    for (name, want) in tensors {
        let t = g
            .tensor(name)
            .unwrap_or_else(|| panic!("no tensor `{name}`"));
        assert_eq!(t.kind.name(), want["type"].as_str().unwrap(), "{name}");
        *kinds.entry(t.kind.name()).or_default() += 1;
        let (s, v) = g.dequantize(name).unwrap();
        assert_eq!(s, shape(&want["shape"]), "{name}");
        let first: Vec<f32> = want["first"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap() as f32)
            .collect();
        assert_eq!(v[..first.len()], first[..], "{name}: first values");
        // Sums over up to 28M values, in another order than numpy's: equal to ~1e-9 relative.
        let sum: f64 = v.iter().map(|&x| x as f64).sum();
        let sum_sq: f64 = v.iter().map(|&x| (x as f64) * (x as f64)).sum();
        let (ws, wq) = (
            want["sum"].as_f64().unwrap(),
            want["sum_sq"].as_f64().unwrap(),
        );
        assert!(
            (sum - ws).abs() <= 1e-9 * wq.max(1.0),
            "{name}: sum {sum} vs {ws}"
        );
        assert!(
            (sum_sq - wq).abs() <= 1e-9 * wq,
            "{name}: sum of squares {sum_sq} vs {wq}"
        );
    }
    eprintln!(
        "SmolLM2: {} tensors ({kinds:?}) match gguf-py",
        g.tensors.len()
    );
}

/// A SentencePiece vocabulary (`tokenizer.ggml.model` = `llama`, as LLaMA-2, Mistral and
/// LLaVA-Med files hold) trained by `sentencepiece` and written as llama.cpp's converter writes
/// one: ids with and without special tokens, and decoded text, equal transformers' own GGUF
/// tokenizer conversion on spaces at the start, newlines, tabs, digits, accents, CJK, emoji
/// (byte fallback), a user-defined `<image>` and control `[INST]` tokens.
#[test]
fn a_sentencepiece_vocabulary_tokenizes_as_transformers_converts_it() {
    let r = json("gguf/sp.json");
    let file = fixture("gguf/sp.gguf");
    let g = open(file.clone());
    let tok = normtune_core::tokenizer::TextTokenizer::from_gguf(&g, &file.display().to_string())
        .unwrap();
    assert_eq!(tok.vocab_size() as u64, r["vocab_size"].as_u64().unwrap());
    let ids = |j: &Json| -> Vec<i64> {
        j.as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_i64().unwrap())
            .collect()
    };
    let mut differs_from_sentencepiece = 0;
    for case in r["texts"].as_array().unwrap() {
        let text = case["text"].as_str().unwrap();
        let want = ids(&case["ids"]);
        assert_eq!(tok.encode_with(text, true).unwrap(), want, "{text:?}");
        let plain = ids(&case["ids_plain"]);
        assert_eq!(
            tok.encode_with(text, false).unwrap(),
            plain,
            "{text:?} (plain)"
        );
        assert_eq!(
            tok.decode(&want).unwrap(),
            case["decoded"].as_str().unwrap(),
            "{text:?} decoded"
        );
        differs_from_sentencepiece += (plain != ids(&case["sentencepiece_ids"])) as usize;
    }
    // transformers' conversion is the reference; it departs from sentencepiece itself on
    // leading spaces and added tokens (recorded so a change in either shows here).
    assert_eq!(differs_from_sentencepiece, 5);
}
