"""Reports: one JSON with every number, the protocol, the config and the weights fingerprint, plus a
Markdown page a person can read. Both are written atomically. ``write_report`` writes every report of
the package: the evaluators', the index's (``report.json``) and the training run's."""
from __future__ import annotations

import datetime
import math
from pathlib import Path

import numpy as np

from ..checkpoint import weights_hash
from ..utils import atomic_write_json, atomic_write_text


def checkpoint_hash(model_name_or_dir: str, model=None) -> str:
    """The weights fingerprint a report records: ``params-sha256:`` + ``checkpoint.weights_hash(model)``,
    the hash a clip index and the feature cache record as ``weights_hash``; ``unknown`` without a
    model. It depends on the weights alone, not on where they were loaded from
    (``model_name_or_dir``, a name or a ``save_pretrained`` folder)."""
    return "unknown" if model is None else "params-sha256:" + weights_hash(model)


def _clean(obj):
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, np.ndarray):
        return _clean(obj.tolist())
    return obj


def markdown_table(rows: list[dict], columns: list[str]) -> str:
    """A Markdown table of ``rows`` (floats with 4 decimals, missing values as '-')."""
    fmt = lambda v: f"{v:.4f}" if isinstance(v, float) else "-" if v is None else str(v)
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(fmt(r.get(c)) for c in columns) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def write_report(out_dir, kind: str, metrics: dict | None, protocol: dict | None = None, config: dict | None = None,
                 checkpoint: str | None = None, table_rows: list[dict] | None = None, columns: list[str] | None = None,
                 extra: dict | None = None, *, name: str | None = None, markdown: str | None = None) -> dict:
    """Write a report under ``out_dir``: ``<name>.json`` and ``<name>.md`` (``name``: ``kind``).

    The JSON is ``{"kind", "created", "protocol", "config", "checkpoint", "metrics", **extra}``
    (``checkpoint``: the weights fingerprint, ``checkpoint_hash``, or for a training run the path of
    its best checkpoint); NaN and infinities are written as null, numpy values as Python ones and
    anything else JSON cannot hold as its ``str``. The Markdown is ``markdown`` when given,
    else, with ``columns``, a page naming the model, its fingerprint, the protocol and the clip over
    a table of ``table_rows``; with neither, no Markdown is written.

    Returns:
        The JSON dict as written.
    """
    out, name = Path(out_dir), name or kind
    report = _clean({"kind": kind, "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                     "protocol": protocol, "config": config, "checkpoint": checkpoint, "metrics": metrics, **(extra or {})})
    atomic_write_json(out / f"{name}.json", report, default=str)
    if markdown is None and columns is not None:
        protocol, config = protocol or {}, config or {}
        proto = protocol.get("metric") or protocol.get("protocol") or ""
        markdown = (f"# {kind}: {config.get('benchmark', '')}\n\nModel `{config.get('model')}` ({checkpoint})\n\n"
                    f"Protocol: {proto}\n\nClip: {protocol.get('mode', '-')}, {protocol.get('num_frames', '-')} frames\n\n"
                    + markdown_table(_clean(table_rows or []), columns))
    if markdown is not None:
        atomic_write_text(out / f"{name}.md", markdown)
    return report
