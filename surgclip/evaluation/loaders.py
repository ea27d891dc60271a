"""Dataset loaders, one per released layout, each -> ``FrameTable`` with its frame sources.

Every loader has the signature ``loader(root, protocol, split, task, opts) -> FrameTable`` and is
registered in ``LOADERS`` under the protocol's ``format``; ``benchmarks.load_benchmark`` is the one
dispatch. A label or video file that the official layout puts at a path and that is absent is a
``FileNotFoundError`` naming that path.
"""
from __future__ import annotations

import json
import re
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import formats
from .table import FrameSource, FrameTable, LabelFileError, check_fps

VIDEO_EXTS = (".mp4", ".avi", ".mkv", ".webm", ".mov")


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
    """

    frames_fps: float | None = None
    name_fps: float | None = None
    label_fps: float | None = None
    eval_fps: float | None = None
    site: str | None = None
    fold: int | None = None
    splits: str | None = None


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


def find_video_sources(root: Path, videos: list[str], frames_fps: float | None) -> dict[str, FrameSource]:
    """``videos/<id>.<ext>`` or ``frames/<id>/`` for each video that has one (others left out)."""
    out = {}
    for vid in videos:
        hit = next((root / "videos" / f"{vid}{e}" for e in VIDEO_EXTS if (root / "videos" / f"{vid}{e}").is_file()), None)
        if hit is not None:
            out[vid] = FrameSource(hit)
        elif (root / "frames" / vid).is_dir() and frames_fps:
            out[vid] = FrameSource(root / "frames" / vid, fps=float(frames_fps))
    return out


def _ids_for_split(protocol: dict, split: str, found: dict[int, Path], pattern: str, root: Path,
                   splits: dict | None = None) -> list[int]:
    """Video ids of ``split`` that have a label file; error naming the expected path when none has.

    ``split`` is a split name of the protocol, ``all``, or a text file of ids (one per line).
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


def _numbered(folder: Path, regex: str) -> dict[int, Path]:
    """{number: path} of the entries of ``folder`` whose name fully matches ``regex`` (one group)."""
    if not folder.is_dir():
        return {}
    out = {}
    for p in sorted(folder.iterdir()):
        m = re.fullmatch(regex, p.name)
        if m:
            out[int(m.group(1))] = p
    return out


def _classes(protocol: dict, task: str) -> list[str]:
    from .benchmarks import task_classes

    return task_classes(protocol, task)


# --------------------------------------------------------------------------------------------- loaders


def load_cholec80(root: Path, protocol: dict, split: str, task: str, opts: LoadOptions) -> FrameTable:
    """Cholec80: ``phase_annotations/videoNN-phase.txt`` (every 25-fps frame; kept at 1 fps),
    ``tool_annotations/videoNN-tool.txt`` (every 25th frame), ``videos/videoNN.mp4`` or
    ``frames/videoNN/``."""
    fps_json = read_fps_json(root)
    label_fps = opts.label_fps or fps_json.get("label_fps") or protocol["label_fps"]
    eval_fps = opts.eval_fps or protocol.get("eval_fps", 1)
    folder = root / ("phase_annotations" if task == "phase" else "tool_annotations")
    found = _numbered(folder, rf"video(\d+)-{task}\.txt")
    pattern = f"{folder.name}/video{{id:02d}}-{task}.txt"
    ids = _ids_for_split(protocol, split, found, pattern, root)
    classes = _classes(protocol, task)
    reader = formats.read_cholec80_phase if task == "phase" else formats.read_cholec80_tool
    tables = []
    for vid in ids:
        t = reader(found[vid], classes, label_fps=label_fps, video=f"video{vid:02d}")
        tables.append(t.subsample(1.0 / eval_fps) if task == "phase" else t)
    table = FrameTable.concat(tables)
    frames_fps = opts.frames_fps or fps_json.get("frames_fps")
    cands = {v: ([root / "videos" / f"{v}{e}" for e in VIDEO_EXTS], root / "frames" / v) for v in table.videos()}
    return attach_sources(table, root, cands, frames_fps, opts.name_fps)


