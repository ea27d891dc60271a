"""Time base and frame sampling: seconds <-> frame indices, a clip's span of frames, and the pure
functions that choose a clip's frames. Nothing here reads a file or keeps state; every part of the
package that turns times into frames (training items, the evaluators, the indexer, extraction,
``surgclip serve`` thumbnails, ``VideoPreprocessor``) calls these.

The time base: frame ``i`` of a source at ``fps`` is on screen during ``[i / fps, (i + 1) / fps)``.
A clip ``[start_s, end_s)`` holds every frame on screen during it (``clip_frame_span``): from the
frame shown at ``start_s`` to the last frame that starts before ``end_s``. At 1 fps a clip ending
at 2.5 s ends on frame 2, which is on screen from 2.0 s to 3.0 s, half of it inside the clip.

Every sampler returns an int64 array of ``num_frames`` frame indices inside ``[first, last]``, the
clip's inclusive frame span. Clips shorter than ``num_frames`` frames repeat frames (indices stay
sorted).
"""
from __future__ import annotations

import math

import numpy as np


def seconds_to_frame(t: float, fps: float) -> int:
    """The frame index shown at time ``t`` seconds: ``floor(t * fps + 1e-6)``.

    Frame ``i`` is on screen during ``[i / fps, (i + 1) / fps)``; the ``1e-6`` absorbs float error
    so that ``t = i / fps`` maps to ``i``. The package's one seconds -> frame conversion.

    Args:
        t: time in seconds (finite).
        fps: frames per second (positive, finite).
    Returns:
        The frame index (may exceed the source's length; callers clamp or raise).
    """
    if not (math.isfinite(t) and math.isfinite(fps) and fps > 0):
        raise ValueError(f"seconds_to_frame needs a finite time and a positive finite fps, got t={t}, fps={fps}")
    return int(math.floor(t * fps + 1e-6))


def frame_to_seconds(frame, fps: float):
    """The time (seconds) at which frame ``frame`` comes on screen: ``frame / fps``; elementwise for
    a numpy array of frames. ``seconds_to_frame(frame_to_seconds(i, fps), fps) == i``."""
    return frame / fps


MODES = ("uniform", "random", "centered", "online", "dynamic")


class ClipSpanError(ValueError):
    """A clip's times do not describe a valid span of frames (bad fps, start >= end, past the end)."""


def clip_frame_span(start_s: float, end_s: float, fps: float, num_frames_in_video: int | None = None,
                    end_tolerance_s: float | None = None) -> tuple[int, int]:
    """(first, last) frame indices, inclusive, of the clip ``[start_s, end_s)``.

    ``first = seconds_to_frame(start_s)``, the frame on screen at the start; ``last`` is the last
    frame that starts before ``end_s``, ``ceil(end_s * fps - 1e-6) - 1``: a frame partly inside the
    clip belongs to it (at 1 fps, ``[0, 2.5)`` is frames 0..2), and an end on a frame boundary
    excludes the frame starting there (``[0, 3.0)`` is frames 0..2 too). The span is never empty.

    Args:
        start_s, end_s: clip span in seconds; need ``0 <= start_s < end_s``, both finite.
        fps: frame rate of the source; must be positive and finite.
        num_frames_in_video: length of the source. The clip must start inside it; ``last`` is
            clamped to the final frame.
        end_tolerance_s: if given (with ``num_frames_in_video``), a clip ending more than this many
            seconds past the end of the video raises instead of being clamped.
    Returns:
        (first, last) with ``first <= last``.
    Raises:
        ClipSpanError: with the offending values in the message.
    """
    if not (isinstance(fps, (int, float)) and math.isfinite(fps) and fps > 0):
        raise ClipSpanError(f"fps must be positive and finite, got {fps}")
    if not (math.isfinite(start_s) and math.isfinite(end_s)) or end_s <= start_s or start_s < 0:
        raise ClipSpanError(f"invalid clip span start={start_s} end={end_s} (need 0 <= start < end)")
    first = seconds_to_frame(start_s, fps)
    last = max(first, math.ceil(end_s * fps - 1e-6) - 1)
    if num_frames_in_video is not None:
        video_s = num_frames_in_video / fps
        if first >= num_frames_in_video:
            raise ClipSpanError(f"clip starts at {start_s:.2f}s (frame {first}) past the video's end "
                                f"({num_frames_in_video} frames = {video_s:.2f}s at {fps:g} fps)")
        if end_tolerance_s is not None and end_s > video_s + end_tolerance_s:
            raise ClipSpanError(f"clip ends at {end_s:.2f}s, past the video's end at {video_s:.2f}s "
                                f"({num_frames_in_video} frames at {fps:g} fps; tolerance {end_tolerance_s:g}s)")
        last = min(last, num_frames_in_video - 1)
    return first, last


