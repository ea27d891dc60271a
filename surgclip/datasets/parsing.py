"""Dataset-independent parsing of label files: text, lines, JSON, integers and class ids, and pickles.

Every error names the file (and the line where there is one) as a ``LabelFileError``; a label
reader wrapped in ``guard`` never leaks a library exception from a malformed file.
"""
from __future__ import annotations

import functools
import json
import math
import pickle
import re
from pathlib import Path

from ..sampling import frame_to_seconds
from .table import LabelFileError

TRAILING_NUMBER = re.compile(r"(\d+)(?=\D*$)")  # the last run of digits of a name
MAX_INDEX = 2 ** 40  # frame numbers / times beyond this are corrupt, not a long video
MAX_SECONDS = 7 * 24 * 3600.0  # an interval ending after a week is corrupt (and would allocate a huge grid)


def guard(fn):
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


def json_object(path, data) -> dict:
    """``data`` if it is a JSON object, else an error naming the file."""
    if not isinstance(data, dict):
        raise LabelFileError(path, None, f"expected a JSON object at the top level, found {type(data).__name__}")
    return data


def json_objects(path, data: dict, key: str) -> list[dict]:
    """``data[key]`` (default ``[]``) if it is a list of objects (COCO ``images``, ``annotations``)."""
    value = data.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        raise LabelFileError(path, None, f"{key!r} must be a list of objects")
    return value


def json_number(value, path, where: str, integer: bool = False):
    """A finite JSON number (bools and strings refused); ``integer`` also refuses fractions."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or abs(value) >= MAX_INDEX * 1000 \
            or not math.isfinite(value):
        raise LabelFileError(path, None, f"{where}: expected a finite number, found {value!r}")
    if integer:
        if float(value) != int(value):
            raise LabelFileError(path, None, f"{where}: expected an integer, found {value!r}")
        return int(value)
    return float(value)


def lines(path):
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
    for n, line in lines(path):
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


def class_id(value: int, classes: list[str], path, line: int | None) -> int:
    """``value`` if it is a valid class id, else an error naming the file and row."""
    if not 0 <= value < len(classes):
        raise LabelFileError(path, line, f"unknown class id {value}; expected 0..{len(classes) - 1} "
                                         f"({len(classes)} classes)")
    return value


class UnsafePickleError(ValueError):
    """A pickle asked for a global (a class or function): refused, nothing was called."""


class _NoGlobals(pickle.Unpickler):
    """An unpickler for which every global (class, function) is refused."""

    def __init__(self, file, path: Path):
        super().__init__(file)
        self.path = path

    def find_class(self, module, name):
        raise UnsafePickleError(f"{self.path}: refused to load global {module}.{name} "
                                f"(only plain dicts, lists, str and numbers are read)")


def frame_class_row(video: str, frame_text: str, label_text: str, path, line: int, fps: float,
                    classes: list[str], what: str) -> tuple:
    """``(video, time_s, frame, class id)`` of a ``frame,class id`` label row; errors name ``file:line``."""
    frame = parse_int(frame_text, path, line, "frame index", minimum=0)
    return video, frame_to_seconds(frame, fps), frame, class_id(parse_int(label_text, path, line, what), classes, path, line)


def safe_load_pickle(path) -> dict:
    """The ``{key (str): [records]}`` dict of a pickle, rebuilt from plain containers only: every
    global is refused, so no code named in the file can run.

    Raises:
        UnsafePickleError: (a ValueError) naming the file and the global it asked for.
        ValueError: naming the file when it is not a pickle or not a dict of str -> list.
        FileNotFoundError: when it is absent.
    """
    path = Path(path)
    with open(path, "rb") as f:
        try:
            data = _NoGlobals(f, path).load()
        except UnsafePickleError:
            raise
        except Exception as err:  # truncated or not a pickle at all: any of a dozen exception types
            raise ValueError(f"{path}: not a readable pickle ({type(err).__name__}: {err})") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a dict {{video id: [frame records]}}, found {type(data).__name__}")
    for key, value in data.items():
        if not isinstance(key, str) or not isinstance(value, list):
            raise ValueError(f"{path}: expected a dict {{video id (str): [frame records] (list)}}, found entry "
                             f"{key!r:.40}: {type(value).__name__}")
    return data
