"""Linear probe on frozen features: N% of the training procedures or k labelled frames per class,
several seeds, logistic regression.

Procedures (videos) are sampled, not frames, so 10% means 10% of the surgeries. k-shot draws k
labelled frames of each class from the training procedures (all of a class's frames when it has
fewer than k). Both are scored on the test table with the single-label metrics (per-video mean
F1/accuracy and global), reported mean ± std over seeds under one format: ``results["10"]`` for
10% of procedures, ``results["4-shot"]`` for 4 frames per class.

Multi-label tasks (tools, CholecT50 triplets and components) pass targets ``[N, C]``: one logistic
regression per class (one-vs-rest) scores every test frame, and the entry holds ``mAP_mean/std``
(frame-level mAP, or the video-wise AP of ivtmetrics with ``video_wise=True``); k-shot then draws k
frames in which each class is present.
"""
from __future__ import annotations

import numpy as np

from . import metrics as M

PROTOCOL = ("linear probe: frozen clip features, logistic regression (sklearn lbfgs, standardised features) on "
            "N% of training procedures (key 'N') or k labelled training frames per class (key 'k-shot') per seed; "
            "test per-video macro F1 / accuracy averaged over videos")
SUMMARY_KEYS = ("f1", "accuracy", "global_f1", "global_accuracy")
MULTILABEL_KEYS = ("mAP", "global_mAP")


def sample_procedures(videos: list[str], percent: float, seed: int) -> list[str]:
    """ceil(percent% of) the procedures, at least one, drawn with ``seed``."""
    rng = np.random.default_rng(seed)
    n = max(1, int(np.ceil(len(videos) * percent / 100.0)))
    return sorted(rng.choice(sorted(videos), size=n, replace=False).tolist())


def sample_shots(labels, shots: int, seed: int) -> np.ndarray:
    """Row indices of ``shots`` frames per class (all of a class's frames if it has fewer), drawn with ``seed``.

    Args:
        labels: [N] class ids of the training frames, or [N, C] 0/1 targets (a frame counts for
            every class present in it; the union of the draws is returned).
        shots: frames per class (k >= 1).
        seed: numpy Generator seed; classes are visited in ascending id order so the draw is reproducible.
    Returns:
        int64 [<= k * C] sorted row indices.
    """
    if int(shots) < 1:
        raise ValueError(f"shots must be >= 1, got {shots}")
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    picked = []
    if labels.ndim == 2:
        members = [np.flatnonzero(labels[:, c] > 0) for c in range(labels.shape[1])]
    else:
        members = [np.flatnonzero(labels == c) for c in np.unique(labels)]
    for rows in members:
        if len(rows):
            picked.append(rng.choice(rows, size=min(int(shots), len(rows)), replace=False))
    return np.unique(np.concatenate(picked)).astype(np.int64) if picked else np.zeros(0, np.int64)


def summarize_runs(runs: list[dict], keys=SUMMARY_KEYS, **extra) -> dict:
    """Mean and std over the runs that produced ``keys[0]`` (failed runs keep their ``error``).

    Returns:
        ``{"runs", **extra, "f1_mean", "f1_std", "accuracy_mean", ..., "global_accuracy_std"}`` (NaN when no
        run), or ``mAP_mean`` / ``mAP_std`` with ``keys=MULTILABEL_KEYS``.
    """
    ok = [r for r in runs if keys[0] in r]
    summary = {"runs": runs, **extra}
    for key in keys:
        vals = np.array([r[key] for r in ok], dtype=np.float64)
        summary[f"{key}_mean"] = float(vals.mean()) if len(vals) else float("nan")
        summary[f"{key}_std"] = float(vals.std()) if len(vals) else float("nan")
    return summary


