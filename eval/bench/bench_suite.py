"""Overhead of ``surgclip eval --suite surglavi`` on the bundled sample against a bare model forward.

    python eval/bench/bench_suite.py [--sample data/sample] [--num-frames 8]

Prints labelled frames per second of the whole suite (loading every benchmark from its layout,
decoding, prompts, metrics, reports) and of a bare ``encode_video`` forward on random clips of the same
shape in the same process, and their ratio. Contended machines: compare ratios, not rates.
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

import surgclip
from surgclip.sample import ensure_sample
from surgclip.cli import main

from results import Recorder, add_out_argument  # eval/bench/results.py


def run(sample: Path, num_frames: int, batch: int, out_file: Path | None = None) -> None:
    out = Path(tempfile.mkdtemp(prefix="bench_suite."))
    t0 = time.perf_counter()
    code = main(["eval", "--suite", "surglavi", "--data-root", str(sample / "benchmarks"), "--model", "tiny",
                 "--num-frames", str(num_frames), "--batch-size", str(batch), "--out", str(out)])
    suite_s = time.perf_counter() - t0
    cells = json.loads((out / "table.json").read_text())["cells"]
    frames = sum(c["frames_scored"] for c in cells)
    model, _, _ = surgclip.load("tiny", device="cpu", num_frames=num_frames)
    size = model.preprocess_cfg.image_size
    clips = torch.randn(batch, num_frames, 3, size, size)
    with torch.no_grad():
        model.encode_video(clips)
        t0 = time.perf_counter()
        for _ in range(max(1, frames // batch)):
            model.encode_video(clips)
    bare_s = time.perf_counter() - t0
    bare_rate, suite_rate = max(1, frames // batch) * batch / bare_s, frames / suite_s
    print(f"suite surglavi on the sample: exit {code}, {len(cells)} cells, {frames} labelled frames in {suite_s:.1f} s "
          f"-> {suite_rate:.1f} frames/s (includes model load and report writing)")
    print(f"bare encode_video, tiny, {num_frames} frames, batch {batch}: {bare_rate:.1f} clips/s")
    print(f"ratio bare / suite: {bare_rate / suite_rate:.2f}")
    Recorder(__file__, out_file).add(f"suite surglavi on the sample, tiny, {num_frames} frames, batch {batch}", {
        "exit": code, "cells": len(cells), "frames_scored": frames, "suite_s": suite_s, "suite_frames_per_s": suite_rate,
        "bare_clips_per_s": bare_rate, "ratio_bare_to_suite": bare_rate / suite_rate},
        ratio=bare_rate / suite_rate, ratio_of="bare encode_video clips/s / suite labelled frames/s")


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--sample", default="data/sample")
    p.add_argument("--num-frames", type=int, default=8)
    p.add_argument("--batch", type=int, default=8)
    add_out_argument(p, __file__)
    a = p.parse_args()
    run(ensure_sample(a.sample), a.num_frames, a.batch, a.out)
