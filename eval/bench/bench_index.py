"""Search latency and recall@10 of FAISS index types against exact brute-force ``torch.topk``.

Synthetic unit embeddings (clustered, like clip embeddings of long videos) at N stored clips.

    python eval/bench/bench_index.py --sizes 100000 1000000 --dim 256 --queries 200
"""
import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))


def synthetic(n, d, rng, clusters=1000):
    centres = rng.standard_normal((clusters, d)).astype(np.float32)
    x = centres[rng.integers(0, clusters, n)] + 0.5 * rng.standard_normal((n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", nargs="+", type=int, default=[100_000, 1_000_000])
    ap.add_argument("--dim", type=int, default=256)
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--kinds", nargs="+", default=["flat", "ivf", "hnsw"])
    args = ap.parse_args()
    import faiss

    from surgclip.evaluation.index import build_faiss, recall_at_k

    faiss.omp_set_num_threads(2)
    torch.set_num_threads(2)
    rng = np.random.default_rng(0)
    print(f"{'N':>8s} {'index':>6s} {'build s':>8s} {'ms/query':>9s} {'recall@10':>9s}")
    for n in args.sizes:
        x = synthetic(n, args.dim, rng)
        q = x[rng.integers(0, n, args.queries)] + 0.1 * rng.standard_normal((args.queries, args.dim)).astype(np.float32)
        q /= np.linalg.norm(q, axis=1, keepdims=True)
        xt, qt = torch.from_numpy(x), torch.from_numpy(q)
        t0 = time.perf_counter()
        exact = torch.cat([torch.topk(qb @ xt.T, 10, dim=1).indices for qb in qt.split(50)]).numpy()
        tt = (time.perf_counter() - t0) / args.queries
        print(f"{n:8d} {'topk':>6s} {0.0:8.1f} {1000 * tt:9.3f} {1.0:9.3f}", flush=True)
        for kind in args.kinds:
            t0 = time.perf_counter()
            index = build_faiss(x, kind)
            build = time.perf_counter() - t0
            t0 = time.perf_counter()
            _, got = index.search(q, 10)
            per_q = (time.perf_counter() - t0) / args.queries
            print(f"{n:8d} {kind:>6s} {build:8.1f} {1000 * per_q:9.3f} {recall_at_k(got, exact):9.3f}", flush=True)
        del x, xt


if __name__ == "__main__":
    main()
