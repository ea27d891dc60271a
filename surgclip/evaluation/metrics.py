"""Metrics as small pure functions over numpy arrays (torch tensors are accepted).

- ``single_label_metrics``: per-video accuracy and macro F1 (classes present in truth or
  prediction, as sklearn's ``f1_score(average="macro")`` does), mean over videos (CAMMA), and global.
- ``multilabel_map``: mean over classes of average precision (tools).
- ``video_wise_ap``: CholecT50 triplet AP as ``ivtmetrics.Recognition.compute_video_AP`` computes it.
- ``retrieval_metrics``: R@1/5/10, median and mean rank with ground truth on the diagonal.
"""
from __future__ import annotations

import numpy as np


def _np(x) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().float().cpu().numpy()
    return np.asarray(x)


def accuracy(truth, pred) -> float:
    """Fraction of equal labels. truth, pred: [N] int."""
    truth, pred = _np(truth), _np(pred)
    return float((truth == pred).mean()) if len(truth) else float("nan")


def macro_f1(truth, pred) -> float:
    """Mean F1 over the classes present in ``truth`` or ``pred`` (sklearn ``average="macro"``).

    A class only predicted (or only true) contributes F1 = 0.
    """
    truth, pred = _np(truth).astype(np.int64), _np(pred).astype(np.int64)
    classes = np.union1d(truth, pred)
    if not len(classes):
        return float("nan")
    f1 = []
    for c in classes:
        tp = np.sum((truth == c) & (pred == c))
        denom = np.sum(truth == c) + np.sum(pred == c)
        f1.append(2.0 * tp / denom if denom else 0.0)
    return float(np.mean(f1))


def confusion_matrix(truth, pred, num_classes: int) -> np.ndarray:
    """[C, C] counts, rows = truth, columns = prediction."""
    out = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(out, (_np(truth).astype(np.int64), _np(pred).astype(np.int64)), 1)
    return out


def single_label_metrics(truth, pred, videos) -> dict:
    """Per-video and global accuracy / macro F1.

    Args:
        truth, pred: [N] class ids.
        videos: [N] video id of each row.
    Returns:
        ``{"accuracy", "accuracy_std", "f1", "f1_std"}`` (mean/std over videos, CAMMA protocol),
        ``{"global_accuracy", "global_f1"}`` over all rows, ``per_video`` {video: {accuracy, f1, n}}.
    """
    truth, pred, videos = _np(truth), _np(pred), np.asarray(videos)
    per_video = {}
    for v in dict.fromkeys(videos.tolist()):
        m = videos == v
        per_video[v] = {"accuracy": accuracy(truth[m], pred[m]), "f1": macro_f1(truth[m], pred[m]), "n": int(m.sum())}
    accs = np.array([r["accuracy"] for r in per_video.values()])
    f1s = np.array([r["f1"] for r in per_video.values()])
    nan = float("nan")
    return {
        "accuracy": float(accs.mean()) if len(accs) else nan, "accuracy_std": float(accs.std()) if len(accs) else nan,
        "f1": float(f1s.mean()) if len(f1s) else nan, "f1_std": float(f1s.std()) if len(f1s) else nan,
        "global_accuracy": accuracy(truth, pred), "global_f1": macro_f1(truth, pred),
        "num_videos": len(per_video), "num_frames": int(len(truth)), "per_video": per_video,
    }


def average_precision(truth, scores) -> float:
    """AP of one class: mean over positives of the precision at their rank (ties: sklearn's step
    interpolation over distinct thresholds). NaN when there is no positive.

    Args:
        truth: [N] 0/1.
        scores: [N] float.
    """
    truth, scores = _np(truth).astype(bool), _np(scores).astype(np.float64)
    npos = int(truth.sum())
    if npos == 0:
        return float("nan")
    order = np.argsort(-scores, kind="mergesort")
    s, t = scores[order], truth[order]
    # evaluate precision/recall only at the last item of each run of tied scores
    last = np.r_[np.flatnonzero(np.diff(s) != 0), len(s) - 1]
    tp = np.cumsum(t)[last]
    precision = tp / (last + 1)
    recall = tp / npos
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def classwise_ap(targets, scores) -> np.ndarray:
    """[C] AP per class (NaN for classes without positives). targets, scores: [N, C]."""
    targets, scores = _np(targets), _np(scores)
    return np.array([average_precision(targets[:, c], scores[:, c]) for c in range(targets.shape[1])])


def multilabel_map(targets, scores) -> dict:
    """mAP over classes with at least one positive. targets: [N, C] 0/1; scores: [N, C].

    Returns: ``{"mAP", "AP": [C] (NaN = class absent)}``.
    """
    ap = classwise_ap(targets, scores)
    return {"mAP": float(np.nanmean(ap)) if np.isfinite(ap).any() else float("nan"), "AP": ap.tolist()}