def linear_probe(train_x, train_y, train_videos, test_x, test_y, test_videos, percents=(10, 50, 100),
                 seeds=(0, 1, 2), shots=(), C: float = 1.0, max_iter: int = 1000, video_wise: bool = False,
                 num_classes: int | None = None, convention: str = M.DEFAULT_CONVENTION) -> dict:
    """Fit and score logistic regressions.

    Args:
        train_x: [N, D] features; train_y: [N] class ids (single-label) or [N, C] 0/1 targets
            (multi-label: one-vs-rest, scored by mAP); train_videos: [N] video ids.
        test_x, test_y, test_videos: the same for the test split.
        percents: percentages of training procedures (keys ``str(pct)``).
        seeds: one fit per seed and percent / shot count.
        shots: frames per class drawn from all training procedures (keys ``f"{k}-shot"``), e.g. (1, 2, 4, 8, 16).
        C, max_iter: sklearn ``LogisticRegression`` settings.
        video_wise: multi-label only: score with ivtmetrics' video-wise AP (CholecT50) instead of
            frame-level mAP.
        num_classes: classes of a single-label task (default: the largest id seen + 1); every class
            counts under ``surglavi``.
        convention: metric convention (``metrics.CONVENTIONS``).
    Returns:
        ``{"protocol", "results": {"10": {...}, "4-shot": {...}}}`` where each entry holds
        ``f1_mean``, ``f1_std``, ``accuracy_mean``, ``accuracy_std``, ``global_*_mean/std``, ``runs``
        (per seed: seed, f1, accuracy, global_f1, global_accuracy, num_train_frames; or an ``error``),
        plus ``num_procedures`` (percent entries) or ``shots`` (k-shot entries); ``scores``:
        ``{"<entry>/seed<k>": [N_test, C] test scores}`` (class probabilities, or per-class decision
        scores for multi-label) of every fitted run, for the predictions files.
    """
    train_x, train_y, test_x, test_y = map(np.asarray, (train_x, train_y, test_x, test_y))
    train_videos, test_videos = np.asarray(train_videos), np.asarray(test_videos)
    procedures = list(dict.fromkeys(train_videos.tolist()))
    multilabel = train_y.ndim == 2
    keys = MULTILABEL_KEYS if multilabel else SUMMARY_KEYS
    if not multilabel:
        num_classes = int(num_classes or max(train_y.max(), test_y.max()) + 1)
    kept_scores = {}

    def fit_and_score(rows: np.ndarray, seed: int, entry: str, **info) -> dict:
        if multilabel:
            y = train_y[rows]
            if not ((y > 0).any(0) & (y == 0).any(0)).any():
                return {"seed": seed, **info, "error": "no class both present and absent in the sampled training frames"}
            scores = _fit_scores(train_x[rows], y, test_x, C, max_iter, seed)
            m = (M.video_wise_ap(test_y, scores, test_videos, convention=convention) if video_wise
                 else M.multilabel_metrics(test_y, scores, test_videos, convention))
        else:
            if len(np.unique(train_y[rows])) < 2:
                return {"seed": seed, **info, "error": "fewer than 2 classes in the sampled training frames"}
            scores = _fit_proba(train_x[rows], train_y[rows], test_x, num_classes, C, max_iter, seed)
            m = M.single_label_metrics(test_y, scores.argmax(1), test_videos, num_classes, convention)
        kept_scores[f"{entry}/seed{seed}"] = scores
        return {"seed": seed, **info, "num_train_frames": int(len(rows)), **{k: m[k] for k in keys}}

    results = {}
    for pct in percents:
        runs, chosen = [], []
        for seed in seeds:
            chosen = sample_procedures(procedures, pct, seed)
            runs.append(fit_and_score(np.flatnonzero(np.isin(train_videos, chosen)), seed, str(pct), videos=chosen))
        results[str(pct)] = summarize_runs(runs, keys, num_procedures=len(chosen))
    for k in shots:
        runs = [fit_and_score(sample_shots(train_y, int(k), seed), seed, f"{int(k)}-shot") for seed in seeds]
        results[f"{int(k)}-shot"] = summarize_runs(runs, keys, shots=int(k))
    protocol = PROTOCOL
    if multilabel:
        protocol = (PROTOCOL.split("; test")[0].replace("logistic regression", "one-vs-rest logistic regression per class")
                    + ("; test video-wise AP (ivtmetrics) averaged over classes" if video_wise
                       else "; test mAP over classes present in the test frames"))
    return {"protocol": protocol + f"; metric convention {convention}", "results": results, "scores": kept_scores}


def _fit_proba(x, y, test_x, num_classes: int, C: float, max_iter: int, seed: int) -> np.ndarray:
    """[N_test, num_classes] class probabilities of a standardised logistic regression; a class
    absent from the training frames scores 0 (its argmax is the regression's prediction)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    clf = make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=max_iter, random_state=seed))
    clf.fit(x, y)
    out = np.zeros((len(test_x), num_classes), dtype=np.float64)
    out[:, clf.classes_.astype(np.int64)] = clf.predict_proba(test_x)
    return out


def _fit_scores(x, y, test_x, C: float, max_iter: int, seed: int) -> np.ndarray:
    """[N_test, C] decision scores of one logistic regression per class; a class that is always
    absent (or always present) in the training frames scores a constant (-1 or +1)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    scaler = StandardScaler().fit(x)
    xs, ts = scaler.transform(x), scaler.transform(test_x)
    scores = np.empty((len(test_x), y.shape[1]), dtype=np.float64)
    for c in range(y.shape[1]):
        yc = (y[:, c] > 0).astype(int)
        if yc.min() == yc.max():
            scores[:, c] = 1.0 if yc[0] else -1.0
            continue
        clf = LogisticRegression(C=C, max_iter=max_iter, random_state=seed).fit(xs, yc)
        scores[:, c] = clf.decision_function(ts)
    return scores
