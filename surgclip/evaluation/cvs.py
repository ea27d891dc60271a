"""Critical View of Safety (CVS) as multi-label zero-shot over its three criteria (SurgVLM-Bench style),
on Endoscapes2023 in its released layout.

Released layout (``ENDOSCAPES_ROOT``)::

    all_metadata.csv              one row per frame: vid, frame, ..., C1, C2, C3 (annotator votes averaged, 0..1)
    train_vids.txt, val_vids.txt, test_vids.txt     official split: one video id per line (may be written as floats)
    train/ val/ test/             frames {vid}_{frame}.jpg (frame = 25-fps frame number); ``all/`` also accepted

A criterion is achieved when its averaged vote is >= 0.5 (at least 2 of 3 annotators), as the
Endoscapes protocol binarises it. Rows whose C1..C3 are empty (frames without CVS annotation) are
not scored.

Scoring: each criterion has a positive and a negative sentence; the frame's score for the criterion
is the softmax over the pair, ``p = softmax(logit_scale * [cos(v, pos), cos(v, neg)])[0]``, so
``p >= 0.5`` exactly when the positive sentence is the closer one. Metrics per criterion: average
precision of ``p`` and balanced accuracy of ``p >= 0.5``; plus their means.
"""
from __future__ import annotations

import csv
import math
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from . import metrics as M

CRITERIA = ("C1", "C2", "C3")
CRITERION_NAMES = {"C1": "two structures", "C2": "hepatocystic triangle cleared", "C3": "cystic plate exposed"}
SPLITS = ("train", "val", "test")
THRESHOLD = 0.5
PROTOCOL = ("CVS zero-shot (Endoscapes2023 all_metadata.csv, official split): per frame and criterion, score = "
            "softmax over (positive, negative) prompt of logit_scale * cosine; target = averaged annotator vote >= 0.5; "
            "per-criterion average precision of the score and balanced accuracy at score >= 0.5")

# (positive, negative) sentence per criterion; two sets (the descriptive one follows the SAGES definition of CVS)
PROMPT_SETS = {
    "descriptive": {
        "C1": ("two tubular structures, the cystic duct and the cystic artery, are clearly seen entering the gallbladder",
               "the cystic duct and cystic artery are not clearly seen entering the gallbladder"),
        "C2": ("the hepatocystic triangle is cleared of fat and fibrous tissue",
               "the hepatocystic triangle is still covered by fat and fibrous tissue"),
        "C3": ("the lower third of the gallbladder is separated from the liver, exposing the cystic plate",
               "the gallbladder is still attached to the liver bed and the cystic plate is not exposed"),
    },
    "short": {
        "C1": ("two structures enter the gallbladder", "structures not visible"),
        "C2": ("hepatocystic triangle cleared", "hepatocystic triangle not dissected"),
        "C3": ("cystic plate exposed", "cystic plate not exposed"),
    },
}


class EndoscapesError(ValueError):
    """A missing or malformed Endoscapes file; the message names the file (and row)."""


@dataclass
class CVSTable:
    """Scored frames of one split: video ids [N], frame numbers [N], image paths [N], votes [N, 3] in 0..1."""

    video: np.ndarray
    frame: np.ndarray
    path: list
    votes: np.ndarray
    split: str

    @property
    def targets(self) -> np.ndarray:
        """[N, 3] uint8: criterion achieved (averaged vote >= 0.5)."""
        return (self.votes >= THRESHOLD).astype(np.uint8)

    def __len__(self) -> int:
        return len(self.video)


def read_split_ids(path: Path) -> list[int]:
    """Video ids of a ``*_vids.txt`` file (ids may be written as ``1.2e+02``)."""
    if not path.is_file():
        raise EndoscapesError(f"split file not found: {path} (expected the released {path.name} in the Endoscapes root)")
    ids = []
    for line_no, line in enumerate(path.read_text().split("\n"), 1):
        for token in line.replace(",", " ").split():
            try:
                value = float(token)
            except ValueError:
                raise EndoscapesError(f"{path}:{line_no}: video id {token!r} is not a number") from None
            if not value.is_integer():
                raise EndoscapesError(f"{path}:{line_no}: video id {token!r} is not an integer")
            ids.append(int(value))
    return ids


