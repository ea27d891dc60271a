"""Readers against an independent decode (PyAV), on the sample and on real Cholec clips; bad files."""
import json

import numpy as np
import pytest

from surgclip.data.readers import FrameFolderReader, VideoFileReader, VideoReadError, open_source


def pyav_frames(path, indices) -> np.ndarray:
    """Decode every frame with PyAV and pick ``indices`` (the independent reference)."""
    import av

    want, out = set(int(i) for i in indices), {}
    with av.open(str(path)) as c:
        for i, frame in enumerate(c.decode(video=0)):
            if i in want:
                out[i] = frame.to_ndarray(format="rgb24")
            if i >= max(want):
                break
    return np.stack([out[int(i)] for i in indices])


@pytest.fixture
def decord_only(monkeypatch):
    """Readers that use decord's index, as for a file without one of its own (not MP4/MOV)."""
    from surgclip.data import readers

    monkeypatch.setattr(readers._PyAVDecoder, "from_container_index", classmethod(lambda cls, *a, **k: None))


def test_sample_video_matches_pyav(small_sample):
    path = next((small_sample / "videos").glob("*/*.mp4"))
    r = open_source(path)
    assert r.fps == 5 and r.num_frames > 150
    idx = [r.num_frames - 1, 0, 37, 38, 120, 37]  # unsorted, repeated, last frame
    frames = r.read(idx)
    assert frames.dtype == np.uint8 and frames.shape == (6, 160, 160, 3)
    assert np.array_equal(frames, pyav_frames(path, idx))


@pytest.mark.video
def test_real_cholec_clips_match_pyav(cholec_clips):
    rng = np.random.default_rng(0)
    for path in cholec_clips[:2]:
        r = VideoFileReader(path)
        assert r.fps == 25 and r.num_frames == 800
        idx = np.sort(rng.choice(r.num_frames, 6, replace=False))
        frames = r.read(idx)
        assert frames.shape == (6, 480, 854, 3)
        assert np.array_equal(frames, pyav_frames(path, idx)), path.name


def test_real_frame_folder_with_labels(realdata):
    folder = realdata / "frames" / "cholec80_video04"
    labels = (realdata / "labels" / "cholec80_every100frames" / "video_4.csv").read_text().split()[1:]
    phase_of = {int(line.split(",")[0].split(".")[0]): int(line.split(",")[1]) for line in labels}
    r = FrameFolderReader(folder, fps=0.25)  # every 100th frame of a 25-fps video
    assert r.num_frames == 381 and r.numbers[:3] == [0, 100, 200]  # numeric, not lexicographic, order
    frames = r.read([0, 10, 380])
    assert frames.shape == (3, 250, 250, 3) and frames.dtype == np.uint8
    assert all(n in phase_of for n in r.numbers)  # every frame has its phase label
    assert phase_of[r.numbers[0]] == 0 and phase_of[r.numbers[-1]] == 6
    from PIL import Image

    assert np.array_equal(frames[1], np.asarray(Image.open(folder / "1000.jpg").convert("RGB")))


