"""``surgclip data pack``: selected caption rows -> WebDataset tar shards with an index and a manifest
(the format: ``shards``).

One pass over the rows that training selects (``CaptionDB.select`` with the same levels, duration
bounds, text field and cleaning): each row's clip is read by ``readers.read_clip`` from its video
file or frame folder (``dataset.source_path``, where training finds it), ``num_frames(duration)`` frames
spread uniformly over ``[start, end)``, resized to a short side of ``size`` pixels and JPEG-encoded.

The plan is fixed before any work: rows sorted by (video, start, caption_id) are cut into shards
of ``shard_captions`` rows, and ``content_hash`` hashes the rows and the settings. Worker processes
build whole shards in a staging folder; the main process moves each finished tar into place and
then writes its index, so a shard with an index is complete. A rerun of the same pack (same
content hash) keeps every shard whose index matches its plan and rebuilds the others: a pack killed
at any moment ends, when run again, with every row exactly once. A folder that holds another pack
(another content hash), or shards without a manifest, is refused.
"""
from __future__ import annotations

import contextlib
import functools
import io
import json
import math
import os
import shutil
import tarfile
import tempfile
from collections import Counter
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ..sampling import ClipSpanError, clip_frame_span
from ..utils import SKIP_REASONS, folder_lock, sha256_file
from .dataset import source_path
from .db import CaptionDB, ClipTable
from .readers import VideoReadError, open_source, read_clip, skip_reason
from .shards import (FORMAT, MANIFEST, ShardError, Store, index_name, row_key, sha256_json, shard_name)


@dataclass(frozen=True)
class PackSettings:
    """How each caption row is stored.

    fps: frames kept per second of caption; min_frames, max_frames: bounds on a row's frame count
        (a short clip keeps at least ``min_frames`` when its source has them; a long one at most
        ``max_frames``, spread over the whole span); size: short side in pixels (0 keeps the
        source's; never upscales); quality: JPEG quality; shard_captions: rows per shard.
    """

    fps: float = 1.0
    min_frames: int = 16
    max_frames: int = 64
    size: int = 224
    quality: int = 90
    shard_captions: int = 1000

    def __post_init__(self):
        if not (math.isfinite(self.fps) and self.fps > 0):
            raise ValueError(f"fps must be a positive number, got {self.fps}")
        if not 1 <= self.min_frames <= self.max_frames:
            raise ValueError(f"need 1 <= min_frames <= max_frames, got {self.min_frames}, {self.max_frames}")
        if self.size < 0 or not 1 <= self.quality <= 100 or self.shard_captions < 1:
            raise ValueError(f"need size >= 0, 1 <= quality <= 100, shard_captions >= 1; got {self.size}, "
                             f"{self.quality}, {self.shard_captions}")

    def num_frames(self, duration_s: float, source_frames: int) -> int:
        """Frames stored for a clip of ``duration_s`` seconds spanning ``source_frames`` source frames."""
        want = min(max(math.ceil(duration_s * self.fps - 1e-6), self.min_frames), self.max_frames)
        return max(1, min(want, source_frames))


def plan_shards(table: ClipTable, settings: PackSettings, source: str) -> tuple[list[list[dict]], str]:
    """Rows cut into shards, and the content hash of the whole plan.

    Args:
        table: the selected rows; settings: how they are stored; source: ``videos`` or ``frames``.
    Returns:
        (shards: lists of row dicts {caption_id, video_id, level, start_s, end_s, caption}, content hash).
    """
    order = sorted(range(len(table)), key=lambda i: (table.video_name[i], float(table.start_s[i]),
                                                      int(table.caption_id[i])))
    rows = [{"caption_id": int(table.caption_id[i]), "video_id": table.video_name[i], "level": int(table.level[i]),
             "start_s": float(table.start_s[i]), "end_s": float(table.end_s[i]), "caption": table.caption[i]}
            for i in order]
    n = settings.shard_captions
    shards = [rows[k:k + n] for k in range(0, len(rows), n)]
    return shards, shard_plan_hash(rows, settings, source)


def shard_plan_hash(rows: list[dict], settings: PackSettings, source: str) -> str:
    """The hash of one shard's planned rows and settings (its index records it)."""
    return sha256_json({"format": FORMAT, "settings": asdict(settings), "source": source, "rows": rows})


def _resize(frame: np.ndarray, size: int) -> np.ndarray:
    from PIL import Image

    h, w = frame.shape[:2]
    if not size or min(h, w) <= size:
        return frame
    k = size / min(h, w)
    return np.asarray(Image.fromarray(frame).resize((max(1, round(w * k)), max(1, round(h * k))), Image.BICUBIC))


def _jpeg(frame: np.ndarray, quality: int) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(frame).save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)  # fixed metadata: the same rows give the same bytes
    info.size, info.mtime, info.mode, info.uid, info.gid, info.uname, info.gname = len(data), 0, 0o644, 0, 0, "", ""
    tar.addfile(info, io.BytesIO(data))


