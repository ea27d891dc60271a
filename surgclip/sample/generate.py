"""The bundled sample dataset: synthetic laparoscopic cholecystectomies with SurgLaVi captions.

``make_sample(out_dir, seed)`` writes, deterministically from ``seed``::

    captions.sqlite                      SurgLaVi schema, captions at levels 1 (task), 2 (step), 3 (phase)
    videos/{name}/{name}.mp4             real H.264 (libx264), SIZE x SIZE, FPS fps, 40-75 s each
    splits.json                          {"train": [...], "val": [...], "test": [...]} video names
    cholec80/videos/videoNN.mp4          the test videos again, in the Cholec80 layout (NN = 49, 50, ...)
    cholec80/phase_annotations/videoNN-phase.txt   "Frame\\tPhase", one row per frame of the video
    cholec80/tool_annotations/videoNN-tool.txt     "Frame\\tGrasper\\t...\\tSpecimenBag", one row per second
    cholec80/fps.json                    fps of those videos and annotation strides, name mapping
    frames/{name}/000000.jpg ...         every frame of every video (``extract-frames``): the fast training path
    benchmarks/<name>/                   a tiny dataset per benchmark in its official layout (``surgclip.sample.benchmarks``)
    manifest.json                        seed, version, counts (written last: marks a complete sample)

The phase sets the scene, the step the instrument and the task the motion (``surgclip.sample.scenes``);
captions are varied sentences (``surgclip.sample.text``). DB content and decoded frames depend only on the
seed; the mp4 bytes may differ between libx264 builds.
"""
from __future__ import annotations

import json
import math
import os
import shutil
import sqlite3
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..utils import atomic_write_json, atomic_write_text
from . import benchmarks as bench
from . import scenes, text
from .text import PHASES, TOOLS

SAMPLE_VERSION = 4  # 2: benchmarks/ (every benchmark's official layout); 3: frames/; 4: benchmarks/heichole/
DEFAULT_ROOT = "data/sample"
FPS = 5
SIZE = 160
SPLIT_SIZES = {"train": 24, "val": 4, "test": 6}
FIRST_TEST_NUMBER = 49  # Cholec80 test videos are 49-80
PHASE_WEIGHTS = np.array([0.08, 0.25, 0.12, 0.22, 0.08, 0.15, 0.10])
SCHEMA_SQL = Path(__file__).resolve().parent.parent / "data" / "schema.sql"


@dataclass
class Segment:
    """A labelled span of a video: ``label`` is a phase, step key or task; times in seconds."""

    start: float
    end: float
    label: str
    phase: str
    tool: str = ""
    target: str = ""
    params: dict = field(default_factory=dict)


@dataclass
class VideoPlan:
    """Everything needed to render one video and write its captions."""

    index: int
    name: str
    duration: float
    phases: list
    steps: list
    tasks: list


def _snap(t: float, fps: float) -> float:
    return round(t * fps) / fps


def plan_video(index: int, name: str, rng: np.random.Generator, fps: float) -> VideoPlan:
    """Draw the phase / step / task timeline of one video."""
    duration = float(rng.integers(40, 76))
    order = list(PHASES)
    weights = list(rng.dirichlet(PHASE_WEIGHTS * 40))
    if rng.random() < 0.12:  # CleaningCoagulation skipped
        i = order.index("CleaningCoagulation")
        order.pop(i), weights.pop(i)
    elif rng.random() < 0.2:  # and sometimes repeated after retraction, as in Cholec80
        order.append("CleaningCoagulation"), weights.append(0.05)
    w = np.maximum(np.asarray(weights) / np.sum(weights) * duration, 3.0)
    bounds = np.concatenate([[0], np.cumsum(w / w.sum() * duration)])
    bounds = [_snap(b, fps) for b in bounds]
    phases, steps, tasks = [], [], []
    for phase, a, b in zip(order, bounds[:-1], bounds[1:]):
        phases.append(Segment(a, b, phase, phase))
        options = text.STEPS[phase]
        k = int(rng.integers(len(options))) if phase != "ClippingCutting" else 0
        t = a
        while t < b - 1e-9:
            end = _snap(min(b, t + rng.uniform(3, 9)), fps)
            if b - end < 2:
                end = b
            key, tool, targets, allowed = options[k % len(options)]
            target = targets[int(rng.integers(len(targets)))]
            entry_side = int(rng.integers(3))
            steps.append(Segment(t, end, key, phase, tool, target, {"side": entry_side, "pos": rng.uniform(0.2, 0.8)}))
            u, last = t, None
            while u < end - 1e-9:
                tend = _snap(min(end, u + rng.uniform(1.6, 4.0)), fps)
                if end - tend < 1.2:
                    tend = end
                choices = [x for x in allowed if x != last] or allowed
                task = choices[int(rng.integers(len(choices)))]
                tasks.append(Segment(u, tend, task, phase, tool, target, {
                    "offset": rng.uniform(-12, 12, 2).tolist(), "freq": rng.uniform(0.7, 1.2),
                    "period": rng.uniform(1.2, 1.8), "flash_seed": int(rng.integers(1 << 30))}))
                last, u = task, tend
            k, t = k + 1, end
    return VideoPlan(index, name, duration, phases, steps, tasks)


