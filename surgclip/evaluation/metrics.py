"""Metrics as small pure functions over numpy arrays (torch tensors are accepted).

Two named conventions, written into every report (``CONVENTIONS``):

- ``surglavi``: what the SurgLaVi authors' released evaluation code computes (``WorkflowEvaluator``,
  ``ToolPresenceEvaluator``, ``TripletEvaluator``), with the same sklearn and ivtmetrics calls.
- ``camma``: CAMMA's papers (SurgVLP, ivtmetrics' original intent): only the classes present count.

Every function returns both aggregations: the mean over videos (``accuracy``, ``f1``, ``mAP``) and
all frames pooled (``global_accuracy``, ``global_f1``, ``global_mAP``).
"""
from __future__ import annotations

import warnings

import numpy as np

CONVENTIONS = {
    "surglavi": ("SurgLaVi evaluation code: per video, accuracy and sklearn f1_score(average='macro', "
                 "labels=range(num_classes)) (every class counts; a class absent from truth and prediction scores 0); "
                 "multi-label: per-class sklearn average_precision_score, a class with no positive scores 0 "
                 "(as current sklearn returns), nanmean over classes; triplets: ivtmetrics compute_video_AP("
                 "ignore_null=False) per sub-task, iv/it from the triplet scores; then the mean over videos, "
                 "and the same over all frames pooled ('global')"),
    "camma": ("CAMMA: per video, macro F1 over the classes present in truth or prediction, accuracy; "
              "multi-label: average precision of the classes with a positive (absent classes are NaN and left out); "
              "then the mean over videos, and the same over all frames pooled ('global')"),
}
DEFAULT_CONVENTION = "surglavi"


def check_convention(convention: str) -> str:
    """``convention`` if known, else a ValueError naming the known ones."""
    if convention not in CONVENTIONS:
        raise ValueError(f"unknown metric convention {convention!r}; expected one of {sorted(CONVENTIONS)}")
    return convention


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


