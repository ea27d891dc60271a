"""The search engine behind ``surgclip serve``: one model and one clip index, loaded once.

Queries are checked here (length, k, clip id, video filter) so that the web layer only maps
``QueryError`` to a 4xx JSON error and the page shows its message.
"""
from __future__ import annotations

import threading
import time
from collections import OrderedDict
from pathlib import Path

import numpy as np

MAX_QUERY_CHARS = 300  # a caption-length query; longer text is truncated by the tokenizer anyway
MAX_K = 100
DEFAULT_K = 12


class QueryError(ValueError):
    """Bad input to a query; ``status`` is the HTTP status the API answers with."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


class ServeError(RuntimeError):
    """The server cannot answer queries (index missing/corrupt, or built by another model)."""


class LRU:
    """A small thread-safe least-recently-used cache (key -> value), at most ``size`` entries."""

    def __init__(self, size: int):
        self.size, self._data, self._lock = size, OrderedDict(), threading.Lock()

    def get(self, key):
        with self._lock:
            if key in self._data:
                self._data.move_to_end(key)
                return self._data[key]
        return None

    def put(self, key, value) -> None:
        with self._lock:
            self._data[key] = value
            self._data.move_to_end(key)
            while len(self._data) > self.size:
                self._data.popitem(last=False)

    def __len__(self) -> int:
        return len(self._data)


def parse_k(k, max_k: int = MAX_K) -> int:
    """``k`` from a query string: an integer in ``[1, max_k]`` (``QueryError`` otherwise)."""
    try:
        value = int(str(k).strip())
    except ValueError:
        raise QueryError(f"k must be an integer between 1 and {max_k}, got {str(k)[:20]!r}") from None
    if not 1 <= value <= max_k:
        raise QueryError(f"k must be between 1 and {max_k}, got {value}")
    return value


class SearchEngine:
    """Text-to-clip and clip-to-clip search over one ``ClipIndex`` with one loaded model.

    Args:
        model: a surgclip model in eval mode (the one the index was built with).
        tokenizer: its tokenizer.
        index: an open ``ClipIndex``.
        model_source: the name/path the model was loaded from (shown on the page).
        max_k, max_query_chars: input bounds.
        cache_size: text queries whose embeddings are kept.
    """

    def __init__(self, model, tokenizer, index, model_source: str, max_k: int = MAX_K,
                 max_query_chars: int = MAX_QUERY_CHARS, cache_size: int = 1024):
        self.model, self.tokenizer, self.index = model, tokenizer, index
        model.prepare_for_inference()  # the engine's own model from now on: eval mode, inference rewrites
        self.model_source, self.max_k, self.max_query_chars = str(model_source), max_k, max_query_chars
        self._text_cache = LRU(cache_size)
        self._lock = threading.Lock()  # one forward pass at a time: the threadpool must not oversubscribe 2 cores
        self.videos = index.video_info()

    def describe(self) -> dict:
        """Which model and index answer, the index's search kind (exact | ivf | pq), and how many
        clips/videos it holds."""
        return {"model": self.model_source, "model_name": self.model.name, "index": str(self.index.path),
                "index_kind": self.index.active_kind(), "num_clips": len(self.index), "num_videos": len(self.videos)}

    def check_query(self, q) -> str:
        """The stripped query text (``QueryError`` when empty or too long)."""
        text = (q or "").strip()
        if not text:
            raise QueryError("empty query: type what you are looking for, e.g. 'clipping of the cystic duct'")
        if len(text) > self.max_query_chars:
            raise QueryError(f"query too long: {len(text)} characters, at most {self.max_query_chars}")
        return text

    def check_videos(self, videos) -> set[str] | None:
        """The video filter as a set of known ids (None = all videos)."""
        videos = [v for v in (videos or []) if v]
        if not videos:
            return None
        unknown = [v for v in videos if v not in self.videos]
        if unknown:
            raise QueryError(f"unknown video {unknown[0][:80]!r}: the index holds {len(self.videos)} videos "
                             f"(see /api/videos)")
        return set(videos)

    def check_clip_id(self, clip_id) -> int:
        """A clip id from a query string (``QueryError`` 400 if not an integer, 404 if not in the index)."""
        try:
            i = int(str(clip_id).strip())
        except ValueError:
            raise QueryError(f"clip id must be an integer, got {str(clip_id)[:20]!r}") from None
        if not 0 <= i < len(self.index):
            raise QueryError(f"unknown clip id {i}: the index holds clips 0..{len(self.index) - 1}", status=404)
        return i

    def encode_text(self, text: str) -> np.ndarray:
        """[D] float32 embedding of one query (cached by text)."""
        emb = self._text_cache.get(text)
        if emb is None:
            import torch

            from ..tokenizer import tokenize

            with self._lock, torch.inference_mode():
                device = next(self.model.parameters()).device
                tokens = tokenize([text], self.tokenizer, device=device,
                                  max_length=getattr(self.tokenizer, "context_length", 77))
                emb = self.model.encode_text(tokens).float().cpu().numpy()[0]
            self._text_cache.put(text, emb)
        return emb

    def search(self, q, k=DEFAULT_K, videos=None) -> dict:
        """Top-k clips for a text query -> ``{"query", "k", "hits": [...], "took_ms", ...describe()}``."""
        t0 = time.perf_counter()
        text, k, subset = self.check_query(q), parse_k(k, self.max_k), self.check_videos(videos)
        hits = self.index.search(self.encode_text(text)[None], k, videos=subset)[0]
        return self._answer(hits, t0, query=text, k=k)

    def similar(self, clip_id, k=DEFAULT_K, videos=None) -> dict:
        """Top-k clips closest to a stored clip's embedding ("more like this"), the clip itself left out."""
        t0 = time.perf_counter()
        i, k, subset = self.check_clip_id(clip_id), parse_k(k, self.max_k), self.check_videos(videos)
        hits = self.index.search(self.index.embedding(i)[None], k + 1, videos=subset)[0]
        hits = [h for h in hits if h["id"] != i][:k]
        return self._answer(hits, t0, similar_to=self.index.clip(i), k=k)

    def _answer(self, hits: list[dict], t0: float, **extra) -> dict:
        exists = {}
        for h in hits:  # a source deleted since indexing is flagged, not hidden: the page says why it cannot play
            v = h["video"]
            if v not in exists:
                exists[v] = Path(self.videos[v].get("path", "")).exists()
            h["available"] = exists[v]
        return dict(extra, hits=hits, took_ms=round(1000 * (time.perf_counter() - t0), 2), **self.describe())


