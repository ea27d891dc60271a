"""Frame-index samplers: pure functions of (start_s, end_s, fps, num_frames, mode, rng).

All return an int64 array of ``num_frames`` frame indices within ``[first, last]`` of the clip,
where ``first = seconds_to_frame(start_s)`` and ``last`` is the last frame shown before ``end_s``.
"""
from __future__ import annotations

import math

import numpy as np

from .readers import seconds_to_frame


class ClipSpanError(ValueError):
    """A clip's times do not describe a valid span of frames."""


def clip_frame_span(start_s: float, end_s: float, fps: float, num_frames_in_video: int | None = None) -> tuple[int, int]:
    """(first, last) frame indices, inclusive, of the clip [start_s, end_s)."""
    if not (fps and math.isfinite(fps) and fps > 0):
        raise ClipSpanError(f"fps must be positive and finite, got {fps}")
    if not (math.isfinite(start_s) and math.isfinite(end_s)) or end_s <= start_s or start_s < 0:
        raise ClipSpanError(f"invalid clip span start={start_s} end={end_s} (need 0 <= start < end)")
    first = seconds_to_frame(start_s, fps)
    last = max(first, math.ceil(end_s * fps - 1e-6) - 1)
    if num_frames_in_video is not None:
        if first >= num_frames_in_video:
            raise ClipSpanError(f"clip starts at {start_s:.2f}s (frame {first}) past the video's end "
                                f"({num_frames_in_video} frames at {fps:g} fps)")
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
                   rng: np.random.Generator | None = None, num_frames_in_video: int | None = None) -> np.ndarray:
    """Frame indices for a clip.

    Args:
        start_s, end_s: clip span in seconds.
        fps: frame rate of the source.
        num_frames: frames to return.
        mode: ``uniform`` | ``random`` | ``centered`` | ``online`` (anchor = middle / end of the span).
        rng: numpy Generator for ``random``.
        num_frames_in_video: clamp to the source's length; a clip starting past it raises ClipSpanError.
    """
    first, last = clip_frame_span(start_s, end_s, fps, num_frames_in_video)
    if mode == "uniform":
        return uniform_indices(first, last, num_frames)
    if mode == "random":
        return random_indices(first, last, num_frames, rng or np.random.default_rng())
    if mode in ("centered", "online"):
        total = num_frames_in_video if num_frames_in_video is not None else last + 1
        anchor = (first + last) // 2 if mode == "centered" else last
        return np.clip(window_indices(anchor, num_frames, 1, mode, total), first, last)
    raise ValueError(f"unknown sampling mode {mode!r}; expected uniform, random, centered, online or dynamic")
