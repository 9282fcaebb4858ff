//! The conformance corpus (tests/fixtures/make_conformance.py): model folders saved by
//! transformers / tokenizers the way users' folders are, with what transformers makes of
//! them. Every variant goes through `normtune infer` (the CLI's own path: folder, tokenizer,
//! processor, template, generation defaults) for its generated ids, and through the library
//! the CLI calls for the pieces: pixel values, prompt ids, first-step logits (within 1e-4).
//! Every mismatch of every variant is listed in one failure.

use normtune_core::burn::tensor::{Device, Int, Tensor};
use normtune_core::models::{Model, Pipeline};
use normtune_core::source::MemorySource;
use std::path::{Path, PathBuf};

mod common;
use common::normtune;

const LOGIT_TOL: f32 = 1e-4;
const PIXEL_TOL: f32 = 1e-6;

fn corpus() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/conformance")
}

fn folder(dir: &Path) -> MemorySource {
    let mut src = MemorySource::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        let name = p.file_name().unwrap().to_string_lossy().to_string();
        if p.is_file() && !name.starts_with("expected.") {
            src.insert(name, std::fs::read(&p).unwrap());
        }
    }
    src
}

struct Expected {
    tensors: Vec<(String, Vec<f32>)>,
}

impl Expected {
    fn read(dir: &Path) -> Self {
        let bytes = std::fs::read(dir.join("expected.safetensors")).unwrap_or_default();
        let mut tensors = Vec::new();
        if let Ok(st) = safetensors::SafeTensors::deserialize(&bytes) {
            for name in st.names() {
                let t = st.tensor(name).unwrap();
                let v: Vec<f32> = match t.dtype() {
                    safetensors::Dtype::F32 => t
                        .data()
                        .chunks_exact(4)
                        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
                        .collect(),
                    safetensors::Dtype::I64 => t
                        .data()
                        .chunks_exact(8)
                        .map(|c| i64::from_le_bytes(c.try_into().unwrap()) as f32)
                        .collect(),
                    d => panic!("{name}: {d:?}"),
                };
                tensors.push((name.to_string(), v));
            }
        }
        Self { tensors }
    }
    fn get(&self, k: usize, what: &str) -> &[f32] {
        let name = format!("{k}.{what}");
        &self
            .tensors
            .iter()
            .find(|(n, _)| *n == name)
            .unwrap_or_else(|| panic!("no expected tensor {name}"))
            .1
    }
    fn ids(&self, k: usize, what: &str) -> Vec<i64> {
        self.get(k, what).iter().map(|&v| v as i64).collect()
    }
}

fn values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data().iter::<f32>().collect()
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    if a.len() != b.len() {
        return f32::INFINITY;
    }
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// What normtune's library gives for one case: pixel values, prompt ids, first-step logits.
fn library_case(
    p: &Pipeline,
    image: &[u8],
    name: &str,
    q: Option<&str>,
) -> Result<(Vec<f32>, Option<Vec<i64>>, Vec<f32>), String> {
    let pixels = p.image_tensor(image, name).map_err(|e| e.to_string())?;
    let px = values(pixels.clone());
    let device = &p.device;
    let bos = || p.special_tokens().map(|t| t.bos).unwrap_or(0);
    let start = |id: i64| Tensor::<1, Int>::from_ints([id], device).reshape([1, 1]);
    let last = |t: Tensor<3>| {
        let [_, l, v] = t.dims();
        values(t.slice([0..1, l - 1..l, 0..v]))
    };
    Ok(match (&p.model, q) {
        (Model::Classifier(m), _) => (px, None, values(m.forward(pixels))),
        (Model::ClipClassifier(m), _) => (px, None, values(m.forward(pixels))),
        (Model::Vqa(m), Some(q)) => {
            let ids = p.question_ids(q).map_err(|e| e.to_string())?;
            let list: Vec<i64> = ids.clone().into_data().iter::<i64>().collect();
            let image = m.encode_image(pixels);
            let qs = m.encode_question(&image, ids, None);
            (
                px,
                Some(list),
                last(m.answer_logits(&qs, None, start(bos()), None)),
            )
        }
        (Model::Captioner(m), _) => {
            let image = m.encode_image(pixels);
            (px, None, last(m.text_logits(&image, start(bos()), None)))
        }
        (Model::Llava(m), Some(q)) => {
            let ids = p.llava_prompt(q).map_err(|e| e.to_string())?;
            let logits = m.forward(&ids, pixels).map_err(|e| e.to_string())?;
            (px, Some(ids), last(logits))
        }
        _ => return Err("no question for a question-answering model".into()),
    })
}