def load_autolaparo(root: Path, protocol: dict, split: str, task: str, opts: LoadOptions) -> FrameTable:
    """AutoLaparo Task 1: ``labels/label_NN.txt`` (1 fps, ``<second> <phase 1-7>``), ``videos/NN.mp4``
    or ``frames/NN/``. A folder of PeskaVLP ``NN.csv`` files is read as ``autolaparo-csv``."""
    found = _numbered(root / "labels", r"label_(\d+)\.txt")
    if not found and any(root.glob("*.csv")):
        return load_path_label_csv(root, protocol, split, task, opts)
    ids = _ids_for_split(protocol, split, found, "labels/label_{id:02d}.txt", root)
    classes = _classes(protocol, task)
    base = int(protocol.get("label_base", 1))
    tables = []
    for vid in ids:
        rows = []
        for n, parts in formats.split_lines(found[vid], sep=None):
            if n == 1 and not parts[0].lstrip("-").isdigit():
                continue  # header "Frame Phase"
            if len(parts) != 2:
                raise LabelFileError(found[vid], n, f"expected '<second> <phase>', found {len(parts)} fields")
            sec = formats.parse_int(parts[0], found[vid], n, "second", minimum=0)
            cid = formats.class_id(formats.parse_int(parts[1], found[vid], n, "phase") - base, classes, found[vid], n)
            rows.append((f"{vid:02d}", float(sec), sec, cid))
        tables.append(formats.make_table("autolaparo/phase", classes, rows, label_fps=1.0))
    table = FrameTable.concat(tables)
    frames_fps = opts.frames_fps or read_fps_json(root).get("frames_fps")
    cands = {v: ([root / "videos" / f"{v}{e}" for e in VIDEO_EXTS], root / "frames" / v) for v in table.videos()}
    return attach_sources(table, root, cands, frames_fps, opts.name_fps)


def load_path_label_csv(root: Path, protocol: dict, split: str, task: str, opts: LoadOptions) -> FrameTable:
    """PeskaVLP 1-fps ``path,label`` CSVs (``videoNN.csv`` / ``NN.csv``) in ``root``; frames (optional)
    in ``root/../frames/<stem>/`` or ``root/frames/<stem>/`` at ``--frames-fps``."""
    classes = _classes(protocol, task)
    found = {int(re.search(r"(\d+)$", p.stem).group(1)): p for p in sorted(root.glob("*.csv")) if re.search(r"(\d+)$", p.stem)}
    stem = "video{id:02d}.csv" if protocol["name"] == "cholec80" else "{id:02d}.csv"
    ids = _ids_for_split(protocol, split, found, stem, root)
    tables = [formats.read_frame_label_csv(found[i], classes, label_base=protocol.get("label_base", 1), frame_fps=1.0,
                                           video=found[i].stem, name=f"{protocol['name']}/{task}") for i in ids]
    table = FrameTable.concat(tables)
    frames_fps = opts.frames_fps or read_fps_json(root).get("frames_fps")
    for frames_root in (root / "frames", root.parent / "frames"):
        if frames_fps and frames_root.is_dir():
            table.sources = {v: FrameSource(frames_root / v, fps=frames_fps, name_fps=opts.name_fps)
                             for v in table.videos() if (frames_root / v).is_dir()}
            break
    return table


