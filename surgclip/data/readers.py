"""Frame sources behind one small interface: ``fps``, ``num_frames``, ``read(indices) -> uint8 [T,H,W,3]``.

``VideoFileReader`` decodes a video file with PyAV over the container's own index (MP4/MOV), or
with decord (batched random access; front to back with PyAV over decord's index when it streams,
``stream=True``: the evaluator and the indexer); ``FrameFolderReader``
reads a folder of numbered images. ``open_source`` picks one from a path.

``read_clip`` reads a clip, a source's frames over a time span, for every reader of one clip at a
time (training items, the evaluators, the contact sheet, ``surgclip serve`` thumbnails);
``read_image`` reads one frame image; ``skip_reason`` names why a source could not be read.
"""
from __future__ import annotations

import array
import bisect
import io
import json
import math
import operator
import re
import weakref
from collections import OrderedDict
from pathlib import Path
from typing import Sequence

import numpy as np

from ..sampling import ClipSpanError, sample_indices
from ..utils import frame_number, list_frame_files


class VideoReadError(ValueError):
    """A video or frame source is missing, unreadable, or asked for frames it does not have."""


FRAMES_MANIFEST = "frames.json"  # written by ``surgclip extract-frames`` into every frame folder


def check_mp4_boxes(path: Path) -> None:
    """Raise VideoReadError if an MP4/MOV file's top-level boxes run past its end (a truncated file).

    decord/FFmpeg open a truncated file whose index (``moov``) comes first and then hand back
    stale or blank frames for the missing part; walking the box headers catches that in microseconds.
    Files that do not start with an ISO-BMFF box are left to the decoder.
    """
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(12)
        if len(head) < 8 or head[4:8] not in (b"ftyp", b"moov", b"mdat", b"free", b"wide", b"skip"):
            return
        pos, seen = 0, []
        while pos < size:
            f.seek(pos)
            hdr = f.read(16)
            if len(hdr) < 8:
                raise VideoReadError(f"truncated video {path}: {size - pos} stray bytes after the last box")
            box_size, kind = int.from_bytes(hdr[:4], "big"), hdr[4:8].decode("latin-1")
            if box_size == 1 and len(hdr) == 16:
                box_size = int.from_bytes(hdr[8:16], "big")
            elif box_size == 0:
                box_size = size - pos
            if box_size < 8 or pos + box_size > size:
                raise VideoReadError(f"truncated video {path}: box '{kind}' at byte {pos} declares {box_size} "
                                     f"bytes but the file has {size - pos} left")
            seen.append(kind)
            pos += box_size
        if "moov" not in seen:
            raise VideoReadError(f"truncated video {path}: no 'moov' index box (boxes: {seen})")


class FrameReader:
    """Interface: ``fps`` (float), ``num_frames`` (int), ``read(indices) -> uint8 [T, H, W, 3]``."""

    path: Path
    fps: float
    num_frames: int

    @property
    def duration(self) -> float:
        return self.num_frames / self.fps

    def _check(self, indices: Sequence[int]) -> np.ndarray:
        idx = np.asarray(indices, dtype=np.int64)
        if idx.size == 0:
            raise VideoReadError(f"{self.path}: no frame indices requested")
        bad = idx[(idx < 0) | (idx >= self.num_frames)]
        if bad.size:
            raise VideoReadError(f"{self.path}: frame index {int(bad[0])} outside 0..{self.num_frames - 1}")
        return idx

    def read(self, indices: Sequence[int]) -> np.ndarray:
        raise NotImplementedError


