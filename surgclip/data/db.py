"""The SurgLaVi caption database: schema check, one filtered query, caption cleaning, stats.

``CaptionDB(path).select(...)`` opens the SQLite file read-only (``file:...?mode=ro``), checks the
tables and columns it needs, runs ONE query with bound parameters, closes the connection and
returns a ``ClipTable`` of plain arrays. Nothing keeps a connection open, so forked DataLoader
workers never share one and no item costs a query.
"""
from __future__ import annotations

import math
import re
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

LEVEL_NAMES = {1: "task", 2: "step", 3: "phase"}
TEXT_FIELDS = ("caption", "raw_narration")

# The columns the selection reads; ``check_schema`` names any that are missing.
REQUIRED = {
    "videos": ("video_id", "name", "fps", "duration", "procedure_type", "specialty"),
    "captions": ("caption_id", "video_id", "level_id", "raw_narration", "start_time", "end_time",
                 "duration", "is_surgical_content", "is_descriptive", "caption"),
    "levels": ("level_id", "name"),
}
OPTIONAL_TABLES = ("transcriptions",)

_DROP = re.compile(r"[,.'!?\"()*#:;~]")
_SPACE = re.compile(r"[-/]")
_WS = re.compile(r"\s+")


class CaptionDBError(ValueError):
    """The caption database is missing, lacks a table/column, or holds an invalid row."""


class NotUTF8(bytes):
    """A TEXT value that is not valid UTF-8 (kept as bytes so the row can be named, not a decode crash)."""


def _decode_text(raw: bytes):
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return NotUTF8(raw)


def _float(value) -> float:
    """A numeric cell as float; NULL -> NaN; text, blobs and bad UTF-8 -> NaN (reported by the caller)."""
    if value is None or isinstance(value, (str, bytes)):
        try:
            return float(value) if isinstance(value, str) else float("nan")
        except ValueError:
            return float("nan")
    return float(value)


def clean_caption(text: str) -> str:
    """Caption cleaning as released with SurgLaVi.

    Drops "The surgeon", lower-cases, deletes ``,.'!?"()*#:;~``, turns ``-`` and ``/`` into
    spaces and collapses whitespace. ``"The surgeon grasps the gall-bladder."`` ->
    ``"grasps the gall bladder"``.
    """
    text = text.replace("The surgeon", "").lower()
    text = _SPACE.sub(" ", _DROP.sub("", text))
    return _WS.sub(" ", text).strip()


@dataclass
class ClipTable:
    """Selected clip-caption rows as parallel arrays (length N).

    caption_id, level: int64 [N]; start_s, end_s, video_fps: float64 [N]; video_name, caption,
    procedure_type: list[str] of N. ``dropped`` counts rows removed as invalid (skip mode), by reason.
    """

    caption_id: np.ndarray
    video_name: list
    level: np.ndarray
    start_s: np.ndarray
    end_s: np.ndarray
    caption: list
    video_fps: np.ndarray
    procedure_type: list
    dropped: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.caption_id)

    def subset(self, keep: np.ndarray) -> "ClipTable":
        """Rows where ``keep`` (bool [N] or int indices) selects them."""
        idx = np.flatnonzero(keep) if np.asarray(keep).dtype == bool else np.asarray(keep, dtype=np.int64)
        pick = lambda xs: [xs[i] for i in idx]  # noqa: E731
        return ClipTable(self.caption_id[idx], pick(self.video_name), self.level[idx], self.start_s[idx],
                         self.end_s[idx], pick(self.caption), self.video_fps[idx], pick(self.procedure_type),
                         dict(self.dropped))

    def videos(self) -> list[str]:
        """Distinct video names, sorted."""
        return sorted(set(self.video_name))


