"""k-shot linear probing: the frames drawn, and every run's numbers against a direct sklearn fit."""
import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, f1_score
from sklearn.preprocessing import StandardScaler

from surgclip.evaluation.linear_probe import linear_probe, sample_shots


def _data(seed=0, n_videos=6, per_video=30, classes=4, noise=1.0):
    rng = np.random.default_rng(seed)
    videos = np.repeat([f"v{i}" for i in range(n_videos)], per_video)
    y = rng.integers(0, classes, len(videos))
    x = np.eye(classes)[y] * 2.0 + rng.standard_normal((len(videos), classes)) * noise
    return x, y, videos


def test_sample_shots_draws_k_per_class_reproducibly():
    y = np.array([0] * 10 + [1] * 3 + [2] * 7)
    rows = sample_shots(y, 4, seed=0)
    assert np.bincount(y[rows]).tolist() == [4, 3, 4]  # class 1 has only 3 frames: all of them
    assert np.array_equal(rows, sample_shots(y, 4, seed=0))
    assert not np.array_equal(rows, sample_shots(y, 4, seed=1))
    assert len(np.unique(rows)) == len(rows)
    with pytest.raises(ValueError, match="shots must be >= 1"):
        sample_shots(y, 0, seed=0)


def test_kshot_matches_sklearn_per_seed():
    xtr, ytr, vtr = _data(0)
    xte, yte, vte = _data(1, n_videos=3)
    res = linear_probe(xtr, ytr, vtr, xte, yte, vte, percents=(50,), seeds=(0, 1, 2), shots=(1, 4, 16))
    assert list(res["results"]) == ["50", "1-shot", "4-shot", "16-shot"]
    for k in (1, 4, 16):
        entry = res["results"][f"{k}-shot"]
        assert entry["shots"] == k and len(entry["runs"]) == 3
        f1s, accs = [], []
        for run, seed in zip(entry["runs"], (0, 1, 2)):
            # brute force: draw k frames per class by hand with the same generator, fit sklearn directly
            rng = np.random.default_rng(seed)
            rows = np.sort(np.concatenate([rng.choice(np.flatnonzero(ytr == c), k, replace=False) for c in range(4)]))
            scaler = StandardScaler().fit(xtr[rows])
            clf = LogisticRegression(max_iter=1000, random_state=seed).fit(scaler.transform(xtr[rows]), ytr[rows])
            pred = clf.predict(scaler.transform(xte))
            per_video_f1 = [f1_score(yte[vte == v], pred[vte == v], average="macro") for v in dict.fromkeys(vte)]
            per_video_acc = [accuracy_score(yte[vte == v], pred[vte == v]) for v in dict.fromkeys(vte)]
            assert run["num_train_frames"] == 4 * k
            assert run["f1"] == pytest.approx(np.mean(per_video_f1))
            assert run["accuracy"] == pytest.approx(np.mean(per_video_acc))
            assert run["global_f1"] == pytest.approx(f1_score(yte, pred, average="macro"))
            f1s.append(run["f1"]), accs.append(run["accuracy"])
        assert entry["f1_mean"] == pytest.approx(np.mean(f1s)) and entry["f1_std"] == pytest.approx(np.std(f1s))
        assert entry["accuracy_mean"] == pytest.approx(np.mean(accs))
    # more shots help on these separable-with-noise features
    assert res["results"]["16-shot"]["f1_mean"] > res["results"]["1-shot"]["f1_mean"]
    # the percent entries keep their format
    assert res["results"]["50"]["num_procedures"] == 3 and "f1_mean" in res["results"]["50"]


def test_kshot_single_class_run_is_an_error_entry():
    xtr, ytr, vtr = _data(0)
    ytr = np.zeros_like(ytr)
    res = linear_probe(xtr, ytr, vtr, xtr[:10], ytr[:10], vtr[:10], percents=(), seeds=(0,), shots=(2,))
    entry = res["results"]["2-shot"]
    assert "fewer than 2 classes" in entry["runs"][0]["error"] and np.isnan(entry["f1_mean"])
