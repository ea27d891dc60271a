"""Zero-shot evaluator throughput against the model's bare forward on the same inputs, and where the
time goes.

On a generated 25-fps H.264 video with labels at 1 fps, per (model, T), in milliseconds per labelled
frame:

- ``bare``: the forwards the evaluation needs, on inputs already in memory: ``encode_video`` on
  every clip (decoded and transformed beforehand, resized uint8 frames as the evaluator hands them
  over: the model normalises them in its forward) + ``encode_text`` on the 7 prompts;
- ``decode``: reading the clips' frames alone (the evaluator's streaming reader, sorted read-ahead
  batches, each frame once); ``decord``: the same reads through decord's random access (the baseline);
- ``transf``: resizing those frames (``ClipTransform``);
- ``stack``: copying each clip's frames into its batch ([B, T, 3, S, S]; at T=16 every frame is
  copied into the 16 windows that hold it);
- ``eval``: ``evaluate_zero_shot`` end to end as it runs by default (FAISS scoring and metrics
  included; decode and transform in a background thread overlapped with the forward only when the
  forward leaves a core free, ``clips.read_ahead``: the header says which); ``fwd@ev``: the part of
  it spent in the per-clip forward (above ``bare`` when a reader thread takes cores from the forward);
- ``eval0``: the same with ``prefetch=0`` (everything in one thread, nothing overlapped), ``eval2``
  with ``prefetch=2`` (the background thread, always).

``ratio`` = eval / bare (goal <= 1.15), ``ratio0`` = eval0 / bare, ``ratio2`` = eval2 / bare. ``floor`` = max(bare, decode +
transform + stack) / bare: the best overlap can give when the reader has a core of its own (a GPU
machine, or more cores than the forward uses). ``serial`` = (bare + decode + transform + stack) /
bare: what the work costs when the forward already fills every core (a small model's CPU forward
on 2 cores), where overlapping only moves it around.

A model whose video tower runs an image trunk on each frame alone (``tiny``, CLIP-style towers;
``per_frame_trunk``) is evaluated at T > 1 with each frame's trunk run once, in the reader thread,
and only the temporal module per clip: it does less work than ``bare``, which runs ``encode_video``
on every clip as a naive evaluator would, so its ratio goes below 1 (``stack`` is then "-": the
clips stack small feature vectors, not images). When decode + transform exceed the forward
(``tiny`` at T=1: one new frame per row, and 25 frames to decode per 1-fps frame of a 25-fps file),
the evaluator is decode-bound and the ratio cannot reach 1.

    python eval/bench/bench_zeroshot.py --models tiny SurgCLIP-B --frames 1 16 --rows 32 8
"""
import argparse
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tests"))

from results import Recorder, add_out_argument  # noqa: E402  (eval/bench/results.py)