def _target(style: scenes.VideoStyle, phase: str, step: Segment, progress: float) -> tuple[float, float]:
    s = style.size
    ax, ay = float(style.anchor[0]), float(style.anchor[1])
    x, y = {
        "Preparation": (ax, ay + 0.15 * s),
        "CalotTriangleDissection": (ax, ay),
        "ClippingCutting": (0.3 * s + 9 * (1 + int(progress * 4)), ay + 6),
        "GallbladderDissection": (ax, ay + 0.06 * s),
        "GallbladderPackaging": style.bag_pos if step.tool == "SpecimenBag" else (0.3 * s, 0.35 * s),
        "CleaningCoagulation": style.spots[1][:2] if step.tool == "Bipolar" else style.spots[0][:2],
        "GallbladderRetraction": (style.bag_pos[0] + (style.port_exit[0] - style.bag_pos[0]) * progress,
                                  style.bag_pos[1] + (style.port_exit[1] - style.bag_pos[1]) * progress),
    }[phase]
    return scenes.scene_point(style, x, y)


def _entry(style: scenes.VideoStyle, step: Segment) -> tuple[float, float]:
    s, p = style.size, step.params["pos"] * style.size
    return [(0.0, p), (s - 1.0, p), (p, s - 1.0)][step.params["side"]]


def render_video(plan: VideoPlan, seed: int, fps: float = FPS, size: int = SIZE):
    """Yield the frames of ``plan``: uint8 [S, S, 3] each, deterministic from (seed, plan.index)."""
    rng = np.random.default_rng([seed, plan.index, 1])
    style = scenes.VideoStyle(rng, size)
    n = int(round(plan.duration * fps))
    starts = {k: np.array([seg.start for seg in getattr(plan, k)]) for k in ("phases", "steps", "tasks")}
    brightness, shake = 1.0, np.zeros(2)
    for i in range(n):
        t = i / fps
        ph, st, tk = (getattr(plan, k)[int(np.searchsorted(starts[k], t + 1e-9, side="right")) - 1]
                      for k in ("phases", "steps", "tasks"))
        progress = (t - ph.start) / max(ph.end - ph.start, 1e-6)
        img = scenes.draw_scene(style, ph.phase, progress)
        entry = _entry(style, st)
        bx, by = _target(style, ph.phase, st, progress)
        bx, by = bx + tk.params["offset"][0], by + tk.params["offset"][1]
        ex, ey = entry
        d = math.hypot(bx - ex, by - ey) or 1.0
        ux, uy = (bx - ex) / d, (by - ey) / d
        tau, frac = t - tk.start, (t - tk.start) / max(tk.end - tk.start, 1e-6)
        jaw, flash, stream, carry = 0.4, 0.0, None, None
        tremor = rng.normal(0, 0.7, 2)
        tip = np.array([bx, by]) + tremor
        task = tk.label
        if task == "insert":
            tip = np.array([ex, ey]) + np.array([ux, uy]) * d * (0.35 + 0.65 * frac)
        elif task == "retract":
            tip = tip - np.array([ux, uy]) * 28 * frac
            jaw = 0.1
            carry = (0.84, 0.88, 0.97) if ph.phase == "GallbladderRetraction" else (0.43, 0.60, 0.30)
        elif task == "hold":
            jaw = 0.1
        elif task == "dissect":
            tip = tip + np.array([ux, uy]) * 6 * math.sin(2 * math.pi * tk.params["freq"] * tau)
        elif task == "coagulate":
            flash = float(np.random.default_rng([tk.params["flash_seed"], i]).random() < 0.45)
        elif task == "clip":
            jaw = 1.0 - (tau % tk.params["period"]) / tk.params["period"]
        elif task == "cut":
            jaw = 0.5 + 0.5 * math.sin(2 * math.pi * 1.4 * tau)
            tip = tip + np.array([ux, uy]) * 5 * frac
        elif task == "irrigate":
            stream = tau * fps
        elif task == "aspirate":
            tip = tip + np.array([-uy, ux]) * 12 * math.sin(2 * math.pi * 0.5 * tau)
        elif task == "pack":
            bag = scenes.scene_point(style, *style.bag_pos)
            tip = tip + (np.array(bag) - tip) * frac
            jaw, carry = 0.1, (0.43, 0.60, 0.30)
        scenes.draw_tool(style, img, st.tool, entry, (float(tip[0]), float(tip[1])), jaw, flash, stream, carry)
        brightness = float(np.clip(brightness + rng.normal(0, 0.01), 0.85, 1.1))
        shake = np.clip(shake + rng.normal(0, 0.6, 2), -4, 4)
        yield scenes.finish(style, img, brightness, (int(shake[1]), int(shake[0])), int(rng.integers(6)))


