"""Checkpoint files: reading state dicts safely, converting the published layout, strict loading,
and the ``save_pretrained`` directory format (config JSON + model.safetensors)."""
from __future__ import annotations

import hashlib
import json
import os
import pickle
from pathlib import Path

import torch
from torch import nn

from .utils import atomic_path, atomic_write_json

CONFIG_NAME = "surgclip_config.json"
WEIGHTS_NAME = "model.safetensors"
FORMAT_VERSION = 1


class CheckpointMismatchError(ValueError):
    """A state dict does not fit the model: lists missing, unexpected and mis-shaped keys."""


def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Read tensors from ``.safetensors`` or, without unpickling code, from ``.pth/.pt/.bin/.ckpt``.

    Wrapped checkpoints (``{"state_dict": ...}``, ``{"model": ...}``, ``{"module": ...}``) are unwrapped.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except Exception as err:
            raise ValueError(f"cannot read safetensors file {path}: {err}") from err
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise ValueError(
            f"refusing to load {path}: it needs full unpickling (arbitrary code), which surgclip never does. "
            f"Convert it where you trust it: torch.save(state_dict_of_plain_tensors, ...) or safetensors. ({err})"
        ) from err
    except Exception as err:
        raise ValueError(f"cannot read checkpoint {path}: {type(err).__name__}: {err}") from err
    for key in ("state_dict", "model", "module"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
            break
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ValueError(f"{path} does not hold a state dict of tensors")
    return obj


def convert_surgclip_beta(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Published SurgCLIP (surgclip_beta.pth) keys -> this package's keys.

    Only the text tower moves (its BERT sits under ``text_encoder.transformer``); every other key
    already has the published name.
    """
    out = {}
    for key, value in state_dict.items():
        if key.startswith("text_encoder.") and not key.startswith("text_encoder.transformer."):
            key = "text_encoder.transformer." + key[len("text_encoder."):]
        out[key] = value
    return out


def strip_prefix(state_dict: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """Remove ``prefix`` from every key if all keys carry it (Lightning's ``model.``, DDP's ``module.``)."""
    if state_dict and all(k.startswith(prefix) for k in state_dict):
        return {k[len(prefix):]: v for k, v in state_dict.items()}
    return state_dict


def state_dict_diff(expected: dict[str, torch.Tensor], state_dict: dict[str, torch.Tensor]) -> str | None:
    """None if the keys and shapes agree, else a message listing missing, unexpected and mis-shaped keys."""
    missing = sorted(set(expected) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(expected))
    misshaped = sorted(f"{k}: file {tuple(state_dict[k].shape)} vs model {tuple(expected[k].shape)}"
                       for k in set(expected) & set(state_dict) if state_dict[k].shape != expected[k].shape)
    if not (missing or unexpected or misshaped):
        return None

    def show(keys):
        return ", ".join(keys[:20]) + (f" ... (+{len(keys) - 20} more)" if len(keys) > 20 else "")

    parts = [f"{len(missing)} missing: {show(missing)}" if missing else "",
             f"{len(unexpected)} unexpected: {show(unexpected)}" if unexpected else "",
             f"{len(misshaped)} mis-shaped: {show(misshaped)}" if misshaped else ""]
    return "; ".join(p for p in parts if p)


# (what a checkpoint's keys look like, prefixes that must all be present), most specific first
_LAYOUTS = (
    ("CAMMA's SurgVLP / HecVL / PeskaVLP (ResNet-50 + Bio_ClinicalBERT; the three share one layout)",
     ("backbone_img.model.", "backbone_text.model.")),
    ("SurgCLIP-B (the published surgclip_beta.pth, or saved by surgclip)", ("vision_encoder.model.", "temp")),
    ("a Hugging Face SigLIP model (MedSigLIP)", ("vision_model.", "text_model.", "logit_bias")),
    ("an open_clip / OpenAI CLIP model", ("visual.", "token_embedding.")),
    ("a surgclip model with a per-frame trunk (SurgVLP/HecVL/PeskaVLP, CLIP, MedSigLIP or tiny as saved by "
     "surgclip)", ("vision_encoder.trunk.", "text_encoder.")),
)


def describe_layout(keys) -> str:
    """Which architecture a checkpoint's keys look like, for error messages (``"unknown ..."`` if none)."""
    keys = [k for k in keys]
    for prefix in ("model.", "module."):
        if keys and all(k.startswith(prefix) for k in keys):
            keys = [k[len(prefix):] for k in keys]
    for name, prefixes in _LAYOUTS:
        if all(any(k == p or k.startswith(p) for k in keys) for p in prefixes):
            return name
    return f"no architecture surgclip knows (first keys: {', '.join(sorted(keys)[:5]) or 'none'})"


def load_weights(model: nn.Module, state_dict: dict[str, torch.Tensor], source: str = "state dict") -> None:
    """Load ``state_dict`` strictly: every key used, none missing, every shape equal.

    Raises:
        CheckpointMismatchError: naming the missing, unexpected and mis-shaped keys.
    """
    for prefix in ("model.", "module."):
        state_dict = strip_prefix(state_dict, prefix)
    if any(k.startswith("text_encoder.") for k in state_dict) and not any(
            k.startswith("text_encoder.transformer.") or k.startswith("text_encoder.clip.") for k in state_dict):
        state_dict = convert_surgclip_beta(state_dict)
    diff = state_dict_diff(model.state_dict(), state_dict)
    if diff:
        model_name = getattr(model, "name", type(model).__name__)
        raise CheckpointMismatchError(f"{source} does not fit model {model_name!r}: {diff}. Its keys look like "
                                      f"{describe_layout(state_dict)}")
    model.load_state_dict(state_dict, strict=True)


def save_pretrained(model: nn.Module, directory: str | os.PathLike, extra: dict | None = None) -> Path:
    """Write ``directory/surgclip_config.json`` (model, preprocessing, tokenizer) + ``model.safetensors``.

    Each file is written atomically; ``surgclip.load(directory)`` rebuilds the same model.
    Returns the directory.
    """
    from safetensors.torch import save_file

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    config = dict(model.config)
    if config.get("open_clip"):
        config["open_clip"] = {**config["open_clip"], "pretrained": None}  # weights come from the file
    config["preprocess"] = model.preprocess_cfg.to_dict()
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    # save_file renames its own 0600 temporary file onto tmp; atomic_path gives the result the mode
    # open(path, "w") would (0644 under umask 022), so the group can read the model on a shared cluster
    with atomic_path(directory / WEIGHTS_NAME) as tmp:
        save_file(tensors, str(tmp), metadata={"format": "pt", "surgclip_format": str(FORMAT_VERSION)})
    atomic_write_json(directory / CONFIG_NAME, {"format_version": FORMAT_VERSION, "model": config, **(extra or {})})
    return directory


def is_pretrained_dir(path: str | os.PathLike) -> bool:
    return (Path(path) / CONFIG_NAME).is_file()


def read_pretrained_dir(directory: str | os.PathLike) -> tuple[dict, dict[str, torch.Tensor]]:
    """(architecture config, state dict) of a ``save_pretrained`` directory."""
    directory = Path(directory)
    config_path, weights_path = directory / CONFIG_NAME, directory / WEIGHTS_NAME
    for p in (config_path, weights_path):
        if not p.is_file():
            raise FileNotFoundError(f"{directory} is not a surgclip model directory: {p.name} is missing")
    try:
        meta = json.loads(config_path.read_text())
        config = meta["model"]
    except (json.JSONDecodeError, KeyError, TypeError) as err:
        raise ValueError(f"{config_path} is not a valid surgclip config ({err})") from err
    return config, read_state_dict(weights_path)


def weights_hash(model: nn.Module) -> str:
    """Hex SHA-256 of a model's state dict: every tensor's name, dtype, shape and bytes, by sorted name.

    Two checkpoints of one architecture get different hashes; the same weights loaded twice get
    the same one. The result is cached on the model and reused while no tensor was replaced or
    modified in place (``Tensor._version`` counts in-place writes such as optimiser steps and
    ``load_state_dict``), so calling it per batch costs a dict walk, not a pass over the bytes.
    """
    state = model.state_dict(keep_vars=True)
    stamp = tuple((k, v.data_ptr(), v._version) for k, v in state.items())
    cached = getattr(model, "_surgclip_weights_hash", None)
    if cached is not None and cached[0] == stamp:
        return cached[1]
    digest = hashlib.sha256()
    for key in sorted(state):
        t = state[key].detach().cpu().contiguous()
        digest.update(f"{key}|{t.dtype}|{tuple(t.shape)}|".encode())
        digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    value = digest.hexdigest()
    object.__setattr__(model, "_surgclip_weights_hash", (stamp, value))
    return value
