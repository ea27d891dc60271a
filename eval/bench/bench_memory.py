"""Peak memory of the zero-shot evaluator over long videos: it must not grow with the video's length.

Writes synthetic H.264 videos (64x64, 5 fps: quick to write) of 10 and 60 minutes with labels at
1 fps, and runs ``evaluate_zero_shot`` on each in a fresh process (a shrunk ``tiny`` model, 96-px
input, so that 3600 clips take seconds). Each child reports its RSS just before the evaluation and
its peak RSS (VmHWM) after it; the growth (peak - before) is what the evaluator held, beside
what holding every transformed frame would take (``all frames``).

    python eval/bench/bench_memory.py --minutes 10 60 --frames 8

(The indexer's rows are added by ``surgclip index``'s own benchmark.)
"""
import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

from results import Recorder, add_out_argument  # noqa: E402  (eval/bench/results.py)

CHILD = r"""
import json, sys, time
sys.path[:0] = [sys.argv[1], sys.argv[1] + "/tests"]
import torch
torch.set_num_threads(1)
from helpers import small_model
from surgclip.datasets.table import FrameSource, make_table
from surgclip.evaluation.zeroshot import evaluate_zero_shot
import surgclip

def status(key):
    for line in open("/proc/self/status"):
        if line.startswith(key):
            return int(line.split()[1]) / 1024

path, seconds, T = sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
size = 96  # large enough that holding every frame would show: 3600 x 3x96x96 float = 380 MiB
model = small_model("tiny", vision=dict(timm=dict(img_size=size)), preprocess=dict(image_size=size))
tok = surgclip.get_tokenizer("tiny")
rows = [("v", float(s), s, s % 7) for s in range(seconds)]
table = make_table("bench/phase", [f"c{i}" for i in range(7)], rows)
table.sources = {"v": FrameSource(path)}
prompts = [f"phase {i}" for i in range(7)]
evaluate_zero_shot(model, tok, table.select(table.time_s < 20), prompts, num_frames=T, batch_size=16)  # warm-up
before = status("VmRSS:")
t0 = time.perf_counter()
res = evaluate_zero_shot(model, tok, table, prompts, num_frames=T, batch_size=16)
print(json.dumps({"held": seconds * 3 * size * size * 4 / 2**20, "before": before, "peak": status("VmHWM:"),
                  "s": time.perf_counter() - t0,
                  "scored": res.metrics["num_scored"], "skipped": res.skipped}))
"""


def write_video(path: Path, seconds: int, fps: int = 5, size: int = 64) -> None:
    """A colour that changes every second (H.264, yuv420p)."""
    import av
    import numpy as np

    rng = np.random.default_rng(0)
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=fps, options={"preset": "ultrafast"})
        stream.width = stream.height = size
        stream.pix_fmt = "yuv420p"
        for _ in range(seconds):
            img = np.broadcast_to(rng.integers(0, 255, 3, dtype=np.uint8), (size, size, 3)).copy()
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            for _ in range(fps):
                out.mux(stream.encode(frame))
        out.mux(stream.encode())


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--minutes", nargs="+", type=int, default=[10, 60])
    ap.add_argument("--frames", type=int, default=8, help="T: frames per centered clip (1-s stride)")
    add_out_argument(ap, __file__)
    args = ap.parse_args()
    recorder = Recorder(__file__, args.out)
    tmp = Path(tempfile.mkdtemp())
    print(f"zero-shot evaluator, centered clips of {args.frames} frames every 1 s, 64x64 5-fps H.264, labels at 1 fps")
    print(f"{'video':>8s} {'rows':>6s} {'RSS before':>11s} {'peak RSS':>9s} {'growth':>7s} {'all frames':>11s} "
          f"{'eval s':>7s}")
    for minutes in args.minutes:
        path = tmp / f"v{minutes}.mp4"
        write_video(path, minutes * 60)
        run = subprocess.run([sys.executable, "-c", CHILD, str(REPO), str(path), str(minutes * 60), str(args.frames)],
                             capture_output=True, text=True)
        if run.returncode:
            sys.exit(run.stderr[-3000:])
        r = json.loads(run.stdout.strip().splitlines()[-1])
        assert r["scored"] == minutes * 60, r
        print(f"{minutes:5d} min {r['scored']:6d} {r['before']:8.0f} MiB {r['peak']:5.0f} MiB "
              f"{r['peak'] - r['before']:3.0f} MiB {r['held']:7.0f} MiB {r['s']:7.1f}", flush=True)
        recorder.add(f"{minutes} min", {"minutes": minutes, "rows": r["scored"], "frames": args.frames,
                                        "rss_before_mib": r["before"], "peak_rss_mib": r["peak"],
                                        "growth_mib": r["peak"] - r["before"], "all_frames_mib": r["held"],
                                        "eval_s": r["s"]})
        path.unlink()


if __name__ == "__main__":
    main()
