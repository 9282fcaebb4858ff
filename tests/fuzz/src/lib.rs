//! The base the `safetensors` and `adapter` targets load onto, once per fuzzing process: the
//! committed tiny BLIP-VQA fixture (the base of the peft adapter fixtures the corpora were seeded
//! with) and the tiny ViT classifier's config.

use normtune_core::fuzz::Base;
use std::sync::OnceLock;

pub fn base() -> &'static Base {
    static BASE: OnceLock<Base> = OnceLock::new();
    BASE.get_or_init(|| {
        Base::from_files(
            include_bytes!("../../fixtures/blip_vqa/config.json"),
            include_bytes!("../../fixtures/blip_vqa/model.safetensors"),
            include_bytes!("../../fixtures/vit_cls/config.json"),
        )
        .expect("the committed fixtures load")
    })
}
