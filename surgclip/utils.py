"""Small helpers shared across the package: atomic writes, folder locks, frame-file listing, device choice,
and the package's one list each of media file suffixes and of the reasons an item is skipped."""
from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import re
import secrets
from pathlib import Path
from typing import Iterator, TypeVar

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp")  # frame images (lower case)
# video files, in the order a layout tries ``<video>.<ext>`` (lower case)
VIDEO_EXTENSIONS = (".mp4", ".avi", ".mkv", ".webm", ".mov", ".m4v")

# Why an item was skipped: every count of skipped items (training, the evaluators, the indexer,
# frame extraction) is keyed by these names.
SKIP_REASONS = {
    "missing_file": "no video file, frame folder or image at the source's path",
    "undecodable_media": "the source is there but does not decode (a corrupt, truncated or empty video or image)",
    "bad_span": "the clip's times do not fit its video (sampling.ClipSpanError)",
    "missing_frame": "no frame of the source at a labelled time (past the video's end, or a numbered frame "
                     "absent from its folder)",
    "unreadable_file": "the source could not be read for another reason (an OSError)",
    "unreadable_video": "surgclip mcq: the question's video is missing or does not decode",
    "unwritable_output": "surgclip extract-frames: the frames could not be written",
    "bad_parameters": "surgclip extract-frames: the extraction settings do not fit the video",
}
# the reasons a clip read is skipped for (``data.readers.skip_reason``): training counts each of them
CLIP_SKIP_REASONS = ("missing_file", "undecodable_media", "bad_span")


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` only if the block succeeds.

    Readers never see a half-written file, and an interrupted write leaves the old file intact.
    The data are flushed to disk (fsync) before the rename and the rename after it (fsync of the
    folder), so a power loss too leaves the old or the new file, never an empty one.
    The result gets the mode a plain ``open(path, "w")`` would give a new file: 0666 filtered by the
    umask (0644 under umask 022, 0600 under 077), or what the folder's default ACL says. The block
    may write ``tmp`` in place or replace it with a file of its own: writers that rename their own
    ``mkstemp`` file onto ``tmp`` (safetensors' ``save_file``) would leave 0600, so that mode is set
    again on whatever ``tmp`` is before the rename.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    while True:
        tmp = path.parent / f".{path.name}.{secrets.token_hex(6)}.tmp"
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
            break
        except FileExistsError:  # a 48-bit name collision: draw another
            continue
    # The umask is not read at all: the kernel applied it (or the folder's default ACL) when it
    # created this file with 0666, exactly as for open(path, "w"), so its mode is the one wanted.
    # Reading the umask would need os.umask's set-and-restore (a process-wide change racing other
    # threads' file creation) or /proc (Linux only, and blind to default ACLs).
    try:
        mode = os.fstat(fd).st_mode & 0o7777
    finally:
        os.close(fd)
    try:
        yield tmp
        _settle(tmp, mode)
        os.replace(tmp, path)
        _fsync(path.parent)
    finally:
        if tmp.exists():
            tmp.unlink()


def _settle(tmp: Path, mode: int) -> None:
    """Give the written ``tmp`` the permission bits ``mode`` (if a writer replaced it with a file of
    another mode) and flush it to disk; the rename that follows reports a ``tmp`` that is gone."""
    try:
        fd = os.open(tmp, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:
        return
    try:
        if os.fstat(fd).st_mode & 0o7777 != mode:
            try:
                os.fchmod(fd, mode)
            except PermissionError:  # a filesystem without POSIX modes (e.g. some network mounts)
                pass
        with contextlib.suppress(OSError):  # e.g. filesystems that refuse fsync
            os.fsync(fd)
    finally:
        os.close(fd)


def _fsync(path: Path) -> None:
    """Flush a file's data (or a folder's entries) to the disk; a no-op where the OS refuses."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:  # e.g. folders on some filesystems
        pass
    finally:
        os.close(fd)


_HELD_LOCKS: set[int] = set()  # fds of the folder locks this process holds


def _drop_locks_in_child() -> None:
    # A forked worker (e.g. of a ProcessPoolExecutor) must not keep its parent's lock alive after
    # the parent dies: close its copies (the parent's lock stays, flock belongs to the parent's fd).
    for fd in _HELD_LOCKS:
        with contextlib.suppress(OSError):
            os.close(fd)
    _HELD_LOCKS.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_drop_locks_in_child)


class LockedError(ValueError):
    """Another process holds a folder's lock (a ValueError, so the CLI reports it in one line)."""


@contextlib.contextmanager
def folder_lock(folder: str | os.PathLike, what: str) -> Iterator[Path]:
    """Hold an exclusive ``fcntl.flock`` on ``folder/.lock`` for the block; refuse if it is taken.

    The lock file holds the holder's pid (for the message). The kernel releases the lock when the
    holder exits or is killed, so a crash never leaves a stale lock behind.

    Args:
        folder: the folder to guard (created if missing).
        what: the job, for the message (e.g. ``"surgclip index"``).
    Raises:
        LockedError: naming the folder and the pid of the process holding it.
    """
    import fcntl

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / ".lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "unknown"
        os.close(fd)
        raise LockedError(f"{folder} is locked by another process (pid {holder}, lock file {path}): {what} "
                          f"refuses to write a folder another run is writing; wait for it to finish or stop it") from None
    _HELD_LOCKS.add(fd)
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield path
    finally:
        _HELD_LOCKS.discard(fd)
        os.ftruncate(fd, 0)
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to ``path`` atomically (temp file + rename)."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def atomic_write_json(path: str | os.PathLike, obj, **kwargs) -> None:
    """Write ``obj`` as indented JSON to ``path`` atomically."""
    atomic_write_text(path, json.dumps(obj, indent=2, **kwargs) + "\n")


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


def frame_number(path: str | os.PathLike) -> int | None:
    """The frame number in a file name (last run of digits in the stem), or None if it has none.

    ``000843.jpg`` -> 843, ``video01_120.png`` -> 120, ``frame.jpg`` -> None.
    """
    digits = re.findall(r"\d+", Path(path).stem)
    return int(digits[-1]) if digits else None


def list_frame_files(folder: str | os.PathLike) -> list[Path]:
    """Image files of a numbered-frame folder, sorted by frame number (not lexicographically).

    Files without a number in their name are ignored. Raises FileNotFoundError if ``folder`` is
    missing and ValueError if it holds no numbered images.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"frame folder not found: {folder}")
    frames = [p for p in folder.iterdir()
              if p.suffix.lower() in IMAGE_EXTENSIONS and frame_number(p) is not None]
    if not frames:
        raise ValueError(f"no numbered frame images ({', '.join(IMAGE_EXTENSIONS)}) in {folder}")
    return sorted(frames, key=lambda p: (frame_number(p), p.name))


def default_device() -> str:
    """'cuda' when a GPU is visible, else 'cpu'."""
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def graph_capturing() -> bool:
    """Whether the code runs under ``torch.jit`` tracing/scripting or ``torch.compile``, where a shape
    that depends on the data, or Python-side caching, would be baked into the graph."""
    import torch

    compiler = getattr(torch, "compiler", None)
    compiling = getattr(compiler, "is_compiling", None) or getattr(torch._dynamo, "is_compiling", lambda: False)
    return torch.jit.is_tracing() or torch.jit.is_scripting() or bool(compiling())


G = TypeVar("G")


def as_group(cls: type[G], value: G | dict | None, name: str) -> G:
    """``value`` as a ``cls`` instance: None -> defaults, a dict -> its fields (unknown keys are an error)."""
    if value is None:
        return cls()
    if isinstance(value, cls):
        return value
    if isinstance(value, dict):
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(value) - known)
        if unknown:
            raise ValueError(f"unknown option(s) {unknown} in {name}; known: {sorted(known)}")
        return cls(**value)
    raise TypeError(f"{name} must be a {cls.__name__} or a dict, got {type(value).__name__}")
