"""Benchmark protocol files (``surgclip/benchmarks/<name>.json``, shipped in the package) and dataset folders -> ``FrameTable``.

A protocol file holds the class list by id, the official split, the label fps, the metric and the
prompt sets; ``load_benchmark`` walks a dataset root laid out as the published dataset and joins
each video's labels with its frame source (video file or frame folder).
"""
from __future__ import annotations

import json
import os
from pathlib import Path

from . import formats
from .table import FrameSource, FrameTable, check_fps

# Protocols ship inside the package (package-data), so a wheel install finds them.
PROTOCOL_DIR = Path(__file__).resolve().parents[1] / "benchmarks"


def protocol_path(name: str) -> Path:
    """The protocol JSON of a benchmark name, or a path to one."""
    path = Path(name)
    if path.suffix == ".json" and path.is_file():
        return path
    path = PROTOCOL_DIR / f"{name}.json"
    if not path.is_file():
        known = sorted(p.stem for p in PROTOCOL_DIR.glob("*.json"))
        raise ValueError(f"unknown benchmark {name!r}; known: {known} (protocol files in {PROTOCOL_DIR})")
    return path


def load_protocol(name: str) -> dict:
    """The protocol dict of a benchmark (classes, splits, fps, metric, prompts)."""
    return json.loads(protocol_path(name).read_text())


def class_names(entries: list[dict]) -> list[str]:
    """Names indexed by id from ``[{id, name}]``; ids must be 0..C-1 without gaps."""
    by_id = {int(e["id"]): e["name"] for e in entries}
    if sorted(by_id) != list(range(len(by_id))):
        raise ValueError(f"class ids must be 0..{len(by_id) - 1}, found {sorted(by_id)}")
    return [by_id[i] for i in range(len(by_id))]


def get_prompts(protocol: dict, prompt_set: str | os.PathLike, classes: list[str], key: str = "prompts") -> list[str]:
    """Prompt sentences, one per class: a named set from the protocol or a text file (one per line).

    Raises ValueError when the number of prompts does not match the number of classes.
    """
    sets = protocol.get(key) or {}
    if str(prompt_set) in sets:
        prompts, where = sets[str(prompt_set)], f"prompt set {prompt_set!r} of {protocol.get('name')}"
    elif Path(prompt_set).is_file():
        prompts = [l.strip() for l in Path(prompt_set).read_text().splitlines() if l.strip()]
        where = str(prompt_set)
    elif str(prompt_set) == "names":
        prompts, where = list(classes), "class names"
    else:
        raise ValueError(f"unknown prompt set {prompt_set!r}; named sets: {sorted(sets) + ['names']} or a text file path")
    if len(prompts) != len(classes):
        raise ValueError(f"{where}: {len(prompts)} prompts for {len(classes)} classes ({classes}); "
                         f"need one prompt per class in id order")
    return list(prompts)


def split_ids(protocol: dict, split: str) -> list[int] | None:
    """Video ids of an official split, or None for ``all``."""
    if split == "all":
        return None
    splits = protocol.get("splits") or {}
    if split not in splits:
        raise ValueError(f"benchmark {protocol['name']} has no split {split!r}; splits: {sorted(splits) + ['all']}")
    return [int(i) for i in splits[split]]


def read_dataset_fps(root: Path) -> float | None:
    """Label frame rate from ``fps.json`` in a dataset root (``{"label_fps": 25}``, ``{"fps": 5}`` as the
    bundled sample writes, or a bare number), if present."""
    path = root / "fps.json"
    if not path.is_file():
        return None
    data = json.loads(path.read_text())
    value = data.get("label_fps", data.get("fps")) if isinstance(data, dict) else data
    return check_fps(value, str(path))


