"""MedSigLIP (``google/medsiglip-448``) and other SigLIP models through transformers' SigLIP classes.

The towers are transformers' own: ``SiglipVisionModel``'s transformer (its attention-pooling head's
output is the image embedding) run on each frame, and ``SiglipTextModel``'s transformer (the last
position's output through its head is the text embedding). No projection follows either, as in
``SiglipModel``. A clip scores a prompt by the mean of its frames' unit embeddings; ``temp`` is
``1 / exp(logit_scale)``. SigLIP's ``logit_bias`` adds the same number to every logit, so it changes
no ranking and is not used.

Files: a folder as the hub publishes it (``config.json``, ``model*.safetensors``, the tokenizer
files, ``preprocessor_config.json``). MedSigLIP is gated: its Health AI Developer Foundations terms
must be accepted on the hub page (logged in) before the files download.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from torch import nn

MEDSIGLIP_HUB = "google/medsiglip-448"
MEDSIGLIP_FOLDER = "medsiglip-448"  # its folder name in the surgclip cache
LICENCE = ("Health AI Developer Foundations terms of use (accept them on https://huggingface.co/google/medsiglip-448 "
           "while logged in, then `huggingface-cli login`)")


class SiglipImageTrunk(nn.Module):
    """frames [N, 3, S, S] (normalised) -> SigLIP image embeddings [N, hidden]; ``config``:
    ``SiglipVisionConfig`` fields."""

    def __init__(self, config: dict):
        super().__init__()
        from transformers import SiglipVisionConfig, SiglipVisionModel

        cfg = SiglipVisionConfig(**config)
        tower = SiglipVisionModel(cfg)
        # transformers 5: the model is the tower (SiglipModel.vision_model); 4.x: it wraps it in .vision_model
        self.vision_model = getattr(tower, "vision_model", tower)
        self.width = int(cfg.hidden_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.vision_model(pixel_values=x).pooler_output


class SiglipTextEncoder(nn.Module):
    """token ids [N, L] -> SigLIP text embeddings [N, projection size]; ``config``: ``SiglipTextConfig``
    fields. The attention mask is not used: SigLIP was trained on texts padded to their full length
    without one (the tokenizer pads every text to it)."""

    def __init__(self, config: dict, pad_id: int = 1):
        super().__init__()
        from transformers import SiglipTextConfig, SiglipTextModel

        cfg = SiglipTextConfig(**config)
        tower = SiglipTextModel(cfg)
        self.text_model = getattr(tower, "text_model", tower)  # as the image tower
        self.width = int(getattr(cfg, "projection_size", None) or cfg.hidden_size)
        self.pad_id = pad_id

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        raise NotImplementedError("gradient checkpointing is not wired for the SigLIP text tower")

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        return self.text_model(input_ids=input_ids).pooler_output


def siglip_config(folder: str | os.PathLike, name: str = "MedSigLIP") -> dict:
    """The surgclip architecture config of a SigLIP folder (its ``config.json`` and, when present,
    ``preprocessor_config.json`` and ``tokenizer_config.json``)."""
    folder = Path(folder)
    path = folder / "config.json"
    try:
        hf = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise ValueError(f"{path}: cannot read a SigLIP config ({err})") from err
    if hf.get("model_type") != "siglip" or "vision_config" not in hf or "text_config" not in hf:
        raise ValueError(f"{path}: expected a SigLIP config (model_type 'siglip' with vision_config and "
                         f"text_config), found model_type {hf.get('model_type')!r}")
    vision, text = dict(hf["vision_config"]), dict(hf["text_config"])
    proc = {}
    if (folder / "preprocessor_config.json").is_file():
        proc = json.loads((folder / "preprocessor_config.json").read_text())
    size = proc.get("size") or {}
    image_size = int(size.get("height") or size.get("shortest_edge") or vision.get("image_size", 224))
    context = int(text.get("max_position_embeddings", 64))
    return {
        "name": name, "embed_dim": None, "similarity": "frame_mean", "num_frames": 1,
        "temperature": 0.1, "checkpoint_format": "hf_siglip",
        "vision": {"temporal": "mean", "hf_siglip": vision},
        "text": {"type": "hf_siglip", "config": text, "pad_id": int(text.get("pad_token_id", 1))},
        "tokenizer": {"type": "hf", "path": str(folder), "context_length": context},
        "preprocess": {"image_size": image_size, "mean": list(proc.get("image_mean", [0.5, 0.5, 0.5])),
                       "std": list(proc.get("image_std", [0.5, 0.5, 0.5])),
                       "interpolation": {3: "bicubic", 2: "bilinear"}.get(proc.get("resample", 2), "bilinear"),
                       "resize": "squash"},
    }


def medsiglip_folder(pretrained: str | os.PathLike | None) -> Path:
    """The folder holding MedSigLIP's files: ``pretrained`` > ``$SURGCLIP_CACHE/medsiglip-448`` > the
    Hugging Face cache (downloaded there when online and the licence is accepted).

    Raises:
        WeightsNotFoundError: naming the hub id, the licence and where to put the files.
    """
    from ..pretrained import WeightsNotFoundError, cache_dir, is_offline

    if pretrained is not None:
        folder = Path(pretrained).expanduser()
        if not (folder / "config.json").is_file():
            raise WeightsNotFoundError(f"MedSigLIP: {folder} is not a folder holding config.json, model*.safetensors "
                                       f"and the tokenizer files of {MEDSIGLIP_HUB}")
        return folder
    cached = cache_dir() / MEDSIGLIP_FOLDER
    if (cached / "config.json").is_file():
        return cached
    where = (f"MedSigLIP needs the files of the gated hub model {MEDSIGLIP_HUB} (licence: {LICENCE}). Put them in "
             f"{cached} (e.g. `huggingface-cli download {MEDSIGLIP_HUB} --local-dir {cached}`), or pass "
             f"pretrained='/folder/with/those/files'")
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(MEDSIGLIP_HUB, local_files_only=is_offline(),
                                      allow_patterns=["*.json", "*.safetensors", "*.model", "*.txt"]))
    except Exception as err:
        raise WeightsNotFoundError(f"{where}. ({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''})") from err


def read_siglip_state_dict(folder: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Every tensor of the folder's ``model*.safetensors`` files (one file or shards)."""
    from safetensors.torch import load_file

    files = sorted(Path(folder).glob("model*.safetensors"))
    if not files:
        raise FileNotFoundError(f"{folder}: no model*.safetensors (the SigLIP weights)")
    out = {}
    for f in files:
        out.update(load_file(str(f)))
    return out