def connect_readonly(path: str | Path) -> sqlite3.Connection:
    """A read-only connection (``file:...?mode=ro`` URI); raises CaptionDBError if the file is missing."""
    path = Path(path)
    if not path.is_file():
        raise CaptionDBError(f"caption database not found: {path}")
    try:
        con = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
        con.text_factory = _decode_text
        con.execute("SELECT 1 FROM sqlite_master LIMIT 1")
    except sqlite3.DatabaseError as err:
        raise CaptionDBError(f"{path} is not a readable SQLite database: {err}") from err
    return con


def check_schema(con: sqlite3.Connection, where: str, required: dict = REQUIRED) -> None:
    """Raise CaptionDBError naming the first missing table or the missing columns of a table."""
    tables = {r[0] for r in _fetch(con, where, "SELECT name FROM sqlite_master WHERE type IN ('table', 'view')")}
    for table, columns in required.items():
        if table not in tables:
            raise CaptionDBError(f"{where}: table '{table}' is missing (found tables: {sorted(tables)})")
        have = {r[1] for r in _fetch(con, where, f"PRAGMA table_info('{table}')")}  # table name from the constant above
        missing = [c for c in columns if c not in have]
        if missing:
            raise CaptionDBError(f"{where}: table '{table}' lacks column(s) {missing} (has {sorted(have)})")


def _fetch(con: sqlite3.Connection, where, sql: str, params=()) -> list:
    """Run one query; SQLite errors (malformed file, broken view, ...) become CaptionDBError naming the file."""
    try:
        return con.execute(sql, params).fetchall()
    except sqlite3.Error as err:
        raise CaptionDBError(f"{where}: query failed ({type(err).__name__}: {err})") from err


def _int_ids(rows, where, table: str) -> dict:
    """``{int(id): name}`` from ``(id, name)`` rows, naming the first id that is not an integer."""
    out = {}
    for i, name in rows:
        if isinstance(i, bool) or not isinstance(i, (int, float)) or not float(i).is_integer():
            raise CaptionDBError(f"{where}: table '{table}' has a non-integer level_id {i!r}")
        out[int(i)] = name if isinstance(name, str) else repr(name)
    return out


def _in_clause(column: str, values: Sequence) -> tuple[str, list]:
    return f"{column} IN ({', '.join('?' * len(values))})", list(values)


