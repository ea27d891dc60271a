"""Build models by name: architecture JSON -> SurgCLIP; ``load`` adds weights, preprocessing and tokenizer."""
from __future__ import annotations

import contextlib
import copy
import json
import os
from pathlib import Path

import torch

from .checkpoint import is_pretrained_dir, load_weights, read_pretrained_dir, read_state_dict
from .model import SurgCLIP, check_precision
from .baselines import ALIASES, FOLDER_MODELS
from .baselines import siglip
from .baselines.camma import load_camma_weights
from .pretrained import DEFAULT_TAG, resolve_weights
from .tokenizer import build_tokenizer
from .transform import ImageTransform
from .utils import default_device

MODEL_CONFIG_DIR = Path(__file__).parent / "model_configs"
HUB_PREFIX, LOCAL_PREFIX = "hf-hub:", "local-dir:"


def list_models() -> list[str]:
    """Names of the architectures shipped in ``surgclip/model_configs``."""
    return sorted(p.stem for p in MODEL_CONFIG_DIR.glob("*.json"))


def available_models() -> list[str]:
    """Model names ``load`` accepts: the architectures, their aliases (``CLIP``) and the models read
    from a folder of files (``MedSigLIP``)."""
    return sorted(set(list_models()) | set(ALIASES) | set(FOLDER_MODELS))


