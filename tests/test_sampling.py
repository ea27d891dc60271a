"""The time base and the samplers (``surgclip.sampling``) against brute-force properties, for many
random spans."""
import math
from pathlib import Path

import numpy as np
import pytest

from surgclip.sampling import (ClipSpanError, clip_frame_span, frame_to_seconds, sample_indices, seconds_to_frame,
                               window_indices, window_spans)


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


# (anchor, T, stride, mode, total) -> frames, worked out by hand from the published VideoPreprocessor:
# every stride-th frame, window of T starting T//2 before the anchor (centered, slides to stay in
# the video) or ending at it (online), padded by repeating the window's last frame.
WINDOWS = [
    ((0, 4, 1, "centered", 10), [0, 1, 2, 3]),        # start: slides right, anchor first
    ((5, 4, 1, "centered", 10), [3, 4, 5, 6]),        # middle: T//2 before, T//2-1 after
    ((5, 5, 1, "centered", 100), [3, 4, 5, 6, 7]),
    ((9, 4, 1, "centered", 10), [6, 7, 8, 9]),        # end: slides left, anchor last
    ((0, 4, 1, "online", 10), [0, 0, 0, 0]),          # start: padded with the last (= anchor)
    ((1, 4, 1, "online", 10), [0, 1, 1, 1]),
    ((5, 4, 1, "online", 10), [2, 3, 4, 5]),
    ((9, 4, 1, "online", 10), [6, 7, 8, 9]),
    ((0, 4, 2, "centered", 10), [0, 2, 4, 6]),        # sample_rate / stride 2
    ((4, 4, 2, "centered", 10), [0, 2, 4, 6]),
    ((8, 4, 2, "centered", 10), [2, 4, 6, 8]),
    ((2, 4, 2, "online", 10), [0, 2, 2, 2]),
    ((3, 4, 2, "centered", 10), [1, 3, 5, 7]),        # off the 0-aligned grid: grid through the anchor
    ((10, 4, 2, "centered", 100), [6, 8, 10, 12]),
    ((10, 4, 2, "online", 100), [4, 6, 8, 10]),
    ((500, 4, 25, "centered", 1000), [450, 475, 500, 525]),  # 1-fps clip of a 25-fps video
    ((1, 4, 1, "centered", 3), [0, 1, 2, 2]),         # video shorter than T: padded
    ((2, 4, 1, "online", 3), [0, 1, 2, 2]),
    ((7, 1, 3, "online", 9), [7]),
    ((7, 1, 3, "centered", 9), [7]),
]


@pytest.mark.parametrize("args,expected", WINDOWS)
def test_window_table(args, expected):
    assert window_indices(*args).tolist() == expected


def test_window_errors():
    with pytest.raises(ValueError, match="anchor frame 10 outside the video's frames 0..9"):
        window_indices(10, 4, 1, "online", 10)
    with pytest.raises(ValueError, match="unknown window mode 'causal'"):
        window_indices(1, 4, 1, "causal", 10)


