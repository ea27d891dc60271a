"""GraSP (holistic robot-assisted prostatectomy): phases, steps and instrument presence. Protocol:
``grasp.json``.

Release layout::

    frames/CASEnnn/<30-fps index:09d>.jpg          (or videos/CASEnnn.mp4)
    annotations/grasp_long-term_{train,test}.json   phases, steps (COCO-style)
    annotations/grasp_short-term_{train,test}.json  instrument boxes (COCO-style)
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..sampling import frame_to_seconds
from ..utils import atomic_write_json
from .layout import LoadOptions, attach_sources, read_fps_json, video_candidates
from .parsing import TRAILING_NUMBER, guard, json_number, json_object, json_objects, load_json, parse_int
from .protocols import read_protocol
from .table import FrameTable, LabelFileError, check_fps, make_table

NAME = "grasp"
FOLDER = "grasp"
ALIASES: dict[str, dict] = {}
PREDICTION_NAMES = {("grasp", "phase"): "grasp_phases", ("grasp", "step"): "grasp_steps",
                    ("grasp", "instrument"): "grasp_tools"}


@guard
def read_grasp_json(path, task: str = "phases", frame_fps: float = 30.0) -> FrameTable:
    """GraSP COCO-style JSON: ``{task}_categories`` [{id, name}], ``images`` [{id, file_name
    ("CASE001/000000000.jpg"), video_name?, frame_num?}], ``annotations`` [{image_id, phases, steps,
    category_id / instruments (instrument boxes)}]. The released short-term files list the
    instruments as COCO ``categories``; TAPIS's matched files rename them ``instruments_categories``:
    both are read.

    Args:
        task: ``phases`` | ``steps`` (single-label) or ``instruments`` (multi-label, from each box's
            ``instruments`` or ``category_id``).
        frame_fps: rate of the frame numbers (30: GraSP frames are numbered at 30 fps).
    """
    path, fps = Path(path), check_fps(frame_fps, "frame_fps")
    data = json_object(path, load_json(path))
    key = f"{task}_categories"
    if task == "instruments" and key not in data:
        key = "categories"
    cats = json_objects(path, data, key)
    if not cats:
        raise LabelFileError(path, None, f"no {task}_categories{' or categories' if task == 'instruments' else ''}; "
                                         f"keys are {sorted(map(str, data))}")
    by_id = {json_number(c.get("id"), path, f"{task}_categories id", integer=True): str(c.get("name")) for c in cats}
    ids = sorted(by_id)
    id_to_col = {cid: i for i, cid in enumerate(ids)}
    names = [by_id[cid] for cid in ids]
    images = {json_number(im.get("id"), path, "images[].id", integer=True): im for im in json_objects(path, data, "images")}
    per_image: dict[int, object] = {}
    for j, ann in enumerate(json_objects(path, data, "annotations")):
        img = json_number(ann.get("image_id"), path, f"annotations[{j}].image_id", integer=True)
        if img not in images:
            raise LabelFileError(path, None, f"annotations[{j}]: image_id {img} not in images")
        if task == "instruments":
            value = ann.get("instruments", ann.get("category_id"))
            per_image.setdefault(img, set())
            if value is not None:
                cid = json_number(value, path, f"annotations[{j}].{task}", integer=True)
                if cid not in id_to_col:
                    raise LabelFileError(path, None, f"annotations[{j}]: unknown instrument id {cid}; known {ids}")
                per_image[img].add(id_to_col[cid])
        elif task in ann:
            cid = json_number(ann[task], path, f"annotations[{j}].{task}", integer=True)
            if cid not in id_to_col:
                raise LabelFileError(path, None, f"annotations[{j}]: unknown {task} id {cid}; known {ids}")
            per_image[img] = id_to_col[cid]
    rows = []
    for img, value in sorted(per_image.items()):
        im = images[img]
        video = str(im.get("video_name") or Path(str(im["file_name"])).parent.name)
        if "frame_num" in im:
            frame = json_number(im["frame_num"], path, f"image {img} frame_num", integer=True)
        else:
            match = TRAILING_NUMBER.search(Path(str(im["file_name"])).stem)
            if not match:
                raise LabelFileError(path, None, f"image {img}: no frame number in {im['file_name']!r}")
            frame = parse_int(match.group(1), path, None, f"image {img} frame number")
        if frame < 0:
            raise LabelFileError(path, None, f"image {img}: negative frame number {frame}")
        if task == "instruments":
            flags = np.zeros(len(ids), dtype=np.uint8)
            flags[sorted(value)] = 1
            value = flags
        rows.append((video, frame_to_seconds(frame, fps), frame, value))
    rows.sort(key=lambda r: (r[0], r[2]))
    return make_table(f"grasp/{task}", names, rows, multilabel=task == "instruments", label_fps=fps)


def load(root: Path, protocol: dict, split: str, task: str, opts: LoadOptions) -> FrameTable:
    """GraSP ``phase`` / ``step`` rows (kept at ``eval_fps``) or ``instrument`` rows of a split's
    annotation file, with ``videos/CASEnnn.mp4`` or ``frames/CASEnnn/`` (30-fps indices) as sources."""
    spec = protocol["tasks"][task]
    if split not in protocol["splits"]:
        raise ValueError(f"grasp has no split {split!r}; splits: {sorted(protocol['splits'])}")
    path = root / "annotations" / protocol["splits"][split].format(annotations=spec["annotations"])
    if not path.is_file():
        raise FileNotFoundError(f"GraSP {task} labels for split {split!r}: expected {path} (official layout)")
    label_fps = opts.label_fps or read_fps_json(root).get("label_fps") or protocol["label_fps"]
    table = read_grasp_json(path, task=spec["key"], frame_fps=label_fps)
    eval_fps = opts.eval_fps or protocol.get("eval_fps")
    if eval_fps and not table.multilabel:
        table = table.subsample(1.0 / eval_fps)
    frames_fps = opts.frames_fps or read_fps_json(root).get("frames_fps") or protocol["label_fps"]
    return attach_sources(table, root, video_candidates(table.videos(), root / "videos", root / "frames"),
                          frames_fps, opts.name_fps or label_fps)


def write_sample(out: Path, procedures) -> None:
    """Cases 1, 2 (train) and 41, 47 (test) as frame folders named by 30-fps index, long-term labels
    at 1 fps (phases mapped onto the 11, steps by ``step_key``), one instrument box every 2 s, and
    ``fps.json`` with the folders' rate."""
    proto = read_protocol(NAME)
    frames_fps = procedures[0].fps
    cats = {k: proto[f"{k}_classes"] for k in ("phases", "steps", "instruments")}
    splits = {"train": [1, 2], "test": [41, 47]}
    for split, cases in splits.items():
        long_term = {"phases_categories": cats["phases"], "steps_categories": cats["steps"], "images": [], "annotations": []}
        short_term = {"categories": cats["instruments"], "images": [], "annotations": []}  # as released
        for case, p in zip(cases, procedures[:2] if split == "train" else procedures[2:]):
            video = f"CASE{case:03d}"
            n = len(p.frames)
            names = [f"{round(i / frames_fps * 30):09d}.jpg" for i in range(n)]
            p.write_frames(out / "frames" / video, [i / frames_fps for i in range(n)], names)
            for s in p.seconds():  # long-term labels at 1 fps, short-term boxes every 2 s
                frame = int(s * 30)
                img = {"id": len(long_term["images"]) + 1 + 10000 * case, "file_name": f"{video}/{frame:09d}.jpg",
                       "video_name": video, "frame_num": frame, "width": p.size, "height": p.size}
                long_term["images"].append(img)
                long_term["annotations"].append({"id": img["id"], "image_id": img["id"],
                                                 "phases": min(p.phase(s) * 10 // 6, 10),
                                                 "steps": p.step_key(s, len(cats["steps"]))})
                if s % 2 == 0:
                    short_term["images"].append(dict(img))
                    short_term["annotations"].append({"id": img["id"], "image_id": img["id"], "bbox": [10, 10, 40, 40],
                                                      "category_id": p.tool(s) % 7 + 1, "instruments": p.tool(s) % 7 + 1})
        atomic_write_json(out / "annotations" / f"grasp_long-term_{split}.json", long_term)
        atomic_write_json(out / "annotations" / f"grasp_short-term_{split}.json", short_term)
    atomic_write_json(out / "fps.json", {"frames_fps": frames_fps, "label_fps": 30,
                                         "note": "frames every 6th 30-fps frame, named by 30-fps index"})
