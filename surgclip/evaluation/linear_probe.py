"""Linear probe on frozen features: N% of the training procedures, several seeds, logistic regression.

Procedures (videos) are sampled, not frames, so 10% means 10% of the surgeries. Scored on the test
table with the single-label metrics (per-video mean F1/accuracy and global), reported mean ± std
over seeds.
"""
from __future__ import annotations

import numpy as np

from . import metrics as M

PROTOCOL = ("linear probe: frozen clip features, logistic regression (sklearn lbfgs, standardised features) on "
            "N% of training procedures per seed; test per-video macro F1 / accuracy averaged over videos")


def sample_procedures(videos: list[str], percent: float, seed: int) -> list[str]:
    """ceil(percent% of) the procedures, at least one, drawn with ``seed``."""
    rng = np.random.default_rng(seed)
    n = max(1, int(np.ceil(len(videos) * percent / 100.0)))
    return sorted(rng.choice(sorted(videos), size=n, replace=False).tolist())


def linear_probe(train_x, train_y, train_videos, test_x, test_y, test_videos, percents=(10, 50, 100),
                 seeds=(0, 1, 2), C: float = 1.0, max_iter: int = 1000) -> dict:
    """Fit and score logistic regressions.

    Args:
        train_x: [N, D] features; train_y: [N] class ids; train_videos: [N] video ids.
        test_x, test_y, test_videos: the same for the test split.
        percents: percentages of training procedures.
        seeds: one fit per seed and percent.
    Returns:
        ``{"protocol", "results": {"10": {"f1_mean", "f1_std", "accuracy_mean", ..., "runs": [...]}}}``.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    train_videos, test_videos = np.asarray(train_videos), np.asarray(test_videos)
    procedures = list(dict.fromkeys(train_videos.tolist()))
    results = {}
    for pct in percents:
        runs = []
        for seed in seeds:
            chosen = sample_procedures(procedures, pct, seed)
            mask = np.isin(train_videos, chosen)
            if len(np.unique(train_y[mask])) < 2:
                runs.append({"seed": seed, "videos": chosen, "error": "fewer than 2 classes in the sampled procedures"})
                continue
            clf = make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=max_iter, random_state=seed))
            clf.fit(train_x[mask], train_y[mask])
            m = M.single_label_metrics(test_y, clf.predict(test_x), test_videos)
            runs.append({"seed": seed, "videos": chosen, "f1": m["f1"], "accuracy": m["accuracy"],
                         "global_f1": m["global_f1"], "global_accuracy": m["global_accuracy"]})
        ok = [r for r in runs if "f1" in r]
        summary = {"runs": runs, "num_procedures": len(chosen) if runs else 0}
        for key in ("f1", "accuracy", "global_f1", "global_accuracy"):
            vals = np.array([r[key] for r in ok])
            summary[f"{key}_mean"] = float(vals.mean()) if len(vals) else float("nan")
            summary[f"{key}_std"] = float(vals.std()) if len(vals) else float("nan")
        results[str(pct)] = summary
    return {"protocol": PROTOCOL, "results": results}