def load_multibypass140(root: Path, protocol: dict, split: str, task: str, opts: LoadOptions) -> FrameTable:
    """MultiBypass140, one centre: ``labels/<site>/labels_by70/<P>NN.mp4.json`` and
    ``<StrasBypass70|BernBypass70>/videos/<P>NN.mp4`` or ``.../frames/<P>NN/``.

    A split ``train`` | ``val`` | ``test`` is fold ``opts.fold`` (default 0) of the official folds: from
    ``opts.splits`` (a JSON of ``surgclip data splits``) if given, else from the official pickles
    ``labels/<site>/labels_by70_splits/labels/<split>/1fps_<fold>.pickle`` under ``root`` if that folder
    exists; otherwise, without ``opts.fold``, the protocol's own ``splits`` (also for ``all`` or a file of
    ids, which ``opts.fold`` / ``opts.splits`` do not accept). ``table.split_info`` says
    which fold and source were used. A fold video without a label file is a FileNotFoundError naming it.
    """
    from .splits import SPLIT_DIR, SPLITS, fold_videos

    sites = protocol["sites"]
    if opts.site not in sites:
        raise ValueError(f"multibypass140 needs --site {' | '.join(sites)} (or --benchmark strasbypass70 | bernbypass70)")
    site = sites[opts.site]
    label_dir = root / "labels" / site["labels"] / "labels_by70"
    found = _numbered(label_dir, rf"{site['prefix']}(\d+)\.mp4\.json")
    pattern = f"labels/{site['labels']}/labels_by70/{site['prefix']}{{id:02d}}.mp4.json"
    explicit = opts.splits is not None or opts.fold is not None
    if explicit and split not in SPLITS:
        raise ValueError(f"multibypass140 folds (fold/splits options) apply to split {' | '.join(SPLITS)}, not {split!r}")
    if split in SPLITS and (explicit or (root / "labels" / site["labels"] / "labels_by70_splits").is_dir()):
        fold = 0 if opts.fold is None else int(opts.fold)
        source = Path(opts.splits) if opts.splits else root
        names = fold_videos(source, site["labels"], fold, split)
        by_name = {f"{site['prefix']}{i:02d}": i for i in found}
        missing = [v for v in names if v not in by_name]
        if missing:
            raise FileNotFoundError(f"fold {fold} {split} of {opts.site} ({source}) lists {len(missing)} videos without a "
                                    f"label file: {', '.join(missing)} (expected {label_dir}/<id>.mp4.json)")
        ids = sorted(by_name[v] for v in names)
        where = source if opts.splits else root / SPLIT_DIR.format(centre=site["labels"], split=split) / f"1fps_{fold}.pickle"
        split_info = {"fold": fold, "split": split, "source": str(where)}
    else:
        ids = _ids_for_split(protocol, split, found, pattern, root, splits=protocol.get("splits", {}).get(opts.site, {}))
        split_info = {"fold": None, "split": split,
                      "source": f"protocol {protocol['name']} splits" if split in SPLITS else split}
    if not ids:
        raise ValueError(f"{split_info['source']}: split {split!r} of {opts.site} lists no videos")
    spec = protocol["tasks"][task]
    classes = _classes(protocol, task)
    eval_fps = opts.eval_fps or protocol.get("eval_fps", 1)
    tables = [formats.read_multibypass_json(found[i], classes, key=protocol["label_keys"][task], eval_fps=eval_fps,
                                            video=f"{site['prefix']}{i:02d}", ignore=spec.get("ignore_ids", ()))
              for i in ids]
    table = FrameTable.concat(tables)
    table.name = f"{site['folder'].lower()}/{task}"
    table.split_info = split_info
    base = root / site["folder"]
    frames_fps = opts.frames_fps or read_fps_json(root).get("frames_fps")
    cands = {v: ([base / "videos" / f"{v}{e}" for e in VIDEO_EXTS], base / "frames" / v) for v in table.videos()}
    # the official util/extract_frames.py writes ffmpeg's <id>_%08d.jpg: numbered from 1
    return attach_sources(table, root, cands, frames_fps, opts.name_fps,
                          first_number=int(protocol.get("frames_first_number", 0)))


