"""Videos -> numbered frame folders (``surgclip extract-frames``): parallel, resumable, checked.

Each video ``{name}.mp4`` (or ``{name}/{name}.mp4``) becomes ``{out}/{name}/000000.jpg, ...`` at
``fps`` frames per second, resized so that the short side is ``size`` (or squashed to a square).
A folder is written under a temporary name and renamed when complete, with a ``frames.json``
(fps, frame_count, size, source); a rerun skips videos whose folder is complete *and* was made
with the same fps, size, square and ext (any other folder is re-extracted, and the run says so).
``manifest.json`` at the root lists every video and the failures by reason. One run at a time
per output root: ``OUT/.lock`` refuses a second one. ``check_folder`` verifies a folder against
its ``frames.json``.
"""
from __future__ import annotations

import json
import os
import shutil
import sys
from collections import Counter
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

import numpy as np

from ..sampling import seconds_to_frame
from ..utils import VIDEO_EXTENSIONS, atomic_write_json, folder_lock, list_frame_files
from .readers import FRAMES_MANIFEST, VideoFileReader, VideoReadError, skip_reason


def find_videos(src: str | Path) -> dict[str, Path]:
    """name -> path of the videos in ``src`` (a file, a folder of files, or ``{name}/{name}.mp4``)."""
    src = Path(src)
    if src.is_file():
        return {src.stem: src}
    if not src.is_dir():
        raise FileNotFoundError(f"video source not found: {src}")
    found = {p.stem: p for p in sorted(src.rglob("*")) if p.suffix.lower() in VIDEO_EXTENSIONS and p.is_file()}
    if not found:
        raise FileNotFoundError(f"no videos ({', '.join(VIDEO_EXTENSIONS)}) under {src}")
    return found


def output_indices(src_fps: float, src_frames: int, fps: float | None) -> np.ndarray:
    """Source frame indices kept when resampling to ``fps`` (None = every frame)."""
    if fps is None or fps >= src_fps:
        return np.arange(src_frames)
    n_out = int(np.floor(src_frames / src_fps * fps + 1e-6))
    idx = np.array([seconds_to_frame(k / fps, src_fps) for k in range(n_out)], dtype=np.int64)
    return idx[idx < src_frames]


def _target_size(h: int, w: int, size: int | None, square: bool) -> tuple[int, int]:
    if size is None:
        return w, h
    if square:
        return size, size
    scale = size / min(h, w)
    return max(1, round(w * scale)), max(1, round(h * scale))


def read_frames_json(folder: Path) -> dict | None:
    """A folder's frames.json as a dict, or None when it is missing, unreadable or not an object."""
    try:
        info = json.loads((folder / FRAMES_MANIFEST).read_text())
    except (OSError, UnicodeDecodeError, ValueError):
        return None
    return info if isinstance(info, dict) else None


def resume_mismatch(folder: Path, fps: float | None, params: dict) -> str | None:
    """Why ``folder`` cannot be reused for this request (None = complete and made the same way).

    Args:
        fps: requested output rate (None = the source's). The folder's recorded fps must equal
            ``min(fps, source_fps)`` -- a 1-fps folder does not serve a 5-fps request.
        params: ``{"size", "square", "ext"}`` requested.
    """
    if not folder.exists():
        return "not extracted yet"
    info = read_frames_json(folder)
    if info is None:
        return f"no readable {FRAMES_MANIFEST}"
    diffs = [f"{k} {info.get(k)!r} (wanted {v!r})" for k, v in params.items() if info.get(k) != v]
    got, src = info.get("fps"), info.get("source_fps")
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0 for v in (got, src)):
        diffs.append(f"fps {got!r} / source_fps {src!r} not positive numbers")
    else:
        want = float(src if fps is None or fps >= src else fps)
        if abs(float(got) - want) > 1e-6 * want:
            diffs.append(f"fps {got:g} (wanted {want:g})")
    for key in ("frame_count", "width", "height", "source_frames"):
        value = info.get(key)
        if not (isinstance(value, int) and not isinstance(value, bool) and value > 0):
            diffs.append(f"{key} {value!r}")
    if not diffs and isinstance(info.get("ext"), str):  # frames deleted behind frames.json's back
        found = sum(1 for p in folder.iterdir() if p.suffix == f".{info['ext']}")
        if found != info["frame_count"]:
            diffs.append(f"{found} .{info['ext']} files for frame_count {info['frame_count']}")
    return ", ".join(diffs) or None


