"""HeiChole (EndoVis 2019 surgical workflow and skill analysis): phase and instrument presence.
Protocol: ``heichole.json``.

Release layout::

    Videos/Full/Hei-Chole<N>.mp4
    Annotations/Phase/Hei-Chole<N>_Annotation_Phase.csv            <frame>,<phase 0-6>
    Annotations/Instrument/Hei-Chole<N>_Annotation_Instrument.csv  <frame>,<21 flags 0/1>

The CSVs have no header and a row for every frame, numbered at the video's own rate (25 fps; 50 fps
for the videos in the protocol's ``label_fps_by_video``). Copies of the release differ in file-name
case (``hei-chole1_annotation_phase.csv``), which is ignored.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..sampling import frame_to_seconds
from ..utils import VIDEO_EXTENSIONS, atomic_write_json, atomic_write_text
from .layout import LoadOptions, attach_sources, numbered, read_fps_json, split_ids
from .parsing import frame_class_row, guard, parse_int, split_lines
from .protocols import task_classes
from .table import FrameTable, LabelFileError, check_fps, make_table

NAME = "heichole"
FOLDER = "heichole"
ALIASES: dict[str, dict] = {}
PREDICTION_NAMES = {("heichole", "phase"): "heichole", ("heichole", "instrument"): "heichole_tools"}

CATEGORY_FLAGS = 21  # flags of _Annotation_Instrument.csv: categories 0-6, reserved 7-19, 20 = undefined shaft
FOLDERS = {"phase": "Phase", "instrument": "Instrument"}


def _rows(path):
    """(line, fields) of a header-less CSV: a first line without any digit (a header) is skipped and
    a trailing comma dropped."""
    for n, parts in split_lines(path):
        if n == 1 and not any(c.isdigit() for c in "".join(parts)):
            continue
        yield n, parts[:-1] if len(parts) > 1 and parts[-1] == "" else parts


@guard
def read_heichole_phase(path, classes: list[str], label_fps: float = 25.0, video: str | None = None) -> FrameTable:
    """``Hei-Chole<N>_Annotation_Phase.csv``: ``<frame>,<phase id>`` per frame.

    Returns: single-label table; time = frame / label_fps; video defaults to the name before ``_``.
    Raises: LabelFileError naming ``file:line`` for a malformed row or a phase id outside the classes.
    """
    path, fps = Path(path), check_fps(label_fps, "label_fps")
    video = video or path.name.split("_")[0]
    rows = []
    for n, parts in _rows(path):
        if len(parts) != 2:
            raise LabelFileError(path, n, f"expected 2 comma-separated fields (frame, phase id), found {len(parts)}")
        rows.append(frame_class_row(video, parts[0], parts[1], path, n, fps, classes, "phase id"))
    return make_table("heichole/phase", classes, rows, label_fps=fps)


@guard
def read_heichole_instrument(path, categories: list[str], label_fps: float = 25.0, video: str | None = None,
                             columns: list[int | None] | None = None) -> FrameTable:
    """``Hei-Chole<N>_Annotation_Instrument.csv``: ``<frame>,<flag>,...`` per frame, flags 0/1.

    Args:
        columns: the category id of each flag column, None for a column that is no category. Default:
            the category file's 21 flags (0-6 = categories, the rest ignored). ``detailed_columns``
            gives those of ``_Annotation_Instrument_Detailed.csv``.
    Returns: multi-label table over ``categories``; time = frame / label_fps.
    """
    path, fps = Path(path), check_fps(label_fps, "label_fps")
    video = video or path.name.split("_")[0]
    if columns is None:
        columns = list(range(len(categories))) + [None] * (CATEGORY_FLAGS - len(categories))
    rows = []
    for n, parts in _rows(path):
        if len(parts) != len(columns) + 1:
            raise LabelFileError(path, n, f"expected {len(columns) + 1} comma-separated fields (frame + {len(columns)} "
                                          f"instrument flags), found {len(parts)}")
        frame = parse_int(parts[0], path, n, "frame index", minimum=0)
        targets = np.zeros(len(categories), np.uint8)
        for j, (text, cat) in enumerate(zip(parts[1:], columns)):
            flag = parse_int(text, path, n, "instrument flag")
            if flag not in (0, 1):
                raise LabelFileError(path, n, f"instrument flag {j} must be 0 or 1, found {flag}")
            if flag and cat is not None:
                targets[cat] = 1
        rows.append((video, frame_to_seconds(frame, fps), frame, targets))
    return make_table("heichole/instrument", categories, rows, multilabel=True, label_fps=fps)


def detailed_columns(protocol: dict) -> list[int | None]:
    """Category of each flag column of ``_Annotation_Instrument_Detailed.csv`` (type id = column)."""
    by_id = {int(t["id"]): t.get("category") for t in protocol["instrument_types"]}
    return [by_id.get(i) for i in range(max(by_id) + 1)]


def _label_fps(protocol: dict, vid: int, opts: LoadOptions, fps_json: dict) -> float:
    return (opts.label_fps or fps_json.get("label_fps") or protocol.get("label_fps_by_video", {}).get(str(vid))
            or protocol["label_fps"])


def load(root: Path, protocol: dict, split: str, task: str, opts: LoadOptions) -> FrameTable:
    """HeiChole ``phase`` or ``instrument`` rows at ``eval_fps`` (1 fps) of the split's videos, with
    ``Videos/Full/Hei-Chole<N>.mp4`` (or ``Full/HD/``, ``videos/``) or ``frames/Hei-Chole<N>/`` as sources."""
    folder = root / "Annotations" / FOLDERS[task]
    found = numbered(folder, rf"(?i)hei-chole(\d+)_annotation_{task}\.csv")
    pattern = f"Annotations/{FOLDERS[task]}/Hei-Chole{{id}}_Annotation_{FOLDERS[task]}.csv"
    ids = split_ids(protocol, split, found, pattern, root)
    classes = task_classes(protocol, task)
    fps_json = read_fps_json(root)
    eval_fps = opts.eval_fps or protocol.get("eval_fps", 1)
    reader = read_heichole_phase if task == "phase" else read_heichole_instrument
    table = FrameTable.concat([reader(found[i], classes, label_fps=_label_fps(protocol, i, opts, fps_json),
                                      video=f"Hei-Chole{i}").subsample(1.0 / eval_fps) for i in ids])
    dirs = [root / "Videos" / "Full", root / "Videos" / "Full" / "HD", root / "videos"]
    cands = {v: ([d / f"{s}{e}" for d in dirs for s in (v, v.lower()) for e in VIDEO_EXTENSIONS], root / "frames" / v)
             for v in table.videos()}
    return attach_sources(table, root, cands, opts.frames_fps or fps_json.get("frames_fps"), opts.name_fps)


# The sample's tool ids are Cholec80's (Grasper, Bipolar, Hook, Scissors, Clipper, Irrigator,
# SpecimenBag); their HeiChole categories:
SAMPLE_TOOL_CATEGORY = (0, 2, 2, 3, 1, 4, 5)


def write_sample(out: Path, procedures, ids=(1, 2, 25, 26), tool_category=SAMPLE_TOOL_CATEGORY) -> None:
    """A synthetic HeiChole in the release layout under ``out`` from the sample's rendered procedures
    (``.phase(t)`` = Cholec80 phase id, ``.tool(t)`` = Cholec80 tool id): videos, a phase and a
    category-instrument row for every frame, and ``fps.json`` with the videos' rate. The first two
    ids are public videos (split ``test``), the last two ``challenge-test`` ones."""
    out = Path(out)
    fps = procedures[0].fps
    for vid, p in zip(ids, procedures):
        name = f"Hei-Chole{vid}"
        p.copy_video(out / "Videos" / "Full" / f"{name}.mp4")
        times = [i / fps for i in range(len(p.frames))]
        atomic_write_text(out / "Annotations" / "Phase" / f"{name}_Annotation_Phase.csv",
                          "".join(f"{i},{p.phase(t)}\n" for i, t in enumerate(times)))
        lines = []
        for i, t in enumerate(times):
            flags = [0] * CATEGORY_FLAGS
            flags[tool_category[p.tool(t)]] = 1
            lines.append(f"{i}," + ",".join(map(str, flags)) + "\n")
        atomic_write_text(out / "Annotations" / "Instrument" / f"{name}_Annotation_Instrument.csv", "".join(lines))
    atomic_write_json(out / "fps.json", {"label_fps": fps, "note": "label frame numbers count frames of these "
                                         f"{fps:g}-fps videos (HeiChole itself: 25, or 50 for some videos)"})
