"""``surgclip data import``: a lab's own (video, start, end, caption[, level]) pairs -> a caption
database in the SurgLaVi schema (``schema.sql``), which ``surgclip train`` reads like SurgLaVi's.

Pairs come as CSV (a header with ``video,start,end,caption`` and optionally ``level``) or JSONL (one
object per line with those keys). ``video`` names an MP4 under ``--videos`` in one of the two layouts
training reads: ``case1.mp4`` (or just ``case1``) or SurgLaVi's ``case1/case1.mp4``. Times are seconds (``12.5``) or ``[hh:]mm:ss[.fff]``. ``level`` is 1/2/3 or
``task``/``step``/``phase`` (default ``--level``). Each video is probed once for its frame rate,
frame count and size.

A bad row (missing video, unreadable video, end <= start, a span past the video's end, an empty
caption, an unknown level, an unparsable time) is an error naming ``file:line``; with
``skip_bad`` it is skipped and counted by reason. The database is written to a temporary file and
renamed into place, so a failed import never leaves a partial file.
"""
from __future__ import annotations

import csv
import json
import re
import sqlite3
from collections import Counter
from pathlib import Path

from ..utils import atomic_path
from .dataset import source_path
from .db import LEVEL_NAMES
from .readers import VideoReadError, open_source

SCHEMA_SQL = Path(__file__).with_name("schema.sql")
COLUMNS = ("video", "start", "end", "caption")
_CLOCK = re.compile(r"^(?:(\d+):)?(\d+):(\d+(?:\.\d*)?)$")
MAX_ERRORS_SHOWN = 10


class PairsError(ValueError):
    """Rows of a pairs file that cannot be imported; the message names each as ``file:line: reason``."""


def parse_time(text) -> float:
    """Seconds from ``12.5``, ``01:02.5`` or ``1:01:02``; ValueError for anything else."""
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        value = float(text)
    else:
        text = str(text).strip()
        clock = _CLOCK.match(text)
        if clock:
            h, m, s = clock.groups()
            value = int(h or 0) * 3600 + int(m) * 60 + float(s)
        else:
            value = float(text)
    if not value >= 0 or value == float("inf"):
        raise ValueError(f"not a time: {text!r}")
    return value


def parse_level(value, default: int) -> int:
    """1, 2, 3 or task / step / phase (None or empty -> ``default``); ValueError otherwise."""
    if value is None or str(value).strip() == "":
        return default
    text = str(value).strip().lower()
    names = {name: level for level, name in LEVEL_NAMES.items()}
    if text in names:
        return names[text]
    if text.isdigit() and int(text) in LEVEL_NAMES:
        return int(text)
    raise ValueError(f"unknown level {value!r}; expected 1, 2, 3 or {', '.join(names)}")


def read_pairs(path) -> list[tuple[int, dict]]:
    """(line number, record) of every pair in a CSV or JSONL file.

    Raises:
        PairsError: the file lacks a required column, or a JSONL line is not an object.
    """
    path = Path(path)
    text = path.read_text(encoding="utf-8-sig")
    if path.suffix.lower() in (".jsonl", ".ndjson"):
        rows = []
        for n, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as err:
                raise PairsError(f"{path}:{n}: invalid JSON ({err.msg})") from None
            if not isinstance(record, dict):
                raise PairsError(f"{path}:{n}: expected an object with {', '.join(COLUMNS)}")
            rows.append((n, record))
        return rows
    reader = csv.DictReader(text.splitlines())
    missing = [c for c in COLUMNS if c not in (reader.fieldnames or [])]
    if missing:
        raise PairsError(f"{path}:1: missing column(s) {missing}; the header must name {', '.join(COLUMNS)} "
                         f"(and optionally level); found {reader.fieldnames}")
    return [(n, row) for n, row in enumerate(reader, start=2)]


def find_video(videos: Path, name: str) -> Path | None:
    """The file ``name`` stands for under ``videos`` (see the module docstring), or None."""
    name = str(name).strip()
    if not name or Path(name).is_absolute() or ".." in Path(name).parts:
        return None
    stem = name[:-len(".mp4")] if name.endswith(".mp4") else name
    path = source_path(stem, videos)  # the file training and pack will read, in their order of layouts
    return path if path.is_file() else None


