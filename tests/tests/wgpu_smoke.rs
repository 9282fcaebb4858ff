//! The same parity check on wgpu (lavapipe on CI: no GPU needed, slow but correct).

use normtune_core::burn::tensor::Device;
use normtune_core::models::{Model, Pipeline};
use normtune_tests::*;

#[test]
fn blip_vqa_matches_hf_on_wgpu() {
    let device = Device::wgpu(Default::default());
    let p = pollster::block_on(Pipeline::load(&folder("blip_vqa"), &device)).unwrap();
    let Model::Vqa(m) = &p.model else { panic!() };
    let pixels = reference("blip_vqa", "pixel_values").float::<4>(&device);
    let image = m.encode_image(pixels);
    assert_close(
        "wgpu vision_last_hidden_state",
        image.clone(),
        &reference("blip_vqa", "vision_last_hidden_state"),
        1e-4,
    );
    let ids = reference("blip_vqa", "input_ids").int::<2>(&device);
    let mask = reference("blip_vqa", "attention_mask").float::<2>(&device);
    let q = m.encode_question(&image, ids, Some(mask));
    assert_close(
        "wgpu question_embeds",
        q.clone(),
        &reference("blip_vqa", "question_embeds"),
        1e-4,
    );
    let dec_ids = reference("blip_vqa", "decoder_input_ids").int::<2>(&device);
    let dec_mask = reference("blip_vqa", "decoder_attention_mask").float::<2>(&device);
    assert_close(
        "wgpu decoder_logits",
        m.answer_logits(&q, None, dec_ids, Some(dec_mask)),
        &reference("blip_vqa", "decoder_logits"),
        1e-4,
    );
}

/// WGSL has no bf16: asking a wgpu device to keep frozen weights in bf16 is refused when the
/// run is set up, in one sentence, instead of panicking on a device thread when the first kernel
/// is compiled and leaving the process hung (seen on an H200 over Vulkan, BENCHMARKS.md "GPU").
#[test]
fn frozen_bf16_is_refused_on_wgpu() {
    use normtune_core::models::walk::FrozenDtype;
    use normtune_core::peft;
    let device = Device::wgpu(Default::default());
    let p = pollster::block_on(Pipeline::load(&folder("llava/tiny"), &device)).unwrap();
    let Err(e) = peft::store_frozen(p.model, FrozenDtype::Bf16) else {
        panic!("bf16 accepted on wgpu");
    };
    let e = e.to_string();
    assert!(
        e.contains("frozen_dtype = \"bf16\"") && e.contains("cannot compute in bf16"),
        "{e}"
    );
}
