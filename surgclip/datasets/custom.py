"""A user's dataset without a protocol (``--benchmark custom``): a classes file, one label file per
video and a folder of videos or frame folders.

Layout::

    classes.txt                 class names, one per line (line order = id)
    <labels>/<stem>.csv|.txt    <second|frame>,<label>[;<label>...] per row, optional header
    <videos>/<stem>.mp4         (or <videos>/<stem>/ frame folder at --frames-fps)

It has no protocol file, no root layout and no sample: ``load_custom`` reads it, ``protocol()`` stands
in for a protocol (no prompt sets: prompts are ``names`` or a file).
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from ..utils import VIDEO_EXTENSIONS
from .layout import LoadOptions, attach_sources
from .parsing import MAX_INDEX, lines, read_text, split_lines
from .table import FrameTable, LabelFileError, make_table

NAME = "custom"
FOLDER = None  # no data-root sub-folder: the files are named on the command line
ALIASES: dict[str, dict] = {}
PREDICTION_NAMES: dict[tuple[str, str], str] = {}
write_sample = None


def protocol() -> dict:
    """The stand-in protocol of a custom dataset: one task ``custom``, no prompt sets."""
    return {"name": "custom", "prompts": {}, "tasks": {"custom": {}}}


def load(root: Path, protocol: dict, split: str, task: str, opts: LoadOptions) -> FrameTable:
    """Refused: a custom dataset is read by ``load_custom`` from its classes, labels and videos."""
    raise ValueError("benchmark custom has no dataset root: read it with --classes, --labels and --videos "
                     "(surgclip.datasets.custom.load_custom)")


def read_classes_file(path) -> list[str]:
    """Class names, one per line, in id order (``#`` comments and blank lines ignored)."""
    names = [l.strip() for l in read_text(path).splitlines() if l.strip() and not l.strip().startswith("#")]
    if not names:
        raise LabelFileError(path, None, "no class names (one per line)")
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise LabelFileError(path, None, f"duplicate class names {dup}")
    return names


def read_custom_labels(path, classes: list[str], unit_fps: float, video: str, multilabel: bool) -> FrameTable:
    """One video's ``<second|frame>,<label>`` rows (optional header); labels by class name or id,
    several separated by ``;`` when ``multilabel``. Time = first column / ``unit_fps``."""
    path = Path(path)
    lookup = {c: i for i, c in enumerate(classes)} | {c.lower(): i for i, c in enumerate(classes)}
    rows = []
    for n, parts in split_lines(path, sep=","):
        if n == 1 and not re.fullmatch(r"-?\d+(\.\d*)?", parts[0]):
            continue  # header
        if len(parts) != 2:
            raise LabelFileError(path, n, f"expected '<time>,<label>', found {len(parts)} fields")
        try:
            t = float(parts[0])
        except ValueError:
            raise LabelFileError(path, n, f"expected a number of seconds or frames, found {parts[0][:40]!r}") from None
        if not (t >= 0 and np.isfinite(t) and t < MAX_INDEX):
            raise LabelFileError(path, n, f"time {parts[0]!r} must be a finite number >= 0")
        ids = []
        for label in [x.strip() for x in parts[1].split(";") if x.strip()] if multilabel else [parts[1]]:
            if label in lookup or label.lower() in lookup:
                ids.append(lookup.get(label, lookup.get(label.lower())))
            elif re.fullmatch(r"\d+", label) and int(label) < len(classes):
                ids.append(int(label))
            else:
                raise LabelFileError(path, n, f"unknown class {label[:40]!r}; expected a name or id 0..{len(classes) - 1} "
                                              f"of the classes file")
        if multilabel:
            flags = np.zeros(len(classes), np.uint8)
            flags[ids] = 1
            rows.append((video, t / unit_fps, int(round(t)), flags))
        else:
            rows.append((video, t / unit_fps, int(round(t)), ids[0]))
    return make_table("custom", classes, rows, multilabel=multilabel, label_fps=unit_fps)


def load_custom(classes_file, labels_dir, videos_dir, label_unit: str = "seconds", frames_fps: float | None = None,
                label_fps: float | None = None, multilabel: bool | None = None) -> FrameTable:
    """A user's dataset without a protocol: ``labels_dir/<stem>.(csv|txt)`` per video in
    ``videos_dir/<stem>.<ext>`` (or frame folder ``videos_dir/<stem>/`` at ``frames_fps``).

    Args:
        classes_file: class names, one per line (line order = id).
        label_unit: ``seconds`` or ``frames`` (frame numbers count at ``label_fps``, default: the
            video's own fps).
        multilabel: default: true when any label cell holds ``;``.
    """
    classes = read_classes_file(classes_file)
    labels_dir, videos_dir = Path(labels_dir), Path(videos_dir)
    if label_unit not in ("seconds", "frames"):
        raise ValueError(f"--label-unit must be seconds or frames, not {label_unit!r}")
    files = sorted(p for p in labels_dir.glob("*") if p.suffix.lower() in (".csv", ".txt"))
    if not files:
        raise FileNotFoundError(f"no label files (<video stem>.csv or .txt) in {labels_dir}")
    if multilabel is None:
        multilabel = any(";" in line.split(",", 1)[-1] for p in files for _, line in lines(p))
    cands = {p.stem: ([videos_dir / f"{p.stem}{e}" for e in VIDEO_EXTENSIONS], videos_dir / p.stem) for p in files}
    tables = []
    for p in files:
        unit_fps = 1.0
        if label_unit == "frames":
            unit_fps = label_fps or _source_fps(cands[p.stem], frames_fps, p)
        tables.append(read_custom_labels(p, classes, unit_fps, p.stem, multilabel))
    table = FrameTable.concat(tables)
    return attach_sources(table, videos_dir, cands, frames_fps)


def _source_fps(cand: tuple[list[Path], Path], frames_fps: float | None, label_file: Path) -> float:
    """The rate of the video a label file's frame numbers count in: the video file's own (read by
    the media layer, ``surgclip.data.readers``, which imports no dataset code) or ``frames_fps``."""
    from ..data.readers import open_source

    files, folder = cand
    hit = next((p for p in files if p.is_file()), None)
    if hit is not None:
        return float(open_source(hit).fps)
    if folder.is_dir() and frames_fps:
        return float(frames_fps)
    raise FileNotFoundError(f"{label_file}: no video {files[0]} or frame folder {folder}/ to take the frame rate "
                            f"from; pass --label-fps")