def deep_update(base: dict, overrides: dict) -> dict:
    """Recursively merge ``overrides`` into a copy of ``base``."""
    out = copy.deepcopy(base)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_update(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def get_model_config(name: str, **overrides) -> dict:
    """The architecture config of ``name`` with ``overrides`` deep-merged in."""
    if name in FOLDER_MODELS:
        raise ValueError(f"{name} is built from its own files: use surgclip.load({name!r}, pretrained=FOLDER)")
    path = MODEL_CONFIG_DIR / f"{ALIASES.get(name, name)}.json"
    if not path.is_file():
        raise ValueError(f"unknown model {name!r}; known models: {', '.join(available_models())} "
                         f"(or pass a directory written by save_pretrained)")
    config = json.loads(path.read_text())
    config["name"] = name
    return deep_update(config, overrides)


def create_model(name_or_config: str | dict, device: str | torch.device | None = None, seed: int | None = 0,
                 precision: str = "fp32", **overrides) -> SurgCLIP:
    """Build a randomly initialised model.

    Args:
        name_or_config: a name from ``list_models()`` or a full architecture config dict.
        device: where to put it (default: cpu).
        seed: seed for the initial weights (the global RNG is left untouched); None = unseeded.
        precision: inference precision, ``"fp32"``, ``"bf16"`` or ``"fp16"`` (CUDA only); see
            ``SurgCLIP.set_precision``.
        **overrides: config keys to deep-merge, e.g. ``vision={"timm": {"depth": 2}}``.
    """
    precision = check_precision(precision)  # fail before building
    config = (get_model_config(name_or_config, **overrides) if isinstance(name_or_config, str)
              else deep_update(name_or_config, overrides))
    rng = torch.random.fork_rng(devices=[]) if seed is not None else contextlib.nullcontext()
    with rng:
        if seed is not None:
            torch.manual_seed(seed)
        model = SurgCLIP(config, precision=precision)
    return model.to(device or "cpu")


def get_tokenizer(name_or_config: str | dict):
    """The tokenizer of a model name or config (a callable ``list[str] -> LongTensor``)."""
    config = get_model_config(name_or_config) if isinstance(name_or_config, str) else name_or_config
    return build_tokenizer(config.get("tokenizer", {"type": "bert"}))


def create_model_and_transforms(name_or_config: str | dict, device=None, **overrides):
    """-> (model, preprocess, tokenizer) with random weights."""
    model = create_model(name_or_config, device=device, **overrides)
    return model, ImageTransform(model.preprocess_cfg), get_tokenizer(model.config)


def load(name_or_path: str | os.PathLike = "SurgCLIP-B", device: str | torch.device | None = None,
         pretrained: str | os.PathLike | None = None, num_frames: int | None = None, precision: str = "fp32",
         **overrides):
    """Load a model for inference (published SurgCLIP API).

    Args:
        name_or_path: a registered name (``SurgCLIP-B``, ``CLIP`` = ``CLIP-B-16``, ``SurgVLP``,
            ``HecVL``, ``PeskaVLP``, ``MedSigLIP``, ``tiny``), a directory written by
            ``save_pretrained`` (also as ``local-dir:/path``), or ``hf-hub:org/repo``.
        device: default ``cuda`` if available, else ``cpu``.
        pretrained: weights for a named model: a path, a tag or a registered file name. ``SurgCLIP-B``,
            ``SurgVLP``, ``HecVL`` and ``PeskaVLP`` default to their published weights (CAMMA's
            ``{name}.pth``, loaded strictly in their key layout: ``baselines.camma``); ``MedSigLIP``
            takes the folder of ``google/medsiglip-448`` (``baselines.siglip``); ``CLIP`` loads
            open_clip's ``openai`` weights; ``tiny`` defaults to random weights.
        num_frames: clip length the model is used with (default: the model's own).
        precision: ``"fp32"`` (default), ``"bf16"`` (CPU and GPU) or ``"fp16"`` (GPU only): the
            ``encode_*`` methods and ``forward`` then run under ``torch.autocast`` and still return
            float32; the weights stay float32. Stored as ``model.precision``.
        **overrides: architecture config overrides.
    Returns:
        (model in eval mode with its inference rewrites installed (``SurgCLIP.prepare_for_inference``;
        ``model.train()`` removes them), single-image preprocess, tokenizer)
    """
    precision = check_precision(precision)
    device = device or default_device()
    path = str(name_or_path)
    if path.startswith(HUB_PREFIX):
        path = _hub_snapshot(path[len(HUB_PREFIX):])
    elif path.startswith(LOCAL_PREFIX):
        path = path[len(LOCAL_PREFIX):]
    if is_pretrained_dir(path):
        config, state_dict = read_pretrained_dir(path)
        model = create_model(deep_update(config, overrides), seed=None)
        load_weights(model, state_dict, source=f"{path}")
    elif Path(path).is_dir():
        raise FileNotFoundError(f"{path} is a directory but holds no surgclip_config.json (write one with save_pretrained)")
    elif path in FOLDER_MODELS:
        model = load_folder_model(path, pretrained, **overrides)
    else:
        model = create_model(path, **overrides)
        if pretrained is not None or path in DEFAULT_TAG:
            weights, _ = resolve_weights(path, pretrained)
            load_state(model, read_state_dict(weights), source=str(weights))
    if num_frames is not None:
        model.num_frames = int(num_frames)
    model = model.to(device).set_precision(precision).prepare_for_inference()
    return model, ImageTransform(model.preprocess_cfg), get_tokenizer(model.config)


def load_state(model: SurgCLIP, state_dict: dict, source: str = "state dict") -> None:
    """Load a state dict strictly, read in the layout its keys are in.

    A model whose config says ``checkpoint_format: camma`` (SurgVLP/HecVL/PeskaVLP) takes CAMMA's released
    layout (``baselines.camma.load_camma_weights``, whose errors name keys as CAMMA's files do) unless the
    file holds exactly the model's own keys (surgclip's layout: a fine-tuned copy saved by surgclip);
    every other model goes through ``checkpoint.load_weights``. Mismatches raise CheckpointMismatchError.
    """
    if model.config.get("checkpoint_format") == "camma":
        keys = set(state_dict)
        for prefix in ("model.", "module."):
            if keys and all(k.startswith(prefix) for k in keys):
                keys = {k[len(prefix):] for k in keys}
        if keys != set(model.state_dict()):
            load_camma_weights(model, state_dict, source=source)
            return
    load_weights(model, state_dict, source=source)


def load_folder_model(name: str, pretrained=None, **overrides) -> SurgCLIP:
    """A model built and loaded from a folder of files (MedSigLIP: its config, weights and tokenizer
    as the hub publishes them; ``baselines.siglip``).

    Raises:
        WeightsNotFoundError: naming the hub id, its licence and where to put the files.
    """
    if name != "MedSigLIP":
        raise ValueError(f"unknown folder model {name!r}; known: {', '.join(FOLDER_MODELS)}")
    folder = siglip.medsiglip_folder(pretrained)
    model = create_model(deep_update(siglip.siglip_config(folder, name=name), overrides), seed=None)
    siglip.load_siglip_weights(model, siglip.read_siglip_state_dict(folder), source=str(folder))
    return model


def _hub_snapshot(repo: str) -> str:
    from huggingface_hub import snapshot_download

    try:
        return snapshot_download(repo, allow_patterns=["surgclip_config.json", "model.safetensors"])
    except Exception as err:
        raise FileNotFoundError(
            f"could not fetch hf-hub:{repo} ({type(err).__name__}: {err}). Offline, download surgclip_config.json "
            f"and model.safetensors from the hub repo into a folder and call surgclip.load('/that/folder')") from err