def uniform_indices(first: int, last: int, num_frames: int) -> np.ndarray:
    """Centres of ``num_frames`` equal segments of [first, last] (deterministic)."""
    edges = np.linspace(first, last + 1, num_frames + 1)
    return np.clip(((edges[:-1] + edges[1:]) / 2).astype(np.int64), first, last)


def random_indices(first: int, last: int, num_frames: int, rng: np.random.Generator) -> np.ndarray:
    """One random frame in each of ``num_frames`` equal segments (TSN-style, for training)."""
    edges = np.linspace(first, last + 1, num_frames + 1)
    lo, hi = np.floor(edges[:-1]), np.maximum(np.floor(edges[:-1]) + 1, np.floor(edges[1:]))
    return np.clip((lo + rng.random(num_frames) * (hi - lo)).astype(np.int64), first, last)


def dynamic_indices(first: int, last: int, num_frames: int, rng: np.random.Generator,
                    coverage: tuple[float, float] = (0.6, 1.0)) -> np.ndarray:
    """An evenly strided window whose stride grows with the clip's length, with jitter.

    The window covers a random fraction ``u ~ U(coverage)`` of the clip at a random offset, so the
    stride is about ``u * span / num_frames`` frames: 1 for short clips, hundreds for a 500-s clip
    at 25 fps. Both the stride and the offset are drawn from ``rng``.
    """
    span = last - first + 1
    u = rng.uniform(*coverage)
    stride = max(1.0, u * span / num_frames)
    window = min(span, stride * num_frames)
    offset = rng.uniform(0.0, max(0.0, span - window))
    idx = first + np.floor(offset + np.arange(num_frames) * stride).astype(np.int64)
    return np.clip(idx, first, last)