class VideoFileReader(FrameReader):
    """A video file; ``read`` fetches all requested frames in one batch.

    MP4/MOV files are decoded with PyAV from the container's own index: the sample tables of the
    ``moov`` box, which opening the file reads (a small fraction of the file, even for hours), give
    every frame's time and the keyframes, so a read seeks to the keyframe at or before its first
    frame and decodes forward from there (``_PyAVDecoder``). decord serves other files, and any
    file whose decoded frames do not land where that index says (a variable frame rate with
    B-frames, a dropped frame): opening a decord reader demuxes the whole file to build its own
    index (it reads the whole file, an hour-long video included),
    which training pays again each time a video comes back into a worker's reader cache. Frame
    ``i`` is decord's frame ``i`` either way.

    Args:
        path: the video file.
        num_threads: decoding threads.
        size: None (decode at the native size), or a callable ``(height, width) -> (h, w) | None``
            given the native frame size: when it returns a size, each frame is scaled to ``h x w``
            as it is converted to RGB (bicubic, by FFmpeg's scaler), which costs no more than a
            native decode and removes the resize of full-size frames from the transform.
            ``native_size`` / ``frame_size``: the file's and the decoded (height, width) (both None
            for decord without a ``size`` rule: the header is not probed).
        stream: for a pass through the file in time order (the evaluator, the indexer) of a file
            decord serves: PyAV decodes it front to back in the calling thread over decord's index,
            each frame once; reads that go back are served by decord. decord's background thread
            decodes ahead of a slow consumer and keeps what it decoded, so its memory grows with the
            video while the stream's stays flat (``eval/bench/bench_memory_index.py --reader stream
            decord``). (PyAV over the container's index streams anyway.)
        backend: ``"auto"`` (PyAV over the container's index where it has one, else decord) or
            ``"decord"`` (decord's index and reads, as for a file without an index of its own).
    """

    def __init__(self, path: str | Path, num_threads: int = 1, size=None, stream: bool = False,
                 backend: str = "auto"):
        self.path = Path(path)
        if not self.path.is_file():
            raise VideoReadError(f"video not found: {self.path}")
        if self.path.stat().st_size == 0:
            raise VideoReadError(f"video is empty (0 bytes): {self.path}")
        if self.path.suffix.lower() in (".mp4", ".m4v", ".mov"):
            check_mp4_boxes(self.path)
        self._num_threads, self._size_rule, self._vr = num_threads, size, None
        if backend not in ("auto", "decord"):
            raise ValueError(f"unknown video backend {backend!r}; expected 'auto' or 'decord'")
        self._pyav = _PyAVDecoder.from_container_index(self.path, num_threads) if backend == "auto" else None
        if self._pyav is not None:
            self.native_size = self._pyav.native_size
            self.fps, self.num_frames = self._pyav.fps, len(self._pyav.starts)
        else:
            self.native_size = probe_frame_size(self.path) if size is not None else None
            self._vr = self._open()
            self.fps = float(self._vr.get_avg_fps())
            self.num_frames = len(self._vr)
        if not (self.fps > 0 and math.isfinite(self.fps)) or self.num_frames <= 0:
            raise VideoReadError(f"{self.path}: invalid fps {self.fps} or frame count {self.num_frames}")
        target = size(*self.native_size) if size is not None and self.native_size is not None else None
        self.frame_size = tuple(int(v) for v in target) if target is not None else self.native_size
        if self._pyav is not None:
            self._pyav.out_size = self.frame_size if self.frame_size != self.native_size else None
        elif stream:
            self._pyav = _PyAVDecoder(self.path, num_threads, *_decord_index(self._vr), self.fps)
            self._pyav.out_size = self.frame_size if self.frame_size != self.native_size else None

    def _open(self):
        import decord

        kwargs = {}
        if self.native_size is not None and self._size_rule is not None:
            target = self._size_rule(*self.native_size)
            if target is not None and tuple(target) != self.native_size:
                kwargs = {"height": int(target[0]), "width": int(target[1])}  # decord sizes its output at open only
        try:
            return decord.VideoReader(str(self.path), num_threads=self._num_threads, **kwargs)
        except (decord.DECORDError, RuntimeError) as err:  # decord's errors for anything undecodable;
            # a TypeError & co. is a bug and propagates instead of being counted as bad media
            raise VideoReadError(f"cannot open video {self.path}: {str(err).splitlines()[0]}") from err

    def read(self, indices: Sequence[int]) -> np.ndarray:
        idx = self._check(indices)
        from decord import DECORDError

        if self._pyav is not None and (self._vr is None or idx.min() >= self._pyav.next):
            frames = self._pyav.read(idx)
            if frames is not None:
                return frames
            self._pyav = None  # out of line with the index, or undecodable: decord from here on
        if self._vr is None:
            self._vr = self._open()
            if len(self._vr) != self.num_frames:
                raise VideoReadError(f"{self.path}: decord counts {len(self._vr)} frames where the container's "
                                     f"index has {self.num_frames}")
        try:
            batch = self._vr.get_batch(idx.tolist())
            frames = batch.asnumpy() if hasattr(batch, "asnumpy") else np.asarray(batch)
        except (DECORDError, RuntimeError) as err:
            raise VideoReadError(f"cannot decode frames {idx.min()}..{idx.max()} of {self.path}: "
                                 f"{str(err).splitlines()[0]}") from err
        finally:
            self._park()  # a failed read may have queued packets too
        if frames.shape[0] != idx.size or frames.ndim != 4:
            raise VideoReadError(f"{self.path}: asked for {idx.size} frames, decoder returned shape {frames.shape}")
        return frames

    def _park(self) -> None:
        """Stop decord's work after a read. Its decoding thread goes on decoding the packets the
        read queued, often the rest of the file, and keeps every frame it decodes: hundreds of MiB
        per reader of a 480p clip, and CPU spent on frames nobody asked for. Training keeps up to 64
        readers open per worker. A seek empties the queues, and the next read seeks anyway, so the
        frames are the same (``test_a_decord_reader_does_no_work_between_reads`` checks the reader
        stays idle after a read)."""
        from decord import DECORDError

        try:
            self._vr.seek(0)
        except (DECORDError, RuntimeError):  # only costs the read-ahead it would have stopped
            pass


