"""Clip-index benches on synthetic clustered unit embeddings (like clip embeddings of long videos).

Default (archive scale): for each N in --sizes, a ``ClipIndex`` is grown video by video through
``ClipIndex.add_video`` with ``kind="auto"`` (the code path of ``surgclip index``), each video's
embeddings generated on the fly (never all in RAM; the shards are the only copy on disk). Exact
neighbours of the queries come from a streaming scan of the shards (``ClipIndex.exact_scan``).
Each kind is then searched by a fresh process (one query at a time), which reports its latency,
recall@10 and RSS. One results row per (size, kind), figures ``size, kind, chosen, build_s,
disk_bytes, rss_mb, p50_ms, p95_ms, recall_at_10`` (``chosen``: the kind ``auto`` picked; the
``exact`` row is searched only where the floats fit in --exact-max-gb)::

    python eval/bench/bench_index.py --sizes 1000000,5000000,18000000 --dim 256 --out FILE

``--compare`` runs the older in-RAM comparison instead (rows per FAISS structure: exact-torch,
exact-faiss, IVF-Flat per nprobe, HNSW per efSearch with --hnsw, then ClipIndex grown by videos)::

    python eval/bench/bench_index.py --compare --sizes 100000 1000000 --dim 256 --queries 200
"""
import argparse
import json
import os
import shutil
import subprocess
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


def sizes(values) -> list[int]:
    """--sizes as given: space- and/or comma-separated integers."""
    return [int(v) for part in values for v in str(part).split(",") if v.strip()]


def video_embeddings(v: int, per: int, centres: np.ndarray, seed: int) -> np.ndarray:
    """[per, d] unit vectors of synthetic video ``v``: ``synthetic``'s clusters, seeded by (seed, v)."""
    rng = np.random.default_rng([seed, v])
    d = centres.shape[1]
    x = centres[rng.integers(0, len(centres), per)] + 0.5 * rng.standard_normal((per, d)).astype(np.float32)
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def dir_bytes(path: Path, suffixes=None) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file() and
               (suffixes is None or "".join(f.suffixes[-1:]) in suffixes and ".pq" not in f.name and ".ivf" not in f.name))


def proc_status() -> dict:
    """VmRSS, VmHWM and RssAnon of this process in MB."""
    out = {}
    with open("/proc/self/status") as f:
        for line in f:
            key, _, val = line.partition(":")
            if key in ("VmRSS", "VmHWM", "RssAnon", "RssFile"):
                out[key] = int(val.split()[0]) / 1024
    return out


def search_worker(args) -> None:
    """Open the index fresh, search each query alone, print one JSON line (latency, recall, RSS)."""
    import faiss

    from surgclip.evaluation.index import ClipIndex, recall_at_k

    faiss.omp_set_num_threads(args.threads)
    q = np.load(args.worker[2])
    exact = np.load(args.worker[3])
    t0 = time.perf_counter()
    index = ClipIndex(args.worker[0], kind=None if args.worker[1] == "auto" else args.worker[1])
    index.search(q[:1], 10)  # opening: codes (or floats) read and checked
    open_s = time.perf_counter() - t0
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(args.threads)
    times, got = [], []
    for i in range(len(q)):
        t = time.perf_counter()
        hits = index.search(q[i:i + 1], 10)[0]
        times.append(time.perf_counter() - t)
        got.append([h["id"] for h in hits])
    st = proc_status()
    print(json.dumps({"kind": index.active_kind(), "open_s": open_s, "p50_ms": 1000 * float(np.percentile(times, 50)),
                      "p95_ms": 1000 * float(np.percentile(times, 95)), "recall_at_10": recall_at_k(np.array(got), exact),
                      "rss_mb": st.get("VmRSS"), "peak_rss_mb": st.get("VmHWM"), "rss_anon_mb": st.get("RssAnon"),
                      "rss_file_mb": st.get("RssFile")}), flush=True)


