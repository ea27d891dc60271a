"""The linear probe over procedures and seeds (the feature cache is tested in test_features.py)."""
import numpy as np

from surgclip.evaluation.linear_probe import linear_probe, sample_procedures


def test_linear_probe_percent_and_seeds():
    rng = np.random.default_rng(0)
    videos = np.repeat([f"v{i}" for i in range(10)], 20)
    y = rng.integers(0, 3, 200)
    x = np.eye(3)[y] * 3 + rng.standard_normal((200, 3)) * 0.3
    res = linear_probe(x, y, videos, x[:60], y[:60], videos[:60], percents=(10, 100), seeds=(0, 1))
    assert res["results"]["100"]["f1_mean"] > 0.95
    assert res["results"]["10"]["num_procedures"] == 1 and len(res["results"]["10"]["runs"]) == 2
    assert sample_procedures([f"v{i}" for i in range(10)], 50, 0) != sample_procedures([f"v{i}" for i in range(10)], 50, 1)