def load_endoscapes_cvs(root, split: str = "test") -> CVSTable:
    """The CVS-annotated frames of a split, with their averaged votes and image paths.

    Args:
        root: the Endoscapes2023 root (layout in the module docstring).
        split: ``train`` | ``val`` | ``test`` | ``all``.
    Returns:
        CVSTable in metadata order.
    Raises:
        EndoscapesError: a missing file or column, a vote outside 0..1, or an annotated frame whose image is missing.
    """
    root = Path(root)
    if split not in SPLITS + ("all",):
        raise ValueError(f"unknown split {split!r}; expected one of {SPLITS + ('all',)}")
    meta = root / "all_metadata.csv"
    if not meta.is_file():
        raise EndoscapesError(f"{meta} not found: expected the released Endoscapes2023 layout "
                              f"(all_metadata.csv, {{train,val,test}}_vids.txt, {{train,val,test}}/{{vid}}_{{frame}}.jpg)")
    splits = SPLITS if split == "all" else (split,)
    split_of = {vid: s for s in splits for vid in read_split_ids(root / f"{s}_vids.txt")}
    rows = []
    with open(meta, newline="", encoding="utf-8", errors="replace") as f:
        reader = csv.DictReader(f)
        missing = [c for c in ("vid", "frame", *CRITERIA) if c not in (reader.fieldnames or [])]
        if missing:
            raise EndoscapesError(f"{meta}: missing column(s) {missing} (has {reader.fieldnames})")
        for line_no, row in enumerate(reader, 2):
            try:
                vid, frame = int(float(row["vid"])), int(float(row["frame"]))
            except (TypeError, ValueError):
                raise EndoscapesError(f"{meta}:{line_no}: vid/frame {row['vid']!r}/{row['frame']!r} are not integers") from None
            if vid not in split_of:
                continue
            cells = [(row[c] or "").strip() for c in CRITERIA]
            if not any(cells):  # frame without a CVS annotation
                continue
            try:
                votes = [float(c) for c in cells]
            except ValueError:
                raise EndoscapesError(f"{meta}:{line_no}: C1..C3 {cells} are not numbers") from None
            if not all(math.isfinite(v) and 0.0 <= v <= 1.0 for v in votes):
                raise EndoscapesError(f"{meta}:{line_no}: C1..C3 {cells} must be averaged votes in 0..1")
            rows.append((vid, frame, _image_path(root, split_of[vid], vid, frame), votes))
    if not rows:
        raise EndoscapesError(f"{meta}: no CVS-annotated frames for the {split} videos listed in "
                              f"{[str(root / f'{s}_vids.txt') for s in splits]}")
    return CVSTable(np.array([r[0] for r in rows]), np.array([r[1] for r in rows]), [r[2] for r in rows],
                    np.array([r[3] for r in rows], dtype=np.float64), split)


def _image_path(root: Path, split: str, vid: int, frame: int) -> Path:
    for folder in (split, "all"):
        path = root / folder / f"{vid}_{frame}.jpg"
        if path.is_file():
            return path
    raise EndoscapesError(f"frame image not found: {root / split / f'{vid}_{frame}.jpg'} (nor in {root / 'all'})")


def balanced_accuracy(truth, pred) -> float:
    """Mean recall over the classes present in ``truth`` (sklearn ``balanced_accuracy_score``)."""
    truth, pred = np.asarray(truth), np.asarray(pred)
    recalls = [float(np.mean(pred[truth == c] == c)) for c in np.unique(truth)]
    return float(np.mean(recalls)) if recalls else float("nan")


