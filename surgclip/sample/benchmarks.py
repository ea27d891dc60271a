"""Tiny synthetic datasets in each benchmark's official released layout (``<sample>/benchmarks/``).

``POOL`` short procedures, drawn and rendered once by the sample's own scene renderer
(``sample.benchmark_procedures``: phase -> scene, step -> instrument, task -> motion) and
time-compressed to ``DURATION`` seconds (``compress``), are handed to ``write_sample_benchmarks``.
Every dataset of the registry that has a sample writer (``surgclip.datasets.sample_writers``) writes
``benchmarks/<folder>/`` from those procedures: it re-uses their frames under its own video names
and writes labels in its released format, mapping the sample's phase, step, instrument and action
onto its classes by a fixed rule so that the picture still follows the label. Two procedures fill
a training split and two a test split (official video ids where the benchmark has them).
"""
from __future__ import annotations

import copy
import shutil
from pathlib import Path

import numpy as np

from .text import PHASES, TOOLS

DURATION = 10.0  # seconds per synthetic procedure
BENCH_SIZE = 112
POOL = 4  # procedures: 0, 1 = training split, 2, 3 = test split


def compress(plan, duration: float):
    """A copy of ``plan`` with every segment scaled onto ``duration`` seconds."""
    plan = copy.deepcopy(plan)
    k = duration / plan.duration
    for seg in plan.phases + plan.steps + plan.tasks:
        seg.start, seg.end = seg.start * k, seg.end * k
    plan.duration = duration
    return plan


def _at(segments, t: float):
    starts = np.array([s.start for s in segments])
    return segments[int(np.searchsorted(starts, t + 1e-9, side="right")) - 1]


class Procedure:
    """One rendered procedure as a sample writer sees it: frames, labels by time, and the file
    operations the writers share.

    Attributes:
        plan: the procedure's plan (phases, steps, tasks as timed segments).
        frames: rendered frames, uint8 ``[size, size, 3]`` each, at ``fps``.
        fps, size, duration: frame rate, square frame size, seconds.
        mp4: the frames encoded as H.264.
        phase_names, tool_names: names of the ids ``phase(t)`` and ``tool(t)`` return (the Cholec80
            phases and tools, which the sample's are).
    """

    phase_names, tool_names = PHASES, TOOLS

    def __init__(self, plan, frames: list, fps: float, mp4: Path, size: int):
        self.plan, self.frames, self.fps, self.mp4, self.size = plan, frames, fps, mp4, int(size)
        self.duration = plan.duration

    def phase(self, t: float) -> int:
        return PHASES.index(_at(self.plan.phases, t).phase)

    def step(self, t: float):
        return _at(self.plan.steps, t)

    def tool(self, t: float) -> int:
        return TOOLS.index(self.step(t).tool)

    def task(self, t: float) -> str:
        return _at(self.plan.tasks, t).label

    def seconds(self) -> np.ndarray:
        return np.arange(int(self.plan.duration))

    def frame_at(self, t: float) -> np.ndarray:
        return self.frames[min(int(round(t * self.fps)), len(self.frames) - 1)]

    def step_key(self, t: float, num: int) -> int:
        """A class id in ``0..num-1`` for the step at ``t``: the same sample step always maps to the same id."""
        key = self.step(t).label + self.step(t).tool
        return sum(map(ord, key)) % num

    def intervals(self, label_of, names: list[str]) -> list[dict]:
        """Run-length intervals (ms) ``{start, end, label_name, label_id}`` of a per-second label function."""
        out, secs = [], self.seconds()
        labels = [label_of(s) for s in secs]
        start = 0
        for i in range(1, len(secs) + 1):
            if i == len(secs) or labels[i] != labels[start]:
                out.append({"start": int(secs[start] * 1000), "end": int((secs[i - 1] + 1) * 1000),
                            "label_name": names[labels[start]], "label_id": int(labels[start])})
                start = i
        return out

    def copy_video(self, dst: Path) -> None:
        """The H.264 video copied to ``dst`` (folders created)."""
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(self.mp4, dst)

    def write_frames(self, folder: Path, times: list[float], names: list[str]) -> None:
        """The frame shown at each of ``times`` written as ``folder/<name>`` (format by extension)."""
        from PIL import Image

        folder.mkdir(parents=True, exist_ok=True)
        for t, name in zip(times, names):
            Image.fromarray(self.frame_at(t)).save(folder / name)


def pool_folder(root: Path) -> Path:
    """Where the procedures' videos are encoded while the benchmarks of the sample at ``root`` are
    written (``write_sample_benchmarks`` removes it)."""
    return Path(root) / "benchmarks" / ".pool"


def write_sample_benchmarks(root: Path, procs: list[Procedure]) -> dict:
    """Write ``root/benchmarks/<folder>/`` for every dataset with a sample writer (see the module docstring).

    Args:
        root: the sample root (being built).
        procs: the ``POOL`` rendered procedures, their videos under ``pool_folder(root)``.
    Returns:
        {"benchmarks": [...], "procedures": POOL, "seconds": DURATION, "fps", "size"}.
    """
    from ..datasets import sample_writers

    writers = sample_writers()
    out = Path(root) / "benchmarks"
    for folder, dataset in writers.items():
        dataset.write_sample(out / folder, procs)
    shutil.rmtree(pool_folder(root))
    return {"benchmarks": sorted(writers), "procedures": len(procs), "seconds": procs[0].duration,
            "fps": procs[0].fps, "size": procs[0].size}