def encode_h264(frames, path: Path, fps: float, size: int, crf: int = 30) -> int:
    """Encode uint8 [S, S, 3] frames to an H.264 mp4 with PyAV/libx264 (single-threaded: reproducible).

    Returns the number of frames written. The file appears atomically at ``path``.
    """
    import av
    from fractions import Fraction

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp.mp4")
    count = 0
    with av.open(str(tmp), mode="w") as container:
        stream = container.add_stream("libx264", rate=Fraction(fps).limit_denominator(1000))
        stream.width = stream.height = size
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": str(crf), "preset": "veryfast", "threads": "1", "g": str(int(2 * fps)),
                          "bf": "0"}
        for arr in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(arr, format="rgb24")):
                container.mux(packet)
            count += 1
        for packet in stream.encode():
            container.mux(packet)
    os.replace(tmp, path)
    return count


def benchmark_procedures(root: Path, seed: int, fps: float, size: int = bench.BENCH_SIZE) -> list:
    """The ``benchmarks.POOL`` procedures the sample's benchmarks are written from: drawn from
    ``(seed, 2024)``, time-compressed to ``benchmarks.DURATION`` seconds, rendered at ``fps``
    and ``size`` and encoded under ``benchmarks.pool_folder(root)``."""
    rng = np.random.default_rng([seed, 2024])
    procs = []
    for i in range(bench.POOL):
        plan = bench.compress(plan_video(1000 + i, f"bench{i}", rng, fps), bench.DURATION)
        frames = list(render_video(plan, seed, fps, size))
        mp4 = bench.pool_folder(root) / f"bench{i}.mp4"
        encode_h264(iter(frames), mp4, fps, size)
        procs.append(bench.Procedure(plan, frames, fps, mp4, size))
    return procs


def _render_job(job) -> tuple[str, int]:
    plan, seed, fps, size, out = job
    return plan.name, encode_h264(render_video(plan, seed, fps, size), Path(out), fps, size)


def frame_labels(plan: VideoPlan, fps: float) -> tuple[list[str], list[str]]:
    """Per-frame phase names and step tools (frame i at time i / fps)."""
    n = int(round(plan.duration * fps))
    starts_p = np.array([p.start for p in plan.phases])
    starts_s = np.array([s.start for s in plan.steps])
    idx_p = np.searchsorted(starts_p, np.arange(n) / fps + 1e-9, side="right") - 1
    idx_s = np.searchsorted(starts_s, np.arange(n) / fps + 1e-9, side="right") - 1
    return [plan.phases[i].phase for i in idx_p], [plan.steps[i].tool for i in idx_s]


