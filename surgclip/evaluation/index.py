"""A clip index on disk for text-to-clip search: append-only shards plus a manifest written last.

Layout of an index directory (format version 2)::

    manifest.json            model fingerprint (name, config hash, dim, weights hash), videos,
                             the list of complete shards, the IVF generation in use (JSON)
    shards/000012.npy        [n, D] float32 embeddings of one added video (never rewritten)
    shards/000012.jsonl      its n clips, one {"video", "start", "end"} per line, in id order
    shards/000012.ivf3.npy   [n] int64 IVF list of each clip under quantizer generation 3
    shards/000012.pq1.npy    [n, C] uint8 IVF-PQ codes of its clips under PQ generation 1 (index_pq.py)
    ivf-3.faiss              a trained, empty FAISS IndexIVFFlat (the coarse quantizer)
    pq-1.faiss               a trained, empty FAISS IndexIVFPQ (coarse quantizer + PQ codebooks)
    report.json              counts of the last ``surgclip index`` run (added, failed by reason)
    .lock                    fcntl lock held by the writing process (its pid inside)

Adding a video writes its shard files (each atomically), then the manifest (atomically). A
process killed at any point leaves the previous manifest intact; files it names are complete,
and files it does not name (a shard written before the kill) are ignored by readers and deleted
by the next writer (``cleanup``). Clip ids are positions in shard order, so they never change.

Search: below ``AUTO_IVF_MIN_CLIPS`` clips (``kind="auto"``) an exact inner-product search
(torch matmul + topk, faster than FAISS's flat index on CPU: ``eval/bench/bench_index.py``
compares the two); above it an IVF index; from ``AUTO_PQ_MIN_CLIPS`` on the compressed index of
``index_pq.py`` (IVF-PQ codes in memory, the short list re-ranked exactly against the float
embeddings memory-mapped from the shards), which replaces the IVF index: the floats are then never
loaded whole, so a searcher holds codes, ids and quantizer only (about ``pq_m(D) + 10`` bytes per
clip). The PQ index is trained, re-trained and calibrated like the IVF one below (same growth
rule, same probes); its calibration also picks the re-rank depth. The IVF quantizer is trained once when the index
crosses the threshold and again only when it has grown 4x since, so appending a video costs one
quantizer lookup for its own clips; the inverted lists are rebuilt in memory from the stored
assignments on open, without re-clustering. ``nprobe`` is calibrated at training time to reach
recall@10 >= ``IVF_RECALL_TARGET`` against exact search on noisy copies of stored vectors (noise as
large as the vector), then doubled as a margin for queries unlike the stored clips (text); the recall stored is the calibrated one.
"""
from __future__ import annotations

import hashlib
import io
import json
import math
import re
from pathlib import Path

import numpy as np

from ..utils import atomic_path, atomic_write_text
from .index_pq import ivf_nlist

FORMAT_VERSION = 2
MANIFEST = "manifest.json"
KINDS = ("auto", "exact", "ivf", "pq")  # "flat" is accepted as an alias of "exact"
AUTO_IVF_MIN_CLIPS = 300_000  # bench_index.py: IVF at recall@10 >= 0.95 is 6-13x exact at 100k, 48-90x at 1M
AUTO_PQ_MIN_CLIPS = 1_000_000  # IVF-Flat holds every float in RAM: 1 GB at 1M x 256-d; PQ holds ~42 B per clip
MMAP_CACHE = 512  # shard memory maps kept open (one file descriptor each) for re-ranking and lookups
LINES_CACHE = 256  # shards whose checked metadata lines are kept for hit lookups
IVF_MIN_CLIPS = 4096  # below this an IVF index has too few points per list to be worth it
IVF_RECALL_TARGET = 0.99  # on 200 probe queries; the bench's own queries land 2-5 points lower
IVF_RETRAIN_GROWTH = 4  # retrain (new nlist) when the index has grown this much since training
IVF_NPROBE_MARGIN = 2  # nprobe = this x the calibrated one: text queries sit farther from the clips than probes


class IndexError_(ValueError):
    """An index directory is missing, corrupt, or was built by another model."""


def model_fingerprint(model) -> dict:
    """Name, config hash, embedding dim and weights hash identifying the model an index was built with."""
    from ..checkpoint import weights_hash

    cfg = json.dumps(model.config, sort_keys=True, default=str)
    return {"model": model.name, "config_hash": hashlib.sha256(cfg.encode()).hexdigest()[:16],
            "embed_dim": int(model.embed_dim), "weights_hash": weights_hash(model)}


def normalise_kind(kind: str | None) -> str:
    """``auto`` | ``exact`` | ``ivf`` | ``pq`` (``flat`` = ``exact``)."""
    kind = "exact" if kind == "flat" else (kind or "auto")
    if kind not in KINDS:
        raise ValueError(f"unknown index kind {kind!r}; expected one of {', '.join(KINDS)} (or flat)")
    return kind


def recall_at_k(approx_ids: np.ndarray, exact_ids: np.ndarray) -> float:
    """Mean fraction of the exact top-k found by the approximate search ([Q, k] id arrays)."""
    return float(np.mean([len(set(a) & set(e)) / len(e) for a, e in zip(approx_ids, exact_ids)]))