def _published_transforms():
    """The published package's ``surgclip/transforms.py`` (PyPI surgclip 0.1.0, installed into
    .peer/site by tests/install_peer.sh), loaded as is under another module name: it needs only
    torch, torchvision and PIL, and a subprocess would spend ~10 s importing torch on 2 busy cores."""
    import importlib.util
    import os

    from conftest import REPO

    peer = Path(os.environ.get("SURGCLIP_PEER_SITE", REPO / ".peer" / "site")) / "surgclip" / "transforms.py"
    if not peer.is_file():
        if os.environ.get("CI") == "true":
            pytest.fail(f"published SurgCLIP package missing ({peer}); CI installs it with tests/install_peer.sh")
        pytest.skip(f"published SurgCLIP package not installed ({peer}): run tests/install_peer.sh")
    spec = importlib.util.spec_from_file_location("published_surgclip_transforms", peer)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_windows_equal_published_videopreprocessor(tmp_path):
    """The published VideoPreprocessor picks the same frames as window_indices for every anchor on
    its grid (both modes, odd and even T, sample_rate 1 and 3, videos shorter and longer than T)."""
    from PIL import Image

    published = _published_transforms()
    checked = 0
    for total in (3, 11):
        folder = tmp_path / f"n{total}"
        folder.mkdir()
        for i in range(total):  # frame i has grey level 10*i; zero-padded names sort the same both ways
            Image.fromarray(np.full((2, 2, 3), 10 * i, np.uint8)).save(folder / f"{i:04d}.png")
        for T in (1, 4, 5):
            for rate in (1, 3):
                for mode in ("centered", "online"):
                    proc = published.VideoPreprocessor(num_frames=T, image_res=2, sample_rate=rate, mode=mode)
                    for anchor in range(0, total, rate):
                        clip = proc(folder / f"{anchor:04d}.png", add_batch_dim=False)
                        frames = (((clip[:, 0, 0, 0] * 0.5 + 0.5) * 255).round().long() // 10).tolist()
                        ours = window_indices(anchor, T, rate, mode, total).tolist()
                        assert ours == frames, (anchor, T, rate, mode, total)
                        checked += 1
    assert checked == 2 * 3 * (3 + 1 + 11 + 4)  # modes x T x anchors on each grid


def test_span_windows_use_the_published_window():
    # centered/online training clips: the published window inside the caption's frame span
    first, last = clip_frame_span(2.0, 6.0, 25)
    idx = sample_indices(2.0, 6.0, 25, 8, "online", stride=20)
    assert idx.tolist() == (first + window_indices(last - first, 8, 20, "online", last - first + 1)).tolist()
    assert idx.tolist() == [69, 89, 109, 129, 149, 149, 149, 149]  # 5 grid frames in the span, padded
    assert sample_indices(0, 4, 25, 8, "online", stride=1).tolist() == list(range(92, 100))
    # a span shorter than T frames: the window is padded with its last frame, never leaves the span
    assert sample_indices(1.0, 1.2, 25, 8, "centered").tolist() == [25, 26, 27, 28, 29, 29, 29, 29]


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


def test_a_window_holds_every_frame_on_screen_during_it():
    """Frame i is on screen during [i / fps, (i + 1) / fps); a clip [start, end) holds the frames that
    overlap it: from the one shown at ``start`` to the last one starting before ``end``."""
    rng = np.random.default_rng(3)
    for fps in (1, 5, 25, 29.97):
        for _ in range(300):
            start = float(rng.uniform(0, 20))
            end = start + float(rng.choice([rng.uniform(0.01, 10), np.ceil(rng.uniform(0.1, 10) * fps) / fps]))
            first, last = clip_frame_span(start, end, fps)
            on_screen = [i for i in range(int(end * fps) + 2)
                         if frame_to_seconds(i + 1, fps) > start + 1e-9 and frame_to_seconds(i, fps) < end - 1e-9]
            assert (first, last) == (on_screen[0], on_screen[-1]), (start, end, fps)
    assert clip_frame_span(0.0, 2.5, 1) == (0, 2) and clip_frame_span(0.0, 3.0, 1) == (0, 2)
    assert [seconds_to_frame(frame_to_seconds(i, 29.97), 29.97) for i in range(1000)] == list(range(1000))
    np.testing.assert_array_equal(frame_to_seconds(np.arange(4), 2.0), [0.0, 0.5, 1.0, 1.5])


def test_sliding_windows_cover_the_video():
    assert window_spans(10.0, 4.0, 2.0) == [(0.0, 4.0), (2.0, 6.0), (4.0, 8.0), (6.0, 10.0)]
    assert window_spans(9.0, 4.0, 2.0)[-1] == (5.0, 9.0) and window_spans(3.0, 4.0, 2.0) == [(0.0, 3.0)]
    with pytest.raises(ValueError):
        window_spans(10.0, 0.0, 2.0)
