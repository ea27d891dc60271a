"""Benchmark protocol files (``surgclip/benchmarks/<name>.json``, shipped in the package) and the one
dispatch from a benchmark name to its dataset loader.

A protocol file holds, per task, the class list by id (as released), the official splits, the
label fps, the metric, the prompt sets (``names`` and a descriptive set at least) and the official
layout of the released dataset. ``load_benchmark(name, root, split, task)`` reads a dataset root in
that layout (``loaders.LOADERS[protocol["format"]]``) and returns a ``FrameTable`` with sources.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

from . import formats
from .heichole import load_heichole
from .loaders import LOADERS, LoadOptions, find_video_sources, read_fps_json
from .table import FrameSource, FrameTable

LOADERS = {**LOADERS, "heichole": load_heichole}  # plus the formats that have a module of their own

# Protocols ship inside the package (package-data), so a wheel install finds them.
PROTOCOL_DIR = Path(__file__).resolve().parents[1] / "benchmarks"

# Benchmark names the CLI accepts that are not protocol file names: name -> (protocol, format, options).
ALIASES = {
    "cholec80-csv": ("cholec80", "path_label_csv", {}),
    "autolaparo-csv": ("autolaparo", "path_label_csv", {}),
    "cholect50-txt": ("cholect50", "cholect50-txt", {}),
    "strasbypass70": ("multibypass140", "multibypass140", {"site": "strasbourg"}),
    "bernbypass70": ("multibypass140", "multibypass140", {"site": "bern"}),
}


def benchmark_names() -> list[str]:
    """Every name ``--benchmark`` accepts (protocol files, aliases and ``custom``)."""
    return sorted([p.stem for p in PROTOCOL_DIR.glob("*.json")] + list(ALIASES) + ["custom"])


def protocol_path(name: str) -> Path:
    """The protocol JSON of a benchmark name, or a path to one."""
    path = Path(name)
    if path.suffix == ".json" and path.is_file():
        return path
    path = PROTOCOL_DIR / f"{ALIASES.get(name, (name,))[0]}.json"
    if not path.is_file():
        raise ValueError(f"unknown benchmark {name!r}; known: {benchmark_names()} (protocol files in {PROTOCOL_DIR})")
    return path


def load_protocol(name: str) -> dict:
    """The protocol dict of a benchmark (classes, splits, fps, metric, prompts, layout)."""
    return json.loads(protocol_path(name).read_text())


def class_names(entries: list[dict]) -> list[str]:
    """Names indexed by id from ``[{id, name}]``; ids must be 0..C-1 without gaps."""
    by_id = {int(e["id"]): e["name"] for e in entries}
    if sorted(by_id) != list(range(len(by_id))):
        raise ValueError(f"class ids must be 0..{len(by_id) - 1}, found {sorted(by_id)}")
    return [by_id[i] for i in range(len(by_id))]


def default_task(protocol: dict) -> str:
    return protocol.get("task") or next(iter(protocol.get("tasks") or {"phase": None}))


def task_spec(protocol: dict, task: str | None) -> dict:
    """The ``tasks[task]`` entry (classes key, prompts key, multilabel, default prompt set)."""
    task = task or default_task(protocol)
    tasks = protocol.get("tasks") or {task: {"classes": "classes", "prompts": "prompts"}}
    if task not in tasks and protocol.get("format") != "surglavi":
        raise ValueError(f"benchmark {protocol['name']} has no task {task!r}; tasks: {sorted(tasks)}")
    return tasks.get(task, {})


def task_classes(protocol: dict, task: str | None) -> list[str]:
    """Class names in id order of a task. Ids need not start at 0 (GraSP instruments are 1-7)."""
    entries = protocol[task_spec(protocol, task).get("classes", "classes")]
    ids = sorted(int(e["id"]) for e in entries)
    if ids != list(range(ids[0], ids[0] + len(ids))):
        raise ValueError(f"{protocol['name']}/{task}: class ids must be consecutive, found {ids}")
    by_id = {int(e["id"]): e["name"] for e in entries}
    return [by_id[i] for i in ids]


def get_prompts(protocol: dict, prompt_set: str | os.PathLike, classes: list[str], key: str = "prompts") -> list[str]:
    """Prompt sentences, one per class: a named set of the protocol, ``names``, or a text file (one
    per line, or ``class name<TAB>prompt`` lines matched by name).

    Raises:
        ValueError naming the classes that lack a prompt when there are fewer prompts than classes.
    """
    sets = protocol.get(key) or {}
    if str(prompt_set) in sets:
        prompts, where = sets[str(prompt_set)], f"prompt set {prompt_set!r} of {protocol.get('name')}"
    elif Path(prompt_set).is_file():
        lines = [l.strip() for l in formats.read_text(prompt_set).splitlines() if l.strip()]
        where = str(prompt_set)
        if lines and all("\t" in l for l in lines):
            by_name = dict(l.split("\t", 1) for l in lines)
            prompts = [by_name[c] for c in classes if c in by_name]
            lacking = [c for c in classes if c not in by_name]
            if lacking:
                raise ValueError(f"{where}: no prompt for classes {lacking} (lines are 'class<TAB>prompt')")
        else:
            prompts = lines
    elif str(prompt_set) == "names":
        prompts, where = [c.replace("_", " ") for c in classes], "class names"
    else:
        raise ValueError(f"unknown prompt set {prompt_set!r}; named sets: {sorted(set(sets) | {'names'})} "
                         f"or a text file path")
    if len(prompts) < len(classes):
        lacking = [f"{i}:{c}" for i, c in enumerate(classes)][len(prompts):]
        raise ValueError(f"{where}: {len(prompts)} prompts for {len(classes)} classes; classes without a prompt "
                         f"(id:name): {lacking}; need one prompt per class in id order")
    if len(prompts) > len(classes):
        raise ValueError(f"{where}: {len(prompts)} prompts for {len(classes)} classes ({classes}); "
                         f"need one prompt per class in id order")
    return list(prompts)


def task_prompts(protocol: dict, task: str | None, prompt_set: str | None, table: FrameTable | None = None) -> tuple[list[str], str]:
    """(prompts, set name) for a task; ``None`` = the task's default set. A table read from a file
    that carries its own prompts (SurgLaVi) offers those as ``names`` / ``descriptive``."""
    spec = task_spec(protocol, task)
    classes = table.classes if table is not None else task_classes(protocol, task)
    own = getattr(table, "prompt_sets", None)
    name = prompt_set or spec.get("default_prompts") or ("descriptive" if own else "names")
    if own and str(name) in own:
        return list(own[str(name)]), str(name)
    return get_prompts(protocol, name, classes, key=spec.get("prompts", "prompts")), str(name)


def split_ids(protocol: dict, split: str) -> list[int] | None:
    """Video ids of an official split, or None for ``all``."""
    if split == "all":
        return None
    splits = protocol.get("splits") or {}
    if split not in splits:
        raise ValueError(f"benchmark {protocol['name']} has no split {split!r}; splits: {sorted(splits) + ['all']}")
    return [int(i) for i in splits[split]]


def read_dataset_fps(root: Path) -> float | None:
    """Label frame rate from ``fps.json`` (``{"label_fps": 25}``, the sample's ``{"fps": 5}`` or a bare
    number); None when absent or when the file only gives ``frames_fps``."""
    return read_fps_json(Path(root)).get("label_fps")


def find_sources(root: Path, videos: list[str], frames_fps: float | None = None) -> dict[str, FrameSource]:
    """Frame sources under ``root``: ``videos/<id>.(mp4|avi|...)`` or ``frames/<id>/`` (fps from
    ``frames_fps`` or ``fps.json`` ``{"frames_fps": ...}``); videos with neither are left out."""
    return find_video_sources(Path(root), videos, frames_fps or read_fps_json(Path(root)).get("frames_fps"))


def load_cholec80(root, split: str = "test", task: str = "phase", label_fps: float | None = None,
                  eval_fps: float | None = None, protocol: dict | None = None, frames_fps: float | None = None) -> FrameTable:
    """Cholec80 in its published layout (see ``loaders.load_cholec80``)."""
    return load_benchmark("cholec80", root, split=split, task=task, label_fps=label_fps, eval_fps=eval_fps,
                          frames_fps=frames_fps, protocol=protocol)


def load_csv_benchmark(name: str, label_dir, split: str = "test", frames_root=None, frames_fps: float = 1.0,
                       name_fps: float | None = None) -> FrameTable:
    """1-fps ``path,label`` CSVs (PeskaVLP Cholec80 ``videoNN.csv``, AutoLaparo ``NN.csv``); frames
    optionally in ``frames_root/<stem>/``."""
    protocol = load_protocol(name)
    table = LOADERS["path_label_csv"](Path(label_dir), protocol, split, default_task(protocol), LoadOptions())
    if frames_root is not None:
        table.sources = {v: FrameSource(Path(frames_root) / v, fps=frames_fps, name_fps=name_fps)
                         for v in table.videos() if (Path(frames_root) / v).is_dir()}
    return table


def frame_folder_benchmark(label_csv, frames_dir, classes: list[str], frames_fps: float, name_fps: float,
                           label_base: int = 0, video: str | None = None, name: str = "frames") -> FrameTable:
    """One video as a frame folder plus a ``Frame,Phase`` CSV naming its images (e.g. the real
    Cholec80 video04 every-100th-frame folder: ``frames_fps=0.25``, ``name_fps=25``)."""
    video = video or Path(frames_dir).name
    table = formats.read_frame_label_csv(label_csv, classes, label_base=label_base, frame_fps=name_fps,
                                         video=video, name=name)
    table.sources = {video: FrameSource(Path(frames_dir), fps=frames_fps, name_fps=name_fps)}
    return table


def load_benchmark(name: str, root, split: str = "test", task: str | None = None, protocol: dict | None = None,
                   **options) -> FrameTable:
    """Read a benchmark's dataset from ``root`` in its official layout.

    Args:
        name: a protocol name (``cholec80``, ``autolaparo``, ``multibypass140``, ``grasp``,
            ``sarrarp50``, ``cholect50``, ``surglavi``), an alias (``cholec80-csv``,
            ``autolaparo-csv``, ``cholect50-txt``, ``strasbypass70``, ``bernbypass70``) or a
            protocol JSON path.
        root: dataset root laid out as released (the protocol's ``layout``).
        split: an official split name, ``all``, or a file of video ids.
        task: a task of the protocol (default: its first).
        **options: ``LoadOptions`` fields (frames_fps, name_fps, label_fps, eval_fps, site).
    Returns:
        FrameTable with ``sources`` for every video.
    """
    proto_name, fmt, extra = ALIASES.get(name, (name, None, {}))
    protocol = protocol or load_protocol(proto_name)
    fmt = fmt or protocol.get("format")
    if fmt not in LOADERS:
        raise ValueError(f"no dataset loader for format {fmt!r} of benchmark {name!r}; formats: {sorted(LOADERS)}")
    task = task or default_task(protocol)
    task_spec(protocol, task)
    opts = LoadOptions(**{**extra, **{k: v for k, v in options.items() if v is not None}})
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"dataset root {root} does not exist (benchmark {name}; layout: "
                                f"{json.dumps(protocol.get('layout', {}))})")
    table = LOADERS[fmt](root, protocol, split, task, opts)
    table.protocol_name = protocol["name"]
    return table
