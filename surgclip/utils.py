"""Small helpers shared across the package: atomic writes, frame-file listing, device choice."""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import tempfile
from pathlib import Path
from typing import Iterator

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp")


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` only if the block succeeds.

    Readers never see a half-written file, and an interrupted write leaves the old file intact.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


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
