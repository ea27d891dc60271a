"""Evaluator clips: the published window at every row, each frame decoded once, skips counted by
reason with real broken files, programming errors propagating out of the reader thread."""
from collections import Counter

import numpy as np
import pytest
import torch
from PIL import Image

from surgclip.data.readers import open_source
from surgclip.data.samplers import window_indices
from surgclip.evaluation import clips as C
from surgclip.evaluation.table import FrameSource, make_table
from surgclip.transform import ClipTransform, PreprocessCfg

from .conftest import write_video

TF = ClipTransform(PreprocessCfg(image_size=8))


class CountingTransform:
    """ClipTransform that counts the frames it is given."""

    def __init__(self):
        self.frames = 0

    def __call__(self, frames):
        self.frames += len(frames)
        return TF(frames)


def _folder(path, n, size=8):
    path.mkdir()
    for i in range(n):  # frame i is grey level 20*i: decodable back to its index
        Image.fromarray(np.full((size, size, 3), 20 * i, np.uint8)).save(path / f"{i}.png")
    return path


def _table(videos: dict, seconds: list[float]):
    rows = [(v, t, 0, 0) for v in videos for t in seconds]
    table = make_table("t/phase", ["a", "b"], rows)
    table.sources = dict(videos)
    return table


def _collect(table, T, mode, stride_s=1.0, batch_size=3, transform=TF, prefetch=2):
    skipped, out = Counter(), {}
    for rows, clips in C.iter_clip_batches(table, transform, T, mode, stride_s, batch_size, skipped,
                                           prefetch=prefetch):
        assert clips.shape[1:] == (1 if mode == "frame" else T, 3, 8, 8)
        out.update(zip(rows.tolist(), clips))
    return out, skipped


@pytest.mark.parametrize("mode,T", [("centered", 4), ("online", 3), ("frame", 1)])
def test_clips_are_the_published_windows_decoded_once(tmp_path, mode, T):
    folder = _folder(tmp_path / "v", 9)
    table = _table({"v": FrameSource(folder, fps=2.0)}, [0.0, 0.5, 1.5, 2.5, 3.5, 4.0])  # 2-fps frames
    counting = CountingTransform()
    clips, skipped = _collect(table, T, mode, stride_s=0.5, transform=counting)
    assert not skipped and sorted(clips) == list(range(6))
    wanted = set()
    for row, t in enumerate(table.time_s):
        anchor = int(t * 2)
        expected = [anchor] if mode == "frame" else window_indices(anchor, T, 1, mode, 9).tolist()
        wanted.update(expected)
        got = ((clips[row][:, 0, 0, 0] * 0.5 + 0.5) * 255 / 20).round().long().tolist()
        assert got == expected, (row, got, expected)
    assert counting.frames == len(wanted)  # overlapping windows: every frame decoded exactly once


def test_clip_values_equal_direct_read_of_a_video(tmp_path):
    write_video(tmp_path / "v.mp4", 6, fps=5, size=32)
    table = _table({"v": FrameSource(tmp_path / "v.mp4")}, [0.0, 1.0, 3.0, 5.0])
    clips, skipped = _collect(table, 4, "centered", prefetch=0)
    reader = open_source(tmp_path / "v.mp4")
    for row, t in enumerate(table.time_s):
        ref = TF(reader.read(window_indices(int(t * 5), 4, 5, "centered", reader.num_frames)))
        torch.testing.assert_close(clips[row], ref)


def test_the_evaluator_renews_its_decoder_while_streaming_a_video(tmp_path, monkeypatch):
    """Every ``STREAM_RENEW_S`` of video the evaluator's reader gets a fresh decoder (decord's memory
    grows with one reader's life); the clips stay those of a direct read."""
    write_video(tmp_path / "v.mp4", 12, fps=5, size=32)
    readers = []
    monkeypatch.setattr(C, "STREAM_RENEW_S", 2.0)
    monkeypatch.setattr(C, "READ_AHEAD_ROWS", 0)  # one row's new frames per read
    monkeypatch.setattr(C, "open_source", lambda *a, **k: readers.append(open_source(*a, **k)) or readers[-1])
    table = _table({"v": FrameSource(tmp_path / "v.mp4")}, [float(t) for t in range(12)])
    clips, skipped = _collect(table, 4, "centered", prefetch=0)
    direct = open_source(tmp_path / "v.mp4")
    for row, t in enumerate(table.time_s):
        ref = TF(direct.read(window_indices(int(t * 5), 4, 5, "centered", direct.num_frames)))
        torch.testing.assert_close(clips[row], ref)
    assert len(readers) == 1 and readers[0].renewals >= 4  # reads of one row each, 5 frames apart


def test_skip_reasons_with_real_broken_files(tmp_path, caplog):
    write_video(tmp_path / "good.mp4", 4, fps=5, size=32)
    data = (tmp_path / "good.mp4").read_bytes()
    (tmp_path / "cut.mp4").write_bytes(data[: len(data) // 2])  # truncated: the index box is lost
    folder = _folder(tmp_path / "frames", 8)
    (folder / "5.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 10)  # one corrupt image
    table = _table({"good": FrameSource(tmp_path / "good.mp4"), "cut": FrameSource(tmp_path / "cut.mp4"),
                    "gone": FrameSource(tmp_path / "gone.mp4"), "frames": FrameSource(folder, fps=1.0)},
                   [0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0])
    clips, skipped = _collect(table, 2, "online")
    # good.mp4 is 4 s: labels at 4..7 s lie past its end. In the folder, of the rows read in one
    # batch, only the online windows at 5 s ([4, 5]) and 6 s ([5, 6]) need the corrupt 5.png.
    assert skipped == {"missing_frame": 4, "undecodable_media": 8 + 2, "missing_file": 8}
    frames_rows = np.flatnonzero(table.video == "frames")
    assert sorted(r for r in clips if r in frames_rows) == frames_rows[[0, 1, 2, 3, 4, 7]].tolist()
    assert "cut.mp4" in caplog.text and "5.png" in caplog.text


def test_programming_errors_propagate(tmp_path):
    folder = _folder(tmp_path / "v", 4)
    table = _table({"v": FrameSource(folder, fps=1.0)}, [0.0, 1.0])

    def broken(frames):
        raise TypeError("bug in a transform")

    for prefetch in (0, 2):
        with pytest.raises(TypeError, match="bug in a transform"):
            _collect(table, 2, "centered", transform=broken, prefetch=prefetch)


def test_ffmpeg_numbered_folder_starts_at_one(tmp_path):
    """MultiBypass140's util/extract_frames.py writes ffmpeg's ``<id>_%08d.jpg`` from 1: the frame
    shown at t s is file t + 1 (``first_number=1``); the 0-based default would read one second late."""
    folder = tmp_path / "BBP02"
    folder.mkdir()
    for n in range(1, 7):  # file n is grey level 20 * n
        Image.fromarray(np.full((8, 8, 3), 20 * n, np.uint8)).save(folder / f"BBP02_{n:08d}.png")
    for first, expected in ((1, {0: 1, 1: 2, 4: 5, 5: 6}), (0, {1: 1, 4: 4, 5: 5})):
        table = _table({"v": FrameSource(folder, fps=1.0, first_number=first)}, [0.0, 1.0, 4.0, 5.0])
        clips, skipped = _collect(table, 1, "frame")
        got = {int(table.time_s[r]): int(((c[0, 0, 0, 0] * 0.5 + 0.5) * 255 / 20).round()) for r, c in clips.items()}
        assert got == expected
        assert skipped == ({} if first else {"missing_frame": 1})  # 0-based: no file 0 for t = 0