def cvs_metrics(targets, scores) -> dict:
    """Per-criterion AP and balanced accuracy (threshold 0.5) and their means.

    Args:
        targets: [N, 3] 0/1; scores: [N, 3] probabilities.
    Returns:
        ``{"C1": {"AP", "balanced_accuracy", "positives"}, ..., "mAP", "mean_balanced_accuracy", "num_frames"}``.
    """
    targets, scores = np.asarray(targets), np.asarray(scores)
    out = {}
    for j, c in enumerate(CRITERIA):
        out[c] = {"name": CRITERION_NAMES[c], "AP": M.average_precision(targets[:, j], scores[:, j]),
                  "balanced_accuracy": balanced_accuracy(targets[:, j], (scores[:, j] >= THRESHOLD).astype(int)),
                  "positives": int(targets[:, j].sum())}
    aps = np.array([out[c]["AP"] for c in CRITERIA])
    out["mAP"] = float(np.nanmean(aps)) if np.isfinite(aps).any() else float("nan")
    out["mean_balanced_accuracy"] = float(np.mean([out[c]["balanced_accuracy"] for c in CRITERIA]))
    out["num_frames"] = int(len(targets))
    return out


@torch.no_grad()
def pair_scores(model, tokenizer, features: torch.Tensor, prompt_set: dict) -> np.ndarray:
    """features [N, D] (clip features) -> [N, 3] softmax probability of each criterion's positive sentence."""
    texts = [s for c in CRITERIA for s in prompt_set[c]]  # C1+, C1-, C2+, ...
    device = next(model.parameters()).device
    text = model.encode_text(tokenizer(texts).to(device)).float()
    video = torch.nn.functional.normalize(features.float().to(device), dim=-1)
    logits = (model.logit_scale.float() * video @ text.T).view(len(video), len(CRITERIA), 2)
    return logits.softmax(-1)[..., 0].cpu().numpy()


@torch.no_grad()
def encode_frames(model, paths: list, batch_size: int = 16, skipped: Counter | None = None):
    """Encode frame images as 1-frame clips. Returns (features [N, D] float32, valid [N] bool).

    Each image is read by ``readers.read_image``, as the frames of a frame folder are; one that is
    missing or does not decode is skipped and counted in ``skipped`` by ``readers.skip_reason``.
    """
    from ..data.readers import VideoReadError, read_image, skip_reason
    from ..transform import ClipTransform

    transform = ClipTransform(model.preprocess_cfg, normalize=False)
    device = next(model.parameters()).device
    feats = np.zeros((len(paths), model.embed_dim), dtype=np.float32)
    valid = np.zeros(len(paths), dtype=bool)
    was_training = model.training
    model.eval()
    for start in range(0, len(paths), batch_size):
        clips, rows = [], []
        for i in range(start, min(start + batch_size, len(paths))):
            try:
                frame = read_image(paths[i])
            except VideoReadError as err:
                if skipped is not None:
                    skipped[skip_reason(paths[i], err)] += 1
                continue
            clips.append(transform(frame[None]))
            rows.append(i)
        if clips:
            feats[rows] = model.encode_video(torch.stack(clips).to(device)).float().cpu().numpy()
            valid[rows] = True
    model.train(was_training)
    return feats, valid


def evaluate_cvs(model, tokenizer, table: CVSTable, prompt_sets=("descriptive", "short"), batch_size: int = 16) -> dict:
    """Zero-shot CVS on a split with each prompt set.

    Returns:
        ``{"protocol", "results": {set_name: cvs_metrics(...)}, "skipped": {reason: count}, "scores": {set: [N, 3]}, "valid"}``.
    """
    skipped = Counter()
    feats, valid = encode_frames(model, table.path, batch_size, skipped)
    results, scores = {}, {}
    for name in prompt_sets:
        if name not in PROMPT_SETS:
            raise ValueError(f"unknown CVS prompt set {name!r}; known: {sorted(PROMPT_SETS)}")
        s = pair_scores(model, tokenizer, torch.from_numpy(feats[valid]), PROMPT_SETS[name])
        results[name] = cvs_metrics(table.targets[valid], s)
        scores[name] = s
    return {"protocol": PROTOCOL, "results": results, "skipped": dict(skipped), "scores": scores, "valid": valid}
