"""Dataset-independent pieces of reading a released layout: load options, ``fps.json``, numbered
label files, the videos of a split, and where each video's frames are.

A label or video file that a layout puts at a path and that is absent is a ``FileNotFoundError``
naming that path.
"""
from __future__ import annotations

import json
import re
import warnings
from dataclasses import dataclass
from pathlib import Path

from ..utils import VIDEO_EXTENSIONS
from .table import FrameSource, FrameTable, LabelFileError, check_fps


@dataclass
class LoadOptions:
    """Options every loader understands (None = the protocol's or ``fps.json``'s value).

    Attributes:
        frames_fps: rate of frame folders (frames per second of video they hold).
        name_fps: rate the frame files' numbers count in (default: the layout's).
        label_fps: rate of the label files' frame numbers.
        eval_fps: labelled rows kept per second.
        site: MultiBypass140 centre (``strasbourg`` | ``bern``).
        fold: MultiBypass140 official cross-validation fold (default 0 where the folds are read).
        splits: MultiBypass140 splits JSON (``surgclip data splits multibypass140``) to read the fold from.
        layout: which of a dataset's released layouts to read where it has several (``csv``: the
            PeskaVLP 1-fps CSVs of Cholec80 and AutoLaparo; ``txt``: the CholecT50 challenge files);
            None = its main layout.
    """

    frames_fps: float | None = None
    name_fps: float | None = None
    label_fps: float | None = None
    eval_fps: float | None = None
    site: str | None = None
    fold: int | None = None
    splits: str | None = None
    layout: str | None = None


def read_fps_json(root: Path) -> dict:
    """``fps.json`` of a dataset root as a dict (``{}`` when absent).

    Accepted keys: ``label_fps`` (or ``fps``, as the bundled Cholec80 sample writes) for the label
    files' frame numbering, ``frames_fps`` for frame folders. A bare number is a label fps.
    """
    path = Path(root) / "fps.json"
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_bytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise LabelFileError(path, getattr(err, "lineno", None), f"invalid JSON: {err}") from None
    if isinstance(data, (int, float)) and not isinstance(data, bool):
        data = {"label_fps": data}
    if not isinstance(data, dict):
        raise LabelFileError(path, None, f"expected an object like {{\"frames_fps\": 1}}, found {type(data).__name__}")
    out = {}
    label = data.get("label_fps", data.get("fps"))
    if label is not None:
        out["label_fps"] = check_fps(label, f"{path} label_fps")
    if data.get("frames_fps") is not None:
        out["frames_fps"] = check_fps(data["frames_fps"], f"{path} frames_fps")
    return out


def video_candidates(videos, video_dir: Path, frames_dir: Path) -> dict[str, tuple[list[Path], Path]]:
    """``{video: ([video_dir/<video>.<ext> for each VIDEO_EXTENSIONS], frames_dir/<video>)}`` for ``attach_sources``."""
    return {v: ([video_dir / f"{v}{e}" for e in VIDEO_EXTENSIONS], frames_dir / v) for v in videos}


def attach_sources(table: FrameTable, root: Path, candidates: dict[str, tuple[list[Path], Path]],
                   frames_fps: float | None, name_fps: float | None = None, what: str = "",
                   first_number: int = 0) -> FrameTable:
    """Set ``table.sources``: for each video the first existing video file, else its frame folder.

    Args:
        candidates: video id -> (video file paths in order of preference, frame folder).
        frames_fps: rate of frame folders; a folder without it is an error saying how to pass it.
        first_number: the number of the frame file at time 0 in the layout's folders (``FrameSource``).
    Raises:
        FileNotFoundError naming the expected paths of a video that has neither.
    """
    sources = {}
    for vid in table.videos():
        files, folder = candidates[vid]
        hit = next((p for p in files if p.is_file()), None)
        if hit is not None:
            sources[vid] = FrameSource(hit)
        elif folder.is_dir():
            if not frames_fps:
                raise ValueError(f"frame folder {folder} needs its fps: pass --frames-fps or write "
                                 f"{root / 'fps.json'} as {{\"frames_fps\": 1}}")
            sources[vid] = FrameSource(folder, fps=float(frames_fps), name_fps=name_fps, first_number=first_number)
        else:
            raise FileNotFoundError(f"{what}video {vid}: expected {files[0]} (video) or {folder}/ (frame folder) "
                                    f"in the official layout under {root}")
    table.sources = sources
    return table


def split_ids(protocol: dict, split: str, found: dict[int, Path], pattern: str, root: Path,
              splits: dict | None = None) -> list[int]:
    """Video ids of ``split`` that have a label file; error naming the expected path when none has.

    Args:
        split: a split name of ``splits`` (default: the protocol's), ``all``, or a text file of ids
            (one per line).
        found: id -> label file present.
        pattern: the label file's path under ``root`` with an ``{id}`` field (for messages).
    Warns:
        when some videos of the split have no label file (the others are returned).
    """
    splits = protocol.get("splits") if splits is None else splits
    if split == "all":
        ids = sorted(found)
    elif Path(split).is_file():
        ids = [int(re.search(r"(\d+)\s*$", l).group(1)) for l in Path(split).read_text().split() if re.search(r"\d", l)]
    elif split in (splits or {}):
        ids = [int(i) for i in splits[split]]
    else:
        raise ValueError(f"benchmark {protocol['name']} has no split {split!r}; splits: "
                         f"{sorted(splits or {}) + ['all']} or a file of video ids")
    have = [i for i in ids if i in found]
    if not have:
        raise FileNotFoundError(f"no label file for split {split!r}: expected e.g. "
                                f"{root / pattern.format(id=ids[0]) if ids else root / pattern} (official layout)")
    missing = [i for i in ids if i not in found]
    if missing:
        warnings.warn(f"{protocol['name']} split {split!r}: {len(missing)} of {len(ids)} videos have no label file "
                      f"(e.g. {root / pattern.format(id=missing[0])}); evaluating the {len(have)} present")
    return sorted(have)


def numbered(folder: Path, regex: str) -> dict[int, Path]:
    """{number: path} of the entries of ``folder`` whose name fully matches ``regex`` (one group)."""
    if not folder.is_dir():
        return {}
    out = {}
    for p in sorted(folder.iterdir()):
        m = re.fullmatch(regex, p.name)
        if m:
            out[int(m.group(1))] = p
    return out
