"""CholecT50: action triplets <instrument, verb, target> and their components. Protocol:
``cholect50.json``.

Release layout::

    videos/VIDnn/<index:06d>.png     1 fps, named by the 1-fps index (or videos/VIDnn.mp4)
    labels/VIDnn.json                annotations[frame] = [15-vector per instance]

``cholect50-txt`` reads the CholecTriplet challenge files ``<task>/VIDnn.txt`` instead.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..sampling import frame_to_seconds
from ..utils import atomic_write_json
from .layout import LoadOptions, attach_sources, numbered, read_fps_json, split_ids, video_candidates
from .parsing import guard, json_number, json_object, lines, load_json, parse_int
from .protocols import read_protocol, task_classes
from .table import FrameTable, LabelFileError, check_fps, make_table

NAME = "cholect50"
FOLDER = "cholect50"
ALIASES = {"cholect50-txt": {"layout": "txt"}}
PREDICTION_NAMES = {("cholect50", "triplet"): "cholect50"}
FIELDS = {"triplet": 0, "instrument": 1, "verb": 7, "target": 8, "phase": 14}  # columns of the 15-vector


@guard
def read_cholect50_json(path, num_classes: dict[str, int], component: str = "triplet",
                        classes: list[str] | None = None, video: str | None = None) -> FrameTable:
    """CholecT50 ``labels/VIDxx.json``: ``annotations[frame] = [15-vector per instance]`` with
    ``[triplet, instrument, conf, x, y, w, h, verb, target, conf, x, y, w, h, phase]``, -1 = absent.

    Args:
        num_classes: classes per component, e.g. ``{"triplet": 100, "instrument": 6, ...}``.
        component: ``triplet`` | ``instrument`` | ``verb`` | ``target`` (multi-label) or ``phase``.
        classes: names (default: the file's own ``categories``).
    """
    if component not in FIELDS:
        raise ValueError(f"unknown CholecT50 component {component!r}; expected {sorted(FIELDS)}")
    path = Path(path)
    data = json_object(path, load_json(path))
    video = video or path.stem
    fps = check_fps(data.get("fps", 1), f"{path} fps")
    cats = data.get("categories", {})
    cats = cats.get(component) if isinstance(cats, dict) else None
    names = classes or ([str(cats[str(i)]) for i in range(len(cats))] if isinstance(cats, dict) and cats else None)
    size = len(names) if component == "phase" and names else num_classes[component]
    col = FIELDS[component]
    names = names or [str(i) for i in range(size)]
    annotations = data.get("annotations", {})
    if not isinstance(annotations, dict):
        raise LabelFileError(path, None, f"'annotations' must map frame -> instances, found {type(annotations).__name__}")
    rows = []
    for key in sorted(annotations, key=lambda k: parse_int(k, path, None, "annotation frame key", minimum=0)):
        frame = parse_int(key, path, None, "annotation frame key", minimum=0)
        flags = np.zeros(size, dtype=np.uint8)
        if not isinstance(annotations[key], list):
            raise LabelFileError(path, None, f"annotations[{key}]: expected a list of 15-vectors")
        for j, inst in enumerate(annotations[key]):
            if not isinstance(inst, list) or len(inst) != 15:
                raise LabelFileError(path, None, f"annotations[{key}][{j}]: expected a 15-vector, found {str(inst)[:60]}")
            cid = json_number(inst[col], path, f"annotations[{key}][{j}][{col}]", integer=True)
            if cid >= size or cid < -1:
                raise LabelFileError(path, None, f"annotations[{key}][{j}]: unknown {component} id {cid} (have {size})")
            if cid >= 0:
                flags[cid] = 1
        if component == "phase":
            present = np.flatnonzero(flags)
            if len(present):
                rows.append((video, frame_to_seconds(frame, fps), frame, int(present[0])))
        else:
            rows.append((video, frame_to_seconds(frame, fps), frame, flags))
    return make_table(f"cholect50/{component}", names, rows, multilabel=component != "phase", label_fps=fps)


@guard
def read_cholect50_txt(path, classes: list[str], label_fps: float = 1.0, component: str = "triplet",
                       video: str | None = None) -> FrameTable:
    """CholecT50 challenge format ``<component>/VIDxx.txt``: ``frame,<0/1 per class>`` (no header)."""
    path, fps = Path(path), check_fps(label_fps, "label_fps")
    video = video or path.stem
    rows = []
    for n, line in lines(path):
        parts = line.rstrip(",").split(",")
        if len(parts) != len(classes) + 1:
            raise LabelFileError(path, n, f"expected {len(classes) + 1} fields (frame + {len(classes)} {component} "
                                          f"flags), found {len(parts)}")
        frame = parse_int(parts[0], path, n, "frame index", minimum=0)
        flags = [parse_int(p, path, n, "flag") for p in parts[1:]]
        if any(f not in (0, 1) for f in flags):
            raise LabelFileError(path, n, "flags must be 0 or 1")
        rows.append((video, frame_to_seconds(frame, fps), frame, flags))
    return make_table(f"cholect50/{component}", classes, rows, multilabel=True, label_fps=fps)


def load(root: Path, protocol: dict, split: str, task: str, opts: LoadOptions) -> FrameTable:
    """CholecT50 rows of one component (``triplet``, ``instrument``, ``verb``, ``target``) of the
    split's videos, from ``labels/VIDnn.json`` (or, with layout ``txt``, ``<task>/VIDnn.txt``), with
    ``videos/VIDnn.mp4`` or ``videos/VIDnn/`` (1 fps) as sources."""
    classes = task_classes(protocol, task)
    if opts.layout == "txt":
        found = numbered(root / task, r"VID(\d+)\.txt")
        ids = split_ids(protocol, split, found, f"{task}/VID{{id:02d}}.txt", root)
        tables = [read_cholect50_txt(found[i], classes, component=task, video=f"VID{i:02d}") for i in ids]
    elif opts.layout is None:
        found = numbered(root / "labels", r"VID(\d+)\.json")
        ids = split_ids(protocol, split, found, "labels/VID{id:02d}.json", root)
        sizes = {k: len(task_classes(protocol, k)) for k in protocol["tasks"]}
        tables = [read_cholect50_json(found[i], sizes, component=task, classes=classes, video=f"VID{i:02d}")
                  for i in ids]
    else:
        raise ValueError(f"cholect50 has no layout {opts.layout!r}; layouts: txt (or none: the release's)")
    table = FrameTable.concat(tables)
    frames_fps = opts.frames_fps or read_fps_json(root).get("frames_fps") or 1.0
    return attach_sources(table, root, video_candidates(table.videos(), root / "videos", root / "videos"),
                          frames_fps, opts.name_fps)


# the sample's tools -> CholecT50 instruments
SAMPLE_TOOLS = {"Grasper": "grasper", "Bipolar": "bipolar", "Hook": "hook", "Scissors": "scissors",
                "Clipper": "clipper", "Irrigator": "irrigator", "SpecimenBag": "grasper"}


def write_sample(out: Path, procedures) -> None:
    """Videos 1, 15 (train) and 6, 10 (test) as 1-fps PNG folders and label JSONs: one instance per
    second, the first triplet of the step's instrument doing the sample's motion (or any triplet
    of that instrument), and the Cholec80 phase."""
    proto = read_protocol(NAME)
    triplets = [c["name"].split(",") for c in proto["classes"]]
    instruments = [c["name"] for c in proto["instrument_classes"]]
    verbs = [c["name"] for c in proto["verb_classes"]]
    targets = [c["name"] for c in proto["target_classes"]]
    phases = procedures[0].phase_names
    cats = {"instrument": {str(i): n for i, n in enumerate(instruments)}, "verb": {str(i): n for i, n in enumerate(verbs)},
            "target": {str(i): n for i, n in enumerate(targets)},
            "triplet": {str(i): ",".join(t) for i, t in enumerate(triplets)},
            "phase": {str(i): n for i, n in enumerate(phases)}}
    for vid, p in zip([1, 15, 6, 10], procedures):
        name = f"VID{vid:02d}"
        secs = p.seconds()
        p.write_frames(out / "videos" / name, list(map(float, secs)), [f"{s:06d}.png" for s in secs])
        annotations = {}
        for s in secs:
            tool, verb = SAMPLE_TOOLS[p.step(s).tool], p.task(s)
            verb = verb if verb in verbs else "null_verb"
            options = [i for i, t in enumerate(triplets) if t[0] == tool and t[1] == verb] or \
                      [i for i, t in enumerate(triplets) if t[0] == tool]
            tid = options[0]
            i, v, t = triplets[tid]
            annotations[str(int(s))] = [[tid, instruments.index(i), 1.0, 0.1, 0.1, 0.2, 0.2, verbs.index(v),
                                         targets.index(t), 1.0, -1, -1, -1, -1, p.phase(s)]]
        atomic_write_json(out / "labels" / f"{name}.json", {"fps": 1, "num_frames": len(secs), "video": vid,
                                                             "categories": cats, "annotations": annotations})
