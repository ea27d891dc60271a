"""How far overlapping decoding with the forward can go on this machine: the zero-shot evaluator's
two halves, the reader (``clips._batches``: stream-decode + transform + stack, what its background
thread runs) and the model's forward on clips already in memory, each timed alone and both at
once in two separate processes (no shared GIL), started together and timed over the same seconds.

Prints milliseconds per labelled frame and, against the bare forward at ``--threads`` threads:

- ``serial``: reader + forward one after the other (the evaluator with ``prefetch=0``);
- ``ideal``: max(reader, forward at threads - 1) alone: a perfect overlap if the two did not slow
  each other (the reader on a core of its own);
- ``shared``: max(reader, forward) while both run: the best any overlap (a thread, a process)
  can give here, since each slows the other down (memory bandwidth, caches, the host's cores);
- ``evaluator``: ``evaluate_zero_shot`` itself, as it runs by default (its reader in a background
  thread only when the forward leaves a core, ``clips.read_ahead``), also in a
  process of its own.

Compare with ``ratio`` of ``bench_zeroshot.py``, the evaluator's own.

    python eval/bench/bench_overlap.py --model tiny --frames 1 --rows 200
"""
import argparse
import json
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

from results import Recorder, add_out_argument  # noqa: E402  (eval/bench/results.py)


def setup(args, video: Path):
    import surgclip
    from surgclip.datasets.table import FrameSource, make_table
    from surgclip.transform import ClipTransform

    model, _, _ = surgclip.create_model_and_transforms(args.model)  # random weights: no download
    model.eval()
    rows = [("v", float(10 + i), 10 + i, i % 7) for i in range(args.rows)]
    table = make_table("bench/phase", [f"c{i}" for i in range(7)], rows)
    table.sources = {"v": FrameSource(video)}
    mode = "frame" if args.frames == 1 else "centered"
    return model, table, ClipTransform(model.preprocess_cfg, normalize=False), mode  # the evaluator's uint8 frames


def role(args) -> None:
    """One half, in this process: loop it from ``--start-at`` for ``--seconds``; print rows/s."""
    import torch

    from surgclip.evaluation.clips import _batches, iter_clip_batches

    torch.set_num_threads(args.threads)
    model, table, tf, mode = setup(args, Path(args.video))
    bs = 8 if args.frames == 1 else 2

    def read_all():
        return sum(len(rows) for rows, _, _ in _batches(table, tf, args.frames, mode, 1.0, bs, Counter()) if rows is not None)

    if args.role == "evaluator":  # the real thing: reader (thread or not) + forward, prompts, scoring
        from surgclip import get_tokenizer
        from surgclip.evaluation.zeroshot import evaluate_zero_shot

        tok = get_tokenizer(model.config)
        prompts = [f"phase number {i}" for i in range(7)]

        def once():
            evaluate_zero_shot(model, tok, table, prompts, num_frames=args.frames, mode=mode, batch_size=bs)
            return len(table)
    elif args.role == "forward":
        clips = [c for _, c in iter_clip_batches(table, tf, args.frames, mode, 1.0, bs, Counter(), prefetch=0)]

        def once():
            with torch.no_grad():
                return sum(len(model.encode_video(c)) for c in clips)
    else:
        once = read_all
    once()  # warm-up
    time.sleep(max(0.0, args.start_at - time.time()))
    rows, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < args.seconds:
        rows += once()
    print(json.dumps({"rows_per_s": rows / (time.perf_counter() - t0)}))


def run(args, video: Path, *halves: tuple[str, int]) -> list[float]:
    """ms per row of each (role, threads), all started at the same moment in their own processes."""
    start = time.time() + args.start_delay  # after every child's imports and warm-up
    procs = [subprocess.Popen([sys.executable, __file__, "--role", r, "--threads", str(t), "--video", str(video),
                               "--start-at", str(start), "--seconds", str(args.seconds), "--model", args.model,
                               "--frames", str(args.frames), "--rows", str(args.rows)],
                              stdout=subprocess.PIPE, text=True) for r, t in halves]
    out = [json.loads(p.communicate()[0].strip().splitlines()[-1]) for p in procs]
    return [1000 / o["rows_per_s"] for o in out]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="tiny")
    ap.add_argument("--frames", type=int, default=1)
    ap.add_argument("--rows", type=int, default=200, help="labelled frames, one per second of a 25-fps video")
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--threads", type=int, default=2, help="the forward's threads (the bare baseline)")
    ap.add_argument("--seconds", type=float, default=6.0)
    ap.add_argument("--role", choices=["forward", "reader", "evaluator"], help=argparse.SUPPRESS)
    ap.add_argument("--video", help=argparse.SUPPRESS)
    ap.add_argument("--start-at", type=float, default=0.0, help=argparse.SUPPRESS)
    ap.add_argument("--start-delay", type=float, default=15.0,
                    help="seconds from starting the processes to timing them (after their imports and warm-up)")
    add_out_argument(ap, __file__)
    args = ap.parse_args()
    if args.role:
        return role(args)
    from helpers import write_video

    video = Path(tempfile.mkdtemp()) / "v.mp4"
    write_video(video, args.rows + 20, fps=25, size=args.size)
    n = args.threads
    fwd, = run(args, video, ("forward", n))
    fwd1, = run(args, video, ("forward", max(1, n - 1)))
    read, = run(args, video, ("reader", 1))
    fwd1_s, read_s = run(args, video, ("forward", max(1, n - 1)), ("reader", 1))
    fwd_s, read_s2 = run(args, video, ("forward", n), ("reader", 1))
    shared = min(max(fwd1_s, read_s), max(fwd_s, read_s2))
    evaluator, = run(args, video, ("evaluator", n))
    print(f"{args.model} T={args.frames}, {args.rows} rows of a {args.size}-px 25-fps video; ms per labelled frame")
    print(f"alone:    forward {fwd:.2f} ({n} threads), {fwd1:.2f} ({max(1, n - 1)}), reader {read:.2f}")
    print(f"together: forward {fwd1_s:.2f} ({max(1, n - 1)} threads) + reader {read_s:.2f};  "
          f"forward {fwd_s:.2f} ({n}) + reader {read_s2:.2f}")
    import torch

    from surgclip.evaluation.clips import read_ahead

    torch.set_num_threads(n)  # as the evaluator's process
    thread = "+ its reader thread" if read_ahead("cpu") else "reading in the calling thread"
    print(f"evaluator (evaluate_zero_shot, {n} threads, {thread}): {evaluator:.2f}")
    print(f"x bare forward: serial {(fwd + read) / fwd:.2f}  ideal {max(fwd1, read) / fwd:.2f}  shared {shared / fwd:.2f}  "
          f"evaluator {evaluator / fwd:.2f}")
    Recorder(__file__, args.out).add(f"{args.model} T={args.frames}, {args.rows} rows", {
        "forward_ms": fwd, "forward_threads": n, "forward_fewer_threads_ms": fwd1, "fewer_threads": max(1, n - 1),
        "reader_ms": read, "together_forward_fewer_threads_ms": fwd1_s, "together_reader_ms": read_s,
        "together_forward_ms": fwd_s, "together_reader_beside_full_forward_ms": read_s2, "evaluator_ms": evaluator,
        "evaluator_reader_thread": read_ahead("cpu"), "serial": (fwd + read) / fwd, "ideal": max(fwd1, read) / fwd,
        "shared": shared / fwd, "evaluator": evaluator / fwd},
        ratio=evaluator / fwd, ratio_of="evaluate_zero_shot / bare forward, ms per labelled frame")


if __name__ == "__main__":
    main()
