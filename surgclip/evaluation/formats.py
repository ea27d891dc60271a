"""Parsers for the published label formats, one function per format, each -> ``FrameTable``.

Classes are mapped by id (or, for formats that write names, by the class list's names, which is
the same id). An unknown class or a malformed line raises ``LabelFileError`` with ``file:line``.
"""
from __future__ import annotations

import csv
import functools
import json
import math
import re
from pathlib import Path

import numpy as np

from .table import FrameTable, LabelFileError, check_fps, make_table

_NUM = re.compile(r"(\d+)(?=\D*$)")
MAX_INDEX = 2 ** 40  # frame numbers / times beyond this are corrupt, not a long video
MAX_SECONDS = 7 * 24 * 3600.0  # an interval ending after a week is corrupt (and would allocate a huge grid)


def _guard(fn):
    """Turn a stray parsing exception from a malformed file (a JSON field of the wrong type, a
    missing key) into ``LabelFileError`` naming the file, so no reader leaks a library traceback."""

    @functools.wraps(fn)
    def wrapper(path, *args, **kwargs):
        try:
            return fn(path, *args, **kwargs)
        except (LabelFileError, FileNotFoundError):
            raise
        except (KeyError, TypeError, ValueError, AttributeError, IndexError, OverflowError, RecursionError) as err:
            raise LabelFileError(path, None, f"malformed {fn.__name__.replace('read_', '')} file "
                                             f"({type(err).__name__}: {err})") from None

    return wrapper


def read_text(path) -> str:
    """The UTF-8 text of a label file (a BOM is dropped); errors name the file and line."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"label file not found: {path}")
    data = path.read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = data[: err.start].count(b"\n") + 1
        raise LabelFileError(path, line, f"not UTF-8 text (byte {data[err.start]:#04x} at offset {err.start})") from None


def load_json(path):
    """Parsed JSON of a label file; errors name the file and line."""
    text = read_text(path)
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise LabelFileError(path, err.lineno, f"invalid JSON: {err.msg}") from None
    except RecursionError:
        raise LabelFileError(path, None, "invalid JSON: nested too deeply") from None


def _json_object(path, data, keys: tuple = ()) -> dict:
    if not isinstance(data, dict):
        raise LabelFileError(path, None, f"expected a JSON object at the top level, found {type(data).__name__}")
    return data


def _lines(path):
    """(line number, stripped text) of the non-empty lines of a text file."""
    path = Path(path)
    for i, line in enumerate(read_text(path).splitlines(), start=1):
        line = line.strip()
        if line:
            if "\x00" in line:
                raise LabelFileError(path, i, "NUL byte in a text label file")
            yield i, line


def split_lines(path, sep: str | None = ","):
    """(line number, fields) of the non-empty lines; ``sep=None`` splits on tabs or runs of spaces."""
    for n, line in _lines(path):
        yield n, [p.strip() for p in (line.split(sep) if sep else re.split(r"[\t ]+", line))]


def parse_int(text: str, path, line: int | None, what: str, minimum: int | None = None) -> int:
    """An integer field (``12`` or ``12.0``); NaN, fractions, huge or (below ``minimum``) values name
    the file, line and field."""
    text = str(text).strip()
    if re.fullmatch(r"-?\d+(\.0*)?", text) is None:
        raise LabelFileError(path, line, f"expected an integer {what}, found {text[:40]!r}")
    value = int(text.split(".")[0])
    if abs(value) >= MAX_INDEX:
        raise LabelFileError(path, line, f"{what} {value} is out of range")
    if minimum is not None and value < minimum:
        raise LabelFileError(path, line, f"{what} must be >= {minimum}, found {value}")
    return value


def _int(text: str, path, line: int, what: str) -> int:
    return parse_int(text, path, line, what)


def class_id(value: int, classes: list[str], path, line: int | None) -> int:
    """``value`` if it is a valid class id, else an error naming the file and row."""
    if not 0 <= value < len(classes):
        raise LabelFileError(path, line, f"unknown class id {value}; expected 0..{len(classes) - 1} "
                                         f"({len(classes)} classes)")
    return value


_class_id = class_id


def _json_number(value, path, where: str, integer: bool = False):
    """A finite JSON number (bools and strings refused); ``integer`` also refuses fractions."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or abs(value) >= MAX_INDEX * 1000 \
            or not math.isfinite(value):
        raise LabelFileError(path, None, f"{where}: expected a finite number, found {value!r}")
    if integer:
        if float(value) != int(value):
            raise LabelFileError(path, None, f"{where}: expected an integer, found {value!r}")
        return int(value)
    return float(value)


