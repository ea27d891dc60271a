"""Plots a person would rather look at: phase ribbons (truth vs prediction per video), a confusion
matrix, and a contact sheet of retrieval hits. matplotlib (Agg) loads only here."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..utils import atomic_path


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path) -> Path:
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    _plt().close(fig)
    return path


def phase_ribbons(path, videos: list[str], truth: dict, pred: dict, classes: list[str]) -> Path:
    """Per video two colour bars over time, truth above prediction ([n] class ids each)."""
    plt = _plt()
    cmap = plt.get_cmap("tab20", max(len(classes), 2))
    fig, axes = plt.subplots(len(videos), 1, figsize=(10, 0.9 * len(videos) + 0.8), squeeze=False)
    for ax, v in zip(axes[:, 0], videos):
        ax.imshow(np.stack([truth[v], pred[v]]), aspect="auto", cmap=cmap, vmin=0, vmax=max(len(classes) - 1, 1),
                  interpolation="nearest")
        ax.set_yticks([0, 1], ["truth", "pred"])
        ax.set_xticks([])
        ax.set_title(v, fontsize=8, loc="left")
    handles = [plt.Rectangle((0, 0), 1, 1, color=cmap(i)) for i in range(len(classes))]
    fig.legend(handles, classes, loc="lower center", ncol=min(4, len(classes)), fontsize=7)
    fig.subplots_adjust(bottom=0.25)
    return _save(fig, path)


def confusion_plot(path, matrix: np.ndarray, classes: list[str]) -> Path:
    """Row-normalised confusion matrix (rows = truth) with counts in the cells."""
    plt = _plt()
    norm = matrix / np.maximum(matrix.sum(1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(1 + 0.7 * len(classes), 1 + 0.6 * len(classes)))
    ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    for i in range(len(classes)):
        for j in range(len(classes)):
            ax.text(j, i, int(matrix[i, j]), ha="center", va="center", fontsize=7,
                    color="white" if norm[i, j] > 0.5 else "black")
    ax.set_xticks(range(len(classes)), classes, rotation=45, ha="right", fontsize=7)
    ax.set_yticks(range(len(classes)), classes, fontsize=7)
    ax.set_xlabel("prediction")
    ax.set_ylabel("truth")
    return _save(fig, path)


def contact_sheet(path, query: str, hits: list[dict], frames_fps: float | None = None, thumbs: int = 3) -> Path:
    """One row per hit: ``thumbs`` frames across [start, end] with video, times and score.

    The frames are ``readers.read_clip(path, start, end, thumbs)``, the same span -> frames rule as
    training and the indexer; an unreadable video gets blank thumbnails.
    """
    from ..data.readers import VideoReadError, read_clip
    from ..sampling import ClipSpanError

    plt = _plt()
    fig, axes = plt.subplots(max(len(hits), 1), thumbs, figsize=(2.4 * thumbs, 1.6 * max(len(hits), 1)), squeeze=False)
    for r, hit in enumerate(hits):
        try:
            if not hit.get("path"):
                raise VideoReadError(f"no path recorded for video {hit['video']!r}")
            images = read_clip(hit["path"], float(hit["start"]), float(hit["end"]), thumbs, fps=frames_fps)[1]
        except (VideoReadError, ClipSpanError, OSError):  # a bad video must not lose the other rows
            images = [np.zeros((8, 8, 3), np.uint8)] * thumbs
        for c in range(thumbs):
            ax = axes[r, c]
            ax.imshow(images[c])
            ax.axis("off")
        axes[r, 0].set_title(f"{r + 1}. {hit['video']} {hit['start']:.1f}-{hit['end']:.1f}s  score {hit['score']:.3f}",
                             fontsize=7, loc="left")
    fig.suptitle(query, fontsize=9)
    return _save(fig, path)
