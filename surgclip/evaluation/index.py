"""A clip index on disk for text-to-clip search: append-only shards plus a manifest written last.

Layout of an index directory (format version 2)::

    manifest.json            model fingerprint (name, config hash, dim, weights hash), videos,
                             the list of complete shards, the IVF generation in use (JSON)
    shards/000012.npy        [n, D] float32 embeddings of one added video (never rewritten)
    shards/000012.jsonl      its n clips, one {"video", "start", "end"} per line, in id order
    shards/000012.ivf3.npy   [n] int64 IVF list of each clip under quantizer generation 3
    ivf-3.faiss              a trained, empty FAISS IndexIVFFlat (the coarse quantizer)
    report.json              counts of the last ``surgclip index`` run (added, failed by reason)
    .lock                    fcntl lock held by the writing process (its pid inside)

Adding a video writes its shard files (each atomically), then the manifest (atomically). A
process killed at any point leaves the previous manifest intact; files it names are complete,
and files it does not name (a shard written before the kill) are ignored by readers and deleted
by the next writer (``cleanup``). Clip ids are positions in shard order, so they never change.

Search: below ``AUTO_IVF_MIN_CLIPS`` clips (``kind="auto"``) an exact inner-product search
(torch matmul + topk, faster than FAISS's flat index on CPU: ``eval/bench/bench_index.py``
compares the two); above it an IVF index. The IVF quantizer is trained once when the index
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

FORMAT_VERSION = 2
MANIFEST = "manifest.json"
KINDS = ("auto", "exact", "ivf")  # "flat" is accepted as an alias of "exact"
AUTO_IVF_MIN_CLIPS = 300_000  # bench_index.py: IVF at recall@10 >= 0.95 is 6-13x exact at 100k, 48-90x at 1M
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
    """``auto`` | ``exact`` | ``ivf`` (``flat`` = ``exact``)."""
    kind = "exact" if kind == "flat" else (kind or "auto")
    if kind not in KINDS:
        raise ValueError(f"unknown index kind {kind!r}; expected one of {', '.join(KINDS)} (or flat)")
    return kind


def ivf_nlist(n: int) -> int:
    """Number of IVF lists for ``n`` vectors: the power of two nearest sqrt(n), in [16, 4096]."""
    return int(min(4096, max(16, 2 ** round(math.log2(max(1.0, math.sqrt(n)))))))


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
        kind: ``auto`` (default for a new index), ``exact`` or ``ivf``; None keeps the stored one.
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
                             num_clips=0, next_shard=0, shards=[], videos={}, ivf=None)
        self._reset_cache()

    # ----------------------------------------------------------------------------- reading
    def _reset_cache(self) -> None:
        self._emb = None  # [N, D] concatenation of the shards, loaded on the first search
        self._clips = None
        self._mmaps = {}
        self._ivf = None
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
        ids = set()
        for n, s in enumerate(shards):
            ok = isinstance(s, dict) and _is_int(s.get("id")) and s["id"] >= 0 and _is_int(s.get("clips")) and \
                s["clips"] >= 1 and isinstance(s.get("video"), str) and "ivf" in s and \
                (s["ivf"] is None or _is_int(s["ivf"])) and isinstance(s.get("sha256"), dict) and \
                all(isinstance(s["sha256"].get(k), str) for k in ("npy", "jsonl")) and \
                (s["ivf"] is None or isinstance(s["sha256"].get("ivf"), str))
            _need(ok and s["id"] not in ids, p, f"shards[{n}]", "{id >= 0 (unique), clips >= 1, video, ivf, sha256}", s)
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
        clips = []
        for ln, line in enumerate(lines, 1):
            try:
                c = json.loads(line)
                ok = isinstance(c, dict) and c.get("video") == s["video"] and all(
                    isinstance(c.get(k), (int, float)) and not isinstance(c.get(k), bool) and math.isfinite(c[k])
                    for k in ("start", "end"))
            except ValueError:
                ok = False
            if not ok:
                raise IndexError_(f"{path}:{ln}: expected {{\"video\": {s['video']!r}, \"start\": s, \"end\": s}}, "
                                  f"got {line[:80]!r}")
            clips.append({"video": c["video"], "start": c["start"], "end": c["end"]})
        if len(clips) != s["clips"]:
            raise IndexError_(f"index shard {path}: {len(clips)} clips, manifest says {s['clips']} (truncated?)")
        return clips

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
        return dict(self.clips()[i], id=i)

    def embedding(self, i: int) -> np.ndarray:
        """[D] float32 embedding of clip ``i`` (memory-mapped from its shard; no full load)."""
        i = self._check_id(i)
        if self._emb is not None:
            return np.array(self._emb[i])
        n = int(np.searchsorted(self._offsets, i, side="right") - 1)
        if n not in self._mmaps:
            self._mmaps[n] = self._shard_embeddings(n, mmap=True)
        return np.array(self._mmaps[n][i - self._offsets[n]], dtype=np.float32)

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

        Costs time proportional to ``n`` (plus a small manifest), except when the index crosses
        an IVF (re)training size, which happens at geometrically spaced sizes.
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
        self._emb = None  # not concatenated here: that would copy the whole index per video
        if self._clips is not None:
            self._clips += clips
        self.meta["shards"].append(entry)
        self.meta["videos"][video] = dict(info or {}, clips=len(clips), shard=sid)
        self.meta["num_clips"] += len(clips)
        self.meta["next_shard"] = sid + 1
        self._offsets = np.append(self._offsets, self._offsets[-1] + len(clips))
        self._ivf = None
        if self._wants_training():
            self._train_ivf()
            self._emb = self._ivf = None  # a writer keeps only its own video in memory
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
        if self.meta["ivf"] is not None:
            keep.add(f"ivf-{self.meta['ivf']['gen']}.faiss")
        removed = []
        for pattern in ("*", "shards/*"):
            for f in self.path.glob(pattern):
                rel = f.relative_to(self.path).as_posix()
                if f.is_file() and rel not in keep and (rel.startswith("shards/") or
                                                         re.fullmatch(r"ivf-\d+\.faiss|\..*\.tmp", rel)):
                    f.unlink()
                    removed.append(rel)
        return sorted(removed)

    # ----------------------------------------------------------------------------- IVF
    def active_kind(self) -> str:
        """The search in use now: ``exact`` or ``ivf`` (``auto`` resolved by size)."""
        return "ivf" if self.meta["ivf"] is not None and self.meta["kind"] != "exact" else "exact"

    def _wants_training(self) -> bool:
        kind, n, ivf = self.meta["kind"], len(self), self.meta["ivf"]
        floor = AUTO_IVF_MIN_CLIPS if kind == "auto" else IVF_MIN_CLIPS if kind == "ivf" else None
        if floor is None or n < floor:
            return False
        return ivf is None or n >= IVF_RETRAIN_GROWTH * ivf["trained_on"]

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
        clips = self.clips()
        if videos is not None:
            rows = self.video_rows(videos)
            if not rows.size:
                return [[] for _ in q]
            scores, ids = exact_search(q, self.embeddings()[rows], min(k, rows.size))
            ids = rows[ids]
        elif self.active_kind() == "ivf":
            scores, ids = self.ivf().search(q, min(k, len(self)))
        else:
            scores, ids = exact_search(q, self.embeddings(), min(k, len(self)))
        return [[dict(clips[i], score=float(s), id=int(i)) for s, i in zip(srow, irow) if i >= 0]
                for srow, irow in zip(scores, ids)]
