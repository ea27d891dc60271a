"""SurgLaVi evaluation files: a COCO-like JSON per task whose categories carry their own prompts.
Protocol: ``surglavi.json`` (no class list: the file names its categories).

Layout::

    <task>.json            categories [{id, name, description}], images [{id, video, frame}], annotations
    <task>_frames.csv      optional: video,frame of the frames to evaluate
    videos/<video>.mp4     (or frames/<video>/ + fps.json {"frames_fps": F})
"""
from __future__ import annotations

from pathlib import Path

from ..sampling import frame_to_seconds
from ..utils import atomic_write_json, atomic_write_text
from .layout import LoadOptions, attach_sources, read_fps_json, video_candidates
from .parsing import guard, json_number, json_object, json_objects, load_json, parse_int, split_lines
from .protocols import read_protocol
from .table import FrameTable, LabelFileError, check_fps, make_table

NAME = "surglavi"
FOLDER = "surglavi"
ALIASES: dict[str, dict] = {}
PREDICTION_NAMES: dict[tuple[str, str], str] = {}


@guard
def read_surglavi_eval(json_path, frames_csv=None, fps: float = 1.0) -> tuple[FrameTable, list[str]]:
    """SurgLaVi evaluation format: a COCO-like JSON (``categories`` [{id, name, description}],
    ``images`` [{id, video, frame}], ``annotations`` [{image_id, category_id}]) plus an optional
    frame-list CSV (``video,frame`` header) naming the frames to evaluate.

    Returns:
        (single-label table, prompts = category descriptions in id order).
    """
    json_path, fps = Path(json_path), check_fps(fps, "fps")
    data = json_object(json_path, load_json(json_path))
    cats = json_objects(json_path, data, "categories")
    if not cats:
        raise LabelFileError(json_path, None, "no categories")
    cats = sorted(cats, key=lambda c: json_number(c.get("id"), json_path, "categories[].id", integer=True))
    id_to_col = {int(c["id"]): i for i, c in enumerate(cats)}
    names = [str(c.get("name")) for c in cats]
    prompts = [str(c.get("description") or c.get("name")) for c in cats]
    images = {json_number(im.get("id"), json_path, "images[].id", integer=True): im
              for im in json_objects(json_path, data, "images")}
    keep = None
    if frames_csv is not None:
        keep = set()
        for n, parts in split_lines(frames_csv):
            if n == 1 and parts[0].lower() == "video":
                continue
            if len(parts) < 2:
                raise LabelFileError(frames_csv, n, "expected 'video,frame'")
            keep.add((parts[0], parse_int(parts[1], frames_csv, n, "frame", minimum=0)))
    rows = []
    for j, ann in enumerate(json_objects(json_path, data, "annotations")):
        im = images.get(json_number(ann.get("image_id"), json_path, f"annotations[{j}].image_id", integer=True))
        if im is None:
            raise LabelFileError(json_path, None, f"annotations[{j}]: image_id {ann['image_id']} not in images")
        cid = id_to_col.get(json_number(ann.get("category_id"), json_path, f"annotations[{j}].category_id", integer=True))
        if cid is None:
            raise LabelFileError(json_path, None, f"annotations[{j}]: unknown category_id {ann['category_id']}")
        video = str(im.get("video"))
        frame = json_number(im.get("frame"), json_path, f"image {im.get('id')} frame", integer=True)
        if frame < 0:
            raise LabelFileError(json_path, None, f"image {im.get('id')}: negative frame {frame}")
        if keep is None or (video, frame) in keep:
            rows.append((video, frame_to_seconds(frame, fps), frame, cid))
    rows.sort(key=lambda r: (r[0], r[2]))
    return make_table("surglavi", names, rows, label_fps=fps), prompts


def load(root: Path, protocol: dict, split: str, task: str, opts: LoadOptions) -> FrameTable:
    """The rows of ``<task>.json`` (those of ``<task>_frames.csv`` when present; ``split`` is not
    used), with ``videos/<video>.mp4`` or ``frames/<video>/`` as sources. The table's
    ``prompt_sets`` offer the class names (``names``) and the category descriptions (``descriptive``)."""
    path = root / f"{task}.json"
    if not path.is_file():
        known = sorted(p.stem for p in root.glob("*.json") if p.name != "fps.json")
        raise FileNotFoundError(f"SurgLaVi task {task!r}: expected {path}; tasks present: {known}")
    frames_csv = root / f"{task}_frames.csv"
    fps_json = read_fps_json(root)
    table, prompts = read_surglavi_eval(path, frames_csv if frames_csv.is_file() else None,
                                        fps=opts.label_fps or fps_json.get("label_fps") or 1.0)
    table.prompt_sets = {"names": list(table.classes), "descriptive": prompts}
    frames_fps = opts.frames_fps or fps_json.get("frames_fps")
    return attach_sources(table, root, video_candidates(table.videos(), root / "videos", root / "frames"),
                          frames_fps, opts.name_fps)


def write_sample(out: Path, procedures) -> None:
    """The two test procedures as ``lc_eval01``, ``lc_eval02``: a phase file at 1 fps whose
    categories are the Cholec80 phases with the ``surgclip`` prompts as descriptions, and its frame list."""
    desc = read_protocol("cholec80")["prompts"]["surgclip"]
    cats = [{"id": i, "name": n, "description": d} for i, (n, d) in enumerate(zip(procedures[0].phase_names, desc))]
    images, anns, frames = [], [], ["video,frame"]
    for k, p in enumerate(procedures[2:]):
        name = f"lc_eval{k + 1:02d}"
        p.copy_video(out / "videos" / f"{name}.mp4")
        for s in p.seconds():
            images.append({"id": len(images), "video": name, "frame": int(s)})
            anns.append({"image_id": images[-1]["id"], "category_id": p.phase(s)})
            frames.append(f"{name},{int(s)}")
    atomic_write_json(out / "phase.json", {"categories": cats, "images": images, "annotations": anns})
    atomic_write_text(out / "phase_frames.csv", "\n".join(frames) + "\n")