def exact_search(queries: np.ndarray, embeddings: np.ndarray, k: int, block: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """Exact inner-product top-k with torch (matmul + topk), ``block`` queries at a time.

    Args:
        queries: [Q, D] float32. embeddings: [N, D] float32. k: hits per query (<= N).
    Returns:
        (scores [Q, k] float32, ids [Q, k] int64), best first.
    """
    import torch

    x = torch.from_numpy(np.ascontiguousarray(embeddings, dtype=np.float32))
    q = torch.from_numpy(np.ascontiguousarray(queries, dtype=np.float32))
    scores, ids = [], []
    for qb in q.split(block):
        s, i = torch.topk(qb @ x.T, k, dim=1)
        scores.append(s)
        ids.append(i)
    return torch.cat(scores).numpy(), torch.cat(ids).numpy().astype(np.int64)


def probe_queries(embeddings: np.ndarray, num: int = 200, noise: float = 1.6, seed: int = 0) -> np.ndarray:
    """Unit copies of random stored vectors plus Gaussian noise of norm ``noise`` (1.6 = the query
    noise of eval/bench/bench_index.py), for measuring recall of an approximate index."""
    rng = np.random.default_rng(seed)
    q = embeddings[np.sort(rng.choice(len(embeddings), min(num, len(embeddings)), replace=False))]
    e = rng.standard_normal(q.shape).astype(np.float32)
    q = q + noise * e / np.maximum(np.linalg.norm(e, axis=1, keepdims=True), 1e-12)
    return (q / np.maximum(np.linalg.norm(q, axis=1, keepdims=True), 1e-12)).astype(np.float32)


def _add_preassigned(index, x: np.ndarray, assign: np.ndarray, first_id: int) -> None:
    """Add [n, D] vectors to an IVF index under known list assignments, with ids first_id.. ."""
    from faiss.contrib.ivf_tools import add_preassigned

    # named arrays: add_preassigned passes raw pointers, so temporaries could be freed mid-call
    x = np.ascontiguousarray(x, dtype=np.float32)
    assign = np.ascontiguousarray(assign, dtype=np.int64)
    ids = np.arange(first_id, first_id + len(x), dtype=np.int64)
    add_preassigned(index, x, assign, ids=ids)


def _npy_bytes(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, a, allow_pickle=False)
    return buf.getvalue()


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _write_bytes(path: Path, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def _need(cond: bool, where: Path, field: str, expected: str, got) -> None:
    if not cond:
        raise IndexError_(f"corrupt index manifest {where}: field {field!r} should be {expected}, got {got!r}")


def _is_int(x) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


class ClipIndex:
    """Clip embeddings + (video, start, end) metadata in append-only shards, searchable.

    Args:
        path: index directory.
        fingerprint: ``model_fingerprint(model)``; for a new index it is stored, for an existing
            one it must match (else ``IndexError_`` naming both models or both weight hashes).
            Without it the index must exist.
        kind: ``auto`` (default for a new index), ``exact``, ``ivf`` or ``pq``; None keeps the stored one.
            ``ivf`` and ``pq`` search exactly until the index holds ``IVF_MIN_CLIPS`` /
            ``PQ_MIN_CLIPS`` clips (too few to train on).
    """

    def __init__(self, path, fingerprint: dict | None = None, kind: str | None = None):
        self.path = Path(path)
        self.manifest_path = self.path / MANIFEST
        if self.manifest_path.is_file():
            self.meta = self._read_manifest()
            if fingerprint is not None:
                self.check_model(fingerprint)
            if kind:
                self.meta["kind"] = normalise_kind(kind)
        elif (self.path / "meta.json").is_file():
            raise IndexError_(
                f"{self.path} is a version-1 clip index (meta.json + embeddings.npy) from an older surgclip; it "
                f"records no weights hash, so it cannot be checked against a model. Delete it and rebuild with "
                f"`surgclip index ... --index {self.path}` (embedding is the only cost; the videos are not changed)")
        else:
            if fingerprint is None:
                raise IndexError_(f"no clip index at {self.path} ({MANIFEST} missing); build one with `surgclip index`")
            self.meta = dict(fingerprint, version=FORMAT_VERSION, kind=normalise_kind(kind), model_source=None,
                             num_clips=0, next_shard=0, shards=[], videos={}, ivf=None, pq=None)
        self._reset_cache()

    # ----------------------------------------------------------------------------- reading
    def _reset_cache(self) -> None:
        from collections import OrderedDict

        self._emb = None  # [N, D] concatenation of the shards, loaded on the first search
        self._clips = None
        self._mmaps = OrderedDict()  # shard position -> memory map (LRU, MMAP_CACHE)
        self._lines = OrderedDict()  # shard position -> its checked metadata lines (LRU, LINES_CACHE)
        self._ivf = None
        self._pq = None  # the searchable IVF-PQ index (codes of every clip)
        self._pq_encoder = None  # the trained, empty IVF-PQ index: a writer encodes new clips with it
        sizes = [s["clips"] for s in self.meta["shards"]]
        self._offsets = np.concatenate([[0], np.cumsum(sizes, dtype=np.int64)]).astype(np.int64)

    def _read_manifest(self) -> dict:
        p = self.manifest_path
        try:
            meta = json.loads(p.read_text())
        except (OSError, UnicodeDecodeError, ValueError) as err:
            raise IndexError_(f"corrupt index manifest {p}: {err}") from None
        _need(isinstance(meta, dict), p, "(top level)", "a JSON object", type(meta).__name__)
        _need(meta.get("version") == FORMAT_VERSION, p, "version", str(FORMAT_VERSION), meta.get("version"))
        for key in ("model", "config_hash"):
            _need(isinstance(meta.get(key), str), p, key, "a string", meta.get(key))
        _need(isinstance(meta.get("weights_hash"), (str, type(None))), p, "weights_hash", "a string", meta.get("weights_hash"))
        _need(isinstance(meta.get("model_source"), (str, type(None))), p, "model_source", "a string or null",
              meta.get("model_source"))
        _need(_is_int(meta.get("embed_dim")) and meta["embed_dim"] > 0, p, "embed_dim", "a positive integer", meta.get("embed_dim"))
        _need(meta.get("kind") in KINDS, p, "kind", f"one of {KINDS}", meta.get("kind"))
        shards, videos = meta.get("shards"), meta.get("videos")
        _need(isinstance(shards, list), p, "shards", "a list", shards)
        _need(isinstance(videos, dict), p, "videos", "an object", type(videos).__name__)
        meta.setdefault("pq", None)  # written before the PQ index existed: none trained
        for s in shards:
            if isinstance(s, dict):
                s.setdefault("pq", None)
        ids = set()
        for n, s in enumerate(shards):
            ok = isinstance(s, dict) and _is_int(s.get("id")) and s["id"] >= 0 and _is_int(s.get("clips")) and \
                s["clips"] >= 1 and isinstance(s.get("video"), str) and "ivf" in s and \
                (s["ivf"] is None or _is_int(s["ivf"])) and isinstance(s.get("sha256"), dict) and \
                all(isinstance(s["sha256"].get(k), str) for k in ("npy", "jsonl")) and \
                (s["ivf"] is None or isinstance(s["sha256"].get("ivf"), str)) and \
                (s["pq"] is None or (_is_int(s["pq"]) and isinstance(s["sha256"].get("pq"), str)))
            _need(ok and s["id"] not in ids, p, f"shards[{n}]", "{id >= 0 (unique), clips >= 1, video, ivf, pq, sha256}", s)
            ids.add(s["id"])
        by_id = {s["id"]: s for s in shards}
        for v, info in videos.items():
            ok = isinstance(info, dict) and _is_int(info.get("clips")) and _is_int(info.get("shard")) and \
                info["shard"] in by_id and by_id[info["shard"]]["video"] == v and by_id[info["shard"]]["clips"] == info["clips"]
            _need(ok, p, f"videos[{v!r}]", "an object whose 'shard' and 'clips' match a listed shard", info)
        _need(len(videos) == len(shards), p, "videos", f"one entry per shard ({len(shards)})", len(videos))
        total = sum(s["clips"] for s in shards)
        _need(meta.get("num_clips") == total, p, "num_clips", f"the sum of the shards' clips ({total})", meta.get("num_clips"))
        _need(_is_int(meta.get("next_shard")) and meta["next_shard"] > max(ids, default=-1), p, "next_shard",
              "an integer above every shard id", meta.get("next_shard"))
        _need("ivf" in meta, p, "ivf", "present (null or an object)", "missing")
        ivf = meta["ivf"]
        if ivf is not None:
            ok = isinstance(ivf, dict) and all(_is_int(ivf.get(k)) and ivf[k] > 0 for k in ("nlist", "nprobe", "trained_on")) \
                and _is_int(ivf.get("gen")) and ivf["gen"] >= 0 and isinstance(ivf.get("sha256"), str) \
                and isinstance(ivf.get("recall@10"), (int, float)) and not isinstance(ivf["recall@10"], bool) \
                and 0 <= ivf["recall@10"] <= 1
            _need(ok, p, "ivf", "null or {gen, nlist, nprobe, trained_on, sha256}", ivf)
        pq = meta["pq"]
        if pq is not None:
            ok = isinstance(pq, dict) and all(_is_int(pq.get(k)) and pq[k] > 0 for k in
                                              ("nlist", "m", "code_bytes", "nprobe", "rerank", "trained_on")) \
                and _is_int(pq.get("gen")) and pq["gen"] >= 0 and isinstance(pq.get("sha256"), str) \
                and isinstance(pq.get("recall@10"), (int, float)) and not isinstance(pq["recall@10"], bool) \
                and 0 <= pq["recall@10"] <= 1
            _need(ok, p, "pq", "null or {gen, nlist, m, code_bytes, nprobe, rerank, trained_on, recall@10, sha256}", pq)
        return meta

    def _shard_file(self, sid: int, suffix: str) -> Path:
        return self.path / "shards" / f"{sid:06d}{suffix}"

    def _shard_embeddings(self, n: int, mmap: bool = False) -> np.ndarray:
        s = self.meta["shards"][n]
        path = self._shard_file(s["id"], ".npy")
        try:  # a memory map (one clip's lookup) skips the checksum; a full load verifies it
            emb = np.load(path, mmap_mode="r", allow_pickle=False) if mmap else \
                np.load(io.BytesIO(self._read_checked(path, s["sha256"]["npy"])), allow_pickle=False)
        except (OSError, ValueError, EOFError) as err:
            raise IndexError_(f"corrupt or missing index shard {path}: {err}") from None
        if emb.dtype != np.float32 or emb.shape != (s["clips"], self.meta["embed_dim"]):
            raise IndexError_(f"index shard {path}: {emb.dtype} {emb.shape}, manifest says float32 "
                              f"({s['clips']}, {self.meta['embed_dim']}) (truncated or foreign file?)")
        return emb

    def _read_checked(self, path: Path, digest: str) -> bytes:
        """A file's bytes, refused (IndexError_) unless their sha256 is the one the manifest recorded."""
        data = path.read_bytes()
        if _sha(data) != digest:
            raise IndexError_(f"index file {path} does not match the sha256 recorded in {self.manifest_path} "
                              f"(damaged or replaced on disk); rebuild the index")
        return data

    def _shard_clips(self, n: int) -> list[dict]:
        s = self.meta["shards"][n]
        path = self._shard_file(s["id"], ".jsonl")
        try:
            lines = self._read_checked(path, s["sha256"]["jsonl"]).decode().splitlines()
        except (OSError, UnicodeDecodeError) as err:
            raise IndexError_(f"corrupt or missing index shard {path}: {err}") from None
        if len(lines) != s["clips"]:
            raise IndexError_(f"index shard {path}: {len(lines)} clips, manifest says {s['clips']} (truncated?)")
        return [self._parse_clip(path, s["video"], ln, line) for ln, line in enumerate(lines, 1)]

    @staticmethod
    def _parse_clip(path: Path, video: str, ln: int, line: str) -> dict:
        try:
            c = json.loads(line)
            ok = isinstance(c, dict) and c.get("video") == video and all(
                isinstance(c.get(k), (int, float)) and not isinstance(c.get(k), bool) and math.isfinite(c[k])
                for k in ("start", "end"))
        except ValueError:
            ok = False
        if not ok:
            raise IndexError_(f"{path}:{ln}: expected {{\"video\": {video!r}, \"start\": s, \"end\": s}}, "
                              f"got {line[:80]!r}")
        return {"video": c["video"], "start": c["start"], "end": c["end"]}

    def _clip_meta(self, i: int) -> dict:
        """{"video", "start", "end"} of clip ``i`` without reading every shard: its shard's lines are
        checked (sha256, count) once and kept in a small LRU; only the requested line is parsed."""
        if self._clips is not None:
            return self._clips[i]
        n = int(np.searchsorted(self._offsets, i, side="right") - 1)
        lines = self._lines.get(n)
        if lines is None:
            s = self.meta["shards"][n]
            path = self._shard_file(s["id"], ".jsonl")
            try:
                lines = self._read_checked(path, s["sha256"]["jsonl"]).decode().splitlines()
            except (OSError, UnicodeDecodeError) as err:
                raise IndexError_(f"corrupt or missing index shard {path}: {err}") from None
            if len(lines) != s["clips"]:
                raise IndexError_(f"index shard {path}: {len(lines)} clips, manifest says {s['clips']} (truncated?)")
            self._lines[n] = lines
            while len(self._lines) > LINES_CACHE:
                self._lines.popitem(last=False)
        else:
            self._lines.move_to_end(n)
        s = self.meta["shards"][n]
        row = i - int(self._offsets[n])
        return self._parse_clip(self._shard_file(s["id"], ".jsonl"), s["video"], row + 1, lines[row])

    def __len__(self) -> int:
        return int(self.meta["num_clips"])

    def has_video(self, video: str) -> bool:
        return video in self.meta["videos"]

    def video_info(self) -> dict[str, dict]:
        """video -> {"path", "fps", "num_frames", "clips", "shard", window settings ...} (a copy)."""
        return {v: dict(info) for v, info in self.meta["videos"].items()}

    def _check_id(self, i: int) -> int:
        i = int(i)
        if not 0 <= i < len(self):
            raise IndexError(f"clip id {i} outside 0..{len(self) - 1} of index {self.path}")
        return i

    def clips(self) -> list[dict]:
        """Every clip's {"video", "start", "end"}, in id order (read once, then cached)."""
        if self._clips is None:
            self._clips = [c for n in range(len(self.meta["shards"])) for c in self._shard_clips(n)]
        return self._clips

    def clip(self, i: int) -> dict:
        """{"video", "start", "end", "id"} of clip ``i``."""
        i = self._check_id(i)
        return dict(self._clip_meta(i), id=i)

    def embedding(self, i: int) -> np.ndarray:
        """[D] float32 embedding of clip ``i`` (memory-mapped from its shard; no full load)."""
        i = self._check_id(i)
        if self._emb is not None:
            return np.array(self._emb[i])
        n = int(np.searchsorted(self._offsets, i, side="right") - 1)
        return np.array(self._shard_map(n)[0][i - self._offsets[n]], dtype=np.float32)

    def _shard_map(self, n: int) -> tuple[np.ndarray, "mmap.mmap | None", int]:
        """Shard ``n``'s [clips, D] embeddings, memory-mapped for random row reads: (array, its map,
        byte offset of row 0). Shape and dtype are checked against the manifest, not the checksum
        (re-ranking reads a few rows of many shards). The map is advised MADV_RANDOM, so a row read
        does not pull in the kernel's read-around window. The last ``MMAP_CACHE`` maps stay open."""
        import mmap

        m = self._mmaps.get(n)
        if m is not None:
            self._mmaps.move_to_end(n)
            return m
        s = self.meta["shards"][n]
        path = f"{self.path}/shards/{s['id']:06d}.npy"  # a str: pathlib costs more than the read here
        D = self.meta["embed_dim"]
        try:
            with open(path, "rb", buffering=0) as f:
                head = f.read(10)
                # the header np.save writes for this shard, compared as text; anything else is parsed
                # (numpy's parser evaluates the header dict: ~100 us, per shard opened for re-ranking)
                want = f"{{'descr': '<f4', 'fortran_order': False, 'shape': ({s['clips']}, {D}), }}".encode()
                hlen = int.from_bytes(head[8:10], "little") if head[:8] == b"\x93NUMPY\x01\x00" else -1
                if hlen > 0 and f.read(hlen).startswith(want):
                    shape, fortran, dtype, offset = (s["clips"], D), False, np.dtype(np.float32), 10 + hlen
                else:
                    f.seek(0)
                    major, _ = np.lib.format.read_magic(f)
                    read_header = np.lib.format.read_array_header_1_0 if major == 1 else np.lib.format.read_array_header_2_0
                    shape, fortran, dtype = read_header(f)
                    offset = f.tell()
                mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) if shape[0] else None
        except (OSError, ValueError, EOFError) as err:
            raise IndexError_(f"corrupt or missing index shard {path}: {err}") from None
        size = 4 * shape[0] * (shape[1] if len(shape) > 1 else 1)
        if dtype != np.float32 or fortran or shape != (s["clips"], D) or mm is None or len(mm) < offset + size:
            raise IndexError_(f"index shard {path}: {dtype} {shape}{' (Fortran order)' if fortran else ''}, manifest "
                              f"says float32 ({s['clips']}, {D}) (truncated or foreign file?)")
        if hasattr(mm, "madvise"):
            mm.madvise(mmap.MADV_RANDOM)
        arr = np.frombuffer(mm, dtype=np.float32, count=s["clips"] * D, offset=offset).reshape(s["clips"], D)
        m = self._mmaps[n] = (arr, mm, offset)
        while len(self._mmaps) > MMAP_CACHE:
            self._mmaps.popitem(last=False)
        return m

    def gather(self, ids: np.ndarray) -> np.ndarray:
        """[len(ids), D] float32 embeddings of clip ``ids`` (ascending, in range), read from the
        memory-mapped shards (only their rows are touched)."""
        ids = np.asarray(ids, dtype=np.int64)
        out = np.empty((len(ids), self.meta["embed_dim"]), np.float32)
        if self._emb is not None:
            out[:] = self._emb[ids]
            return out
        import mmap

        pos = np.searchsorted(self._offsets, ids, side="right") - 1
        cuts = np.flatnonzero(np.diff(pos)) + 1
        groups = list(zip(np.concatenate([[0], cuts]), np.concatenate([cuts, [len(ids)]])))
        row_bytes = 4 * self.meta["embed_dim"]
        maps = []
        for a, b in groups:  # first ask the kernel for every row (reads in flight together), then copy
            n = int(pos[a])
            arr, mm, offset = self._shard_map(n)
            rows = ids[a:b] - self._offsets[n]
            if len(rows) < 64 and hasattr(mm, "madvise"):
                for r in rows:
                    start = offset + int(r) * row_bytes
                    page = start - start % mmap.PAGESIZE
                    mm.madvise(mmap.MADV_WILLNEED, page, start + row_bytes - page)
            maps.append((arr, rows))
        for (a, b), (arr, rows) in zip(groups, maps):
            out[a:b] = arr[rows]
        return out

    def iter_shard_blocks(self, rows: int = 262_144):
        """Yield (first clip id, [n, D] float32) blocks of whole shards, about ``rows`` clips each, in id
        order, read from the memory-mapped shards: a streaming pass over every embedding."""
        N, start = len(self.meta["shards"]), 0
        while start < N:
            stop = start + 1
            while stop < N and self._offsets[stop + 1] - self._offsets[start] <= rows:
                stop += 1
            parts = [self._shard_embeddings(n, mmap=True) for n in range(start, stop)]
            yield int(self._offsets[start]), np.concatenate(parts) if len(parts) > 1 else np.array(parts[0])
            start = stop

    def exact_scan(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Exact inner-product top-k over every clip in one streaming pass (never all floats in RAM).

        Args:
            queries: [Q, D] float32. k: hits per query (<= len(self)).
        Returns:
            (scores [Q, k] float32, ids [Q, k] int64), best first; equal to ``exact_search`` on
            ``embeddings()``.
        """
        q = np.ascontiguousarray(queries, dtype=np.float32)
        best_s = np.full((len(q), 0), -np.inf, np.float32)
        best_i = np.zeros((len(q), 0), np.int64)
        for first, block in self.iter_shard_blocks():
            s, i = exact_search(q, block, min(k, len(block)))
            cs, ci = np.concatenate([best_s, s], 1), np.concatenate([best_i, i + first], 1)
            top = np.argsort(-cs, axis=1, kind="stable")[:, :k]
            best_s, best_i = np.take_along_axis(cs, top, 1), np.take_along_axis(ci, top, 1)
        return best_s, best_i

    def embeddings(self) -> np.ndarray:
        """[N, D] float32, all clips in id order (loaded once, then cached)."""
        if self._emb is None:
            parts = [self._shard_embeddings(n) for n in range(len(self.meta["shards"]))]
            self._emb = np.concatenate(parts) if parts else np.zeros((0, self.meta["embed_dim"]), np.float32)
        return self._emb

    def check_model(self, fingerprint: dict) -> None:
        """Refuse a model other than the one the index was built with (architecture or weights)."""
        m = self.meta
        if (fingerprint["model"], fingerprint["config_hash"], fingerprint["embed_dim"]) != \
                (m["model"], m["config_hash"], m["embed_dim"]):
            raise IndexError_(
                f"index {self.path} was built by model {m['model']!r} (config {m['config_hash']}, dim {m['embed_dim']}); "
                f"refusing to use it with model {fingerprint['model']!r} (config {fingerprint['config_hash']}, "
                f"dim {fingerprint['embed_dim']}). Rebuild the index with this model or load the other one.")
        if fingerprint.get("weights_hash") != m.get("weights_hash"):
            raise IndexError_(
                f"index {self.path} was built with other weights of model {m['model']!r}: index weights sha256 "
                f"{m.get('weights_hash')}, this model's weights sha256 {fingerprint.get('weights_hash')} (another "
                f"checkpoint of the same architecture). Load the checkpoint it was built with "
                f"({m.get('model_source') or 'not recorded'}) or rebuild the index into another folder.")

    # ----------------------------------------------------------------------------- writing
    def add_video(self, video: str, embeddings: np.ndarray, spans: list[tuple[float, float]], info: dict | None = None):
        """Append one video's clips as a new shard ([n, D] embeddings, (start, end) seconds) and save.

        Costs time proportional to ``n`` (a quantizer lookup and, under PQ, an encoding of its own
        clips; plus a small manifest), except when the index crosses an IVF or PQ (re)training
        size, which happens at geometrically spaced sizes.
        """
        embeddings = np.ascontiguousarray(embeddings, dtype=np.float32)
        D = self.meta["embed_dim"]
        if embeddings.ndim != 2 or embeddings.shape[1] != D or len(embeddings) != len(spans) or not len(spans):
            raise ValueError(f"expected [{len(spans)}, {D}] embeddings (at least one clip) for {video}, got {embeddings.shape}")
        if self.has_video(video):
            raise ValueError(f"video {video!r} is already in index {self.path}")
        sid = self.meta["next_shard"]
        clips = [{"video": video, "start": round(float(s), 3), "end": round(float(e), 3)} for s, e in spans]
        npy = _npy_bytes(embeddings)
        jsonl = "".join(json.dumps(c) + "\n" for c in clips).encode()
        _write_bytes(self._shard_file(sid, ".npy"), npy)
        _write_bytes(self._shard_file(sid, ".jsonl"), jsonl)
        entry = {"id": sid, "clips": len(clips), "video": video, "ivf": None,
                 "sha256": {"npy": _sha(npy), "jsonl": _sha(jsonl)}}
        ivf = self.meta["ivf"]
        if ivf is not None:
            entry["ivf"] = ivf["gen"]
            entry["sha256"]["ivf"] = self._write_assign(sid, ivf["gen"], self._quantizer_assign(embeddings))
        pq = self.meta["pq"]
        entry["pq"] = None
        if pq is not None:
            codes = self._pq_encode(embeddings)
            entry["pq"] = pq["gen"]
            entry["sha256"]["pq"] = self._write_codes(sid, pq["gen"], codes)
            if self._pq is not None:  # a searcher that adds keeps its index current
                from .index_pq import add_codes

                add_codes(self._pq, codes, np.arange(self._offsets[-1], self._offsets[-1] + len(codes)))
        self._emb = None  # not concatenated here: that would copy the whole index per video
        if self._clips is not None:
            self._clips += clips
        self.meta["shards"].append(entry)
        self.meta["videos"][video] = dict(info or {}, clips=len(clips), shard=sid)
        self.meta["num_clips"] += len(clips)
        self.meta["next_shard"] = sid + 1
        self._offsets = np.append(self._offsets, self._offsets[-1] + len(clips))
        self._ivf = None
        want = self._wants_training()
        if want == "ivf":
            self._train_ivf()
            self._emb = self._ivf = None  # a writer keeps only its own video in memory
        elif want in ("pq", "pq-calibrate"):
            self._train_pq() if want == "pq" else self._recalibrate_pq()
            self._emb = self._pq = None
            self._mmaps.clear()
        self.save()

    def save(self) -> None:
        """Write the manifest atomically (shard files are written by ``add_video`` before it)."""
        self.path.mkdir(parents=True, exist_ok=True)
        # compact: it is rewritten per added video, so its size is the per-video overhead
        atomic_write_text(self.manifest_path, json.dumps(self.meta, separators=(",", ":")) + "\n")

    def cleanup(self) -> list[str]:
        """Delete files the manifest does not name (left by a killed writer); call under the lock.

        Returns the names removed.
        """
        keep = {MANIFEST, "report.json", ".lock"}
        for s in self.meta["shards"]:
            keep |= {f"shards/{s['id']:06d}.npy", f"shards/{s['id']:06d}.jsonl"}
            if s["ivf"] is not None:
                keep.add(f"shards/{s['id']:06d}.ivf{s['ivf']}.npy")
            if s["pq"] is not None:
                keep.add(f"shards/{s['id']:06d}.pq{s['pq']}.npy")
        if self.meta["ivf"] is not None:
            keep.add(f"ivf-{self.meta['ivf']['gen']}.faiss")
        if self.meta["pq"] is not None:
            keep.add(f"pq-{self.meta['pq']['gen']}.faiss")
        removed = []
        for pattern in ("*", "shards/*"):
            for f in self.path.glob(pattern):
                rel = f.relative_to(self.path).as_posix()
                if f.is_file() and rel not in keep and (rel.startswith("shards/") or
                                                         re.fullmatch(r"(ivf|pq)-\d+\.faiss|\..*\.tmp", rel)):
                    f.unlink()
                    removed.append(rel)
        return sorted(removed)

    # ----------------------------------------------------------------------------- IVF
    def active_kind(self) -> str:
        """The search in use now: ``exact``, ``ivf`` or ``pq`` (``auto`` resolved by size; ``ivf`` and
        ``pq`` are ``exact`` until trained)."""
        kind, ivf, pq = self.meta["kind"], self.meta["ivf"], self.meta["pq"]
        if kind in ("auto", "pq") and pq is not None:
            return "pq"
        if kind in ("auto", "ivf") and ivf is not None:
            return "ivf"
        return "exact"

    def min_clips(self) -> int | None:
        """Clips the recorded kind needs before it is trained (None for ``exact``)."""
        from .index_pq import PQ_MIN_CLIPS

        return {"auto": AUTO_IVF_MIN_CLIPS, "ivf": IVF_MIN_CLIPS, "pq": PQ_MIN_CLIPS}.get(self.meta["kind"])

    def _wants_training(self) -> str | None:
        """``"ivf"`` or ``"pq"`` when the index has reached that structure's (re)training size,
        ``"pq-calibrate"`` when a PQ index at its largest list count has grown ``IVF_RETRAIN_GROWTH``
        times since calibrated, else None."""
        from .index_pq import PQ_MIN_CLIPS, pq_nlist

        kind, n, ivf, pq = self.meta["kind"], len(self), self.meta["ivf"], self.meta["pq"]
        pq_floor = AUTO_PQ_MIN_CLIPS if kind == "auto" else PQ_MIN_CLIPS if kind == "pq" else None
        if pq_floor is not None and n >= pq_floor:
            if pq is None or (n >= IVF_RETRAIN_GROWTH * pq["trained_on"] and pq_nlist(n) != pq["nlist"]):
                return "pq"
            return "pq-calibrate" if n >= IVF_RETRAIN_GROWTH * pq.get("calibrated_on", pq["trained_on"]) else None
        floor = AUTO_IVF_MIN_CLIPS if kind == "auto" else IVF_MIN_CLIPS if kind == "ivf" else None
        if floor is None or n < floor:
            return None
        return "ivf" if ivf is None or n >= IVF_RETRAIN_GROWTH * ivf["trained_on"] else None

    def _ivf_file(self, gen: int) -> Path:
        return self.path / f"ivf-{gen}.faiss"

    def _write_assign(self, sid: int, gen: int, assign: np.ndarray) -> str:
        """Write a shard's IVF list assignments; returns their sha256."""
        data = _npy_bytes(assign.astype(np.int64))
        _write_bytes(self._shard_file(sid, f".ivf{gen}.npy"), data)
        return _sha(data)

    def _quantizer_assign(self, x: np.ndarray) -> np.ndarray:
        """[n] IVF list of each vector under the current quantizer."""
        ivf = self._empty_ivf()
        _, a = ivf.quantizer.search(x, 1)
        return a.ravel()

    def _empty_ivf(self):
        import faiss

        path = self._ivf_file(self.meta["ivf"]["gen"])
        try:
            data = self._read_checked(path, self.meta["ivf"]["sha256"])
            index = faiss.deserialize_index(np.frombuffer(data, dtype=np.uint8))
        except OSError as err:
            raise IndexError_(f"missing FAISS file {path}: {err}") from None
        except RuntimeError as err:
            raise IndexError_(f"corrupt or truncated FAISS file {path}: {str(err).splitlines()[0]}") from None
        if not isinstance(index, faiss.IndexIVFFlat) or index.nlist != self.meta["ivf"]["nlist"] or \
                index.d != self.meta["embed_dim"] or index.ntotal != 0:
            raise IndexError_(f"{path} is not the empty IVF index ({self.meta['ivf']['nlist']} lists, "
                              f"dim {self.meta['embed_dim']}) the manifest names")
        return index

    def _train_ivf(self, seed: int = 0) -> None:
        """Cluster (a sample of) all vectors, store every shard's list assignments, calibrate nprobe."""
        import faiss

        x = self.embeddings()
        nlist = ivf_nlist(len(x))
        rng = np.random.default_rng(seed)
        sample = x[np.sort(rng.choice(len(x), min(len(x), nlist * 64), replace=False))]
        index = faiss.IndexIVFFlat(faiss.IndexFlatIP(x.shape[1]), x.shape[1], nlist, faiss.METRIC_INNER_PRODUCT)
        index.cp.seed = seed
        index.train(sample)
        gen = 0 if self.meta["ivf"] is None else self.meta["ivf"]["gen"] + 1
        digests = []
        quantizer_bytes = faiss.serialize_index(index).tobytes()
        _write_bytes(self._ivf_file(gen), quantizer_bytes)
        for n, s in enumerate(self.meta["shards"]):
            lo, hi = self._offsets[n], self._offsets[n + 1]
            _, a = index.quantizer.search(x[lo:hi], 1)
            digests.append(self._write_assign(s["id"], gen, a.ravel()))
            _add_preassigned(index, x[lo:hi], a.ravel(), lo)
        nprobe, recall = self._calibrate(index, x)
        for s in self.meta["shards"]:
            s["ivf"] = gen
            s["sha256"]["ivf"] = digests.pop(0)
        self.meta["ivf"] = {"gen": gen, "nlist": nlist, "nprobe": nprobe, "trained_on": len(x), "recall@10": recall,
                            "sha256": _sha(quantizer_bytes)}
        self._ivf = index

    @staticmethod
    def _calibrate(index, x: np.ndarray, k: int = 10) -> tuple[int, float]:
        """(nprobe, its recall@k): the smallest power of two reaching IVF_RECALL_TARGET against exact
        search on ``probe_queries(x)``, times IVF_NPROBE_MARGIN."""
        q = probe_queries(x)
        k = min(k, len(x))
        _, exact = exact_search(q, x, k)

        def recall(nprobe):
            index.nprobe = nprobe
            return recall_at_k(index.search(q, k)[1], exact)

        nprobe = 1
        while nprobe < index.nlist and recall(nprobe) < IVF_RECALL_TARGET:
            nprobe *= 2
        nprobe = min(index.nlist, nprobe * IVF_NPROBE_MARGIN)
        return nprobe, round(recall(nprobe), 4)

    def ivf(self):
        """The in-memory IVF index (built from the stored assignments, no clustering), or None."""
        if self.active_kind() != "ivf":
            return None
        if self._ivf is None:
            meta = self.meta["ivf"]
            index = self._empty_ivf()
            for n, s in enumerate(self.meta["shards"]):
                path = self._shard_file(s["id"], f".ivf{meta['gen']}.npy")
                try:
                    a = np.load(io.BytesIO(self._read_checked(path, s["sha256"]["ivf"])), allow_pickle=False)
                except (OSError, ValueError, EOFError) as err:
                    raise IndexError_(f"corrupt or missing IVF assignments {path}: {err}") from None
                if s["ivf"] != meta["gen"] or a.dtype != np.int64 or a.shape != (s["clips"],) or \
                        (a.size and (a.min() < 0 or a.max() >= meta["nlist"])):
                    raise IndexError_(f"IVF assignments {path} do not fit shard {s['id']} ({s['clips']} clips, "
                                      f"{meta['nlist']} lists)")
                lo, hi = self._offsets[n], self._offsets[n + 1]
                _add_preassigned(index, self.embeddings()[lo:hi], a, lo)
            index.nprobe = meta["nprobe"]
            self._ivf = index
        return self._ivf

    # ----------------------------------------------------------------------------- IVF-PQ
    def _pq_file(self, gen: int) -> Path:
        return self.path / f"pq-{gen}.faiss"

    def _empty_pq(self):
        """The trained, empty IndexIVFPQ of the current PQ generation (checksum and shape checked)."""
        import faiss

        from .index_pq import pq_m

        meta = self.meta["pq"]
        path = self._pq_file(meta["gen"])
        try:
            data = self._read_checked(path, meta["sha256"])
            index = faiss.deserialize_index(np.frombuffer(data, dtype=np.uint8))
        except OSError as err:
            raise IndexError_(f"missing FAISS file {path}: {err}") from None
        except RuntimeError as err:
            raise IndexError_(f"corrupt or truncated FAISS file {path}: {str(err).splitlines()[0]}") from None
        D = self.meta["embed_dim"]
        if not isinstance(index, faiss.IndexIVFPQ) or index.nlist != meta["nlist"] or index.d != D or \
                index.pq.M != meta["m"] or index.pq.M != pq_m(D) or index.sa_code_size() != meta["code_bytes"] or \
                index.ntotal != 0 or not index.is_trained:
            got = f"{type(index).__name__}, dim {index.d}, {getattr(index, 'nlist', '?')} lists, " \
                  f"{index.sa_code_size() if isinstance(index, faiss.IndexIVFPQ) else '?'}-byte codes, {index.ntotal} vectors"
            raise IndexError_(f"{path} ({got}) is not the trained, empty IVF-PQ index {self.manifest_path} names "
                              f"(field 'pq': dim {D}, {meta['nlist']} lists, {meta['m']} sub-quantizers, "
                              f"{meta['code_bytes']}-byte codes)")
        return index

    def _pq_encode(self, x: np.ndarray) -> np.ndarray:
        """[n, code_bytes] uint8 standalone IVF-PQ codes of [n, D] vectors (the writer's cached quantizer)."""
        from .index_pq import encode

        if self._pq_encoder is None:
            enc = self._empty_pq()
            self._pq_encoder = (enc, enc.quantizer.reconstruct_n(0, enc.nlist))
        return encode(self._pq_encoder[0], x, self._pq_encoder[1])

    def _write_codes(self, sid: int, gen: int, codes: np.ndarray) -> str:
        """Write a shard's IVF-PQ codes; returns their sha256."""
        data = _npy_bytes(np.ascontiguousarray(codes, dtype=np.uint8))
        _write_bytes(self._shard_file(sid, f".pq{gen}.npy"), data)
        return _sha(data)

    def _read_codes(self, n: int, coarse_size: int) -> np.ndarray:
        """Shard ``n``'s stored codes, refused (IndexError_ naming the file and the manifest) unless they
        match the manifest: checksum, one row of ``code_bytes`` per clip, list numbers below ``nlist``."""
        from .index_pq import list_numbers

        s, meta = self.meta["shards"][n], self.meta["pq"]
        path = self._shard_file(s["id"], f".pq{meta['gen']}.npy")
        if s["pq"] != meta["gen"]:
            raise IndexError_(f"{self.manifest_path}: shard {s['id']} has PQ codes of generation {s['pq']}, "
                              f"the index is at generation {meta['gen']} ({path} expected)")
        try:
            codes = np.load(io.BytesIO(self._read_checked(path, s["sha256"]["pq"])), allow_pickle=False)
        except (OSError, ValueError, EOFError) as err:
            raise IndexError_(f"corrupt or missing IVF-PQ codes {path}: {err}") from None
        if codes.dtype != np.uint8 or codes.shape != (s["clips"], meta["code_bytes"]):
            raise IndexError_(f"IVF-PQ codes {path} are {codes.dtype} {codes.shape}; {self.manifest_path} says "
                              f"uint8 ({s['clips']}, {meta['code_bytes']}) for shard {s['id']}")
        lists = list_numbers(codes, coarse_size)
        if lists.size and lists.max() >= meta["nlist"]:
            raise IndexError_(f"IVF-PQ codes {path} name list {int(lists.max())}; {self.manifest_path} says "
                              f"{meta['nlist']} lists")
        return codes

    def _train_pq(self, seed: int = 0) -> None:
        """Train an IVF-PQ quantizer on a sample, encode every shard (a streaming pass), calibrate
        nprobe and the re-rank depth; the manifest switches to it when the caller saves."""
        from .index_pq import PQ_MIN_CLIPS, PQ_TRAIN_PER_LIST, add_codes, encode, new_index, pq_m, pq_nlist, train

        import faiss

        n, D = len(self), self.meta["embed_dim"]
        nlist = pq_nlist(n)
        rng = np.random.default_rng(seed)
        sample = self.gather(np.sort(rng.choice(n, min(n, max(PQ_MIN_CLIPS, nlist * PQ_TRAIN_PER_LIST)), replace=False)))
        index = new_index(D, nlist, seed)
        train(index, sample)
        gen = 0 if self.meta["pq"] is None else self.meta["pq"]["gen"] + 1
        quantizer_bytes = faiss.serialize_index(index).tobytes()
        _write_bytes(self._pq_file(gen), quantizer_bytes)
        enc = faiss.deserialize_index(np.frombuffer(quantizer_bytes, dtype=np.uint8))
        self._pq_encoder = (enc, enc.quantizer.reconstruct_n(0, enc.nlist))
        digests, pos = [], 0
        for first, block in self.iter_shard_blocks():
            codes = encode(enc, block, self._pq_encoder[1])
            add_codes(index, codes, np.arange(first, first + len(block), dtype=np.int64))
            while pos < len(self.meta["shards"]) and self._offsets[pos] < first + len(block):
                lo, hi = self._offsets[pos] - first, self._offsets[pos + 1] - first
                digests.append(self._write_codes(self.meta["shards"][pos]["id"], gen, codes[lo:hi]))
                pos += 1
        self._pq = index
        nprobe, rerank, recall = self._calibrate_pq(sample, seed)
        for s, digest in zip(self.meta["shards"], digests):
            s["pq"], s["sha256"]["pq"] = gen, digest
            s["ivf"] = None  # the PQ index replaces the IVF one (its files are removed by the next cleanup)
            s["sha256"].pop("ivf", None)
        self.meta["ivf"] = None
        self.meta["pq"] = {"gen": gen, "nlist": nlist, "m": pq_m(D), "code_bytes": int(index.sa_code_size()),
                           "nprobe": nprobe, "rerank": rerank, "trained_on": n, "calibrated_on": n,
                           "recall@10": recall, "sha256": _sha(quantizer_bytes)}
        self._ivf = None

    def _recalibrate_pq(self, seed: int = 0) -> None:
        """Re-measure nprobe and the re-rank depth on the grown index (same quantizer, same codes):
        more clips per list push true neighbours further down the PQ-ordered candidates."""
        rng = np.random.default_rng(seed)
        self.pq()
        sample = self.gather(np.sort(rng.choice(len(self), min(len(self), 4096), replace=False)))
        nprobe, rerank, recall = self._calibrate_pq(sample, seed)
        self.meta["pq"].update(nprobe=nprobe, rerank=rerank, calibrated_on=len(self), **{"recall@10": recall})

    def _calibrate_pq(self, sample: np.ndarray, seed: int = 0, k: int = 10) -> tuple[int, int, float]:
        """(nprobe, re-rank depth, recall@k) for ``self._pq``.

        For each power-of-two nprobe, the smallest depth in ``RERANK_DEPTHS`` whose recall@k against
        exact search (a streaming scan) on ``probe_queries`` of the sample reaches
        ``IVF_RECALL_TARGET``; of these pairs the one of least ``index_pq.query_cost`` (codes scanned
        against rows re-read), then nprobe times ``IVF_NPROBE_MARGIN`` (as for IVF). The depth gets no
        margin: every re-ranked row is a random read, and on the bench's queries the calibrated depth
        already reaches a higher recall than on the probes. The recall returned is measured at the
        chosen pair."""
        from .index_pq import RERANK_DEPTHS, query_cost

        index = self._pq
        q = probe_queries(sample, seed=seed)
        k = min(k, len(self))
        _, exact = self.exact_scan(q, k)
        depths = [r for r in RERANK_DEPTHS if r >= k] or [k]

        def recalls(nprobe, depths):
            """recall@k after exact re-ranking of the first r candidates, for each r in depths."""
            index.nprobe = nprobe
            cand = index.search(q, depths[-1])[1]  # best first: a prefix is the list at a shorter depth
            flat = np.unique(cand[cand >= 0])
            vec = self.gather(flat)
            scores = np.where(cand >= 0, np.einsum("qrd,qd->qr", vec[np.searchsorted(flat, np.maximum(cand, 0))], q),
                              -np.inf)
            out = []
            for r in depths:
                top = np.argsort(-scores[:, :r], axis=1, kind="stable")[:, :k]
                out.append(recall_at_k(np.take_along_axis(cand[:, :r], top, 1), exact))
            return out

        codes_per_list = len(self) / index.nlist
        best, nprobe = None, 1
        while True:
            ok = [r for r, rec in zip(depths, recalls(nprobe, depths)) if rec >= IVF_RECALL_TARGET]
            if ok:
                cost = query_cost(nprobe, codes_per_list, ok[0], index.code_size)
                if best is None or cost < best[0]:
                    best = (cost, nprobe, ok[0])
                if ok[0] == depths[0]:
                    break  # a larger nprobe cannot shorten the list further
            if nprobe >= index.nlist or (best and query_cost(2 * nprobe, codes_per_list, depths[0], index.code_size)
                                          >= best[0]):
                break
            nprobe *= 2
        _, nprobe, depth = best or (None, index.nlist, depths[-1])
        nprobe = min(index.nlist, nprobe * IVF_NPROBE_MARGIN)
        recall = recalls(nprobe, [depth])[0]
        index.nprobe = nprobe
        return nprobe, depth, round(recall, 4)

    def pq(self):
        """The in-memory IVF-PQ index (codes read from the shards' code files, no encoding), or None."""
        if self.active_kind() != "pq":
            return None
        if self._pq is None:
            import faiss

            from .index_pq import list_numbers, place_codes

            index = self._empty_pq()
            cs, S = index.coarse_code_size(), len(self.meta["shards"])
            # two passes over the code files: list sizes first, so that each list is allocated once
            counts = np.zeros(index.nlist, np.int64)
            for n in range(S):
                counts += np.bincount(list_numbers(self._read_codes(n, cs), cs), minlength=index.nlist)
            invlists = faiss.downcast_InvertedLists(index.invlists)
            for lst in np.flatnonzero(counts):
                invlists.resize(int(lst), int(counts[lst]))
            fill = np.zeros(index.nlist, np.int64)
            batch, first = [], 0
            for n in range(S):
                batch.append(self._read_codes(n, cs))
                if sum(len(b) for b in batch) >= 262_144 or n == S - 1:
                    codes = np.concatenate(batch)
                    place_codes(index, codes, np.arange(first, first + len(codes), dtype=np.int64), fill)
                    first += len(codes)
                    batch = []
            if not np.array_equal(fill, counts):
                raise IndexError_(f"IVF-PQ codes under {self.path / 'shards'} changed while {self.path} was opened")
            index.ntotal = first
            index.nprobe = self.meta["pq"]["nprobe"]
            self._pq = index
        return self._pq

    # ----------------------------------------------------------------------------- search
    def video_rows(self, videos) -> np.ndarray:
        """Clip ids of the named videos (unknown names ignored), ascending."""
        shard_pos = {s["id"]: n for n, s in enumerate(self.meta["shards"])}
        parts = []
        for v in sorted(set(videos)):
            info = self.meta["videos"].get(v)
            if info is not None and info.get("shard") in shard_pos:
                n = shard_pos[info["shard"]]
                parts.append(np.arange(self._offsets[n], self._offsets[n + 1], dtype=np.int64))
        return np.sort(np.concatenate(parts)) if parts else np.zeros(0, np.int64)

    def search(self, queries: np.ndarray, k: int = 5, videos: set[str] | None = None) -> list[list[dict]]:
        """Top-k clips per query -> per query a list of {video, start, end, score, id}, best first.

        Args:
            queries: [Q, D] (or [D]) float32, in the model's similarity space.
            k: hits per query.
            videos: restrict hits to these video ids (searched exactly); None = all.
        """
        q = np.asarray(queries, dtype=np.float32)
        q = np.ascontiguousarray(q[None] if q.ndim == 1 else q)
        if q.ndim != 2 or q.shape[1] != self.meta["embed_dim"]:
            raise ValueError(f"queries must be [Q, {self.meta['embed_dim']}], got {tuple(np.shape(queries))}")
        if not len(self):
            raise IndexError_(f"index {self.path} is empty")
        kind = self.active_kind()
        if videos is not None:
            rows = self.video_rows(videos)
            if not rows.size:
                return [[] for _ in q]
            # the named videos' shards only, memory-mapped unless every float is loaded already
            scores, ids = exact_search(q, self.gather(rows), min(k, rows.size))
            ids = rows[ids]
        elif kind == "pq":
            from .index_pq import rerank

            index = self.pq()
            cand = index.search(q, max(k, self.meta["pq"]["rerank"]))[1]
            scores, ids = rerank(q, cand, self.gather, min(k, len(self)))
        elif kind == "ivf":
            scores, ids = self.ivf().search(q, min(k, len(self)))
        else:
            scores, ids = exact_search(q, self.embeddings(), min(k, len(self)))
        return [[dict(self._clip_meta(int(i)), score=float(s), id=int(i)) for s, i in zip(srow, irow) if i >= 0]
                for srow, irow in zip(scores, ids)]