@_guard
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
    for n, parts in split_lines(path, sep=None):
        if n == 1 and parts[0].lower() == "frame":
            continue
        if len(parts) != 2:
            raise LabelFileError(path, n, f"expected 2 tab-separated fields (Frame, Phase), found {len(parts)}")
        frame = parse_int(parts[0], path, n, "frame index", minimum=0)
        cid = lookup.get(parts[1], lookup.get(parts[1].lower()))
        if cid is None:
            raise LabelFileError(path, n, f"unknown phase {parts[1][:60]!r}; expected one of {classes}")
        rows.append((video, frame / fps, frame, cid))
    return make_table("cholec80/phase", classes, rows, label_fps=fps)


@_guard
def read_cholec80_tool(path, tools: list[str], label_fps: float = 25.0, video: str | None = None) -> FrameTable:
    """Cholec80 ``videoXX-tool.txt``: header ``Frame\\tGrasper\\t...`` then binary presence rows.

    The header's tool names must match ``tools`` (by position, case-insensitive).
    Returns: multi-label table; time = frame / label_fps.
    """
    path, fps = Path(path), check_fps(label_fps, "label_fps")
    video = video or path.name.split("-")[0]
    rows = []
    for n, parts in split_lines(path, sep=None):
        if n == 1 and parts[0].lower() == "frame":
            if [p.lower() for p in parts[1:]] != [t.lower() for t in tools]:
                raise LabelFileError(path, n, f"tool columns {parts[1:]} do not match the class list {tools}")
            continue
        if len(parts) != len(tools) + 1:
            raise LabelFileError(path, n, f"expected {len(tools) + 1} fields (Frame + {len(tools)} tools), found {len(parts)}")
        frame = parse_int(parts[0], path, n, "frame index", minimum=0)
        flags = [parse_int(p, path, n, "tool flag") for p in parts[1:]]
        if any(f not in (0, 1) for f in flags):
            raise LabelFileError(path, n, f"tool flags must be 0 or 1, found {flags}")
        rows.append((video, frame / fps, frame, flags))
    return make_table("cholec80/tool", tools, rows, multilabel=True, label_fps=fps)


@_guard
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
        try:
            parts = next(csv.reader([line]))
        except csv.Error as err:
            raise LabelFileError(path, n, f"malformed CSV row: {err}") from None
        if n == 1 and parts and not re.search(r"\d", parts[-1]):
            continue  # header
        if len(parts) != 2:
            raise LabelFileError(path, n, f"expected 2 comma-separated fields (path, label), found {len(parts)}")
        match = _NUM.search(Path(parts[0].strip()).stem)
        if not match:
            raise LabelFileError(path, n, f"no frame number in {parts[0][:60]!r}")
        frame = parse_int(match.group(1), path, n, "frame number", minimum=0)
        cid = class_id(parse_int(parts[1], path, n, "label") - label_base, classes, path, n)
        rows.append((video, frame / fps, frame, cid))
    return make_table(name, classes, rows, label_fps=fps)