def extract_video(src: str | Path, out_dir: str | Path, fps: float | None = None, size: int | None = 224,
                  square: bool = False, ext: str = "jpg", quality: int = 90, batch: int = 32) -> dict:
    """Extract one video to ``out_dir`` (atomically) and return its frames.json record.

    Args:
        src: video file. out_dir: the frame folder to create.
        fps: output frame rate (None = the source's). size: short side in pixels (None = keep).
        square: resize to size x size instead of keeping the aspect ratio.
        ext: ``jpg`` | ``png`` | ``webp``. quality: JPEG/WebP quality.
        batch: frames decoded per read.
    """
    from PIL import Image

    src, out_dir = Path(src), Path(out_dir)
    reader = VideoFileReader(src, stream=True)  # front to back: decord would keep what it decodes ahead of the encoder
    idx = output_indices(reader.fps, reader.num_frames, fps)
    if idx.size == 0:
        raise VideoReadError(f"{src}: no frames to extract at {fps} fps ({reader.num_frames} frames at {reader.fps:g} fps)")
    tmp = out_dir.with_name(f".{out_dir.name}.partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    width = height = None
    for b in range(0, idx.size, batch):
        frames = reader.read(idx[b:b + batch])
        for k, frame in enumerate(frames):
            img = Image.fromarray(frame)
            w, h = _target_size(frame.shape[0], frame.shape[1], size, square)
            if (w, h) != img.size:
                img = img.resize((w, h), Image.BICUBIC)
            width, height = img.size
            save = {"quality": quality} if ext in ("jpg", "jpeg", "webp") else {}
            img.save(tmp / f"{b + k:06d}.{ext}", **save)
    record = {"fps": float(fps if fps is not None and fps < reader.fps else reader.fps), "frame_count": int(idx.size),
              "width": width, "height": height, "ext": ext, "size": size, "square": square,
              "source": str(src), "source_fps": reader.fps, "source_frames": reader.num_frames}
    atomic_write_json(tmp / FRAMES_MANIFEST, record)
    if out_dir.exists():  # swap by renames: a kill leaves the old folder whole, or no folder, never a part
        old = out_dir.with_name(f".{out_dir.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        os.replace(out_dir, old)
        os.replace(tmp, out_dir)
        shutil.rmtree(old)
    else:
        os.replace(tmp, out_dir)
    return record


def check_folder(folder: str | Path, decode: bool = False) -> list[str]:
    """Problems of a frame folder against its frames.json (empty list = intact).

    Checks the record (fps, frame_count, size), the file count, contiguous numbering 0..n-1,
    non-empty files and, with ``decode``, that every image opens at the recorded size.
    """
    from PIL import Image

    folder = Path(folder)
    meta = folder / FRAMES_MANIFEST
    if not meta.is_file():
        return [f"{folder}: no {FRAMES_MANIFEST}"]
    info = read_frames_json(folder)
    if info is None or not all(isinstance(info.get(k), int) and not isinstance(info.get(k), bool) and info[k] >= 0
                               for k in ("frame_count", "width", "height")):
        return [f"{meta}: expected a JSON object with non-negative integer frame_count, width and height"]
    fps = info.get("fps")
    if isinstance(fps, bool) or not isinstance(fps, (int, float)) or not 0 < fps < float("inf"):
        return [f"{meta}: expected a positive number 'fps' (readers need it), got {fps!r}"]
    try:
        files = list_frame_files(folder)
    except (FileNotFoundError, ValueError) as err:
        return [str(err)]
    problems = []
    if len(files) != info["frame_count"]:
        problems.append(f"{folder}: {len(files)} frames on disk, frames.json says {info['frame_count']}")
    numbers = [int(f.stem) for f in files if f.stem.isdigit()]
    if numbers != list(range(len(files))):
        problems.append(f"{folder}: frame numbers are not 0..{len(files) - 1}")
    for f in files:
        if f.stat().st_size == 0:
            problems.append(f"{f}: empty file")
        elif decode:
            try:
                with Image.open(f) as img:
                    img.load()
                    if img.size != (info["width"], info["height"]):
                        problems.append(f"{f}: size {img.size}, expected {(info['width'], info['height'])}")
            except OSError as err:
                problems.append(f"{f}: cannot decode ({err})")
    return problems


def failure_reason(src: Path, err: Exception) -> str:
    """The ``utils.SKIP_REASONS`` name for a video that could not be extracted: ``readers.skip_reason``,
    else ``unwritable_output`` for an OSError and ``bad_parameters`` for anything else."""
    return skip_reason(src, err) or ("unwritable_output" if isinstance(err, OSError) else "bad_parameters")


def _job(args) -> tuple[str, dict | None, str | None]:
    name, src, out, kwargs = args
    try:
        return name, extract_video(src, out, **kwargs), None
    except (VideoReadError, OSError, ValueError) as err:
        return name, None, f"{failure_reason(Path(src), err)}: {err}"


def extract_frames(src: str | Path, out_root: str | Path, fps: float | None = None, size: int | None = 224,
                   square: bool = False, ext: str = "jpg", workers: int = 2, progress: bool = True) -> dict:
    """Extract every video under ``src`` into ``out_root/{name}/``; skip folders already made this way.

    Holds ``out_root/.lock`` for the run (a concurrent run gets ``LockedError`` naming the pid).
    A folder made with another fps, size, square or ext is re-extracted, listed under
    ``reextracted`` and (with ``progress``) printed.

    Returns:
        The root manifest ``{"videos": {name: record}, "failed": {name: "reason: error"},
        "failed_by_reason": {reason: n}, "reextracted": {name: why}}`` (also written to
        ``out_root/manifest.json``).
    """
    from tqdm import tqdm

    if fps is not None and not (np.isfinite(fps) and fps > 0):
        raise ValueError(f"fps must be positive, got {fps}")
    out_root = Path(out_root)
    videos = find_videos(src)
    params = {"size": size, "square": square, "ext": ext}
    kwargs = {"fps": fps, "size": size, "square": square, "ext": ext}
    with folder_lock(out_root, "surgclip extract-frames"):
        done, todo, redo = {}, [], {}
        for name, path in videos.items():
            folder = out_root / name
            why = resume_mismatch(folder, fps, params)
            if why is None:
                done[name] = read_frames_json(folder)
            else:
                if folder.exists():
                    redo[name] = why
                    if progress:
                        print(f"extract-frames: re-extracting {name}: existing folder differs ({why})", file=sys.stderr)
                todo.append((name, str(path), str(folder), kwargs))
        failed = {}
        bar = tqdm(total=len(videos), initial=len(done), desc="extract-frames", unit="video", disable=not progress)
        if todo:
            with ProcessPoolExecutor(max_workers=max(1, workers)) as pool:
                for fut in as_completed([pool.submit(_job, t) for t in todo]):
                    name, record, err = fut.result()
                    if record is not None:
                        done[name] = record
                    else:
                        failed[name] = err
                    bar.update(1)
        bar.close()
        reasons = Counter(msg.split(":", 1)[0] for msg in failed.values())
        manifest = {"fps": fps, **params, "videos": dict(sorted(done.items())), "failed": failed,
                    "failed_by_reason": dict(reasons), "reextracted": redo}
        atomic_write_json(out_root / "manifest.json", manifest)
    return manifest