def test_bad_video_files(tmp_path, small_sample):
    good = next((small_sample / "videos").glob("*/*.mp4"))
    with pytest.raises(VideoReadError, match="not found"):
        open_source(tmp_path / "missing.mp4")
    (tmp_path / "empty.mp4").write_bytes(b"")
    with pytest.raises(VideoReadError, match="empty"):
        open_source(tmp_path / "empty.mp4")
    (tmp_path / "text.mp4").write_text("this is not a video\n")
    with pytest.raises(VideoReadError, match="text.mp4"):
        open_source(tmp_path / "text.mp4")
    data = good.read_bytes()
    (tmp_path / "trunc.mp4").write_bytes(data[: len(data) // 2])
    with pytest.raises(VideoReadError, match="truncated video .*trunc.mp4"):
        open_source(tmp_path / "trunc.mp4")


def test_truncated_faststart_is_caught(tmp_path, small_sample):
    """moov first, media cut off: the decoder would open it, the box walk must refuse it."""
    import av

    good = next((small_sample / "videos").glob("*/*.mp4"))
    fast = tmp_path / "fast.mp4"
    with av.open(str(good)) as src, av.open(str(fast), "w", options={"movflags": "faststart"}) as dst:
        s_in = src.streams.video[0]
        s_out = dst.add_stream_from_template(s_in)
        for pkt in src.demux(s_in):
            if pkt.dts is not None:
                pkt.stream = s_out
                dst.mux(pkt)
    assert VideoFileReader(fast).num_frames > 0
    data = fast.read_bytes()
    assert data[4:8] == b"ftyp" and b"moov" in data[:4096]
    (tmp_path / "cut.mp4").write_bytes(data[: int(len(data) * 0.7)])
    with pytest.raises(VideoReadError, match="truncated"):
        VideoFileReader(tmp_path / "cut.mp4")


def test_frame_folder_errors(tmp_path):
    with pytest.raises(VideoReadError, match="positive fps"):
        FrameFolderReader(tmp_path, fps=float("nan"))
    with pytest.raises(VideoReadError, match="without frames.json"):
        open_source(tmp_path)
    with pytest.raises(VideoReadError, match="no numbered frame"):
        FrameFolderReader(tmp_path, fps=1)
    from PIL import Image

    for i in (0, 1, 2):
        Image.new("RGB", (8, 8), (i, 0, 0)).save(tmp_path / f"{i}.png")
    (tmp_path / "frames.json").write_text(json.dumps({"fps": 2}))
    r = open_source(tmp_path)
    assert r.fps == 2 and r.read([2, 0])[:, 0, 0, 0].tolist() == [2, 0]
    with pytest.raises(VideoReadError, match="outside 0..2"):
        r.read([3])
    (tmp_path / "1.png").write_bytes(b"garbage")
    with pytest.raises(VideoReadError, match="1.png"):
        r.read([1])


def test_decode_at_size_equals_pyav_decode_then_resize(small_sample):
    """decord scaling in the decoder ~ PyAV full-size decode + the transform's bicubic resize."""
    import torch
    from torchvision.transforms.v2 import functional as TF

    path = next((small_sample / "videos").glob("*/*.mp4"))
    idx = [0, 37, 120]
    r = VideoFileReader(path, size=lambda h, w: (96, 112))
    assert r.native_size == (160, 160) and r.frame_size == (96, 112)
    small = r.read(idx)
    assert small.shape == (3, 96, 112, 3) and small.dtype == np.uint8
    full = torch.from_numpy(pyav_frames(path, idx)).permute(0, 3, 1, 2)
    ref = TF.resize(full, [96, 112], interpolation=TF.InterpolationMode.BICUBIC, antialias=True)
    ref = ref.permute(0, 2, 3, 1).numpy().astype(np.float32)
    err = np.abs(small.astype(np.float32) - ref).mean(axis=(1, 2, 3))
    assert err.max() < 3.0, err  # grey levels; a different frame differs by far more
    other = np.abs(small[[1, 2, 0]].astype(np.float32) - ref).mean(axis=(1, 2, 3))
    assert other.min() > 3 * err.max()
    assert VideoFileReader(path, size=lambda h, w: None).frame_size == (160, 160)  # None: native size


def test_a_programming_error_in_decoding_is_not_bad_media(small_sample, monkeypatch, decord_only):
    """Only the decoder's own errors become VideoReadError (a counted skip); a TypeError is a bug."""
    import decord

    video = sorted((small_sample / "videos").glob("*/*.mp4"))[0]
    reader = VideoFileReader(video)

    def broken(self, indices):
        raise TypeError("bug in the caller")

    monkeypatch.setattr(decord.VideoReader, "get_batch", broken)
    with pytest.raises(TypeError, match="bug in the caller"):
        reader.read([0, 1])

    def undecodable(self, indices):
        raise decord.DECORDError("corrupt packet")

    monkeypatch.setattr(decord.VideoReader, "get_batch", undecodable)
    with pytest.raises(VideoReadError, match=r"cannot decode frames 0\.\.1 of .*: corrupt packet"):
        reader.read([0, 1])


def test_a_decord_reader_does_no_work_between_reads(tmp_path, decord_only):
    """decord's decoding thread would go on decoding what a read queued (here the rest of 200 noise
    frames: ~0.4 s of CPU in the idle half second) and keep every frame; a read leaves it idle, and
    the frames of later reads are still decord's."""
    import time

    from helpers import write_video

    path = tmp_path / "noise.mp4"
    write_video(path, 8, fps=25, size=256, noise=True)
    reader = VideoFileReader(path)
    first = reader.read([0, 1, 2])
    c0 = time.process_time()
    time.sleep(0.5)
    assert time.process_time() - c0 < 0.05  # this process's CPU, decord's threads included
    assert np.array_equal(first, pyav_frames(path, [0, 1, 2]))
    assert np.array_equal(reader.read([150, 3, 199]), pyav_frames(path, [150, 3, 199]))


def test_a_streaming_reader_decodes_forward_and_reads_the_same_frames(tmp_path, monkeypatch, decord_only):
    """``stream=True``: forward reads are decoded by PyAV in order (decord's get_batch is not
    called), a read that goes back is served by decord, and the frames equal decord's and PyAV's;
    a stream whose timestamps do not line up with decord's index is dropped for decord."""
    import decord

    from helpers import write_video

    path = tmp_path / "v.mp4"
    write_video(path, 12, fps=5, noise=True)  # 60 frames, every frame different
    plain, streaming = VideoFileReader(path), VideoFileReader(path, stream=True)
    calls = []
    get_batch = decord.VideoReader.get_batch
    monkeypatch.setattr(decord.VideoReader, "get_batch", lambda self, i: calls.append(list(i)) or get_batch(self, i))
    reads = [[0, 3], [4, 9, 9], [26, 10, 20], [5, 6], [41, 59]]  # [5, 6] goes back
    for idx in reads:
        calls_before = len(calls)
        got = streaming.read(idx)
        decord_calls = len(calls) - calls_before
        assert np.array_equal(got, plain.read(idx)) and np.array_equal(got, pyav_frames(path, idx)), idx
        assert decord_calls == (1 if idx == [5, 6] else 0), idx
    assert streaming._pyav.next == 60

    assert streaming._pyav.seeks == 0  # one keyframe (frame 0): nothing to jump to

    keyed = tmp_path / "keyed.mp4"
    write_video(keyed, 12, fps=5)  # a colour per second: keyframes at frames 0, 10, 25, 35, 50
    sparse = VideoFileReader(keyed, stream=True)
    assert sparse._pyav._keys.tolist() == [0, 10, 25, 35, 50]
    calls.clear()
    for idx, seeks in [([2, 4], 0), ([8, 9], 0), ([30], 1), ([33], 1), ([36, 52, 59], 3)]:
        assert np.array_equal(sparse.read(idx), pyav_frames(keyed, idx)), idx
        assert sparse._pyav.seeks == seeks, idx  # to keyframe 25 for 30 (10 passed over), 35 for 36, 50 for 52
    assert calls == []

    shifted = VideoFileReader(path, stream=True)
    starts = shifted._pyav.starts
    shifted._pyav.starts = type(starts)("d", [t + 0.2 for t in starts])  # frame i's time is now frame i+1's
    calls.clear()
    assert np.array_equal(shifted.read([2, 7]), pyav_frames(path, [2, 7]))
    assert calls == [[2, 7]] and shifted._pyav is None
    sized = VideoFileReader(path, size=lambda h, w: (h // 2, w // 2), stream=True)
    assert sized.read([3, 8]).shape == (2, 32, 32, 3) and calls == [[2, 7]]  # scaled as it converts


def test_an_mp4_is_read_over_its_own_index_without_decord(tmp_path, monkeypatch):
    """An MP4 carries its frames' index (the moov's sample tables): the reader takes it from there,
    reads in any order by seeking to the keyframe at or before what it wants, gives PyAV's frames,
    and never opens decord, whose index would demux the whole file."""
    import decord

    from helpers import write_video

    keyed = tmp_path / "keyed.mp4"
    write_video(keyed, 12, fps=5)  # a colour per second: keyframes at frames 0, 10, 25, 35, 50
    monkeypatch.setattr(decord.VideoReader, "__init__", lambda *a, **k: pytest.fail("decord opened"))
    reader = VideoFileReader(keyed)
    assert (reader.fps, reader.num_frames, reader.native_size) == (5.0, 60, (64, 64))
    assert reader._pyav._keys.tolist() == [0, 10, 25, 35, 50]
    # to 35 and 50; back to 0; on to 25; back to 0, then on through 33 from the frames read (no seek)
    for idx, seeks in [([36, 52, 59], 2), ([2, 4], 3), ([30], 4), ([59, 0, 33, 33], 7)]:
        assert np.array_equal(reader.read(idx), pyav_frames(keyed, idx)), idx
        assert reader._pyav.seeks == seeks, idx
    sized = VideoFileReader(keyed, size=lambda h, w: (32, 48))
    assert sized.frame_size == (32, 48) and sized.read([3, 40]).shape == (2, 32, 48, 3)


def test_an_mp4_with_two_video_streams_is_read_as_decord_reads_it(tmp_path):
    """A file with two video streams (a small preview first, say, or the two eyes of a stereo
    endoscope) is decord's to read: decord and FFmpeg's "best stream" rule disagree on which one
    is the video, and every reader, streaming or not, gives decord's frames."""
    import av
    import decord

    path = tmp_path / "two.mp4"
    rng = np.random.default_rng(0)
    with av.open(str(path), "w") as out:
        preview, video = out.add_stream("libx264", rate=5), out.add_stream("libx264", rate=5)
        for stream, size in ((preview, 32), (video, 64)):
            stream.width = stream.height = size
            stream.pix_fmt = "yuv420p"
        for _ in range(60):
            for stream, size in ((preview, 32), (video, 64)):
                frame = av.VideoFrame.from_ndarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8), format="rgb24")
                out.mux(stream.encode(frame))
        out.mux(preview.encode())
        out.mux(video.encode())
    reference = decord.VideoReader(str(path))
    assert len(reference) == 60 and reference[0].shape == (64, 64, 3)
    assert VideoFileReader(path)._pyav is None  # decord's from the start, not after a failed read
    for reader in (VideoFileReader(path), VideoFileReader(path, stream=True)):
        assert reader.num_frames == 60
        assert np.array_equal(reader.read([0, 7, 59]), reference.get_batch([0, 7, 59]).asnumpy())


def test_backend_decord_reads_an_mp4_with_decord(small_sample, monkeypatch):
    import decord

    path = next((small_sample / "videos").glob("*/*.mp4"))
    calls = []
    get_batch = decord.VideoReader.get_batch
    monkeypatch.setattr(decord.VideoReader, "get_batch", lambda self, i: calls.append(list(i)) or get_batch(self, i))
    reader = open_source(path, backend="decord")
    assert np.array_equal(reader.read([3, 1]), pyav_frames(path, [3, 1])) and calls == [[3, 1]]
    with pytest.raises(ValueError, match="unknown video backend 'pyav'"):
        VideoFileReader(path, backend="pyav")


def test_opening_an_mp4_reads_its_index_not_the_file(tmp_path):
    """Training opens a reader each time a video comes back into a worker's cache: opening reads the
    file's index, and a read of its first frames reads those frames' packets, not the file."""
    from helpers import write_video

    def bytes_read() -> int:
        with open("/proc/self/io") as f:
            return int(next(line for line in f if line.startswith("rchar")).split()[1])

    path = tmp_path / "noise.mp4"
    write_video(path, 8, fps=25, size=256, noise=True)  # 200 frames of noise: ~6 MB, one keyframe
    size = path.stat().st_size
    before = bytes_read()
    reader = VideoFileReader(path)
    opened = bytes_read() - before
    frames = reader.read([0, 2])
    read = bytes_read() - before - opened
    assert opened < size / 20 and read < size / 20, (opened, read, size)
    assert np.array_equal(frames, pyav_frames(path, [0, 2]))


def test_a_variable_frame_rate_mp4_without_b_frames_is_read_over_its_index(tmp_path, monkeypatch):
    """Frames 40, 80 or 120 ms apart, not reordered: the index's decoding times are the frames'
    times, so the reader gives decord's frame numbering without decord (and decord's frames)."""
    from fractions import Fraction

    import av
    import decord

    path = tmp_path / "vfr.mp4"
    rng = np.random.default_rng(0)
    times_ms = np.cumsum(rng.choice([40, 40, 40, 80, 120], 60))
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=25, options={"x264-params": "bframes=0:keyint=20"})
        stream.width = stream.height = 64
        stream.pix_fmt = "yuv420p"
        stream.codec_context.time_base = Fraction(1, 1000)
        for t in times_ms:
            frame = av.VideoFrame.from_ndarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8), format="rgb24")
            frame.pts, frame.time_base = int(t), Fraction(1, 1000)
            out.mux(stream.encode(frame))
        out.mux(stream.encode())
    reference = decord.VideoReader(str(path))
    expected = reference.get_batch([5, 0, 33, 59]).asnumpy()
    assert np.allclose(reference.get_frame_timestamp(range(60))[:, 0], (times_ms - times_ms[0]) / 1000, atol=1e-3)
    monkeypatch.setattr(decord.VideoReader, "__init__", lambda *a, **k: pytest.fail("decord opened"))
    reader = VideoFileReader(path)
    assert np.allclose(np.frombuffer(reader._pyav.starts), (times_ms - times_ms[0]) / 1000)
    assert np.array_equal(reader.read([5, 0, 33, 59]), expected)
    assert reader._pyav is not None and reader._pyav.seeks >= 1


