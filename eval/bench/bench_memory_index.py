"""Peak memory of `surgclip index` over long videos: it must not grow with the video's length.

Writes synthetic H.264 videos (PyAV, --size x --size pixels, --fps frames per second) of each
length in --minutes, then indexes each in a fresh process with the tiny model and reports that
process's peak RSS before indexing (model loaded, one short video indexed as warm-up) and after.

    python eval/bench/bench_memory_index.py --minutes 10 60 240
    python eval/bench/bench_memory_index.py --size 480 --fps 25 --minutes 2 10 --reader stream decord

``--reader decord`` indexes with decord's random-access reads instead of the streaming reader
(the baseline: decord's background decoding keeps what it decoded ahead of the reads).

Beside peak RSS it prints the C heap's live bytes (glibc's count of what is allocated, sampled after
each batch's forward): RSS also holds freed pages the allocator keeps, so the two tell a leak (live
bytes that grow) from a heap that spreads.
"""
import argparse
import functools
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from results import Recorder, add_out_argument  # noqa: E402  (eval/bench/results.py)


def write_video(path: Path, seconds: int, fps: int, size: int = 64) -> None:
    """A video whose colour changes every second (cheap to encode, real decoding work)."""
    import av

    rng = np.random.default_rng(0)
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=fps, options={"preset": "ultrafast"})
        stream.width = stream.height = size
        stream.pix_fmt = "yuv420p"
        for _ in range(seconds):
            frame = av.VideoFrame.from_ndarray(np.broadcast_to(rng.integers(0, 255, 3, dtype=np.uint8),
                                                               (size, size, 3)).copy(), format="rgb24")
            for _ in range(fps):
                for packet in stream.encode(frame):
                    out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)


def peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


@functools.lru_cache(maxsize=None)
def _mallinfo2():
    """glibc's ``mallinfo2`` with its result struct, bound once (None elsewhere)."""
    import ctypes

    class MallInfo2(ctypes.Structure):
        _fields_ = [(n, ctypes.c_size_t) for n in
                    "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost".split()]

    try:
        fn = ctypes.CDLL("libc.so.6").mallinfo2
    except (OSError, AttributeError):
        return None
    fn.restype = MallInfo2
    return fn


def heap_in_use_mib() -> float:
    """The C heap's live bytes (glibc ``mallinfo2().uordblks``, all arenas; NaN elsewhere): what is
    allocated, as opposed to RSS, which also counts freed pages the allocator keeps."""
    fn = _mallinfo2()
    return fn().uordblks / 2**20 if fn else float("nan")


def child(video: str, warmup: str, index_dir: str, window_s: float, reader: str) -> None:
    import torch

    import surgclip
    from surgclip.evaluation import library
    from surgclip.evaluation.library import index_library

    if reader == "decord":  # the baseline: the indexer's reads served by decord's get_batch
        open_source = library.open_source
        library.open_source = lambda *a, **k: open_source(*a, **dict(k, stream=False, backend="decord"))

    torch.set_num_threads(2)
    model, _, _ = surgclip.load("tiny")
    kw = dict(window_s=window_s, stride_s=window_s, num_frames=2, batch_size=8)
    index_library(model, [Path(warmup)], Path(index_dir) / "warm", **kw)
    before, heap = peak_mib(), [heap_in_use_mib()]
    encode = model.encode_video

    def sampled(clips):  # the heap's live bytes after each batch's forward, the batch still held
        out = encode(clips)
        heap.append(heap_in_use_mib())
        return out

    model.encode_video = sampled
    t0 = time.perf_counter()
    report = index_library(model, [Path(video)], Path(index_dir) / "long", **kw)
    print(json.dumps({"before": before, "after": peak_mib(), "clips": report["num_clips"],
                      "seconds": time.perf_counter() - t0, "heap_before": heap[0], "heap_peak": max(heap)}))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--minutes", nargs="+", type=int, default=[10, 60, 240])
    ap.add_argument("--fps", type=int, default=2)
    ap.add_argument("--size", type=int, default=64, help="frame width and height of the synthetic videos")
    ap.add_argument("--window-s", type=float, default=4.0)
    ap.add_argument("--reader", nargs="+", choices=["stream", "decord"], default=["stream"])
    ap.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    add_out_argument(ap, __file__)
    args = ap.parse_args()
    if args.child:
        return child(*args.child[:3], args.window_s, args.child[3])
    recorder = Recorder(__file__, args.out)
    with tempfile.TemporaryDirectory(prefix="bench_memory_index_") as tmp:
        tmp = Path(tmp)
        write_video(tmp / "warm.mp4", 20, args.fps, args.size)
        print(f"tiny model, 2 frames per {args.window_s:g}-s window, {args.size}x{args.size} video at {args.fps} fps; "
              f"peak RSS of a fresh process after warm-up vs after indexing the long video")
        rows = {reader: [] for reader in args.reader}
        for minutes in args.minutes:
            video = tmp / f"long{minutes}.mp4"
            write_video(video, minutes * 60, args.fps, args.size)
            for reader in args.reader:
                out = subprocess.run([sys.executable, __file__, "--window-s", str(args.window_s), "--child", str(video),
                                      str(tmp / "warm.mp4"), str(tmp / f"ix{minutes}{reader}"), reader],
                                     capture_output=True, text=True, check=True,
                                     env=dict(os.environ, PYTHONPATH=str(REPO), HF_HUB_OFFLINE="1"))
                r = json.loads(out.stdout.strip().splitlines()[-1])
                rows[reader].append(r)
                print(f"{reader:6s} index {minutes:3d}-min video: {r['clips']:5d} clips in {r['seconds']:6.1f} s; peak RSS "
                      f"{r['before']:7.1f} MiB after warm-up -> {r['after']:7.1f} MiB (+{r['after'] - r['before']:.1f}); "
                      f"heap in use {r['heap_before']:.0f} -> at most {r['heap_peak']:.0f} MiB", flush=True)
                recorder.add(f"{reader} index, {minutes}-min video", {
                    "reader": reader, "minutes": minutes, "size": args.size, "fps": args.fps, "clips": r["clips"],
                    "seconds": r["seconds"], "peak_rss_before_mib": r["before"], "peak_rss_after_mib": r["after"],
                    "growth_mib": r["after"] - r["before"], "heap_before_mib": r["heap_before"],
                    "heap_peak_mib": r["heap_peak"]})
            video.unlink()
        for reader, runs in rows.items():
            if len(runs) > 1:
                growth = (runs[-1]["after"] - runs[-1]["before"]) - (runs[0]["after"] - runs[0]["before"])
                print(f"{reader}: growth of the indexing peak from {args.minutes[0]} to {args.minutes[-1]} min: "
                      f"{growth:+.1f} MiB")
                recorder.add(f"{reader} index, growth from {args.minutes[0]} to {args.minutes[-1]} min", {
                    "reader": reader, "size": args.size, "fps": args.fps, "growth_mib": growth})


if __name__ == "__main__":
    main()
