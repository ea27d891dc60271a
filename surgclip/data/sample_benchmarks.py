"""Tiny synthetic datasets in each benchmark's official released layout (``<sample>/benchmarks/``).

Four short procedures are drawn and rendered once with the sample's own scene renderer (phase ->
scene, step -> instrument, task -> motion), time-compressed to ``DURATION`` seconds; every benchmark
re-uses those frames under its own video names and writes labels in its released format, mapping
the sample's phase, step, instrument and action onto the benchmark's classes by a fixed rule so
that the picture still follows the label. Two procedures fill a training split and two a test
split (official video ids where the benchmark has them)::

    cholec80/        videos/videoNN.mp4, phase_annotations/, tool_annotations/, fps.json
    autolaparo/      videos/NN.mp4, labels/label_NN.txt
    multibypass140/  {StrasBypass70,BernBypass70}/videos/<P>NN.mp4, labels/<site>/labels_by70/<P>NN.mp4.json
    grasp/           frames/CASEnnn/<30-fps index:09d>.jpg, annotations/grasp_{long,short}-term_{train,test}.json, fps.json
    sarrarp50/       video_N/{video_left.avi, action_discrete.txt}
    cholect50/       videos/VIDnn/<index:06d>.png (1 fps), labels/VIDnn.json
    surglavi/        videos/<name>.mp4, phase.json, phase_frames.csv
    heichole/        Videos/Full/Hei-Chole<N>.mp4, Annotations/{Phase,Instrument}/Hei-Chole<N>_Annotation_*.csv, fps.json
"""
from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path

import numpy as np

from ..utils import atomic_write_json, atomic_write_text
from .sample_text import PHASES, TOOLS

DURATION = 10.0  # seconds per synthetic procedure
BENCH_SIZE = 112
POOL = 4  # procedures: 0, 1 = training split, 2, 3 = test split
PROTOCOLS = Path(__file__).resolve().parents[1] / "benchmarks"


def _protocol(name: str) -> dict:
    return json.loads((PROTOCOLS / f"{name}.json").read_text())


def _compress(plan, duration: float):
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


class _Procedure:
    """One rendered procedure: frames at ``fps`` and label lookups by time."""

    def __init__(self, plan, frames: list, fps: float, mp4: Path):
        self.plan, self.frames, self.fps, self.mp4 = plan, frames, fps, mp4

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


def _step_key(proc: _Procedure, t: float, num: int) -> int:
    """A class id for the step at ``t``: the same sample step always maps to the same id."""
    key = proc.step(t).label + proc.step(t).tool
    return sum(map(ord, key)) % num


