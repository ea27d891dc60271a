"""Cached feature extraction (resumes per video) and the linear probe over procedures and seeds."""
import json

import numpy as np

from surgclip.evaluation import benchmarks as B
from surgclip.evaluation.features import extract_features
from surgclip.evaluation.linear_probe import linear_probe, sample_procedures


def test_feature_cache_resumes(cholec_root, tmp_path, tiny_model):
    model, _, _ = tiny_model
    table = B.load_cholec80(cholec_root, split="all")
    first = table.select(table.video == "video49")
    f1, v1, _ = extract_features(model, first, tmp_path, num_frames=1, mode="frame")  # "interrupted" after one video
    meta = json.loads((tmp_path / "meta.json").read_text())
    assert list(meta["videos"]) == ["video49"]
    mtime = (tmp_path / "video49.safetensors").stat().st_mtime_ns
    feats, valid, _ = extract_features(model, table, tmp_path, num_frames=1, mode="frame")
    assert (tmp_path / "video49.safetensors").stat().st_mtime_ns == mtime  # not re-extracted
    assert valid.all() and np.allclose(feats[:8], f1)


def test_linear_probe_percent_and_seeds():
    rng = np.random.default_rng(0)
    videos = np.repeat([f"v{i}" for i in range(10)], 20)
    y = rng.integers(0, 3, 200)
    x = np.eye(3)[y] * 3 + rng.standard_normal((200, 3)) * 0.3
    res = linear_probe(x, y, videos, x[:60], y[:60], videos[:60], percents=(10, 100), seeds=(0, 1))
    assert res["results"]["100"]["f1_mean"] > 0.95
    assert res["results"]["10"]["num_procedures"] == 1 and len(res["results"]["10"]["runs"]) == 2
    assert sample_procedures([f"v{i}" for i in range(10)], 50, 0) != sample_procedures([f"v{i}" for i in range(10)], 50, 1)
