"""The training module's option groups: the optimiser, the loss and the zero-shot validation.

A config names a group and only the fields it changes, e.g.::

    model:
      model: SurgCLIP-B
      optim: {lr: 1.0e-5, warmup_steps: 1000}
      loss: {level_weights: {1: 1.0, 2: 0.5, 3: 0.5}}
      zeroshot: {root: data/sample/cholec80}
"""
from __future__ import annotations

from dataclasses import dataclass

from ..utils import as_group

OPTIMIZER_NAMES = ("adamw", "adam", "sgd")

__all__ = ["LossOptions", "OptimOptions", "ZeroShotOptions", "as_group"]


@dataclass
class OptimOptions:
    """The optimiser and its schedule (no weight decay on norms, biases, embeddings, temperature).

    Args:
        optimizer: ``adamw`` | ``adam`` | ``sgd``.
        lr, weight_decay, betas, eps: optimiser settings.
        warmup_steps, min_lr_ratio: linear warmup, then cosine decay to ``min_lr_ratio * lr``.
    """

    optimizer: str = "adamw"
    lr: float = 3e-4
    weight_decay: float = 0.05
    betas: tuple[float, float] = (0.9, 0.98)
    eps: float = 1e-6
    warmup_steps: int = 50
    min_lr_ratio: float = 0.01

    def __post_init__(self) -> None:
        if self.optimizer not in OPTIMIZER_NAMES:
            raise ValueError(f"unknown optimizer {self.optimizer!r}; choose one of {sorted(OPTIMIZER_NAMES)}")
        self.betas = tuple(float(b) for b in self.betas)


@dataclass
class LossOptions:
    """The InfoNCE loss (see ``surgclip.loss.InfoNCELoss``).

    Args:
        local_loss: score only this rank's rows against all gathered columns.
        multi_positive: clips sharing a caption text are all positives.
        mask_overlaps: leave out of the denominators same-video pairs whose captions are of other levels.
        level_weights: per-level loss weights, e.g. ``{1: 1.0, 2: 0.5, 3: 0.5}`` (levels 1 task,
            2 step, 3 phase).
    """

    local_loss: bool = False
    multi_positive: bool = True
    mask_overlaps: bool = True
    level_weights: dict[int, float] | None = None

    def __post_init__(self) -> None:
        for level in (self.level_weights or {}):
            if int(level) not in (1, 2, 3):
                raise ValueError(f"unknown level {level!r} in model.loss.level_weights; levels are 1 (task), "
                                 f"2 (step), 3 (phase)")


@dataclass
class ZeroShotOptions:
    """Zero-shot phase recognition scored each validation epoch.

    Args:
        root: a Cholec80-layout folder (e.g. the sample's ``cholec80``); None skips it.
        prompts: prompt set name for that benchmark.
        stride_s: score one labelled frame every this many seconds (the report prints the
            ``surgclip eval zeroshot`` command that repeats the scoring on the exported model).
    """

    root: str | None = None
    prompts: str = "camma"
    stride_s: float = 2.0
