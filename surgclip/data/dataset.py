"""Clip-caption dataset and its collate: ClipTable rows -> frames -> float clips; tokens in the collate.

Item ``i``: ``readers.read_clip`` (sampler(start_s, end_s, fps, T, mode) -> frame indices -> reader.read)
-> uint8 [T, H, W, 3] -> ClipTransform (train: one random draw per clip) -> [T, 3, S, S].
Readers are opened lazily in the process that uses them (never shared across a fork) and kept in a
per-process cache large enough for every video of a small dataset (reopening a decoder per item
costs more than decoding a short clip). Video files larger than the model input are decoded at a
reduced size (``DecodeSize``): FFmpeg scales while it converts to RGB, so the transform never
touches full-size frames. The collate stacks into shared memory (no copy on the way to the main
process) and can normalise uint8 items once per batch. Bad items raise ``BadItemError`` naming the caption and video, or, with
``skip_errors``, become a ``SKIPPED`` marker counted in a counter shared by all worker processes.
"""
from __future__ import annotations

import multiprocessing as mp
import os
from collections import OrderedDict
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset, get_worker_info

from .batch_pool import BatchPool, empty_shared
from .db import ClipTable
from ..sampling import ClipSpanError
from ..transform import clip_batch_layout, stack_clips
from ..utils import CLIP_SKIP_REASONS
from .readers import FrameCache, FrameReader, VideoReadError, open_source, read_clip, skip_reason
from .worker_memory import keep_freed_memory


class BadItemError(RuntimeError):
    """A dataset item could not be produced; the message names the caption id, video and cause."""


class SkipCounter:
    """A count of skipped items shared by the main process and its (forked or spawned) workers."""

    def __init__(self):
        self._value = mp.get_context("spawn").Value("q", 0)  # shareable with fork, forkserver and spawn workers

    def add(self, n: int = 1) -> None:
        with self._value.get_lock():
            self._value.value += n

    def take(self) -> int:
        """The count so far, resetting it to zero."""
        with self._value.get_lock():
            n, self._value.value = self._value.value, 0
        return int(n)

    @property
    def value(self) -> int:
        return int(self._value.value)


SKIPPED = {"skipped": True}
# Readers a forked worker inherited from its parent (items read in the main process before the
# loader started, with ``worker_start: fork``): kept referenced there and never used. Freeing a
# decord reader in the child hangs (its destructor waits on its decoding thread's queue, a thread
# that was not forked with it), and a PyAV reader's file shares its read offset with the parent's.
_INHERITED_READERS: list = []


class DecodeSize:
    """The size to decode a video at for a ClipTransform: ``(height, width) -> (h, w) | None``.

    Never upscales (None: decode at the native size when the frame is not larger than needed).
    Evaluation decodes straight at what the transform's resize would produce (``squash``: S x S;
    ``shortest``: short side S; ``laparoscopic``: 360 x 640), so the transform's resize becomes a
    no-op. Training keeps the aspect ratio and shrinks the short side to ``S / sqrt(min crop scale)``
    (317 px for S=224, scale 0.5): every random-resized crop is then still at least S pixels on
    a side before its one resize, and is drawn over the same fraction of the frame as at full size.

    Args:
        image_size: S; resize: the PreprocessCfg resize mode; train: training transform.
        min_scale: the smallest random-resized-crop area fraction (training only).
    """

    def __init__(self, image_size: int, resize: str = "squash", train: bool = False, min_scale: float = 1.0):
        self.image_size, self.resize, self.train, self.min_scale = int(image_size), resize, train, float(min_scale)

    @classmethod
    def for_transform(cls, transform) -> "DecodeSize | None":
        """The rule for a ClipTransform (None for any other transform: decode at the native size)."""
        from ..transform import ClipTransform

        if not isinstance(transform, ClipTransform):
            return None
        scale = 1.0
        for step in getattr(transform.augment, "transforms", []):
            scale = min(scale, float(getattr(step, "scale", (1.0,))[0]))
        return cls(transform.cfg.image_size, transform.cfg.resize, transform.train, scale)

    def __call__(self, height: int, width: int) -> tuple[int, int] | None:
        s = self.image_size
        if self.train:
            short = int(np.ceil(s / np.sqrt(max(self.min_scale, 1e-3))))
            k = short / min(height, width)
            return (int(round(height * k)), int(round(width * k))) if k < 1 else None
        if self.resize == "squash":
            return (s, s) if height >= s and width >= s else None
        if self.resize == "shortest":
            if min(height, width) <= s:
                return None
            # torchvision's own rounding for resize(x, s), so the transform then resizes nothing
            long = int(s * max(height, width) / min(height, width))
            return (s, long) if height <= width else (long, s)
        if self.resize == "laparoscopic":
            return (360, 640) if height >= 360 and width >= 640 else None
        return None

    def __repr__(self) -> str:
        return f"DecodeSize({self.image_size}, {self.resize!r}, train={self.train}, min_scale={self.min_scale})"