def _copy_video(proc: _Procedure, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(proc.mp4, dst)


def _write_frames(proc: _Procedure, folder: Path, times: list[float], names: list[str]) -> None:
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    for t, name in zip(times, names):
        Image.fromarray(proc.frame_at(t)).save(folder / name)


def _cholec80(out: Path, procs: list[_Procedure]) -> None:
    ids = [1, 2, 49, 50]
    fps = procs[0].fps
    for vid, p in zip(ids, procs):
        name = f"video{vid:02d}"
        _copy_video(p, out / "videos" / f"{name}.mp4")
        n = len(p.frames)
        atomic_write_text(out / "phase_annotations" / f"{name}-phase.txt",
                          "Frame\tPhase\n" + "".join(f"{i}\t{PHASES[p.phase(i / fps)]}\n" for i in range(n)))
        lines = ["Frame\t" + "\t".join(TOOLS)]
        lines += [f"{i}\t" + "\t".join(str(int(p.tool(i / fps) == k)) for k in range(len(TOOLS)))
                  for i in range(0, n, int(round(fps)))]
        atomic_write_text(out / "tool_annotations" / f"{name}-tool.txt", "\n".join(lines) + "\n")
    atomic_write_json(out / "fps.json", {"label_fps": fps, "note": "label frame numbers count frames of these "
                                         f"{fps:g}-fps videos (Cholec80 itself: 25)"})


def _autolaparo(out: Path, procs: list[_Procedure]) -> None:
    for vid, p in zip([1, 2, 15, 16], procs):
        _copy_video(p, out / "videos" / f"{vid:02d}.mp4")
        rows = "".join(f"{s}\t{p.phase(s) + 1}\n" for s in p.seconds())  # 1-based phases, 1 fps
        atomic_write_text(out / "labels" / f"label_{vid:02d}.txt", "Frame\tPhase\n" + rows)


def _intervals(p: _Procedure, label_of, names: list[str]) -> list[dict]:
    """Run-length intervals (ms) of a per-second label function."""
    out, secs = [], p.seconds()
    labels = [label_of(s) for s in secs]
    start = 0
    for i in range(1, len(secs) + 1):
        if i == len(secs) or labels[i] != labels[start]:
            out.append({"start": int(secs[start] * 1000), "end": int((secs[i - 1] + 1) * 1000),
                        "label_name": names[labels[start]], "label_id": int(labels[start])})
            start = i
    return out


def _multibypass(out: Path, procs: list[_Procedure]) -> None:
    """Label JSONs, videos, and fold-0 split pickles in the official layout (plain dicts only)."""
    import pickle

    from ..utils import atomic_path

    proto = _protocol("multibypass140")
    phases = [c["name"] for c in proto["classes"]]
    steps = [c["name"] for c in proto["step_classes"]]
    ids = {"bern": [12, 18, 2, 3], "strasbourg": [1, 2, 9, 20]}  # Bern: fold-1 val + test ids
    for site, info in proto["sites"].items():
        records = {}
        for vid, p in zip(ids[site], procs):
            name = f"{info['prefix']}{vid:02d}"
            _copy_video(p, out / info["folder"] / "videos" / f"{name}.mp4")
            phase_of = lambda s, p=p: min(p.phase(s) * 11 // 6, 11)
            data = {"phases": _intervals(p, phase_of, phases),
                    "steps": _intervals(p, lambda s: _step_key(p, s, len(steps)), steps)}
            atomic_write_json(out / "labels" / info["labels"] / "labels_by70" / f"{name}.mp4.json", data)
            records[name] = [{"Frame_id": f"{name}_{s + 1:08d}", "Original_frame_id": int(s), "Phase_gt": phase_of(s),
                              "Step_gt": _step_key(p, s, len(steps)), "unique_id": vid * 100000 + int(s)}
                             for s in p.seconds()]
        train, test = list(records)[:2], list(records)[2:]
        # fold 0 of this sample: the training procedures also serve as val (only four procedures exist)
        for split, names in {"train": train, "val": train, "test": test}.items():
            path = out / "labels" / info["labels"] / "labels_by70_splits" / "labels" / split / "1fps_0.pickle"
            with atomic_path(path) as tmp:
                tmp.write_bytes(pickle.dumps({n: records[n] for n in names}, protocol=4))


def _grasp(out: Path, procs: list[_Procedure]) -> None:
    proto = _protocol("grasp")
    frames_fps = procs[0].fps
    cats = {k: proto[f"{k}_classes"] for k in ("phases", "steps", "instruments")}
    splits = {"train": [1, 2], "test": [41, 47]}
    for split, cases in splits.items():
        long_term = {"phases_categories": cats["phases"], "steps_categories": cats["steps"], "images": [], "annotations": []}
        short_term = {"categories": cats["instruments"], "images": [], "annotations": []}  # as released
        for case, p in zip(cases, procs[:2] if split == "train" else procs[2:]):
            video = f"CASE{case:03d}"
            n = len(p.frames)
            names = [f"{round(i / frames_fps * 30):09d}.jpg" for i in range(n)]
            _write_frames(p, out / "frames" / video, [i / frames_fps for i in range(n)], names)
            for s in p.seconds():  # long-term labels at 1 fps, short-term boxes every 2 s
                frame = int(s * 30)
                img = {"id": len(long_term["images"]) + 1 + 10000 * case, "file_name": f"{video}/{frame:09d}.jpg",
                       "video_name": video, "frame_num": frame, "width": BENCH_SIZE, "height": BENCH_SIZE}
                long_term["images"].append(img)
                long_term["annotations"].append({"id": img["id"], "image_id": img["id"],
                                                 "phases": min(p.phase(s) * 10 // 6, 10),
                                                 "steps": _step_key(p, s, len(cats["steps"]))})
                if s % 2 == 0:
                    short_term["images"].append(dict(img))
                    short_term["annotations"].append({"id": img["id"], "image_id": img["id"], "bbox": [10, 10, 40, 40],
                                                      "category_id": p.tool(s) % 7 + 1, "instruments": p.tool(s) % 7 + 1})
        atomic_write_json(out / "annotations" / f"grasp_long-term_{split}.json", long_term)
        atomic_write_json(out / "annotations" / f"grasp_short-term_{split}.json", short_term)
    atomic_write_json(out / "fps.json", {"frames_fps": frames_fps, "label_fps": 30,
                                         "note": "frames every 6th 30-fps frame, named by 30-fps index"})


SAR_ACTIONS = {"insert": 1, "hold": 2, "dissect": 3, "retract": 4, "clip": 5, "cut": 6, "pack": 7}


def _sarrarp50(out: Path, procs: list[_Procedure]) -> None:
    import av

    for vid, p in zip([1, 2, 41, 42], procs):
        folder = out / f"video_{vid}"
        folder.mkdir(parents=True, exist_ok=True)
        with av.open(str(folder / "video_left.avi"), "w") as container:  # AVI as released (MPEG-4 part 2 here)
            stream = container.add_stream("mpeg4", rate=int(p.fps))
            stream.width = stream.height = BENCH_SIZE
            stream.pix_fmt = "yuv420p"
            for arr in p.frames:
                for packet in stream.encode(av.VideoFrame.from_ndarray(arr, format="rgb24")):
                    container.mux(packet)
            for packet in stream.encode():
                container.mux(packet)
        rows = [f"{f},{SAR_ACTIONS.get(p.task(f / 60), 0)}" for f in range(0, int(p.plan.duration * 60), 6)]
        atomic_write_text(folder / "action_discrete.txt", "\n".join(rows) + "\n")


def _cholect50(out: Path, procs: list[_Procedure]) -> None:
    proto = _protocol("cholect50")
    triplets = [c["name"].split(",") for c in proto["classes"]]
    instruments = [c["name"] for c in proto["instrument_classes"]]
    verbs = [c["name"] for c in proto["verb_classes"]]
    targets = [c["name"] for c in proto["target_classes"]]
    tool_map = {"Grasper": "grasper", "Bipolar": "bipolar", "Hook": "hook", "Scissors": "scissors", "Clipper": "clipper",
                "Irrigator": "irrigator", "SpecimenBag": "grasper"}
    cats = {"instrument": {str(i): n for i, n in enumerate(instruments)}, "verb": {str(i): n for i, n in enumerate(verbs)},
            "target": {str(i): n for i, n in enumerate(targets)},
            "triplet": {str(i): ",".join(t) for i, t in enumerate(triplets)},
            "phase": {str(i): n for i, n in enumerate(PHASES)}}
    for vid, p in zip([1, 15, 6, 10], procs):
        name = f"VID{vid:02d}"
        secs = p.seconds()
        _write_frames(p, out / "videos" / name, list(map(float, secs)), [f"{s:06d}.png" for s in secs])
        annotations = {}
        for s in secs:
            tool, verb = tool_map[p.step(s).tool], p.task(s)
            verb = verb if verb in verbs else "null_verb"
            options = [i for i, t in enumerate(triplets) if t[0] == tool and t[1] == verb] or \
                      [i for i, t in enumerate(triplets) if t[0] == tool]
            tid = options[0]
            i, v, t = triplets[tid]
            annotations[str(int(s))] = [[tid, instruments.index(i), 1.0, 0.1, 0.1, 0.2, 0.2, verbs.index(v),
                                         targets.index(t), 1.0, -1, -1, -1, -1, p.phase(s)]]
        atomic_write_json(out / "labels" / f"{name}.json", {"fps": 1, "num_frames": len(secs), "video": vid,
                                                             "categories": cats, "annotations": annotations})


def _surglavi(out: Path, procs: list[_Procedure]) -> None:
    desc = _protocol("cholec80")["prompts"]["surgclip"]
    cats = [{"id": i, "name": n, "description": d} for i, (n, d) in enumerate(zip(PHASES, desc))]
    images, anns, frames = [], [], ["video,frame"]
    for k, p in enumerate(procs[2:]):
        name = f"lc_eval{k + 1:02d}"
        _copy_video(p, out / "videos" / f"{name}.mp4")
        for s in p.seconds():
            images.append({"id": len(images), "video": name, "frame": int(s)})
            anns.append({"image_id": images[-1]["id"], "category_id": p.phase(s)})
            frames.append(f"{name},{int(s)}")
    atomic_write_json(out / "phase.json", {"categories": cats, "images": images, "annotations": anns})
    atomic_write_text(out / "phase_frames.csv", "\n".join(frames) + "\n")


WRITERS = {"cholec80": _cholec80, "autolaparo": _autolaparo, "multibypass140": _multibypass, "grasp": _grasp,
           "sarrarp50": _sarrarp50, "cholect50": _cholect50, "surglavi": _surglavi}


def write_sample_benchmarks(root: Path, seed: int = 0, fps: float = 5.0, size: int = BENCH_SIZE) -> dict:
    """Write ``root/benchmarks/<benchmark>/`` for every benchmark (see the module docstring).

    Args:
        root: the sample root (being built).
        seed: the procedures are drawn from ``(seed, 2024)``.
        fps, size: frame rate and square size of the rendered procedures.
    Returns:
        {"benchmarks": [...], "procedures": POOL, "seconds": DURATION}.
    """
    from ..evaluation.heichole import write_sample as write_heichole
    from .sample import encode_h264, plan_video, render_video

    writers = {**WRITERS, "heichole": write_heichole}
    rng = np.random.default_rng([seed, 2024])
    out = Path(root) / "benchmarks"
    procs = []
    for i in range(POOL):
        plan = _compress(plan_video(1000 + i, f"bench{i}", rng, fps), DURATION)
        frames = list(render_video(plan, seed, fps, size))
        mp4 = out / ".pool" / f"bench{i}.mp4"
        encode_h264(iter(frames), mp4, fps, size)
        procs.append(_Procedure(plan, frames, fps, mp4))
    for name, writer in writers.items():
        writer(out / name, procs)
    shutil.rmtree(out / ".pool")
    return {"benchmarks": sorted(writers), "procedures": POOL, "seconds": DURATION, "fps": fps, "size": size}