def archive(args) -> None:
    """The archive-scale bench (see the module docstring)."""
    import faiss
    import torch

    from surgclip.evaluation.index import AUTO_IVF_MIN_CLIPS, AUTO_PQ_MIN_CLIPS, ClipIndex

    faiss.omp_set_num_threads(args.threads)
    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(args.seed)
    centres = rng.standard_normal((1000, args.dim)).astype(np.float32)
    print(f"threads {args.threads}, dim {args.dim}, {args.queries} single queries, k=10; auto: exact below "
          f"{AUTO_IVF_MIN_CLIPS}, IVF below {AUTO_PQ_MIN_CLIPS}, IVF-PQ + exact re-rank above", flush=True)
    work = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="bench_index_"))
    fp = {"model": "synthetic", "config_hash": "0" * 16, "embed_dim": args.dim, "weights_hash": "0" * 64}
    for n in sizes(args.sizes):
        ix = work / f"ix-{n}"
        reuse = args.recalibrate and (ix / "manifest.json").is_file()
        if not reuse:
            shutil.rmtree(ix, ignore_errors=True)
        try:
            index = ClipIndex(ix, fingerprint=fp, kind="auto")
            per, t0, train_s = args.clips_per_video, time.perf_counter(), []
            if reuse:  # an index this bench built before (--keep): calibrated again by this version's code
                if len(index) != n:
                    raise SystemExit(f"{ix} holds {len(index)} clips, not {n}")
                index._recalibrate_pq(args.seed)
                index.save()
                train_s.append(round(time.perf_counter() - t0, 1))
                print(f"  re-calibrated {ix} in {train_s[-1]} s: {index.meta['pq']}", flush=True)
            for v, lo in enumerate(range(0, 0 if reuse else n, per)):
                m = min(per, n - lo)
                before = (index.meta["ivf"], index.meta["pq"])
                t = time.perf_counter()
                index.add_video(f"v{v:06d}", video_embeddings(v, m, centres, args.seed),
                                [(2.0 * i, 2.0 * i + 4) for i in range(m)])
                if (index.meta["ivf"], index.meta["pq"]) != before:
                    train_s.append(round(time.perf_counter() - t, 1))
                    print(f"  {lo + m} clips: trained {index.active_kind()} in {train_s[-1]} s "
                          f"({index.meta['pq'] or index.meta['ivf']})", flush=True)
            build_s = None if reuse else time.perf_counter() - t0
            chosen = index.active_kind()
            del index
            reader = ClipIndex(ix)
            qids = np.sort(rng.choice(n, args.queries, replace=False))
            q = reader.gather(qids) + 0.1 * rng.standard_normal((args.queries, args.dim)).astype(np.float32)
            q = (q / np.linalg.norm(q, axis=1, keepdims=True)).astype(np.float32)
            t = time.perf_counter()
            _, exact = reader.exact_scan(q, 10)
            scan_s = time.perf_counter() - t
            del reader
            np.save(work / "q.npy", q)
            np.save(work / "exact.npy", exact)
            print(f"{n}: built in {build_s} s (trainings {train_s} s), auto chose {chosen}; exact streaming "
                  f"scan of {args.queries} queries {scan_s:.1f} s", flush=True)
            kinds = ["exact"] if n * args.dim * 4 <= args.exact_max_gb * 2 ** 30 else []
            if chosen != "exact":
                kinds.append("auto")
            for kind in kinds:
                out = subprocess.run([sys.executable, __file__, "--worker", str(ix), kind, str(work / "q.npy"),
                                      str(work / "exact.npy"), "--threads", str(args.threads)],
                                     capture_output=True, text=True)
                if out.returncode:
                    raise RuntimeError(f"search worker ({kind}) failed: {out.stderr[-2000:]}")
                res = json.loads(out.stdout.strip().splitlines()[-1])
                name = res.pop("kind")
                disk = dir_bytes(ix) if name != "exact" else dir_bytes(ix, {".npy", ".jsonl"}) + \
                    (ix / "manifest.json").stat().st_size
                figures = {"size": n, "kind": name, "chosen": name == chosen, "build_s": build_s,
                           "disk_bytes": disk, **res}
                if name != "exact":
                    meta = json.loads((ix / "manifest.json").read_text())[name if name in ("ivf", "pq") else "ivf"]
                    figures.update(nprobe=meta["nprobe"], rerank=meta.get("rerank"), trainings_s=train_s)
                else:
                    figures["scan_s_all_queries"] = scan_s
                print(json.dumps(figures), flush=True)
                RECORDER.add(f"{n} {name}", figures, size=n, kind=name, chosen=name == chosen)
        finally:
            if not args.keep:
                shutil.rmtree(ix, ignore_errors=True)
    if not args.workdir:
        shutil.rmtree(work, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", nargs="+", default=["100000", "1000000"],
                    help="clip counts, space- or comma-separated")
    ap.add_argument("--compare", action="store_true", help="the in-RAM comparison of FAISS structures")
    ap.add_argument("--workdir", default=None, help="archive mode: where indexes are built (default: a temp dir)")
    ap.add_argument("--keep", action="store_true", help="archive mode: keep the built index (workdir/ix-N)")
    ap.add_argument("--exact-max-gb", type=float, default=6.0,
                    help="archive mode: search the exact kind only where N x dim x 4 bytes fits this")
    ap.add_argument("--recalibrate", action="store_true",
                    help="archive mode: reuse workdir/ix-N kept by an earlier run (--keep), re-calibrate it (nprobe, "
                         "re-rank depth) with this version's code instead of building it; build_s is then null")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--worker", nargs=4, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--dim", type=int, default=256)
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--nprobes", nargs="+", type=int, default=[4, 8, 16, 32, 64])
    ap.add_argument("--hnsw", action="store_true", help="also build HNSW (minutes at 1M on 2 cores)")
    ap.add_argument("--efs", nargs="+", type=int, default=[64, 256, 1024])
    ap.add_argument("--clips-per-video", type=int, default=2000, help="shard size when growing a ClipIndex")
    ap.add_argument("--threads", type=int, default=2)
    add_out_argument(ap, __file__)
    args = ap.parse_args()
    if args.worker:
        return search_worker(args)
    global RECORDER
    RECORDER = Recorder(__file__, args.out)
    if not args.compare:
        return archive(args)
    import faiss
    import torch

    from surgclip.evaluation.index import AUTO_IVF_MIN_CLIPS, ClipIndex, exact_search, ivf_nlist, recall_at_k

    faiss.omp_set_num_threads(args.threads)
    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    print(f"threads {args.threads}, dim {args.dim}, {args.queries} queries per search call, k=10; "
          f"ratio = fastest exact ms/query / this ms/query; auto switches to IVF at {AUTO_IVF_MIN_CLIPS} clips")
    print(f"{'N':>8s} {'index':>16s} {'build s':>8s} {'ms/query':>9s} {'recall@10':>9s} {'speed-up':>9s}")
    for n in sizes(args.sizes):
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
