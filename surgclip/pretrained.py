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
# CAMMA's releases (their package's download links): a zip holding the state dict ``{Model}.pth``.
for _name in ("SurgVLP", "HecVL", "PeskaVLP"):
    PRETRAINED[_name] = {"camma": {
        "file": f"{_name}.pth",
        "url": {"SurgVLP": "https://seafile.unistra.fr/f/93757ace1bfc47248e1e/?dl=1",
                "HecVL": "https://seafile.unistra.fr/f/3b9b9207068a4b03bc2a/?dl=1",
                "PeskaVLP": "https://seafile.unistra.fr/f/65a2b1bf113e428280d0/?dl=1"}[_name],
        "archive": "zip",
        "sha256": None,  # not published upstream
        "format": "camma",
        "licence": "CAMMA (University of Strasbourg): see github.com/CAMMA-public/SurgVLP",
    }}
DEFAULT_TAG = {"SurgCLIP-B": "beta", "SurgVLP": "camma", "HecVL": "camma", "PeskaVLP": "camma"}
# Tokenizer vocabularies that are not shipped in the package (resolved like weights).
VOCAB_FILES: dict[str, dict] = {
    "Bio_ClinicalBERT": {
        "file": "Bio_ClinicalBERT-vocab.txt",
        "url": "https://huggingface.co/emilyalsentzer/Bio_ClinicalBERT/resolve/main/vocab.txt",
        "sha256": None,
    },
}
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
    return resolve_file(model, record, "weights"), record


def resolve_file(owner: str, record: dict, what: str = "weights") -> Path:
    """The cached file of ``record`` (``file``, ``url``, optional ``sha256`` and ``archive: zip``),
    downloaded (checked, written atomically) when absent and online.

    Raises:
        WeightsNotFoundError: offline or on a failed download, naming the file, its URL and where to put it.
    """
    cached = cache_dir() / record["file"]
    if cached.is_file():
        _verify(cached, record)
        return cached
    zipped = " (a zip archive: unzip it)" if record.get("archive") == "zip" else ""
    where = (f"Download {record['url']}{zipped} and save {record['file']} as {cached} (or set SURGCLIP_CACHE to "
             f"the folder holding {record['file']}" + (", or pass pretrained='/path/to/" + record["file"] + "')"
                                                        if what == "weights" else ")"))
    if is_offline():
        raise WeightsNotFoundError(f"{owner} {what} {record['file']!r}: not in the cache, and downloads are off "
                                   f"(offline mode). {where}.")
    try:
        if record.get("archive") == "zip":
            _download_zip_member(record["url"], record["file"], cached)
        else:
            _download(record["url"], cached)
    except (OSError, ValueError) as err:
        raise WeightsNotFoundError(f"{owner} {what} {record['file']!r}: could not be downloaded ({err}). {where}.") from err
    _verify(cached, record)
    return cached


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


def _download_zip_member(url: str, member: str, dest: Path) -> None:
    """Download a zip archive and keep only its entry named ``member`` (any folder), as ``dest``."""
    import tempfile
    import zipfile

    with tempfile.TemporaryDirectory(dir=dest.parent if dest.parent.is_dir() else None) as tmp:
        archive = Path(tmp) / "download.zip"
        _download(url, archive)
        with zipfile.ZipFile(archive) as z:
            names = [n for n in z.namelist() if Path(n).name == member]
            if not names:
                raise ValueError(f"{url} holds no {member} (entries: {z.namelist()[:10]})")
            with z.open(names[0]) as src, atomic_path(dest) as out, open(out, "wb") as f:
                while block := src.read(1 << 20):
                    f.write(block)