def _decord_index(vr) -> tuple[array.array, np.ndarray]:
    """decord's start time of each frame (s) and its keyframes, as ``_PyAVDecoder`` takes them."""
    starts = array.array("d", vr.get_frame_timestamp(range(len(vr)))[:, 0].astype(np.float64).tobytes())
    return starts, np.sort(np.asarray(vr.get_key_indices(), dtype=np.int64))


class _PyAVDecoder:
    """A video file decoded by PyAV in the calling thread, over an index of its frames: each
    frame's start time (``starts``, seconds from the stream's start) and the keyframes (``keys``).

    The index comes from the container (``from_container_index``: an MP4's sample tables) or from
    decord (``_decord_index``). Each decoded frame is placed in it by its timestamp, so frame ``i``
    here is the index's frame ``i``; a frame that is not there (a dropped or extra frame) makes
    ``read`` give up (None) and leave the read to decord. Frames not asked for cost as little as the
    codec allows: a read seeks to the keyframe at or before the next frame it wants when that lies
    past the current position (or before it), and a packet of a frame that the read passes over is
    decoded with ``skip_frame=NONREF``, so the decoder drops it when no other frame refers to it
    (non-reference B-frames, over half the frames of the real Cholec clips: the decoder skips their
    work). ``out_size``: (h, w) to scale to while converting to RGB.
    """

    def __init__(self, path: Path, num_threads: int, starts: array.array, keys: np.ndarray, fps: float,
                 container=None):
        self.path, self.num_threads, self.next, self.fps = path, num_threads, 0, float(fps)
        # Looked up for every packet and frame: an array of doubles, where ``bisect`` and item access
        # cost a fraction of numpy's per-call overhead
        self.starts, self._keys = starts, keys
        self._tolerance = 0.25 / fps
        self._container, self._frames, self._rgb, self.out_size = container, None, None, None
        self.native_size = None
        if container is not None:
            ctx = container.streams.video[0].codec_context
            self.native_size = (int(ctx.height), int(ctx.width)) if ctx.height and ctx.width else None
        self._wanted, self._upto, self._skip_on = set(), -1, False
        self.seeks = self.skipped = 0  # seeks made; packets decoded with skip_frame=NONREF

    @classmethod
    def from_container_index(cls, path: Path, num_threads: int = 1) -> "_PyAVDecoder | None":
        """A decoder over the index an MP4/MOV container carries (None where it has none to give:
        another container, a count of index entries other than the stream's frame count, no
        keyframe flags, no frame rate). Decoding checks each frame's timestamp against the start
        the index gives it, and a file where they differ goes to decord at that read."""
        try:
            import av
        except ImportError:
            return None
        try:
            container = av.open(str(path))
        except (av.FFmpegError, OSError):
            return None  # decord reports the real problem when it opens the file
        try:
            if not {"mov", "mp4"} & set(container.format.name.split(",")) or len(container.streams.video) != 1:
                raise LookupError  # (with two video streams, decord's choice of one is not FFmpeg's "best")
            video = container.streams.video[0]
            rate = video.average_rate or video.guessed_rate
            entries = video.index_entries
            n = len(entries)
            if not rate or rate <= 0 or n == 0 or n != video.frames:
                raise LookupError
            # per frame in decode order: flags (AVINDEX_KEYFRAME 1, AVINDEX_DISCARD_FRAME 2) and the
            # decoding timestamp (the entries made once, then an attrgetter map each: opening an
            # hour-long index stays cheap)
            entries = list(entries)
            flags, dts = (np.fromiter(map(operator.attrgetter(a), entries), np.int64, n) for a in ("flags", "timestamp"))
            keys = np.flatnonzero(flags & 1)
            # no keyframe to start from; frames an edit list cuts (decord counts them otherwise);
            # decoding times that do not increase
            if keys.size == 0 or keys[0] != 0 or (flags & 2).any() or (np.diff(dts) <= 0).any():
                raise LookupError
        except (LookupError, av.FFmpegError):
            container.close()
            return None
        # The frames' start times from their decoding times: the same times, shifted, when frames
        # are not reordered (no B-frames), so a variable frame rate is read as it is; with B-frames,
        # equally spaced decoding times stand for equally spaced frames (a constant frame rate),
        # and any other stream fails the decoded frames' timestamp check (decord then).
        starts = array.array("d", ((dts - dts[0]) * float(video.time_base)).tobytes())
        return cls(path, num_threads, starts, keys, float(rate), container)

    def _open(self) -> bool:
        """Ready to decode; False for a file with more than one video stream (which is decord's)."""
        import av
        from av.video.reformatter import VideoReformatter

        if self._container is None:
            self._container = av.open(str(self.path))
        if len(self._container.streams.video) != 1:
            return False
        # One converter to RGB for every frame, on one thread. A frame's own ``to_ndarray(format=)``
        # makes a new swscale context per frame, with slice threads on every core: slower than one
        # reused converter (the same pixels), and threads that a forked process (a DataLoader
        # worker) inherits as a context it can never free: freeing it there waits for threads that
        # do not exist, forever (when a frame is still garbage at the fork).
        self._rgb = VideoReformatter()
        self._video = self._container.streams.video[0]
        self._video.thread_count = self.num_threads
        self._t0, self._time_base = self._video.start_time or 0, float(self._video.time_base)
        self._frames = self._decode()
        return True

    def _decode(self):
        """Frames decoded from the demuxer's position on (see ``_decoded``). The generator holds this
        decoder weakly: with no cycle between them, a dropped reader frees its file and PyAV's
        buffers at once, not at the cycle collector's next full pass."""
        return _decoded(weakref.proxy(self), self._container, self._video)

    def _seek(self, i: int) -> None:
        """Decode on from the last keyframe at or before frame ``i``."""
        key = int(self._keys[max(0, np.searchsorted(self._keys, i, "right") - 1)])
        target = (self.starts[key] + self._tolerance) / self._time_base + self._t0
        self._container.seek(int(target), stream=self._video, backward=True, any_frame=False)
        self._frames = self._decode()
        self.next = key  # (frames before it that come first, an open GOP's leading frames: passed over)
        self.seeks += 1

    def _locate(self, frame) -> int | None:
        """The index of a decoded frame in the index (None: no frame there)."""
        return None if frame.pts is None else self._index((frame.pts - self._t0) * self._time_base)

    def _index(self, t: float) -> int | None:
        """The index of the frame that starts at ``t`` seconds (None: no frame there)."""
        if self.next < len(self.starts) and abs(self.starts[self.next] - t) <= self._tolerance:
            return self.next  # the usual case: the frame after the last one
        k = bisect.bisect_left(self.starts, t - self._tolerance)
        return k if k < len(self.starts) and abs(self.starts[k] - t) <= self._tolerance else None

    def read(self, idx: np.ndarray) -> np.ndarray | None:
        """Frames ``idx``, [T, H, W, 3] uint8; None where the decoder cannot give them as the index
        says (a frame missing or out of place, a decoding error, an early end)."""
        import av

        wanted, where = np.unique(idx, return_inverse=True)
        self._wanted, self._upto = set(wanted.tolist()), int(wanted[-1])
        out = None  # [len(wanted), H, W, 3], each frame converted straight into its place
        size = {} if self.out_size is None else {"height": self.out_size[0], "width": self.out_size[1],
                                                  "interpolation": "BICUBIC"}
        try:
            for j, i in enumerate(wanted.tolist()):
                if self._frames is None and not self._open():
                    return None
                if i < self.next or np.searchsorted(self._keys, self.next, "right") < np.searchsorted(self._keys, i, "right"):
                    self._seek(i)  # back, or a keyframe after ``next`` at or before ``i``: jump to it
                k = None
                while self.next <= i:
                    frame = next(self._frames, None)
                    k = None if frame is None else self._locate(frame)
                    if k is None or k > i:
                        return None
                    if k >= self.next:  # (after a seek, frames before ``next`` come again: passed over)
                        self.next = k + 1
                if k != i:
                    return None
                rgb = self._rgb.reformat(frame, format="rgb24", threads=1, **size).to_ndarray()
                if out is None:
                    out = np.empty((len(wanted), *rgb.shape), np.uint8)
                out[j] = rgb
        except av.FFmpegError:
            return None
        return out if len(wanted) == len(idx) and np.array_equal(wanted, idx) else out[where.ravel()]