def class_f1(truth, pred, num_classes: int) -> tuple[np.ndarray, float]:
    """([C] F1 per class, macro F1) over every class ``0..num_classes-1``, exactly as the SurgLaVi
    code calls sklearn: ``f1_score(labels, preds, average=None | "macro", labels=list(range(C)))``;
    a class absent from both truth and prediction scores 0."""
    from sklearn.metrics import f1_score

    labels = list(range(int(num_classes)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # sklearn's UndefinedMetricWarning for the absent classes
        per_class = f1_score(truth, pred, average=None, labels=labels)
        average = f1_score(truth, pred, average="macro", labels=labels)
    return np.asarray(per_class, dtype=np.float64), float(average)


def confusion_matrix(truth, pred, num_classes: int) -> np.ndarray:
    """[C, C] counts, rows = truth, columns = prediction."""
    out = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(out, (_np(truth).astype(np.int64), _np(pred).astype(np.int64)), 1)
    return out


def _videos_in_order(videos: np.ndarray) -> list:
    return list(dict.fromkeys(videos.tolist()))


def single_label_metrics(truth, pred, videos, num_classes: int | None = None, convention: str = "camma") -> dict:
    """Per-video and pooled accuracy / macro F1 under a metric convention.

    Args:
        truth, pred: [N] class ids.
        videos: [N] video id of each row.
        num_classes: classes of the task (required by ``surglavi``: every class counts).
        convention: ``surglavi`` | ``camma`` (``CONVENTIONS``).
    Returns:
        ``accuracy``, ``f1`` (+ ``_std``): mean (std) over videos; ``global_accuracy``, ``global_f1``:
        all rows pooled; ``per_video`` {video: {accuracy, f1, n}}; ``surglavi`` adds ``f1_per_class``
        (mean over videos) and ``global_f1_per_class``; ``convention``, ``num_videos``, ``num_frames``.
    """
    check_convention(convention)
    truth, pred, videos = _np(truth).astype(np.int64), _np(pred).astype(np.int64), np.asarray(videos)
    if convention == "surglavi" and num_classes is None:
        raise ValueError("the surglavi convention needs num_classes (every class of the task counts)")
    per_video, per_class = {}, []
    for v in _videos_in_order(videos):
        m = videos == v
        if convention == "surglavi":
            f1_c, f1 = class_f1(truth[m], pred[m], num_classes)
            per_class.append(f1_c)
        else:
            f1 = macro_f1(truth[m], pred[m])
        per_video[v] = {"accuracy": accuracy(truth[m], pred[m]), "f1": f1, "n": int(m.sum())}
    accs = np.array([r["accuracy"] for r in per_video.values()])
    f1s = np.array([r["f1"] for r in per_video.values()])
    nan = float("nan")
    out = {
        "accuracy": float(accs.mean()) if len(accs) else nan, "accuracy_std": float(accs.std()) if len(accs) else nan,
        "f1": float(f1s.mean()) if len(f1s) else nan, "f1_std": float(f1s.std()) if len(f1s) else nan,
        "global_accuracy": accuracy(truth, pred), "convention": convention,
        "num_videos": len(per_video), "num_frames": int(len(truth)), "per_video": per_video,
    }
    if convention == "surglavi":
        out["global_f1_per_class"], out["global_f1"] = class_f1(truth, pred, num_classes)
        out["f1_per_class"] = np.mean(per_class, axis=0) if per_class else np.full(num_classes, nan)
    else:
        out["global_f1"] = macro_f1(truth, pred)
    return out


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


def classwise_ap(targets, scores, convention: str = "camma") -> np.ndarray:
    """[C] AP per class. targets, scores: [N, C].

    A class without a positive is the convention's explicit choice: ``camma`` NaN (left out of the
    means), ``surglavi`` 0.0: what ``sklearn.metrics.average_precision_score`` returns there in
    current scikit-learn (1.9 tested), so the SurgLaVi and ivtmetrics code run today count it as 0;
    older releases returned NaN or -0.0, which ivtmetrics turned into NaN. Fixing the value here
    keeps the numbers independent of the installed scikit-learn.
    """
    targets, scores = _np(targets), _np(scores)
    ap = np.array([average_precision(targets[:, c], scores[:, c]) for c in range(targets.shape[1])])
    if check_convention(convention) == "surglavi":
        ap[np.isnan(ap)] = 0.0
    return ap


def _nanmean(x) -> float:
    x = np.asarray(x, dtype=np.float64)
    return float(np.nanmean(x)) if np.isfinite(x).any() else float("nan")


def _per_video_ap(targets: np.ndarray, scores: np.ndarray, videos: np.ndarray, convention: str):
    """([V, C] AP per class in each video, {video: that video's NaN-mean AP}), videos in order."""
    logs, per_video = [], {}
    for v in _videos_in_order(videos):
        m = videos == v
        logs.append(classwise_ap(targets[m], scores[m], convention))
        per_video[v] = _nanmean(logs[-1])
    return (np.stack(logs) if logs else np.full((1, targets.shape[1]), np.nan)), per_video


def multilabel_metrics(targets, scores, videos, convention: str = "camma") -> dict:
    """Tool presence: per video, AP per class and their NaN-mean; then the mean over videos
    (``mAP``, SurgLaVi's ``video_avg_mAP``) and, pooled over all frames, ``global_mAP``
    (``overall_mAP``).

    Args:
        targets: [N, C] 0/1; scores: [N, C]; videos: [N] video ids.
    Returns:
        ``{"mAP", "mAP_std", "AP": [C] (mean over videos), "global_mAP", "global_AP": [C],
        "per_video_mAP": {video: float}, "convention"}``.
    """
    targets, scores, videos = _np(targets), _np(scores), np.asarray(videos)
    logs, per_video = _per_video_ap(targets, scores, videos, convention)
    vids = np.array(list(per_video.values()), dtype=np.float64)
    global_ap = classwise_ap(targets, scores, convention)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a class with no positive in any video (camma)
        per_class = np.nanmean(logs, axis=0)
    return {"mAP": _nanmean(vids), "mAP_std": float(np.nanstd(vids)) if np.isfinite(vids).any() else float("nan"),
            "AP": per_class.tolist(), "global_mAP": _nanmean(global_ap), "global_AP": global_ap.tolist(),
            "per_video_mAP": per_video, "convention": convention}


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


def pair_map(triplet_names: list[str], components: dict[str, list[str]], pair: str) -> np.ndarray:
    """Triplet -> instrument-verb (``iv``) or instrument-target (``it``) pair id, numbered as
    ivtmetrics numbers them: the pairs that occur, in ascending order of ``i * K + k``.

    Args:
        components: ``{"i": instruments, "v": verbs, "t": targets}`` class names in id order.
    """
    first = component_map(triplet_names, components["i"], "i")
    second = component_map(triplet_names, components[pair[1]], pair[1])
    key = first * len(components[pair[1]]) + second
    return np.unique(key, return_inverse=True)[1].reshape(-1)


def extract_component(matrix, mapping: np.ndarray) -> np.ndarray:
    """[N, 100] triplet labels/scores -> [N, K] component by max over the triplets of each id
    (ivtmetrics ``Disentangle.extract``)."""
    matrix = _np(matrix)
    return np.stack([matrix[:, mapping == k].max(1) for k in range(int(mapping.max()) + 1)], axis=1)


def video_wise_ap(targets, scores, videos, ignore_null: bool = False, convention: str = "camma") -> dict:
    """ivtmetrics ``Recognition.compute_video_AP``: AP per class within each video, NaN-mean over
    videos per class, then NaN-mean over classes (``mAP``); ``global_mAP`` is
    ``compute_global_AP`` (all frames pooled). A class without a positive in a video follows
    ``classwise_ap``'s convention.

    Args:
        targets: [N, C] 0/1; scores: [N, C]; videos: [N] video ids.
        ignore_null: drop the last 6 classes (the null-verb triplets), as ivtmetrics does for ``ivt``.
    Returns:
        ``{"mAP", "AP": [C], "global_mAP", "global_AP": [C], "per_video_mAP": {video: float}, "convention"}``.
    """
    targets, scores, videos = _np(targets), _np(scores), np.asarray(videos)
    logs, per_video = _per_video_ap(targets, scores, videos, convention)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        classwise = np.nanmean(logs, axis=0)
    global_ap = classwise_ap(targets, scores, convention)
    if ignore_null:
        classwise, global_ap = classwise[:-6], global_ap[:-6]
    return {"mAP": _nanmean(classwise), "AP": classwise.tolist(), "global_mAP": _nanmean(global_ap),
            "global_AP": global_ap.tolist(), "per_video_mAP": per_video, "convention": convention}


TRIPLET_COMPONENTS = {"triplet": "ivt", "instrument": "i", "verb": "v", "target": "t"}


def triplet_metrics(targets: dict, scores: dict, videos, triplet_names: list[str], component_names: dict,
                    convention: str = "camma") -> dict:
    """CholecT50 as the SurgLaVi ``TripletEvaluator`` reports it: ``video_wise_ap`` (ivtmetrics
    ``compute_video_AP(ignore_null=False)``) of each sub-task scored with its own prompts
    (``ivt``, ``i``, ``v``, ``t``), plus ``iv`` and ``it`` extracted from the triplet scores.

    Args:
        targets, scores: ``{"triplet": [N, 100], "instrument": [N, 6], "verb": [N, 10], "target": [N, 15]}``
            (sub-tasks missing from ``scores`` are left out).
        videos: [N] video ids (the same rows in every sub-task).
        triplet_names: the 100 ``instrument,verb,target`` names; component_names: ``{"i", "v", "t"}`` names.
    Returns:
        ``{"ivt": {...}, "i": {...}, "v": {...}, "t": {...}, "iv": {...}, "it": {...}, "mAP": ivt mAP,
        "global_mAP", "convention"}``.
    """
    out = {}
    for task, key in TRIPLET_COMPONENTS.items():
        if task in scores:
            out[key] = video_wise_ap(targets[task], scores[task], videos, convention=convention)
    if "triplet" in scores:
        for pair in ("iv", "it"):
            mapping = pair_map(triplet_names, component_names, pair)
            out[pair] = video_wise_ap(extract_component(targets["triplet"], mapping),
                                      extract_component(scores["triplet"], mapping), videos, convention=convention)
    head = out.get("ivt") or next(iter(out.values()))
    return {**out, "mAP": head["mAP"], "global_mAP": head["global_mAP"], "convention": convention}


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
