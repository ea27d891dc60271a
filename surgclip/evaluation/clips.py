"""Clips at labelled frames: for each table row, the window of frames around (``centered``,
offline) or ending at (``online``, causal) its time, or the single frame (``frame``).

Frames are decoded and transformed once per video and kept while later windows still need them,
so 16-frame windows at 1-fps labels cost about one new frame per row; frames are read in sorted
batches covering the next ``READ_AHEAD_ROWS`` rows, so the decoder seeks once per batch, not per row. Rows whose frame is missing
(outside the video, image absent from a folder) or unreadable are skipped and counted, never fatal.
"""
from __future__ import annotations

from collections import Counter
from typing import Iterator

import numpy as np
import torch

from ..data.readers import VideoReadError, open_source, seconds_to_frame
from ..data.samplers import window_indices
from .table import FrameTable

MODES = ("centered", "online", "frame")
READ_AHEAD_ROWS = 32


class _Locator:
    """Maps a time to a frame position of an opened source (None when that frame is absent)."""

    def __init__(self, reader, name_fps: float | None):
        self.reader = reader
        numbers = getattr(reader, "numbers", None)
        self.positions = None
        if numbers is not None:
            self.name_fps = name_fps or reader.fps
            self.positions = {n: i for i, n in enumerate(numbers)}

    def anchor(self, time_s: float) -> int | None:
        if self.positions is not None:
            return self.positions.get(int(round(time_s * self.name_fps)))
        idx = seconds_to_frame(time_s, self.reader.fps)
        return idx if idx < self.reader.num_frames else None


def clip_positions(anchor: int, num_frames: int, stride: int, mode: str, total: int) -> np.ndarray:
    """Frame positions of the clip at ``anchor`` (edge frames repeat at the ends of the video)."""
    if mode == "frame":
        return np.array([anchor], dtype=np.int64)
    return window_indices(anchor, num_frames, stride, mode, total)


def iter_clip_batches(table: FrameTable, transform, num_frames: int, mode: str = "centered",
                      stride_s: float = 1.0, batch_size: int = 8, skipped: Counter | None = None,
                      progress=None) -> Iterator[tuple[np.ndarray, torch.Tensor]]:
    """Yield ``(row indices [B], clips [B, T, 3, S, S])`` over the rows of ``table``.

    Args:
        table: rows to read; ``table.sources`` says where each video's frames are.
        transform: ``ClipTransform`` (uint8 [T,H,W,3] -> float [T,3,S,S]).
        num_frames: T (ignored for ``mode="frame"``, which uses 1).
        mode: ``centered`` | ``online`` | ``frame``.
        stride_s: seconds between clip frames (1 s = the 1-fps convention of the published protocols).
        skipped: Counter updated with ``missing_source``, ``missing_frame``, ``unreadable`` counts.
        progress: optional tqdm-like object; ``update(n)`` is called per row handled.
    """
    if mode not in MODES:
        raise ValueError(f"unknown clip mode {mode!r}; expected one of {MODES}")
    skipped = skipped if skipped is not None else Counter()
    T = 1 if mode == "frame" else int(num_frames)
    batch_rows, batch_clips = [], []
    for video in table.videos():
        rows = np.flatnonzero(table.video == video)
        rows = rows[np.argsort(table.time_s[rows], kind="stable")]
        source = table.sources.get(video)
        try:
            if source is None:
                raise VideoReadError(f"no video file or frame folder for {video}")
            reader = open_source(source.path, fps=source.fps)
        except (VideoReadError, FileNotFoundError, ValueError):
            skipped["missing_source"] += len(rows)
            _tick(progress, len(rows))
            continue
        locator = _Locator(reader, source.name_fps)
        stride = max(1, int(round(stride_s * reader.fps)))
        cache: dict[int, torch.Tensor] = {}
        anchors = [locator.anchor(float(table.time_s[row])) for row in rows]
        for j, row in enumerate(rows):
            anchor = anchors[j]
            if anchor is None:
                skipped["missing_frame"] += 1
                _tick(progress, 1)
                continue
            pos = clip_positions(anchor, T, stride, mode, reader.num_frames)
            need = set(pos.tolist()) - set(cache)
            try:
                if need:
                    # Read ahead: the frames of the next rows too, in one sorted batch. A video
                    # decoder then runs forward through the file once instead of seeking per row.
                    for a in anchors[j + 1:j + 1 + READ_AHEAD_ROWS]:
                        if a is not None:
                            need.update(clip_positions(a, T, stride, mode, reader.num_frames).tolist())
                    need = sorted(need - set(cache))
                    frames = transform(reader.read(need))
                    cache.update(zip(need, frames))
            except (VideoReadError, ValueError, OSError):
                skipped["unreadable"] += 1
                _tick(progress, 1)
                continue
            lo = int(pos.min())
            for key in [k for k in cache if k < lo]:  # rows are in time order: earlier frames are done
                del cache[key]
            batch_rows.append(row)
            batch_clips.append(torch.stack([cache[p] for p in pos.tolist()]))
            _tick(progress, 1)
            if len(batch_rows) == batch_size:
                yield np.array(batch_rows), torch.stack(batch_clips)
                batch_rows, batch_clips = [], []
    if batch_rows:
        yield np.array(batch_rows), torch.stack(batch_clips)


def _tick(progress, n: int) -> None:
    if progress is not None:
        progress.update(n)