def test_frames_off_the_container_index_go_to_decord(tmp_path, monkeypatch):
    """A file whose frames do not start at i / fps (variable frame rate, a frame dropped) is read
    by decord from the first frame out of place on, with decord's frames."""
    import decord

    from helpers import write_video

    path = tmp_path / "v.mp4"
    write_video(path, 4, fps=5, noise=True)
    calls = []
    get_batch = decord.VideoReader.get_batch
    monkeypatch.setattr(decord.VideoReader, "get_batch", lambda self, i: calls.append(list(i)) or get_batch(self, i))
    reader = VideoFileReader(path)
    assert np.array_equal(reader.read([1, 2]), pyav_frames(path, [1, 2])) and calls == []
    starts = reader._pyav.starts
    reader._pyav.starts = type(starts)("d", [t + 0.1 for t in starts])  # frame i now starts half a frame late
    assert np.array_equal(reader.read([6, 9]), pyav_frames(path, [6, 9]))
    assert calls == [[6, 9]] and reader._pyav is None
    assert np.array_equal(reader.read([0, 19]), pyav_frames(path, [0, 19])) and calls[-1] == [0, 19]


def test_a_streaming_reader_drops_the_b_frames_it_passes_over(tmp_path, monkeypatch):
    """H.264 with non-reference B-frames: the frames a read passes over go to the decoder with
    ``skip_frame=NONREF`` (dropped undecoded), the frames asked for, B-frames among them, equal
    PyAV's full decode, and decord is never asked."""
    import av
    import decord

    path = tmp_path / "b.mp4"
    yy, xx = np.mgrid[0:32, 0:48]
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=10, options={"preset": "veryfast",
                                                              "x264-params": "bframes=3:b-pyramid=none:keyint=40"})
        stream.width, stream.height, stream.pix_fmt = 48, 32, "yuv420p"
        for t in range(60):  # a moving gradient: x264 codes about a third of it as B-frames
            img = np.stack([(xx * 5 + 7 * t) % 256, (yy * 7 + 3 * t) % 256, ((xx + yy) * 3 + 11 * t) % 256], -1)
            out.mux(stream.encode(av.VideoFrame.from_ndarray(img.astype(np.uint8), format="rgb24")))
        out.mux(stream.encode())
    with av.open(str(path)) as c:
        b_frames = [i for i, f in enumerate(c.decode(video=0)) if f.pict_type == av.video.frame.PictureType.B]
    assert len(b_frames) > 10
    monkeypatch.setattr(decord.VideoReader, "get_batch", lambda self, i: pytest.fail("decord's random access"))
    reader = VideoFileReader(path, stream=True)
    reads = [[2, 9], [b_frames[5], 30], [b_frames[-1], 59]]
    for idx in reads:
        assert np.array_equal(reader.read(idx), pyav_frames(path, idx)), idx
    passed_over = set(range(60)) - set(sum(reads, []))
    assert 0 < reader._pyav.skipped <= len(passed_over)