def window_indices(anchor: int, num_frames: int, stride: int, mode: str, total: int) -> np.ndarray:
    """The frames of the clip at ``anchor``: THE window function of the package (published SurgCLIP).

    Reproduces the published ``VideoPreprocessor`` exactly: it takes every ``stride``-th frame
    (the published ``sample_rate``), finds the anchor among them and keeps

    - ``centered``: ``num_frames`` consecutive grid frames starting ``num_frames // 2`` before the
      anchor; near the video's start or end the window *slides* to stay inside the video, so the
      anchor is no longer in the middle (anchor 0, T=4 -> ``[0, 1, 2, 3]``);
    - ``online``: the ``num_frames`` grid frames ending at the anchor (causal); at the video's
      start fewer exist (anchor 1, T=4 -> ``[0, 1]``);

    and a window shorter than ``num_frames`` (a short video, or online near the start) is padded
    by repeating its last frame: ``[0, 1]`` -> ``[0, 1, 1, 1]``.

    The grid is anchored at ``anchor`` (frames ``anchor + k * stride``). The published package
    aligns it to frame 0 and accepts only anchors on it; for those anchors both grids coincide.

    Used by ``VideoPreprocessor.window`` (stride 1 over the folder's frames), the zero-shot /
    linear-probe clips (``evaluation.clips``; stride = ``stride_s`` in frames) and the
    ``centered``/``online`` training samplers (``sample_indices``, inside the caption's span).

    Args:
        anchor: frame index of the clip's anchor, ``0 <= anchor < total``.
        num_frames: T >= 1.
        stride: frames between consecutive clip frames (>= 1).
        mode: ``centered`` or ``online``.
        total: number of frames in the video (or span).
    Returns:
        int64 [T], sorted, inside ``[0, total - 1]``, contains ``anchor``.
    """
    if mode not in ("centered", "online"):
        raise ValueError(f"unknown window mode {mode!r}; expected 'centered' or 'online'")
    if num_frames < 1 or stride < 1:
        raise ValueError(f"num_frames and stride must be >= 1, got {num_frames}, {stride}")
    if not 0 <= anchor < total:
        raise ValueError(f"anchor frame {anchor} outside the video's frames 0..{total - 1}")
    before = anchor // stride  # grid frames before the anchor; the anchor is grid position `before`
    count = before + 1 + (total - 1 - anchor) // stride
    if mode == "centered":
        end = min(count, max(0, before - num_frames // 2) + num_frames)
    else:
        end = before + 1
    start = max(0, end - num_frames)
    pos = np.arange(start, start + num_frames)
    pos = np.minimum(pos, end - 1)  # pad by repeating the last frame of the window
    return (anchor + (pos - before) * stride).astype(np.int64)


def sample_indices(start_s: float, end_s: float, fps: float, num_frames: int, mode: str = "uniform",
                   rng: np.random.Generator | None = None, num_frames_in_video: int | None = None,
                   stride: int | None = None, end_tolerance_s: float | None = None) -> np.ndarray:
    """Frame indices for a clip.

    Args:
        start_s, end_s: clip span in seconds.
        fps: frame rate of the source.
        num_frames: frames to return (T).
        mode: ``uniform`` (segment centres), ``random`` (one random frame per segment),
            ``centered`` / ``online`` (``window_indices`` of ``stride``-spaced frames around the
            middle / ending at the last frame of the span, kept inside the span), ``dynamic``
            (stride grows with duration, jittered).
        rng: numpy Generator for ``random`` and ``dynamic`` (required for them).
        num_frames_in_video: the source's length; see ``clip_frame_span``.
        stride: frame stride of ``centered`` / ``online`` windows (default: the span spread over T).
        end_tolerance_s: see ``clip_frame_span``.
    Returns:
        int64 [T], sorted, within the clip's frame span.
    """
    if num_frames < 1:
        raise ValueError(f"num_frames must be >= 1, got {num_frames}")
    first, last = clip_frame_span(start_s, end_s, fps, num_frames_in_video, end_tolerance_s)
    if mode == "uniform":
        return uniform_indices(first, last, num_frames)
    if mode in ("random", "dynamic"):
        if rng is None:
            raise ValueError(f"sampling mode {mode!r} needs an rng (numpy Generator)")
        fn = random_indices if mode == "random" else dynamic_indices
        return fn(first, last, num_frames, rng)
    if mode in ("centered", "online"):
        step = stride or max(1, (last - first + 1) // num_frames)
        anchor = (first + last) // 2 if mode == "centered" else last
        # the published window, inside the span: it slides rather than leave [first, last]
        return first + window_indices(anchor - first, num_frames, step, mode, last - first + 1)
    raise ValueError(f"unknown sampling mode {mode!r}; expected one of {', '.join(MODES)}")


def window_spans(duration_s: float, window_s: float, stride_s: float) -> list[tuple[float, float]]:
    """(start, end) seconds of sliding windows covering ``[0, duration_s)``; the last one is clipped
    to the end (a video shorter than one window gives one clip)."""
    if window_s <= 0 or stride_s <= 0:
        raise ValueError(f"window_s and stride_s must be positive, got {window_s}, {stride_s}")
    starts = np.arange(0.0, max(duration_s - window_s, 0.0) + 1e-9, stride_s)
    spans = [(float(s), float(min(s + window_s, duration_s))) for s in starts]
    if spans and spans[-1][1] < duration_s - 1e-6:
        spans.append((max(0.0, duration_s - window_s), duration_s))
    return spans


def window_frames(spans: list[tuple[float, float]], fps: float, num_frames: int, total: int) -> np.ndarray:
    """[n, T] frame indices of each span: ``sample_indices(start, end, fps, T, "uniform")`` inside a
    source of ``total`` frames, the frames any reader of one of these clips reads."""
    return np.stack([sample_indices(s, e, fps, num_frames, "uniform", num_frames_in_video=total) for s, e in spans])
