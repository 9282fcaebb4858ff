//! Loading HF safetensors into a module with every key checked (nanoGPT `from_pretrained`):
//! every parameter filled, every tensor of the file used, every shape equal, or one error that
//! lists the missing, unused and mis-shaped names.

use crate::error::{Error, Result};
use burn::module::Module;
use burn::store::{
    FloatCastAdapter, ModuleAdapter, ModuleSnapshot, PyTorchToBurnAdapter, SafetensorsStore,
};
use burn::tensor::DType;

/// The tensor names and shapes in a safetensors file, without copying the data.
pub fn tensor_names(bytes: &[u8], file: &str) -> Result<Vec<(String, Vec<usize>)>> {
    let (_, meta) = safetensors::SafeTensors::read_metadata(bytes).map_err(|e| Error::Weights {
        file: file.to_string(),
        reason: format!("not a safetensors file: {e}"),
    })?;
    let mut names: Vec<_> = meta
        .tensors()
        .into_iter()
        .map(|(k, info)| (k, info.shape.clone()))
        .collect();
    names.sort();
    Ok(names)
}

/// Refuses a checkpoint holding NaN or infinite values (a diverged run saved, a corrupted copy):
/// they would only show up later as NaN outputs. Names the first such tensor and the count.
pub fn check_finite(bytes: &[u8], file: &str) -> Result<()> {
    let st = safetensors::SafeTensors::deserialize(bytes).map_err(|e| Error::Weights {
        file: file.to_string(),
        reason: format!("not a safetensors file: {e}"),
    })?;
    let mut names: Vec<String> = st.names().into_iter().map(String::from).collect();
    names.sort();
    for name in names {
        let Ok(view) = st.tensor(&name) else { continue };
        let data = view.data();
        let bad = match view.dtype() {
            safetensors::Dtype::F32 => data
                .chunks_exact(4)
                .filter(|c| !f32::from_le_bytes([c[0], c[1], c[2], c[3]]).is_finite())
                .count(),
            safetensors::Dtype::F16 => data
                .chunks_exact(2)
                .filter(|c| !half::f16::from_le_bytes([c[0], c[1]]).is_finite())
                .count(),
            safetensors::Dtype::BF16 => data
                .chunks_exact(2)
                .filter(|c| !half::bf16::from_le_bytes([c[0], c[1]]).is_finite())
                .count(),
            safetensors::Dtype::F64 => data
                .chunks_exact(8)
                .filter(|c| !f64::from_le_bytes((*c).try_into().unwrap_or([0; 8])).is_finite())
                .count(),
            _ => 0,
        };
        if bad > 0 {
            return Err(Error::Weights {
                file: file.to_string(),
                reason: format!("tensor `{name}` holds {bad} NaN or infinite value(s)"),
            });
        }
    }
    Ok(())
}

/// How checkpoint names become module paths: `(regex, replacement)` pairs applied in order,
/// more specific first (bert-burn `loader.rs`).
pub type Remaps = &'static [(&'static str, &'static str)];

/// Loads `bytes` (a safetensors file named `file`) into `model`.
///
/// `remaps` turn HF names into module paths. `ignored` are regexes of checkpoint tensors that are
/// known not to be parameters here (each such entry says why where it is defined). The check is
/// strict: anything missing, unused or mis-shaped is an error naming the tensors.
pub fn load_safetensors<M: Module + ModuleSnapshot>(
    model: M,
    bytes: Vec<u8>,
    file: &str,
    remaps: Remaps,
    ignored: &[&str],
) -> Result<M> {
    load_checked(model, bytes, file, remaps, ignored, false)
}

