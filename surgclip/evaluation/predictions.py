"""Per-frame predictions in the SurgLaVi evaluation code's layout, and scoring them.

``predictions_{dataset}.csv`` (``predictions_{task}_{dataset}.csv`` for CholecT50's sub-tasks) has the
columns ``video_idx, frame_idx, prediction, ground_truth``: ``prediction`` is the score vector as a
list (``[0.12, -0.3, ...]``), ``ground_truth`` the class id (phase, step, action) or the 0/1 list
(tools, triplets). Files written here add ``video`` and ``time_s`` after those four. Every run of
zero-shot, linear probe and CoOp writes such files, and ``score_predictions`` turns them into the
same metrics the run reported, under either metric convention.
"""
from __future__ import annotations

import ast
import csv
import io
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..utils import atomic_write_text
from . import metrics as M

COLUMNS = ("video_idx", "frame_idx", "prediction", "ground_truth")
EXTRA_COLUMNS = ("video", "time_s")


class PredictionsError(ValueError):
    """A predictions CSV that cannot be scored; the message names the file and row."""


@dataclass
class Predictions:
    """The rows of one predictions file.

    Attributes:
        video: [N] video key (the ``video`` column when present, else ``video_idx``), grouping rows
            into videos as the official code's ``groupby("video_idx")`` does.
        frame: [N] frame index.
        scores: [N, C] float64 score vectors.
        truth: [N] class ids (single-label) or [N, C] 0/1 (multi-label).
    """

    video: np.ndarray
    frame: np.ndarray
    scores: np.ndarray
    truth: np.ndarray

    @property
    def multilabel(self) -> bool:
        return self.truth.ndim == 2

    @property
    def num_classes(self) -> int:
        return int(self.scores.shape[1])


def video_indices(videos: list[str]) -> dict[str, int]:
    """Integer ``video_idx`` per video id: the number in the id when those are distinct (``video49``
    -> 49, ``BBP07`` -> 7), else the position in ``videos``."""
    nums = [re.search(r"(\d+)(?=\D*$)", v) for v in videos]
    if all(nums) and len({int(n.group(1)) for n in nums}) == len(videos):
        return {v: int(n.group(1)) for v, n in zip(videos, nums)}
    return {v: i for i, v in enumerate(videos)}


def _vector(values) -> str:
    return "[" + ", ".join(repr(float(x)) for x in values) + "]"


def write_predictions(path, video, frame, scores, truth, time_s=None) -> Path:
    """Write one predictions CSV atomically.

    Args:
        path: the file (``predictions_{dataset}.csv``).
        video: [N] video ids; frame: [N] frame indices; scores: [N, C]; truth: [N] or [N, C];
        time_s: optional [N] seconds (extra column).
    """
    video, scores, truth = np.asarray(video), np.asarray(scores, dtype=np.float64), np.asarray(truth)
    idx = video_indices(list(dict.fromkeys(video.tolist())))
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(COLUMNS + EXTRA_COLUMNS)
    for i in range(len(video)):
        gt = "[" + ", ".join(str(int(x)) for x in truth[i]) + "]" if truth.ndim == 2 else int(truth[i])
        writer.writerow([idx[video[i]], int(frame[i]), _vector(scores[i]), gt, video[i],
                         "" if time_s is None else repr(float(time_s[i]))])
    atomic_write_text(Path(path), buf.getvalue())
    return Path(path)


def _parse_vector(text: str, path, row: int, column: str) -> list:
    try:
        value = ast.literal_eval(text.strip())
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        raise PredictionsError(f"{path}:{row}: column {column!r} is not a list of numbers: {text[:60]!r}") from None
    if not isinstance(value, (list, tuple)) or not all(isinstance(x, (int, float)) and not isinstance(x, bool)
                                                          for x in value):
        raise PredictionsError(f"{path}:{row}: column {column!r} is not a list of numbers: {text[:60]!r}")
    return list(value)


