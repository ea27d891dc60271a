"""Run with CAMMA's SurgVLP code on PYTHONPATH (tests/install_surgvlp.sh): builds one of their models
(SurgVLP, HecVL or PeskaVLP) with small random weights and writes its checkpoint and outputs.

    PYTHONPATH=.peer/surgvlp python tests/peer_surgvlp.py MODEL VOCAB OUT_DIR

Their text tower is built from a local folder holding a random ``BertConfig`` model (no hub), their
ResNet-50 without ImageNet weights; then every weight and BatchNorm statistic is drawn at random,
so that the parity test compares something. Writes ``OUT_DIR/MODEL.pth`` (their ``state_dict()``, as
their releases hold it), ``OUT_DIR/bert/`` and ``OUT_DIR/reference.pt`` (frames, their preprocessed
pixels, token ids and mask, image and text embeddings).
"""
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

import importlib

import surgvlp
from surgvlp.codes.models import build_algorithm

camma = importlib.import_module("surgvlp.surgvlp")  # their module (the package re-exports only part of it)

TEXTS = [
    "In preparation phase I insert trocars to patient abdomen cavity",
    "In clip and cut phase I use clipper to clip the cystic duct and artery then use scissor to cut them",
    "Cholecystectomy: électrocautérisation (hook) — 3x irrigation, #5 trocar ~ 12mm",
    "clipping of the cystic duct " * 20,  # longer than 77 word pieces: truncated
    "",
]
WIDTH, LAYERS = 64, 5  # five layers: the last-four sum leaves the embedding output and the first layer out

name, vocab, out = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
torch.manual_seed(0)
bert = out / "bert"
bert.mkdir(parents=True, exist_ok=True)
shutil.copy(vocab, bert / "vocab.txt")
(bert / "tokenizer_config.json").write_text(json.dumps({"do_lower_case": True}))
from transformers import BertConfig, BertModel  # noqa: E402  (their pinned transformers)

BertModel(BertConfig(vocab_size=sum(1 for _ in open(vocab, encoding="utf-8")), hidden_size=WIDTH,
                     num_hidden_layers=LAYERS, num_attention_heads=4, intermediate_size=2 * WIDTH,
                     max_position_embeddings=128)).save_pretrained(bert)

config = dict(
    type=name,
    backbone_img=dict(type="img_backbones/ImageEncoder", num_classes=WIDTH, pretrained="random",
                      backbone_name="resnet_50", img_norm=False),
    backbone_text=dict(type="text_backbones/BertEncoder", text_bert_type=str(bert), text_last_n_layers=4,
                       text_aggregate_method="sum", text_norm=False, text_embedding_dim=WIDTH,
                       text_freeze_bert=False, text_agg_tokens=True),
)
model = build_algorithm(config).eval()
gen = torch.Generator().manual_seed(1)
with torch.no_grad():
    for key, t in model.state_dict().items():
        if not t.is_floating_point():
            continue
        if key.endswith("running_var"):
            t.copy_(torch.rand(t.shape, generator=gen) + 0.5)
        elif key.endswith("bn3.weight"):  # small residual branches keep the 16 blocks' activations in range
            t.copy_(torch.rand(t.shape, generator=gen) * 0.2)
        else:
            t.copy_(torch.randn(t.shape, generator=gen) * (0.02 if "backbone_text" in key else 0.1))
torch.save(model.state_dict(), out / f"{name}.pth")

rng = np.random.default_rng(0)
frames = rng.integers(0, 256, (3, 300, 500, 3), dtype=np.uint8)  # 5:3, resized to 360x640 then cropped
preprocess = camma._transform(224)
pixels = torch.stack([preprocess(Image.fromarray(f)) for f in frames])
tokens = surgvlp.tokenize(TEXTS, model_name=str(bert))
with torch.no_grad():
    img = model(pixels, None, mode="video")["img_emb"]
    text = model(None, tokens, mode="text")["text_emb"]
torch.save({"texts": TEXTS, "frames": torch.from_numpy(frames), "pixels": pixels, "input_ids": tokens["input_ids"],
            "attention_mask": tokens["attention_mask"], "img_emb": img, "text_emb": text,
            "width": WIDTH, "layers": LAYERS}, out / "reference.pt")
print("ok", name, tuple(img.shape), tuple(text.shape))
