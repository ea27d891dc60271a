"""Optimiser parameter groups and the warmup + cosine schedule."""
from __future__ import annotations

import math

import torch
from torch import nn

NO_DECAY_NAMES = ("bias", "norm", "ln", "embed", "embeddings", "cls_token", "temp", "logit_scale")


def no_weight_decay(name: str, param: torch.Tensor) -> bool:
    """Norms, biases, position/temporal/token embeddings and the temperature get no weight decay."""
    lowered = name.lower()
    return param.ndim < 2 or any(part in lowered for part in NO_DECAY_NAMES)


def param_groups(model: nn.Module, lr: float, weight_decay: float, lr_scale: dict[str, float] | None = None,
                 freeze: list[str] | None = None) -> list[dict]:
    """AdamW groups: (decay | no decay) x (learning-rate scale by module prefix).

    Args:
        lr_scale: ``{"vision_encoder": 0.1}`` gives parameters under that prefix 0.1 x lr.
        freeze: prefixes whose parameters are frozen (requires_grad=False).
    """
    lr_scale, freeze = lr_scale or {}, freeze or []
    for prefix in list(lr_scale) + list(freeze):
        if not any(n.startswith(prefix) for n, _ in model.named_parameters()):
            raise ValueError(f"no parameters under {prefix!r}; top-level modules: "
                             f"{sorted({n.split('.')[0] for n, _ in model.named_parameters()})}")
    groups: dict[tuple, dict] = {}
    for name, param in model.named_parameters():
        if any(name.startswith(p) for p in freeze):
            param.requires_grad_(False)
            continue
        if not param.requires_grad:
            continue
        scale = next((s for p, s in lr_scale.items() if name.startswith(p)), 1.0)
        decay = 0.0 if no_weight_decay(name, param) else weight_decay
        group = groups.setdefault((scale, decay), {"params": [], "names": [], "lr": lr * scale, "weight_decay": decay})
        group["params"].append(param)
        group["names"].append(name)
    return list(groups.values())


def warmup_cosine(warmup_steps: int, total_steps: int, min_ratio: float = 0.0):
    """LambdaLR factor: linear warmup to 1, then cosine decay to ``min_ratio`` at ``total_steps``."""
    def factor(step: int) -> float:
        if warmup_steps > 0 and step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
        return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))
    return factor