def _write_db(path: Path, plans: list[VideoPlan], seed: int, fps: float, size: int) -> dict:
    rng = np.random.default_rng([seed, 999])
    con = sqlite3.connect(str(path))
    con.executescript(SCHEMA_SQL.read_text())
    con.executemany("INSERT INTO levels VALUES (?, ?)", [(1, "task"), (2, "step"), (3, "phase")])
    counts, cid = {1: 0, 2: 0, 3: 0, "dropped_by_default_filter": 0}, 0
    for plan in plans:
        rows = []
        for level, segs in ((3, plan.phases), (2, plan.steps), (1, plan.tasks)):
            for seg in segs:
                if level == 3:
                    cap = text.phase_caption(seg.phase, rng)
                elif level == 2:
                    cap = text.step_caption(seg.label, seg.tool, seg.target, rng)
                else:
                    cap = text.task_caption(seg.label, seg.tool, seg.target, rng)
                rows.append((level, seg.start, seg.end, cap, text.raw_narration(cap, rng), 1, 1))
                counts[level] += 1
        if plan.index % 3 == 0:  # rows the default filter drops
            a = float(rng.integers(0, int(plan.duration) - 5))
            rows.append((2, a, a + 4.0, text.NON_DESCRIPTIVE[plan.index % 3], "", 1, 0))
            rows.append((1, a + 1, a + 3.0, text.NON_SURGICAL[plan.index % 3], "", 0, 1))
            counts["dropped_by_default_filter"] += 2
        rows.sort(key=lambda r: (r[1], -r[0]))
        n_frames = int(round(plan.duration * fps))
        con.execute("INSERT INTO videos VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", (
            plan.index + 1, f"Laparoscopic cholecystectomy, synthetic case {plan.index + 1}", plan.name, "",
            f"{int(plan.duration) // 60}:{int(plan.duration) % 60:02d}", 2024, float(fps), plan.duration, n_frames,
            size, size, "", "Synthetic laparoscopic cholecystectomy generated by surgclip.sample",
            "laparoscopic", "cholecystectomy", "general surgery", "hepatobiliary", len(rows)))
        for level, a, b, cap, raw, surgical, descriptive in rows:
            cid += 1
            con.execute("INSERT INTO captions VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", (
                cid, plan.index + 1, plan.name, level, raw, round(a, 3), round(b, 3), round(b - a, 3), surgical,
                descriptive, cap))
        if plan.index < 2:
            narration = " ".join(text.raw_narration(text.phase_caption(p.phase, rng), rng) for p in plan.phases)
            con.execute("INSERT INTO transcriptions VALUES (?, ?, ?, ?)",
                        (plan.index + 1, plan.index + 1, f"transcripts/{plan.name}.txt", narration))
    con.commit()
    con.close()
    return counts


def _write_cholec80(root: Path, plans: list[VideoPlan], fps: float) -> dict:
    out = root / "cholec80"
    mapping = {}
    for k, plan in enumerate(plans):
        number = f"video{FIRST_TEST_NUMBER + k:02d}"
        mapping[number] = plan.name
        (out / "videos").mkdir(parents=True, exist_ok=True)
        shutil.copyfile(root / "videos" / plan.name / f"{plan.name}.mp4", out / "videos" / f"{number}.mp4")
        phases, tools = frame_labels(plan, fps)
        atomic_write_text(out / "phase_annotations" / f"{number}-phase.txt",
                          "Frame\tPhase\n" + "".join(f"{i}\t{p}\n" for i, p in enumerate(phases)))
        step = int(round(fps))
        lines = ["Frame\t" + "\t".join(TOOLS)]
        lines += [f"{i}\t" + "\t".join(str(int(tools[i] == t)) for t in TOOLS) for i in range(0, len(tools), step)]
        atomic_write_text(out / "tool_annotations" / f"{number}-tool.txt", "\n".join(lines) + "\n")
    atomic_write_json(out / "fps.json", {
        "fps": fps, "phase_every_frames": 1, "tool_every_frames": int(round(fps)),
        "note": "frame indices are frames of these videos (Cholec80 itself is 25 fps with tools every 25 frames)",
        "videos": mapping})
    return mapping


