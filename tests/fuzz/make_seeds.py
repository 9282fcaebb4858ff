#!/usr/bin/env python3
"""Writes the fuzzers' seed inputs into tests/fuzz/seeds/<target>/ from the committed fixtures,
the demo model, small hand-written dataset samples in each supported format, and the small
DICOM test files of the pydicom wheel (MIT; fetched by tests/fixtures/fetch_assets.sh).

Every seed is a real, valid input: tests/tests/fuzz_corpus.rs requires each to be *accepted*,
and every file the fuzzers kept (corpus/<target>/) to be read without a panic.

    python3 tests/fuzz/make_seeds.py      (needs pillow for the JPEG seed)
"""
import io
import pathlib
import shutil

HERE = pathlib.Path(__file__).resolve().parent
REPO = HERE.parent.parent
FIX = REPO / "tests" / "fixtures"
SEEDS = HERE / "seeds"


def put(target, name, data):
    d = SEEDS / target
    d.mkdir(parents=True, exist_ok=True)
    (d / name).write_bytes(data)


def main():
    for d in SEEDS.glob("*/"):  # NOTICE stays
        shutil.rmtree(d)
    rd = lambda p: (REPO / p).read_bytes()

    # config: first byte 0 = model config.json, 1 = PEFT config, 2 = preprocessor_config.json
    for p in ["tests/fixtures/blip_vqa/config.json", "tests/fixtures/vit_cls/config.json",
              "tests/fixtures/blip_caption/config.json", "core/assets/demo-base/config.json"]:
        put("config", "model-" + p.split("/")[-2], b"\x00" + rd(p))
    put("config", "peft-lora", b"\x01" + b'{"placement": {"vision": "frozen", "text_encoder": "lora", '
        b'"decoder": "lora"}, "lora": {"r": 4}}')
    put("config", "peft-ln", b"\x01" + b'{"default_method": "layernorm"}')
    for p in ["tests/fixtures/blip_vqa/preprocessor_config.json",
              "tests/fixtures/vit_cls/preprocessor_config.json",
              "core/assets/demo-base/preprocessor_config.json"]:
        put("config", "preprocessor-" + p.split("/")[-2], b"\x02" + rd(p))

    # safetensors: the tiny ViT classifier's weights (loaded against its config)
    put("safetensors", "vit_cls", rd("tests/fixtures/vit_cls/model.safetensors"))

    # adapter: adapter_config.json NUL adapter_model.safetensors, onto the tiny BLIP-VQA
    for d in sorted(FIX.glob("peft_*_vqa/*adapter")):
        cfg = (d / "adapter_config.json").read_bytes()
        assert b"\x00" not in cfg
        put("adapter", f"{d.parent.name}-{d.name}", cfg + b"\x00" + (d / "adapter_model.safetensors").read_bytes())

    # tokenizer: first byte even = tokenizer.json, odd = vocab.txt
    put("tokenizer", "blip_vqa-tokenizer.json", b"\x00" + rd("tests/fixtures/blip_vqa/tokenizer.json"))
    put("tokenizer", "blip_vqa-vocab.txt", b"\x01" + rd("tests/fixtures/blip_vqa/vocab.txt"))
    put("tokenizer", "demo-vocab.txt", b"\x01" + rd("core/assets/demo-base/vocab.txt"))

    # dataset: first byte = format (the order of normtune_core::fuzz::dataset)
    vqa_rad = (b'[{"qid": 1, "image_name": "synpic1.jpg", "question": "Is there a fracture?", '
               b'"answer": "No", "answer_type": "CLOSED"}, {"qid": 2, "image_name": "synpic2.jpg", '
               b'"question": "How many ribs?", "answer": 12, "answer_type": "OPEN"}]')
    slake = (b'[{"img_name": "xmlab1/source.jpg", "question": "Is this a CT?", "answer": "Yes", '
             b'"answer_type": "CLOSED", "q_lang": "en", "qid": 7}, {"img_name": "xmlab1/source.jpg", '
             b'"question": "x", "answer": "y", "answer_type": "OPEN", "q_lang": "zh", "qid": 8}]')
    path_json = (b'[{"image": "train_0422", "question": "Is this an adenoma?", "answer": "yes"}, '
                 b'{"image": "train_0423.png", "question": "What is present?", "answer": "necrosis", "qid": "q9"}]')
    path_csv = b'image,question,answer\ntest_1,"Where, exactly, is it?",liver\n\ntest_2,Is it benign?,No\n'
    nih = (b"Image Index,Finding Labels,Follow-up #,Patient ID\n00000001_000.png,Cardiomegaly|Effusion,0,1\n"
           b'00000002_000.png,No Finding,0,2\n"a,1.png","Mass|Nodule",0,3\n')
    labels_csv = b"image,Effusion,Nodule\nct/1.dcm,1,0\nct/2.dcm,0,1\n"
    for kind, name, data in [
        (0, "vqa-rad.json", vqa_rad), (1, "slake.json", slake), (2, "path-vqa.json", path_json),
        (2, "path-vqa.csv", path_csv), (3, "iu-xray.json", rd("tests/fixtures/data/tiny_iu_xray.json")),
        (4, "nih.csv", nih), (5, "labels.txt", rd("tests/fixtures/data/tiny_labels.txt")),
        (6, "labels.csv", labels_csv), (7, "vqa.jsonl", rd("tests/fixtures/data/tiny_vqa.jsonl")),
    ]:
        put("dataset", name, bytes([kind]) + data)

    # dicom: pydicom's small test files that normtune decodes (tests/tests/dicom.rs reads them all)
    src = REPO / ".assets" / "pydicom-test-files"
    for name in ["MR_small.dcm", "MR_small_RLE.dcm", "MR_small_bigendian.dcm", "MR_small_implicit.dcm",
                 "MR_small_jp2klossless.dcm",
                 "SC_rgb_jpeg_dcmtk.dcm", "SC_rgb_rle.dcm", "SC_rgb_small_odd.dcm", "JPEG2000.dcm"]:
        put("dicom", name, (src / name).read_bytes())

    # image: the PNG fixtures, and the same picture as JPEG, grey and RGB
    from PIL import Image
    for p in ["chest_32.png", "chest_50x40.png"]:
        put("image", p, (FIX / "images" / p).read_bytes())
    img = Image.open(FIX / "images" / "chest_50x40.png")
    for mode in ["L", "RGB"]:
        buf = io.BytesIO()
        img.convert(mode).save(buf, "JPEG", quality=80)
        put("image", f"chest_50x40-{mode}.jpg", buf.getvalue())
    put("image", "MR_small.dcm", (src / "MR_small.dcm").read_bytes())

    # gguf: the small GGUF fixture (every metadata type; F32, F16, BF16, Q8_0, Q4_0, Q4_1 tensors)
    put("gguf", "tiny.gguf", (FIX / "gguf" / "tiny.gguf").read_bytes())

    # zip: a dataset folder as the browser app takes it (deflated), and one stored uncompressed
    import zipfile
    folder = [("vqa/tiny_vqa.jsonl", (FIX / "data" / "tiny_vqa.jsonl").read_bytes()),
              ("vqa/images/chest_32.png", (FIX / "images" / "chest_32.png").read_bytes())]
    for name, method in [("dataset-deflated.zip", zipfile.ZIP_DEFLATED), ("dataset-stored.zip", zipfile.ZIP_STORED)]:
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", method) as z:
            z.writestr(zipfile.ZipInfo("vqa/", (2026, 1, 1, 0, 0, 0)), b"")
            for path, data in folder:
                z.writestr(zipfile.ZipInfo(path, (2026, 1, 1, 0, 0, 0)), data, compress_type=method)
        put("zip", name, buf.getvalue())


if __name__ == "__main__":
    main()
