//! One entry point per reader of untrusted bytes, shared by the coverage-guided fuzzers
//! (`tests/fuzz`, `cargo fuzz`) and the corpus replay test (`tests/tests/fuzz_corpus.rs`), so CI
//! re-checks every input the fuzzers kept on the stable toolchain.
//!
//! Each target must return (an error is fine) for any input: no panic, no hang, no allocation
//! beyond what the input's own size justifies. The `Result` lets the replay test also require
//! that the real files the corpora were seeded with are still *accepted*: a reader that refuses
//! everything would never crash either.

use crate::data::{Format, Preprocessor, decode_dicom, decode_image, read_examples, task_of};
use crate::error::{Error, Result};
use crate::models::{Model, ModelConfig, load, load_model};
use crate::peft::PeftConfig;
use crate::source::MemorySource;
use crate::tokenizer::TextTokenizer;
use std::future::Future;
use std::task::{Context, Poll, Waker};

/// Every target's name (a folder under `tests/fuzz/corpus/`).
pub const TARGETS: &[&str] = &[
    "config",
    "safetensors",
    "adapter",
    "tokenizer",
    "dataset",
    "dicom",
    "image",
    "zip",
    "gguf",
];

/// The context some targets load onto: a model config (for `safetensors`) and a loaded model
/// (for `adapter`).
pub struct Base {
    /// The config `safetensors` inputs are loaded against.
    pub config: ModelConfig,
    /// The model `adapter` inputs are loaded onto.
    pub model: Model,
}

impl Base {
    /// A BLIP model (`config.json` + `model.safetensors`, the adapters' base) and the config of
    /// the model `safetensors` inputs are loaded against.
    pub fn from_files(
        blip_config: &[u8],
        blip_weights: &[u8],
        weights_config: &[u8],
    ) -> Result<Self> {
        let blip = ModelConfig::from_json(blip_config, "base/config.json")?;
        let model = load_model(
            &blip,
            blip_weights.to_vec(),
            "base/model.safetensors",
            &crate::device::cpu().device,
        )?;
        let config = ModelConfig::from_json(weights_config, "weights/config.json")?;
        Ok(Self { config, model })
    }
}

/// Runs `target` on `bytes`.
pub fn run(target: &str, bytes: &[u8], base: &Base) -> Result<()> {
    match target {
        "config" => config(bytes),
        "safetensors" => weights(bytes, &base.config),
        "adapter" => adapter(bytes, &base.model),
        "tokenizer" => tokenizer(bytes),
        "dataset" => dataset(bytes),
        "dicom" => dicom(bytes),
        "image" => image(bytes),
        "zip" => zip(bytes),
        "gguf" => gguf(bytes),
        other => Err(Error::Input(format!("unknown fuzz target `{other}`"))),
    }
}

/// A zip of files (the browser app's dataset or adapter zip), unpacked under a 256 MiB limit
/// (the app's is [`MAX_UNZIPPED`](crate::source::MAX_UNZIPPED); a smaller one keeps the fuzzer
/// under its memory limit).
pub fn zip(bytes: &[u8]) -> Result<()> {
    crate::source::unzip("input.zip", bytes.to_vec(), 256 << 20).map(|_| ())
}

/// A GGUF file: header, metadata, tensor directory, and every tensor of a known type dequantised.
pub fn gguf(bytes: &[u8]) -> Result<()> {
    let g = crate::gguf::Gguf::parse(bytes.to_vec(), "model.gguf")?;
    for t in &g.tensors {
        if !matches!(t.kind, crate::gguf::GgmlType::Other(_)) {
            g.values(t)?;
        }
    }
    Ok(())
}

/// The first byte picks the reader, the rest is its file.
fn split_first(bytes: &[u8]) -> (u8, &[u8]) {
    match bytes.split_first() {
        Some((k, rest)) => (*k, rest),
        None => (0, &[]),
    }
}