#[test]
fn every_corpus_variant_gives_transformers_ids_and_logits() {
    let device = Device::flex();
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(corpus())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("expected.json").is_file())
        .collect();
    dirs.sort();
    assert!(dirs.len() >= 30, "the corpus has {} variants", dirs.len());
    let images = corpus().join("images");
    let mut failures = Vec::new();
    let mut checked = 0;
    for dir in &dirs {
        let name = dir.file_name().unwrap().to_string_lossy().to_string();
        let meta: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.join("expected.json")).unwrap()).unwrap();
        let family = meta["variant"]["family"].as_str().unwrap().to_string();
        let model = dir.to_str().unwrap();
        if let Some(err) = meta["error"].as_str() {
            // transformers cannot serve this folder either: one clear line, from both paths.
            let image = images.join("square.png");
            let (ok, _, stderr) = normtune(&[
                "infer",
                "--device",
                "cpu",
                "--model",
                model,
                "--image",
                image.to_str().unwrap(),
            ]);
            let lines: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error")).collect();
            if ok || lines.len() != 1 || !lines[0].contains(err) {
                failures.push(format!(
                    "{name}: expected one error line naming `{err}`, got ok={ok}: {stderr}"
                ));
            }
            match pollster::block_on(Pipeline::load(&folder(dir), &device)) {
                Ok(_) => failures.push(format!("{name}: the library loaded it")),
                Err(e) if !e.to_string().contains(err) => failures.push(format!("{name}: {e}")),
                Err(_) => {}
            }
            checked += 1;
            continue;
        }
        let p = match pollster::block_on(Pipeline::load(&folder(dir), &device)) {
            Ok(p) => p,
            Err(e) => {
                failures.push(format!("{name}: load: {e}"));
                continue;
            }
        };
        let want = Expected::read(dir);
        for (k, case) in meta["cases"].as_array().unwrap().iter().enumerate() {
            let img_name = case["image"].as_str().unwrap();
            let img_path = images.join(img_name);
            let bytes = std::fs::read(&img_path).unwrap();
            let q = case["question"].as_str();
            let tag = format!(
                "{name} [{img_name}{}]",
                q.map(|q| format!(", {q:?}")).unwrap_or_default()
            );
            if let Some(levels) = meta["variant"]["known_jpeg_levels"].as_f64() {
                // A known gap (make_conformance.py says why): the decoded pixels are held to
                // `levels` grey levels, the rest is reported, not required.
                let (px, _, logits) = library_case(&p, &bytes, img_name, q).unwrap();
                let std = p
                    .preprocessor
                    .image_std
                    .iter()
                    .copied()
                    .fold(f32::INFINITY, f32::min);
                let bound = levels as f32 / 255.0 / std + PIXEL_TOL;
                let d = max_diff(&px, want.get(k, "pixel_values"));
                if d > bound {
                    failures.push(format!(
                        "{tag}: JPEG pixels differ by {d}, over {levels} levels ({bound})"
                    ));
                }
                println!(
                    "known gap, {tag}: pixels within {d:.4} ({levels} levels = {bound:.4}), logits within {:.2e}",
                    max_diff(&logits, want.get(k, "logits"))
                );
                continue;
            }
            match library_case(&p, &bytes, img_name, q) {
                Err(e) => failures.push(format!("{tag}: {e}")),
                Ok((px, ids, logits)) => {
                    let d = max_diff(&px, want.get(k, "pixel_values"));
                    if d > PIXEL_TOL {
                        failures.push(format!("{tag}: pixel values differ by up to {d}"));
                    }
                    if let Some(ids) = ids {
                        let expected = want.ids(k, "input_ids");
                        if ids != expected {
                            failures.push(format!("{tag}: prompt ids\n   normtune {ids:?}\n   transformers {expected:?}"));
                        }
                    }
                    let d = max_diff(&logits, want.get(k, "logits"));
                    if d > LOGIT_TOL {
                        failures.push(format!("{tag}: first-step logits differ by up to {d}"));
                    }
                }
            }
            // The CLI, end to end.
            let mut args = vec![
                "infer",
                "--device",
                "cpu",
                "--json",
                "--model",
                model,
                "--image",
                img_path.to_str().unwrap(),
            ];
            if let Some(q) = q {
                args.extend(["--question", q]);
            }
            // BLIP's transformers `generate` ignores generation_config.json: the reference was
            // made with these; LLaVA's generation settings come from the folder.
            if family.starts_with("blip") {
                args.extend(["--num-beams", "1", "--max-new-tokens", "8"]);
            }
            let (ok, out, err) = normtune(&args);
            if !ok {
                failures.push(format!("{tag}: normtune infer failed: {err}"));
                continue;
            }
            let got: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
            if matches!(family.as_str(), "vit" | "clip_cls") {
                let logits: Vec<f32> = got["labels"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|l| l["logit"].as_f64().unwrap() as f32)
                    .collect();
                let d = max_diff(&logits, want.get(k, "logits"));
                if d > LOGIT_TOL {
                    failures.push(format!("{tag}: infer's logits differ by up to {d}"));
                }
            } else {
                let ids: Vec<i64> = got["token_ids"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|v| v.as_i64().unwrap())
                    .collect();
                let expected = want.ids(k, "generated");
                if ids != expected {
                    failures.push(format!(
                        "{tag}: generated\n   normtune {ids:?}\n   transformers {expected:?}"
                    ));
                }
            }
            checked += 1;
        }
    }
    println!("{checked} cases of {} variants checked", dirs.len());
    assert!(
        failures.is_empty(),
        "{} mismatch(es):\n{}",
        failures.len(),
        failures.join("\n")
    );
}