def test_a_dropped_streaming_reader_frees_its_decoder_at_once(tmp_path):
    """No reference cycle between the decoder and its frame generator: dropping a reader closes its
    file and frees PyAV's buffers now, not at the cycle collector's next full pass (the indexer
    drops one reader per video)."""
    import gc
    import weakref

    from helpers import write_video

    path = tmp_path / "v.mp4"
    write_video(path, 2, fps=10, size=64)
    gc.disable()
    try:
        reader = open_source(path, stream=True)
        reader.read([0, 3, 7])
        assert reader._pyav is not None and reader._pyav.next == 8  # the read streamed
        decoder = weakref.ref(reader._pyav)
        del reader
        assert decoder() is None
    finally:
        gc.enable()


FORK_CHILD = r"""
import gc, os, sys, time
from pathlib import Path
from surgclip.data.readers import open_source

gc.disable()  # the garbage below waits for the child's collection
reader = open_source(Path(sys.argv[1]), stream=True)
reader.read([0, 3, 7])
assert reader._pyav is not None and reader._pyav.next == 8, "the read did not stream"
cycle = [reader._pyav]  # PyAV's side of the reader (decord's own threads are another matter)
cycle.append(cycle)  # garbage that only the cycle collector frees (an exception's traceback, say)
del reader, cycle
pid = os.fork()
if pid == 0:
    gc.collect()  # frees the parent's PyAV objects here, in a process without the parent's threads
    os._exit(0)
deadline = time.time() + 20
while time.time() < deadline:
    done, status = os.waitpid(pid, os.WNOHANG)
    if done:
        print("child exit", os.waitstatus_to_exitcode(status))
        break
    time.sleep(0.05)
else:
    os.kill(pid, 9)
    os.waitpid(pid, 0)
    print("child hung")
"""


