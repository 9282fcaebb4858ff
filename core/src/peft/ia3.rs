//! IA3 (Liu et al. 2022; HF peft `tuners/ia3`): learned vectors that rescale the key and value
//! projections' outputs and the input of every `output.dense` (peft's BERT defaults
//! `target_modules = ["key", "value", "output.dense"]`, `feedforward_modules = ["output.dense"]`,
//! as MILE used). Available for the BERT text components.

use super::config::{Method, PeftConfig};
use crate::error::{Error, Result};
use crate::models::Model;
use crate::models::bert::BlipTextModel;
use crate::models::bert::model::{BlipTextAttention, BlipTextOutput};
use burn::module::Param;
use burn::nn::Linear;
use burn::tensor::Tensor;

/// The BERT text models of a model, by component.
pub(crate) fn text_models(model: &mut Model) -> Vec<(&'static str, &mut BlipTextModel)> {
    match model {
        Model::Vqa(m) => vec![
            ("text_encoder", &mut m.text_encoder),
            ("decoder", &mut m.text_decoder.bert),
        ],
        Model::Captioner(m) => vec![("decoder", &mut m.text_decoder.bert)],
        Model::Classifier(_) | Model::Llava(_) => vec![],
    }
}

fn ones_like_out(l: &Linear) -> Option<Param<Tensor<1>>> {
    let w = l.weight.val();
    Some(Param::from_tensor(Tensor::ones([w.dims()[1]], &w.device())))
}

fn ones_like_in(l: &Linear) -> Option<Param<Tensor<1>>> {
    let w = l.weight.val();
    Some(Param::from_tensor(Tensor::ones([w.dims()[0]], &w.device())))
}

fn attach_attention(a: &mut BlipTextAttention) {
    a.self_attn.key_ia3 = ones_like_out(&a.self_attn.key);
    a.self_attn.value_ia3 = ones_like_out(&a.self_attn.value);
    a.output.dense_ia3 = ones_like_in(&a.output.dense);
}

/// Adds IA3 vectors (all ones: the model's outputs are unchanged) to every component whose
/// method is `ia3`.
pub(crate) fn attach(mut model: Model, cfg: &PeftConfig) -> Result<Model> {
    for comp in model.components().iter().map(|c| c.name) {
        if cfg.method_for(comp) == Method::Ia3 && !matches!(comp, "text_encoder" | "decoder") {
            return Err(Error::Input(format!(
                "IA3 is available for the BERT text components (text_encoder, decoder), not `{comp}`"
            )));
        }
    }
    for (comp, text) in text_models(&mut model) {
        if cfg.method_for(comp) != Method::Ia3 {
            continue;
        }
        for layer in &mut text.encoder.layer {
            attach_attention(&mut layer.attention);
            if let Some(ca) = &mut layer.crossattention {
                attach_attention(ca);
            }
            layer.output.dense_ia3 = ones_like_in(&layer.output.dense);
        }
    }
    Ok(model)
}

fn fold_out(l: &mut Linear, v: Option<Param<Tensor<1>>>) {
    if let Some(v) = v {
        let v = v.val();
        l.weight = l.weight.clone().map(|w| w * v.clone().unsqueeze::<2>());
        l.bias = l.bias.take().map(|b| b.map(|b| b * v));
    }
}

fn fold_in(o: &mut BlipTextOutput) {
    if let Some(v) = o.dense_ia3.take() {
        let v = v.val();
        o.dense.weight = o.dense.weight.clone().map(|w| w * v.unsqueeze_dim::<2>(1));
    }
}

fn fold_attention(a: &mut BlipTextAttention) {
    let (k, v) = (a.self_attn.key_ia3.take(), a.self_attn.value_ia3.take());
    fold_out(&mut a.self_attn.key, k);
    fold_out(&mut a.self_attn.value, v);
    fold_in(&mut a.output);
}

/// Folds IA3 vectors into the Linear weights they scale (peft's `merge`): output scaling
/// multiplies the weight's output columns and the bias, input scaling the weight's input rows.
pub fn fold(mut model: Model) -> Model {
    for (_, text) in text_models(&mut model) {
        for layer in &mut text.encoder.layer {
            fold_attention(&mut layer.attention);
            if let Some(ca) = &mut layer.crossattention {
                fold_attention(ca);
            }
            fold_in(&mut layer.output);
        }
    }
    model
}
