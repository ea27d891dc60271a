"""The compressed part of a ``ClipIndex``: FAISS IVF-PQ codes searched in memory, re-ranked exactly.

Variant: ``faiss.IndexIVFPQ`` (inner product, residuals encoded, 8-bit codes, ``pq_m(D)`` bytes per
clip: D/4 sub-vectors of 4 dims, 64 bytes at 256-d), without OPQ. The PQ scores only choose a short list of
``rerank`` candidates; their final order and scores come from the float embeddings memory-mapped
from the shards, so the PQ error costs re-rank depth, not accuracy. OPQ's learned rotation would
shorten that list at the price of a D x D rotation trained by alternating optimisation at every
(re)training and an ``IndexPreTransform`` around the codes; plain PQ reaches the recall target
with a short list on clip embeddings (``eval/bench/bench_index.py``), so it is not used. 4-dim
sub-vectors rather than FAISS's usual 8: on the bench's clustered 256-d embeddings at 1 M clips,
64-byte codes reach recall@10 0.99 after re-ranking 160 candidates where 32-byte codes need 640,
and each re-ranked candidate is a random read of a memory-mapped row (18 M x 72 bytes of codes and
ids still fit 2 GB).

Coarse assignment (the nearest of ``nlist`` centroids by inner product) is a torch matmul, then
``IndexIVFPQ.encode_vectors`` writes the codes for those lists: the same result as
``sa_encode``, whose FAISS flat search is the slower of the two on CPU. ``nlist`` stops growing at
``PQ_MAX_LISTS``: each added clip costs ``nlist x D`` multiply-adds to assign, and past that size
the index is re-calibrated (nprobe, re-rank depth) at the growth points instead of re-encoded.

Storage (per quantizer generation ``g``): ``pq-g.faiss`` is the trained, empty IndexIVFPQ (coarse
centroids + PQ codebooks); ``shards/<id>.pqg.npy`` holds a shard's clips in FAISS's standalone
code format (``index.sa_encode``): per clip ``coarse_code_size()`` little-endian bytes of its
inverted list, then ``code_size`` PQ bytes. A searcher loads these codes into the inverted
lists (no encoding, no clustering) and holds only codes, ids and the quantizer in memory.
"""
from __future__ import annotations

import math

import numpy as np

PQ_NBITS = 8  # 256 centroids per sub-quantizer: FAISS's fast table-lookup path
PQ_SUBDIM = 4  # dims per sub-vector: 256-d -> 64-byte codes (18 M clips -> 1.15 GB of codes)
PQ_MAX_LISTS = 1024  # at 18 M clips ~17.6k codes per list: nprobe 8 scans ~140k codes (a few ms)
PQ_KMEANS_ITERS = 10  # coarse k-means iterations (FAISS default 25): lists only need to partition
PQ_MIN_CLIPS = 10_000  # FAISS's k-means wants >= 39 training points per centroid; each sub-quantizer has 256
PQ_TRAIN_PER_LIST = 64  # training sample: this many clips per inverted list (and at least PQ_MIN_CLIPS)
RERANK_DEPTHS = (10, 20, 40, 80, 160, 320, 640, 1280)  # candidate list lengths tried by calibration