def _decoded(dec: _PyAVDecoder, container, video):
    """Frames of ``video`` from the demuxer's position on, in presentation order; packets of frames
    before ``dec._upto`` that are not in ``dec._wanted`` go in with ``skip_frame=NONREF``. (One
    decoding thread only: with frame threads the setting would reach the decoder late.)"""
    ctx = video.codec_context
    for packet in container.demux(video):
        if dec.num_threads <= 1 and packet.pts is not None:
            k = dec._index((packet.pts - dec._t0) * dec._time_base)
            skip = k is not None and k < dec._upto and k not in dec._wanted
            if skip != dec._skip_on:
                ctx.skip_frame, dec._skip_on = ("NONREF" if skip else "DEFAULT"), skip
            dec.skipped += skip
        yield from ctx.decode(packet)


class FrameCache:
    """Decoded frames kept by one process from read to read, least recently used out first, within
    ``max_bytes``.

    Training reads the same frames every epoch, and without a cache each epoch decodes them again.
    A persistent data worker with a cache decodes a frame once while it fits. Frames are stored read-only and readers copy them into each clip, so nothing
    downstream can change a cached frame. A frame file changed on disk during a run is not read again.
    """

    def __init__(self, max_bytes: int):
        self.max_bytes, self.nbytes, self.hits, self.misses = int(max_bytes), 0, 0, 0
        self._frames: OrderedDict = OrderedDict()

    def __len__(self) -> int:
        return len(self._frames)

    def get(self, key) -> np.ndarray | None:
        frame = self._frames.get(key)
        if frame is None:
            self.misses += 1
            return None
        self._frames.move_to_end(key)
        self.hits += 1
        return frame

    def put(self, key, frame: np.ndarray) -> None:
        if frame.nbytes > self.max_bytes:
            return
        frame.flags.writeable = False
        old = self._frames.pop(key, None)
        self.nbytes += frame.nbytes - (old.nbytes if old is not None else 0)
        self._frames[key] = frame
        while self.nbytes > self.max_bytes:
            self.nbytes -= self._frames.popitem(last=False)[1].nbytes


