"""Evaluator clips: the published window at every row, each frame decoded once, skips counted by
reason with real broken files, programming errors propagating out of the reader thread."""
from collections import Counter

import numpy as np
import pytest
import torch
from PIL import Image

from surgclip.data.readers import open_source
from surgclip.sampling import window_indices
from surgclip.datasets.table import FrameSource, make_table
from surgclip.evaluation import clips as C
from surgclip.evaluation.clips import ForwardReads
from surgclip.transform import ClipTransform, PreprocessCfg

from helpers import record_reads, write_video

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


def test_the_evaluator_reads_each_video_front_to_back(tmp_path, monkeypatch):
    """Overlapping centered windows read one row at a time: every read starts past the previous
    one, each frame is read once, decord's random access is never used, and the clips stay those
    of a direct read."""
    import decord

    write_video(tmp_path / "v.mp4", 12, fps=5, size=32)
    monkeypatch.setattr(C, "READ_AHEAD_ROWS", 0)  # one row's new frames per read
    calls = []
    get_batch = decord.VideoReader.get_batch
    monkeypatch.setattr(decord.VideoReader, "get_batch", lambda self, i: calls.append(i) or get_batch(self, i))
    reads = record_reads(C, monkeypatch)
    table = _table({"v": FrameSource(tmp_path / "v.mp4")}, [t / 2 for t in range(24)])  # a row every 0.5 s
    clips, skipped = _collect(table, 4, "centered", prefetch=0, stride_s=0.4)  # windows of 2 frames apart
    assert calls == [] and len(reads) > 5
    assert all(min(b) > max(a) for a, b in zip(reads, reads[1:])), reads
    direct = open_source(tmp_path / "v.mp4")
    for row, t in enumerate(table.time_s):
        ref = TF(direct.read(window_indices(int(t * 5), 4, 2, "centered", direct.num_frames)))
        torch.testing.assert_close(clips[row], ref)


def test_a_batch_keeps_its_frames_layout_and_refuses_mismatched_frames():
    g = torch.Generator().manual_seed(0)
    frames = [torch.randint(0, 256, (6, 5, 3), generator=g, dtype=torch.uint8).permute(2, 0, 1) for _ in range(6)]
    clips = [frames[0:3], frames[2:5], frames[3:6]]  # channels-last [3, 6, 5] views, as the uint8 resize gives
    out = C.stack_clips(clips)
    assert torch.equal(out, torch.stack([torch.stack(c) for c in clips]))
    assert out[1, 2].stride() == frames[0].stride() and out.stride()[:2] == (3 * 90, 90)  # straight copies
    feats = [torch.randn(4, generator=g) for _ in range(3)]
    assert torch.equal(C.stack_clips([feats, feats[::-1]]), torch.stack([torch.stack(feats), torch.stack(feats[::-1])]))
    with pytest.raises(ValueError, match=r"clip 1: frames \[\(3, 6, 5\), \(3, 1, 5\)\]"):
        C.stack_clips([frames[:2], [frames[0], frames[1][:, :1]]])  # copy_ would broadcast the short frame
    with pytest.raises(ValueError, match="the batch's first clip: 2 x"):
        C.stack_clips([frames[:2], frames[:3]])


def test_forward_reads_cover_every_row_and_only_move_forward():
    """``ForwardReads`` on random overlapping windows (and rows without frames): reads never go
    back, and once rows up to ``j`` are read every frame they need has been read."""
    rng = np.random.default_rng(0)
    starts = np.sort(rng.integers(0, 200, 60))
    positions = np.sort(starts[:, None] + rng.integers(0, 30, (60, 5)), axis=1)
    positions[[4, 17, 18]] = -1
    forward = ForwardReads(positions)
    for rows in (1, 3, 8):
        seen, last = set(), -1
        for j in range(0, len(positions), rows):
            got = forward(j, rows)
            assert np.all(got[:-1] < got[1:]), "sorted, unique"
            new = [f for f in got.tolist() if f not in seen]
            assert not new or min(new) > last, (rows, j)
            seen.update(new)
            last = max(seen)
            done = positions[:j + rows]
            assert set(done[done >= 0].tolist()) <= seen, (rows, j)


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