def test_a_forked_process_can_free_a_stream_decoder_left_as_garbage(tmp_path):
    """A process forked after a stream was read (a DataLoader worker with ``worker_start: fork``,
    after zero-shot validation) inherits the garbage the cycle collector has not reached yet.
    Freeing a PyAV frame whose own colour converter ran slice threads waits for threads that do
    not exist in the child: it hung for good (seen with a DataLoader reader worker). The stream now
    converts every frame with one single-threaded converter. (A decord reader freed in a forked
    child hangs it the same way: see ``test_forked_workers_start_after_items_were_read_in_the_main_process``.)"""
    import subprocess
    import sys

    from helpers import write_video

    path = tmp_path / "v.mp4"
    write_video(path, 2, fps=10, size=64)
    out = subprocess.run([sys.executable, "-c", FORK_CHILD, str(path)], capture_output=True, text=True, timeout=120)
    assert out.stdout.strip() == "child exit 0", (out.stdout, out.stderr[-2000:])


def _pil_rgb(path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as img:
        return np.asarray(img.convert("RGB"))


def test_jpeg_frames_decode_as_pil_does(tmp_path, monkeypatch):
    """Colour, greyscale and progressive JPEGs go through torchvision's decoder op and give PIL's
    pixels; a CMYK JPEG and a PNG go through PIL; without the op every frame still reads."""
    from PIL import Image

    import surgclip.data.readers as readers

    rng = np.random.default_rng(0)
    smooth = np.cumsum(rng.integers(-9, 10, (48, 64, 3)), axis=1).clip(0, 255).astype(np.uint8)
    Image.fromarray(smooth).save(tmp_path / "0.jpg", quality=90)
    Image.fromarray(smooth[..., 0]).save(tmp_path / "1.jpg")  # greyscale
    Image.fromarray(smooth).save(tmp_path / "2.jpg", progressive=True, subsampling=0)
    Image.fromarray(smooth).convert("CMYK").save(tmp_path / "3.jpg")
    Image.fromarray(smooth).save(tmp_path / "4.png")
    paths = [tmp_path / n for n in ("0.jpg", "1.jpg", "2.jpg", "3.jpg", "4.png")]
    reference = [_pil_rgb(p) for p in paths]
    assert reference[1].shape == (48, 64, 3) and np.array_equal(reference[1][..., 0], reference[1][..., 2])

    op = readers._jpeg_op()
    assert op is not None  # torchvision 0.29 has it
    calls = []
    monkeypatch.setattr(readers, "_JPEG_OP", lambda *a: calls.append(1) or op(*a))
    for path, ref in zip(paths, reference):
        frame = readers._read_rgb(path)
        assert frame.dtype == np.uint8 and frame.shape == ref.shape and np.array_equal(frame, ref), path.name
    assert len(calls) == 3  # the three RGB / L JPEGs; CMYK and PNG by PIL

    monkeypatch.setattr(readers, "_JPEG_OP", False)  # a torchvision without the op
    for path, ref in zip(paths, reference):
        assert np.array_equal(readers._read_rgb(path), ref), path.name


def test_a_jpeg_frame_header_is_read_as_pil_reads_it_and_an_oversized_one_goes_to_pil(tmp_path, monkeypatch):
    """The frame header (precision, size, components) found by walking the markers equals PIL's
    reading, EXIF and restart intervals included; a header declaring more pixels than PIL allows is
    refused by PIL, without the decoder op ever allocating for it."""
    from PIL import Image

    import surgclip.data.readers as readers

    rng = np.random.default_rng(1)
    img = np.cumsum(rng.integers(-9, 10, (37, 53, 3)), axis=1).clip(0, 255).astype(np.uint8)
    exif = Image.Exif()
    exif[0x010E] = "frame 7"  # ImageDescription: an APP1 segment before the frame header
    variants = {"plain.jpg": {}, "exif.jpg": {"exif": exif.tobytes()}, "restart.jpg": {"restart_marker_rows": 1},
                "progressive.jpg": {"progressive": True}, "grey.jpg": {}, "cmyk.jpg": {}}
    for name, kwargs in variants.items():
        pil = Image.fromarray(img[..., 0] if name == "grey.jpg" else img)
        (pil.convert("CMYK") if name == "cmyk.jpg" else pil).save(tmp_path / name, **kwargs)
        data = (tmp_path / name).read_bytes()
        with Image.open(tmp_path / name) as ref:
            assert readers._jpeg_frame_header(data) == (8, ref.height, ref.width, len(ref.getbands())), name
    assert readers._jpeg_frame_header(b"\x89PNG\r\n") is None and readers._jpeg_frame_header(b"\xff\xd8\xff\xd9") is None

    data = bytearray((tmp_path / "plain.jpg").read_bytes())
    sof = data.index(b"\xff\xc0")
    data[sof + 5:sof + 9] = (60000).to_bytes(2, "big") * 2  # 60000 x 60000: over twice PIL's limit
    (tmp_path / "bomb.jpg").write_bytes(bytes(data))
    assert readers._jpeg_frame_header(bytes(data)) == (8, 60000, 60000, 3)
    monkeypatch.setattr(readers, "_JPEG_OP", lambda *a: pytest.fail("the decoder op was given the bomb"))
    with pytest.raises(VideoReadError, match=r"cannot read frame image .*bomb\.jpg: .*(exceeds limit|decompression bomb)"):
        readers._read_rgb(tmp_path / "bomb.jpg")


def test_broken_jpeg_frames_name_the_file(tmp_path):
    from PIL import Image

    from surgclip.data.readers import _read_rgb

    Image.new("RGB", (64, 48), (200, 30, 10)).save(tmp_path / "good.jpg")
    data = (tmp_path / "good.jpg").read_bytes()
    (tmp_path / "cut.jpg").write_bytes(data[: len(data) - 40])  # header intact, scan cut short
    with pytest.raises(VideoReadError, match=r"cannot read frame image .*cut\.jpg: .*(truncated|incomplete)"):
        _read_rgb(tmp_path / "cut.jpg")
    (tmp_path / "empty.jpg").write_bytes(b"")
    with pytest.raises(VideoReadError, match=r"empty\.jpg"):
        _read_rgb(tmp_path / "empty.jpg")
    with pytest.raises(VideoReadError, match=r"missing\.jpg"):
        _read_rgb(tmp_path / "missing.jpg")


def test_real_jpeg_frames_decode_as_pil_does(realdata):
    from surgclip.data.readers import _read_rgb

    files = sorted((realdata / "frames" / "cholec80_video04").glob("*.jpg"))[::25]
    assert len(files) >= 10
    for path in files:
        assert np.array_equal(_read_rgb(path), _pil_rgb(path)), path.name


def test_frame_cache_keeps_the_most_recent_frames_within_its_budget():
    from surgclip.data.readers import FrameCache

    frames = {k: np.full((2, 2, 3), ord(k), np.uint8) for k in "abcd"}  # 12 bytes each
    cache = FrameCache(max_bytes=36)
    for k in "abc":
        cache.put(k, frames[k].copy())
    assert cache.get("a") is not None  # a is now the most recent: b goes first
    cache.put("d", frames["d"].copy())
    assert cache.get("b") is None and [cache.get(k)[0, 0, 0] for k in "acd"] == [ord(c) for c in "acd"]
    assert cache.nbytes == 36 and len(cache) == 3 and (cache.hits, cache.misses) == (4, 1)
    with pytest.raises(ValueError, match="read-only"):
        cache.get("a")[0, 0, 0] = 0
    cache.put("big", np.zeros((4, 4, 3), np.uint8))  # larger than the whole budget: not kept
    assert cache.get("big") is None and len(cache) == 3


def test_frame_folder_reader_decodes_each_frame_once_with_a_cache(tmp_path, monkeypatch):
    from PIL import Image

    import surgclip.data.readers as readers

    rng = np.random.default_rng(0)
    for i in range(5):
        Image.fromarray(rng.integers(0, 255, (16, 24, 3), dtype=np.uint8)).save(tmp_path / f"{i}.jpg")
    plain = readers.FrameFolderReader(tmp_path, fps=1)
    expected = plain.read([0, 2, 4, 2])
    decoded = []
    real = readers._read_rgb
    monkeypatch.setattr(readers, "_read_rgb", lambda p: decoded.append(p.name) or real(p))
    cache = readers.FrameCache(max_bytes=1 << 20)
    first = readers.FrameFolderReader(tmp_path, fps=1, cache=cache).read([0, 2, 4, 2])
    first[:] = 0  # the caller's copy: the cached frames stay as decoded
    again = readers.FrameFolderReader(tmp_path, fps=1, cache=cache).read([4, 2, 0, 1])  # another reader, same process
    assert decoded == ["0.jpg", "2.jpg", "4.jpg", "1.jpg"]  # each file once
    assert np.array_equal(again[[2, 1, 0]], expected[[0, 1, 2]]) and np.array_equal(again[3], plain.read([1])[0])