class FrameFolderReader(FrameReader):
    """A folder of numbered images (``000123.jpg``, ``video01_123.png``, ``123.webp``).

    Frame ``i`` is the ``i``-th file in frame-number order; ``fps`` is the rate the frames were
    extracted at (frame numbers may skip, e.g. every 100th frame of a 25-fps video -> fps 0.25).
    ``cache``: a FrameCache to take decoded frames from and add them to (shared by the readers of
    one process).
    """

    def __init__(self, path: str | Path, fps: float | None = None, cache: FrameCache | None = None):
        self.path, self.cache = Path(path), cache
        if fps is None:
            fps = read_folder_fps(self.path)
        if not (fps and fps > 0 and math.isfinite(fps)):
            raise VideoReadError(f"{self.path}: frame folder needs a positive fps, got {fps}")
        try:
            self.files = list_frame_files(self.path)
        except (FileNotFoundError, ValueError) as err:
            raise VideoReadError(str(err)) from err
        self.fps = float(fps)
        self.num_frames = len(self.files)
        self.numbers = [frame_number(f) for f in self.files]

    def read(self, indices: Sequence[int]) -> np.ndarray:
        idx = self._check(indices)
        out, seen, cache = [], {}, self.cache
        for i in idx.tolist():
            if i not in seen:
                frame = cache.get(self.files[i]) if cache is not None else None
                if frame is None:
                    frame = _read_rgb(self.files[i])
                    if cache is not None:
                        cache.put(self.files[i], frame)
                seen[i] = frame
            out.append(seen[i])
        shapes = {a.shape for a in out}
        if len(shapes) > 1:
            raise VideoReadError(f"{self.path}: frames have different sizes {sorted(shapes)}")
        return np.stack(out)