def component_map(triplet_names: list[str], component_names: list[str], component: str) -> np.ndarray:
    """Triplet -> component id from ``"instrument,verb,target"`` names (ivtmetrics' ``maps.txt``).

    Args:
        triplet_names: [100] names like ``grasper,dissect,cystic_plate``.
        component_names: the component's class names in id order (e.g. the 6 instruments).
        component: ``i`` | ``v`` | ``t``.
    Returns:
        [num_triplets] component id of each triplet.
    """
    pos = {"i": 0, "v": 1, "t": 2}[component]
    lookup = {n: i for i, n in enumerate(component_names)}
    try:
        return np.array([lookup[n.split(",")[pos]] for n in triplet_names])
    except KeyError as err:
        raise ValueError(f"triplet component {err} not in the {component} class list {component_names}") from None


def extract_component(matrix, mapping: np.ndarray) -> np.ndarray:
    """[N, 100] triplet labels/scores -> [N, K] component by max over the triplets of each id
    (ivtmetrics ``Disentangle.extract``)."""
    matrix = _np(matrix)
    return np.stack([matrix[:, mapping == k].max(1) for k in range(int(mapping.max()) + 1)], axis=1)


def video_wise_ap(targets, scores, videos, ignore_null: bool = False) -> dict:
    """ivtmetrics ``compute_video_AP``: AP per class within each video (NaN where the video has no
    positive of that class), NaN-mean over videos per class, then NaN-mean over classes.

    ivtmetrics relies on sklearn returning NaN/-0 for classes without positives; newer sklearn
    returns 0 there, so this function makes the NaN explicit (the published protocol's intent).

    Args:
        targets: [N, C] 0/1; scores: [N, C]; videos: [N] video ids.
        ignore_null: drop the last 6 classes (the null-verb triplets), as ivtmetrics does for ``ivt``.
    Returns:
        ``{"mAP", "AP": [C], "per_video_mAP": {video: float}}``.
    """
    targets, scores, videos = _np(targets), _np(scores), np.asarray(videos)
    logs, per_video = [], {}
    for v in dict.fromkeys(videos.tolist()):
        m = videos == v
        ap = classwise_ap(targets[m], scores[m])
        logs.append(ap)
        per_video[v] = float(np.nanmean(ap)) if np.isfinite(ap).any() else float("nan")
    log = np.stack(logs)
    with np.errstate(all="ignore"):
        classwise = np.array([np.nanmean(col) if np.isfinite(col).any() else np.nan for col in log.T])
    if ignore_null:
        classwise = classwise[:-6]
    mean = float(np.nanmean(classwise)) if np.isfinite(classwise).any() else float("nan")
    return {"mAP": mean, "AP": classwise.tolist(), "per_video_mAP": per_video}


def retrieval_metrics(sim, groups=None) -> dict:
    """Text-to-clip (or clip-to-text) retrieval with the ground truth on the diagonal.

    Args:
        sim: [Nq, Nc] similarity (tensor or array), Nq <= Nc; query i's match is candidate i.
        groups: optional [Nc] ids marking candidates that are interchangeable ground truths (e.g. the
            same caption text paired with two clips): query i is answered by any candidate of its
            group, ranked by the best of them. None = the diagonal alone.
    Returns:
        ``{"R@1", "R@5", "R@10"}`` in percent, ``"MedR"``, ``"MeanR"`` (1-based ranks). Ties count
        against the query (the match ranks after every other candidate scoring at least as high).
    """
    sim = _np(sim).astype(np.float64)
    if sim.ndim != 2 or sim.shape[0] > sim.shape[1]:
        raise ValueError(f"expected a similarity matrix [Nq, Nc] with Nq <= Nc, got shape {sim.shape}")
    n = sim.shape[0]
    groups = np.arange(sim.shape[1]) if groups is None else np.asarray(groups)
    positive = groups[None, :] == groups[:n, None]  # [Nq, Nc]
    positive[np.arange(n), np.arange(n)] = True
    best = np.where(positive, sim, -np.inf).max(1)
    ranks = (np.where(positive, -np.inf, sim) >= best[:, None]).sum(1) + 1
    return {"R@1": 100.0 * float(np.mean(ranks <= 1)), "R@5": 100.0 * float(np.mean(ranks <= 5)),
            "R@10": 100.0 * float(np.mean(ranks <= 10)), "MedR": float(np.median(ranks)), "MeanR": float(np.mean(ranks))}


def retrieval_chance(groups, ks=(1, 5, 10)) -> dict:
    """Expected ``R@K`` (percent) of random scores when query i has ``|group of i|`` interchangeable
    ground truths among the N candidates: the mean over queries of 1 - C(N-g, K) / C(N, K)."""
    from math import comb

    groups = np.asarray(groups)
    n = len(groups)
    sizes = np.unique(groups, return_inverse=True, return_counts=True)[2][np.unique(groups, return_inverse=True)[1]]
    return {f"R@{k}": 100.0 * float(np.mean([1 - comb(n - g, min(k, n)) / comb(n, min(k, n)) for g in sizes]))
            for k in ks}
