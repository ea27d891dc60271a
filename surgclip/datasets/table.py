"""The one frame-level table every dataset loader produces, and where each video's frames live.

A ``FrameTable`` row is one labelled frame: ``(video, time_s, frame, label)`` for single-label
tasks (phase, step, action) or ``(video, time_s, frame, targets[C])`` for multi-label tasks (tools,
triplets). Times are seconds from the start of the video, computed with the *label file's* fps, so
the evaluator can read the video at its own fps.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


class LabelFileError(ValueError):
    """A label file is malformed or names an unknown class; the message carries ``file:line``."""

    def __init__(self, path, line: int | None, message: str):
        where = f"{path}:{line}" if line is not None else str(path)
        super().__init__(f"{where}: {message}")
        self.path, self.line = str(path), line


@dataclass
class FrameSource:
    """Where a video's frames are: a video file (fps read from it) or a frame folder.

    Args:
        path: video file or folder of numbered images.
        fps: rate of a frame folder (frames per second of video it holds); None for video files.
        name_fps: rate that the folder's file *numbers* count in (e.g. ``100.jpg`` named by 25-fps
            index in a folder that holds every 100th frame: fps 0.25, name_fps 25). Default = fps.
        first_number: the number of the file that holds time 0: 0 for most layouts, 1 for frames
            written by ffmpeg's ``%08d`` pattern (MultiBypass140's ``util/extract_frames.py``).
    """

    path: Path
    fps: float | None = None
    name_fps: float | None = None
    first_number: int = 0

    def to_dict(self) -> dict:
        return {"path": str(self.path), "fps": self.fps, "name_fps": self.name_fps, "first_number": self.first_number}


@dataclass
class FrameTable:
    """Frame-level labels of one benchmark split.

    Attributes:
        name: benchmark/task name, e.g. ``cholec80/phase``.
        classes: class names, index = class id.
        video: [N] video ids (str).
        time_s: [N] float seconds.
        frame: [N] int frame index in the label file's own numbering (-1 if none).
        labels: [N] int class id (single-label tasks) or None.
        targets: [N, C] uint8 presence (multi-label tasks) or None.
        sources: video id -> FrameSource (may be empty for label-only use).
        label_fps: frame rate of the label file's frame numbering.
        prompt_sets: prompts the label file itself carries (SurgLaVi category descriptions).
        split_info: how the split was chosen, e.g. ``{"fold": 0, "source": "<pickle or JSON path>"}``.
    """

    name: str
    classes: list[str]
    video: np.ndarray
    time_s: np.ndarray
    frame: np.ndarray
    labels: np.ndarray | None = None
    targets: np.ndarray | None = None
    sources: dict[str, FrameSource] = field(default_factory=dict)
    label_fps: float | None = None
    prompt_sets: dict = field(default_factory=dict)
    split_info: dict = field(default_factory=dict)

    def __post_init__(self):
        n = len(self.video)
        if (self.labels is None) == (self.targets is None):
            raise ValueError("a FrameTable has exactly one of labels (single-label) or targets (multi-label)")
        for key in ("time_s", "frame", "labels", "targets"):
            arr = getattr(self, key)
            if arr is not None and len(arr) != n:
                raise ValueError(f"FrameTable {self.name}: column {key} has {len(arr)} rows, video has {n}")

    @property
    def multilabel(self) -> bool:
        return self.targets is not None

    def __len__(self) -> int:
        return len(self.video)

    def videos(self) -> list[str]:
        """Video ids in first-appearance order."""
        return list(dict.fromkeys(self.video.tolist()))

    def select(self, mask: np.ndarray) -> "FrameTable":
        """Rows where ``mask`` is true (a new table sharing classes and sources)."""
        mask = np.asarray(mask)
        return FrameTable(self.name, self.classes, self.video[mask], self.time_s[mask], self.frame[mask],
                          None if self.labels is None else self.labels[mask],
                          None if self.targets is None else self.targets[mask], dict(self.sources), self.label_fps,
                          dict(self.prompt_sets), dict(self.split_info))

    def limit_per_video(self, limit: int) -> "FrameTable":
        """The first ``limit`` rows of each video (a new table)."""
        keep = np.zeros(len(self), bool)
        for v in self.videos():
            keep[np.flatnonzero(self.video == v)[:limit]] = True
        return self.select(keep)

    def subsample(self, every_s: float) -> "FrameTable":
        """Keep rows whose time is a multiple of ``every_s`` seconds (e.g. 25-fps labels -> 1 fps)."""
        q = self.time_s / every_s
        return self.select(np.abs(q - np.round(q)) < 1e-6)

    @staticmethod
    def concat(tables: list["FrameTable"]) -> "FrameTable":
        """Stack tables of the same benchmark (same classes and task)."""
        if not tables:
            raise ValueError("no tables to concatenate")
        first = tables[0]
        for t in tables[1:]:
            if t.classes != first.classes or t.multilabel != first.multilabel:
                raise ValueError(f"cannot concatenate {t.name} with {first.name}: classes or task differ")
        cat = lambda k: None if getattr(first, k) is None else np.concatenate([getattr(t, k) for t in tables])
        sources = {k: v for t in tables for k, v in t.sources.items()}
        return FrameTable(first.name, first.classes, cat("video"), cat("time_s"), cat("frame"), cat("labels"),
                          cat("targets"), sources, first.label_fps, dict(first.prompt_sets), dict(first.split_info))


def make_table(name: str, classes: list[str], rows: list[tuple], multilabel: bool = False,
               label_fps: float | None = None) -> FrameTable:
    """Build a table from ``(video, time_s, frame, label_or_targets)`` tuples."""
    video = np.array([r[0] for r in rows], dtype=object).astype(str) if rows else np.array([], dtype=str)
    time_s = np.array([r[1] for r in rows], dtype=np.float64)
    frame = np.array([r[2] for r in rows], dtype=np.int64)
    if multilabel:
        targets = np.array([r[3] for r in rows], dtype=np.uint8).reshape(len(rows), len(classes))
        return FrameTable(name, list(classes), video, time_s, frame, targets=targets, label_fps=label_fps)
    return FrameTable(name, list(classes), video, time_s, frame, labels=np.array([r[3] for r in rows], dtype=np.int64),
                      label_fps=label_fps)


def check_fps(fps, where: str) -> float:
    """A positive finite fps, or a ValueError naming where it came from."""
    try:
        fps = float(fps)
    except (TypeError, ValueError):
        raise ValueError(f"{where}: fps must be a number, got {fps!r}") from None
    if not (fps > 0 and math.isfinite(fps)):
        raise ValueError(f"{where}: fps must be positive and finite, got {fps}")
    return fps
