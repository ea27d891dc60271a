"""Samplers against brute-force properties, for many random spans."""
import math

import numpy as np
import pytest

from surgclip.data.readers import seconds_to_frame
from surgclip.data.samplers import ClipSpanError, clip_frame_span, sample_indices, window_indices


def test_seconds_to_frame_exact_boundaries():
    for fps in (1, 5, 25, 29.97, 30000 / 1001):
        for i in range(0, 2000, 37):
            assert seconds_to_frame(i / fps, fps) == i
            assert seconds_to_frame((i + 0.999) / fps, fps) == i
    with pytest.raises(ValueError):
        seconds_to_frame(1.0, float("nan"))


@pytest.mark.parametrize("mode", ["uniform", "random", "centered", "online", "dynamic"])
def test_indices_stay_in_span_sorted(mode):
    rng = np.random.default_rng(0)
    for _ in range(300):
        fps = float(rng.choice([1, 5, 25, 30]))
        start = float(rng.uniform(0, 100))
        end = start + float(rng.uniform(0.05, 500))
        total = int(rng.integers(1, 20000))
        t = int(rng.integers(1, 33))
        try:
            first, last = clip_frame_span(start, end, fps, total)
        except ClipSpanError:
            assert seconds_to_frame(start, fps) >= total
            continue
        idx = sample_indices(start, end, fps, t, mode, rng=np.random.default_rng(1), num_frames_in_video=total)
        assert idx.shape == (t,) and idx.dtype == np.int64
        assert idx.min() >= first and idx.max() <= last <= total - 1
        assert np.all(np.diff(idx) >= 0)
        # brute force: the frames shown during [start, end)
        shown = [i for i in (first, last) if i / fps < end + 1e-9 and (i + 1) / fps > start - 1e-9]
        assert len(shown) == 2


def test_uniform_and_random_cover_segments():
    idx = sample_indices(0, 10, 25, 10, "uniform")
    assert np.array_equal(idx, np.arange(10) * 25 + 12)
    rng = np.random.default_rng(0)
    draws = np.stack([sample_indices(0, 10, 25, 10, "random", rng=rng) for _ in range(500)])
    assert np.array_equal(draws // 25, np.tile(np.arange(10), (500, 1)))  # one per segment
    assert len(np.unique(draws[:, 0])) == 25  # every frame of a segment reachable


def test_dynamic_stride_grows_with_duration_and_jitters():
    rng = np.random.default_rng(0)
    strides = {}
    for dur in (2, 20, 200, 500):
        s = [np.diff(sample_indices(0, dur, 25, 16, "dynamic", rng=rng)).mean() for _ in range(50)]
        strides[dur] = np.mean(s)
        assert np.std(s) > 0 or dur == 2
    assert strides[2] <= strides[20] < strides[200] < strides[500]
    assert strides[500] > 400


def test_centered_online_windows():
    assert list(window_indices(10, 4, 2, "centered", 100)) == [6, 8, 10, 12]
    assert list(window_indices(10, 4, 2, "online", 100)) == [4, 6, 8, 10]
    assert list(window_indices(1, 4, 1, "online", 100)) == [0, 0, 0, 1]
    idx = sample_indices(0, 4, 25, 8, "online", stride=1)
    assert idx[-1] == 99 and list(np.diff(idx)) == [1] * 7


@pytest.mark.parametrize("start,end,fps", [(5, 5, 25), (6, 5, 25), (0, 1, float("nan")), (0, 1, 0),
                                           (float("nan"), 2, 25), (-1, 2, 25)])
def test_bad_spans_raise(start, end, fps):
    with pytest.raises(ClipSpanError):
        sample_indices(start, end, fps, 8)


def test_past_end_raises_or_clamps():
    with pytest.raises(ClipSpanError, match="past the video's end"):
        clip_frame_span(50, 60, 25, num_frames_in_video=1000)  # video is 40 s
    with pytest.raises(ClipSpanError, match="ends at 45.00s"):
        clip_frame_span(30, 45, 25, num_frames_in_video=1000, end_tolerance_s=1.0)
    assert clip_frame_span(30, 40.5, 25, num_frames_in_video=1000, end_tolerance_s=1.0) == (750, 999)
    with pytest.raises(ValueError, match="needs an rng"):
        sample_indices(0, 1, 25, 4, "random")
    with pytest.raises(ValueError, match="unknown sampling mode"):
        sample_indices(0, 1, 25, 4, "bogus")
    assert math.isfinite(1.0)
