"""A FAISS index of video clips on disk, for text-to-clip search.

Layout of an index directory::

    meta.json        model name, config hash, embedding dim, index type, videos done (JSON)
    clips.jsonl      one {"video", "start", "end"} per stored vector, in index order
    embeddings.npy   [N, D] float32 clip embeddings (the exact store; IVF/HNSW are rebuilt from it)
    index.faiss      the FAISS index (written to a temp file, then renamed)

Adding a video appends its clips; videos already in ``meta.json`` are not re-embedded, so an
interrupted build resumes at the next video. Every file is replaced atomically.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from ..utils import atomic_path, atomic_write_json, atomic_write_text

INDEX_TYPES = ("flat", "ivf", "hnsw")


class IndexError_(ValueError):
    """An index directory is missing, corrupt, or was built by another model."""


def model_fingerprint(model) -> dict:
    """Name, config hash and embedding dim identifying the model an index was built with."""
    cfg = json.dumps(model.config, sort_keys=True, default=str)
    return {"model": model.name, "config_hash": hashlib.sha256(cfg.encode()).hexdigest()[:16],
            "embed_dim": int(model.embed_dim)}


def build_faiss(embeddings: np.ndarray, kind: str = "flat", nlist: int | None = None, hnsw_m: int = 32):
    """A FAISS inner-product index over [N, D] float32 vectors: ``flat`` (exact), ``ivf`` or ``hnsw``."""
    import faiss

    x = np.ascontiguousarray(embeddings, dtype=np.float32)
    d = x.shape[1]
    if kind == "flat":
        index = faiss.IndexFlatIP(d)
    elif kind == "ivf":
        nlist = nlist or max(1, min(4096, int(4 * np.sqrt(len(x)))))
        index = faiss.IndexIVFFlat(faiss.IndexFlatIP(d), d, nlist, faiss.METRIC_INNER_PRODUCT)
        index.train(x[np.random.default_rng(0).permutation(len(x))[: max(nlist * 40, 10000)]])
        index.nprobe = max(1, nlist // 16)
    elif kind == "hnsw":
        index = faiss.IndexHNSWFlat(d, hnsw_m, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efSearch = 128
    else:
        raise ValueError(f"unknown index type {kind!r}; expected one of {INDEX_TYPES}")
    index.add(x)
    return index


def recall_at_k(approx_ids: np.ndarray, exact_ids: np.ndarray) -> float:
    """Mean fraction of the exact top-k found by the approximate search ([Q, k] id arrays)."""
    return float(np.mean([len(set(a) & set(e)) / len(e) for a, e in zip(approx_ids, exact_ids)]))


class ClipIndex:
    """Clip embeddings + (video, start, end) metadata + a FAISS index, in one directory.

    Args:
        path: index directory.
        fingerprint: ``model_fingerprint(model)``; for a new index it is stored, for an existing
            one it must match (else ``IndexError_`` naming both models).
        kind: ``flat`` (exact, default), ``ivf`` or ``hnsw``.
    """

    def __init__(self, path, fingerprint: dict | None = None, kind: str | None = None):
        self.path = Path(path)
        meta_path = self.path / "meta.json"
        if meta_path.is_file():
            try:
                self.meta = json.loads(meta_path.read_text())
            except json.JSONDecodeError as err:
                raise IndexError_(f"corrupt index metadata {meta_path}: {err}") from None
            if fingerprint is not None:
                self.check_model(fingerprint)
            if kind and kind != self.meta["kind"]:
                self.meta["kind"] = kind
            self.clips = self._read_clips()
            self.embeddings = self._read_embeddings()
        else:
            if fingerprint is None:
                raise IndexError_(f"no clip index at {self.path} (meta.json missing); build one with `surgclip index`")
            self.meta = dict(fingerprint, kind=kind or "flat", videos={}, version=1)
            self.clips, self.embeddings = [], np.zeros((0, fingerprint["embed_dim"]), dtype=np.float32)
        self._faiss = None

    def check_model(self, fingerprint: dict) -> None:
        """Refuse a model other than the one the index was built with."""
        m = self.meta
        if (fingerprint["model"], fingerprint["config_hash"], fingerprint["embed_dim"]) != \
                (m["model"], m["config_hash"], m["embed_dim"]):
            raise IndexError_(
                f"index {self.path} was built by model {m['model']!r} (config {m['config_hash']}, dim {m['embed_dim']}); "
                f"refusing to use it with model {fingerprint['model']!r} (config {fingerprint['config_hash']}, "
                f"dim {fingerprint['embed_dim']}). Rebuild the index with this model or load the other one.")

    def _read_clips(self) -> list[dict]:
        path = self.path / "clips.jsonl"
        try:
            return [json.loads(l) for l in path.read_text().splitlines() if l.strip()]
        except (OSError, json.JSONDecodeError) as err:
            raise IndexError_(f"corrupt or missing clip metadata {path}: {err}") from None

    def _read_embeddings(self) -> np.ndarray:
        path = self.path / "embeddings.npy"
        try:
            emb = np.load(path, allow_pickle=False)
        except (OSError, ValueError, EOFError) as err:
            raise IndexError_(f"corrupt or truncated embeddings file {path}: {err}") from None
        if emb.ndim != 2 or emb.shape != (len(self.clips), self.meta["embed_dim"]):
            raise IndexError_(f"{path}: shape {emb.shape} does not match {len(self.clips)} clips x "
                              f"{self.meta['embed_dim']} dims in clips.jsonl/meta.json (truncated write?)")
        return emb.astype(np.float32, copy=False)

    def __len__(self) -> int:
        return len(self.clips)

    def has_video(self, video: str) -> bool:
        return video in self.meta["videos"]

    def add_video(self, video: str, embeddings: np.ndarray, spans: list[tuple[float, float]], info: dict | None = None):
        """Append one video's clips ([n, D] embeddings, (start, end) seconds) and save."""
        embeddings = np.asarray(embeddings, dtype=np.float32)
        if embeddings.ndim != 2 or embeddings.shape[1] != self.meta["embed_dim"] or len(embeddings) != len(spans):
            raise ValueError(f"expected [{len(spans)}, {self.meta['embed_dim']}] embeddings for {video}, "
                             f"got {embeddings.shape}")
        self.embeddings = np.concatenate([self.embeddings, embeddings])
        self.clips += [{"video": video, "start": round(float(s), 3), "end": round(float(e), 3)} for s, e in spans]
        self.meta["videos"][video] = dict(info or {}, clips=len(spans))
        self._faiss = None
        self.save()

    def save(self) -> None:
        """Write every file atomically; meta.json last, so it never names clips that are not on disk."""
        self.path.mkdir(parents=True, exist_ok=True)
        with atomic_path(self.path / "embeddings.npy") as tmp:
            with open(tmp, "wb") as f:
                np.save(f, self.embeddings, allow_pickle=False)
        atomic_write_text(self.path / "clips.jsonl", "".join(json.dumps(c) + "\n" for c in self.clips))
        if len(self.clips):
            import faiss

            index = self.faiss()
            with atomic_path(self.path / "index.faiss") as tmp:
                faiss.write_index(index, str(tmp))
        atomic_write_json(self.path / "meta.json", dict(self.meta, num_clips=len(self.clips)))

    def faiss(self):
        """The FAISS index (read from ``index.faiss`` when it matches, else rebuilt from the embeddings)."""
        if self._faiss is not None:
            return self._faiss
        path = self.path / "index.faiss"
        if path.is_file():
            import faiss

            try:
                index = faiss.read_index(str(path))
            except RuntimeError as err:
                raise IndexError_(f"corrupt or truncated FAISS index {path}: {str(err).splitlines()[0]}") from None
            if index.ntotal == len(self.clips) and index.d == self.meta["embed_dim"] and \
                    _kind_of(index) == self.meta["kind"]:
                self._faiss = index
                return index
        self._faiss = build_faiss(self.embeddings, self.meta["kind"])
        return self._faiss

    def clip(self, i: int) -> dict:
        """Clip ``i`` as ``{video, start, end, id}`` (``IndexError`` when out of range)."""
        if not 0 <= int(i) < len(self.clips):
            raise IndexError(f"clip id {i} out of range: index {self.path} holds {len(self.clips)} clips")
        return dict(self.clips[int(i)], id=int(i))

    def embedding(self, i: int) -> np.ndarray:
        """The stored embedding of clip ``i``: [D] float32."""
        self.clip(i)
        return self.embeddings[int(i)]

    def video_info(self) -> dict[str, dict]:
        """Per video id: what ``index_library`` recorded (``path``, ``fps``, ``num_frames``, ``clips``, ...)."""
        return self.meta["videos"]

    def search(self, queries: np.ndarray, k: int = 5, videos: set[str] | None = None) -> list[list[dict]]:
        """Top-k clips per query ([Q, D] float32) -> per query a list of {video, start, end, score, id}.

        ``videos`` restricts the hits to those video ids (exact inner products over their clips).
        """
        if not len(self.clips):
            raise IndexError_(f"index {self.path} is empty")
        q = np.ascontiguousarray(queries, dtype=np.float32)
        if videos is None:
            scores, ids = self.faiss().search(q, min(k, len(self.clips)))
        else:
            ids, scores = self._search_subset(q, k, set(videos))
        return [[dict(self.clips[i], score=float(s), id=int(i)) for s, i in zip(srow, irow) if i >= 0]
                for srow, irow in zip(scores, ids)]

    def _search_subset(self, q: np.ndarray, k: int, videos: set[str]) -> tuple[np.ndarray, np.ndarray]:
        """Exact top-k over the clips of ``videos`` only: ([Q, k'] ids, [Q, k'] scores)."""
        cached = getattr(self, "_video_rows", None)
        if cached is None or cached[0] != len(self.clips):  # one pass over the clips, then per-video lookups
            by_video: dict[str, list[int]] = {}
            for i, c in enumerate(self.clips):
                by_video.setdefault(c["video"], []).append(i)
            cached = self._video_rows = (len(self.clips), {v: np.asarray(r) for v, r in by_video.items()})
        parts = [cached[1][v] for v in sorted(videos) if v in cached[1]]
        rows = np.sort(np.concatenate(parts)) if parts else np.zeros(0, np.int64)
        if not len(rows):
            return np.zeros((len(q), 0), np.int64), np.zeros((len(q), 0), np.float32)
        sims = q @ self.embeddings[rows].T
        k = min(k, len(rows))
        top = np.argsort(-sims, axis=1, kind="stable")[:, :k]
        return rows[top], np.take_along_axis(sims, top, axis=1)


def _kind_of(index) -> str:
    name = type(index).__name__
    return "ivf" if "IVF" in name else "hnsw" if "HNSW" in name else "flat"