def _jpeg_op():
    """torchvision's CPU JPEG decoder op (libjpeg-turbo, output straight into a tensor), or None.

    The op behind ``torchvision.io.decode_jpeg``, called directly: that wrapper warns on every call
    that torchvision's image codecs are deprecated (from 0.29, in favour of TorchCodec, which is not
    a dependency here). When a torchvision without it arrives, frames are decoded by PIL again.
    """
    global _JPEG_OP
    if _JPEG_OP is None:
        try:
            import torch
            import torchvision.io.image  # noqa: F401  (loads the image ops)

            _JPEG_OP = torch.ops.image.decode_jpeg
        except (ImportError, AttributeError, RuntimeError):
            _JPEG_OP = False
    return _JPEG_OP or None


_JPEG_OP = None
_JPEG_RGB = 3  # torchvision's ImageReadMode.RGB


# JPEG start-of-frame markers (baseline, extended, progressive, lossless; Huffman and arithmetic):
# C4 (DHT), C8 (reserved) and CC (DAC) are not frames
_SOF_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}


def _jpeg_frame_header(data: bytes) -> tuple[int, int, int, int] | None:
    """(sample precision, height, width, components) from a JPEG's frame header, found by walking
    its marker segments from the start (a few, before the first scan); None for anything else."""
    if data[:2] != b"\xff\xd8":
        return None
    pos, end = 2, len(data)
    while pos + 4 <= end:
        if data[pos] != 0xFF:
            return None
        marker = data[pos + 1]
        if marker == 0xFF:  # a fill byte
            pos += 1
        elif marker in _SOF_MARKERS:
            if pos + 10 > end:
                return None
            return (data[pos + 4], int.from_bytes(data[pos + 5:pos + 7], "big"),
                    int.from_bytes(data[pos + 7:pos + 9], "big"), data[pos + 9])
        elif marker in (0xD9, 0xDA):  # end of image, start of scan: no frame header before them
            return None
        else:
            pos += 2 + int.from_bytes(data[pos + 2:pos + 4], "big")
    return None


