"""Metrics against sklearn and brute-force references."""
import numpy as np
import pytest
import torch
from sklearn.metrics import accuracy_score, average_precision_score, f1_score

from surgclip.evaluation import metrics as M


def test_single_label_matches_sklearn_per_video():
    rng = np.random.default_rng(0)
    truth, pred = rng.integers(0, 7, 300), rng.integers(0, 7, 300)
    videos = np.repeat(["a", "b", "c"], 100)
    m = M.single_label_metrics(truth, pred, videos)
    accs = [accuracy_score(truth[videos == v], pred[videos == v]) for v in "abc"]
    f1s = [f1_score(truth[videos == v], pred[videos == v], average="macro") for v in "abc"]
    assert m["accuracy"] == pytest.approx(np.mean(accs)) and m["f1"] == pytest.approx(np.mean(f1s))
    assert m["global_f1"] == pytest.approx(f1_score(truth, pred, average="macro"))


def test_camma_f1_counts_only_classes_present():
    # CAMMA/SurgVLP: sklearn f1_score(average="macro") on one video = classes in truth or prediction
    truth, pred = np.array([0, 0, 1, 1]), np.array([0, 2, 1, 1])
    assert M.macro_f1(truth, pred) == pytest.approx(f1_score(truth, pred, average="macro"))
    assert M.macro_f1(truth, pred) == pytest.approx((2 / 3 + 1 + 0) / 3)


def test_average_precision_with_ties_matches_sklearn():
    rng = np.random.default_rng(1)
    for _ in range(30):
        t, s = rng.integers(0, 2, 40), np.round(rng.random(40), 1)
        if t.sum():
            assert M.average_precision(t, s) == pytest.approx(average_precision_score(t, s))
    targets, scores = rng.integers(0, 2, (50, 5)), rng.random((50, 5))
    targets[:, 3] = 0
    ref = np.mean([average_precision_score(targets[:, c], scores[:, c]) for c in (0, 1, 2, 4)])
    assert M.multilabel_metrics(targets, scores, np.zeros(50))["global_mAP"] == pytest.approx(ref)


def _brute_ap(t, s):
    order = np.argsort(-s, kind="mergesort")
    hits, precs = 0, []
    for rank, i in enumerate(order, 1):
        if t[i]:
            hits += 1
            precs.append(hits / rank)
    return np.mean(precs) if precs else np.nan


def test_video_wise_ap_matches_ivtmetrics_computation():
    """compute_video_AP: per video AP (NaN for absent classes), nanmean over videos, then classes."""
    rng = np.random.default_rng(2)
    targets = (rng.random((90, 12)) < 0.2).astype(int)
    scores = rng.random((90, 12))
    videos = np.repeat(["v1", "v2", "v3"], 30)
    targets[videos == "v2", 4] = 0
    log = np.array([[_brute_ap(targets[videos == v][:, c], scores[videos == v][:, c]) for c in range(12)]
                    for v in ("v1", "v2", "v3")])
    ref = np.nanmean(np.nanmean(log, axis=0))
    assert M.video_wise_ap(targets, scores, videos)["mAP"] == pytest.approx(ref)
    # component extraction: max over the triplets of each instrument
    names = ["grasper,retract,gb", "hook,dissect,gb", "grasper,grasp,liver"]
    mapping = M.component_map(names, ["grasper", "hook"], "i")
    assert mapping.tolist() == [0, 1, 0]
    assert M.extract_component(np.array([[0.1, 0.5, 0.7]]), mapping).tolist() == [[0.7, 0.5]]


def test_retrieval_metrics_brute_force():
    rng = np.random.default_rng(3)
    sim = torch.from_numpy(rng.standard_normal((40, 40)).astype(np.float32))
    ranks = [1 + sum(sim[i, j] >= sim[i, i] for j in range(40) if j != i) for i in range(40)]
    m = M.retrieval_metrics(sim)
    assert m["R@1"] == pytest.approx(100 * np.mean(np.array(ranks) <= 1))
    assert m["R@10"] == pytest.approx(100 * np.mean(np.array(ranks) <= 10))
    assert m["MedR"] == np.median(ranks) and m["MeanR"] == pytest.approx(np.mean(ranks))
    assert M.retrieval_metrics(np.eye(5))["R@1"] == 100.0


def test_retrieval_with_repeated_captions_brute_force():
    """Candidates of one group (the same caption text) answer for each other: the rank is that of the
    best-ranked member, counted among the candidates outside the group."""
    from math import comb

    rng = np.random.default_rng(4)
    groups = rng.integers(0, 25, 40)
    sim = rng.standard_normal((40, 40))
    ranks = []
    for i in range(40):
        best = max(sim[i, j] for j in range(40) if groups[j] == groups[i])
        ranks.append(1 + sum(sim[i, j] >= best for j in range(40) if groups[j] != groups[i]))
    m = M.retrieval_metrics(sim, groups)
    for k in (1, 5, 10):
        assert m[f"R@{k}"] == pytest.approx(100 * np.mean(np.array(ranks) <= k))
    assert m["MedR"] == np.median(ranks) and m["MeanR"] == pytest.approx(np.mean(ranks))
    assert M.retrieval_metrics(sim, np.arange(40)) == M.retrieval_metrics(sim)
    sizes = np.array([np.sum(groups == g) for g in groups])
    assert M.retrieval_chance(groups)["R@5"] == pytest.approx(100 * np.mean([1 - comb(40 - s, 5) / comb(40, 5) for s in sizes]))
    # the chance is what random scores get on average
    sims = rng.standard_normal((400, 40, 40))
    assert np.mean([M.retrieval_metrics(s, groups)["R@1"] for s in sims]) == pytest.approx(M.retrieval_chance(groups)["R@1"], rel=0.1)


