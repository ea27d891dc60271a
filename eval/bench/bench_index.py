"""Clip-index build time, search latency and recall@10 against exact search, on synthetic clustered
unit embeddings (like clip embeddings of long videos), at N stored clips.

Rows per size N (all timed in this one process; ratios are against the fastest exact search):
  exact-torch   matmul + topk (what ``ClipIndex`` uses for exact search)
  exact-faiss   FAISS IndexFlatIP
  ivf nprobe=P  FAISS IndexIVFFlat, nlist = ivf_nlist(N), for each P in --nprobes
  hnsw ef=E     FAISS IndexHNSWFlat (M=32), for each E in --efs (only with --hnsw; slow to build)
  ClipIndex     the shipped index, --kind auto, grown video by video (append cost per video, the
                search it chose and its recall)

    python eval/bench/bench_index.py --sizes 100000 1000000 --dim 256 --queries 200
"""
import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from results import Recorder, add_out_argument  # noqa: E402  (eval/bench/results.py)

RECORDER: Recorder | None = None  # set by main(): where row() appends


def synthetic(n, d, rng, clusters=1000):
    """[n, d] unit vectors around ``clusters`` random centres (noise 0.5 per coordinate)."""
    centres = rng.standard_normal((clusters, d)).astype(np.float32)
    x = centres[rng.integers(0, clusters, n)] + 0.5 * rng.standard_normal((n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def timed(fn, repeat=1):
    best, out = float("inf"), None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def row(n, name, build, per_q, recall, base):
    print(f"{n:8d} {name:>16s} {build:8.1f} {1000 * per_q:9.3f} {recall:9.3f} {base / per_q:8.1f}x", flush=True)
    if RECORDER is not None:
        RECORDER.add(f"{n} {name}", {"clips": n, "build_s": build, "ms_per_query": 1000 * per_q, "recall_at_10": recall,
                                     "speedup": base / per_q}, ratio=base / per_q,
                     ratio_of="fastest exact ms/query / this ms/query")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", nargs="+", type=int, default=[100_000, 1_000_000])
    ap.add_argument("--dim", type=int, default=256)
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--nprobes", nargs="+", type=int, default=[4, 8, 16, 32, 64])
    ap.add_argument("--hnsw", action="store_true", help="also build HNSW (minutes at 1M on 2 cores)")
    ap.add_argument("--efs", nargs="+", type=int, default=[64, 256, 1024])
    ap.add_argument("--clips-per-video", type=int, default=2000, help="shard size when growing a ClipIndex")
    ap.add_argument("--threads", type=int, default=2)
    add_out_argument(ap, __file__)
    args = ap.parse_args()
    global RECORDER
    RECORDER = Recorder(__file__, args.out)
    import faiss
    import torch

    from surgclip.evaluation.index import AUTO_IVF_MIN_CLIPS, ClipIndex, exact_search, ivf_nlist, recall_at_k

    faiss.omp_set_num_threads(args.threads)
    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    print(f"threads {args.threads}, dim {args.dim}, {args.queries} queries per search call, k=10; "
          f"ratio = fastest exact ms/query / this ms/query; auto switches to IVF at {AUTO_IVF_MIN_CLIPS} clips")
    print(f"{'N':>8s} {'index':>16s} {'build s':>8s} {'ms/query':>9s} {'recall@10':>9s} {'speed-up':>9s}")
    for n in args.sizes:
        x = synthetic(n, args.dim, rng)
        q = x[rng.integers(0, n, args.queries)] + 0.1 * rng.standard_normal((args.queries, args.dim)).astype(np.float32)
        q = (q / np.linalg.norm(q, axis=1, keepdims=True)).astype(np.float32)
        t_torch, (_, exact) = timed(lambda: exact_search(q, x, 10), repeat=2)
        flat = faiss.IndexFlatIP(args.dim)
        b_flat, _ = timed(lambda: flat.add(x))
        t_faiss, (_, got) = timed(lambda: flat.search(q, 10), repeat=2)
        base = min(t_torch, t_faiss) / args.queries
        row(n, "exact-torch", 0.0, t_torch / args.queries, 1.0, base)
        row(n, "exact-faiss", b_flat, t_faiss / args.queries, recall_at_k(got, exact), base)
        del flat
        nlist = ivf_nlist(n)
        ivf = faiss.IndexIVFFlat(faiss.IndexFlatIP(args.dim), args.dim, nlist, faiss.METRIC_INNER_PRODUCT)
        sample = x[np.sort(rng.choice(n, min(n, nlist * 64), replace=False))]
        b_ivf, _ = timed(lambda: (ivf.train(sample), ivf.add(x)))
        for p in args.nprobes:
            ivf.nprobe = p
            t, (_, got) = timed(lambda: ivf.search(q, 10), repeat=2)
            row(n, f"ivf{nlist} np={p}", b_ivf, t / args.queries, recall_at_k(got, exact), base)
        del ivf
        if args.hnsw:
            hnsw = faiss.IndexHNSWFlat(args.dim, 32, faiss.METRIC_INNER_PRODUCT)
            b_h, _ = timed(lambda: hnsw.add(x))
            for ef in args.efs:
                hnsw.hnsw.efSearch = ef
                t, (_, got) = timed(lambda: hnsw.search(q, 10), repeat=2)
                row(n, f"hnsw ef={ef}", b_h, t / args.queries, recall_at_k(got, exact), base)
            del hnsw
        # the shipped index, grown one "video" (shard) at a time
        tmp = Path(tempfile.mkdtemp(prefix="bench_index_"))
        try:
            fp = {"model": "synthetic", "config_hash": "0" * 16, "embed_dim": args.dim, "weights_hash": "0" * 64}
            index = ClipIndex(tmp / "ix", fingerprint=fp, kind="auto")
            step = args.clips_per_video
            adds, train_s = [], 0.0
            t_all = time.perf_counter()
            for lo in range(0, n, step):
                spans = [(float(i), float(i) + 4) for i in range(min(step, n - lo))]
                trained = index.meta["ivf"]
                t0 = time.perf_counter()
                index.add_video(f"v{lo // step:05d}", x[lo:lo + step], spans)
                dt = time.perf_counter() - t0
                if index.meta["ivf"] is not trained:
                    train_s += dt
                else:
                    adds.append(dt)
            build = time.perf_counter() - t_all
            reopened = ClipIndex(tmp / "ix")
            t_open, _ = timed(lambda: reopened.search(q[:1], 10))
            t, hits = timed(lambda: reopened.search(q, 10), repeat=2)
            got = np.array([[h["id"] for h in r] for r in hits])
            kind = reopened.active_kind()
            if kind == "ivf":
                kind = f"auto:ivf np={reopened.meta['ivf']['nprobe']}"
            else:
                kind = "auto:exact"
            row(n, kind, build, t / args.queries, recall_at_k(got, exact), base)
            first, last = np.median(adds[:5]), np.median(adds[-5:])
            print(f"{n:8d} ClipIndex: {len(adds) + (train_s > 0)} videos of {step} clips; append {1000 * first:.1f} ms "
                  f"(first 5) vs {1000 * last:.1f} ms (last 5) per video; IVF training {train_s:.1f} s in total; "
                  f"open + first search {t_open:.1f} s", flush=True)
            RECORDER.add(f"{n} ClipIndex appends", {
                "clips": n, "videos": len(adds) + (train_s > 0), "clips_per_video": step, "append_first5_ms": 1000 * first,
                "append_last5_ms": 1000 * last, "ivf_training_s": train_s, "open_first_search_s": t_open})
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        del x


if __name__ == "__main__":
    main()