class CaptionDB:
    """A SurgLaVi-schema SQLite file. Holds only the path; every method opens, queries and closes.

    Args:
        path: the ``.sqlite`` / ``.db`` file.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def levels(self) -> dict[int, str]:
        """level_id -> name, from the ``levels`` table."""
        con = connect_readonly(self.path)
        try:
            check_schema(con, str(self.path), {"levels": REQUIRED["levels"]})
            return _int_ids(_fetch(con, self.path, "SELECT level_id, name FROM levels"), self.path, "levels")
        finally:
            con.close()

    def select(self, levels: Iterable[int] = (1, 2, 3), min_duration: float = 0.0, max_duration: float = 500.0,
               descriptive_only: bool = True, surgical_only: bool = True, text_field: str = "caption",
               fallback_to_raw: bool = True, clean: bool = True, procedure_types: Sequence[str] | None = None,
               specialties: Sequence[str] | None = None, video_names: Sequence[str] | None = None,
               skip_errors: bool = False) -> ClipTable:
        """The clip-caption rows that pass the filters, in caption_id order (one query).

        Args:
            levels: level ids to keep; each must exist in ``levels`` (else CaptionDBError).
            min_duration, max_duration: keep ``min_duration < end - start <= max_duration`` seconds.
            descriptive_only, surgical_only: require ``is_descriptive = 1`` / ``is_surgical_content = 1``.
            text_field: ``caption`` (enhanced) or ``raw_narration``.
            fallback_to_raw: with ``caption``, use ``raw_narration`` where the caption is NULL/blank.
            clean: apply ``clean_caption``.
            procedure_types, specialties: keep only these values (exact match).
            video_names: keep only these videos (``videos.name``); filtered after the query, so any
                number of names works.
            skip_errors: drop rows with an empty caption or invalid times and count them in
                ``ClipTable.dropped`` instead of raising.
        Returns:
            ClipTable.
        Raises:
            CaptionDBError: missing file/table/column, unknown level id, or (without skip_errors)
                a row with empty text or invalid times, naming its caption_id.
        """
        if text_field not in TEXT_FIELDS:
            raise ValueError(f"text_field must be one of {TEXT_FIELDS}, got {text_field!r}")
        levels = [int(lv) for lv in levels]
        if not levels:
            raise ValueError("levels is empty: choose at least one of 1 (task), 2 (step), 3 (phase)")
        con = connect_readonly(self.path)
        try:
            check_schema(con, str(self.path))
            known = set(_int_ids(_fetch(con, self.path, "SELECT level_id, name FROM levels"), self.path, "levels"))
            unknown = sorted(set(levels) - known)
            if unknown:
                raise CaptionDBError(f"{self.path}: unknown level id(s) {unknown}; the levels table has {sorted(known)}")
            text = "c.caption" if text_field == "caption" else "c.raw_narration"
            if text_field == "caption" and fallback_to_raw:
                text = "COALESCE(NULLIF(TRIM(c.caption), ''), c.raw_narration)"
            where, params = [], []
            clause, vals = _in_clause("c.level_id", levels)
            where.append(clause), params.extend(vals)
            if descriptive_only:
                where.append("c.is_descriptive = 1")
            if surgical_only:
                where.append("c.is_surgical_content = 1")
            for column, values in (("v.procedure_type", procedure_types), ("v.specialty", specialties)):
                if values is not None:
                    clause, vals = _in_clause(column, list(values))
                    where.append(clause), params.extend(vals)
            # Duration filters are applied in Python on end - start so that NaN/invalid times are
            # reported rather than silently filtered by SQL's NULL semantics.
            sql = (f"SELECT c.caption_id, v.name, c.level_id, c.start_time, c.end_time, {text}, v.fps, "
                   f"v.procedure_type FROM captions c JOIN videos v ON v.video_id = c.video_id "
                   f"WHERE {' AND '.join(where)} ORDER BY c.caption_id")
            rows = _fetch(con, self.path, sql, params)
        finally:
            con.close()
        return self._to_table(rows, min_duration, max_duration, clean, video_names, skip_errors)

    def _to_table(self, rows, min_duration, max_duration, clean, video_names, skip_errors) -> ClipTable:
        keep_names = set(video_names) if video_names is not None else None
        out, dropped = [], {}

        def bad(reason: str, msg: str) -> None:
            if not skip_errors:
                raise CaptionDBError(f"{self.path}: {msg}")
            dropped[reason] = dropped.get(reason, 0) + 1

        for cid, name, level, start, end, text, fps, ptype in rows:
            if isinstance(cid, bool) or not isinstance(cid, int):
                bad("invalid_row", f"a caption row has a non-integer caption_id {cid!r} (video {name!r})")
                continue
            if keep_names is not None and name not in keep_names:
                continue
            bad_text = [f"{col} = {v!r}"[:100] for col, v in (("videos.name", name), ("caption text", text),
                                                                ("videos.procedure_type", ptype))
                        if isinstance(v, NotUTF8) or (v is not None and not isinstance(v, str))]
            if bad_text or not name:
                bad("invalid_text", f"caption {cid}: " + ("; ".join(bad_text) + " is not UTF-8 text" if bad_text
                                                          else f"its video has no name ({name!r})"))
                continue
            start, end = _float(start), _float(end)
            if not (math.isfinite(start) and math.isfinite(end)) or start < 0 or end <= start:
                bad("invalid_times", f"caption {cid} of video {name!r} has invalid times start={start} end={end} "
                                     f"(need 0 <= start < end, finite numbers)")
                continue
            if not (min_duration < end - start <= max_duration):
                continue
            text = clean_caption(text or "") if clean else (text or "").strip()
            if not text:
                bad("empty_caption", f"caption {cid} of video {name!r} is empty (after cleaning: {clean})")
                continue
            out.append((cid, name, int(level), start, end, text, _float(fps), ptype or ""))
        cols = list(zip(*out)) if out else [[] for _ in range(8)]
        return ClipTable(np.asarray(cols[0], dtype=np.int64), list(cols[1]), np.asarray(cols[2], dtype=np.int64),
                         np.asarray(cols[3], dtype=np.float64), np.asarray(cols[4], dtype=np.float64), list(cols[5]),
                         np.asarray(cols[6], dtype=np.float64), list(cols[7]), dropped)

    def stats(self) -> dict:
        """Counts per level, clip durations per level, videos and captions per procedure type."""
        con = connect_readonly(self.path)
        try:
            check_schema(con, str(self.path))
            names = _int_ids(_fetch(con, self.path, "SELECT level_id, name FROM levels"), self.path, "levels")
            per_level = {}
            for level, n, n_keep in _fetch(con, self.path,
                    "SELECT level_id, COUNT(*), SUM(is_descriptive = 1 AND is_surgical_content = 1) "
                    "FROM captions GROUP BY level_id ORDER BY level_id"):
                durs = np.array([_float(r[0]) for r in _fetch(con, self.path,
                    "SELECT end_time - start_time FROM captions WHERE level_id = ?", (level,))], dtype=float)
                if not np.isfinite(durs).any():
                    durs = np.array([np.nan, np.nan])  # keeps nan* quiet: no valid duration on this level
                key = int(level) if isinstance(level, int) else str(level)
                per_level[key] = {
                    "name": names.get(key, "?"), "captions": int(n), "descriptive_surgical": int(n_keep or 0),
                    "duration_s": {"mean": _nan_stat(np.nanmean, durs), "median": _nan_stat(np.nanmedian, durs),
                                   "min": _nan_stat(np.nanmin, durs), "max": _nan_stat(np.nanmax, durs),
                                   "total_h": float(np.nansum(durs) / 3600)}}
            procedures = {str(p): {"videos": int(nv), "hours": _float(h or 0) / 3600} for p, nv, h in _fetch(
                con, self.path,
                "SELECT procedure_type, COUNT(*), SUM(duration) FROM videos GROUP BY procedure_type ORDER BY 2 DESC")}
            n_videos, hours = _fetch(con, self.path, "SELECT COUNT(*), SUM(duration) FROM videos")[0]
        finally:
            con.close()
        return {"path": str(self.path), "videos": int(n_videos), "video_hours": _float(hours or 0) / 3600,
                "levels": per_level, "procedure_types": procedures}


def _nan_stat(fn, values: np.ndarray) -> float:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN level: the statistic is NaN, said in the table
        return float(fn(values))


def format_stats(stats: dict) -> str:
    """A human-readable table of ``CaptionDB.stats()``."""
    lines = [f"{stats['path']}: {stats['videos']} videos, {stats['video_hours']:.2f} h",
             f"{'level':<12}{'captions':>10}{'kept':>8}{'mean s':>9}{'median s':>10}{'min s':>8}{'max s':>8}{'hours':>8}"]
    for level, s in stats["levels"].items():
        d = s["duration_s"]
        label = f"{level} {s['name']}"
        lines.append(f"{label:<12}{s['captions']:>10}{s['descriptive_surgical']:>8}{d['mean']:>9.1f}"
                     f"{d['median']:>10.1f}{d['min']:>8.1f}{d['max']:>8.1f}{d['total_h']:>8.2f}")
    lines.append("procedure types:")
    for ptype, s in stats["procedure_types"].items():
        lines.append(f"  {ptype:<30}{s['videos']:>6} videos {s['hours']:>8.2f} h")
    return "\n".join(lines)
