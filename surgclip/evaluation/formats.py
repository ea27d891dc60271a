"""Parsers for the published label formats, one function per format, each -> ``FrameTable``.

Classes are mapped by id (or, for formats that write names, by the class list's names, which is
the same id). An unknown class or a malformed line raises ``LabelFileError`` with ``file:line``.
"""
from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import numpy as np

from .table import FrameTable, LabelFileError, check_fps, make_table

_NUM = re.compile(r"(\d+)(?=\D*$)")


def _lines(path: Path):
    """(line number, stripped text) of the non-empty lines of a text file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"label file not found: {path}")
    with open(path, newline="") as f:
        for i, line in enumerate(f, start=1):
            line = line.strip()
            if line:
                yield i, line


def _int(text: str, path, line: int, what: str) -> int:
    try:
        return int(float(text)) if re.fullmatch(r"-?\d+(\.0*)?", text.strip()) else int(text)
    except ValueError:
        raise LabelFileError(path, line, f"expected an integer {what}, found {text!r}") from None


def _class_id(value: int, classes: list[str], path, line: int) -> int:
    if not 0 <= value < len(classes):
        raise LabelFileError(path, line, f"unknown class id {value}; expected 0..{len(classes) - 1} "
                                         f"({len(classes)} classes)")
    return value


def read_cholec80_phase(path, classes: list[str], label_fps: float = 25.0, video: str | None = None) -> FrameTable:
    """Cholec80 ``videoXX-phase.txt``: header ``Frame\\tPhase`` then ``<frame>\\t<PhaseName>`` per frame.

    Args:
        path: the phase file.
        classes: phase names in id order (names matched exactly, then case-insensitively).
        label_fps: rate of the ``Frame`` numbering (25 for Cholec80).
        video: video id (default: the file name before ``-phase``).
    Returns:
        single-label table, one row per line; time = frame / label_fps.
    """
    path, fps = Path(path), check_fps(label_fps, "label_fps")
    video = video or path.name.split("-")[0]
    lookup = {c: i for i, c in enumerate(classes)} | {c.lower(): i for i, c in enumerate(classes)}
    rows = []
    for n, line in _lines(path):
        parts = line.split("\t") if "\t" in line else line.split()
        if n == 1 and parts[0].lower() == "frame":
            continue
        if len(parts) != 2:
            raise LabelFileError(path, n, f"expected 2 tab-separated fields (Frame, Phase), found {len(parts)}: {line!r}")
        frame = _int(parts[0], path, n, "frame index")
        name = parts[1].strip()
        cid = lookup.get(name, lookup.get(name.lower()))
        if cid is None:
            raise LabelFileError(path, n, f"unknown phase {name!r}; expected one of {classes}")
        rows.append((video, frame / fps, frame, cid))
    return make_table("cholec80/phase", classes, rows, label_fps=fps)


def read_cholec80_tool(path, tools: list[str], label_fps: float = 25.0, video: str | None = None) -> FrameTable:
    """Cholec80 ``videoXX-tool.txt``: header ``Frame\\tGrasper\\t...`` then binary presence rows.

    The header's tool names must match ``tools`` (by position, case-insensitive).
    Returns: multi-label table; time = frame / label_fps.
    """
    path, fps = Path(path), check_fps(label_fps, "label_fps")
    video = video or path.name.split("-")[0]
    rows = []
    for n, line in _lines(path):
        parts = line.split("\t") if "\t" in line else line.split()
        if n == 1 and parts[0].lower() == "frame":
            header = [p.strip().lower() for p in parts[1:]]
            if header != [t.lower() for t in tools]:
                raise LabelFileError(path, n, f"tool columns {parts[1:]} do not match the class list {tools}")
            continue
        if len(parts) != len(tools) + 1:
            raise LabelFileError(path, n, f"expected {len(tools) + 1} fields (Frame + {len(tools)} tools), found {len(parts)}")
        frame = _int(parts[0], path, n, "frame index")
        flags = [_int(p, path, n, "tool flag") for p in parts[1:]]
        if any(f not in (0, 1) for f in flags):
            raise LabelFileError(path, n, f"tool flags must be 0 or 1, found {flags}")
        rows.append((video, frame / fps, frame, flags))
    return make_table("cholec80/tool", tools, rows, multilabel=True, label_fps=fps)


def read_frame_label_csv(path, classes: list[str], label_base: int = 0, frame_fps: float = 1.0,
                         video: str | None = None, name: str = "csv") -> FrameTable:
    """Two-column CSV with a header: ``path,label`` (PeskaVLP 1-fps: ``video04_12.png,3``, labels
    1-based) or ``Frame,Phase`` (``1200.jpg,2``, 0-based). The frame number is the last number in
    the first column's file name.

    Args:
        classes: class names in id order.
        label_base: value of class id 0 in the file (1 for PeskaVLP/AutoLaparo CSVs).
        frame_fps: rate of the frame numbers (1 for ``<second>.png`` names, 25 for Cholec80 indices).
        video: video id (default: the file stem).
    """
    path, fps = Path(path), check_fps(frame_fps, "frame_fps")
    video = video or path.stem
    rows = []
    for n, line in _lines(path):
        parts = next(csv.reader([line]))
        if n == 1 and not re.search(r"\d", parts[-1]):
            continue  # header
        if len(parts) != 2:
            raise LabelFileError(path, n, f"expected 2 comma-separated fields (path, label), found {len(parts)}: {line!r}")
        match = _NUM.search(Path(parts[0].strip()).stem)
        if not match:
            raise LabelFileError(path, n, f"no frame number in {parts[0]!r}")
        frame = int(match.group(1))
        cid = _class_id(_int(parts[1], path, n, "label") - label_base, classes, path, n)
        rows.append((video, frame / fps, frame, cid))
    return make_table(name, classes, rows, label_fps=fps)


def read_multibypass_json(path, classes: list[str], key: str = "phases", eval_fps: float = 1.0,
                          time_scale: float = 1e-3, video: str | None = None) -> FrameTable:
    """MultiBypass140 ``BBPnn.mp4.json``: ``{"phases": [{start, end, label_name, label_id}], "steps": [...]}``.

    Intervals (milliseconds: ``time_scale=1e-3``) are sampled every ``1/eval_fps`` seconds; where
    intervals overlap the later one in the file wins (e.g. ``out_of_body`` inside ``preparation``).
    """
    path, fps = Path(path), check_fps(eval_fps, "eval_fps")
    video = video or path.name.split(".")[0]
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise LabelFileError(path, err.lineno, f"invalid JSON: {err.msg}") from None
    if key not in data:
        raise LabelFileError(path, None, f"no {key!r} list; keys are {sorted(data)}")
    intervals = []
    for i, seg in enumerate(data[key]):
        try:
            start, end, cid = float(seg["start"]) * time_scale, float(seg["end"]) * time_scale, int(seg["label_id"])
        except (KeyError, TypeError, ValueError) as err:
            raise LabelFileError(path, None, f"{key}[{i}]: expected start, end, label_id ({err})") from None
        if not 0 <= cid < len(classes):
            raise LabelFileError(path, None, f"{key}[{i}]: unknown class id {cid} ({seg.get('label_name')!r}); "
                                             f"expected 0..{len(classes) - 1}")
        if end < start:
            raise LabelFileError(path, None, f"{key}[{i}]: end {end} before start {start}")
        intervals.append((start, end, cid))
    if not intervals:
        return make_table(f"multibypass140/{key}", classes, [], label_fps=fps)
    last = max(e for _, e, _ in intervals)
    times = np.arange(0, int(np.floor(last * fps)) + 1) / fps
    label = np.full(len(times), -1, dtype=np.int64)
    for start, end, cid in intervals:
        label[(times >= start) & (times < end)] = cid
    rows = [(video, float(t), i, int(c)) for i, (t, c) in enumerate(zip(times, label)) if c >= 0]
    return make_table(f"multibypass140/{key}", classes, rows, label_fps=fps)


def read_sarrarp50(path, classes: list[str], label_fps: float = 60.0, video: str | None = None) -> FrameTable:
    """SAR-RARP50 ``action_discrete.txt``: ``frame_idx,action_id`` per line (no header)."""
    path, fps = Path(path), check_fps(label_fps, "label_fps")
    video = video or path.parent.name
    rows = []
    for n, line in _lines(path):
        parts = line.split(",")
        if len(parts) != 2:
            raise LabelFileError(path, n, f"expected 'frame_idx,action_id', found {line!r}")
        frame = _int(parts[0], path, n, "frame index")
        rows.append((video, frame / fps, frame, _class_id(_int(parts[1], path, n, "action id"), classes, path, n)))
    return make_table("sarrarp50/action", classes, rows, label_fps=fps)


CHOLECT50_FIELDS = {"triplet": 0, "instrument": 1, "verb": 7, "target": 8}


def read_cholect50_json(path, num_classes: dict[str, int], component: str = "triplet",
                        classes: list[str] | None = None, video: str | None = None) -> FrameTable:
    """CholecT50 ``labels/VIDxx.json``: ``annotations[frame] = [15-vector per instance]`` with
    ``[triplet, instrument, conf, x, y, w, h, verb, target, conf, x, y, w, h, phase]``, -1 = absent.

    Args:
        num_classes: classes per component, e.g. ``{"triplet": 100, "instrument": 6, ...}``.
        component: ``triplet`` | ``instrument`` | ``verb`` | ``target`` (multi-label) or ``phase``.
        classes: names (default: the file's own ``categories``).
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise LabelFileError(path, err.lineno, f"invalid JSON: {err.msg}") from None
    video = video or path.stem
    fps = check_fps(data.get("fps", 1), f"{path} fps")
    cats = data.get("categories", {}).get(component)
    names = classes or ([cats[str(i)] for i in range(len(cats))] if cats else None)
    if component == "phase":
        size, col = len(names), 14
    else:
        if component not in CHOLECT50_FIELDS:
            raise ValueError(f"unknown CholecT50 component {component!r}; expected {sorted(CHOLECT50_FIELDS)} or phase")
        size, col = num_classes[component], CHOLECT50_FIELDS[component]
    names = names or [str(i) for i in range(size)]
    rows = []
    for key in sorted(data.get("annotations", {}), key=int):
        frame = int(key)
        flags = np.zeros(size, dtype=np.uint8)
        for j, inst in enumerate(data["annotations"][key]):
            if len(inst) != 15:
                raise LabelFileError(path, None, f"annotations[{key}][{j}]: expected a 15-vector, found {len(inst)} values")
            cid = int(inst[col])
            if cid >= size:
                raise LabelFileError(path, None, f"annotations[{key}][{j}]: unknown {component} id {cid} (have {size})")
            if cid >= 0:
                flags[cid] = 1
        if component == "phase":
            present = np.flatnonzero(flags)
            if len(present):
                rows.append((video, frame / fps, frame, int(present[0])))
        else:
            rows.append((video, frame / fps, frame, flags))
    return make_table(f"cholect50/{component}", names, rows, multilabel=component != "phase", label_fps=fps)


def read_cholect50_txt(path, classes: list[str], label_fps: float = 1.0, component: str = "triplet",
                       video: str | None = None) -> FrameTable:
    """CholecT50 challenge format ``<component>/VIDxx.txt``: ``frame,<0/1 per class>`` (no header)."""
    path, fps = Path(path), check_fps(label_fps, "label_fps")
    video = video or path.stem
    rows = []
    for n, line in _lines(path):
        parts = line.rstrip(",").split(",")
        if len(parts) != len(classes) + 1:
            raise LabelFileError(path, n, f"expected {len(classes) + 1} fields (frame + {len(classes)} {component} "
                                          f"flags), found {len(parts)}")
        frame = _int(parts[0], path, n, "frame index")
        flags = [_int(p, path, n, "flag") for p in parts[1:]]
        if any(f not in (0, 1) for f in flags):
            raise LabelFileError(path, n, "flags must be 0 or 1")
        rows.append((video, frame / fps, frame, flags))
    return make_table(f"cholect50/{component}", classes, rows, multilabel=True, label_fps=fps)


def read_grasp_json(path, task: str = "phases", frame_fps: float = 30.0) -> FrameTable:
    """GraSP COCO-style JSON: ``{task}_categories`` [{id, name}], ``images`` [{id, file_name
    ("CASE001/00000.jpg"), video_name?, frame_num?}], ``annotations`` [{image_id, phases, steps,
    category_id (instrument boxes)}].

    Args:
        task: ``phases`` | ``steps`` (single-label) or ``instruments`` (multi-label, from box
            ``category_id``s).
        frame_fps: rate of the frame numbers in file names.
    """
    path, fps = Path(path), check_fps(frame_fps, "frame_fps")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise LabelFileError(path, err.lineno, f"invalid JSON: {err.msg}") from None
    cats = data.get(f"{task}_categories")
    if not cats:
        raise LabelFileError(path, None, f"no {task}_categories; keys are {sorted(data)}")
    ids = sorted(int(c["id"]) for c in cats)
    id_to_col = {cid: i for i, cid in enumerate(ids)}
    names = [next(c["name"] for c in cats if int(c["id"]) == cid) for cid in ids]
    images = {int(im["id"]): im for im in data.get("images", [])}
    per_image: dict[int, object] = {}
    for j, ann in enumerate(data.get("annotations", [])):
        img = int(ann["image_id"])
        if img not in images:
            raise LabelFileError(path, None, f"annotations[{j}]: image_id {img} not in images")
        if task == "instruments":
            if "category_id" in ann:
                cid = int(ann["category_id"])
                if cid not in id_to_col:
                    raise LabelFileError(path, None, f"annotations[{j}]: unknown instrument id {cid}; known {ids}")
                per_image.setdefault(img, set()).add(id_to_col[cid])
            else:
                per_image.setdefault(img, set())
        elif task in ann:
            cid = int(ann[task])
            if cid not in id_to_col:
                raise LabelFileError(path, None, f"annotations[{j}]: unknown {task} id {cid}; known {ids}")
            per_image[img] = id_to_col[cid]
    rows = []
    for img, value in sorted(per_image.items()):
        im = images[img]
        video = im.get("video_name") or Path(im["file_name"]).parent.name
        frame = int(im["frame_num"]) if "frame_num" in im else int(_NUM.search(Path(im["file_name"]).stem).group(1))
        if task == "instruments":
            flags = np.zeros(len(ids), dtype=np.uint8)
            flags[sorted(value)] = 1
            value = flags
        rows.append((video, frame / fps, frame, value))
    return make_table(f"grasp/{task}", names, rows, multilabel=task == "instruments", label_fps=fps)


def read_surglavi_eval(json_path, frames_csv=None, fps: float = 1.0) -> tuple[FrameTable, list[str]]:
    """SurgLaVi evaluation format: a COCO-like JSON (``categories`` [{id, name, description}],
    ``images`` [{id, video, frame}], ``annotations`` [{image_id, category_id}]) plus an optional
    frame-list CSV (``video,frame`` header) naming the frames to evaluate.

    Returns:
        (single-label table, prompts = category descriptions in id order).
    """
    json_path, fps = Path(json_path), check_fps(fps, "fps")
    try:
        data = json.loads(json_path.read_text())
    except json.JSONDecodeError as err:
        raise LabelFileError(json_path, err.lineno, f"invalid JSON: {err.msg}") from None
    cats = sorted(data.get("categories", []), key=lambda c: int(c["id"]))
    if not cats:
        raise LabelFileError(json_path, None, "no categories")
    id_to_col = {int(c["id"]): i for i, c in enumerate(cats)}
    names = [c["name"] for c in cats]
    prompts = [c.get("description") or c["name"] for c in cats]
    images = {int(im["id"]): im for im in data.get("images", [])}
    keep = None
    if frames_csv is not None:
        keep = set()
        for n, line in _lines(frames_csv):
            parts = [p.strip() for p in line.split(",")]
            if n == 1 and parts[0].lower() == "video":
                continue
            if len(parts) < 2:
                raise LabelFileError(frames_csv, n, f"expected 'video,frame', found {line!r}")
            keep.add((parts[0], _int(parts[1], frames_csv, n, "frame")))
    rows = []
    for j, ann in enumerate(data.get("annotations", [])):
        im = images.get(int(ann["image_id"]))
        if im is None:
            raise LabelFileError(json_path, None, f"annotations[{j}]: image_id {ann['image_id']} not in images")
        cid = id_to_col.get(int(ann["category_id"]))
        if cid is None:
            raise LabelFileError(json_path, None, f"annotations[{j}]: unknown category_id {ann['category_id']}")
        video, frame = str(im["video"]), int(im["frame"])
        if keep is None or (video, frame) in keep:
            rows.append((video, frame / fps, frame, cid))
    rows.sort(key=lambda r: (r[0], r[2]))
    return make_table("surglavi", names, rows, label_fps=fps), prompts
