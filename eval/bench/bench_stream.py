"""The streaming reader (PyAV front to back, ``VideoFileReader(stream=True)``) against decord's
random-access reads of the same frames, in the same process: milliseconds per video and the ratio.

Reads every ``step``-th frame in sorted batches of 32, as the evaluator and the indexer do (step 25:
1-fps labels on 25-fps video; 6: 16 frames per 4-s window; 1: every frame), best of ``--repeat``
alternated runs; checks the frames are identical and prints how many packets the stream handed to
the decoder as droppable (``skip_frame=NONREF``) and how many seeks it made.

    python eval/bench/bench_stream.py                     # the real Cholec clips of ../shared/realdata
    python eval/bench/bench_stream.py some/video.mp4 --steps 25 6 1

Every frame (step 1) is where decord is ahead: its thread decodes the next frame while this one is
converted; the stream runs both in turn.
"""
import argparse
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from surgclip.data.readers import VideoFileReader  # noqa: E402

from results import Recorder, add_out_argument  # noqa: E402  (eval/bench/results.py)

REAL = REPO.parent / "shared" / "realdata" / "videos" / "cholec_clips"


def read_all(path: Path, idx: list[int], stream: bool):
    reader = VideoFileReader(path, stream=stream, backend="auto" if stream else "decord")
    t0 = time.perf_counter()
    frames = [reader.read(idx[b:b + 32]) for b in range(0, len(idx), 32)]
    # the reader goes here: a live decord reader's thread goes on decoding ahead and would take the
    # CPU from the next run
    return frames, time.perf_counter() - t0, reader._pyav


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("videos", nargs="*", type=Path)
    ap.add_argument("--steps", nargs="+", type=int, default=[25, 6, 1])
    ap.add_argument("--repeat", type=int, default=3)
    add_out_argument(ap, __file__)
    args = ap.parse_args()
    recorder = Recorder(__file__, args.out)
    videos = args.videos or sorted(REAL.glob("*.mp4"))[:3]
    if not videos:
        sys.exit(f"no videos given and none in {REAL}")
    print(f"{'video':28s} {'step':>4s} {'frames':>6s} {'stream ms':>9s} {'decord ms':>9s} {'speed-up':>8s} "
          f"{'equal':>5s} {'skipped':>7s} {'seeks':>5s}")
    for path in videos:
        n = VideoFileReader(path).num_frames
        for step in args.steps:
            idx = list(range(step // 2, n, step))
            best = {True: float("inf"), False: float("inf")}
            for _ in range(args.repeat):  # alternated, so that a burst of other work hits both
                for stream in (True, False):
                    frames, seconds, state = read_all(path, idx, stream)
                    best[stream] = min(best[stream], seconds)
                    if stream:
                        streamed, streamed_state = frames, state
                    else:
                        same = all(np.array_equal(a, b) for a, b in zip(frames, streamed))
            print(f"{path.name[:28]:28s} {step:4d} {len(idx):6d} {best[True] * 1e3:9.0f} {best[False] * 1e3:9.0f} "
                  f"{best[False] / best[True]:7.2f}x {str(same):>5s} "
                  f"{streamed_state.skipped if streamed_state else 'decord':>7} {streamed_state.seeks if streamed_state else '':>5}", flush=True)
            recorder.add(f"{path.name} step {step}", {
                "step": step, "frames": len(idx), "stream_ms": best[True] * 1e3, "decord_ms": best[False] * 1e3,
                "speedup": best[False] / best[True], "equal": same,
                "skipped": streamed_state.skipped if streamed_state else None,
                "seeks": streamed_state.seeks if streamed_state else None},
                ratio=best[False] / best[True], ratio_of="decord ms / streaming ms, the same frames")


if __name__ == "__main__":
    main()
