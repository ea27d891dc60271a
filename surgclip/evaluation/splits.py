"""MultiBypass140's official cross-validation folds, read from the released pickles without running them.

The official repository ships each centre's folds only as pickles,
``labels/<centre>/labels_by70_splits/labels/<split>/1fps_<fold>.pickle``, each a dict
``{video id: [frame records]}``. ``safe_load_pickle`` rebuilds plain containers only: it refuses
every global, so no code named in a file can run. ``surgclip data splits multibypass140`` writes the
video ids as JSON (``write_multibypass_splits``); ``fold_videos`` reads either form.
"""
from __future__ import annotations

import json
import pickle
import re
from pathlib import Path

from ..utils import atomic_write_json

CENTRES = ("bern", "strasbourg")
SPLITS = ("train", "val", "test")
SPLIT_DIR = "labels/{centre}/labels_by70_splits/labels/{split}"
_FILE = re.compile(r"1fps_(\d+)\.pickle")


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


def safe_load_pickle(path) -> dict:
    """The ``{video id: [records]}`` dict of an official split pickle, built without any global.

    Raises:
        UnsafePickleError (a ValueError) naming the file and the global it asked for.
        ValueError naming the file when it is not a pickle or not a dict of str -> list.
        FileNotFoundError when it is absent.
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


def _pickle_files(root: Path, centre: str) -> dict[int, dict[str, Path]]:
    """{fold: {split: path}} of the split pickles of one centre under ``root`` (official layout)."""
    out: dict[int, dict[str, Path]] = {}
    for split in SPLITS:
        folder = root / SPLIT_DIR.format(centre=centre, split=split)
        for p in sorted(folder.glob("1fps_*.pickle")) if folder.is_dir() else ():
            m = _FILE.fullmatch(p.name)
            if m:
                out.setdefault(int(m.group(1)), {})[split] = p
    return dict(sorted(out.items()))


def _where(root: Path) -> Path:
    return root / SPLIT_DIR.format(centre="<centre>", split="<split>") / "1fps_<fold>.pickle"


def read_multibypass_splits(repo_dir) -> dict:
    """``{centre: {fold: {split: [sorted video ids]}}}`` from the pickles of the official repository.

    Only the split files present appear. Raises FileNotFoundError naming the folder when there is no
    split pickle at all; errors of ``safe_load_pickle`` name the bad file.
    """
    repo = Path(repo_dir)
    out = {}
    for centre in CENTRES:
        files = _pickle_files(repo, centre)
        if files:
            out[centre] = {fold: {split: sorted(safe_load_pickle(p)) for split, p in splits.items()}
                           for fold, splits in files.items()}
    if not out:
        raise FileNotFoundError(f"no MultiBypass140 split pickles in {repo}: expected {_where(repo)} "
                                f"(the official repository's layout)")
    return out


def write_multibypass_splits(repo_dir, out) -> dict:
    """Read the folds of ``repo_dir`` (``read_multibypass_splits``) and write them to ``out`` as JSON
    (atomically): ``{"dataset", "source", "splits": {centre: {"<fold>": {split: [ids]}}}}``."""
    splits = read_multibypass_splits(repo_dir)
    data = {"dataset": "multibypass140", "source": str(Path(repo_dir).resolve()),
            "splits": {c: {str(k): v for k, v in folds.items()} for c, folds in splits.items()}}
    atomic_write_json(out, data)
    return splits


def _read_splits_json(path: Path) -> dict:
    """``{centre: {fold: {split: [ids]}}}`` of a JSON written by ``write_multibypass_splits``."""
    try:
        data = json.loads(path.read_bytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"{path}: not a splits JSON ({err})") from None
    splits = data.get("splits") if isinstance(data, dict) else None
    if not isinstance(splits, dict):
        raise ValueError(f"{path}: expected a splits JSON from `surgclip data splits multibypass140` "
                         f"(an object with \"splits\": {{centre: {{fold: {{split: [video ids]}}}}}})")
    out = {}
    for centre, folds in splits.items():
        for fold, by_split in (folds.items() if isinstance(folds, dict) else [(None, None)]):
            ok = str(fold).isdigit() and isinstance(by_split, dict) and all(
                isinstance(ids, list) and all(isinstance(v, str) for v in ids) for ids in by_split.values())
            if not ok:
                raise ValueError(f"{path}: splits.{centre}.{fold}: expected {{split: [video ids]}} under a fold "
                                 f"number, as `surgclip data splits` writes")
            out.setdefault(centre, {})[int(fold)] = by_split
    return out


def fold_videos(source, centre: str, fold: int, split: str) -> list[str]:
    """Sorted video ids of ``split`` in fold ``fold`` of ``centre``.

    Args:
        source: a splits JSON written by ``surgclip data splits multibypass140``, or a repository /
            dataset root holding the official pickles (only the one pickle needed is read).
    Raises:
        ValueError naming the source and the centres, folds or splits present when one is unknown;
        FileNotFoundError when ``source`` is absent or a root without any pickle of ``centre``.
    """
    source = Path(source)
    if source.is_file():
        folds = _read_splits_json(source).get(centre)
        if folds is None:
            raise ValueError(f"{source}: no centre {centre!r}; centres: {sorted(_read_splits_json(source))}")
    elif source.is_dir():
        folds = _pickle_files(source, centre)
        if not folds:
            raise FileNotFoundError(f"no split pickles of {centre} in {source}: expected "
                                    f"{source / SPLIT_DIR.format(centre=centre, split=split)}/1fps_{fold}.pickle "
                                    f"(official layout)")
    else:
        raise FileNotFoundError(f"splits source {source} does not exist "
                                f"(a splits JSON or a folder of the official pickles)")
    if fold not in folds:
        raise ValueError(f"{source}: no fold {fold} of {centre}; folds present: {sorted(folds)}")
    if split not in folds[fold]:
        raise ValueError(f"{source}: fold {fold} of {centre} has no split {split!r}; "
                         f"splits present: {sorted(folds[fold])}")
    ids = folds[fold][split]
    return sorted(safe_load_pickle(ids)) if isinstance(ids, Path) else sorted(str(v) for v in ids)