def load_grasp(root: Path, protocol: dict, split: str, task: str, opts: LoadOptions) -> FrameTable:
    """GraSP: ``annotations/grasp_{long-term|short-term}_{split}.json`` and ``frames/CASEnnn/`` (30-fps
    frames named by index) or ``videos/CASEnnn.mp4``."""
    spec = protocol["tasks"][task]
    if split not in protocol["splits"]:
        raise ValueError(f"grasp has no split {split!r}; splits: {sorted(protocol['splits'])}")
    path = root / "annotations" / protocol["splits"][split].format(annotations=spec["annotations"])
    if not path.is_file():
        raise FileNotFoundError(f"GraSP {task} labels for split {split!r}: expected {path} (official layout)")
    label_fps = opts.label_fps or read_fps_json(root).get("label_fps") or protocol["label_fps"]
    table = formats.read_grasp_json(path, task=spec["key"], frame_fps=label_fps)
    eval_fps = opts.eval_fps or protocol.get("eval_fps")
    if eval_fps and not table.multilabel:
        table = table.subsample(1.0 / eval_fps)
    frames_fps = opts.frames_fps or read_fps_json(root).get("frames_fps") or protocol["label_fps"]
    cands = {v: ([root / "videos" / f"{v}{e}" for e in VIDEO_EXTS], root / "frames" / v) for v in table.videos()}
    return attach_sources(table, root, cands, frames_fps, opts.name_fps or label_fps)


def load_sarrarp50(root: Path, protocol: dict, split: str, task: str, opts: LoadOptions) -> FrameTable:
    """SAR-RARP50: ``video_N/action_discrete.txt`` + ``video_N/video_left.avi`` (or ``video_N/frames/``)."""
    found = {n: p / "action_discrete.txt" for n, p in _numbered(root, r"video_(\d+)").items()}
    found = {n: p for n, p in found.items() if p.is_file()}
    ids = _ids_for_split(protocol, split, found, "video_{id}/action_discrete.txt", root)
    classes = _classes(protocol, task)
    label_fps = opts.label_fps or read_fps_json(root).get("label_fps") or protocol["label_fps"]
    eval_fps = opts.eval_fps or protocol.get("eval_fps")
    tables = []
    for i in ids:
        t = formats.read_sarrarp50(found[i], classes, label_fps=label_fps, video=found[i].parent.name)
        tables.append(t.subsample(1.0 / eval_fps) if eval_fps else t)
    table = FrameTable.concat(tables)
    frames_fps = opts.frames_fps or read_fps_json(root).get("frames_fps")
    cands = {v: ([root / v / "video_left.avi"] + [root / v / f"video_left{e}" for e in VIDEO_EXTS], root / v / "frames")
             for v in table.videos()}
    return attach_sources(table, root, cands, frames_fps, opts.name_fps)


def load_cholect50(root: Path, protocol: dict, split: str, task: str, opts: LoadOptions) -> FrameTable:
    """CholecT50: ``labels/VIDnn.json`` and ``videos/VIDnn/*.png`` (1 fps, named by index) or
    ``videos/VIDnn.mp4``."""
    found = _numbered(root / "labels", r"VID(\d+)\.json")
    ids = _ids_for_split(protocol, split, found, "labels/VID{id:02d}.json", root)
    classes = _classes(protocol, task)
    sizes = {k: len(_classes(protocol, k)) for k in protocol["tasks"]}
    tables = [formats.read_cholect50_json(found[i], sizes, component=task, classes=classes, video=f"VID{i:02d}")
              for i in ids]
    return _cholect50_sources(FrameTable.concat(tables), root, opts)


def load_cholect50_txt(root: Path, protocol: dict, split: str, task: str, opts: LoadOptions) -> FrameTable:
    """CholecTriplet challenge format: ``<task>/VIDnn.txt`` rows ``frame,<0/1 per class>`` (1 fps)."""
    found = _numbered(root / task, r"VID(\d+)\.txt")
    ids = _ids_for_split(protocol, split, found, f"{task}/VID{{id:02d}}.txt", root)
    classes = _classes(protocol, task)
    tables = [formats.read_cholect50_txt(found[i], classes, component=task, video=f"VID{i:02d}") for i in ids]
    return _cholect50_sources(FrameTable.concat(tables), root, opts)


def _cholect50_sources(table: FrameTable, root: Path, opts: LoadOptions) -> FrameTable:
    frames_fps = opts.frames_fps or read_fps_json(root).get("frames_fps") or 1.0
    cands = {v: ([root / "videos" / f"{v}{e}" for e in VIDEO_EXTS], root / "videos" / v) for v in table.videos()}
    return attach_sources(table, root, cands, frames_fps, opts.name_fps)


