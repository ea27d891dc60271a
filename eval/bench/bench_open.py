"""What a training read costs from a reader opened for it: decord's against the reader's own index.

Training keeps up to 64 open readers per worker (``ClipDataset(cache_size=)``) and shuffles clips
over the whole dataset, so with more videos than that most clips open their video again. Opening a
decord reader demuxes the whole file to index it; an MP4 carries that index itself (the ``moov``
box), which ``VideoFileReader`` reads through PyAV instead. For each video this prints, per
16-frame clip (random frames of an 8-s span, decoded at 224 px as training does, a reader opened
for every clip): milliseconds, CPU milliseconds and bytes read, for a decord reader and for ours,
and their ratio.

    python eval/bench/bench_open.py [--minutes 10] [--clips 20]

The videos: the real Cholec clips in ../shared/realdata (32 s, 854x480), and a ``--minutes`` long
854x480 25-fps video made here by looping one of them (or a moving pattern without them), which
stands for a whole recorded procedure.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from results import Recorder, add_out_argument  # noqa: E402  (eval/bench/results.py)


def bytes_read() -> int:
    with open("/proc/self/io") as f:
        return int(next(line for line in f if line.startswith("rchar")).split()[1])


def long_video(out: Path, minutes: float, clip: Path | None) -> Path:
    """An 854x480 25-fps H.264 video of ``minutes``: ``clip`` looped, or a moving pattern."""
    from fractions import Fraction

    import av

    n = int(minutes * 60 * 25)
    yy, xx = np.mgrid[0:480, 0:854]
    with av.open(str(out), "w") as dst:
        stream = dst.add_stream("libx264", rate=25, options={"preset": "ultrafast", "crf": "23", "g": "250"})
        stream.width, stream.height, stream.pix_fmt = 854, 480, "yuv420p"
        written = 0
        while written < n:
            if clip is not None:
                with av.open(str(clip)) as src:
                    for frame in src.decode(video=0):
                        if written == n:
                            break
                        frame = frame.reformat(format="yuv420p")
                        frame.pts, frame.time_base = written, Fraction(1, 25)
                        dst.mux(stream.encode(frame))
                        written += 1
            else:
                img = np.stack([(xx + 3 * written) % 256, (yy + 2 * written) % 256, (xx + yy) % 256], -1)
                dst.mux(stream.encode(av.VideoFrame.from_ndarray(img.astype(np.uint8), format="rgb24")))
                written += 1
        dst.mux(stream.encode())
    return out


def clip_reads(path: Path, clips: int, use_decord: bool) -> dict:
    """Per clip: a reader opened at 224 px (training's decode size for this 854x480 video), 16
    random sorted frames of an 8-s span read."""
    from surgclip.data import readers
    from surgclip.data.dataset import DecodeSize

    size = DecodeSize(224, "squash", train=True, min_scale=0.5)
    backend = "decord" if use_decord else "auto"
    rng = np.random.default_rng(0)
    n = readers.VideoFileReader(path).num_frames
    total = {"open_ms": 0.0, "clip_ms": 0.0, "cpu_ms": 0.0, "bytes": 0}
    for _ in range(clips):
        start = int(rng.integers(0, max(1, n - 200)))
        idx = np.sort(rng.choice(np.arange(start, min(n, start + 200)), 16, replace=False))
        b0, t0, c0 = bytes_read(), time.perf_counter(), time.process_time()
        reader = readers.VideoFileReader(path, size=size, backend=backend)
        t1 = time.perf_counter()
        frames = reader.read(idx)
        total["open_ms"] += 1000 * (t1 - t0)
        total["clip_ms"] += 1000 * (time.perf_counter() - t0)
        total["cpu_ms"] += 1000 * (time.process_time() - c0)  # decord's threads included
        total["bytes"] += bytes_read() - b0
        assert frames.shape[0] == 16
        del reader
    return {k: v / clips for k, v in total.items()}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--clips", type=int, default=20)
    ap.add_argument("--realdata", default=str(REPO.parent / "shared" / "realdata"))
    add_out_argument(ap, __file__)
    args = ap.parse_args()
    recorder = Recorder(__file__, args.out)
    real = sorted((Path(args.realdata) / "videos" / "cholec_clips").glob("*.mp4"))
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        long = long_video(Path(tmp) / "long.mp4", args.minutes, real[0] if real else None)
        print(f"(made a {args.minutes:g}-minute video, {long.stat().st_size / 2**20:.0f} MiB, in {time.perf_counter() - t:.0f} s"
              f"{' from ' + real[0].name if real else ', a moving pattern: no real clips'})", flush=True)
        for path in real[:2] + [long]:
            for k in range(2):  # the second round, with the file in the page cache as the first left it, is printed
                dec, ours = clip_reads(path, args.clips, True), clip_reads(path, args.clips, False)
            mib = path.stat().st_size / 2**20
            print(f"{path.name} ({mib:.0f} MiB), per clip from a reader opened for it: "
                  f"decord open {dec['open_ms']:.1f} ms, clip {dec['clip_ms']:.1f} ms ({dec['cpu_ms']:.1f} CPU), "
                  f"{dec['bytes'] / 2**20:.1f} MiB read | ours open {ours['open_ms']:.1f} ms, clip {ours['clip_ms']:.1f} ms "
                  f"({ours['cpu_ms']:.1f} CPU), {ours['bytes'] / 2**20:.2f} MiB read | decord / ours: clip time "
                  f"{dec['clip_ms'] / ours['clip_ms']:.2f}x, CPU {dec['cpu_ms'] / ours['cpu_ms']:.2f}x", flush=True)
            recorder.add(f"{path.name} ({mib:.0f} MiB)", {
                **{f"decord_{k}": v for k, v in dec.items() if k != "bytes"}, "decord_mib_read": dec["bytes"] / 2**20,
                **{f"ours_{k}": v for k, v in ours.items() if k != "bytes"}, "ours_mib_read": ours["bytes"] / 2**20,
                "clip_time_ratio": dec["clip_ms"] / ours["clip_ms"], "cpu_ratio": dec["cpu_ms"] / ours["cpu_ms"],
                "clips": args.clips}, ratio=dec["clip_ms"] / ours["clip_ms"],
                ratio_of="decord clip time / ours, a reader opened per clip")
    return 0


if __name__ == "__main__":
    sys.exit(main())
