"""MultiBypass140 (StrasBypass70 + BernBypass70): phase and step recognition, one centre at a time,
with the official cross-validation folds. Protocol: ``multibypass140.json``.

Release layout (the videos per centre, the labels from the official repository)::

    <StrasBypass70|BernBypass70>/videos/<SBP|BBP>NN.mp4     (or .../frames/<P>NN/, numbered from 1)
    labels/<strasbourg|bern>/labels_by70/<P>NN.mp4.json      {"phases": [...], "steps": [...]}
    labels/<centre>/labels_by70_splits/labels/<split>/1fps_<fold>.pickle   official folds

The folds ship only as pickles, each ``{video id: [frame records]}``; they are read with
``parsing.safe_load_pickle`` (every global refused, so nothing named in a file runs).
``surgclip data splits multibypass140`` writes them as JSON (``write_multibypass_splits``);
``fold_videos`` reads either form.
"""
from __future__ import annotations

import json
import pickle
import re
from pathlib import Path

import numpy as np

from ..utils import atomic_path, atomic_write_json
from .layout import LoadOptions, attach_sources, numbered, read_fps_json, split_ids, video_candidates
from .parsing import MAX_SECONDS, guard, json_number, json_object, load_json, safe_load_pickle
from .protocols import read_protocol, task_classes
from .table import FrameTable, LabelFileError, check_fps, make_table

NAME = "multibypass140"
FOLDER = "multibypass140"
ALIASES = {"strasbypass70": {"site": "strasbourg"}, "bernbypass70": {"site": "bern"}}
PREDICTION_NAMES = {("strasbypass70", "phase"): "strasbypass70", ("bernbypass70", "phase"): "bernbypass70"}

CENTRES = ("bern", "strasbourg")
SPLITS = ("train", "val", "test")
SPLIT_DIR = "labels/{centre}/labels_by70_splits/labels/{split}"
_FILE = re.compile(r"1fps_(\d+)\.pickle")


@guard
def read_multibypass_json(path, classes: list[str], key: str = "phases", eval_fps: float = 1.0,
                          time_scale: float = 1e-3, video: str | None = None, ignore=()) -> FrameTable:
    """MultiBypass140 ``BBPnn.mp4.json``: ``{"phases": [{start, end, label_name, label_id}], "steps": [...]}``.

    Intervals (milliseconds: ``time_scale=1e-3``) are sampled every ``1/eval_fps`` seconds; where
    intervals overlap the later one in the file wins (e.g. ``out_of_body`` inside ``preparation``).
    Intervals whose id is in ``ignore`` (the ``severe_index`` adverse-event marker, id 13, which is
    not among the 13 phase classes) are read and checked but do not overwrite the phase.
    """
    path, fps = Path(path), check_fps(eval_fps, "eval_fps")
    video = video or path.name.split(".")[0]
    data = json_object(path, load_json(path))
    if key not in data:
        raise LabelFileError(path, None, f"no {key!r} list; keys are {sorted(map(str, data))}")
    if not isinstance(data[key], list):
        raise LabelFileError(path, None, f"{key!r} must be a list of intervals, found {type(data[key]).__name__}")
    intervals = []
    for i, seg in enumerate(data[key]):
        if not isinstance(seg, dict) or not {"start", "end", "label_id"} <= set(seg):
            raise LabelFileError(path, None, f"{key}[{i}]: expected an object with start, end, label_id")
        start = json_number(seg["start"], path, f"{key}[{i}].start") * time_scale
        end = json_number(seg["end"], path, f"{key}[{i}].end") * time_scale
        cid = json_number(seg["label_id"], path, f"{key}[{i}].label_id", integer=True)
        if not 0 <= cid < len(classes) and cid not in ignore:
            raise LabelFileError(path, None, f"{key}[{i}]: unknown class id {cid} ({seg.get('label_name')!r}); "
                                             f"expected 0..{len(classes) - 1}")
        if start < 0 or end < start or end > MAX_SECONDS:
            raise LabelFileError(path, None, f"{key}[{i}]: bad interval start {start} s, end {end} s")
        if cid not in ignore:
            intervals.append((start, end, cid))
    if not intervals:
        return make_table(f"multibypass140/{key}", classes, [], label_fps=fps)
    last = max(e for _, e, _ in intervals)
    times = np.arange(0, int(np.floor(last * fps)) + 1) / fps
    label = np.full(len(times), -1, dtype=np.int64)
    for start, end, cid in intervals:
        label[(times >= start) & (times < end)] = cid
    rows = [(video, float(t), i, int(c)) for i, (t, c) in enumerate(zip(times, label)) if c >= 0]
    return make_table(f"multibypass140/{key}", classes, rows, label_fps=fps)


# --------------------------------------------------------------------------------------------- folds


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


# --------------------------------------------------------------------------------------------- loader


def _fold_ids(root: Path, site: dict, centre: str, split: str, opts: LoadOptions, found: dict, label_dir: Path):
    """(ids, split_info) of fold ``opts.fold`` (default 0) from ``opts.splits`` or the pickles under ``root``."""
    fold = 0 if opts.fold is None else int(opts.fold)
    source = Path(opts.splits) if opts.splits else root
    names = fold_videos(source, site["labels"], fold, split)
    by_name = {f"{site['prefix']}{i:02d}": i for i in found}
    missing = [v for v in names if v not in by_name]
    if missing:
        raise FileNotFoundError(f"fold {fold} {split} of {centre} ({source}) lists {len(missing)} videos without a "
                                f"label file: {', '.join(missing)} (expected {label_dir}/<id>.mp4.json)")
    where = source if opts.splits else root / SPLIT_DIR.format(centre=site["labels"], split=split) / f"1fps_{fold}.pickle"
    return sorted(by_name[v] for v in names), {"fold": fold, "split": split, "source": str(where)}


