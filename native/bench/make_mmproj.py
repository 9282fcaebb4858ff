#!/usr/bin/env python3
"""A random-weight LLaVA `mmproj` GGUF (legacy converter layout, as
tests/fixtures/make_llava_gguf_fixtures.py writes it) whose projector outputs WIDTH features, to
pair with any decoder GGUF of that width for memory and speed measurements (not for answers).

    python3 native/bench/make_mmproj.py --width 576 --out /tmp/mmproj-576.gguf
"""
import argparse
import importlib.util
import pathlib

import torch
from transformers import CLIPVisionConfig, LlamaConfig, LlavaConfig, LlavaForConditionalGeneration

HERE = pathlib.Path(__file__).resolve().parent
spec = importlib.util.spec_from_file_location(
    "fixtures", HERE.parent.parent / "tests" / "fixtures" / "make_llava_gguf_fixtures.py")
fixtures = importlib.util.module_from_spec(spec)
spec.loader.exec_module(fixtures)

ap = argparse.ArgumentParser()
ap.add_argument("--width", type=int, required=True, help="the decoder's hidden size")
ap.add_argument("--out", required=True)
ap.add_argument("--layers", type=int, default=4)
ap.add_argument("--hidden", type=int, default=256)
ap.add_argument("--image-size", type=int, default=224)
ap.add_argument("--patch", type=int, default=16)
a = ap.parse_args()

torch.manual_seed(0)
vision = CLIPVisionConfig(hidden_size=a.hidden, intermediate_size=4 * a.hidden,
                          num_hidden_layers=a.layers, num_attention_heads=4,
                          image_size=a.image_size, patch_size=a.patch, projection_dim=a.hidden)
text = LlamaConfig(vocab_size=8, hidden_size=a.width, intermediate_size=8, num_hidden_layers=1,
                   num_attention_heads=1, num_key_value_heads=1)
cfg = LlavaConfig(vision_config=vision, text_config=text, image_token_index=0,
                  vision_feature_layer=-2, vision_feature_select_strategy="default")
model = LlavaForConditionalGeneration(cfg).eval()
fixtures.mmproj(cfg, model, pathlib.Path(a.out))
print(a.out, pathlib.Path(a.out).stat().st_size, "bytes")