def _read_rgb(path: Path) -> np.ndarray:
    """One frame image file -> uint8 [H, W, 3] (``decode_image`` of its bytes); a missing or broken
    file is a VideoReadError naming it."""
    try:
        data = path.read_bytes()
    except OSError as err:
        raise VideoReadError(f"cannot read frame image {path}: {err}") from err
    return decode_image(data, path)


def decode_image(data: bytes, where) -> np.ndarray:
    """One encoded frame image (JPEG, PNG, ...) -> uint8 [H, W, 3]; broken data is a VideoReadError
    naming ``where`` (the file, or the shard member, it came from).

    An 8-bit colour or greyscale JPEG within PIL's decompression-bomb limit (read from its frame
    header, ``_jpeg_frame_header``) is decoded by torchvision's libjpeg-turbo op straight into a
    tensor: the same pixels as PIL's decoder, which is libjpeg-turbo too, at least as fast, with no
    PIL -> numpy copy. Reading the header without PIL saves PIL's parse of it, a sizeable share of
    decoding a small frame. Every other image (CMYK, 12-bit, PNG, an oversized one) goes to PIL,
    which refuses an image over its limit.
    """
    from PIL import Image

    try:
        header = _jpeg_frame_header(data)
        op = None
        if header is not None and header[0] == 8 and header[3] in (1, 3) and \
                (Image.MAX_IMAGE_PIXELS is None or header[1] * header[2] <= Image.MAX_IMAGE_PIXELS):
            op = _jpeg_op()
        if op is None:
            with Image.open(io.BytesIO(data)) as img:
                img.load()
                # an RGB image is read as is (no converted copy); others (L, P, CMYK, RGBA) are converted
                return np.asarray(img if img.mode == "RGB" else img.convert("RGB"))
        import torch

        try:  # [3, H, W] with the decoder's H, W, 3 memory: the permute is the frame as it lies
            return op(torch.frombuffer(bytearray(data), dtype=torch.uint8), _JPEG_RGB, False).permute(1, 2, 0).numpy()
        except RuntimeError as err:  # libjpeg's error (truncated or corrupt data), as the op raises it
            # its first line, less the C++ source location: "decode_jpeg, <file>:<line>, <message>"
            raise OSError(re.sub(r"^\w+, \S+:\d+, ", "", str(err).strip().splitlines()[0])) from err
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:
        # PIL signals broken files with all of these (e.g. SyntaxError "broken PNG file")
        raise VideoReadError(f"cannot read frame image {where}: {err}") from err


def probe_frame_size(path: Path) -> tuple[int, int] | None:
    """A video file's native (height, width) from its stream header (PyAV, no decoding; without
    PyAV, decord decodes the first frame); None if unknown."""
    try:
        import av
    except ImportError:  # an install without PyAV (a dependency): decord answers
        import decord

        try:
            return tuple(int(v) for v in decord.VideoReader(str(path), num_threads=1)[0].shape[:2])
        except Exception:
            return None
    try:
        with av.open(str(path)) as container:
            ctx = container.streams.video[0].codec_context
            return (int(ctx.height), int(ctx.width)) if ctx.height and ctx.width else None
    except (av.FFmpegError, IndexError, OSError):
        return None  # decord reports the real problem when it opens the file