/// As [`load_safetensors`]; with `partial` the file may hold a subset of the parameters (an
/// adapter), but everything it holds must still land on a parameter of the right shape.
pub fn load_checked<M: Module + ModuleSnapshot>(
    model: M,
    bytes: Vec<u8>,
    file: &str,
    remaps: &[(&str, &str)],
    ignored: &[&str],
    partial: bool,
) -> Result<M> {
    let (model, missing) = load_part(model, bytes, file, remaps, ignored, partial)?;
    if !partial && !missing.is_empty() {
        return Err(missing_error(file, &missing));
    }
    Ok(model)
}

fn missing_error(file: &str, missing: &[String]) -> Error {
    let names: Vec<&str> = missing.iter().map(String::as_str).collect();
    Error::Weights {
        file: file.to_string(),
        reason: format!(
            "does not match config.json: {} missing tensor(s): {}",
            names.len(),
            abbreviate(&names)
        ),
    }
}

/// HF's `model.safetensors.index.json`: which shard holds each tensor.
#[derive(Debug, Clone)]
pub struct ShardIndex {
    /// Tensor name → shard file name.
    pub weight_map: std::collections::BTreeMap<String, String>,
    /// Where the index came from (for errors).
    pub file: String,
}

/// Parses `model.safetensors.index.json`.
pub fn read_index(bytes: &[u8], file: &str) -> Result<ShardIndex> {
    #[derive(serde::Deserialize)]
    struct Index {
        weight_map: std::collections::BTreeMap<String, String>,
    }
    let idx: Index = serde_json::from_slice(bytes).map_err(|e| Error::json(file, e))?;
    Ok(ShardIndex {
        weight_map: idx.weight_map,
        file: file.to_string(),
    })
}

/// Loads a checkpoint saved in shards (`model.safetensors.index.json` naming, for each tensor,
/// the `model-0000k-of-0000n.safetensors` holding it), one shard in memory at a time: each
/// shard's tensors must land on parameters, each tensor the index names must be in its shard,
/// and every parameter must come from some shard. `index` is [`read_index`]'s.
pub async fn load_sharded<M: Module + ModuleSnapshot>(
    model: M,
    src: &impl crate::source::FileSource,
    index: &ShardIndex,
    remaps: Remaps,
    ignored: &[&str],
) -> Result<M> {
    let (idx, index_file) = (&index.weight_map, index.file.as_str());
    let mut shards: Vec<&String> = idx.values().collect();
    shards.sort();
    shards.dedup();
    if shards.is_empty() {
        return Err(Error::config(index_file, "weight_map", "names no tensor"));
    }
    let mut model = model;
    let mut missing: Option<std::collections::BTreeSet<String>> = None;
    for shard in shards {
        if shard.contains('/') || shard.contains('\\') || shard.starts_with('.') {
            return Err(Error::config(
                index_file,
                "weight_map",
                format!("`{shard}` is not a file name in the model folder"),
            ));
        }
        let (bytes, file) = (src.read(shard).await?, src.describe(shard));
        let held: std::collections::BTreeSet<String> = tensor_names(&bytes, &file)?
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        if let Some((name, _)) = idx.iter().find(|(k, v)| *v == shard && !held.contains(*k)) {
            return Err(Error::Weights {
                file,
                reason: format!("has no tensor `{name}`, which {index_file} places there"),
            });
        }
        let (m, miss) = load_part(model, bytes, &file, remaps, ignored, false)?;
        model = m;
        let miss: std::collections::BTreeSet<String> = miss.into_iter().collect();
        missing = Some(match missing {
            None => miss,
            Some(m) => m.intersection(&miss).cloned().collect(),
        });
    }
    let missing: Vec<String> = missing.unwrap_or_default().into_iter().collect();
    if !missing.is_empty() {
        return Err(missing_error(index_file, &missing));
    }
    Ok(model)
}