@_guard
def read_multibypass_json(path, classes: list[str], key: str = "phases", eval_fps: float = 1.0,
                          time_scale: float = 1e-3, video: str | None = None, ignore=()) -> FrameTable:
    """MultiBypass140 ``BBPnn.mp4.json``: ``{"phases": [{start, end, label_name, label_id}], "steps": [...]}``.

    Intervals (milliseconds: ``time_scale=1e-3``) are sampled every ``1/eval_fps`` seconds; where
    intervals overlap the later one in the file wins (e.g. ``out_of_body`` inside ``preparation``).
    Intervals whose id is in ``ignore`` (the ``severe_index`` adverse-event marker, id 13, which is
    not among the 13 phase classes) are read and checked but do not overwrite the phase.
    """
    path, fps = Path(path), check_fps(eval_fps, "eval_fps")
    video = video or path.name.split(".")[0]
    data = _json_object(path, load_json(path))
    if key not in data:
        raise LabelFileError(path, None, f"no {key!r} list; keys are {sorted(map(str, data))}")
    if not isinstance(data[key], list):
        raise LabelFileError(path, None, f"{key!r} must be a list of intervals, found {type(data[key]).__name__}")
    intervals = []
    for i, seg in enumerate(data[key]):
        if not isinstance(seg, dict) or not {"start", "end", "label_id"} <= set(seg):
            raise LabelFileError(path, None, f"{key}[{i}]: expected an object with start, end, label_id")
        start = _json_number(seg["start"], path, f"{key}[{i}].start") * time_scale
        end = _json_number(seg["end"], path, f"{key}[{i}].end") * time_scale
        cid = _json_number(seg["label_id"], path, f"{key}[{i}].label_id", integer=True)
        if not 0 <= cid < len(classes) and cid not in ignore:
            raise LabelFileError(path, None, f"{key}[{i}]: unknown class id {cid} ({seg.get('label_name')!r}); "
                                             f"expected 0..{len(classes) - 1}")
        if start < 0 or end < start or end > MAX_SECONDS:
            raise LabelFileError(path, None, f"{key}[{i}]: bad interval start {start} s, end {end} s")
        if cid not in ignore:
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


@_guard
def read_sarrarp50(path, classes: list[str], label_fps: float = 60.0, video: str | None = None) -> FrameTable:
    """SAR-RARP50 ``action_discrete.txt``: ``frame_idx,action_id`` per line (no header; a space
    instead of the comma is accepted). ``frame_idx`` counts 60-fps frames, one row per 6 frames."""
    path, fps = Path(path), check_fps(label_fps, "label_fps")
    video = video or path.parent.name
    rows = []
    for n, line in _lines(path):
        parts = [p.strip() for p in re.split(r"[,\t ]+", line)]
        if len(parts) != 2:
            raise LabelFileError(path, n, f"expected 'frame_idx,action_id', found {line[:60]!r}")
        frame = parse_int(parts[0], path, n, "frame index", minimum=0)
        rows.append((video, frame / fps, frame, class_id(parse_int(parts[1], path, n, "action id"), classes, path, n)))
    return make_table("sarrarp50/action", classes, rows, label_fps=fps)


CHOLECT50_FIELDS = {"triplet": 0, "instrument": 1, "verb": 7, "target": 8, "phase": 14}


