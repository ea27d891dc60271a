"""Cholec80 (CAMMA): phase and tool presence. Protocol: ``cholec80.json``.

Release layout::

    videos/videoNN.mp4                     (or frames/videoNN/ + fps.json {"frames_fps": F})
    phase_annotations/videoNN-phase.txt    Frame<TAB>Phase name, every 25-fps frame
    tool_annotations/videoNN-tool.txt      Frame<TAB>7 flags, every 25th frame

``cholec80-csv`` reads PeskaVLP's 1-fps ``videoNN.csv`` files instead (``pathcsv``).
"""
from __future__ import annotations

from pathlib import Path

from ..sampling import frame_to_seconds
from ..utils import atomic_write_json, atomic_write_text
from . import pathcsv
from .layout import LoadOptions, attach_sources, numbered, read_fps_json, split_ids, video_candidates
from .parsing import guard, parse_int, split_lines
from .protocols import task_classes
from .table import FrameTable, LabelFileError, check_fps, make_table

NAME = "cholec80"
FOLDER = "cholec80"
ALIASES = {"cholec80-csv": {"layout": "csv"}}
PREDICTION_NAMES = {("cholec80", "phase"): "cholec80", ("cholec80", "tool"): "cholec80_tools"}


@guard
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
        rows.append((video, frame_to_seconds(frame, fps), frame, cid))
    return make_table("cholec80/phase", classes, rows, label_fps=fps)


@guard
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
        rows.append((video, frame_to_seconds(frame, fps), frame, flags))
    return make_table("cholec80/tool", tools, rows, multilabel=True, label_fps=fps)


def load(root: Path, protocol: dict, split: str, task: str, opts: LoadOptions) -> FrameTable:
    """Cholec80 ``phase`` rows (every 25-fps frame, kept at ``eval_fps``) or ``tool`` rows (every 25th
    frame) of the split's videos, with ``videos/videoNN.mp4`` or ``frames/videoNN/`` as sources."""
    if opts.layout == "csv":
        return pathcsv.load(root, protocol, split, task, opts, pattern="video{id:02d}.csv")
    if opts.layout is not None:
        raise ValueError(f"cholec80 has no layout {opts.layout!r}; layouts: csv (or none: the release's)")
    fps_json = read_fps_json(root)
    label_fps = opts.label_fps or fps_json.get("label_fps") or protocol["label_fps"]
    eval_fps = opts.eval_fps or protocol.get("eval_fps", 1)
    folder = root / ("phase_annotations" if task == "phase" else "tool_annotations")
    found = numbered(folder, rf"video(\d+)-{task}\.txt")
    ids = split_ids(protocol, split, found, f"{folder.name}/video{{id:02d}}-{task}.txt", root)
    classes = task_classes(protocol, task)
    reader = read_cholec80_phase if task == "phase" else read_cholec80_tool
    tables = []
    for vid in ids:
        t = reader(found[vid], classes, label_fps=label_fps, video=f"video{vid:02d}")
        tables.append(t.subsample(1.0 / eval_fps) if task == "phase" else t)
    table = FrameTable.concat(tables)
    frames_fps = opts.frames_fps or fps_json.get("frames_fps")
    return attach_sources(table, root, video_candidates(table.videos(), root / "videos", root / "frames"),
                          frames_fps, opts.name_fps)


def write_sample(out: Path, procedures) -> None:
    """Videos 1, 2 (train) and 49, 50 (test): the sample's videos, a phase row for every frame, a
    tool row every ``fps`` frames, and ``fps.json`` with the videos' rate."""
    fps = procedures[0].fps
    for vid, p in zip([1, 2, 49, 50], procedures):
        name = f"video{vid:02d}"
        p.copy_video(out / "videos" / f"{name}.mp4")
        n = len(p.frames)
        atomic_write_text(out / "phase_annotations" / f"{name}-phase.txt",
                          "Frame\tPhase\n" + "".join(f"{i}\t{p.phase_names[p.phase(i / fps)]}\n" for i in range(n)))
        lines = ["Frame\t" + "\t".join(p.tool_names)]
        lines += [f"{i}\t" + "\t".join(str(int(p.tool(i / fps) == k)) for k in range(len(p.tool_names)))
                  for i in range(0, n, int(round(fps)))]
        atomic_write_text(out / "tool_annotations" / f"{name}-tool.txt", "\n".join(lines) + "\n")
    atomic_write_json(out / "fps.json", {"label_fps": fps, "note": "label frame numbers count frames of these "
                                         f"{fps:g}-fps videos (Cholec80 itself: 25)"})