def load(root: Path, protocol: dict, split: str, task: str, opts: LoadOptions) -> FrameTable:
    """One centre's ``phase`` or ``step`` rows at ``eval_fps`` (1 fps) with
    ``<StrasBypass70|BernBypass70>/videos/<P>NN.mp4`` or ``.../frames/<P>NN/`` as sources.

    A split ``train`` | ``val`` | ``test`` is fold ``opts.fold`` (default 0) of the official folds: from
    ``opts.splits`` (a JSON of ``surgclip data splits``) if given, else from the official pickles
    ``labels/<site>/labels_by70_splits/labels/<split>/1fps_<fold>.pickle`` under ``root`` if that folder
    exists; otherwise, without ``opts.fold``, the protocol's own ``splits`` (also for ``all`` or a file of
    ids, which ``opts.fold`` / ``opts.splits`` do not accept). ``table.split_info`` says
    which fold and source were used. A fold video without a label file is a FileNotFoundError naming it.
    """
    sites = protocol["sites"]
    if opts.site not in sites:
        raise ValueError(f"multibypass140 needs --site {' | '.join(sites)} (or --benchmark strasbypass70 | bernbypass70)")
    site = sites[opts.site]
    label_dir = root / "labels" / site["labels"] / "labels_by70"
    found = numbered(label_dir, rf"{site['prefix']}(\d+)\.mp4\.json")
    pattern = f"labels/{site['labels']}/labels_by70/{site['prefix']}{{id:02d}}.mp4.json"
    explicit = opts.splits is not None or opts.fold is not None
    if explicit and split not in SPLITS:
        raise ValueError(f"multibypass140 folds (fold/splits options) apply to split {' | '.join(SPLITS)}, not {split!r}")
    if split in SPLITS and (explicit or (root / "labels" / site["labels"] / "labels_by70_splits").is_dir()):
        ids, split_info = _fold_ids(root, site, opts.site, split, opts, found, label_dir)
    else:
        ids = split_ids(protocol, split, found, pattern, root, splits=protocol.get("splits", {}).get(opts.site, {}))
        split_info = {"fold": None, "split": split,
                      "source": f"protocol {protocol['name']} splits" if split in SPLITS else split}
    if not ids:
        raise ValueError(f"{split_info['source']}: split {split!r} of {opts.site} lists no videos")
    spec = protocol["tasks"][task]
    classes = task_classes(protocol, task)
    eval_fps = opts.eval_fps or protocol.get("eval_fps", 1)
    tables = [read_multibypass_json(found[i], classes, key=protocol["label_keys"][task], eval_fps=eval_fps,
                                    video=f"{site['prefix']}{i:02d}", ignore=spec.get("ignore_ids", ()))
              for i in ids]
    table = FrameTable.concat(tables)
    table.name = f"{site['folder'].lower()}/{task}"
    table.split_info = split_info
    base = root / site["folder"]
    frames_fps = opts.frames_fps or read_fps_json(root).get("frames_fps")
    # the official util/extract_frames.py writes ffmpeg's <id>_%08d.jpg: numbered from 1
    return attach_sources(table, root, video_candidates(table.videos(), base / "videos", base / "frames"),
                          frames_fps, opts.name_fps, first_number=int(protocol.get("frames_first_number", 0)))


# --------------------------------------------------------------------------------------------- sample


def write_sample(out: Path, procedures) -> None:
    """Per centre: the sample's videos, label JSONs (phases mapped onto the 12 phases in use, steps by
    ``step_key``) and fold-0 split pickles (plain dicts only) in the official layout. Bern ids are
    fold-1 val + test ids; fold 0 of the sample re-uses its training procedures as val."""
    proto = read_protocol(NAME)
    phases = [c["name"] for c in proto["classes"]]
    steps = [c["name"] for c in proto["step_classes"]]
    ids = {"bern": [12, 18, 2, 3], "strasbourg": [1, 2, 9, 20]}
    for site, info in proto["sites"].items():
        records = {}
        for vid, p in zip(ids[site], procedures):
            name = f"{info['prefix']}{vid:02d}"
            p.copy_video(out / info["folder"] / "videos" / f"{name}.mp4")
            phase_of = lambda s, p=p: min(p.phase(s) * 11 // 6, 11)
            step_of = lambda s, p=p: p.step_key(s, len(steps))
            data = {"phases": p.intervals(phase_of, phases), "steps": p.intervals(step_of, steps)}
            atomic_write_json(out / "labels" / info["labels"] / "labels_by70" / f"{name}.mp4.json", data)
            records[name] = [{"Frame_id": f"{name}_{s + 1:08d}", "Original_frame_id": int(s), "Phase_gt": phase_of(s),
                              "Step_gt": step_of(s), "unique_id": vid * 100000 + int(s)}
                             for s in p.seconds()]
        train, test = list(records)[:2], list(records)[2:]
        for split, names in {"train": train, "val": train, "test": test}.items():
            path = out / "labels" / info["labels"] / "labels_by70_splits" / "labels" / split / "1fps_0.pickle"
            with atomic_path(path) as tmp:
                tmp.write_bytes(pickle.dumps({n: records[n] for n in names}, protocol=4))
