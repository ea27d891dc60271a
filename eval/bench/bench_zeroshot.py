"""Zero-shot throughput (labelled frames/s) against the model's bare forward on the same inputs.

Evaluator = ``evaluate_zero_shot`` end to end (decode, transform, encode, FAISS query, metrics) on
a generated 1-fps-labelled video; bare = ``model.encode_video`` on the same clips, already decoded
and transformed in memory. Ratio = evaluator time / bare time (target <= 1.15).

    python eval/bench/bench_zeroshot.py --models tiny SurgCLIP-B --frames 1 16 --rows 12
"""
import argparse
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tests" / "evaluation"))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", nargs="+", default=["tiny", "SurgCLIP-B"])
    ap.add_argument("--frames", nargs="+", type=int, default=[1, 16])
    ap.add_argument("--rows", type=int, default=12, help="labelled frames per setting")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    import surgclip
    from conftest import write_video
    from surgclip.evaluation.clips import iter_clip_batches
    from surgclip.evaluation.table import FrameSource, make_table
    from surgclip.evaluation.zeroshot import evaluate_zero_shot
    from surgclip.transform import ClipTransform

    tmp = Path(tempfile.mkdtemp())
    seconds = args.rows + 20
    write_video(tmp / "v.mp4", seconds, fps=25, size=256)
    rows = [("v", float(10 + i), 10 + i, i % 7) for i in range(args.rows)]
    table = make_table("bench/phase", [f"c{i}" for i in range(7)], rows)
    table.sources = {"v": FrameSource(tmp / "v.mp4")}
    prompts = [f"phase number {i}" for i in range(7)]
    print(f"{'model':12s} {'T':>3s} {'bare f/s':>9s} {'eval f/s':>9s} {'ratio':>6s}")
    for name in args.models:
        model, _, tok = surgclip.create_model_and_transforms(name)  # random weights: no download
        model.eval()
        for T in args.frames:
            bs = 8 if T == 1 else 2
            mode = "frame" if T == 1 else "centered"
            clips = [c for _, c in iter_clip_batches(table, ClipTransform(model.preprocess_cfg), T, mode, 1.0, bs, Counter())]
            with torch.no_grad():
                model.encode_video(clips[0])  # warm-up
                t0 = time.perf_counter()
                for c in clips:
                    model.encode_video(c)
                bare = time.perf_counter() - t0
            t0 = time.perf_counter()
            evaluate_zero_shot(model, tok, table, prompts, num_frames=T, mode=mode, batch_size=bs)
            full = time.perf_counter() - t0
            print(f"{name:12s} {T:3d} {args.rows / bare:9.2f} {args.rows / full:9.2f} {full / bare:6.3f}", flush=True)


if __name__ == "__main__":
    main()