def pq_m(d: int) -> int:
    """Sub-quantizers for dimension ``d``: the largest divisor of ``d`` not above ``d / PQ_SUBDIM`` (>= 1)."""
    target = max(1, d // PQ_SUBDIM)
    return max(m for m in range(1, target + 1) if d % m == 0)


SCAN_NS_PER_CODE_BYTE = 0.5  # FAISS's table look-up scan of one code byte (2 cores, AVX2)
RERANK_NS_PER_ROW = 20_000  # one re-ranked candidate: a random row of a memory-mapped shard (page-cache miss)


def query_cost(nprobe: int, codes_per_list: float, depth: int, code_bytes: int) -> float:
    """Rough nanoseconds of one query: codes scanned in ``nprobe`` lists plus ``depth`` rows re-read.
    Calibration weighs the two with it; latencies are measured by ``eval/bench/bench_index.py``."""
    return nprobe * codes_per_list * code_bytes * SCAN_NS_PER_CODE_BYTE + depth * RERANK_NS_PER_ROW


def ivf_nlist(n: int) -> int:
    """Number of IVF lists for ``n`` vectors: the power of two nearest sqrt(n), in [16, 4096]."""
    return int(min(4096, max(16, 2 ** round(math.log2(max(1.0, math.sqrt(n)))))))


def pq_nlist(n: int) -> int:
    """Inverted lists of an IVF-PQ index over ``n`` clips: ``ivf_nlist(n)`` capped at ``PQ_MAX_LISTS``."""
    return min(PQ_MAX_LISTS, ivf_nlist(n))


def encode(index, x: np.ndarray, centroids: np.ndarray, block: int = 16384) -> np.ndarray:
    """[n, sa_code_size] uint8 standalone codes of [n, D] float32 vectors (``index.sa_encode``'s format).

    ``centroids``: [nlist, D] the coarse centroids (``index.quantizer.reconstruct_n(0, nlist)``).
    """
    import faiss
    import torch

    x = np.ascontiguousarray(x, dtype=np.float32)
    codes = np.empty((len(x), index.sa_code_size()), np.uint8)
    c = torch.from_numpy(np.ascontiguousarray(centroids, dtype=np.float32))
    for a in range(0, len(x), block):
        xb = x[a:a + block]
        lists = np.ascontiguousarray((torch.from_numpy(xb) @ c.T).argmax(1).numpy().astype(np.int64))
        out = np.empty((len(xb), codes.shape[1]), np.uint8)
        index.encode_vectors(len(xb), faiss.swig_ptr(xb), faiss.swig_ptr(lists), faiss.swig_ptr(out), True)
        codes[a:a + len(xb)] = out
    return codes


def new_index(d: int, nlist: int, seed: int = 0):
    """An untrained IndexIVFPQ (inner product) with ``nlist`` lists and ``pq_m(d)`` 8-bit sub-quantizers."""
    import faiss

    index = faiss.IndexIVFPQ(faiss.IndexFlatIP(d), d, nlist, pq_m(d), PQ_NBITS, faiss.METRIC_INNER_PRODUCT)
    index.cp.seed = seed
    index.cp.niter = PQ_KMEANS_ITERS
    index.pq.cp.seed = seed
    index.pq.cp.niter = PQ_KMEANS_ITERS
    index.pq.cp.max_points_per_centroid = 64  # 16k points per sub-quantizer's k-means
    index.do_polysemous_training = False  # codes are compared by table look-up only; it costs minutes at 64 sub-quantizers
    return index


def train(index, sample: np.ndarray) -> None:
    """Train ``index`` (coarse k-means, then PQ codebooks on the residuals) on [n, D] float32 ``sample``.

    One OpenMP thread: FAISS's k-means on 4-dim sub-vectors runs slower with two than with one.
    """
    import faiss

    threads = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    try:
        index.train(np.ascontiguousarray(sample, dtype=np.float32))
    finally:
        faiss.omp_set_num_threads(threads)


def list_numbers(codes: np.ndarray, coarse_size: int) -> np.ndarray:
    """[n] int64 inverted list of each standalone code (its first ``coarse_size`` bytes, little-endian)."""
    lists = np.zeros(len(codes), np.int64)
    for b in range(coarse_size):
        lists |= codes[:, b].astype(np.int64) << (8 * b)
    return lists


def add_codes(index, codes: np.ndarray, ids: np.ndarray) -> None:
    """Append standalone codes ([n, sa_code_size] uint8) with their ids ([n] int64) to the inverted lists.

    The caller has checked that every list number is below ``index.nlist``.
    """
    import faiss

    cs = index.coarse_code_size()
    lists = list_numbers(codes, cs)
    order = np.argsort(lists, kind="stable")
    # named contiguous arrays: add_entries reads raw pointers
    sorted_codes = np.ascontiguousarray(codes[order, cs:])
    sorted_ids = np.ascontiguousarray(ids[order], dtype=np.int64)
    sorted_lists = lists[order]
    bounds = np.searchsorted(sorted_lists, np.arange(index.nlist + 1))
    for lst in np.flatnonzero(np.diff(bounds)):
        a, b = int(bounds[lst]), int(bounds[lst + 1])
        index.invlists.add_entries(int(lst), b - a, faiss.swig_ptr(sorted_ids[a:b]), faiss.swig_ptr(sorted_codes[a:b]))
    index.ntotal += len(codes)


def place_codes(index, codes: np.ndarray, ids: np.ndarray, fill: np.ndarray) -> None:
    """Write standalone codes into inverted lists already sized by ``invlists.resize`` (no growth, so
    no reallocation: the lists take their final size once). ``fill[l]`` is the next free slot of
    list ``l`` and is advanced."""
    import faiss

    cs = index.coarse_code_size()
    lists = list_numbers(codes, cs)
    order = np.argsort(lists, kind="stable")
    sorted_codes = np.ascontiguousarray(codes[order, cs:])
    sorted_ids = np.ascontiguousarray(ids[order], dtype=np.int64)
    bounds = np.searchsorted(lists[order], np.arange(index.nlist + 1))
    for lst in np.flatnonzero(np.diff(bounds)):
        a, b = int(bounds[lst]), int(bounds[lst + 1])
        index.invlists.update_entries(int(lst), int(fill[lst]), b - a, faiss.swig_ptr(sorted_ids[a:b]),
                                      faiss.swig_ptr(sorted_codes[a:b]))
        fill[lst] += b - a


def rerank(queries: np.ndarray, cand: np.ndarray, gather, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact re-ranking of candidate lists.

    Args:
        queries: [Q, D] float32. cand: [Q, R] int64 candidate ids (-1 = none).
        gather: ``ids -> [len(ids), D] float32`` the stored embeddings of those ids.
        k: hits per query.
    Returns:
        (scores [Q, k] float32, ids [Q, k] int64), best first; -1 ids (score -inf) where a query had
        fewer than ``k`` candidates.
    """
    Q = len(queries)
    out_s = np.full((Q, k), -np.inf, np.float32)
    out_i = np.full((Q, k), -1, np.int64)
    valid = cand >= 0
    flat = np.unique(cand[valid])
    if not flat.size:
        return out_s, out_i
    vec = gather(flat)
    for qi in range(Q):
        ids = cand[qi][valid[qi]]
        if not ids.size:
            continue
        s = vec[np.searchsorted(flat, ids)] @ queries[qi]
        top = np.argsort(-s, kind="stable")[:k]
        out_s[qi, :len(top)], out_i[qi, :len(top)] = s[top], ids[top]
    return out_s, out_i