KEY_MAP = (("vision_model.", "vision_encoder.trunk.vision_model."), ("text_model.", "text_encoder.text_model."))


def load_siglip_weights(model: nn.Module, state_dict: dict[str, torch.Tensor], source: str) -> None:
    """Load a transformers ``SiglipModel`` state dict strictly (keys ``vision_model.*``,
    ``text_model.*``, ``logit_scale``, ``logit_bias``); ``temp`` becomes ``1 / exp(logit_scale)``.

    Raises:
        CheckpointMismatchError: naming missing, unexpected and mis-shaped keys.
    """
    from ..checkpoint import CheckpointMismatchError, describe_layout, state_dict_diff

    expected = {}
    for key, value in model.state_dict().items():
        for theirs, ours in KEY_MAP:
            if key.startswith(ours):
                expected[theirs + key[len(ours):]] = value
    expected["logit_scale"] = expected["logit_bias"] = torch.empty(1, device="meta")
    given = {k: v for k, v in state_dict.items() if not k.endswith("position_ids")}  # constant buffers
    diff = state_dict_diff(expected, given)
    if diff:
        raise CheckpointMismatchError(f"{source} does not fit {getattr(model, 'name', 'SigLIP')!r} (transformers' "
                                      f"SiglipModel layout): {diff}. Its keys look like {describe_layout(given)}")
    ours = {}
    for key, value in given.items():
        for theirs, mine in KEY_MAP:
            if key.startswith(theirs):
                ours[mine + key[len(theirs):]] = value
    ours["temp"] = (1.0 / given["logit_scale"].float().exp()).reshape(())
    model.load_state_dict(ours, strict=True)
