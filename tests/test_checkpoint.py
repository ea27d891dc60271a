import json

import pytest
import torch

import surgclip
from surgclip.checkpoint import CheckpointMismatchError, convert_surgclip_beta, load_weights, read_state_dict
from helpers import small_model


def _inputs(model):
    s = model.preprocess_cfg.image_size
    video = torch.randn(2, 3, 3, s, s, generator=torch.Generator().manual_seed(1))
    tokens = surgclip.get_tokenizer(model.config)(["retraction of the gallbladder", "clip the cystic artery"])
    return video, tokens


@pytest.mark.parametrize("name", ["tiny", "SurgCLIP-B"])
def test_save_pretrained_round_trip(tmp_path, name):
    model = small_model(name, seed=7)
    with torch.no_grad():
        model.temp.fill_(0.031)
    out = surgclip.save_pretrained(model, tmp_path / "ckpt")
    assert sorted(p.name for p in out.iterdir()) == ["model.safetensors", "surgclip_config.json"]
    meta = json.loads((out / "surgclip_config.json").read_text())
    assert meta["model"]["preprocess"]["image_size"] == model.preprocess_cfg.image_size
    loaded, preprocess, tokenizer = surgclip.load(str(out), device="cpu")
    assert not loaded.training and loaded.name == name
    video, tokens = _inputs(model)
    with torch.no_grad():
        assert torch.equal(model(video, tokens)[0], loaded(video, surgclip.tokenize(
            ["retraction of the gallbladder", "clip the cystic artery"], tokenizer, max_length=77))[0])
    assert preprocess.cfg == model.preprocess_cfg
    loaded2, _, _ = surgclip.load(f"local-dir:{out}", device="cpu")
    assert torch.equal(loaded2.temp, loaded.temp)


def test_pickled_objects_are_refused(tmp_path):
    import argparse

    path = tmp_path / "evil.pth"  # any non-tensor object needs full unpickling
    torch.save({"weights": torch.zeros(2), "obj": argparse.Namespace(x=1)}, path)
    with pytest.raises(ValueError, match="refusing to load .*evil.pth.*unpickling"):
        read_state_dict(path)


def test_mismatched_keys_are_listed():
    model = small_model("tiny")
    sd = model.state_dict()
    bad = dict(sd)
    bad.pop("temp")
    bad["extra.weight"] = torch.zeros(1)
    bad["vision_proj.weight"] = torch.zeros(3, 3)
    with pytest.raises(CheckpointMismatchError) as err:
        load_weights(model, bad, source="bad.pth")
    msg = str(err.value)
    assert "bad.pth" in msg and "1 missing: temp" in msg and "1 unexpected: extra.weight" in msg
    assert "vision_proj.weight: file (3, 3) vs model (16, 32)" in msg


def test_lightning_checkpoint_layout_loads(tmp_path):
    model = small_model("tiny", seed=3)
    path = tmp_path / "last.ckpt"
    torch.save({"epoch": 2, "state_dict": {f"model.{k}": v for k, v in model.state_dict().items()}}, path)
    other = small_model("tiny", seed=4)
    load_weights(other, read_state_dict(path), source=str(path))
    for k, v in model.state_dict().items():
        assert torch.equal(v, other.state_dict()[k])


def test_published_layout_is_converted():
    sd = {"text_encoder.embeddings.word_embeddings.weight": torch.zeros(1), "vision_proj.weight": torch.zeros(1),
          "vision_encoder.model.cls_token": torch.zeros(1)}
    out = convert_surgclip_beta(sd)
    assert sorted(out) == ["text_encoder.transformer.embeddings.word_embeddings.weight",
                           "vision_encoder.model.cls_token", "vision_proj.weight"]


def test_directory_without_config_is_explained(tmp_path):
    with pytest.raises(FileNotFoundError, match="no surgclip_config.json"):
        surgclip.load(str(tmp_path), device="cpu")