def import_pairs(pairs, videos, out, level: int = 1, skip_bad: bool = False) -> dict:
    """Write the pairs of ``pairs`` as a SurgLaVi-schema database at ``out``.

    Args:
        pairs: CSV or JSONL file.
        videos: folder the ``video`` column is relative to.
        out: the SQLite file to write (replaced atomically).
        level: level of rows without one (1 task, 2 step, 3 phase).
        skip_bad: skip bad rows and count them instead of failing.
    Returns:
        ``{"captions", "videos", "levels": {1: n, ...}, "skipped": {reason: n}, "layout": "nested" | "flat"}``.
    Raises:
        PairsError: bad rows (without ``skip_bad``), or no row left to import.
    """
    pairs, videos, out = Path(pairs), Path(videos), Path(out)
    if not videos.is_dir():
        raise FileNotFoundError(f"videos folder not found: {videos}")
    default_level = parse_level(level, 1)
    probed: dict[str, dict | str] = {}
    kept, errors, skipped = [], [], Counter()

    def bad(n: int, reason: str, message: str) -> None:
        skipped[reason] += 1
        errors.append(f"{pairs}:{n}: {message}")

    for n, rec in read_pairs(pairs):
        name = str(rec.get("video") or "").strip()
        path = find_video(videos, name)
        if path is None:
            bad(n, "missing_video", f"no video {name!r} under {videos} ({name}, {name}.mp4 or {name}/{name}.mp4)")
            continue
        if str(path) not in probed:
            try:
                reader = open_source(path)
                probed[str(path)] = {"fps": float(reader.fps), "frames": int(reader.num_frames),
                                     "size": getattr(reader, "native_size", None)}
            except (VideoReadError, OSError, ValueError) as err:
                probed[str(path)] = f"{type(err).__name__}: {err}"
        info = probed[str(path)]
        if isinstance(info, str):
            bad(n, "unreadable_video", f"video {path} cannot be read ({info})")
            continue
        try:
            start, end = parse_time(rec.get("start")), parse_time(rec.get("end"))
        except (TypeError, ValueError):
            bad(n, "bad_time", f"start and end must be seconds or [hh:]mm:ss, found {rec.get('start')!r}, "
                               f"{rec.get('end')!r}")
            continue
        caption = str(rec.get("caption") or "").strip()
        duration = info["frames"] / info["fps"]
        if end <= start:
            bad(n, "bad_span", f"end {end} s must be after start {start} s")
        elif end > duration + 1.0 / info["fps"]:
            bad(n, "bad_span", f"the span {start}-{end} s ends after the video's end ({duration:.3f} s, {path})")
        elif not caption:
            bad(n, "empty_caption", "empty caption")
        else:
            try:
                lvl = parse_level(rec.get("level"), default_level)
            except ValueError as err:
                bad(n, "unknown_level", str(err))
                continue
            kept.append((path, lvl, start, min(end, duration), caption))
    if errors and not skip_bad:
        shown = "\n  ".join(errors[:MAX_ERRORS_SHOWN])
        more = f"\n  ... and {len(errors) - MAX_ERRORS_SHOWN} more" if len(errors) > MAX_ERRORS_SHOWN else ""
        raise PairsError(f"{len(errors)} bad row(s) in {pairs} (--skip-bad skips them):\n  {shown}{more}")
    if not kept:
        raise PairsError(f"{pairs}: no pair to import ({dict(skipped) or 'the file has no rows'})")
    names = {}
    for path, *_ in kept:
        names.setdefault(str(path), path.parent.name if path.parent.name == path.stem and path.parent != videos
                         else path.stem)
    if len(set(names.values())) != len(names):
        dup = sorted({n for n in names.values() if list(names.values()).count(n) > 1})
        raise PairsError(f"{pairs}: two video files share the name {dup[0]!r}; names must be unique")
    nested = all(Path(p).parent.name == Path(p).stem for p in names)
    with atomic_path(out) as tmp:
        con = sqlite3.connect(str(tmp))
        try:
            con.executescript(SCHEMA_SQL.read_text())
            con.executemany("INSERT INTO levels VALUES (?, ?)", sorted(LEVEL_NAMES.items()))
            ids = {}
            for vid, (path, name) in enumerate(names.items(), start=1):
                info, count = probed[path], sum(1 for p, *_ in kept if str(p) == path)
                size = info["size"] or (None, None)
                ids[path] = vid
                con.execute("INSERT INTO videos (video_id, title, name, fps, duration, frame_count, height, width, "
                            "total_caption_count) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                            (vid, name, name, info["fps"], info["frames"] / info["fps"], info["frames"], size[0],
                             size[1], count))
            con.executemany(
                "INSERT INTO captions (caption_id, video_id, video_name, level_id, raw_narration, start_time, end_time, "
                "duration, is_surgical_content, is_descriptive, caption) VALUES (?, ?, ?, ?, ?, ?, ?, ?, 1, 1, ?)",
                [(i, ids[str(p)], names[str(p)], lvl, cap, a, b, b - a, cap)
                 for i, (p, lvl, a, b, cap) in enumerate(kept, start=1)])
            con.commit()
        finally:
            con.close()
    return {"captions": len(kept), "videos": len(names), "levels": dict(sorted(Counter(k[1] for k in kept).items())),
            "skipped": dict(skipped), "layout": "nested" if nested else "flat"}
