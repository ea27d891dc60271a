"""The linear probe over procedures and seeds (the feature cache is tested in test_features.py)."""
import numpy as np
import pytest

from surgclip.evaluation.linear_probe import linear_probe, sample_procedures, sample_shots


def test_linear_probe_percent_and_seeds():
    rng = np.random.default_rng(0)
    videos = np.repeat([f"v{i}" for i in range(10)], 20)
    y = rng.integers(0, 3, 200)
    x = np.eye(3)[y] * 3 + rng.standard_normal((200, 3)) * 0.3
    res = linear_probe(x, y, videos, x[:60], y[:60], videos[:60], percents=(10, 100), seeds=(0, 1))
    assert res["results"]["100"]["f1_mean"] > 0.95
    assert res["results"]["10"]["num_procedures"] == 1 and len(res["results"]["10"]["runs"]) == 2
    assert sample_procedures([f"v{i}" for i in range(10)], 50, 0) != sample_procedures([f"v{i}" for i in range(10)], 50, 1)


def test_multilabel_probe_equals_one_vs_rest_sklearn():
    """Tool-style targets [N, C]: the probe's mAP equals sklearn's OneVsRestClassifier over the same
    standardised features, scored by average_precision_score over classes present in the test frames."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import average_precision_score
    from sklearn.multiclass import OneVsRestClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    rng = np.random.default_rng(0)
    videos = np.repeat([f"v{i}" for i in range(6)], 30)
    targets = (rng.random((180, 4)) < [0.5, 0.3, 0.2, 0.0]).astype(np.uint8)  # class 3 never present
    x = targets @ rng.standard_normal((4, 8)) + rng.standard_normal((180, 8))
    train, test = videos < "v4", videos >= "v4"
    res = linear_probe(x[train], targets[train], videos[train], x[test], targets[test], videos[test],
                       percents=(100,), seeds=(0,), shots=(5,), convention="camma")
    ref = OneVsRestClassifier(make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000, random_state=0)))
    scores = ref.fit(x[train][:, :], targets[train][:, :3]).decision_function(x[test])
    expected = np.mean([average_precision_score(targets[test][:, c], scores[:, c]) for c in range(3)])
    assert res["results"]["100"]["global_mAP_mean"] == pytest.approx(expected, rel=1e-6)
    assert "one-vs-rest" in res["protocol"] and "f1_mean" not in res["results"]["100"]
    run = res["results"]["5-shot"]["runs"][0]
    assert 5 <= run["num_train_frames"] <= 15  # 5 frames for each of the 3 present classes, some shared


def test_multilabel_shots_hold_every_present_class():
    targets = np.zeros((40, 3), np.uint8)
    targets[:30, 0] = 1
    targets[5:8, 1] = 1  # 3 frames only
    rows = sample_shots(targets, 4, seed=0)
    assert targets[rows, 0].sum() >= 4 and targets[rows, 1].sum() == 3 and targets[rows, 2].sum() == 0
    assert list(rows) == sorted(set(rows.tolist()))
