"""Multiple-choice questions about clips, answered by a dual encoder (SurgVLM-Bench style): each option's
text (optionally prefixed by the question) is scored by its cosine with the clip; the answer is the
highest-scoring option.

Question file (JSON list)::

    [{"clip": {"video": "videos/a.mp4", "start": 12.0, "end": 20.0},
      "question": "Which instrument is used?", "options": ["a grasper", "a hook"], "answer": 1}]

``video`` is a video file or a frame folder (with ``frames.json``), relative to the JSON file's folder
unless absolute; ``start``/``end`` are seconds; ``answer`` is the 0-based index of the right option.
"""
from __future__ import annotations

import json
import math
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

PROTOCOL = ("multiple-choice zero-shot: clip of T uniformly sampled frames between start and end; each option's "
            "text ({text}) scored by cosine with the clip embedding; prediction = argmax; accuracy over questions")


class MCQError(ValueError):
    """A malformed question file or entry; the message names the file and the entry index."""


@dataclass
class Question:
    index: int
    video: Path
    start: float
    end: float
    question: str
    options: list
    answer: int


def load_questions(path) -> list[Question]:
    """Parse and validate a question file.

    Raises:
        MCQError: unreadable JSON, or an entry with a missing/mistyped field, fewer than 2 options, an answer
            outside the options, or invalid times — naming the file and the entry index.
    """
    path = Path(path)
    if not path.is_file():
        raise MCQError(f"question file not found: {path}")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise MCQError(f"{path}: not a JSON file ({err})") from err
    if not isinstance(data, list) or not data:
        raise MCQError(f"{path}: expected a non-empty JSON list of questions, got {type(data).__name__}")
    out = []
    for i, e in enumerate(data):
        where = f"{path}: entry {i}"
        if not isinstance(e, dict):
            raise MCQError(f"{where}: expected an object, got {type(e).__name__}")
        missing = [k for k in ("clip", "question", "options", "answer") if k not in e]
        if missing:
            raise MCQError(f"{where}: missing field(s) {missing}")
        clip = e["clip"]
        if not isinstance(clip, dict) or not isinstance(clip.get("video"), str) or not clip["video"]:
            raise MCQError(f"{where}: 'clip' must be an object with a 'video' path, 'start' and 'end' seconds")
        try:
            start, end = float(clip.get("start")), float(clip.get("end"))
        except (TypeError, ValueError):
            raise MCQError(f"{where}: clip start/end must be numbers, got {clip.get('start')!r}/{clip.get('end')!r}") from None
        if not (math.isfinite(start) and math.isfinite(end) and 0 <= start < end):
            raise MCQError(f"{where}: clip times need 0 <= start < end, got start={start} end={end}")
        options = e["options"]
        if not isinstance(options, list) or len(options) < 2 or not all(isinstance(o, str) and o.strip() for o in options):
            raise MCQError(f"{where}: 'options' must be a list of at least 2 non-empty strings")
        if not isinstance(e["question"], str):
            raise MCQError(f"{where}: 'question' must be a string")
        answer = e["answer"]
        if isinstance(answer, bool) or not isinstance(answer, int) or not 0 <= answer < len(options):
            raise MCQError(f"{where}: 'answer' must be an option index 0..{len(options) - 1}, got {answer!r}")
        video = Path(clip["video"])
        out.append(Question(i, video if video.is_absolute() else path.parent / video, start, end, e["question"],
                            list(options), answer))
    return out


def option_texts(q: Question, with_question: bool = True) -> list[str]:
    """The texts scored for a question's options: ``"{question} {option}"`` or the option alone."""
    return [f"{q.question.strip()} {o.strip()}".strip() if with_question else o.strip() for o in q.options]


@torch.no_grad()
def evaluate_mcq(model, tokenizer, questions: list[Question], with_question: bool = True,
                 num_frames: int | None = None) -> dict:
    """Answer every question; unreadable clips are skipped and counted by reason (``bad_span``,
    ``unreadable_video`` of ``utils.SKIP_REASONS``). A clip is ``readers.read_clip`` of its span.

    Returns:
        ``{"protocol", "accuracy", "num_scored", "num_questions", "chance", "skipped": {reason: n},
        "errors": [{"entry", "reason", "message"}], "per_question": [{"entry", "scores", "pred", "answer"}]}``.
    """
    from ..data.readers import VideoReadError, read_clip
    from ..sampling import ClipSpanError
    from ..transform import ClipTransform

    transform = ClipTransform(model.preprocess_cfg, normalize=False)
    device = next(model.parameters()).device
    T = int(num_frames or model.num_frames)
    was_training = model.training
    model.eval()
    skipped, errors, per_q = Counter(), [], []
    try:
        for q in questions:
            try:  # T frames spread uniformly over start..end
                clip = transform(read_clip(q.video, q.start, q.end, T)[1])
            except (VideoReadError, ClipSpanError) as err:
                reason = "bad_span" if isinstance(err, ClipSpanError) else "unreadable_video"
                skipped[reason] += 1
                errors.append({"entry": q.index, "reason": reason, "message": str(err)})
                continue
            video = model.encode_video(clip[None].to(device)).float()
            text = model.encode_text(tokenizer(option_texts(q, with_question)).to(device)).float()
            scores = (torch.nn.functional.normalize(video, dim=-1) @ text.T)[0].cpu().numpy()
            per_q.append({"entry": q.index, "scores": scores.tolist(), "pred": int(np.argmax(scores)), "answer": q.answer})
    finally:
        model.train(was_training)
    correct = [p["pred"] == p["answer"] for p in per_q]
    return {"protocol": PROTOCOL.format(text="question + option" if with_question else "option alone"),
            "accuracy": float(np.mean(correct)) if correct else float("nan"), "num_scored": len(per_q),
            "num_questions": len(questions), "chance": float(np.mean([1 / len(q.options) for q in questions])),
            "skipped": dict(skipped), "errors": errors, "per_question": per_q}
