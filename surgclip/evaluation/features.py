"""Frozen clip features at labelled frames, extracted once and cached on disk.

Cache layout (one directory per model + benchmark + clip setting)::

    meta.json               model fingerprint, clip settings, videos done
    <video>.safetensors     {"features": [n, D], "rows": [n] table row ids, "valid": [n]}

Each video is written atomically when done, so an interrupted extraction resumes at the next video.
"""
from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import torch

from ..transform import ClipTransform
from ..utils import atomic_path, atomic_write_json
from .clips import iter_clip_batches
from .index import model_fingerprint
from .table import FrameTable


def _safe(video: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in video)


@torch.no_grad()
def extract_features(model, table: FrameTable, cache_dir, num_frames: int | None = None, mode: str = "centered",
                     stride_s: float = 1.0, batch_size: int = 8, progress: bool = False) -> tuple[np.ndarray, np.ndarray, dict]:
    """Features for every row of ``table`` (cached per video under ``cache_dir``).

    Returns:
        (features [N, D] float32 (zeros where invalid), valid [N] bool, skipped counts).
    """
    from safetensors.numpy import load_file, save_file

    cache = Path(cache_dir)
    settings = dict(model_fingerprint(model), num_frames=int(num_frames or model.num_frames), mode=mode, stride_s=stride_s)
    meta_path = cache / "meta.json"
    meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {"settings": settings, "videos": {}}
    if meta["settings"] != settings:
        raise ValueError(f"feature cache {cache} holds features for {meta['settings']}, not {settings}; "
                         f"use another --cache directory")
    transform = ClipTransform(model.preprocess_cfg)
    D = int(model.embed_dim)
    feats, valid = np.zeros((len(table), D), dtype=np.float32), np.zeros(len(table), dtype=bool)
    skipped = Counter()
    videos = table.videos()
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(videos), desc="features", unit="video")
    was_training = model.training
    model.eval()
    for video in videos:
        rows = np.flatnonzero(table.video == video)
        path = cache / f"{_safe(video)}.safetensors"
        if video in meta["videos"] and path.is_file():
            data = load_file(str(path))
            feats[data["rows"]], valid[data["rows"]] = data["features"], data["valid"].astype(bool)
            skipped.update(meta["videos"][video].get("skipped", {}))
        else:
            sub = table.select(table.video == video)
            vfeat, vvalid, vskip = np.zeros((len(rows), D), np.float32), np.zeros(len(rows), bool), Counter()
            for idx, clips in iter_clip_batches(sub, transform, settings["num_frames"], mode, stride_s, batch_size, vskip):
                vfeat[idx] = model.encode_video(clips.to(next(model.parameters()).device)).float().cpu().numpy()
                vvalid[idx] = True
            with atomic_path(path) as tmp:
                save_file({"features": vfeat, "rows": rows.astype(np.int64), "valid": vvalid.astype(np.uint8)}, str(tmp))
            meta["videos"][video] = {"rows": len(rows), "skipped": dict(vskip)}
            atomic_write_json(meta_path, meta)
            feats[rows], valid[rows] = vfeat, vvalid
            skipped.update(vskip)
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    model.train(was_training)
    return feats, valid, dict(skipped)