def pack_shard(job: dict) -> dict:
    """Build one shard tar at ``job["tmp"]``; returns its index (rows with frame locations, skipped rows).

    ``job``: rows, settings (dict), video_root / frames_root / frames_fps, tmp (the tar to write),
    end_tolerance_s. Rows whose clip cannot be read are left out and listed under ``skipped`` with
    their reason; any other error propagates.
    """
    settings = PackSettings(**job["settings"])
    where = functools.partial(source_path, video_root=job["video_root"], frames_root=job["frames_root"])
    size_rule = None
    if settings.size:
        def size_rule(h, w, s=settings.size):  # FFmpeg scales while converting: no full-size frames
            k = s / min(h, w)
            return (max(1, round(h * k)), max(1, round(w * k))) if k < 1 else None
    reader, reader_name, reader_err = None, None, None
    out_rows, skipped = [], []
    with tarfile.open(job["tmp"], "w", format=tarfile.USTAR_FORMAT) as tar:
        for row in job["rows"]:
            name = row["video_id"]
            if name != reader_name:
                reader, reader_name, reader_err = None, name, None
                try:
                    reader = open_source(where(name), fps=job["frames_fps"], size=size_rule)
                except VideoReadError as err:
                    reader_err = err
            try:
                if reader_err is not None:
                    raise reader_err
                first, last = clip_frame_span(row["start_s"], row["end_s"], reader.fps, reader.num_frames,
                                              job["end_tolerance_s"])
                n = settings.num_frames(row["end_s"] - row["start_s"], last - first + 1)
                idx, frames = read_clip(reader, row["start_s"], row["end_s"], n, "uniform",
                                        end_tolerance_s=job["end_tolerance_s"])
            except (VideoReadError, ClipSpanError) as err:
                skipped.append({"caption_id": row["caption_id"], "video_id": name,
                                "reason": skip_reason(where(name), err) or "undecodable_media", "error": str(err)[:300]})
                continue
            key = row_key(row["caption_id"])
            meta = dict(row, fps=n / (row["end_s"] - row["start_s"]), num_frames=n, source_fps=float(reader.fps),
                        source_frames=idx.tolist())
            _add(tar, f"{key}.json", json_bytes(meta))
            offset, sizes = None, []
            for k, frame in enumerate(frames):
                data = _jpeg(_resize(frame, settings.size), settings.quality)
                if offset is None:
                    offset = tar.offset + tarfile.BLOCKSIZE  # this member's data follows its header block
                _add(tar, f"{key}.{k:04d}.jpg", data)
                sizes.append(len(data))
            out_rows.append(dict(row, fps=meta["fps"], offset=offset, sizes=sizes))
    return {"rows": out_rows, "skipped": skipped}


def json_bytes(obj) -> bytes:
    return json.dumps(obj, sort_keys=True).encode()


def _check_destination(store: Store, content_hash: str, db: str) -> dict | None:
    """The existing manifest of this same pack (None: an empty destination); ShardError when the
    destination holds another pack or stray shards."""
    try:
        old = store.read_json(MANIFEST)
    except FileNotFoundError:
        old = None
    if old is not None:
        other = old.get("content_hash") if isinstance(old, dict) else None
        if other != content_hash:
            raise ShardError(f"{store.url} holds another pack: its {MANIFEST} has content hash {other} (database "
                             f"{old.get('db') if isinstance(old, dict) else '?'}), this pack of {db} has content "
                             f"hash {content_hash}; pack into another folder or delete that one")
        return old
    stray = sorted(n for n in store.sizes() if n.startswith("shard-"))
    if stray:
        raise ShardError(f"{store.url} holds shards ({stray[0]}, ... {len(stray)} files) but no {MANIFEST}: they "
                         f"are not from a pack this command can resume (content hash {content_hash}); "
                         f"pack into an empty folder")
    return None


