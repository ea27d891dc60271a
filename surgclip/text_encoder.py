"""Text towers: a Hugging Face transformer (BERT) with cls or mean pooling, or open_clip's text tower.

Every tower takes token ids ``[N, L]`` (and optionally an attention mask; otherwise it is rebuilt
from the pad id) and returns pooled features ``[N, width]``.
"""
from __future__ import annotations

import torch
from torch import nn

from .utils import graph_capturing


def used_length(attention_mask: torch.Tensor) -> int:
    """Columns of ``[N, L]`` token ids up to the last one that is not padding in some row.

    Tokenizers pad every text to the context length (77 for SurgCLIP-B), while prompts and captions
    are a few tokens long. In a text transformer whose attention masks padded keys (BERT) and whose
    pooling ignores padded positions (cls, masked mean), the trailing all-padding columns change no
    output, so the tower runs on the used columns only: 7 Cholec80 phase prompts go from 7 x 77 to
    7 x 7 tokens, the same pooled features up to float rounding. The full length is kept when some
    row has no token at all (its output depends on how many masked columns there are), and under
    tracing or ``torch.compile`` (a data-dependent shape would break the graph). On a GPU the length
    costs one synchronisation per call.
    """
    full = attention_mask.shape[1]
    if full == 0 or graph_capturing():
        return full
    mask = attention_mask.bool()
    columns = torch.arange(1, full + 1, device=mask.device)
    # one transfer: whether every row has a token (a row with none attends uniformly to every column,
    # so its output depends on their number), and the last column any row uses
    every_row, last = torch.stack([mask.any(1).all().long(), (mask.any(0) * columns).max()]).tolist()
    return last if every_row and last else full


class HFTextEncoder(nn.Module):
    """A Hugging Face ``AutoModel`` text transformer, built from its config (no download) or
    initialised from a pretrained name/path.

    Args:
        config: keyword arguments of the model's config class (e.g. BertConfig fields).
        pooling: ``"cls"`` (first token), ``"mean"`` (masked mean over tokens) or ``"camma"``
            (CAMMA's SurgVLP / HecVL / PeskaVLP sentence embedding: the last ``last_n_layers``
            hidden states summed, each summed over the attended tokens ``[CLS] .. [SEP]`` and divided
            by the full context length L. CAMMA sums each word's word pieces into one word vector,
            pads the words with zero vectors to L slots and averages the slots, which is the same
            number: a sum of sums over the same tokens, divided by L).
        pad_id: id of the padding token, used to rebuild the mask when none is given.
        pretrained: optional HF name or local path to initialise the weights from.
        last_n_layers: hidden states summed by ``pooling="camma"`` (4 in CAMMA's models).
    """

    POOLINGS = ("cls", "mean", "camma")

    def __init__(self, config: dict, pooling: str = "cls", pad_id: int = 0, pretrained: str | None = None,
                 last_n_layers: int = 4):
        super().__init__()
        from transformers import AutoConfig, AutoModel

        if pooling not in self.POOLINGS:
            raise ValueError(f"unknown text pooling {pooling!r}; expected one of {', '.join(self.POOLINGS)}")
        self.last_n_layers = int(last_n_layers)
        config = dict(config)
        model_type = config.pop("model_type", "bert")
        hf_config = AutoConfig.for_model(model_type, **config)
        extra = {"add_pooling_layer": False} if model_type == "bert" else {}
        if pretrained:
            try:
                # safetensors only: a pickled pytorch_model.bin is never loaded
                self.transformer = AutoModel.from_pretrained(pretrained, config=hf_config, use_safetensors=True, **extra)
            except OSError as err:
                raise RuntimeError(
                    f"could not load pretrained text weights {pretrained!r}: {err}. Offline, pass a local "
                    f"directory holding config.json and model.safetensors, or drop text.pretrained") from err
        else:
            self.transformer = AutoModel.from_config(hf_config, **extra)
        self.pooling = pooling
        self.pad_id = pad_id
        self.width = int(hf_config.hidden_size)

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        if enable:
            self.transformer.gradient_checkpointing_enable()
        else:
            self.transformer.gradient_checkpointing_disable()

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        if attention_mask is None:
            attention_mask = (input_ids != self.pad_id).long()
        return self.encode(attention_mask, input_ids=input_ids)

    def encode(self, attention_mask: torch.Tensor, input_ids: torch.Tensor | None = None,
               inputs_embeds: torch.Tensor | None = None) -> torch.Tensor:
        """Pooled features [N, width] of token ids [N, L] or token embeddings [N, L, W] (CoOp's
        spliced prompts) under ``attention_mask`` [N, L]; the pooling sees the full length L."""
        full = attention_mask.shape[1]
        length = used_length(attention_mask)
        if length < full:  # trailing columns that are padding in every row: not computed
            attention_mask = attention_mask[:, :length]
            input_ids = input_ids[:, :length] if input_ids is not None else None
            inputs_embeds = inputs_embeds[:, :length] if inputs_embeds is not None else None
        camma = self.pooling == "camma"
        out = self.transformer(input_ids=input_ids, inputs_embeds=inputs_embeds, attention_mask=attention_mask,
                               output_hidden_states=camma)
        mask = attention_mask.unsqueeze(-1)
        if camma:
            layers = torch.stack(out.hidden_states[-self.last_n_layers:]).sum(0)
            return (layers * mask.to(layers.dtype)).sum(1) / full
        hidden = out.last_hidden_state
        if self.pooling == "cls":
            return hidden[:, 0]
        mask = mask.to(hidden.dtype)
        return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)


class OpenCLIPTextEncoder(nn.Module):
    """open_clip's text tower (token embedding, transformer, final LN, projection), taken from a
    CLIP model whose image tower is used elsewhere."""

    def __init__(self, clip_model: nn.Module):
        super().__init__()
        clip_model.visual = None  # the video tower owns it
        if hasattr(clip_model, "logit_scale"):
            del clip_model.logit_scale  # the SurgCLIP model owns the temperature
        if getattr(clip_model, "logit_bias", None) is not None:
            del clip_model.logit_bias
        self.clip = clip_model
        self.width = int(clip_model.text_projection.shape[1]) if clip_model.text_projection is not None else int(
            clip_model.transformer.width)

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        self.clip.transformer.grad_checkpointing = enable

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        return self.clip.encode_text(input_ids)


def build_text_encoder(cfg: dict, clip_model: nn.Module | None = None) -> nn.Module:
    """Build a text tower from the ``text`` section of an architecture config.

    Args:
        cfg: ``{"type": "hf", "config": {...}, "pooling": "cls"}``, ``{"type": "open_clip"}`` or
            ``{"type": "hf_siglip", "config": {...}}``.
        clip_model: the open_clip model for ``type: open_clip``.
    """
    cfg = dict(cfg)
    kind = cfg.pop("type", "hf")
    if kind == "hf":
        return HFTextEncoder(**cfg)
    if kind == "open_clip":
        if clip_model is None:
            raise ValueError("text tower 'open_clip' needs the open_clip model")
        return OpenCLIPTextEncoder(clip_model)
    if kind == "hf_siglip":  # a Hugging Face SigLIP text tower (MedSigLIP)
        from .baselines.siglip import SiglipTextEncoder

        return SiglipTextEncoder(**cfg)
    raise ValueError(f"unknown text tower type {kind!r}; expected 'hf', 'open_clip' or 'hf_siglip'")
