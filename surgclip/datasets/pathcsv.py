"""Frame-list CSVs shared by several datasets: PeskaVLP's 1-fps ``path,label`` files (the ``csv``
layout of Cholec80 and AutoLaparo: ``--benchmark cholec80-csv | autolaparo-csv``) and one video's
``Frame,Phase`` CSV beside its frame folder (``--labels-csv``).
"""
from __future__ import annotations

import csv
import re
from pathlib import Path

from ..sampling import frame_to_seconds
from .layout import LoadOptions, read_fps_json, split_ids
from .parsing import TRAILING_NUMBER, class_id, guard, lines, parse_int
from .protocols import task_classes
from .table import FrameSource, FrameTable, LabelFileError, check_fps, make_table


@guard
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
    for n, line in lines(path):
        try:
            parts = next(csv.reader([line]))
        except csv.Error as err:
            raise LabelFileError(path, n, f"malformed CSV row: {err}") from None
        if n == 1 and parts and not re.search(r"\d", parts[-1]):
            continue  # header
        if len(parts) != 2:
            raise LabelFileError(path, n, f"expected 2 comma-separated fields (path, label), found {len(parts)}")
        match = TRAILING_NUMBER.search(Path(parts[0].strip()).stem)
        if not match:
            raise LabelFileError(path, n, f"no frame number in {parts[0][:60]!r}")
        frame = parse_int(match.group(1), path, n, "frame number", minimum=0)
        cid = class_id(parse_int(parts[1], path, n, "label") - label_base, classes, path, n)
        rows.append((video, frame_to_seconds(frame, fps), frame, cid))
    return make_table(name, classes, rows, label_fps=fps)


def load(root: Path, protocol: dict, split: str, task: str, opts: LoadOptions, pattern: str) -> FrameTable:
    """PeskaVLP 1-fps ``path,label`` CSVs in ``root`` (one per video, named like ``pattern``, e.g.
    ``video{id:02d}.csv``); frames (optional) in ``root/frames/<stem>/`` or ``root/../frames/<stem>/``
    at ``--frames-fps``."""
    classes = task_classes(protocol, task)
    found = {int(re.search(r"(\d+)$", p.stem).group(1)): p for p in sorted(root.glob("*.csv")) if re.search(r"(\d+)$", p.stem)}
    ids = split_ids(protocol, split, found, pattern, root)
    tables = [read_frame_label_csv(found[i], classes, label_base=protocol.get("label_base", 1), frame_fps=1.0,
                                   video=found[i].stem, name=f"{protocol['name']}/{task}") for i in ids]
    table = FrameTable.concat(tables)
    frames_fps = opts.frames_fps or read_fps_json(root).get("frames_fps")
    for frames_root in (root / "frames", root.parent / "frames"):
        if frames_fps and frames_root.is_dir():
            table.sources = {v: FrameSource(frames_root / v, fps=frames_fps, name_fps=opts.name_fps)
                             for v in table.videos() if (frames_root / v).is_dir()}
            break
    return table


def frame_folder_benchmark(label_csv, frames_dir, classes: list[str], frames_fps: float, name_fps: float,
                           label_base: int = 0, video: str | None = None, name: str = "frames") -> FrameTable:
    """One video as a frame folder plus a ``Frame,Phase`` CSV naming its images (e.g. the real
    Cholec80 video04 every-100th-frame folder: ``frames_fps=0.25``, ``name_fps=25``)."""
    video = video or Path(frames_dir).name
    table = read_frame_label_csv(label_csv, classes, label_base=label_base, frame_fps=name_fps,
                                 video=video, name=name)
    table.sources = {video: FrameSource(Path(frames_dir), fps=frames_fps, name_fps=name_fps)}
    return table