def test_surglavi_convention_equals_the_official_sklearn_calls():
    """Every class counts for F1 (absent ones score 0); tools AP with no positive is 0 (current sklearn)."""
    import warnings

    rng = np.random.default_rng(5)
    videos = np.repeat(["a", "b", "c"], 40)
    truth, pred = rng.integers(0, 4, 120), rng.integers(0, 5, 120)  # classes 5, 6 never occur
    m = M.single_label_metrics(truth, pred, videos, num_classes=7, convention="surglavi")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = [f1_score(truth[videos == v], pred[videos == v], average="macro", labels=list(range(7))) for v in "abc"]
        assert m["f1"] == pytest.approx(np.mean(ref), abs=1e-12)
        assert m["global_f1"] == pytest.approx(f1_score(truth, pred, average="macro", labels=list(range(7))), abs=1e-12)
        assert m["f1"] < M.single_label_metrics(truth, pred, videos, convention="camma")["f1"]
        targets = (rng.random((120, 6)) < 0.3).astype(int)
        targets[videos == "b", 2] = 0
        targets[:, 5] = 0
        scores = rng.random((120, 6))
        per_video = [np.nanmean([average_precision_score(targets[videos == v][:, c], scores[videos == v][:, c])
                                 for c in range(6)]) for v in "abc"]
        tools = M.multilabel_metrics(targets, scores, videos, "surglavi")
    assert tools["mAP"] == pytest.approx(np.mean(per_video), abs=1e-12)
    camma = M.multilabel_metrics(targets, scores, videos, "camma")
    assert np.isnan(camma["AP"][5]) and camma["mAP"] > tools["mAP"]


@pytest.mark.parametrize("convention", ["surglavi", "camma"])
def test_triplet_metrics_equal_ivtmetrics(convention):
    """i, v, t, ivt each from its own scores and iv, it from the triplet scores, as ivtmetrics'
    compute_video_AP(ignore_null=False) computes them on the same frames (camma: absent classes NaN)."""
    ivtmetrics = pytest.importorskip("ivtmetrics")
    from surgclip.datasets import load_protocol
    from surgclip.datasets.protocols import task_classes

    protocol = load_protocol("cholect50")
    names = {k: task_classes(protocol, t) for k, t in (("i", "instrument"), ("v", "verb"), ("t", "target"))}
    sizes = {"triplet": 100, "instrument": 6, "verb": 10, "target": 15}
    rng = np.random.default_rng(6)
    videos = np.repeat(["VID01", "VID02", "VID03"], 50)
    targets = {t: (rng.random((150, n)) < 0.15).astype(int) for t, n in sizes.items()}
    scores = {t: rng.random((150, n)) for t, n in sizes.items()}
    ours = M.triplet_metrics(targets, scores, videos, task_classes(protocol, "triplet"), names, convention)
    for task, key in (("triplet", "ivt"), ("instrument", "i"), ("verb", "v"), ("target", "t"), ("it", "it"), ("iv", "iv")):
        source = "triplet" if task in ("it", "iv") else task
        rec = ivtmetrics.Recognition(sizes[source])
        for v in ("VID01", "VID02", "VID03"):
            rec.update(targets[source][videos == v], scores[source][videos == v])
            rec.video_end()
        ref = rec.compute_video_AP(task if task in ("it", "iv") else "ivt", ignore_null=False)
        if convention == "surglavi":  # ivtmetrics with current sklearn: an absent class scores 0
            assert ours[key]["mAP"] == pytest.approx(ref["mAP"], abs=1e-9), key
            np.testing.assert_allclose(ours[key]["AP"], ref["AP"], atol=1e-9)
        else:  # the NaN of older sklearn, ivtmetrics' intent: recompute with those classes left out
            present = [np.array([targets[source][videos == v][:, c].any() for c in range(sizes[source])])
                       for v in ("VID01", "VID02", "VID03")]
            if task in ("it", "iv"):
                assert np.isfinite(ours[key]["mAP"])
                continue
            log = np.array([np.where(p, a, np.nan) for p, a in zip(present, _video_aps(rec))])
            assert ours[key]["mAP"] == pytest.approx(np.nanmean(np.nanmean(log, 0)), abs=1e-9), key


def _video_aps(rec):
    """Per-video AP rows of an ivtmetrics Recognition (its own per-video computation)."""
    out = []
    for t, p in zip(rec.global_targets, rec.global_predictions):
        rec.reset()
        rec.update(t, p)
        out.append(rec.compute_AP("ivt")["AP"])
    return out
