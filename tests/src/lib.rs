//! Helpers for the integration tests: fixture paths, reading reference tensors written by
//! `fixtures/make_fixtures.py`, and comparing with a stated tolerance.

use normtune_core::burn::tensor::{Device, Int, Tensor, TensorData};
use normtune_core::source::MemorySource;
use std::path::PathBuf;

/// `tests/fixtures/<rel>`.
pub fn fixture(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(rel)
}

/// Every file of a fixture folder, in memory (the core reads bytes, not paths).
pub fn folder(rel: &str) -> MemorySource {
    let mut src = MemorySource::new();
    for entry in std::fs::read_dir(fixture(rel)).expect("fixture folder") {
        let entry = entry.expect("entry");
        if entry.path().is_file() {
            let name = entry.file_name().to_string_lossy().to_string();
            src.insert(name, std::fs::read(entry.path()).expect("read fixture"));
        }
    }
    src
}

/// The parsed `reference.json` of a fixture folder.
pub fn reference_json(rel: &str) -> serde_json::Value {
    let bytes = std::fs::read(fixture(rel).join("reference.json")).expect("reference.json");
    serde_json::from_slice(&bytes).expect("reference.json parses")
}

/// A reference tensor: shape and values as f32 (int tensors are converted).
pub struct RefTensor {
    /// Shape.
    pub shape: Vec<usize>,
    /// Values.
    pub values: Vec<f32>,
}

/// Reads tensor `name` from `<rel>/reference.safetensors`.
pub fn reference(rel: &str, name: &str) -> RefTensor {
    let bytes =
        std::fs::read(fixture(rel).join("reference.safetensors")).expect("reference.safetensors");
    let st = safetensors::SafeTensors::deserialize(&bytes).expect("safetensors");
    let t = st
        .tensor(name)
        .unwrap_or_else(|_| panic!("{rel}: no reference tensor {name}"));
    let data = t.data();
    let values = match t.dtype() {
        safetensors::Dtype::F32 => data
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
            .collect(),
        safetensors::Dtype::I64 => data
            .chunks_exact(8)
            .map(|c| i64::from_le_bytes(c.try_into().unwrap()) as f32)
            .collect(),
        other => panic!("{rel}/{name}: unexpected dtype {other:?}"),
    };
    RefTensor {
        shape: t.shape().to_vec(),
        values,
    }
}

impl RefTensor {
    /// As a float tensor of rank `D`.
    pub fn float<const D: usize>(&self, device: &Device) -> Tensor<D> {
        Tensor::from_data(
            TensorData::new(self.values.clone(), self.shape.clone()),
            device,
        )
    }
    /// As an int tensor of rank `D`.
    pub fn int<const D: usize>(&self, device: &Device) -> Tensor<D, Int> {
        let v: Vec<i64> = self.values.iter().map(|&x| x as i64).collect();
        Tensor::<1, Int>::from_ints(v.as_slice(), device).reshape(
            self.shape
                .clone()
                .try_into()
                .map(|a: [usize; D]| a)
                .expect("rank"),
        )
    }
}

/// Host values of a tensor.
pub fn values<const D: usize>(t: Tensor<D>) -> (Vec<usize>, Vec<f32>) {
    let shape = t.dims().to_vec();
    let data = pollster::block_on(t.into_data_async()).expect("readback");
    (shape, data.iter::<f32>().collect())
}

/// The largest absolute difference divided by the reference's largest magnitude.
pub fn max_rel_err(actual: &[f32], expected: &[f32]) -> f32 {
    assert_eq!(actual.len(), expected.len(), "length");
    let scale = expected.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-6);
    let diff = actual
        .iter()
        .zip(expected)
        .fold(0f32, |m, (a, e)| m.max((a - e).abs()));
    diff / scale
}

/// Asserts shape equality and `max_rel_err <= tol`, printing the error achieved.
pub fn assert_close<const D: usize>(what: &str, actual: Tensor<D>, expected: &RefTensor, tol: f32) {
    let (shape, vals) = values(actual);
    assert_eq!(shape, expected.shape, "{what}: shape");
    let err = max_rel_err(&vals, &expected.values);
    println!("{what}: max relative error {err:.2e} (tolerance {tol:.0e})");
    assert!(
        err <= tol,
        "{what}: max relative error {err:.3e} > {tol:.0e}"
    );
}

/// Id lists from a JSON array of arrays.
pub fn id_lists(v: &serde_json::Value) -> Vec<Vec<i64>> {
    v.as_array()
        .expect("array")
        .iter()
        .map(|r| {
            r.as_array()
                .expect("array")
                .iter()
                .map(|x| x.as_i64().expect("int"))
                .collect()
        })
        .collect()
}

/// The blip_vqa fixture's teacher-forced decoder logits as HF computes them: its images and
/// (padded) questions through the vision model and question encoder, then the decoder over its
/// answers (transformers 5.23 applies no mask over the question states there).
pub fn vqa_decoder_logits(
    m: &normtune_core::models::blip::BlipForQuestionAnswering,
    device: &Device,
) -> Tensor<3> {
    let image = m.encode_image(reference("blip_vqa", "pixel_values").float::<4>(device));
    let q = m.encode_question(
        &image,
        reference("blip_vqa", "input_ids").int::<2>(device),
        Some(reference("blip_vqa", "attention_mask").float::<2>(device)),
    );
    m.answer_logits(
        &q,
        None,
        reference("blip_vqa", "decoder_input_ids").int::<2>(device),
        Some(reference("blip_vqa", "decoder_attention_mask").float::<2>(device)),
    )
}

/// The real SmolLM2-135M-Instruct GGUF (`.assets/smollm2/`, from `fixtures/fetch_assets.sh`),
/// parsed, with transformers' reference for it (`fixtures/gguf/smollm2_reference.json`, made by
/// `make_smollm2_reference.py`) and the file's path as text.
pub fn smollm2() -> (serde_json::Value, normtune_core::gguf::Gguf, String) {
    let r: serde_json::Value =
        serde_json::from_slice(&std::fs::read(fixture("gguf/smollm2_reference.json")).unwrap())
            .unwrap();
    let path = fixture("../../.assets/smollm2").join(r["file"].as_str().unwrap());
    let bytes = std::fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; run tests/fixtures/fetch_assets.sh",
            path.display()
        )
    });
    let file = path.display().to_string();
    let g = normtune_core::gguf::Gguf::parse(bytes, &file).unwrap();
    (r, g, file)
}
