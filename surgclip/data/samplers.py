"""Frame-index samplers: pure functions of (start_s, end_s, fps, num_frames, mode, rng).

Every sampler returns an int64 array of ``num_frames`` frame indices inside ``[first, last]``,
the inclusive frame span of the clip (``clip_frame_span``): ``first = seconds_to_frame(start_s)``
and ``last`` is the last frame shown before ``end_s``. Clips shorter than ``num_frames`` frames
repeat frames (indices stay sorted). Nothing here reads a file or keeps state.
"""
from __future__ import annotations

import math

import numpy as np

from .readers import seconds_to_frame

MODES = ("uniform", "random", "centered", "online", "dynamic")


class ClipSpanError(ValueError):
    """A clip's times do not describe a valid span of frames (bad fps, start >= end, past the end)."""


def clip_frame_span(start_s: float, end_s: float, fps: float, num_frames_in_video: int | None = None,
                    end_tolerance_s: float | None = None) -> tuple[int, int]:
    """(first, last) frame indices, inclusive, of the clip ``[start_s, end_s)``.

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
    """Frames around ``anchor`` every ``stride`` frames: ``centered`` (anchor in the middle) or
    ``online`` (anchor last, causal); clamped to [0, total-1] by repeating the edge frame."""
    if mode == "centered":
        offsets = (np.arange(num_frames) - num_frames // 2) * stride
    elif mode == "online":
        offsets = (np.arange(num_frames) - (num_frames - 1)) * stride
    else:
        raise ValueError(f"unknown window mode {mode!r}; expected 'centered' or 'online'")
    return np.clip(anchor + offsets, 0, total - 1).astype(np.int64)


def sample_indices(start_s: float, end_s: float, fps: float, num_frames: int, mode: str = "uniform",
                   rng: np.random.Generator | None = None, num_frames_in_video: int | None = None,
                   stride: int | None = None, end_tolerance_s: float | None = None) -> np.ndarray:
    """Frame indices for a clip.

    Args:
        start_s, end_s: clip span in seconds.
        fps: frame rate of the source.
        num_frames: frames to return (T).
        mode: ``uniform`` (segment centres), ``random`` (one random frame per segment),
            ``centered`` / ``online`` (a window of ``stride``-spaced frames around the middle /
            ending at the last frame of the span), ``dynamic`` (stride grows with duration, jittered).
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
        return np.clip(window_indices(anchor, num_frames, step, mode, last + 1), first, last)
    raise ValueError(f"unknown sampling mode {mode!r}; expected one of {', '.join(MODES)}")
