import time

import pytest

import surgclip
from surgclip import pretrained
from surgclip.pretrained import WeightsNotFoundError, resolve_weights


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("SURGCLIP_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_offline_missing_weights_name_file_and_place(cache, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    start = time.monotonic()
    with pytest.raises(WeightsNotFoundError) as err:
        surgclip.load("SurgCLIP-B", device="cpu", pretrained="surgclip_beta.pth")
    assert time.monotonic() - start < 60  # the model is built first; the lookup itself is instant
    msg = str(err.value)
    assert "surgclip_beta.pth" in msg and str(cache / "surgclip_beta.pth") in msg and "offline" in msg
    assert "huggingface.co/aleperez24/SurgCLIP" in msg


def test_explicit_path_beats_cache(cache, tmp_path):
    cache.mkdir()
    (cache / "surgclip_beta.pth").write_bytes(b"cached")
    explicit = tmp_path / "mine.pth"
    explicit.write_bytes(b"explicit")
    assert resolve_weights("SurgCLIP-B", explicit)[0] == explicit
    path, record = resolve_weights("SurgCLIP-B", "surgclip_beta.pth")
    assert path == cache / "surgclip_beta.pth" and record["format"] == "surgclip_beta"
    assert resolve_weights("SurgCLIP-B", None)[0] == cache / "surgclip_beta.pth"


def test_unreachable_download_fails_fast_and_leaves_no_partial_file(cache, monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("SURGCLIP_OFFLINE", raising=False)
    record = dict(pretrained.PRETRAINED["SurgCLIP-B"]["beta"], url="http://127.0.0.1:9/surgclip_beta.pth")
    monkeypatch.setitem(pretrained.PRETRAINED["SurgCLIP-B"], "beta", record)
    start = time.monotonic()
    with pytest.raises(WeightsNotFoundError, match="could not be downloaded"):
        resolve_weights("SurgCLIP-B", "beta")
    assert time.monotonic() - start < 10
    assert not cache.exists() or not any(cache.iterdir())


def test_checksum_mismatch(cache, monkeypatch):
    cache.mkdir()
    (cache / "surgclip_beta.pth").write_bytes(b"not the weights")
    record = dict(pretrained.PRETRAINED["SurgCLIP-B"]["beta"], sha256="0" * 64)
    monkeypatch.setitem(pretrained.PRETRAINED["SurgCLIP-B"], "beta", record)
    with pytest.raises(ValueError, match="checksum mismatch"):
        resolve_weights("SurgCLIP-B", "beta")


def test_unknown_tag_lists_registered(cache):
    with pytest.raises(WeightsNotFoundError, match=r"registered for SurgCLIP-B: \['beta'\]"):
        resolve_weights("SurgCLIP-B", "gamma")


def test_clip_init_offline_error_is_clear(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(RuntimeError, match=r"could not load open_clip weights ViT-B-16/openai.*pretrained"):
        surgclip.create_model("CLIP-B-16")