def load_engine(index_dir, model: str | None = None, device: str = "cpu", precision: str = "fp32",
                **kwargs) -> SearchEngine:
    """Open the index at ``index_dir`` and load its model once (``model`` overrides the recorded one).

    Raises:
        ServeError: the index is missing or corrupt, or was built by a model other than ``model``.
    """
    import surgclip

    from ..evaluation.index import ClipIndex, IndexError_, model_fingerprint

    try:
        recorded = ClipIndex(index_dir)
    except IndexError_ as err:
        raise ServeError(str(err)) from None
    source = model or recorded.meta.get("model_source") or recorded.meta["model"]
    try:
        loaded, _, tokenizer = surgclip.load(source, device=device, precision=precision)
    except (OSError, ValueError) as err:  # missing/offline weights, a wrong or damaged file
        raise ServeError(f"cannot load the model {source!r}{'' if model else ' recorded in the index'}: {err}; "
                         f"pass the model that built the index with --model") from None
    try:  # reopen with the fingerprint: the index refuses a model other than the one that built it
        index = ClipIndex(index_dir, fingerprint=model_fingerprint(loaded))
    except IndexError_ as err:
        raise ServeError(str(err)) from None
    if not len(index):
        raise ServeError(f"index {index_dir} holds no clips; add videos with `surgclip index VIDEOS --index {index_dir}`")
    engine = SearchEngine(loaded, tokenizer, index, source, **kwargs)
    # the first forward pass is slow (lazy init) and the first search reads and checks the stored
    # embeddings: pay both at start, not on the first query
    engine.search("warm up", k=1)
    return engine
