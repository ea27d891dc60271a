"""The SurgLaVi authors' evaluation (VindLU-based ``tasks/workflow_evaluation.py``,
``tool_evaluation.py``, ``triplet_evaluation.py``), re-stated for tests: the same sklearn and
ivtmetrics calls, on the rows of a ``predictions_*.csv`` grouped by ``video_idx`` and sorted by
``frame_idx`` as their ``groupby`` does. Independent of ``surgclip``'s readers and metrics."""
import ast
import csv
import warnings
from collections import defaultdict

import numpy as np
from sklearn.metrics import average_precision_score, f1_score


def read_rows(path) -> list[dict]:
    """Rows of a predictions CSV with the score and 0/1 vectors parsed as their ``literal_eval``."""
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    for r in rows:
        r["video_idx"], r["frame_idx"] = int(r["video_idx"]), int(r["frame_idx"])
        r["prediction"] = ast.literal_eval(r["prediction"])
        gt = r["ground_truth"]
        r["ground_truth"] = ast.literal_eval(gt) if gt.startswith("[") else int(gt)
    return rows


def _videos(rows):
    groups = defaultdict(list)
    for r in rows:
        groups[r["video_idx"]].append(r)
    return [sorted(groups[k], key=lambda r: r["frame_idx"]) for k in sorted(groups)]


def _workflow_scores(preds, labels, num_classes):
    acc = (np.array(preds) == np.array(labels)).astype(int).sum().item() / len(labels)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        f1 = f1_score(labels, preds, average="macro", labels=list(range(num_classes)))
    return acc, f1


def workflow(rows, num_classes: int) -> dict:
    """``WorkflowEvaluator.evaluate``: video_avg_accuracy, video_avg_f1, overall_accuracy, overall_f1_average."""
    accs, f1s = [], []
    for video in _videos(rows):
        preds = np.stack([r["prediction"] for r in video]).argmax(axis=1)
        acc, f1 = _workflow_scores(preds, np.array([r["ground_truth"] for r in video]), num_classes)
        accs.append(acc)
        f1s.append(f1)
    acc, f1 = _workflow_scores(np.stack([r["prediction"] for r in rows]).argmax(axis=1),
                               np.array([r["ground_truth"] for r in rows]), num_classes)
    return {"video_avg_accuracy": np.mean(accs), "video_avg_f1": np.mean(f1s), "overall_accuracy": acc,
            "overall_f1_average": f1}


def _map(preds, labels):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ap = [average_precision_score(labels[:, c], preds[:, c]) for c in range(labels.shape[1])]
    return np.nanmean(ap)


def tools(rows) -> dict:
    """``ToolPresenceEvaluator.evaluate``: video_avg_mAP, overall_mAP."""
    maps = [_map(np.stack([r["prediction"] for r in v]), np.stack([r["ground_truth"] for r in v]))
            for v in _videos(rows)]
    return {"video_avg_mAP": np.mean(maps),
            "overall_mAP": _map(np.stack([r["prediction"] for r in rows]), np.stack([r["ground_truth"] for r in rows]))}


def triplets(rows_by_task: dict) -> dict:
    """``TripletEvaluator.evaluate`` with ivtmetrics: ``compute_video_AP(ignore_null=False)`` per
    sub-task, plus ``it`` and ``iv`` from the triplet recogniser."""
    import ivtmetrics

    sizes = {"triplet": 100, "instrument": 6, "verb": 10, "target": 15}
    recognisers = {task: ivtmetrics.Recognition(n) for task, n in sizes.items()}
    for task, rows in rows_by_task.items():
        for video in _videos(rows):
            recognisers[task].update(np.stack([r["ground_truth"] for r in video]),
                                     np.stack([r["prediction"] for r in video]))
            recognisers[task].video_end()
    out = {task: recognisers[task].compute_video_AP(ignore_null=False) for task in rows_by_task}
    out["instrument-target"] = recognisers["triplet"].compute_video_AP("it", ignore_null=False)
    out["instrument-verb"] = recognisers["triplet"].compute_video_AP("iv", ignore_null=False)
    return out