def make_sample(out_dir: str | Path = DEFAULT_ROOT, seed: int = 0, num_videos: int | None = None, fps: float = FPS,
                size: int = SIZE, workers: int | None = None, split_sizes: dict | None = None,
                frames: bool = True) -> Path:
    """Generate the sample dataset into ``out_dir`` (built in a temp folder, then moved into place).

    Args:
        out_dir: destination; must not exist yet (or be empty).
        seed: everything is a function of it.
        num_videos: total videos (default: the sum of ``split_sizes``); splits shrink proportionally.
        fps, size: frame rate and square frame size of the videos.
        workers: render processes (default: up to 2).
        split_sizes: {"train", "val", "test"} counts (default 24 / 4 / 6).
        frames: also extract every frame to ``frames/{name}/`` (JPEG, ``frames.json``), which the
            embedded default trains from (a random clip costs a third of a video seek there).
    Returns:
        The sample root.
    """
    out_dir = Path(out_dir)
    sizes = dict(split_sizes or SPLIT_SIZES)
    if num_videos is not None:
        test = max(1, round(num_videos * sizes["test"] / sum(sizes.values())))
        val = max(1, round(num_videos * sizes["val"] / sum(sizes.values())))
        sizes = {"train": num_videos - test - val, "val": val, "test": test}
        if sizes["train"] < 1:
            raise ValueError(f"num_videos={num_videos} is too small for train/val/test splits (need >= 3)")
    total = sum(sizes.values())
    t0 = time.time()
    rng = np.random.default_rng(seed)
    plans = [plan_video(i, f"lc{i + 1:03d}", rng, fps) for i in range(total)]
    order = np.random.default_rng([seed, 7]).permutation(total)
    names = [plans[i].name for i in order]
    splits = {"train": sorted(names[:sizes["train"]]), "val": sorted(names[sizes["train"]:sizes["train"] + sizes["val"]]),
              "test": sorted(names[sizes["train"] + sizes["val"]:])}
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        jobs = [(p, seed, fps, size, str(tmp / "videos" / p.name / f"{p.name}.mp4")) for p in plans]
        workers = workers or min(2, os.cpu_count() or 1)
        if workers > 1:
            import multiprocessing as mp

            with mp.get_context("fork").Pool(workers) as pool:
                list(pool.imap_unordered(_render_job, jobs))
        else:
            list(map(_render_job, jobs))
        if frames:
            from ..data.extract import extract_frames

            extract_frames(tmp / "videos", tmp / "frames", size=None, workers=workers, progress=False)
        counts = _write_db(tmp / "captions.sqlite", plans, seed, fps, size)
        atomic_write_json(tmp / "splits.json", splits)
        by_name = {p.name: p for p in plans}
        mapping = _write_cholec80(tmp, [by_name[n] for n in splits["test"]], fps)
        benchmarks = bench.write_sample_benchmarks(tmp, benchmark_procedures(tmp, seed, fps))
        import av

        atomic_write_json(tmp / "manifest.json", {
            "generator": "surgclip.sample", "version": SAMPLE_VERSION, "seed": seed, "fps": fps,
            "size": [size, size], "phases": list(PHASES), "tools": list(TOOLS),
            "counts": {"videos": total, **{k: len(v) for k, v in splits.items()},
                       "captions": {f"level{k}": v for k, v in counts.items() if isinstance(k, int)},
                       "dropped_by_default_filter": counts["dropped_by_default_filter"]},
            "cholec80": mapping, "benchmarks": benchmarks, "frames": "frames" if frames else None, "encoder": f"libx264 via PyAV {av.__version__} (crf 30, veryfast, 1 thread)",
            "seconds_to_generate": round(time.time() - t0, 1)})
        if out_dir.exists():
            if any(out_dir.iterdir()):
                raise FileExistsError(f"{out_dir} exists and is not empty; remove it or choose another folder")
            out_dir.rmdir()
        os.replace(tmp, out_dir)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return out_dir


def ensure_sample(root: str | Path = DEFAULT_ROOT, seed: int = 0) -> Path:
    """The sample root, generated once if missing (encoding its videos takes a while; later calls reuse it).

    A root with a ``manifest.json`` of the current version is used as is. Concurrent callers may
    both generate; the first to finish wins and the other's copy is discarded.
    """
    root = Path(root)
    manifest = root / "manifest.json"
    if manifest.is_file():
        meta = json.loads(manifest.read_text())
        if meta.get("version") != SAMPLE_VERSION:
            raise ValueError(f"{root} holds sample version {meta.get('version')}, this code writes {SAMPLE_VERSION}: "
                             f"delete the folder to regenerate it")
        return root
    if root.exists() and any(root.iterdir()):
        raise FileExistsError(f"{root} exists but has no manifest.json (an incomplete sample?): delete it to regenerate")
    try:
        return make_sample(root, seed=seed)
    except FileExistsError:
        if manifest.is_file():  # another process finished first
            return root
        raise