def source_path(name: str, video_root: Path | None = None, frames_root: Path | None = None) -> Path:
    """Where video ``name`` is read from: its frame folder ``{frames_root}/{name}/`` when frames_root
    is given, else ``{video_root}/{name}/{name}.mp4`` (the SurgLaVi layout) or, when only it exists,
    ``{video_root}/{name}.mp4`` (a plain folder of videos, as ``surgclip data import`` takes them)."""
    if frames_root is not None:
        return Path(frames_root) / name
    nested = Path(video_root) / name / f"{name}.mp4"
    if nested.is_file():
        return nested
    flat = Path(video_root) / f"{name}.mp4"
    return flat if flat.is_file() else nested


class ClipDataset(Dataset):
    """Clips of a ClipTable read from video files or frame folders.

    Args:
        table: the selected caption rows.
        video_root: videos at ``{video_root}/{name}/{name}.mp4`` or ``{video_root}/{name}.mp4`` (used
            when ``frames_root`` is None).
        frames_root: frame folders at ``{frames_root}/{name}/``; fps from ``frames_fps`` or the
            folder's ``frames.json``.
        frames_fps: the rate the frame folders were extracted at.
        num_frames: T.
        mode: sampler mode (``uniform`` | ``random`` | ``centered`` | ``online`` | ``dynamic``).
        transform: callable uint8 [T,H,W,3] -> float [T,3,S,S] (e.g. ClipTransform), or None
            (then ``video`` is the uint8 array as a tensor).
        skip_errors: return ``SKIPPED`` for bad items and count them instead of raising.
        end_tolerance_s: a clip may end this far past the end of its video (then clamped);
            further is an error.
        cache_size: open readers kept per process.
        decode_at_size: decode video files larger than the model input at a reduced size
            (``DecodeSize.for_transform(transform)``) instead of full size.
        seed: with the epoch (see ``set_epoch``), fixes each item's frame sampling and augmentation.
        frame_cache_mb: decoded frames of frame folders kept per process (MiB, least recently used
            out first; ``readers.FrameCache``), so persistent workers decode a frame once while it
            fits instead of every epoch; 0 keeps none.
    Item:
        dict(video [T,3,S,S] (float, or uint8 from a ``normalize=False`` transform), caption str, level int, video_id str (the video's name),
        caption_id int, start_s float, end_s float).
    """

    def __init__(self, table: ClipTable, video_root: str | Path | None = None, frames_root: str | Path | None = None,
                 frames_fps: float | None = None, num_frames: int = 8, mode: str = "uniform", transform=None,
                 skip_errors: bool = False, end_tolerance_s: float = 1.0, cache_size: int = 64,
                 decode_at_size: bool = True, seed: int = 0, frame_cache_mb: float = 0.0):
        if video_root is None and frames_root is None:
            raise ValueError("give video_root (video files) or frames_root (frame folders)")
        self.table = table
        self.video_root = Path(video_root) if video_root is not None else None
        self.frames_root = Path(frames_root) if frames_root is not None else None
        self.frames_fps = frames_fps
        self.num_frames, self.mode, self.transform = num_frames, mode, transform
        self.skip_errors, self.end_tolerance_s = skip_errors, end_tolerance_s
        self.cache_size, self.decode_at_size = cache_size, decode_at_size
        self.seed = seed
        self.frame_cache_mb = float(frame_cache_mb)
        self._frame_cache: FrameCache | None = None
        # shared with the workers, so that persistent workers (whose copy of the dataset lives on across
        # epochs) draw each epoch's frames and augmentation
        self._epoch = mp.get_context("spawn").Value("q", 0)
        self.skipped = SkipCounter()
        self._readers: OrderedDict = OrderedDict()
        self._pid = os.getpid()

    def __len__(self) -> int:
        return len(self.table)

    def set_epoch(self, epoch: int) -> None:
        """Item ``i`` draws its random frames and augmentation from (seed, epoch, i) alone, whatever
        the worker, the process or the global RNG state, so a resumed run repeats its epochs exactly.
        The epoch is shared memory: it reaches worker processes that already run (persistent workers)."""
        self._epoch.value = int(epoch)

    @property
    def epoch(self) -> int:
        return int(self._epoch.value)

    def source_path(self, name: str) -> Path:
        """Where video ``name`` is read from (``source_path``)."""
        return source_path(name, self.video_root, self.frames_root)

    def reader(self, name: str) -> FrameReader:
        """An open reader for video ``name`` from this process's cache."""
        if self._pid != os.getpid():  # a forked worker: never reuse the parent's decoders, nor free them
            _INHERITED_READERS.append(self._readers)
            self._readers, self._pid, self._frame_cache = OrderedDict(), os.getpid(), None
        if self._frame_cache is None and self.frame_cache_mb > 0:
            self._frame_cache = FrameCache(int(self.frame_cache_mb * 2 ** 20))
        if name in self._readers:
            self._readers.move_to_end(name)
            return self._readers[name]
        size = DecodeSize.for_transform(self.transform) if self.decode_at_size else None
        reader = open_source(self.source_path(name), fps=self.frames_fps, size=size, frame_cache=self._frame_cache)
        self._readers[name] = reader
        while len(self._readers) > self.cache_size:
            self._readers.popitem(last=False)
        return reader

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_readers"] = OrderedDict()  # decoders do not travel to spawned workers
        state["_frame_cache"] = None  # nor decoded frames: each process keeps its own
        return state

    def load_frames(self, i: int, rng: np.random.Generator | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(frame indices int64 [T], uint8 frames [T,H,W,3]) of item ``i``; raises BadItemError."""
        t = self.table
        name, cid = t.video_name[i], int(t.caption_id[i])
        try:
            return read_clip(self.reader(name), float(t.start_s[i]), float(t.end_s[i]), self.num_frames, self.mode,
                             rng, end_tolerance_s=self.end_tolerance_s)
        except (VideoReadError, ClipSpanError) as err:
            raise BadItemError(f"caption {cid} (video {name!r}, {t.start_s[i]:.2f}-{t.end_s[i]:.2f}s): {err}") from err

    def skip_reason(self, name: str, err: BadItemError) -> str:
        """One of ``utils.CLIP_SKIP_REASONS``: the source is absent, its span is outside the video, or
        it is unreadable (``readers.skip_reason``)."""
        return skip_reason(self.source_path(name), err.__cause__) or "undecodable_media"

    def __getitem__(self, i: int) -> dict:
        t = self.table
        rng = np.random.default_rng([self.seed, self.epoch, i])
        try:
            _, frames = self.load_frames(i, rng)
        except BadItemError as err:
            if not self.skip_errors:
                raise
            self.skipped.add()
            return dict(SKIPPED, caption_id=int(t.caption_id[i]), reason=self.skip_reason(t.video_name[i], err))
        if self.transform is None:
            video = torch.from_numpy(frames)
        else:
            with torch.random.fork_rng(devices=[]):  # augmentation from the item's own seed
                torch.default_generator.manual_seed(int(rng.integers(2 ** 62)))  # CPU only: no CUDA lazy-init
                video = self.transform(frames)
        return {"video": video, "caption": t.caption[i], "level": int(t.level[i]), "video_id": t.video_name[i],
                "caption_id": int(t.caption_id[i]), "start_s": float(t.start_s[i]), "end_s": float(t.end_s[i])}


def _empty_batch_tensor(shape: tuple, dtype: torch.dtype, stride: tuple) -> torch.Tensor:
    """An uninitialised tensor laid out with ``stride``, in shared memory inside a DataLoader worker
    so that sending the batch to the main process passes a file descriptor instead of copying it
    (as default_collate)."""
    if get_worker_info() is None:
        return torch.empty_strided(shape, stride, dtype=dtype)
    return empty_shared(shape, dtype, stride)


class Collate:
    """Stack items and tokenize their captions (once per batch).

    Args:
        tokenizer: callable list[str] -> LongTensor [N, L].
        normalize: a PreprocessCfg: uint8 item videos are normalised here, once per batch, into the
            float batch (``(x / 255 - mean) / std``, as ``transform.normalize_frames``); None keeps
            the items' dtype.
        pool: a ``BatchPool``: in a DataLoader worker, the batch's video is written into one of the
            worker's reused shared-memory buffers (None: a fresh one per batch).
    Returns (per batch):
        video [B,T,3,S,S], tokens [B,L], level/caption_id LongTensor [B], start_s/end_s float [B],
        video_id list[str], caption list[str], num_skipped int (SKIPPED markers dropped from this batch).
        A batch whose items were all skipped has B = 0 (``video`` is an empty tensor).
    """

    def __init__(self, tokenizer, normalize=None, pool: BatchPool | None = None):
        self.tokenizer, self.normalize, self.pool = tokenizer, normalize, pool

    def _empty(self, shape: tuple, dtype: torch.dtype, stride: tuple) -> torch.Tensor:
        return (_empty_batch_tensor if self.pool is None else self.pool.empty)(shape, dtype, stride)

    def stack_video(self, videos: list[torch.Tensor]) -> torch.Tensor:
        """[B, T, 3, S, S], written once into its (shared-memory) destination, in the items' memory
        layout (``transform.clip_batch_layout``: channels-last for augmented uint8 items)."""
        if any(v.shape != videos[0].shape for v in videos):  # (a copy into the batch would broadcast them)
            raise ValueError(f"clips in one batch differ in shape: {sorted({tuple(v.shape) for v in videos})}")
        shape, stride = clip_batch_layout(videos)
        if self.normalize is not None and videos[0].dtype == torch.uint8:
            cfg = self.normalize
            std = torch.tensor(cfg.std, dtype=torch.float32).view(3, 1, 1)
            mean = torch.tensor(cfg.mean, dtype=torch.float32).view(3, 1, 1)
            shift, scale = -mean / std, 1.0 / (255.0 * std)
            out = self._empty(shape, torch.float32, stride)
            if stride[2] == 1:  # channels-last items and batch: each row of a frame is W x 3 values in
                # memory; with the channels' factors repeated along it, the pass runs over contiguous
                # rows (the same bits), not 3-long innermost loops, which are several times slower
                t, _, h, w = videos[0].shape
                shift, scale = shift.view(3).repeat(w), scale.view(3).repeat(w)
                rows = lambda x: x.permute(0, 2, 3, 1).view(t, h, w * 3)  # noqa: E731
                for i, v in enumerate(videos):
                    torch.addcmul(shift, rows(v), scale, out=rows(out[i]))
                return out
            for i, v in enumerate(videos):  # per item: the uint8 -> float pass writes straight into the batch
                torch.addcmul(shift, v, scale, out=out[i])
            return out
        return stack_clips(videos, out=self._empty(shape, videos[0].dtype, stride))

    def __call__(self, items: list[dict]) -> dict:
        good = [it for it in items if not it.get("skipped")]
        batch = {"num_skipped": len(items) - len(good)}
        if not good:
            batch.update(video=torch.empty(0), tokens=torch.empty(0, dtype=torch.long),
                         level=torch.empty(0, dtype=torch.long), caption_id=torch.empty(0, dtype=torch.long),
                         start_s=torch.empty(0), end_s=torch.empty(0), video_id=[], caption=[])
            return batch
        captions = [it["caption"] for it in good]
        video = self.stack_video([it["video"] for it in good])
        batch.update(
            video=video if self.pool is None else self.pool.wrap(video),
            tokens=self.tokenizer(captions),
            level=torch.tensor([it["level"] for it in good], dtype=torch.long),
            caption_id=torch.tensor([it["caption_id"] for it in good], dtype=torch.long),
            start_s=torch.tensor([it["start_s"] for it in good], dtype=torch.float32),
            end_s=torch.tensor([it["end_s"] for it in good], dtype=torch.float32),
            video_id=[it["video_id"] for it in good], caption=captions)
        return batch


class PaddedCollate:
    """``Collate`` that keeps every batch at its full size, so ranks never disagree on shapes or steps.

    A skipped item (``skip_errors``) is replaced by a copy of a valid item of the same batch (cycling
    through them), or by ``blank`` when none is valid; ``valid`` marks the real ones and the loss and
    the metrics ignore the rest. Dropping skipped items instead would give ranks batches of different
    sizes (the loss all-gathers equal sizes) or empty batches (a rank that skips a step hangs DDP).

    Args:
        tokenizer: callable list[str] -> LongTensor [N, L].
        blank: a stand-in item (uint8 ``video`` [T,3,S,S]) for all-skipped batches.
        normalize, pool: passed to ``Collate`` (a PreprocessCfg normalises uint8 videos once per batch;
            a BatchPool reuses the workers' shared batch buffers).
    Returns (per batch): ``Collate``'s batch (B = the number of items drawn) plus ``valid`` bool [B]
        and ``skipped`` {reason: count} over ``utils.CLIP_SKIP_REASONS``.
    """

    def __init__(self, tokenizer, blank: dict, normalize=None, pool: BatchPool | None = None):
        self.collate, self.blank = Collate(tokenizer, normalize=normalize, pool=pool), blank

    def __call__(self, items: list[dict]) -> dict:
        good = [it for it in items if not it.get("skipped")]
        skipped = {reason: 0 for reason in CLIP_SKIP_REASONS}
        for it in items:
            if it.get("skipped"):
                skipped[it.get("reason", "undecodable_media")] += 1
        fill = good or [self.blank]
        padded, k = [], 0
        for it in items:
            if it.get("skipped"):
                padded.append(fill[k % len(fill)])
                k += 1
            else:
                padded.append(it)
        batch = self.collate(padded)
        batch["num_skipped"] = len(items) - len(good)
        batch["valid"] = torch.tensor([not it.get("skipped") for it in items], dtype=torch.bool)
        batch["skipped"] = skipped
        return batch


def worker_init(worker_id: int) -> None:
    """DataLoader ``worker_init_fn``: one decoding thread per worker, freed memory kept for the next item."""
    # Each worker decodes with one thread; two workers x several threads on few cores only thrash.
    torch.set_num_threads(1)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    keep_freed_memory()