def read_folder_fps(path: Path) -> float:
    """The fps recorded in a frame folder's ``frames.json`` (written by ``extract-frames``)."""
    meta = path / FRAMES_MANIFEST
    if not meta.is_file():
        raise VideoReadError(f"{path} is a frame folder without {FRAMES_MANIFEST}: pass the fps it was extracted at")
    try:
        fps = json.loads(meta.read_text())["fps"]
        if isinstance(fps, bool) or not isinstance(fps, (int, float, str)):  # true would read as 1 fps
            raise TypeError(f"'fps' is {fps!r}")
        return float(fps)
    except (ValueError, KeyError, TypeError) as err:
        raise VideoReadError(f"{meta}: expected a JSON object with a numeric 'fps', got an error: {err}") from err


def open_source(path: str | Path, fps: float | None = None, num_threads: int = 1, size=None,
                frame_cache: FrameCache | None = None, stream: bool = False, backend: str = "auto") -> FrameReader:
    """A reader for a video file or a frame folder.

    Args:
        path: a video file, or a folder of numbered frames.
        fps: the rate a frame folder was extracted at (default: its ``frames.json``); ignored for files.
        num_threads: decord decoding threads for video files.
        size: decode-size rule for video files, ``(height, width) -> (h, w) | None`` (see
            ``VideoFileReader``); frame folders are read at their stored size.
        frame_cache: decoded frames kept for frame folders (see ``FrameCache``); ignored for files.
        stream: a video file is read front to back in time order (see ``VideoFileReader``);
            ignored for folders.
        backend: how a video file is read, ``"auto"`` or ``"decord"`` (see ``VideoFileReader``).
    Returns:
        A FrameReader.
    Raises:
        VideoReadError: missing, empty, truncated or undecodable source, or a folder without fps.
    """
    path = Path(path)
    if path.is_dir():
        return FrameFolderReader(path, fps, cache=frame_cache)
    return VideoFileReader(path, num_threads=num_threads, size=size, stream=stream, backend=backend)


def read_clip(source, start_s: float, end_s: float, num_frames: int, mode: str = "uniform",
              rng: np.random.Generator | None = None, *, fps: float | None = None, stride: int | None = None,
              end_tolerance_s: float | None = None, check=None) -> tuple[np.ndarray, np.ndarray]:
    """The clip ``[start_s, end_s)`` of a source: its frame indices and its frames.

    The frames are ``sampling.sample_indices`` of the span at the source's own fps and length, so
    every reader of a clip reads the same frames for the same span.

    Args:
        source: an open ``FrameReader``, or a video file / frame folder (``open_source(source, fps=fps)``).
        start_s, end_s, num_frames, mode, rng, stride, end_tolerance_s: see ``sampling.sample_indices``.
        fps: the rate of a frame folder given by path (default: its ``frames.json``).
        check: called with the frame indices before any frame is read; it may raise to refuse them.
    Returns:
        (int64 [T] frame indices, uint8 [T, H, W, 3] frames).
    Raises:
        VideoReadError: the source is missing or its frames do not decode.
        ClipSpanError: the span does not fit the source.
    """
    reader = source if isinstance(source, FrameReader) else open_source(source, fps=fps)
    idx = sample_indices(start_s, end_s, reader.fps, num_frames, mode, rng, reader.num_frames, stride=stride,
                         end_tolerance_s=end_tolerance_s)
    if check is not None:
        check(idx)
    return idx, reader.read(idx)


def read_image(path: str | Path) -> np.ndarray:
    """One frame image file -> uint8 [H, W, 3], decoded as the frames of a frame folder are.

    Raises:
        VideoReadError: naming the file, when it is missing or does not decode.
    """
    return _read_rgb(Path(path))


def skip_reason(path: str | Path, err: Exception) -> str | None:
    """The ``utils.SKIP_REASONS`` name for a source at ``path`` whose read raised ``err``:
    ``missing_file`` when nothing is at ``path``, ``bad_span`` for a ``ClipSpanError``,
    ``undecodable_media`` for a ``VideoReadError``; None for any other error (the caller names it)."""
    if not Path(path).exists():
        return "missing_file"
    if isinstance(err, ClipSpanError):
        return "bad_span"
    if isinstance(err, VideoReadError):
        return "undecodable_media"
    return None
