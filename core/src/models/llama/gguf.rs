//! A LLaMA model from a GGUF file (llama.cpp's `llama` architecture): the config from the
//! metadata, the tensors dequantised to f32 and renamed to HF's names, and the query/key rows put
//! back in HF's rotate-half order (llama.cpp's converter interleaves them for its rotary kernel;
//! transformers undoes it the same way when it loads a GGUF). Parity with transformers on the
//! real SmolLM2-135M: `tests/tests/llama.rs`.

use super::{LlamaConfig, LlamaForCausalLM};
use crate::error::{Error, Result};
use crate::gguf::{Gguf, Value};
use burn::tensor::Device;

/// The config a GGUF file's `llama.*` metadata describes.
pub fn config_from_gguf(g: &Gguf, file: &str) -> Result<LlamaConfig> {
    let arch = g
        .get("general.architecture")
        .and_then(Value::as_str)
        .unwrap_or("");
    if arch != "llama" {
        return Err(Error::config(
            file,
            "general.architecture",
            format!("`{arch}`: only llama models are read"),
        ));
    }
    let n = |k: &str| g.get_u64(&format!("llama.{k}")).map(|v| v as usize);
    let hidden = n("embedding_length")?;
    let heads = n("attention.head_count")?;
    let vocab = match g.get("llama.vocab_size").and_then(Value::as_u64) {
        Some(v) => v as usize,
        None => match g.get("tokenizer.ggml.tokens") {
            Some(Value::Array(t)) => t.len(),
            _ => {
                return Err(Error::config(file, "llama.vocab_size", "missing"));
            }
        },
    };
    let cfg = LlamaConfig {
        vocab_size: vocab,
        hidden_size: hidden,
        intermediate_size: n("feed_forward_length")?,
        num_hidden_layers: n("block_count")?,
        num_attention_heads: heads,
        num_key_value_heads: Some(n("attention.head_count_kv").unwrap_or(heads)),
        head_dim: Some(n("rope.dimension_count").unwrap_or(hidden / heads.max(1))),
        max_position_embeddings: n("context_length").unwrap_or(2048),
        rms_norm_eps: g.get_f64("llama.attention.layer_norm_rms_epsilon")?,
        rope_theta: Some(g.get_f64("llama.rope.freq_base").unwrap_or(10000.0)),
        tie_word_embeddings: g.tensor("output.weight").is_none(),
        bos_token_id: g
            .get("tokenizer.ggml.bos_token_id")
            .and_then(Value::as_u64)
            .map(|v| v as i64),
        eos_token_id: g
            .get("tokenizer.ggml.eos_token_id")
            .and_then(Value::as_u64)
            .map(|v| serde_json::json!(v)),
        pad_token_id: g
            .get("tokenizer.ggml.padding_token_id")
            .and_then(Value::as_u64)
            .map(|v| v as i64),
        ..LlamaConfig::default()
    };
    cfg.check(file)?;
    Ok(cfg)
}

/// HF's name for a llama.cpp tensor name.
pub(crate) fn hf_name(name: &str) -> Option<String> {
    let fixed = match name {
        "token_embd.weight" => Some("model.embed_tokens.weight"),
        "output_norm.weight" => Some("model.norm.weight"),
        "output.weight" => Some("lm_head.weight"),
        _ => None,
    };
    if let Some(f) = fixed {
        return Some(f.to_string());
    }
    let rest = name.strip_prefix("blk.")?;
    let (layer, part) = rest.split_once('.')?;
    let layer: usize = layer.parse().ok()?;
    let (module, kind) = part.rsplit_once('.')?;
    let module = match module {
        "attn_norm" => "input_layernorm",
        "ffn_norm" => "post_attention_layernorm",
        "attn_q" => "self_attn.q_proj",
        "attn_k" => "self_attn.k_proj",
        "attn_v" => "self_attn.v_proj",
        "attn_output" => "self_attn.o_proj",
        "ffn_gate" => "mlp.gate_proj",
        "ffn_up" => "mlp.up_proj",
        "ffn_down" => "mlp.down_proj",
        _ => return None,
    };
    Some(format!("model.layers.{layer}.{module}.{kind}"))
}

/// Puts the rows of a query/key projection (`[heads·head_dim, ..]`, `cols` values a row) back in
/// HF order: llama.cpp stores row `2i + j` of each head where HF has row `j·head_dim/2 + i`.
fn unpermute(v: &[f32], heads: usize, cols: usize) -> Vec<f32> {
    let rows = v.len() / cols;
    let hd = rows / heads;
    let half = hd / 2;
    let mut out = vec![0f32; v.len()];
    for h in 0..heads {
        for i in 0..half {
            for j in 0..2 {
                let from = (h * hd + 2 * i + j) * cols;
                let to = (h * hd + j * half + i) * cols;
                out[to..to + cols].copy_from_slice(&v[from..from + cols]);
            }
        }
    }
    out
}

/// One tensor of a GGUF `llama` model under its HF name (`model.layers.N.…`, `lm_head.weight`),
/// dequantised to f32, query/key rows back in HF order.
pub fn hf_tensor(
    g: &Gguf,
    t: &crate::gguf::TensorInfo,
    cfg: &LlamaConfig,
    file: &str,
) -> Result<(String, Vec<usize>, Vec<f32>)> {
    let name = hf_name(&t.name).ok_or_else(|| Error::Weights {
        file: file.to_string(),
        reason: format!("tensor `{}` is not part of a llama model", t.name),
    })?;
    let (shape, mut v) = (t.shape.clone(), g.values(t)?);
    let cols: usize = shape.iter().skip(1).product();
    if name.ends_with("q_proj.weight") || name.ends_with("q_proj.bias") {
        v = unpermute(&v, cfg.num_attention_heads, cols.max(1));
    } else if name.ends_with("k_proj.weight") || name.ends_with("k_proj.bias") {
        v = unpermute(&v, cfg.kv_heads(), cols.max(1));
    }
    Ok((name, shape, v))
}

/// Loads a GGUF `llama` model: its config and the model, every tensor dequantised to f32 and
/// checked against the config (missing, unexpected or mis-shaped tensors are an error naming
/// them). Peak memory is about three times the f32 model (the dequantised tensors, their
/// safetensors image, the model).
pub fn from_gguf(g: &Gguf, file: &str, device: &Device) -> Result<(LlamaConfig, LlamaForCausalLM)> {
    let cfg = config_from_gguf(g, file)?;
    let mut tensors: Vec<(String, Vec<usize>, Vec<u8>)> = Vec::with_capacity(g.tensors.len());
    for t in &g.tensors {
        let (name, shape, v) = hf_tensor(g, t, &cfg, file)?;
        let bytes = v.iter().flat_map(|x| x.to_le_bytes()).collect();
        tensors.push((name, shape, bytes));
    }
    let views: Vec<(String, safetensors::tensor::TensorView)> = tensors
        .iter()
        .map(|(n, s, b)| {
            safetensors::tensor::TensorView::new(safetensors::Dtype::F32, s.clone(), b)
                .map(|v| (n.clone(), v))
                .map_err(|e| Error::Weights {
                    file: file.to_string(),
                    reason: format!("tensor `{n}`: {e}"),
                })
        })
        .collect::<Result<_>>()?;
    let bytes = safetensors::tensor::serialize(views, None).map_err(|e| Error::Weights {
        file: file.to_string(),
        reason: e.to_string(),
    })?;
    drop(tensors);
    let model = super::load(&cfg, bytes, file, device)?;
    Ok((cfg, model))
}
