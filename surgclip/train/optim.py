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


def check_prefixes(model: nn.Module, prefixes: list[str]) -> None:
    """Raise ValueError naming a prefix (of ``lr_scale`` / ``freeze``) that matches no parameter."""
    names = [n for n, _ in model.named_parameters()]
    for prefix in prefixes:
        if not any(n.startswith(prefix) for n in names):
            raise ValueError(f"no parameters under {prefix!r}; top-level modules: "
                             f"{sorted({n.split('.')[0] for n in names})}")


def freeze_params(model: nn.Module, freeze: list[str] | None) -> None:
    """requires_grad=False for parameters under the ``freeze`` prefixes. Call before DDP/FSDP wraps
    the model: DDP registers its gradient hooks (and waits for them) per trainable parameter."""
    check_prefixes(model, list(freeze or []))
    for name, param in model.named_parameters():
        if any(name.startswith(p) for p in freeze or []):
            param.requires_grad_(False)


def param_groups(model: nn.Module, lr: float, weight_decay: float, lr_scale: dict[str, float] | None = None,
                 freeze: list[str] | None = None) -> list[dict]:
    """AdamW groups of the trainable parameters: (decay | no decay) x (learning-rate scale by prefix).

    Args:
        lr_scale: ``{"vision_encoder": 0.1}`` gives parameters under that prefix 0.1 x lr.
        freeze: prefixes to freeze first (``freeze_params``); frozen parameters join no group.
    """
    lr_scale = lr_scale or {}
    check_prefixes(model, list(lr_scale))
    freeze_params(model, freeze)
    groups: dict[tuple, dict] = {}
    for name, param in model.named_parameters():
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