/// `config.json` (model), a PEFT config, `preprocessor_config.json`.
pub fn config(bytes: &[u8]) -> Result<()> {
    let (kind, file) = split_first(bytes);
    match kind % 3 {
        0 => ModelConfig::from_json(file, "config.json").map(|_| ()),
        1 => PeftConfig::from_json(file, "peft.json").map(|_| ()),
        _ => {
            let p = Preprocessor::from_json(
                file,
                "preprocessor_config.json",
                crate::data::ProcessorKind::Clip,
                8,
            )?;
            let img = image::DynamicImage::new_rgb8(3, 5);
            let _ = p.pixels(&img);
            Ok(())
        }
    }
}

/// `model.safetensors`: the header, the NaN scan and a checked load against `config`.
pub fn weights(bytes: &[u8], config: &ModelConfig) -> Result<()> {
    load::tensor_names(bytes, "model.safetensors")?;
    load::check_finite(bytes, "model.safetensors")?;
    load_model(
        config,
        bytes.to_vec(),
        "model.safetensors",
        &crate::device::cpu().device,
    )?;
    Ok(())
}

/// An adapter folder: `adapter_config.json`, a NUL byte, `adapter_model.safetensors` (JSON holds
/// no NUL, so the first one splits the two files).
pub fn adapter(bytes: &[u8], model: &Model) -> Result<()> {
    let (cfg, weights) = match bytes.iter().position(|&b| b == 0) {
        Some(i) => (&bytes[..i], &bytes[i + 1..]),
        None => (bytes, &[][..]),
    };
    let mut src = MemorySource::new();
    src.insert("adapter_config.json", cfg.to_vec());
    src.insert("adapter_model.safetensors", weights.to_vec());
    block_on(crate::peft::io::load_adapter(model.clone(), &src))?;
    Ok(())
}

/// A `tokenizer.json` (first byte even) or a BERT `vocab.txt` (odd), then a round trip.
pub fn tokenizer(bytes: &[u8]) -> Result<()> {
    let (kind, file) = split_first(bytes);
    let tok = if kind % 2 == 0 {
        TextTokenizer::from_json(file, "tokenizer.json")?
    } else {
        TextTokenizer::from_vocab_txt(file, "vocab.txt")?
    };
    let ids = tok.encode("Is there a 2 cm nodule in the left lung?", 32)?;
    tok.decode(&ids)?;
    Ok(())
}

/// A dataset file; the first byte picks the format.
pub fn dataset(bytes: &[u8]) -> Result<()> {
    const FORMATS: [Format; 8] = [
        Format::VqaRad,
        Format::Slake,
        Format::PathVqa,
        Format::IuXray,
        Format::NihCsv,
        Format::LabelList,
        Format::LabelsCsv,
        Format::Jsonl,
    ];
    let (kind, file) = split_first(bytes);
    let format = FORMATS[kind as usize % FORMATS.len()];
    let examples = read_examples(file, "data", format, "train")?;
    task_of(&examples, "data")?;
    Ok(())
}

/// A DICOM file, decoded to an 8-bit image.
pub fn dicom(bytes: &[u8]) -> Result<()> {
    decode_dicom(bytes, "image.dcm", None).map(|_| ())
}

/// An image file (any format `image` decodes, or DICOM), then resized as a model's input.
pub fn image(bytes: &[u8]) -> Result<()> {
    let img = decode_image(bytes, "image")?;
    let _ = Preprocessor::square(8, [0.5; 3], [0.5; 3]).pixels(&img);
    Ok(())
}

/// Polls `fut` to completion. Loading from a [`MemorySource`] onto the CPU never waits, so this
/// needs no executor.
fn block_on<F: Future>(fut: F) -> F::Output {
    let mut fut = std::pin::pin!(fut);
    let mut cx = Context::from_waker(Waker::noop());
    loop {
        if let Poll::Ready(out) = fut.as_mut().poll(&mut cx) {
            return out;
        }
    }
}
