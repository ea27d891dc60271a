"""Query latency of ``surgclip serve`` over HTTP on a synthetic 100k-clip index, against the same
search run in-process (the baseline, measured in the same command), plus thumbnail cold vs cached.

The index holds seeded clustered unit vectors stored under the ``tiny`` model's fingerprint; every
video points at one short synthetic H.264 file (for thumbnails). The server runs as a subprocess
on 127.0.0.1 and is stopped at the end.

    python eval/bench/bench_serve.py --clips 100000 --queries 200
"""
import argparse
import http.client
import json
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from results import Recorder, add_out_argument  # noqa: E402  (eval/bench/results.py)

WORDS = ["grasper", "hook", "clipper", "scissors", "cystic", "duct", "artery", "gallbladder", "liver", "bleeding",
         "dissection", "clipping", "cutting", "retraction", "irrigation", "suction", "specimen", "bag", "trocar",
         "coagulation", "calot", "triangle", "fundus", "bed", "peritoneum"]


def write_video(path: Path, seconds: int = 60, fps: int = 5, size: int = 96) -> None:
    import av

    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=fps)
        s.width = s.height = size
        s.pix_fmt = "yuv420p"
        for i in range(seconds * fps):
            img = np.zeros((size, size, 3), np.uint8)
            img[..., 0] = (i * 3) % 256
            img[:, : (i % size)] = 200
            for p in s.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)


def build_index(root: Path, n: int, videos: int, model) -> Path:
    from surgclip.evaluation.index import ClipIndex, model_fingerprint

    write_video(root / "clip.mp4")
    index = ClipIndex(root / "index", fingerprint=model_fingerprint(model))
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((500, model.embed_dim)).astype(np.float32)
    per = n // videos
    for v in range(videos):
        x = centres[rng.integers(0, len(centres), per)] + 0.5 * rng.standard_normal((per, model.embed_dim)).astype(np.float32)
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        spans = [(float(2 * (j % 28)), float(2 * (j % 28) + 4)) for j in range(per)]
        index.add_video(f"v{v:03d}", x, spans, {"path": str(root / "clip.mp4"), "fps": 5.0})
    return root / "index"


def stats(ms: list[float]) -> str:
    a = np.asarray(ms)
    return f"median {np.median(a):7.2f} ms  p95 {np.percentile(a, 95):7.2f} ms  (n={len(a)})"


def figures(ms: list[float]) -> dict:
    """What ``stats`` prints, as numbers."""
    a = np.asarray(ms)
    return {"median_ms": float(np.median(a)), "p95_ms": float(np.percentile(a, 95)), "n": len(a)}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--clips", type=int, default=100_000)
    ap.add_argument("--videos", type=int, default=20)
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("-k", type=int, default=12)
    ap.add_argument("--thumbs", type=int, default=20)
    add_out_argument(ap, __file__)
    args = ap.parse_args()
    import torch

    import surgclip
    from surgclip.evaluation.index import ClipIndex, model_fingerprint
    from surgclip.serve.engine import SearchEngine

    torch.set_num_threads(2)
    rng = np.random.default_rng(1)
    queries = list(dict.fromkeys(" ".join(rng.choice(WORDS, 4)) for _ in range(args.queries * 2)))[: args.queries]
    model, _, tokenizer = surgclip.load("tiny", device="cpu")
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        index_dir = build_index(Path(tmp), args.clips, args.videos, model)
        print(f"synthetic index: {args.clips} clips x {model.embed_dim} dims in {args.videos} videos, "
              f"built in {time.perf_counter() - t0:.1f} s")

        # baseline: the same engine in this process (text encoding + search), no HTTP
        engine = SearchEngine(model, tokenizer, ClipIndex(index_dir, fingerprint=model_fingerprint(model)), "tiny")
        engine.search("warm up", k=1)  # as load_engine does: model lazy init + stored embeddings read
        base_cold, base_hot = [], []
        for q in queries:
            t = time.perf_counter()
            engine.search(q, args.k)
            base_cold.append(1000 * (time.perf_counter() - t))
        for q in queries:
            t = time.perf_counter()
            engine.search(q, args.k)
            base_hot.append(1000 * (time.perf_counter() - t))

        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        sock.close()
        server = subprocess.Popen([sys.executable, "-m", "surgclip.cli", "serve", "--index", str(index_dir),
                                   "--model", "tiny", "--host", "127.0.0.1", "--port", str(port)],
                                  cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            conn = None
            for _ in range(600):  # at most 120 s to load model + index
                try:
                    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
                    conn.request("GET", "/api/videos")
                    if conn.getresponse().read() and server.poll() is None:
                        break
                except OSError:
                    conn = None
                    if server.poll() is not None:
                        raise RuntimeError(f"server exited: {server.stderr.read().decode()[-2000:]}")
                    time.sleep(0.2)
            if conn is None:
                raise RuntimeError("server did not answer within 120 s")

            def get(path):
                t = time.perf_counter()
                conn.request("GET", path)
                r = conn.getresponse()
                body = r.read()
                assert r.status == 200, (path, r.status, body[:200])
                return 1000 * (time.perf_counter() - t), body

            http_cold = [get("/api/search?" + urllib.parse.urlencode({"q": q, "k": args.k}))[0] for q in queries]
            http_hot = [get("/api/search?" + urllib.parse.urlencode({"q": q, "k": args.k}))[0] for q in queries]
            hits = json.loads(get("/api/search?" + urllib.parse.urlencode({"q": queries[0], "k": args.thumbs}))[1])["hits"]
            thumb_cold = [get(f"/thumb/{h['id']}")[0] for h in hits]
            thumb_hot = [get(f"/thumb/{h['id']}")[0] for h in hits]
        finally:
            server.terminate()
            server.wait(timeout=30)

    print(f"in-process search, new text     : {stats(base_cold)}")
    print(f"in-process search, cached text  : {stats(base_hot)}")
    print(f"HTTP /api/search, new text      : {stats(http_cold)}")
    print(f"HTTP /api/search, cached text   : {stats(http_hot)}")
    print(f"ratio HTTP / in-process (median): new text {np.median(http_cold) / np.median(base_cold):.2f}, "
          f"cached {np.median(http_hot) / np.median(base_hot):.2f}")
    print(f"HTTP /thumb first fetch         : {stats(thumb_cold)}")
    print(f"HTTP /thumb cached              : {stats(thumb_hot)}")
    print(f"ratio thumb first / cached (median): {np.median(thumb_cold) / np.median(thumb_hot):.1f}")
    recorder, size = Recorder(__file__, args.out), {"clips": args.clips, "k": args.k}
    recorder.add("in-process search, new text", {**size, **figures(base_cold)})
    recorder.add("in-process search, cached text", {**size, **figures(base_hot)})
    for label, http_ms, base in (("new text", http_cold, base_cold), ("cached text", http_hot, base_hot)):
        ratio = float(np.median(http_ms) / np.median(base))
        recorder.add(f"HTTP /api/search, {label}", {**size, **figures(http_ms), "ratio_to_in_process": ratio}, ratio=ratio,
                     ratio_of=f"HTTP median / in-process median, {label}")
    ratio = float(np.median(thumb_cold) / np.median(thumb_hot))
    recorder.add("HTTP /thumb first fetch", {**figures(thumb_cold), "cached_median_ms": float(np.median(thumb_hot)),
                                             "cached_p95_ms": float(np.percentile(thumb_hot, 95)),
                                             "ratio_first_to_cached": ratio},
                 ratio=ratio, ratio_of="first fetch median / cached median")


if __name__ == "__main__":
    main()
