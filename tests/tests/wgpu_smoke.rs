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
