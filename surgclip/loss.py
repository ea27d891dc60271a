"""Symmetric InfoNCE for video-text pairs, across ranks, with multi-positive targets and masking of
same-video captions of another level that overlap in time (they are not true negatives)."""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn


@dataclass
class PairMeta:
    """Per-sample facts the loss uses to find extra positives and false negatives ([B] tensors)."""

    groups: torch.Tensor | None = None    # equal id = positive pair (e.g. hash of the caption text)
    video: torch.Tensor | None = None     # integer video id
    level: torch.Tensor | None = None     # caption level
    start: torch.Tensor | None = None     # seconds
    end: torch.Tensor | None = None
    valid: torch.Tensor | None = None     # bool; False = a stand-in for a skipped item, left out of the loss


def _dist_ready() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


class _GatherWithGrad(torch.autograd.Function):
    """all_gather whose backward sums every rank's gradient and hands each rank its slice
    (an all-reduce, so it works on gloo as well as NCCL). Ranks must hold equal batch sizes."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        ctx.rank, ctx.size = dist.get_rank(), x.shape[0]
        out = [torch.empty_like(x) for _ in range(dist.get_world_size())]
        dist.all_gather(out, x.contiguous())
        return torch.cat(out, dim=0)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.contiguous().clone()
        dist.all_reduce(grad)
        return grad[ctx.rank * ctx.size:(ctx.rank + 1) * ctx.size]


def gather_with_grad(x: torch.Tensor) -> torch.Tensor:
    """Concatenate ``x`` [b, ...] from all ranks -> [world * b, ...]; gradients reach every rank's slice."""
    return _GatherWithGrad.apply(x)


def gather_no_grad(x: torch.Tensor) -> torch.Tensor:
    out = [torch.empty_like(x) for _ in range(dist.get_world_size())]
    dist.all_gather(out, x.contiguous())
    return torch.cat(out, dim=0)


class InfoNCELoss(nn.Module):
    """CLIP loss: mean of video->text and text->video cross-entropy.

    Args:
        local_loss: score only this rank's rows against all gathered columns (open_clip's
            ``local_loss``; cheaper, same gradients in expectation). Otherwise every rank scores the
            full gathered batch.
        multi_positive: samples sharing a ``groups`` id are all positives (soft targets).
        mask_overlaps: drop from the denominators pairs from the same video whose captions are of
            different levels and overlap in time.
        distributed: gather across ranks when a process group of more than one rank is up (set
            False to score one rank's batch alone, e.g. a single-process re-validation inside DDP).
    Samples with ``meta.valid`` False are neither rows of the loss nor columns of any valid row, so
    padding a batch with them changes neither the loss nor its gradients.
    Returns from ``forward``: dict with ``loss`` (scalar, weighted mean), ``per_sample`` [b] (local
    rows' symmetric loss), ``loss_v2t``, ``loss_t2v``.
    """

    def __init__(self, local_loss: bool = False, multi_positive: bool = True, mask_overlaps: bool = False,
                 distributed: bool = True):
        super().__init__()
        self.distributed = distributed
        self.local_loss = local_loss
        self.multi_positive = multi_positive
        self.mask_overlaps = mask_overlaps

    def forward(self, video: torch.Tensor, text: torch.Tensor, logit_scale: torch.Tensor | float,
                meta: PairMeta | None = None, weights: torch.Tensor | None = None) -> dict:
        """video, text: [b, D] embeddings in similarity space; weights: [b] per-sample loss weights."""
        meta = meta or PairMeta()
        b = video.shape[0]
        rank, offset = 0, 0
        all_video, all_text = video, text
        fields = {k: getattr(meta, k) for k in ("groups", "video", "level", "start", "end", "valid")}
        if fields["valid"] is not None:
            fields["valid"] = fields["valid"].to(torch.uint8)  # gloo does not gather bool
        gather = self.distributed and _dist_ready()
        if gather:
            rank = dist.get_rank()
            all_video, all_text = gather_with_grad(video), gather_with_grad(text)
            fields = {k: gather_no_grad(v) if v is not None else None for k, v in fields.items()}
            if self.local_loss:
                offset = rank * b
        if fields["valid"] is not None:
            fields["valid"] = fields["valid"].bool()
        rows = slice(offset, offset + b) if self.local_loss else slice(0, all_video.shape[0])
        row_video, row_text = all_video[rows], all_text[rows]
        logits_v2t = logit_scale * row_video @ all_text.T      # [r, N]
        logits_t2v = logit_scale * row_text @ all_video.T      # [r, N]

        n = all_video.shape[0]
        row_ids = torch.arange(n, device=video.device)[rows]
        positives = row_ids[:, None] == torch.arange(n, device=video.device)[None, :]
        g = fields["groups"]
        if self.multi_positive and g is not None:
            positives = positives | (g[rows][:, None] == g[None, :])
        if self.mask_overlaps and all(fields[k] is not None for k in ("video", "level", "start", "end")):
            v, lv, s, e = (fields[k] for k in ("video", "level", "start", "end"))
            same_video = v[rows][:, None] == v[None, :]
            other_level = lv[rows][:, None] != lv[None, :]
            overlap = (s[rows][:, None] < e[None, :]) & (s[None, :] < e[rows][:, None])
            false_neg = same_video & other_level & overlap & ~positives
            logits_v2t = logits_v2t.masked_fill(false_neg, float("-inf"))
            logits_t2v = logits_t2v.masked_fill(false_neg, float("-inf"))
        valid = fields["valid"]
        if valid is not None:
            # padded columns leave valid rows' denominators and targets; padded rows keep their own
            # (finite) logits and get zero weight below
            pad_col = valid[rows][:, None] & ~valid[None, :]
            positives = positives & ~pad_col
            logits_v2t = logits_v2t.masked_fill(pad_col, float("-inf"))
            logits_t2v = logits_t2v.masked_fill(pad_col, float("-inf"))
        targets = positives.float() / positives.sum(1, keepdim=True)
        loss_v2t = _soft_ce(logits_v2t, targets)
        loss_t2v = _soft_ce(logits_t2v, targets)
        per_row = (loss_v2t + loss_t2v) / 2
        per_sample = per_row if self.local_loss or not gather else per_row[rank * b: (rank + 1) * b]
        w = None
        if weights is not None:
            w = gather_no_grad(weights) if (gather and not self.local_loss) else weights
        if valid is not None:
            keep = valid[rows].to(per_row.dtype)
            w = keep if w is None else w * keep
        loss = (per_row * w).sum() / w.sum().clamp(min=1e-12) if w is not None else per_row.mean()
        return {"loss": loss, "per_sample": per_sample.detach(), "loss_v2t": loss_v2t.mean().detach(),
                "loss_t2v": loss_t2v.mean().detach()}


def _soft_ce(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Row-wise cross-entropy against soft targets; masked (-inf) logits have zero target."""
    logp = torch.log_softmax(logits, dim=1)
    return -(targets * logp.masked_fill(targets == 0, 0.0)).sum(1)