/// Loads what `bytes` holds into `model`: unused and mis-shaped tensors are errors; the
/// parameters it did not fill are returned (module paths).
fn load_part<M: Module + ModuleSnapshot>(
    model: M,
    bytes: Vec<u8>,
    file: &str,
    remaps: &[(&str, &str)],
    ignored: &[&str],
    partial: bool,
) -> Result<(M, Vec<String>)> {
    check_finite(&bytes, file)?;
    let mut store = SafetensorsStore::from_bytes(Some(bytes))
        .with_from_adapter(PyTorchToBurnAdapter.chain(FloatCastAdapter::to(DType::F32)))
        .allow_partial(true)
        .validate(false)
        // `Model` is an enum: its variant name is not part of HF paths.
        .skip_enum_variants(true);
    for (from, to) in remaps {
        store = store.with_key_remapping(*from, *to);
    }
    let mut model = model;
    let result = model.load_from(&mut store).map_err(|e| Error::Weights {
        file: file.to_string(),
        reason: e.to_string(),
    })?;
    let ignored: Vec<regex_lite::Regex> = ignored
        .iter()
        .map(|r| regex_lite::Regex::new(r).expect("static regex"))
        .collect();
    let unused: Vec<&String> = result
        .unused
        .iter()
        .filter(|k| !ignored.iter().any(|r| r.is_match(k)))
        .collect();
    let mut problems = Vec::new();
    if !unused.is_empty() {
        let names: Vec<&str> = unused.iter().map(|k| k.as_str()).collect();
        problems.push(format!(
            "{} unexpected tensor(s): {}",
            names.len(),
            abbreviate(&names)
        ));
    }
    if !result.errors.is_empty() {
        let msgs: Vec<String> = result.errors.iter().map(|e| e.to_string()).collect();
        let msgs: Vec<&str> = msgs.iter().map(String::as_str).collect();
        problems.push(abbreviate(&msgs));
    }
    if problems.is_empty() {
        let missing = result.missing.iter().map(|(k, _)| k.clone()).collect();
        Ok((model, missing))
    } else {
        let what = if partial {
            "does not fit this model"
        } else {
            "does not match config.json"
        };
        Err(Error::Weights {
            file: file.to_string(),
            reason: format!("{what}: {}", problems.join("; ")),
        })
    }
}

/// The first few items, then a count, so a one-line error stays readable.
fn abbreviate(items: &[&str]) -> String {
    const SHOW: usize = 6;
    let mut s = items
        .iter()
        .take(SHOW)
        .copied()
        .collect::<Vec<_>>()
        .join(", ");
    if items.len() > SHOW {
        s.push_str(&format!(", ... ({} more)", items.len() - SHOW));
    }
    s
}

/// Every tensor of a safetensors file as `(name, shape, f32 values)`, in name order (F32, F16
/// and BF16 stored; other dtypes refused, naming the tensor).
pub fn read_f32(bytes: &[u8], file: &str) -> Result<Vec<(String, Vec<usize>, Vec<f32>)>> {
    let st = safetensors::SafeTensors::deserialize(bytes).map_err(|e| Error::Weights {
        file: file.to_string(),
        reason: format!("not a safetensors file: {e}"),
    })?;
    let mut names: Vec<String> = st.names().into_iter().map(String::from).collect();
    names.sort();
    let mut out = Vec::with_capacity(names.len());
    for name in names {
        let view = st.tensor(&name).map_err(|e| Error::Weights {
            file: file.to_string(),
            reason: format!("tensor `{name}`: {e}"),
        })?;
        let data = view.data();
        let values: Vec<f32> = match view.dtype() {
            safetensors::Dtype::F32 => data
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
            safetensors::Dtype::F16 => data
                .chunks_exact(2)
                .map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32())
                .collect(),
            safetensors::Dtype::BF16 => data
                .chunks_exact(2)
                .map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32())
                .collect(),
            d => {
                return Err(Error::Weights {
                    file: file.to_string(),
                    reason: format!("tensor `{name}` is {d:?}; F32, F16 or BF16 expected"),
                });
            }
        };
        out.push((name, view.shape().to_vec(), values));
    }
    Ok(out)
}
