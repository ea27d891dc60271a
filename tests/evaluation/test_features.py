"""The feature cache: resumes per video, and is keyed by weights, precision, clip settings and table rows."""
import json

import numpy as np
import torch

from surgclip import datasets as D
from surgclip.checkpoint import weights_hash
from surgclip.evaluation.features import extract_features, feature_settings, settings_key


def _only_cache(tmp_path):
    (key,) = [p for p in tmp_path.iterdir() if p.is_dir()]
    return key


def test_feature_cache_resumes(cholec_root, tmp_path, tiny_model):
    model, _, _ = tiny_model
    table = D.load_benchmark("cholec80", cholec_root, split="all")
    first = table.select(table.video == "video49")
    f1, v1, _ = extract_features(model, first, tmp_path, num_frames=1, mode="frame")  # "interrupted" after one video
    cache = _only_cache(tmp_path)
    assert cache.name == settings_key(feature_settings(model, 1, "frame", 1.0))
    meta = json.loads((cache / "meta.json").read_text())
    assert list(meta["videos"]) == ["video49"] and meta["settings"]["weights_hash"] == weights_hash(model)
    assert meta["settings"]["precision"] == "fp32"
    mtime = (cache / "video49.safetensors").stat().st_mtime_ns
    feats, valid, _ = extract_features(model, table, tmp_path, num_frames=1, mode="frame")
    assert (cache / "video49.safetensors").stat().st_mtime_ns == mtime  # not re-extracted
    assert valid.all() and np.allclose(feats[:8], f1)


def test_other_weights_or_rows_are_recomputed_not_stale(cholec_root, tmp_path):
    from tests.helpers import small_model

    model = small_model("tiny")
    table = D.load_benchmark("cholec80", cholec_root, split="all")
    table = table.select(table.video == "video49")
    ref, _, _ = extract_features(model, table, tmp_path, num_frames=1, mode="frame")
    other = small_model("tiny")
    with torch.no_grad():
        for p in other.parameters():
            p.add_(0.05 * torch.randn_like(p))
    assert weights_hash(other) != weights_hash(model)
    got, _, _ = extract_features(other, table, tmp_path, num_frames=1, mode="frame")
    direct, _, _ = extract_features(other, table, tmp_path / "fresh", num_frames=1, mode="frame")
    assert np.allclose(got, direct, atol=1e-6) and not np.allclose(got, ref, atol=1e-3)
    assert len([p for p in tmp_path.iterdir() if p.is_dir() and p.name != "fresh"]) == 2  # one folder per weights
    other.precision = "bf16"  # another precision is another key, never the fp32 features
    assert settings_key(feature_settings(other, 1, "frame", 1.0)) != settings_key(feature_settings(model, 1, "frame", 1.0))
    # same model, different rows of the same video (times moved): recomputed, not served from the cache
    shifted = table.select(np.arange(len(table)) % 2 == 0)
    part, valid, _ = extract_features(model, shifted, tmp_path, num_frames=1, mode="frame")
    assert valid.all() and np.allclose(part, ref[::2], atol=1e-6)
