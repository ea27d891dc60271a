"""AutoLaparo Task 1: phase recognition. Protocol: ``autolaparo.json``.

Release layout::

    videos/NN.mp4              (or frames/NN/ + fps.json {"frames_fps": F})
    labels/label_NN.txt        <second> <phase 1-7>, 1 fps, optional header

``autolaparo-csv`` (or a root holding only ``NN.csv`` files) reads PeskaVLP's 1-fps CSVs (``pathcsv``).
"""
from __future__ import annotations

from pathlib import Path

from ..utils import atomic_write_text
from . import pathcsv
from .layout import LoadOptions, attach_sources, numbered, read_fps_json, split_ids, video_candidates
from .parsing import class_id, parse_int, split_lines
from .protocols import task_classes
from .table import FrameTable, LabelFileError, make_table

NAME = "autolaparo"
FOLDER = "autolaparo"
ALIASES = {"autolaparo-csv": {"layout": "csv"}}
PREDICTION_NAMES = {("autolaparo", "phase"): "autolaparo"}
CSV_PATTERN = "{id:02d}.csv"


def read_autolaparo_phase(path: Path, classes: list[str], label_base: int = 1, video: str | None = None) -> FrameTable:
    """``label_NN.txt``: ``<second> <phase>`` per line (phase ``label_base``-based), optional header.

    Returns: single-label table at 1 fps; video defaults to the number in the file name.
    Raises: LabelFileError naming ``file:line`` for a malformed row or an unknown phase.
    """
    path = Path(path)
    video = video or path.stem.split("_")[-1]
    rows = []
    for n, parts in split_lines(path, sep=None):
        if n == 1 and not parts[0].lstrip("-").isdigit():
            continue  # header "Frame Phase"
        if len(parts) != 2:
            raise LabelFileError(path, n, f"expected '<second> <phase>', found {len(parts)} fields")
        sec = parse_int(parts[0], path, n, "second", minimum=0)
        cid = class_id(parse_int(parts[1], path, n, "phase") - label_base, classes, path, n)
        rows.append((video, float(sec), sec, cid))
    return make_table("autolaparo/phase", classes, rows, label_fps=1.0)


def load(root: Path, protocol: dict, split: str, task: str, opts: LoadOptions) -> FrameTable:
    """AutoLaparo phase rows (1 fps) of the split's videos with ``videos/NN.mp4`` or ``frames/NN/``
    as sources. A root without ``labels/label_NN.txt`` but with ``*.csv`` files is read as ``csv``."""
    found = numbered(root / "labels", r"label_(\d+)\.txt")
    if opts.layout == "csv" or (opts.layout is None and not found and any(root.glob("*.csv"))):
        return pathcsv.load(root, protocol, split, task, opts, pattern=CSV_PATTERN)
    if opts.layout is not None:
        raise ValueError(f"autolaparo has no layout {opts.layout!r}; layouts: csv (or none: the release's)")
    ids = split_ids(protocol, split, found, "labels/label_{id:02d}.txt", root)
    classes = task_classes(protocol, task)
    base = int(protocol.get("label_base", 1))
    table = FrameTable.concat([read_autolaparo_phase(found[vid], classes, base, f"{vid:02d}") for vid in ids])
    frames_fps = opts.frames_fps or read_fps_json(root).get("frames_fps")
    return attach_sources(table, root, video_candidates(table.videos(), root / "videos", root / "frames"),
                          frames_fps, opts.name_fps)


def write_sample(out: Path, procedures) -> None:
    """Videos 1, 2 (train) and 15, 16 (test): the sample's videos and 1-fps labels, phases 1-based."""
    for vid, p in zip([1, 2, 15, 16], procedures):
        p.copy_video(out / "videos" / f"{vid:02d}.mp4")
        rows = "".join(f"{s}\t{p.phase(s) + 1}\n" for s in p.seconds())
        atomic_write_text(out / "labels" / f"label_{vid:02d}.txt", "Frame\tPhase\n" + rows)
