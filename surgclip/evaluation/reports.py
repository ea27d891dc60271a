"""Reports: one JSON with every number, the protocol, the config and the checkpoint hash, plus a
Markdown table a person can paste. Both are written atomically."""
from __future__ import annotations

import datetime
import hashlib
import math
from pathlib import Path

import numpy as np

from ..utils import atomic_write_json, atomic_write_text, sha256_file


def checkpoint_hash(model_name_or_dir: str, model=None) -> str:
    """SHA-256 of a saved checkpoint's weights file, else of the model's parameters (random weights)."""
    weights = Path(str(model_name_or_dir)) / "model.safetensors"
    if weights.is_file():
        return "sha256:" + sha256_file(weights)
    if model is None:
        return "unknown"
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().float().numpy().tobytes())
    return "params-sha256:" + digest.hexdigest()


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


def write_report(out_dir, kind: str, metrics: dict, protocol: dict, config: dict, checkpoint: str,
                 table_rows: list[dict], columns: list[str], extra: dict | None = None) -> dict:
    """Write ``<kind>.json`` and ``<kind>.md`` under ``out_dir``; returns the JSON dict."""
    out = Path(out_dir)
    report = _clean({"kind": kind, "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                     "protocol": protocol, "config": config, "checkpoint": checkpoint, "metrics": metrics, **(extra or {})})
    atomic_write_json(out / f"{kind}.json", report)
    proto = protocol.get("metric") or protocol.get("protocol") or ""
    md = (f"# {kind}: {config.get('benchmark', '')}\n\nModel `{config.get('model')}` ({checkpoint})\n\n"
          f"Protocol: {proto}\n\nClip: {protocol.get('mode', '-')}, {protocol.get('num_frames', '-')} frames\n\n"
          + markdown_table(_clean(table_rows), columns))
    atomic_write_text(out / f"{kind}.md", md)
    return report
