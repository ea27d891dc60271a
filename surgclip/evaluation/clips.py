"""Clips at labelled frames: for each table row, the window of frames around (``centered``,
offline) or ending at (``online``, causal) its time, or the single frame (``frame``).

The frames of a clip are ``sampling.window_indices`` (the published SurgCLIP window) on a grid of
one frame every ``stride_s`` seconds through the labelled frame (``sampling.seconds_to_frame`` of its
time). This is the package's streaming clip reader, for many overlapping clips of one video; one
clip at a time is ``readers.read_clip``. Each video is streamed once, in time order:

- every frame is decoded and transformed once, however many overlapping windows use it, and
  dropped after the last row that needs it (memory stays flat over long videos);
- frames are read in sorted batches covering the next ``READ_AHEAD_ROWS`` rows, plus any frame of a
  later row that comes before the last of them (``ForwardReads``), so every read starts past the
  previous one and the video is decoded front to back, once, by a streaming reader (``stream=True``);
- a background thread decodes and transforms the next batches while the caller runs the model
  (PyAV, PIL and torch release the GIL), ``prefetch`` batches ahead at most; the evaluators start it
  when the forward leaves the reader a core (``read_ahead``);
- the transform may go further than pixels: ``FrameTrunk`` turns each frame into a per-frame
  tower's trunk features once, so overlapping clips share them instead of re-running the trunk.

Rows that cannot be read are skipped and counted by reason (``utils.SKIP_REASONS``): ``missing_file``
(no video file or frame folder), ``undecodable_media`` (a corrupt or truncated video or image;
after a failed batched read every frame is retried alone, so only rows needing a bad frame are
lost) and ``missing_frame`` (the labelled time lies outside the video). Anything else — a
TypeError in a transform, an IndexError — is a bug and propagates.
"""
from __future__ import annotations

import logging
import os
import queue
import threading
from collections import Counter
from pathlib import Path
from typing import Iterator

import numpy as np
import torch

from ..data.readers import VideoReadError, open_source, skip_reason
from ..datasets.table import FrameTable
from ..sampling import seconds_to_frame, window_indices
from ..transform import stack_clips

log = logging.getLogger(__name__)

MODES = ("centered", "online", "frame")
READ_AHEAD_ROWS = 32


class _Locator:
    """Maps a time to a frame position of an opened source (None when that frame is absent)."""

    def __init__(self, reader, name_fps: float | None, first_number: int = 0):
        self.reader, self.first_number = reader, int(first_number)
        numbers = getattr(reader, "numbers", None)
        self.positions = None
        if numbers is not None:
            self.name_fps = name_fps or reader.fps
            self.positions = {n: i for i, n in enumerate(numbers)}

    def anchor(self, time_s: float) -> int | None:
        if self.positions is not None:  # the file whose number is the frame shown at time_s
            return self.positions.get(seconds_to_frame(time_s, self.name_fps) + self.first_number)
        idx = seconds_to_frame(time_s, self.reader.fps)
        return idx if idx < self.reader.num_frames else None


def clip_positions(anchor: int, num_frames: int, stride: int, mode: str, total: int) -> np.ndarray:
    """Frame positions [T] of the clip at ``anchor``: ``sampling.window_indices`` (``[anchor]`` for
    ``mode="frame"``)."""
    if mode == "frame":
        return np.array([anchor], dtype=np.int64)
    return window_indices(anchor, num_frames, stride, mode, total)


def read_ahead(device) -> int:
    """The evaluators' ``prefetch``: 2 batches read in a background thread when the forward leaves the
    reader a core (the model on an accelerator, or torch running fewer threads than this process may
    use), else 0. Beside a CPU forward that already fills every core the thread only competes with
    it: a small model is slower with the thread than reading in the calling thread, and a large one
    gains nothing (``eval/bench/bench_zeroshot.py``, columns ``eval0`` and ``eval2``)."""
    if torch.device(device).type != "cpu":
        return 2
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return 2 if torch.get_num_threads() < cores else 0


