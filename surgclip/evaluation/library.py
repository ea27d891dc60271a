"""Embedding a library of videos (or frame folders) as sliding-window clips into a ``ClipIndex``,
and answering text queries against it."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..data.readers import VideoReadError, open_source
from ..data.samplers import uniform_indices
from ..tokenizer import tokenize
from ..transform import ClipTransform
from .index import ClipIndex, model_fingerprint


def window_spans(duration_s: float, window_s: float, stride_s: float) -> list[tuple[float, float]]:
    """(start, end) seconds of sliding windows covering ``[0, duration_s)``; the last one is clipped
    to the end (a video shorter than one window gives one clip)."""
    if window_s <= 0 or stride_s <= 0:
        raise ValueError(f"window_s and stride_s must be positive, got {window_s}, {stride_s}")
    starts = np.arange(0.0, max(duration_s - window_s, 0.0) + 1e-9, stride_s)
    spans = [(float(s), float(min(s + window_s, duration_s))) for s in starts]
    if spans and spans[-1][1] < duration_s - 1e-6:
        spans.append((max(0.0, duration_s - window_s), duration_s))
    return spans


def video_id(path: Path) -> str:
    """Library id of a video file or frame folder: its name without the extension."""
    return path.stem if path.is_file() else path.name


@torch.no_grad()
def embed_video(model, path: Path, window_s: float, stride_s: float, num_frames: int, batch_size: int = 8,
                frames_fps: float | None = None, device=None) -> tuple[np.ndarray, list[tuple[float, float]], dict]:
    """[n, D] clip embeddings of one video's sliding windows, their spans and source info."""
    device = device or next(model.parameters()).device
    reader = open_source(path, fps=frames_fps)
    transform = ClipTransform(model.preprocess_cfg)
    spans = window_spans(reader.duration, window_s, stride_s)
    out = []
    for b in range(0, len(spans), batch_size):
        clips = []
        for start, end in spans[b:b + batch_size]:
            first = int(start * reader.fps)
            last = max(first, min(reader.num_frames - 1, int(np.ceil(end * reader.fps)) - 1))
            clips.append(transform(reader.read(uniform_indices(first, last, num_frames))))
        out.append(model.encode_video(torch.stack(clips).to(device)).float().cpu().numpy())
    return np.concatenate(out), spans, {"path": str(path), "fps": reader.fps, "num_frames": reader.num_frames}


def index_library(model, sources: list[Path], index_dir, window_s: float = 4.0, stride_s: float = 2.0,
                  num_frames: int | None = None, kind: str = "flat", batch_size: int = 8,
                  frames_fps: float | None = None, progress: bool = False) -> dict:
    """Add every not-yet-indexed video/frame folder in ``sources`` to the index at ``index_dir``.

    Resumable and incremental: videos already in the index are skipped; each video is saved as
    soon as it is embedded. Unreadable videos are skipped and listed.

    Returns: ``{"added": [...], "skipped_existing": [...], "failed": {video: reason}, "num_clips": N}``.
    """
    fp = model_fingerprint(model)
    index = ClipIndex(index_dir, fingerprint=fp, kind=kind)
    num_frames = int(num_frames or model.num_frames)
    report = {"added": [], "skipped_existing": [], "failed": {}}
    iterator = sources
    if progress:
        from tqdm.auto import tqdm

        iterator = tqdm(sources, desc="index", unit="video")
    for path in iterator:
        path = Path(path)
        vid = video_id(path)
        if index.has_video(vid):
            report["skipped_existing"].append(vid)
            continue
        try:
            emb, spans, info = embed_video(model, path, window_s, stride_s, num_frames, batch_size, frames_fps)
        except (VideoReadError, ValueError, OSError) as err:
            report["failed"][vid] = str(err)
            continue
        index.add_video(vid, emb, spans, dict(info, window_s=window_s, stride_s=stride_s, num_frames=num_frames))
        report["added"].append(vid)
    index.save()  # an index with no readable video still exists, recording the model
    if kind != "flat" and len(index):
        report["recall_vs_exact"] = approx_recall(index.embeddings, index.faiss())
    report["num_clips"] = len(index)
    return report


def approx_recall(embeddings: np.ndarray, approx, k: int = 10, num_queries: int = 200, seed: int = 0) -> dict:
    """Recall@k of an approximate index against exact search, queried with stored vectors + noise."""
    from .index import build_faiss, recall_at_k

    rng = np.random.default_rng(seed)
    q = embeddings[rng.integers(0, len(embeddings), min(num_queries, len(embeddings)))]
    q = (q + 0.05 * rng.standard_normal(q.shape)).astype(np.float32)
    k = min(k, len(embeddings))
    _, exact = build_faiss(embeddings, "flat").search(q, k)
    _, got = approx.search(q, k)
    return {f"recall@{k}": recall_at_k(got, exact), "queries": len(q)}


@torch.no_grad()
def search_text(model, tokenizer, index_dir, queries: list[str], k: int = 5) -> list[list[dict]]:
    """Top-k clips of the index for each text query (the index must come from this model)."""
    index = ClipIndex(index_dir, fingerprint=model_fingerprint(model))
    device = next(model.parameters()).device
    tokens = tokenize(queries, tokenizer, device=device, max_length=getattr(tokenizer, "context_length", 77))
    text = model.encode_text(tokens).float().cpu().numpy()
    hits = index.search(text, k)
    for row in hits:
        for hit in row:
            hit["path"] = index.meta["videos"][hit["video"]].get("path")
    return hits