def _time(fn, repeat: int = 1) -> float:
    """Best of ``repeat`` wall-clock runs (the least disturbed by other jobs on shared cores); on a GPU,
    until its queued work is done."""
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        if torch.cuda.is_initialized():
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - t0)
    return best


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", nargs="+", default=["tiny", "SurgCLIP-B"])
    ap.add_argument("--frames", nargs="+", type=int, default=[1, 16])
    ap.add_argument("--rows", nargs="+", type=int, default=[32, 8], help="labelled frames per setting (one per model)")
    ap.add_argument("--size", type=int, default=256, help="video frame size (square)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=3, help="runs of each measurement, interleaved; best is kept")
    ap.add_argument("--device", default="cpu", help="where the model runs (cuda: decoding stays on the CPU)")
    add_out_argument(ap, __file__)
    args = ap.parse_args()
    recorder = Recorder(__file__, args.out)
    torch.set_num_threads(args.threads)
    import surgclip
    from helpers import write_video
    from surgclip.data.readers import open_source
    from surgclip.evaluation.clips import READ_AHEAD_ROWS, stack_clips, clip_positions, iter_clip_batches, read_ahead
    from surgclip.datasets.table import FrameSource, make_table
    from surgclip.evaluation.zeroshot import evaluate_zero_shot
    from surgclip.tokenizer import tokenize
    from surgclip.transform import ClipTransform

    tmp = Path(tempfile.mkdtemp())
    max_rows = max(args.rows)
    write_video(tmp / "v.mp4", max_rows + 20, fps=25, size=args.size)
    prompts = [f"phase number {i}" for i in range(7)]
    print(f"video {args.size}x{args.size} 25 fps H.264, labels at 1 fps, {args.threads} torch threads; "
          f"on {args.device}; the evaluator's read-ahead thread: {'on' if read_ahead(args.device) else 'off'}; "
          f"milliseconds per labelled frame")
    print(f"{'model':11s} {'T':>3s} {'rows':>4s} {'bare':>8s} {'(text)':>7s} {'decode':>7s} {'decord':>7s} {'transf':>7s} "
          f"{'stack':>6s} {'fwd@ev':>8s} {'eval':>8s} {'eval0':>8s} {'eval2':>8s} {'floor':>6s} {'serial':>6s} {'ratio':>6s} "
          f"{'ratio0':>6s} {'ratio2':>6s}")
    for name, n_rows in zip(args.models, args.rows + args.rows[-1:] * len(args.models)):
        model, _, tok = surgclip.create_model_and_transforms(name)  # random weights: no download
        model.to(args.device).eval()
        rows = [("v", float(10 + i), 10 + i, i % 7) for i in range(n_rows)]
        table = make_table("bench/phase", [f"c{i}" for i in range(7)], rows)
        table.sources = {"v": FrameSource(tmp / "v.mp4")}
        tf = ClipTransform(model.preprocess_cfg, normalize=False)  # as the evaluator: uint8 frames into the model
        for T in args.frames:
            bs = 8 if T == 1 else 2
            mode = "frame" if T == 1 else "centered"
            clips = [c.to(args.device) for _, c in iter_clip_batches(table, tf, T, mode, 1.0, bs, Counter(), prefetch=0)]
            tokens = tokenize(prompts, tok, device=args.device, max_length=getattr(tok, "context_length", 77))
            # the frames the evaluator decodes: every clip frame once, in read-ahead batches
            fps = open_source(tmp / "v.mp4").fps
            frames = sorted({p for t in table.time_s
                             for p in clip_positions(int(t * fps), T, int(fps), mode, 10**9).tolist()})
            chunk = max(1, len(frames) * READ_AHEAD_ROWS // n_rows)
            decoded = []

            def decode_all(stream=True):
                r = open_source(tmp / "v.mp4", stream=stream, backend="auto" if stream else "decord")
                decoded[:] = [r.read(frames[i:i + chunk]) for i in range(0, len(frames), chunk)]

            # the clips' frame lists, as the evaluator's frame cache holds them, for the stack column
            windows = [clip_positions(int(t * fps), T, int(fps), mode, 10**9).tolist() for t in table.time_s]
            shared_trunk = T > 1 and model.per_frame_trunk  # the evaluator's per-clip forward
            forward_name = "encode_video_from_trunk" if shared_trunk else "encode_video"
            encode = getattr(model, forward_name)
            in_forward = [0.0]

            def timed_encode(x):
                t0 = time.perf_counter()
                out = encode(x)
                if out.is_cuda:
                    torch.cuda.synchronize()
                in_forward[0] += time.perf_counter() - t0
                return out

            def evaluate(prefetch: int):
                return evaluate_zero_shot(model, tok, table, prompts, num_frames=T, mode=mode, batch_size=bs,
                                          prefetch=prefetch)

            with torch.no_grad():
                model.encode_video(clips[0])  # warm-up (and the last, smaller batch shape)
                model.encode_video(clips[-1])
                model.encode_text(tokens)
            text_s = bare = full = full0 = full2 = fwd = decode = by_decord = transform = stack = float("inf")
            for _ in range(args.repeat):  # interleaved, so that a burst of other jobs hits both
                with torch.no_grad():
                    t_s = _time(lambda: model.encode_text(tokens))
                    v_s = _time(lambda: [model.encode_video(c) for c in clips])
                text_s, bare = min(text_s, t_s), min(bare, t_s + v_s)
                setattr(model, forward_name, timed_encode)
                in_forward[0] = 0.0
                try:
                    e_s = _time(lambda: evaluate(None))
                finally:
                    delattr(model, forward_name)  # back to the class's method
                if e_s < full:
                    full, fwd = e_s, in_forward[0] + t_s
                full0 = min(full0, _time(lambda: evaluate(0)))
                full2 = min(full2, _time(lambda: evaluate(2)))
                by_decord = min(by_decord, _time(lambda: decode_all(stream=False)))
                decode = min(decode, _time(decode_all))
                transformed = []
                transform = min(transform, _time(lambda: transformed.extend(tf(d) for d in decoded)))
                cache = dict(zip(frames, torch.cat(transformed).unbind(0)))
                stack = min(stack, _time(lambda: [stack_clips([[cache[p] for p in w] for w in windows[i:i + bs]])
                                                  for i in range(0, n_rows, bs)]))
            if shared_trunk:
                stack = float("nan")  # the evaluator stacks trunk features, not images
            work = decode + transform + (0.0 if shared_trunk else stack)
            floor, serial = max(bare, work) / bare, (bare + work) / bare
            ms = 1000 / n_rows
            print(f"{name:11s} {T:3d} {n_rows:4d} {bare * ms:8.1f} {text_s * ms:7.1f} {decode * ms:7.1f} {by_decord * ms:7.1f} "
                  f"{transform * ms:7.1f} {'-' if shared_trunk else f'{stack * ms:.1f}':>6s} {fwd * ms:8.1f} {full * ms:8.1f} {full0 * ms:8.1f} "
                  f"{full2 * ms:8.1f} {floor:6.2f} {serial:6.2f} {full / bare:6.3f} {full0 / bare:6.3f} {full2 / bare:6.3f}",
                  flush=True)
            recorder.add(f"{name} T={T}", {
                "rows": n_rows, "bare_ms": bare * ms, "text_ms": text_s * ms, "decode_ms": decode * ms,
                "decord_ms": by_decord * ms, "transform_ms": transform * ms, "stack_ms": stack * ms,
                "forward_in_eval_ms": fwd * ms, "eval_ms": full * ms, "eval0_ms": full0 * ms, "eval2_ms": full2 * ms,
                "floor": floor, "serial": serial, "ratio": full / bare, "ratio0": full0 / bare, "ratio2": full2 / bare,
                "device": args.device, "read_ahead": bool(read_ahead(args.device))},
                ratio=full / bare, ratio_of="evaluate_zero_shot / bare forward, ms per labelled frame")
        del model


if __name__ == "__main__":
    main()
