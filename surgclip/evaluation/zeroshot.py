"""Zero-shot recognition from text prompts, scored as the published protocols do.

Class prompts are embedded once into a FAISS ``IndexFlatIP``; each labelled frame's clip embedding
(``model.encode_video``, already in similarity space) queries it for the scores of every class.
Single-label tasks predict the argmax; multi-label tasks score each class by its cosine.

Usable in memory (no files written), e.g. from a Lightning validation step::

    result = evaluate_zero_shot(model, tokenizer, table, prompts, num_frames=8, mode="centered")
    result.metrics["accuracy"], result.metrics["f1"], result.metrics["global_accuracy"]
"""
from __future__ import annotations

from collections import Counter
from contextlib import closing
from dataclasses import dataclass, field

import numpy as np
import torch

from ..datasets.table import FrameTable
from ..model import prepare_for_evaluation
from ..tokenizer import tokenize
from ..transform import ClipTransform
from . import metrics as M
from .clips import clip_encoder, iter_clip_batches, read_ahead


@dataclass
class ZeroShotResult:
    """Outcome of ``evaluate_zero_shot``.

    Attributes:
        metrics: numbers under the run's convention (single-label: accuracy, f1 (means over videos),
            *_std, global_accuracy, global_f1 (all frames pooled), per_video; multi-label: mAP (mean
            over videos), global_mAP, AP; triplets: ``metrics.triplet_metrics``).
        scores: [N, C] cosine scores (NaN rows for skipped frames).
        pred: [N] argmax class (-1 for skipped frames).
        valid: [N] bool, rows that were scored.
        skipped: counts of skipped rows by reason (of ``utils.SKIP_REASONS``: missing_file,
            undecodable_media, missing_frame); reasons with no skip are absent.
        protocol: how the numbers were computed.
    """

    metrics: dict
    scores: np.ndarray
    pred: np.ndarray
    valid: np.ndarray
    skipped: dict = field(default_factory=dict)
    protocol: dict = field(default_factory=dict)


@torch.no_grad()
def prompt_index(model, tokenizer, prompts: list[str], device=None):
    """FAISS ``IndexFlatIP`` over the unit-normalised prompt embeddings ([C, D], float32)."""
    import faiss

    device = device or next(model.parameters()).device
    context = getattr(tokenizer, "context_length", 77)
    was_training = model.training
    model.eval()
    try:
        text = model.encode_text(tokenize(prompts, tokenizer, device=device, max_length=context)).float().cpu().numpy()
    finally:
        model.train(was_training)
    index = faiss.IndexFlatIP(text.shape[1])
    index.add(np.ascontiguousarray(text, dtype=np.float32))
    return index


def score_clips(index, embeddings: np.ndarray) -> np.ndarray:
    """[B, D] clip embeddings -> [B, C] inner products with every prompt, in class order."""
    num_classes = index.ntotal
    dist, ids = index.search(np.ascontiguousarray(embeddings, dtype=np.float32), num_classes)
    scores = np.empty_like(dist)
    np.put_along_axis(scores, ids, dist, axis=1)
    return scores


@torch.no_grad()
def embed_table(model, table: FrameTable, num_frames: int | None = None, mode: str = "centered", batch_size: int = 8,
                stride_s: float = 1.0, device=None, progress: bool = False, prefetch: int | None = None):
    """Clip embeddings of every labelled frame of ``table``.

    Args: as ``evaluate_zero_shot``.
    Returns:
        (embeddings [N, D] float32 with NaN rows for skipped frames, skipped counts by reason,
        the clip protocol ``{"mode", "num_frames", "stride_s"}``).
    """
    device = device or next(model.parameters()).device
    num_frames = int(num_frames or model.num_frames)
    if num_frames == 1:
        mode = "frame"
    restore = prepare_for_evaluation(model)  # eval mode and the inference rewrites until restore()
    # a per-frame tower runs each frame's trunk once, however many overlapping clips hold it
    transform, encode = clip_encoder(model, ClipTransform(model.preprocess_cfg, normalize=False), num_frames, mode, device)
    emb = None
    skipped: Counter = Counter()
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(table), desc=f"zero-shot {table.name}", unit="frame")
    try:
        prefetch = read_ahead(device) if prefetch is None else prefetch
        # closing(): an error in the forward stops the reader thread now, not when the traceback dies
        batches = iter_clip_batches(table, transform, num_frames, mode, stride_s, batch_size, skipped, bar, prefetch)
        with closing(batches):
            for rows, clips in batches:
                out = encode(clips).float().cpu().numpy()
                if emb is None:
                    emb = np.full((len(table), out.shape[1]), np.nan, dtype=np.float32)
                emb[rows] = out
    finally:
        if bar is not None:
            bar.close()
        restore()
    if emb is None:
        emb = np.full((len(table), 1), np.nan, dtype=np.float32)
    clip = {"mode": mode, "num_frames": 1 if mode == "frame" else num_frames, "stride_s": stride_s}
    return emb, dict(skipped), clip


def score_embeddings(model, tokenizer, embeddings: np.ndarray, prompts: list[str], device=None) -> np.ndarray:
    """[N, C] cosine scores of clip embeddings against one prompt per class (NaN rows stay NaN)."""
    index = prompt_index(model, tokenizer, prompts, device)
    scores = np.full((len(embeddings), index.ntotal), np.nan, dtype=np.float32)
    valid = ~np.isnan(embeddings).any(1)
    if valid.any():
        scores[valid] = score_clips(index, embeddings[valid])
    return scores