def read_predictions(path, num_classes: int | None = None) -> Predictions:
    """Read a predictions CSV (ours or the official code's).

    Args:
        num_classes: expected score-vector length (the task's classes), or None to take the first row's.
    Raises:
        PredictionsError naming the file (and row) for a missing column, a malformed value, a score
        vector of the wrong length, or a file without rows.
    """
    path = Path(path)
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        missing = [c for c in COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise PredictionsError(f"{path}: missing column(s) {missing}; expected {list(COLUMNS)} "
                                   f"(found {reader.fieldnames})")
        has_video = "video" in reader.fieldnames
        video, frame, scores, truth = [], [], [], []
        for row, rec in enumerate(reader, start=2):
            try:
                vid, fr = int(rec["video_idx"]), int(float(rec["frame_idx"]))
            except (TypeError, ValueError):
                raise PredictionsError(f"{path}:{row}: video_idx and frame_idx must be integers, found "
                                       f"{rec['video_idx']!r}, {rec['frame_idx']!r}") from None
            vec = _parse_vector(rec["prediction"] or "", path, row, "prediction")
            num_classes = num_classes or len(vec)
            if len(vec) != num_classes:
                raise PredictionsError(f"{path}:{row}: score vector has {len(vec)} values, expected {num_classes} "
                                       f"(one per class)")
            gt_text = (rec["ground_truth"] or "").strip()
            if gt_text.startswith("["):
                gt = _parse_vector(gt_text, path, row, "ground_truth")
                if len(gt) != num_classes or any(x not in (0, 1) for x in gt):
                    raise PredictionsError(f"{path}:{row}: ground_truth must be {num_classes} values of 0/1, "
                                           f"found {gt_text[:60]!r}")
            else:
                try:
                    gt = int(float(gt_text))
                except ValueError:
                    raise PredictionsError(f"{path}:{row}: ground_truth must be a class id or a 0/1 list, "
                                           f"found {gt_text[:60]!r}") from None
                if not 0 <= gt < num_classes:
                    raise PredictionsError(f"{path}:{row}: ground_truth class {gt} outside 0..{num_classes - 1}")
            if truth and isinstance(gt, list) != isinstance(truth[0], list):
                raise PredictionsError(f"{path}:{row}: ground_truth mixes class ids and 0/1 lists")
            video.append(rec["video"] if has_video and rec["video"] else vid)
            frame.append(fr)
            scores.append(vec)
            truth.append(gt)
    if not video:
        raise PredictionsError(f"{path}: no prediction rows")
    return Predictions(np.asarray(video, dtype=object).astype(str), np.asarray(frame, dtype=np.int64),
                       np.asarray(scores, dtype=np.float64), np.asarray(truth, dtype=np.int64))


def score_predictions(pred: Predictions, convention: str = M.DEFAULT_CONVENTION) -> dict:
    """Metrics of one predictions set: single-label (argmax of the scores) or multi-label (AP of the
    scores) under ``convention``; every class of the score vector counts for ``surglavi``."""
    if pred.multilabel:
        return M.multilabel_metrics(pred.truth, pred.scores, pred.video, convention)
    return M.single_label_metrics(pred.truth, pred.scores.argmax(1), pred.video, pred.num_classes, convention)


def score_triplet_predictions(preds: dict[str, Predictions], triplet_names: list[str], component_names: dict,
                              convention: str = M.DEFAULT_CONVENTION, where: str = "") -> dict:
    """CholecT50 sub-task predictions (``{"triplet", "instrument", "verb", "target"} -> Predictions``,
    the same frames in each) -> ``metrics.triplet_metrics``."""
    first = next(iter(preds.values()))
    key = lambda p: list(zip(p.video.tolist(), p.frame.tolist()))
    order = {task: np.lexsort((p.frame, p.video)) for task, p in preds.items()}
    base = [key(first)[i] for i in order[next(iter(preds))]]
    for task, p in preds.items():
        if [key(p)[i] for i in order[task]] != base:
            raise PredictionsError(f"{where}: the {task} predictions cover other frames than the "
                                   f"{next(iter(preds))} predictions; CholecT50 sub-tasks must share frames")
    videos = first.video[order[next(iter(preds))]]
    return M.triplet_metrics({t: p.truth[order[t]] for t, p in preds.items()},
                             {t: p.scores[order[t]] for t, p in preds.items()}, videos, triplet_names,
                             component_names, convention)
