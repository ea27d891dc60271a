"""Embedding a library of videos (or frame folders) as sliding-window clips into a ``ClipIndex``,
and answering text queries against it."""
from __future__ import annotations

import os
from collections import Counter
from contextlib import closing
from pathlib import Path

import numpy as np
import torch

from ..data.readers import VideoReadError, open_source, skip_reason
from ..model import prepare_for_evaluation
from ..sampling import ClipSpanError, window_frames, window_spans
from ..tokenizer import tokenize
from ..transform import ClipTransform, stack_clips
from ..utils import folder_lock
from .clips import ForwardReads, in_background, read_ahead
from .index import ClipIndex, model_fingerprint
from .reports import checkpoint_hash, write_report


def video_id(path: Path) -> str:
    """Library id of a video file or frame folder: its name without the extension."""
    return path.stem if path.is_file() else path.name


@torch.no_grad()
def embed_video(model, path: Path, window_s: float, stride_s: float, num_frames: int, batch_size: int = 8,
                frames_fps: float | None = None, device=None) -> tuple[np.ndarray, list[tuple[float, float]], dict]:
    """[n, D] clip embeddings of one video's sliding windows, their spans and source info.

    The video is streamed front to back (``window_batches``), in a background thread ahead of the
    model when the forward leaves the reader a core (``clips.read_ahead``: a GPU, spare CPU cores).
    """
    device = device or next(model.parameters()).device
    reader = open_source(path, fps=frames_fps, stream=True)
    spans = window_spans(reader.duration, window_s, stride_s)
    if not spans:
        raise VideoReadError(f"{path}: no frames ({reader.num_frames} frames at {reader.fps:g} fps)")
    idx = window_frames(spans, reader.fps, num_frames, reader.num_frames)  # [n, T]
    batches = window_batches(reader, ClipTransform(model.preprocess_cfg, normalize=False), idx, batch_size)
    depth = read_ahead(device)
    if depth:
        batches = in_background(batches, depth)
    out = None  # [n, D], allocated once: a small array kept per batch would sit on top of the heap
    # after each batch's freed frames, and glibc then grows the heap instead of reusing them (over
    # hours of video, free heap many times the size of what is in use)
    with closing(batches):  # an error in the forward stops a reader thread now
        for b, clips in batches:
            emb = model.encode_video(clips.to(device)).float().cpu()
            if out is None:
                out = np.empty((len(spans), emb.shape[1]), np.float32)
            out[b:b + batch_size] = emb.numpy()
            del clips, emb
    # absolute: `surgclip serve` and `search` resolve it from whatever folder they are started in
    return out, spans, {"path": os.path.abspath(path), "fps": reader.fps, "num_frames": reader.num_frames}


def window_batches(reader, transform, idx: np.ndarray, batch_size: int):
    """(first window, clips [B, T, 3, S, S]) for each ``batch_size`` windows of ``idx`` ([n, T] frame
    indices in time order) read from ``reader`` front to back: each frame decoded and transformed
    once however many windows hold it (``ForwardReads``), and dropped once no later window needs it."""
    need = ForwardReads(idx)
    frames: dict[int, torch.Tensor] = {}  # transformed, by frame index
    for b in range(0, len(idx), batch_size):
        new = np.setdiff1d(need(b, batch_size), np.fromiter(frames, np.int64, len(frames)))
        if new.size:
            frames.update(zip(new.tolist(), transform(reader.read(new))))
        clips = stack_clips([[frames[i] for i in row] for row in idx[b:b + batch_size].tolist()])
        if b + batch_size < len(idx):
            for i in [i for i in frames if i < need.first_needed[b + batch_size]]:
                del frames[i]
        yield b, clips
        del clips


def index_library(model, sources: list[Path], index_dir, window_s: float = 4.0, stride_s: float = 2.0,
                  num_frames: int | None = None, kind: str | None = "auto", batch_size: int = 8,
                  frames_fps: float | None = None, progress: bool = False, model_source: str | None = None) -> dict:
    """Add every not-yet-indexed video/frame folder in ``sources`` to the index at ``index_dir``.

    Holds the folder's lock for the whole run (a second writer gets ``LockedError``), removes
    files a killed run left unlisted, then appends one shard per video as soon as it is embedded,
    so a killed run resumes at the video it was on. Unreadable videos are skipped and counted.

    Args:
        kind: ``auto`` | ``exact`` | ``ivf`` | ``pq`` (None keeps an existing index's choice).
        model_source: how the model was loaded (name or path), recorded for ``surgclip search``.
    Returns:
        The run's report, ``reports.write_report``'s ``index_dir/report.json``: the window settings
        (``protocol``), the weights fingerprint (``checkpoint``) and ``{"added", "skipped_existing",
        "failed": {video: message}, "failed_by_reason": {reason: n}, "cleaned": [files], "num_clips",
        "search": exact|ivf|pq, "ivf": {...} | None, "pq": {...} | None, "index_kind": the recorded kind,
        "min_clips": clips it needs before it is trained (None for exact)}``.
    """
    fp = model_fingerprint(model)
    num_frames = int(num_frames or model.num_frames)
    with folder_lock(index_dir, "surgclip index"):
        index = ClipIndex(index_dir, fingerprint=fp, kind=kind)
        if model_source and not index.meta.get("model_source"):
            index.meta["model_source"] = str(model_source)
        report = {"added": [], "skipped_existing": [], "failed": {}, "failed_by_reason": Counter(),
                  "cleaned": index.cleanup()}
        iterator = sources
        if progress:
            from tqdm.auto import tqdm

            iterator = tqdm(sources, desc="index", unit="video")
        restore = prepare_for_evaluation(model)  # eval mode and the inference rewrites, for every video
        for path in iterator:
            path = Path(path)
            vid = video_id(path)
            if index.has_video(vid):
                report["skipped_existing"].append(vid)
                continue
            try:
                emb, spans, info = embed_video(model, path, window_s, stride_s, num_frames, batch_size, frames_fps)
            except (VideoReadError, ClipSpanError, OSError) as err:
                report["failed"][vid] = str(err)
                report["failed_by_reason"][skip_reason(path, err) or "unreadable_file"] += 1
                continue
            index.add_video(vid, emb, spans, dict(info, window_s=window_s, stride_s=stride_s, num_frames=num_frames))
            report["added"].append(vid)
        restore()
        index.save()  # an index with no readable video still exists, recording the model
        report.update(failed_by_reason=dict(report["failed_by_reason"]), num_clips=len(index),
                      search=index.active_kind(), ivf=index.meta["ivf"], pq=index.meta["pq"],
                      index_kind=index.meta["kind"], min_clips=index.min_clips())
        return write_report(index_dir, "index", None, {"window_s": window_s, "stride_s": stride_s, "mode": "uniform",
                                                       "num_frames": num_frames},
                            {"kind": kind, "batch_size": batch_size, "frames_fps": frames_fps,
                             "model_source": model_source}, checkpoint_hash(model_source, model), extra=report,
                            name="report")


@torch.no_grad()
def search_text(model, tokenizer, index_dir, queries: list[str], k: int = 5) -> list[list[dict]]:
    """Top-k clips of the index for each text query (the index must come from this model)."""
    index = ClipIndex(index_dir, fingerprint=model_fingerprint(model))
    device = next(model.parameters()).device
    tokens = tokenize(queries, tokenizer, device=device, max_length=getattr(tokenizer, "context_length", 77))
    text = model.encode_text(tokens).float().cpu().numpy()
    hits = index.search(text, k)
    info = index.video_info()
    for row in hits:
        for hit in row:
            hit["path"] = info[hit["video"]].get("path")
    return hits