def load_surglavi(root: Path, protocol: dict, split: str, task: str, opts: LoadOptions) -> FrameTable:
    """SurgLaVi-style evaluation file ``<task>.json`` (+ optional ``<task>_frames.csv``), videos in
    ``videos/<video>.mp4`` or ``frames/<video>/``. The table's ``prompts`` attribute holds the
    category descriptions (the ``descriptive`` prompt set)."""
    path = root / f"{task}.json"
    if not path.is_file():
        known = sorted(p.stem for p in root.glob("*.json") if p.name != "fps.json")
        raise FileNotFoundError(f"SurgLaVi task {task!r}: expected {path}; tasks present: {known}")
    frames_csv = root / f"{task}_frames.csv"
    fps_json = read_fps_json(root)
    table, prompts = formats.read_surglavi_eval(path, frames_csv if frames_csv.is_file() else None,
                                                fps=opts.label_fps or fps_json.get("label_fps") or 1.0)
    table.prompt_sets = {"names": list(table.classes), "descriptive": prompts}
    frames_fps = opts.frames_fps or fps_json.get("frames_fps")
    cands = {v: ([root / "videos" / f"{v}{e}" for e in VIDEO_EXTS], root / "frames" / v) for v in table.videos()}
    return attach_sources(table, root, cands, frames_fps, opts.name_fps)


LOADERS = {
    "cholec80": load_cholec80,
    "autolaparo": load_autolaparo,
    "path_label_csv": load_path_label_csv,
    "multibypass140": load_multibypass140,
    "grasp": load_grasp,
    "sarrarp50": load_sarrarp50,
    "cholect50": load_cholect50,
    "cholect50-txt": load_cholect50_txt,
    "surglavi": load_surglavi,
}


# --------------------------------------------------------------------------------------------- custom


def read_classes_file(path) -> list[str]:
    """Class names, one per line, in id order (``#`` comments and blank lines ignored)."""
    names = [l.strip() for l in formats.read_text(path).splitlines() if l.strip() and not l.strip().startswith("#")]
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
    for n, parts in formats.split_lines(path, sep=","):
        if n == 1 and not re.fullmatch(r"-?\d+(\.\d*)?", parts[0]):
            continue  # header
        if len(parts) != 2:
            raise LabelFileError(path, n, f"expected '<time>,<label>', found {len(parts)} fields")
        try:
            t = float(parts[0])
        except ValueError:
            raise LabelFileError(path, n, f"expected a number of seconds or frames, found {parts[0][:40]!r}") from None
        if not (t >= 0 and np.isfinite(t) and t < formats.MAX_INDEX):
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
    return formats.make_table("custom", classes, rows, multilabel=multilabel, label_fps=unit_fps)


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
        multilabel = any(";" in line.split(",", 1)[-1] for p in files for _, line in formats._lines(p))
    cands = {p.stem: ([videos_dir / f"{p.stem}{e}" for e in VIDEO_EXTS], videos_dir / p.stem) for p in files}
    tables = []
    for p in files:
        unit_fps = 1.0
        if label_unit == "frames":
            unit_fps = label_fps or _source_fps(cands[p.stem], frames_fps, p)
        tables.append(read_custom_labels(p, classes, unit_fps, p.stem, multilabel))
    table = FrameTable.concat(tables)
    return attach_sources(table, videos_dir, cands, frames_fps)


def _source_fps(cand: tuple[list[Path], Path], frames_fps: float | None, label_file: Path) -> float:
    from ..data.readers import open_source

    files, folder = cand
    hit = next((p for p in files if p.is_file()), None)
    if hit is not None:
        return float(open_source(hit).fps)
    if folder.is_dir() and frames_fps:
        return float(frames_fps)
    raise FileNotFoundError(f"{label_file}: no video {files[0]} or frame folder {folder}/ to take the frame rate "
                            f"from; pass --label-fps")