@_guard
def read_cholect50_json(path, num_classes: dict[str, int], component: str = "triplet",
                        classes: list[str] | None = None, video: str | None = None) -> FrameTable:
    """CholecT50 ``labels/VIDxx.json``: ``annotations[frame] = [15-vector per instance]`` with
    ``[triplet, instrument, conf, x, y, w, h, verb, target, conf, x, y, w, h, phase]``, -1 = absent.

    Args:
        num_classes: classes per component, e.g. ``{"triplet": 100, "instrument": 6, ...}``.
        component: ``triplet`` | ``instrument`` | ``verb`` | ``target`` (multi-label) or ``phase``.
        classes: names (default: the file's own ``categories``).
    """
    if component not in CHOLECT50_FIELDS:
        raise ValueError(f"unknown CholecT50 component {component!r}; expected {sorted(CHOLECT50_FIELDS)}")
    path = Path(path)
    data = _json_object(path, load_json(path))
    video = video or path.stem
    fps = check_fps(data.get("fps", 1), f"{path} fps")
    cats = data.get("categories", {})
    cats = cats.get(component) if isinstance(cats, dict) else None
    names = classes or ([str(cats[str(i)]) for i in range(len(cats))] if isinstance(cats, dict) and cats else None)
    size = len(names) if component == "phase" and names else num_classes[component]
    col = CHOLECT50_FIELDS[component]
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
            cid = _json_number(inst[col], path, f"annotations[{key}][{j}][{col}]", integer=True)
            if cid >= size or cid < -1:
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


@_guard
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
        frame = parse_int(parts[0], path, n, "frame index", minimum=0)
        flags = [parse_int(p, path, n, "flag") for p in parts[1:]]
        if any(f not in (0, 1) for f in flags):
            raise LabelFileError(path, n, "flags must be 0 or 1")
        rows.append((video, frame / fps, frame, flags))
    return make_table(f"cholect50/{component}", classes, rows, multilabel=True, label_fps=fps)


def _coco_list(path, data: dict, key: str) -> list[dict]:
    value = data.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        raise LabelFileError(path, None, f"{key!r} must be a list of objects")
    return value


@_guard
def read_grasp_json(path, task: str = "phases", frame_fps: float = 30.0) -> FrameTable:
    """GraSP COCO-style JSON: ``{task}_categories`` [{id, name}], ``images`` [{id, file_name
    ("CASE001/000000000.jpg"), video_name?, frame_num?}], ``annotations`` [{image_id, phases, steps,
    category_id / instruments (instrument boxes)}]. The released short-term files list the
    instruments as COCO ``categories``; TAPIS's matched files rename them ``instruments_categories``:
    both are read.

    Args:
        task: ``phases`` | ``steps`` (single-label) or ``instruments`` (multi-label, from each box's
            ``instruments`` or ``category_id``).
        frame_fps: rate of the frame numbers (30: GraSP frames are numbered at 30 fps).
    """
    path, fps = Path(path), check_fps(frame_fps, "frame_fps")
    data = _json_object(path, load_json(path))
    key = f"{task}_categories"
    if task == "instruments" and key not in data:
        key = "categories"
    cats = _coco_list(path, data, key)
    if not cats:
        raise LabelFileError(path, None, f"no {task}_categories{' or categories' if task == 'instruments' else ''}; "
                                         f"keys are {sorted(map(str, data))}")
    by_id = {_json_number(c.get("id"), path, f"{task}_categories id", integer=True): str(c.get("name")) for c in cats}
    ids = sorted(by_id)
    id_to_col = {cid: i for i, cid in enumerate(ids)}
    names = [by_id[cid] for cid in ids]
    images = {_json_number(im.get("id"), path, "images[].id", integer=True): im for im in _coco_list(path, data, "images")}
    per_image: dict[int, object] = {}
    for j, ann in enumerate(_coco_list(path, data, "annotations")):
        img = _json_number(ann.get("image_id"), path, f"annotations[{j}].image_id", integer=True)
        if img not in images:
            raise LabelFileError(path, None, f"annotations[{j}]: image_id {img} not in images")
        if task == "instruments":
            value = ann.get("instruments", ann.get("category_id"))
            per_image.setdefault(img, set())
            if value is not None:
                cid = _json_number(value, path, f"annotations[{j}].{task}", integer=True)
                if cid not in id_to_col:
                    raise LabelFileError(path, None, f"annotations[{j}]: unknown instrument id {cid}; known {ids}")
                per_image[img].add(id_to_col[cid])
        elif task in ann:
            cid = _json_number(ann[task], path, f"annotations[{j}].{task}", integer=True)
            if cid not in id_to_col:
                raise LabelFileError(path, None, f"annotations[{j}]: unknown {task} id {cid}; known {ids}")
            per_image[img] = id_to_col[cid]
    rows = []
    for img, value in sorted(per_image.items()):
        im = images[img]
        video = str(im.get("video_name") or Path(str(im["file_name"])).parent.name)
        if "frame_num" in im:
            frame = _json_number(im["frame_num"], path, f"image {img} frame_num", integer=True)
        else:
            match = _NUM.search(Path(str(im["file_name"])).stem)
            if not match:
                raise LabelFileError(path, None, f"image {img}: no frame number in {im['file_name']!r}")
            frame = parse_int(match.group(1), path, None, f"image {img} frame number")
        if frame < 0:
            raise LabelFileError(path, None, f"image {img}: negative frame number {frame}")
        if task == "instruments":
            flags = np.zeros(len(ids), dtype=np.uint8)
            flags[sorted(value)] = 1
            value = flags
        rows.append((video, frame / fps, frame, value))
    rows.sort(key=lambda r: (r[0], r[2]))
    return make_table(f"grasp/{task}", names, rows, multilabel=task == "instruments", label_fps=fps)