def iter_clip_batches(table: FrameTable, transform, num_frames: int, mode: str = "centered",
                      stride_s: float = 1.0, batch_size: int = 8, skipped: Counter | None = None,
                      progress=None, prefetch: int = 2) -> Iterator[tuple[np.ndarray, torch.Tensor]]:
    """Yield ``(row indices [B], clips [B, T, 3, S, S])`` over the rows of ``table``.

    Args:
        table: rows to read; ``table.sources`` says where each video's frames are.
        transform: ``ClipTransform`` (uint8 [T,H,W,3] -> float [T,3,S,S]).
        num_frames: T (ignored for ``mode="frame"``, which uses 1).
        mode: ``centered`` | ``online`` | ``frame``.
        stride_s: seconds between clip frames (1 s = the 1-fps convention of the published protocols).
        batch_size: clips per yielded batch.
        skipped: Counter updated with the number of skipped rows per reason (``missing_file``,
            ``undecodable_media``, ``missing_frame`` of ``utils.SKIP_REASONS``).
        progress: optional tqdm-like object; ``update(n)`` is called as rows are handed out or skipped.
        prefetch: batches prepared ahead by a background thread while the caller uses the current
            one; 0 reads in the calling thread.
    Returns:
        An iterator; ``skipped`` is complete once it is exhausted.
    """
    if mode not in MODES:
        raise ValueError(f"unknown clip mode {mode!r}; expected one of {MODES}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    skipped = skipped if skipped is not None else Counter()
    T = 1 if mode == "frame" else int(num_frames)
    items = _batches(table, transform, T, mode, stride_s, batch_size, skipped)
    if prefetch > 0:
        items = in_background(items, prefetch)
    for rows, clips, handled in items:
        if progress is not None and handled:
            progress.update(handled)
        if rows is not None:
            yield rows, clips


def _batches(table, transform, T, mode, stride_s, batch_size, skipped):
    """(rows [B] | None, clips | None, rows handled since the last item) for every batch."""
    batch_rows, batch_clips, handled = [], [], 0
    for video in table.videos():
        for row, clip in _video_clips(table, video, transform, T, mode, stride_s, skipped):
            handled += 1
            if clip is None:
                continue
            batch_rows.append(row)
            batch_clips.append(clip)
            if len(batch_rows) == batch_size:
                yield np.array(batch_rows), stack_clips(batch_clips), handled
                batch_rows, batch_clips, handled = [], [], 0
    if batch_rows:
        yield np.array(batch_rows), stack_clips(batch_clips), handled
    elif handled:
        yield None, None, handled


def _video_clips(table, video, transform, T, mode, stride_s, skipped):
    """(row, clip: its T frames [3,S,S] in order, or None when skipped) for the rows of one video, in
    time order."""
    rows = np.flatnonzero(table.video == video)
    rows = rows[np.argsort(table.time_s[rows], kind="stable")]
    source = table.sources.get(video)
    if source is None or not Path(source.path).exists():
        where = "no source in the table" if source is None else f"{source.path} does not exist"
        log.warning("zero-shot: skipping %d rows of %s: %s", len(rows), video, where)
        skipped["missing_file"] += len(rows)
        yield from ((row, None) for row in rows)
        return
    try:
        reader = open_source(source.path, fps=source.fps, stream=True)
    except VideoReadError as err:
        log.warning("zero-shot: skipping %d rows of %s: %s", len(rows), video, err)
        skipped[skip_reason(source.path, err)] += len(rows)
        yield from ((row, None) for row in rows)
        return
    locator = _Locator(reader, source.name_fps, source.first_number)
    stride = max(1, int(round(stride_s * reader.fps)))
    anchors = [locator.anchor(float(table.time_s[row])) for row in rows]
    # [n, T] frame positions per row (-1: no such frame); numpy, not lists: 3600 rows of an hour stay small
    positions = np.full((len(rows), T), -1, dtype=np.int64)
    for j, a in enumerate(anchors):
        if a is not None:
            positions[j] = clip_positions(a, T, stride, mode, reader.num_frames)
    del anchors
    last_use = {}  # frame -> the last row (in time order) whose clip needs it
    for j, pos in enumerate(positions.tolist()):
        for p in pos:
            last_use[p] = j
    cache: dict[int, torch.Tensor] = {}
    bad: set[int] = set()
    forward = ForwardReads(positions)
    for j, row in enumerate(rows):
        pos = positions[j].tolist()
        if pos[0] < 0:
            skipped["missing_frame"] += 1
            yield row, None
            continue
        if any(p not in cache and p not in bad for p in pos):
            # Read ahead: the frames of the next rows too, in one sorted batch.
            need = forward(j, 1 + READ_AHEAD_ROWS)
            _read_frames(reader, sorted(set(need.tolist()) - cache.keys() - bad), transform, cache, bad)
        if bad.intersection(pos):
            skipped["undecodable_media"] += 1
            clip = None
        else:
            clip = [cache[p] for p in pos]  # stacked once, into the batch
        for p in set(pos):
            if last_use[p] == j:
                cache.pop(p, None)
        yield row, clip


class ForwardReads:
    """The frames to read for the next rows of ``positions`` ([n, T] frame positions in time order,
    -1: none) so that a streaming reader only moves forward.

    ``self(j, rows)`` gives, sorted, the frames of rows ``j .. j+rows-1`` together with every later
    row's frames that come before the last of them: the next read then never needs a frame before
    this one's last. Frames read early wait in the caller's cache; ``first_needed[j]`` is the first
    frame that any row from ``j`` on needs (what lies before it can be dropped).
    """

    def __init__(self, positions: np.ndarray):
        self.positions = positions
        lows = np.where(positions >= 0, positions, np.iinfo(np.int64).max).min(axis=1)
        self.first_needed = np.minimum.accumulate(lows[::-1])[::-1]

    def __call__(self, j: int, rows: int) -> np.ndarray:
        end = min(len(self.positions), j + rows)
        upto = self.positions[j:end].max()
        stop = end + int(np.searchsorted(self.first_needed[end:], upto, side="right"))
        ahead = self.positions[j:stop]
        return np.unique(ahead[(ahead >= 0) & (ahead <= upto)])


def _read_frames(reader, idx: list[int], transform, cache: dict, bad: set) -> None:
    """Decode + transform frames ``idx`` (sorted) into ``cache``; frames that cannot be decoded go
    to ``bad``. A failed batch is retried frame by frame so that one bad frame costs only itself."""
    try:
        cache.update(zip(idx, transform(reader.read(idx))))
        return
    except VideoReadError as err:
        if len(idx) == 1:
            log.warning("zero-shot: %s", err)
            bad.add(idx[0])
            return
    for i in idx:
        try:
            cache[i] = transform(reader.read([i]))[0]
        except VideoReadError as err:
            log.warning("zero-shot: %s", err)
            bad.add(i)


class FrameTrunk:
    """A ``transform`` for ``iter_clip_batches`` that ends in the model's per-frame trunk: uint8
    frames -> ``model.encode_frame_trunk`` features [N, W] on ``device``, ``chunk`` frames per call.

    Clips then come as [B, T, W] for ``model.encode_video_from_trunk``: each frame's trunk runs once
    however many overlapping clips hold it (T times fewer trunk passes for clips one frame apart).
    Only for models with ``per_frame_trunk``.
    """

    def __init__(self, model, transform, device, chunk: int = 64):
        if not model.per_frame_trunk:
            raise ValueError(f"model {model.name!r} has no per-frame trunk (its video tower mixes frames)")
        self.model, self.transform, self.device, self.chunk = model, transform, device, int(chunk)

    def __call__(self, frames) -> torch.Tensor:
        images = self.transform(frames)
        with torch.no_grad():  # grad mode is per thread: the reader thread starts with it on
            return torch.cat([self.model.encode_frame_trunk(images[i:i + self.chunk].to(self.device))
                              for i in range(0, len(images), self.chunk)])


def clip_encoder(model, transform, num_frames: int, mode: str, device):
    """(the ``transform`` to give ``iter_clip_batches``, clips -> embeddings [B, D]) for ``model``.

    A model with ``per_frame_trunk`` gets each frame's trunk run once (``FrameTrunk``), then only its
    temporal module per clip; any other model (or single frames) gets ``encode_video`` on the clips.
    """
    if mode != "frame" and num_frames > 1 and model.per_frame_trunk:
        return FrameTrunk(model, transform, device), model.encode_video_from_trunk
    return transform, lambda clips: model.encode_video(clips.to(device))


_DONE = object()


def in_background(items, depth: int):
    """Run iterator ``items`` in a daemon thread, ``depth`` items ahead of the consumer.

    Exceptions raised by ``items`` are re-raised in the consumer; closing the consumer early stops
    the thread at its next item.
    """
    out: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(item) -> bool:
        while not stop.is_set():
            try:
                out.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def work():
        try:
            for item in items:
                if not put(item):
                    return
            put(_DONE)
        except BaseException as err:  # handed to the consumer, which re-raises it
            put(err)
        finally:
            items.close()

    thread = threading.Thread(target=work, name="surgclip-clip-reader", daemon=True)
    thread.start()
    try:
        while True:
            item = out.get()
            if item is _DONE:
                break
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        thread.join()
