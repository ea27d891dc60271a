"""The DataModule's option groups: where the data lives, which captions count, how the loader runs.

A config names a group and only the fields it changes, e.g.::

    data:
      root: data/sample
      num_frames: 8
      captions: {max_clip_s: 120}
      loader: {uint8_video: true, frame_cache_mb: 512}

Each group is a dataclass so that LightningCLI shows, checks and documents its fields; Python callers
may pass a dict instead (``as_group``).
"""
from __future__ import annotations

from dataclasses import dataclass

from ..utils import as_group

__all__ = ["CaptionOptions", "DataPaths", "LoaderOptions", "as_group"]


@dataclass
class DataPaths:
    """Paths that override the ones under ``data.root`` (with ``data.root: null``, the database and a
    video or frames folder are required).

    Args:
        db_path: the caption database (SurgLaVi schema; default ``root/captions.sqlite``).
        video_root: folder of videos (``{video_root}/{name}.mp4`` or the SurgLaVi layout).
        frames_root: folder of per-video frame folders (written by ``surgclip data extract-frames``);
            given, clips are read from frames.
        frames_fps: the frame folders' rate (default: each folder's ``frames.json``).
        splits_file: JSON ``{"train": [...], "val": [...], "test": [...]}`` of video names (default:
            ``root/splits.json`` if present, else a seeded 90/10 split by video).
    """

    db_path: str | None = None
    video_root: str | None = None
    frames_root: str | None = None
    frames_fps: float | None = None
    splits_file: str | None = None


@dataclass
class CaptionOptions:
    """Which caption rows are selected (one query at setup; the same selection everywhere the
    database is read).

    Args:
        text_field: ``caption`` (the enhanced caption) or ``raw_narration``.
        clean: apply the released caption cleaning.
        min_duration, max_clip_s: clip duration bounds in seconds.
    """

    text_field: str = "caption"
    clean: bool = True
    min_duration: float = 0.0
    max_clip_s: float = 500.0


@dataclass
class LoaderOptions:
    """How batches travel from the loader workers (none of these changes what a batch holds).

    Args:
        pin_memory: page-locked batches for faster host-to-GPU copies.
        uint8_video: batches carry resized/augmented uint8 video [B, T, 3, S, S] and the model
            normalises it (``SurgCLIP.encode_video`` folds the normalisation into its patch
            embedding): a quarter of the bytes between processes and no float work in the workers.
        frame_cache_mb: with frame folders, decoded training frames kept per worker process (MiB;
            with no workers, by the main process), so a persistent worker decodes a frame once while
            it fits. The memory is up to ``num_workers`` x this; validation and test read without
            one. 0 keeps none.
        worker_start: how workers start: ``forkserver`` (forked from a clean, preloaded server, so no
            decoder thread of the main process is forked mid-lock), ``spawn`` or ``fork`` (can
            deadlock once the main process has decoded video).
    """

    pin_memory: bool = False
    uint8_video: bool = False
    frame_cache_mb: float = 0.0
    worker_start: str = "forkserver"

    def __post_init__(self) -> None:
        if self.worker_start not in ("forkserver", "spawn", "fork"):
            raise ValueError(f"data.loader.worker_start must be forkserver, spawn or fork, got {self.worker_start!r}")