@_guard
def read_surglavi_eval(json_path, frames_csv=None, fps: float = 1.0) -> tuple[FrameTable, list[str]]:
    """SurgLaVi evaluation format: a COCO-like JSON (``categories`` [{id, name, description}],
    ``images`` [{id, video, frame}], ``annotations`` [{image_id, category_id}]) plus an optional
    frame-list CSV (``video,frame`` header) naming the frames to evaluate.

    Returns:
        (single-label table, prompts = category descriptions in id order).
    """
    json_path, fps = Path(json_path), check_fps(fps, "fps")
    data = _json_object(json_path, load_json(json_path))
    cats = _coco_list(json_path, data, "categories")
    if not cats:
        raise LabelFileError(json_path, None, "no categories")
    cats = sorted(cats, key=lambda c: _json_number(c.get("id"), json_path, "categories[].id", integer=True))
    id_to_col = {int(c["id"]): i for i, c in enumerate(cats)}
    names = [str(c.get("name")) for c in cats]
    prompts = [str(c.get("description") or c.get("name")) for c in cats]
    images = {_json_number(im.get("id"), json_path, "images[].id", integer=True): im
              for im in _coco_list(json_path, data, "images")}
    keep = None
    if frames_csv is not None:
        keep = set()
        for n, parts in split_lines(frames_csv):
            if n == 1 and parts[0].lower() == "video":
                continue
            if len(parts) < 2:
                raise LabelFileError(frames_csv, n, "expected 'video,frame'")
            keep.add((parts[0], parse_int(parts[1], frames_csv, n, "frame", minimum=0)))
    rows = []
    for j, ann in enumerate(_coco_list(json_path, data, "annotations")):
        im = images.get(_json_number(ann.get("image_id"), json_path, f"annotations[{j}].image_id", integer=True))
        if im is None:
            raise LabelFileError(json_path, None, f"annotations[{j}]: image_id {ann['image_id']} not in images")
        cid = id_to_col.get(_json_number(ann.get("category_id"), json_path, f"annotations[{j}].category_id", integer=True))
        if cid is None:
            raise LabelFileError(json_path, None, f"annotations[{j}]: unknown category_id {ann['category_id']}")
        video = str(im.get("video"))
        frame = _json_number(im.get("frame"), json_path, f"image {im.get('id')} frame", integer=True)
        if frame < 0:
            raise LabelFileError(json_path, None, f"image {im.get('id')}: negative frame {frame}")
        if keep is None or (video, frame) in keep:
            rows.append((video, frame / fps, frame, cid))
    rows.sort(key=lambda r: (r[0], r[2]))
    return make_table("surglavi", names, rows, label_fps=fps), prompts
