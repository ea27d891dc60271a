"""Frozen clip features at labelled frames, extracted once and cached on disk.

Cache layout: ``cache_dir/<key>/`` where ``key`` hashes everything the features depend on
(model name, config, weights hash, precision, frames per clip, clip mode, stride)::

    <key>/meta.json               those settings, and per video the hash of its table rows
    <key>/<video>.safetensors     {"features": [n, D], "valid": [n]} for that video's rows, in order

Another checkpoint, precision or clip setting gets another ``<key>`` folder (recomputed, never
stale); a video whose rows (time, frame) or source changed is recomputed. Each video is written
atomically when done, so an interrupted extraction resumes at the next video.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
from collections import Counter
from pathlib import Path

import numpy as np
import torch

from ..datasets.table import FrameTable
from ..model import prepare_for_evaluation
from ..transform import ClipTransform
from ..utils import atomic_path, atomic_write_json
from .clips import clip_encoder, iter_clip_batches, read_ahead
from .index import model_fingerprint


def _safe(video: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in video)


def feature_settings(model, num_frames: int | None, mode: str, stride_s: float) -> dict:
    """Everything cached features depend on besides the frames: model (with weights), precision, clip settings."""
    return dict(model_fingerprint(model), precision=str(getattr(model, "precision", "fp32")),
                num_frames=int(num_frames or model.num_frames), mode=mode, stride_s=float(stride_s))


def settings_key(settings: dict) -> str:
    """16-hex-digit key of a settings dict (the cache sub-folder name)."""
    return hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:16]


def rows_hash(table: FrameTable, rows: np.ndarray, video: str) -> str:
    """SHA-256 of one video's frame-table rows (time, frame) and its frame source."""
    digest = hashlib.sha256(video.encode() + b"\0")
    digest.update(np.ascontiguousarray(table.time_s[rows], dtype=np.float64).tobytes())
    digest.update(np.ascontiguousarray(table.frame[rows], dtype=np.int64).tobytes())
    source = table.sources.get(video)
    digest.update(json.dumps(source.to_dict() if source is not None else None, sort_keys=True).encode())
    return digest.hexdigest()


@torch.no_grad()
def extract_features(model, table: FrameTable, cache_dir, num_frames: int | None = None, mode: str = "centered",
                     stride_s: float = 1.0, batch_size: int = 8, progress: bool = False) -> tuple[np.ndarray, np.ndarray, dict]:
    """Features for every row of ``table`` (cached per video under ``cache_dir/<settings key>``).

    Returns:
        (features [N, D] float32 (zeros where invalid), valid [N] bool, skipped counts).
    """
    from safetensors.numpy import save_file

    settings = feature_settings(model, num_frames, mode, stride_s)
    cache = Path(cache_dir) / settings_key(settings)
    meta_path = cache / "meta.json"
    meta = {"settings": settings, "videos": {}}
    if meta_path.is_file():
        try:
            old = json.loads(meta_path.read_text())
            if isinstance(old, dict) and old.get("settings") == settings and isinstance(old.get("videos"), dict):
                meta = old
        except (OSError, UnicodeDecodeError, ValueError):
            pass  # a damaged cache index only costs recomputation
    # a per-frame tower runs each frame's trunk once, however many overlapping clips hold it
    device = next(model.parameters()).device
    transform, encode = clip_encoder(model, ClipTransform(model.preprocess_cfg, normalize=False), settings["num_frames"],
                                     mode, device)
    D = int(model.embed_dim)
    feats, valid = np.zeros((len(table), D), dtype=np.float32), np.zeros(len(table), dtype=bool)
    skipped = Counter()
    videos = table.videos()
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(videos), desc="features", unit="video")
    restore = prepare_for_evaluation(model)  # eval mode and the inference rewrites until restore()
    for video in videos:
        rows = np.flatnonzero(table.video == video)
        path = cache / f"{_safe(video)}.safetensors"
        digest = rows_hash(table, rows, video)
        entry = meta["videos"].get(video)
        data = _load_cached(path, len(rows), D) if isinstance(entry, dict) and entry.get("rows_hash") == digest else None
        if data is not None:
            feats[rows], valid[rows] = data["features"], data["valid"].astype(bool)
            skipped.update(entry.get("skipped", {}))
        else:
            sub = table.select(table.video == video)
            vfeat, vvalid, vskip = np.zeros((len(rows), D), np.float32), np.zeros(len(rows), bool), Counter()
            batches = iter_clip_batches(sub, transform, settings["num_frames"], mode, stride_s, batch_size, vskip,
                                        prefetch=read_ahead(device))
            with contextlib.closing(batches):  # stops the reader thread even if the forward raises
                for idx, clips in batches:
                    vfeat[idx] = encode(clips).float().cpu().numpy()
                    vvalid[idx] = True
            with atomic_path(path) as tmp:
                save_file({"features": vfeat, "valid": vvalid.astype(np.uint8)}, str(tmp))
            meta["videos"][video] = {"rows": len(rows), "rows_hash": digest, "skipped": dict(vskip)}
            atomic_write_json(meta_path, meta)
            feats[rows], valid[rows] = vfeat, vvalid
            skipped.update(vskip)
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    restore()
    return feats, valid, dict(skipped)


def _load_cached(path: Path, n: int, dim: int) -> dict | None:
    """A cached video's arrays, or None when the file is missing, unreadable or the wrong shape."""
    from safetensors.numpy import load_file

    try:
        data = load_file(str(path))
    except Exception:  # safetensors raises its own error types for damaged files; recompute then
        return None
    f, v = data.get("features"), data.get("valid")
    if f is None or v is None or f.shape != (n, dim) or v.shape != (n,):
        return None
    return data