def load_cholec80(root, split: str = "test", task: str = "phase", label_fps: float | None = None,
                  eval_fps: float | None = None, protocol: dict | None = None) -> FrameTable:
    """Cholec80 in its published layout: ``phase_annotations/videoNN-phase.txt``,
    ``tool_annotations/videoNN-tool.txt``, ``videos/videoNN.mp4`` (or ``frames/videoNN/`` +
    ``fps.json`` ``{"frames_fps": 1}``).

    Args:
        root: dataset folder.
        split: ``train`` | ``val`` | ``test`` (49-80) | ``all`` (every label file found).
        task: ``phase`` or ``tool``.
        label_fps: rate of the label files' frame numbers (default: ``fps.json``, else 25).
        eval_fps: rows kept per second (default 1, the published protocol).
    Returns:
        the table with ``sources`` for every video whose video file or frame folder exists.
    """
    root = Path(root)
    protocol = protocol or load_protocol("cholec80")
    if task not in ("phase", "tool"):
        raise ValueError(f"unknown Cholec80 task {task!r}; expected phase or tool")
    label_fps = label_fps or read_dataset_fps(root) or protocol["label_fps"]
    eval_fps = eval_fps or protocol.get("eval_fps", 1)
    folder = root / ("phase_annotations" if task == "phase" else "tool_annotations")
    if not folder.is_dir():
        raise FileNotFoundError(f"no {folder.name}/ folder in {root} (expected the Cholec80 layout)")
    files = {int(p.name[5:7]): p for p in sorted(folder.glob(f"video*-{task}.txt")) if p.name[5:7].isdigit()}
    ids = split_ids(protocol, split)
    wanted = sorted(files) if ids is None else [i for i in ids if i in files]
    if not wanted:
        raise FileNotFoundError(f"no {task} label files for split {split!r} in {folder}")
    classes = class_names(protocol["classes" if task == "phase" else "tools"])
    tables = []
    for vid in wanted:
        reader = formats.read_cholec80_phase if task == "phase" else formats.read_cholec80_tool
        table = reader(files[vid], classes, label_fps=label_fps, video=f"video{vid:02d}")
        tables.append(table.subsample(1.0 / eval_fps) if task == "phase" else table)
    table = FrameTable.concat(tables)
    table.sources = find_sources(root, table.videos())
    return table


def find_sources(root: Path, videos: list[str], frames_fps: float | None = None) -> dict[str, FrameSource]:
    """Frame sources under ``root``: ``videos/<id>.(mp4|avi|mkv)`` or ``frames/<id>/`` (fps from
    ``frames_fps`` or ``fps.json`` ``{"frames_fps": ...}``)."""
    root = Path(root)
    if frames_fps is None and (root / "fps.json").is_file():
        data = json.loads((root / "fps.json").read_text())
        frames_fps = data.get("frames_fps") if isinstance(data, dict) else None
    out = {}
    for vid in videos:
        for ext in (".mp4", ".avi", ".mkv", ".webm"):
            if (root / "videos" / f"{vid}{ext}").is_file():
                out[vid] = FrameSource(root / "videos" / f"{vid}{ext}")
                break
        else:
            if (root / "frames" / vid).is_dir() and frames_fps:
                out[vid] = FrameSource(root / "frames" / vid, fps=float(frames_fps))
    return out


def load_csv_benchmark(name: str, label_dir, split: str = "test", frames_root=None, frames_fps: float = 1.0,
                       name_fps: float | None = None) -> FrameTable:
    """1-fps ``path,label`` CSVs (PeskaVLP Cholec80 ``videoNN.csv``, AutoLaparo ``NN.csv``).

    Args:
        name: ``cholec80`` or ``autolaparo`` (protocol with classes and split).
        label_dir: folder of CSVs.
        frames_root: optional folder holding ``<video>/`` frame folders.
    """
    protocol = load_protocol(name)
    classes = class_names(protocol["classes"])
    ids = split_ids(protocol, split)
    files = sorted(Path(label_dir).glob("*.csv"))
    tables = []
    for path in files:
        digits = "".join(ch for ch in path.stem if ch.isdigit())
        if not digits or (ids is not None and int(digits) not in ids):
            continue
        tables.append(formats.read_frame_label_csv(path, classes, label_base=protocol.get("label_base", 1),
                                                   frame_fps=1.0, video=path.stem, name=f"{name}/phase"))
    if not tables:
        raise FileNotFoundError(f"no label CSVs for split {split!r} in {label_dir}")
    table = FrameTable.concat(tables)
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


def load_benchmark(name: str, root, split: str = "test", task: str | None = None, **options) -> FrameTable:
    """Dispatch to the loader of a benchmark name (``cholec80``, ``autolaparo``, ``cholec80-csv``).

    Other formats (MultiBypass140, GraSP, SAR-RARP50, CholecT50, SurgLaVi) have file-level
    readers in ``surgclip.evaluation.formats``.
    """
    if name == "cholec80":
        return load_cholec80(root, split=split, task=task or "phase", **options)
    if name in ("autolaparo", "cholec80-csv"):
        return load_csv_benchmark(name.replace("-csv", ""), Path(root), split=split, **options)
    raise ValueError(f"no dataset loader for benchmark {name!r}; use cholec80, cholec80-csv or autolaparo, or the "
                     f"file readers in surgclip.evaluation.formats")
