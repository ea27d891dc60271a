"""CAMMA's SurgVLP, HecVL and PeskaVLP (github.com/CAMMA-public/SurgVLP) as surgclip models.

The three share one architecture, built here from ``model_configs/{SurgVLP,HecVL,PeskaVLP}.json``:

- image: ResNet-50 (torchvision's layout; timm's ``resnet50`` has the same modules and keys), global
  average pool, ``Linear(2048 -> 768)``; no normalisation inside the tower;
- text: Bio_ClinicalBERT (BERT-base, cased vocabulary of 28996 word pieces, lower-cased input as
  their tokenizer does), sentence embedding = sum of the last 4 hidden states over the tokens
  ``[CLS] .. [SEP]`` divided by the context length 77 (``HFTextEncoder`` pooling ``"camma"``), no
  projection;
- preprocessing: resize to 360x640 (bilinear), centre-crop 224, ImageNet mean/std; tokenizer: BERT
  word pieces with ``[SEP]``, padded and truncated to 77;
- scoring: frame models. A clip scores a prompt by the mean of its frames' unit embeddings
  (``similarity: frame_mean``); their published protocol is one frame (``num_frames: 1``, the
  default), and ``temp`` is 0.01 (their zero-shot code scales cosines by 100).

Checkpoints (``{Model}.pth``, the state dict of their ``nn.Module``) are read without unpickling
code and loaded strictly in their own key layout (``load_camma_weights``): every key of the layout
present with its shape, none extra. Their BERT pooler is in the file but unused by the embedding;
``embeddings.position_ids`` (a constant buffer older transformers saved) may be present or not.
"""
from __future__ import annotations

import torch
from torch import nn

from ..checkpoint import CheckpointMismatchError, describe_layout, state_dict_diff, strip_prefix

CAMMA_MODELS = ("SurgVLP", "HecVL", "PeskaVLP")
# their key prefix -> ours
KEY_MAP = (("backbone_img.model.", "vision_encoder.trunk."),
           ("backbone_img.global_embedder.", "vision_proj."),
           ("backbone_text.model.", "text_encoder.transformer."))
POSITION_IDS = "backbone_text.model.embeddings.position_ids"
POOLER = "backbone_text.model.pooler."


def to_camma_keys(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A surgclip CAMMA model's state dict -> their layout (``temp`` is ours alone and left out;
    the BERT pooler they also save is not added)."""
    out = {}
    for key, value in state_dict.items():
        for theirs, ours in KEY_MAP:
            if key.startswith(ours):
                out[theirs + key[len(ours):]] = value
                break
        else:
            if key != "temp":
                raise KeyError(f"{key} has no place in CAMMA's checkpoint layout")
    return out


def from_camma_keys(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Their layout -> ours, for the keys of ``KEY_MAP`` (others, and the unused BERT pooler, are left out)."""
    out = {}
    for key, value in state_dict.items():
        if key.startswith(POOLER):
            continue
        for theirs, ours in KEY_MAP:
            if key.startswith(theirs):
                out[ours + key[len(theirs):]] = value
                break
    return out


def camma_layout(model: nn.Module) -> dict[str, torch.Tensor]:
    """The keys (and tensors of the right shapes) a CAMMA checkpoint of ``model``'s size holds."""
    expected = to_camma_keys(model.state_dict())
    width = model.text_encoder.width
    expected[POOLER + "dense.weight"] = torch.empty(width, width, device="meta")
    expected[POOLER + "dense.bias"] = torch.empty(width, device="meta")
    return expected


def load_camma_weights(model: nn.Module, state_dict: dict[str, torch.Tensor], source: str = "state dict") -> None:
    """Load a CAMMA checkpoint (their key layout) into a surgclip CAMMA model, strictly.

    Raises:
        CheckpointMismatchError: naming every missing, unexpected and mis-shaped key (in their names)
            and the architecture the file's keys look like; also for a ``position_ids`` buffer that is
            not ``0 .. n-1``.
    """
    for prefix in ("module.", "model."):
        state_dict = strip_prefix(state_dict, prefix)
    name = getattr(model, "name", "CAMMA model")
    state_dict = dict(state_dict)
    position_ids = state_dict.pop(POSITION_IDS, None)
    diff = state_dict_diff(camma_layout(model), state_dict)
    if diff:
        raise CheckpointMismatchError(f"{source} does not fit {name!r} (CAMMA's checkpoint layout): {diff}. "
                                      f"Its keys look like {describe_layout(state_dict)}")
    if position_ids is not None and not torch.equal(position_ids.reshape(-1).long(),
                                                    torch.arange(position_ids.numel())):
        raise CheckpointMismatchError(f"{source}: {POSITION_IDS} is not 0 .. n-1")
    ours = from_camma_keys(state_dict)
    ours["temp"] = model.temp.detach().clone()
    model.load_state_dict(ours, strict=True)
