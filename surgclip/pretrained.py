"""Pretrained weights: one record per (model, tag) says where the file lives and how to read it.

Resolution order: an explicit path > ``$SURGCLIP_CACHE`` (default ``~/.cache/surgclip``) > download
(Hugging Face hub URL) with checksum. Offline (``HF_HUB_OFFLINE=1`` / ``SURGCLIP_OFFLINE=1``, or no
network) a missing file is an immediate error naming the file and where to put it.
"""
from __future__ import annotations

import os
import urllib.request
from pathlib import Path

from .utils import atomic_path, sha256_file

# format: how the file's keys are laid out ("surgclip_beta" = the published raw state dict).
PRETRAINED: dict[str, dict[str, dict]] = {
    "SurgCLIP-B": {
        "beta": {
            "file": "surgclip_beta.pth",
            "hf_hub": "aleperez24/SurgCLIP",
            "url": "https://huggingface.co/aleperez24/SurgCLIP/resolve/main/surgclip_beta.pth",
            "sha256": None,  # not published upstream; fill in once a release is pinned
            "format": "surgclip_beta",
        },
    },
}
DEFAULT_TAG = {"SurgCLIP-B": "beta"}
DOWNLOAD_TIMEOUT_S = 20


class WeightsNotFoundError(FileNotFoundError):
    """A weights file is neither at the given path, nor in the cache, nor downloadable."""


def cache_dir() -> Path:
    """``$SURGCLIP_CACHE`` or ``~/.cache/surgclip`` (not created until something is written)."""
    return Path(os.environ.get("SURGCLIP_CACHE") or Path.home() / ".cache" / "surgclip").expanduser()


def is_offline() -> bool:
    return any(os.environ.get(k, "").lower() in ("1", "true", "yes") for k in ("HF_HUB_OFFLINE", "SURGCLIP_OFFLINE"))


def list_pretrained(model: str | None = None) -> list[tuple[str, str]]:
    """(model, tag) pairs with registered weights."""
    return [(m, t) for m, tags in PRETRAINED.items() if model in (None, m) for t in tags]


def pretrained_record(model: str, pretrained: str | None) -> dict | None:
    """The record for ``pretrained`` given as a tag or a registered file name (None -> default tag)."""
    tags = PRETRAINED.get(model, {})
    if pretrained in (None, True):
        pretrained = DEFAULT_TAG.get(model)
    if pretrained in tags:
        return tags[pretrained]
    for record in tags.values():
        if pretrained is not None and Path(str(pretrained)).name == record["file"]:
            return record
    return None


def resolve_weights(model: str, pretrained: str | os.PathLike | None = None) -> tuple[Path, dict]:
    """Find the weights file for ``model``.

    Args:
        model: registered model name (``SurgCLIP-B``).
        pretrained: a file path, a registered tag (``beta``) or file name (``surgclip_beta.pth``),
            or None for the model's default tag.
    Returns:
        (path to the file, its record; ``{}`` for an unregistered local file)
    Raises:
        WeightsNotFoundError: with the file name and where to put it.
    """
    if pretrained is not None and Path(pretrained).expanduser().is_file():
        path = Path(pretrained).expanduser()
        record = pretrained_record(model, path.name) or {}
        return path, record
    record = pretrained_record(model, None if pretrained is None else str(pretrained))
    if record is None:
        known = [t for _, t in list_pretrained(model)]
        raise WeightsNotFoundError(
            f"weights {str(pretrained)!r} for {model}: no such file, and not a registered tag "
            f"(registered for {model}: {known or 'none'})")
    cached = cache_dir() / record["file"]
    if cached.is_file():
        _verify(cached, record)
        return cached, record
    where = (f"Download {record['url']} and save it as {cached} (or set SURGCLIP_CACHE to the folder holding "
             f"{record['file']}, or pass pretrained='/path/to/{record['file']}')")
    if is_offline():
        raise WeightsNotFoundError(f"{model} weights {record['file']!r} are not in the cache and downloads are off "
                                   f"(offline mode). {where}.")
    try:
        _download(record["url"], cached)
    except OSError as err:
        raise WeightsNotFoundError(f"{model} weights {record['file']!r} could not be downloaded ({err}). {where}.") from err
    _verify(cached, record)
    return cached, record


def _verify(path: Path, record: dict) -> None:
    expected = record.get("sha256")
    if expected and sha256_file(path) != expected:
        raise ValueError(f"checksum mismatch for {path}: expected sha256 {expected}. Delete the file and retry.")


def _download(url: str, dest: Path) -> None:
    """Download to a temp file beside ``dest`` and rename (no partial file is ever left)."""
    with atomic_path(dest) as tmp, urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as response:
        with open(tmp, "wb") as f:
            while block := response.read(1 << 20):
                f.write(block)