def table_metrics(table: FrameTable, scores: np.ndarray, valid: np.ndarray, convention: str) -> dict:
    """Metrics of the scored rows of a single- or multi-label table (``predictions.score_predictions``
    computes the same from a written predictions file)."""
    if not valid.any():
        return {"num_frames": 0, "convention": convention}
    if table.multilabel:
        return M.multilabel_metrics(table.targets[valid], scores[valid], table.video[valid], convention)
    return M.single_label_metrics(table.labels[valid], scores[valid].argmax(1), table.video[valid],
                                  len(table.classes), convention)


def _counts(metrics: dict, n: int, valid: np.ndarray) -> dict:
    metrics.update(num_labelled=n, num_scored=int(valid.sum()), num_skipped=int(n - valid.sum()))
    return metrics


@torch.no_grad()
def evaluate_zero_shot(model, tokenizer, table: FrameTable, prompts: list[str], num_frames: int | None = None,
                       mode: str = "centered", batch_size: int = 8, stride_s: float = 1.0, device=None,
                       progress: bool = False, prefetch: int | None = None,
                       convention: str = M.DEFAULT_CONVENTION) -> ZeroShotResult:
    """Zero-shot evaluation of an in-memory model on a frame table.

    Args:
        model: a SurgCLIP model (eval mode is set here and restored after).
        tokenizer: its tokenizer.
        table: labelled frames with ``sources``.
        prompts: one sentence per class, in class-id order.
        num_frames: frames per clip (default ``model.num_frames``); 1 or ``mode="frame"`` = single frame.
        mode: ``centered`` (offline), ``online`` (causal) or ``frame``.
        batch_size: clips per forward.
        stride_s: seconds between the frames of a clip.
        device: default: the model's device.
        progress: show a tqdm progress bar.
        prefetch: batches a background thread decodes ahead while the model runs (0: read in this
            thread). Default ``clips.read_ahead``: 2 when the forward leaves a core idle (a GPU, or
            fewer torch threads than cores), else 0, since a CPU forward that already fills every
            core only competes with the thread (``eval/bench/bench_zeroshot.py`` measures both).
        convention: metric convention (``metrics.CONVENTIONS``).
    Returns:
        ZeroShotResult (``.metrics`` holds the numbers).
    """
    if len(prompts) != len(table.classes):
        raise ValueError(f"{len(prompts)} prompts for {len(table.classes)} classes of {table.name} "
                         f"({table.classes}); need one prompt per class in id order")
    M.check_convention(convention)
    emb, skipped, clip = embed_table(model, table, num_frames, mode, batch_size, stride_s, device, progress, prefetch)
    scores = score_embeddings(model, tokenizer, emb, prompts, device)
    valid = ~np.isnan(scores).any(1)
    pred = np.where(valid, np.nan_to_num(scores, nan=-np.inf).argmax(1), -1)
    protocol = {"task": table.name, **clip, "num_classes": len(table.classes), "prompts": list(prompts),
                "convention": convention, "metric": M.CONVENTIONS[convention]}
    metrics = _counts(table_metrics(table, scores, valid, convention), len(table), valid)
    return ZeroShotResult(metrics, scores, pred, valid, skipped, protocol)


@torch.no_grad()
def evaluate_triplets(model, tokenizer, tables: dict[str, FrameTable], prompts: dict[str, list[str]],
                      component_names: dict, num_frames: int | None = None, mode: str = "centered",
                      batch_size: int = 8, stride_s: float = 1.0, device=None, progress: bool = False,
                      prefetch: int | None = None, convention: str = M.DEFAULT_CONVENTION) -> dict[str, ZeroShotResult]:
    """CholecT50 zero-shot as the SurgLaVi code runs it: each sub-task (``triplet``, ``instrument``,
    ``verb``, ``target``) scored with its own prompts on the same clip embeddings (one forward per
    frame), reported with ``metrics.triplet_metrics`` (i, v, t, ivt, iv, it).

    Args:
        tables: sub-task -> FrameTable over the same frames (``triplet`` required).
        prompts: sub-task -> one prompt per class.
        component_names: ``{"i", "v", "t"}`` class names, to derive iv / it from the triplet names.
    Returns:
        sub-task -> ZeroShotResult; every result's ``metrics`` is the whole ``triplet_metrics`` dict.
    """
    M.check_convention(convention)
    base = tables["triplet"]
    for task, t in tables.items():
        if len(prompts[task]) != len(t.classes):
            raise ValueError(f"{len(prompts[task])} prompts for {len(t.classes)} {task} classes of {t.name}")
        if not (np.array_equal(t.video, base.video) and np.array_equal(t.frame, base.frame)):
            raise ValueError(f"CholecT50 {task} labels cover other frames than the triplet labels")
    emb, skipped, clip = embed_table(model, base, num_frames, mode, batch_size, stride_s, device, progress, prefetch)
    scores = {task: score_embeddings(model, tokenizer, emb, prompts[task], device) for task in tables}
    valid = ~np.isnan(scores["triplet"]).any(1)
    metrics = {"num_frames": 0, "convention": convention}
    if valid.any():
        metrics = M.triplet_metrics({k: t.targets[valid] for k, t in tables.items()},
                                    {k: s[valid] for k, s in scores.items()}, base.video[valid],
                                    base.classes, component_names, convention)
    metrics = _counts(metrics, len(base), valid)
    out = {}
    for task, t in tables.items():
        protocol = {"task": t.name, **clip, "num_classes": len(t.classes), "prompts": list(prompts[task]),
                    "convention": convention, "metric": M.CONVENTIONS[convention]}
        out[task] = ZeroShotResult(metrics, scores[task], np.where(valid, 0, -1), valid, skipped, protocol)
    return out
