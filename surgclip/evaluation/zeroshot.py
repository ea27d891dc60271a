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

from ..tokenizer import tokenize
from ..transform import ClipTransform
from . import metrics as M
from .clips import clip_encoder, iter_clip_batches, read_ahead
from .table import FrameTable

PROTOCOL_SINGLE = ("zero-shot single-label: argmax cosine over normalised prompt embeddings per labelled frame; "
                   "per-video accuracy and macro F1 over classes present in truth or prediction, mean over videos "
                   "(CAMMA); global accuracy/F1 over all frames")
PROTOCOL_MULTI = "zero-shot multi-label: per-class cosine scores; mAP = mean over classes of average precision"
PROTOCOL_TRIPLET = "zero-shot triplets: per-class cosine scores; video-wise AP averaged as ivtmetrics compute_video_AP"


@dataclass
class ZeroShotResult:
    """Outcome of ``evaluate_zero_shot``.

    Attributes:
        metrics: numbers (single-label: accuracy, f1 (means over videos), *_std, global_accuracy,
            global_f1, per_video; multi-label: mAP, AP; triplets: video-wise mAP).
        scores: [N, C] cosine scores (NaN rows for skipped frames).
        pred: [N] argmax class (-1 for skipped frames).
        valid: [N] bool, rows that were scored.
        skipped: counts of skipped rows by reason (``clips.SKIP_REASONS``: missing_file,
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
    text = model.encode_text(tokenize(prompts, tokenizer, device=device, max_length=context)).float().cpu().numpy()
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
def evaluate_zero_shot(model, tokenizer, table: FrameTable, prompts: list[str], num_frames: int | None = None,
                       mode: str = "centered", batch_size: int = 8, stride_s: float = 1.0, device=None,
                       progress: bool = False, triplets: bool | None = None, prefetch: int | None = None) -> ZeroShotResult:
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
        triplets: score multi-label with video-wise AP (default: when the table is CholecT50 triplets).
        prefetch: batches a background thread decodes ahead while the model runs (0: read in this
            thread). Default ``clips.read_ahead``: 2 when the forward leaves a core idle (a GPU, or
            fewer torch threads than cores), else 0, since a CPU forward that already fills every
            core only competes with the thread (``eval/bench/bench_zeroshot.py`` measures both).
    Returns:
        ZeroShotResult (``.metrics`` holds the numbers).
    """
    if len(prompts) != len(table.classes):
        raise ValueError(f"{len(prompts)} prompts for {len(table.classes)} classes of {table.name} "
                         f"({table.classes}); need one prompt per class in id order")
    device = device or next(model.parameters()).device
    num_frames = int(num_frames or model.num_frames)
    if num_frames == 1:
        mode = "frame"
    was_training = model.training
    model.eval()
    index = prompt_index(model, tokenizer, prompts, device)
    # a per-frame tower runs each frame's trunk once, however many overlapping clips hold it
    transform, encode = clip_encoder(model, ClipTransform(model.preprocess_cfg, normalize=False), num_frames, mode, device)
    n, C = len(table), len(table.classes)
    scores = np.full((n, C), np.nan, dtype=np.float32)
    skipped: Counter = Counter()
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=n, desc=f"zero-shot {table.name}", unit="frame")
    try:
        prefetch = read_ahead(device) if prefetch is None else prefetch
        # closing(): an error in the forward stops the reader thread now, not when the traceback dies
        batches = iter_clip_batches(table, transform, num_frames, mode, stride_s, batch_size, skipped, bar, prefetch)
        with closing(batches):
            for rows, clips in batches:
                scores[rows] = score_clips(index, encode(clips).float().cpu().numpy())
    finally:
        if bar is not None:
            bar.close()
        model.train(was_training)
    valid = ~np.isnan(scores).any(1)
    pred = np.where(valid, np.nan_to_num(scores, nan=-np.inf).argmax(1), -1)
    triplets = table.name.startswith("cholect50/triplet") if triplets is None else triplets
    protocol = {"task": table.name, "mode": mode, "num_frames": 1 if mode == "frame" else num_frames,
                "stride_s": stride_s, "num_classes": C, "prompts": list(prompts)}
    if not valid.any():
        metrics = {"num_frames": 0}
    elif table.multilabel and triplets:
        protocol["metric"] = PROTOCOL_TRIPLET
        metrics = M.video_wise_ap(table.targets[valid], scores[valid], table.video[valid])
    elif table.multilabel:
        protocol["metric"] = PROTOCOL_MULTI
        metrics = M.multilabel_map(table.targets[valid], scores[valid])
    else:
        protocol["metric"] = PROTOCOL_SINGLE
        metrics = M.single_label_metrics(table.labels[valid], pred[valid], table.video[valid])
    metrics["num_labelled"] = n
    metrics["num_scored"] = int(valid.sum())
    metrics["num_skipped"] = int(n - valid.sum())
    return ZeroShotResult(metrics, scores, pred, valid, dict(skipped), protocol)
