"""SAR-RARP50: surgical action recognition. Protocol: ``sarrarp50.json``.

Release layout::

    video_N/video_left.avi           (or video_N/frames/ + fps.json {"frames_fps": F})
    video_N/action_discrete.txt      frame_idx,action_id; 60-fps frame numbers, one row per 6 frames
"""
from __future__ import annotations

import re
from pathlib import Path

from ..utils import VIDEO_EXTENSIONS, atomic_write_text
from .layout import LoadOptions, attach_sources, numbered, read_fps_json, split_ids
from .parsing import frame_class_row, guard, lines
from .protocols import task_classes
from .table import FrameTable, LabelFileError, check_fps, make_table

NAME = "sarrarp50"
FOLDER = "sarrarp50"
ALIASES: dict[str, dict] = {}
PREDICTION_NAMES = {("sarrarp50", "action"): "sarrarp50"}
# the sample's motion labels -> SAR-RARP50 action ids (0 = other)
SAMPLE_ACTIONS = {"insert": 1, "hold": 2, "dissect": 3, "retract": 4, "clip": 5, "cut": 6, "pack": 7}


@guard
def read_sarrarp50(path, classes: list[str], label_fps: float = 60.0, video: str | None = None) -> FrameTable:
    """SAR-RARP50 ``action_discrete.txt``: ``frame_idx,action_id`` per line (no header; a space
    instead of the comma is accepted). ``frame_idx`` counts 60-fps frames, one row per 6 frames."""
    path, fps = Path(path), check_fps(label_fps, "label_fps")
    video = video or path.parent.name
    rows = []
    for n, line in lines(path):
        parts = [p.strip() for p in re.split(r"[,\t ]+", line)]
        if len(parts) != 2:
            raise LabelFileError(path, n, f"expected 'frame_idx,action_id', found {line[:60]!r}")
        rows.append(frame_class_row(video, parts[0], parts[1], path, n, fps, classes, "action id"))
    return make_table("sarrarp50/action", classes, rows, label_fps=fps)


def load(root: Path, protocol: dict, split: str, task: str, opts: LoadOptions) -> FrameTable:
    """SAR-RARP50 action rows (kept at ``eval_fps``) of the split's videos with
    ``video_N/video_left.avi`` or ``video_N/frames/`` as sources."""
    found = {n: p / "action_discrete.txt" for n, p in numbered(root, r"video_(\d+)").items()}
    found = {n: p for n, p in found.items() if p.is_file()}
    ids = split_ids(protocol, split, found, "video_{id}/action_discrete.txt", root)
    classes = task_classes(protocol, task)
    label_fps = opts.label_fps or read_fps_json(root).get("label_fps") or protocol["label_fps"]
    eval_fps = opts.eval_fps or protocol.get("eval_fps")
    tables = []
    for i in ids:
        t = read_sarrarp50(found[i], classes, label_fps=label_fps, video=found[i].parent.name)
        tables.append(t.subsample(1.0 / eval_fps) if eval_fps else t)
    table = FrameTable.concat(tables)
    frames_fps = opts.frames_fps or read_fps_json(root).get("frames_fps")
    cands = {v: ([root / v / "video_left.avi"] + [root / v / f"video_left{e}" for e in VIDEO_EXTENSIONS],
                 root / v / "frames")
             for v in table.videos()}
    return attach_sources(table, root, cands, frames_fps, opts.name_fps)


def write_sample(out: Path, procedures) -> None:
    """Videos 1, 2 (train) and 41, 42 (test) as AVI (MPEG-4 part 2) with an action row every 6
    60-fps frames (the sample's motion label through ``SAMPLE_ACTIONS``)."""
    import av

    for vid, p in zip([1, 2, 41, 42], procedures):
        folder = out / f"video_{vid}"
        folder.mkdir(parents=True, exist_ok=True)
        with av.open(str(folder / "video_left.avi"), "w") as container:  # AVI as released
            stream = container.add_stream("mpeg4", rate=int(p.fps))
            stream.width = stream.height = p.size
            stream.pix_fmt = "yuv420p"
            for arr in p.frames:
                for packet in stream.encode(av.VideoFrame.from_ndarray(arr, format="rgb24")):
                    container.mux(packet)
            for packet in stream.encode():
                container.mux(packet)
        rows = [f"{f},{SAMPLE_ACTIONS.get(p.task(f / 60), 0)}" for f in range(0, int(p.duration * 60), 6)]
        atomic_write_text(folder / "action_discrete.txt", "\n".join(rows) + "\n")
