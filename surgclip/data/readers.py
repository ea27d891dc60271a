"""Frame sources behind one small interface: ``fps``, ``num_frames``, ``read(indices) -> uint8 [T,H,W,3]``.

``VideoFileReader`` decodes a video file with decord (batched random access); ``FrameFolderReader``
reads a folder of numbered images. ``open_source`` picks one from a path.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

import numpy as np

from ..utils import frame_number, list_frame_files


class VideoReadError(ValueError):
    """A video or frame source is missing, unreadable, or asked for frames it does not have."""


def seconds_to_frame(t: float, fps: float) -> int:
    """The frame index shown at time ``t`` seconds: ``floor(t * fps + 1e-6)`` (frame i spans [i/fps, (i+1)/fps))."""
    return int(math.floor(t * fps + 1e-6))


class FrameReader:
    """Interface: ``fps`` (float), ``num_frames`` (int), ``read(indices) -> uint8 [T, H, W, 3]``."""

    path: Path
    fps: float
    num_frames: int

    @property
    def duration(self) -> float:
        return self.num_frames / self.fps

    def _check(self, indices: Sequence[int]) -> np.ndarray:
        idx = np.asarray(indices, dtype=np.int64)
        if idx.size == 0:
            raise VideoReadError(f"{self.path}: no frame indices requested")
        bad = idx[(idx < 0) | (idx >= self.num_frames)]
        if bad.size:
            raise VideoReadError(f"{self.path}: frame index {int(bad[0])} outside 0..{self.num_frames - 1}")
        return idx

    def read(self, indices: Sequence[int]) -> np.ndarray:
        raise NotImplementedError


class VideoFileReader(FrameReader):
    """A video file decoded with decord; ``read`` fetches all requested frames in one batch."""

    def __init__(self, path: str | Path, num_threads: int = 1):
        self.path = Path(path)
        if not self.path.is_file():
            raise VideoReadError(f"video not found: {self.path}")
        if self.path.stat().st_size == 0:
            raise VideoReadError(f"video is empty (0 bytes): {self.path}")
        import decord

        try:
            self._vr = decord.VideoReader(str(self.path), num_threads=num_threads)
        except Exception as err:  # decord raises its own DECORDError for anything undecodable
            raise VideoReadError(f"cannot open video {self.path}: {str(err).splitlines()[0]}") from err
        self.fps = float(self._vr.get_avg_fps())
        self.num_frames = len(self._vr)
        if not (self.fps > 0 and math.isfinite(self.fps)) or self.num_frames <= 0:
            raise VideoReadError(f"{self.path}: invalid fps {self.fps} or frame count {self.num_frames}")

    def read(self, indices: Sequence[int]) -> np.ndarray:
        idx = self._check(indices)
        try:
            frames = self._vr.get_batch(idx.tolist()).asnumpy()
        except Exception as err:
            raise VideoReadError(f"cannot decode frames {idx.min()}..{idx.max()} of {self.path}: "
                                 f"{str(err).splitlines()[0]}") from err
        return frames


class FrameFolderReader(FrameReader):
    """A folder of numbered images (``000123.jpg``, ``video01_123.png``, ``123.webp``).

    Frame ``i`` is the ``i``-th file in frame-number order; ``fps`` is the rate the frames were
    extracted at (frame numbers may skip, e.g. every 100th frame of a 25-fps video -> fps 0.25).
    """

    def __init__(self, path: str | Path, fps: float):
        self.path = Path(path)
        if not (fps and fps > 0 and math.isfinite(fps)):
            raise VideoReadError(f"{self.path}: frame folder needs a positive fps, got {fps}")
        try:
            self.files = list_frame_files(self.path)
        except (FileNotFoundError, ValueError) as err:
            raise VideoReadError(str(err)) from err
        self.fps = float(fps)
        self.num_frames = len(self.files)
        self.numbers = [frame_number(f) for f in self.files]

    def read(self, indices: Sequence[int]) -> np.ndarray:
        from PIL import Image

        idx = self._check(indices)
        out, cache = [], {}
        for i in idx.tolist():
            if i not in cache:
                try:
                    with Image.open(self.files[i]) as img:
                        cache[i] = np.asarray(img.convert("RGB"))
                except OSError as err:
                    raise VideoReadError(f"cannot read frame image {self.files[i]}: {err}") from err
            out.append(cache[i])
        shapes = {a.shape for a in out}
        if len(shapes) > 1:
            raise VideoReadError(f"{self.path}: frames have different sizes {sorted(shapes)}")
        return np.stack(out)


def open_source(path: str | Path, fps: float | None = None, num_threads: int = 1) -> FrameReader:
    """A reader for a video file or a frame folder (``fps`` required for folders)."""
    path = Path(path)
    if path.is_dir():
        if fps is None:
            raise VideoReadError(f"{path} is a frame folder: pass the fps it was extracted at")
        return FrameFolderReader(path, fps)
    return VideoFileReader(path, num_threads=num_threads)