def pack(db: str | Path, out: str, video_root: str | Path | None = None, frames_root: str | Path | None = None,
         frames_fps: float | None = None, settings: PackSettings = PackSettings(), levels=(1, 2, 3),
         min_duration: float = 0.0, max_duration: float = 500.0, text_field: str = "caption", clean: bool = True,
         skip_errors: bool = False, end_tolerance_s: float = 1.0, workers: int = 2, progress: bool = True) -> dict:
    """Pack the selected rows of ``db`` into shards at ``out`` (a folder or fsspec URL); resumable.

    Args:
        db: caption database; video_root / frames_root (one of them) and frames_fps: where clips are
            read, as for training.
        out: destination folder or URL (``s3://bucket/prefix``).
        settings: PackSettings. levels, min_duration, max_duration, text_field, clean, skip_errors:
            the selection, as ``SurgLaViDataModule`` makes it.
        end_tolerance_s: as training: a clip may end this far past its video's end.
        workers: processes building shards.
    Returns:
        The manifest (also ``out/manifest.json``).
    Raises:
        ShardError: the destination holds another pack or stray shards; CaptionDBError for the DB.
    """
    if (video_root is None) == (frames_root is None):
        raise ValueError("give exactly one of video_root (--videos) or frames_root (--frames)")
    source = "frames" if frames_root is not None else "videos"
    selection = {"levels": sorted(int(lv) for lv in levels), "min_duration": float(min_duration),
                 "max_duration": float(max_duration), "text_field": text_field, "clean": bool(clean)}
    table = CaptionDB(db).select(levels=selection["levels"], min_duration=min_duration, max_duration=max_duration,
                                 text_field=text_field, clean=clean, skip_errors=skip_errors)
    shards, content_hash = plan_shards(table, settings, source)
    store = Store(out)
    lock = folder_lock(store.path(""), "surgclip data pack") if store.local else contextlib.nullcontext()
    with lock:
        _check_destination(store, content_hash, str(db))
        manifest = {"format": FORMAT, "complete": False, "content_hash": content_hash, "db": str(db),
                    "source": source, "settings": asdict(settings), "selection": selection,
                    "invalid_rows": dict(table.dropped), "shards": []}
        plans = [shard_plan_hash(rows, settings, source) for rows in shards]
        store.write_json(MANIFEST, dict(manifest, planned=[{"name": shard_name(k), "plan": p, "rows": len(r)}
                                                           for k, (p, r) in enumerate(zip(plans, shards))]))
        done, on_disk = {}, store.sizes()
        for k, p in enumerate(plans):
            try:
                index = store.read_json(index_name(k))
            except (FileNotFoundError, ShardError):
                continue
            if isinstance(index, dict) and index.get("plan") == p and on_disk.get(shard_name(k)) == index.get("size"):
                done[k] = index
        staging = Path(store.path(".staging")) if store.local else Path(tempfile.mkdtemp(prefix="surgclip-pack-"))
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        jobs = [{"k": k, "rows": shards[k], "settings": asdict(settings), "video_root": _str(video_root),
                 "frames_root": _str(frames_root), "frames_fps": frames_fps, "end_tolerance_s": end_tolerance_s,
                 "tmp": str(staging / f"{shard_name(k)}.partial")} for k in range(len(shards)) if k not in done]
        from tqdm import tqdm

        bar = tqdm(total=len(shards), initial=len(done), desc="pack", unit="shard", disable=not progress)
        try:
            if jobs:
                with ProcessPoolExecutor(max_workers=max(1, min(workers, len(jobs)))) as pool:
                    futures = {pool.submit(pack_shard, job): job for job in jobs}
                    for fut in as_completed(futures):
                        job = futures[fut]
                        done[job["k"]] = _finish_shard(store, job, fut.result(), plans[job["k"]])
                        bar.update(1)
        finally:
            bar.close()
            shutil.rmtree(staging, ignore_errors=True)
        reasons = Counter(s["reason"] for k in sorted(done) for s in done[k]["skipped"])
        manifest.update(complete=True, shards=[{"name": shard_name(k), "rows": len(done[k]["rows"]),
                                                "size": done[k]["size"], "sha256": done[k]["sha256"],
                                                "plan": done[k]["plan"]} for k in range(len(shards))])
        manifest["counts"] = {"selected": len(table), "packed": sum(len(done[k]["rows"]) for k in done),
                              "skipped": sum(reasons.values()), "shards": len(shards),
                              "frames": sum(len(r["sizes"]) for k in done for r in done[k]["rows"]),
                              "bytes": sum(done[k]["size"] for k in done),
                              "levels": dict(sorted(Counter(str(r["level"]) for k in done
                                                            for r in done[k]["rows"]).items()))}
        manifest["skipped"] = {r: reasons.get(r, 0) for r in SKIP_REASONS if reasons.get(r)}
        manifest["shards_sha256"] = sha256_json([s["sha256"] for s in manifest["shards"]])
        store.write_json(MANIFEST, manifest)
    return manifest


def _finish_shard(store: Store, job: dict, result: dict, plan: str) -> dict:
    """Move a built shard into place, then write its index (which marks it complete)."""
    tmp = job["tmp"]
    index = {"format": FORMAT, "shard": shard_name(job["k"]), "plan": plan, "size": os.path.getsize(tmp),
             "sha256": sha256_file(tmp), **result}
    store.put_file(tmp, shard_name(job["k"]))
    store.write_json(index_name(job["k"]), index)
    return index


def _str(path) -> str | None:
    return None if path is None else str(path)


def format_manifest(manifest: dict) -> str:
    """A short summary of a pack's manifest."""
    c = manifest["counts"]
    lines = [f"{c['packed']} of {c['selected']} captions in {c['shards']} shards ({c['frames']} frames, "
             f"{c['bytes'] / 2 ** 20:.1f} MiB); levels {c['levels']}; content hash {manifest['content_hash'][:16]}"]
    if manifest.get("skipped"):
        lines.append("skipped (unreadable clips): " + ", ".join(f"{k}: {v}" for k, v in manifest["skipped"].items()))
    if manifest.get("invalid_rows"):
        lines.append(f"invalid caption rows skipped at selection: {manifest['invalid_rows']}")
    return "\n".join(lines)

