"""Benchmark datasets: one module per dataset, and the registry every caller goes through.

``DATASETS`` maps a dataset name to its module. Each module (``cholec80.py`` beside its protocol
``cholec80.json``, ...) holds everything that dataset needs and exposes the same surface:

- ``NAME``: its name (the registry key; its protocol file is ``<NAME>.json`` beside it).
- ``FOLDER``: its sub-folder of a data root (``surgclip eval --data-root``, the bundled sample);
  None when it has none.
- ``ALIASES``: other ``--benchmark`` names for it -> the load options they set (a centre, a layout).
- ``PREDICTION_NAMES``: ``{(benchmark name, task): dataset}`` of the SurgLaVi evaluation code's
  ``predictions_{dataset}.csv`` files.
- ``load(root, protocol, split, task, opts) -> FrameTable``: read a root in the released layout.
- ``write_sample(out, procedures)``: write a tiny copy of that layout under ``out`` from the
  sample's rendered procedures (``surgclip.sample.benchmarks``); None when it has none.

Shared code lives in ``table`` (FrameTable), ``parsing`` (label-file parsing), ``layout`` (load
options, split ids, frame sources), ``protocols`` (classes and prompts of a task) and ``pathcsv``
(frame-list CSVs that several datasets share).
"""
from __future__ import annotations

import json
from pathlib import Path
from types import ModuleType

from . import autolaparo, cholec80, cholect50, custom, grasp, heichole, multibypass140, sarrarp50, surglavi
from .layout import LoadOptions
from .protocols import PROTOCOL_DIR, default_task, read_protocol, task_spec
from .table import FrameTable

DATASETS: dict[str, ModuleType] = {
    "cholec80": cholec80,
    "autolaparo": autolaparo,
    "multibypass140": multibypass140,
    "grasp": grasp,
    "sarrarp50": sarrarp50,
    "cholect50": cholect50,
    "heichole": heichole,
    "surglavi": surglavi,
    "custom": custom,
}


def resolve(name: str) -> tuple[ModuleType, dict]:
    """(module, load options) of a dataset name or alias.

    Raises:
        ValueError naming every known name for an unknown one.
    """
    if name in DATASETS:
        return DATASETS[name], {}
    for module in DATASETS.values():
        if name in module.ALIASES:
            return module, dict(module.ALIASES[name])
    raise ValueError(f"unknown benchmark {name!r}; known: {benchmark_names()} (or a protocol JSON path)")


def benchmark_names() -> list[str]:
    """Every name ``--benchmark`` accepts: the datasets and their aliases (a protocol JSON path too)."""
    return sorted(list(DATASETS) + [alias for m in DATASETS.values() for alias in m.ALIASES])


def protocol_path(name: str) -> Path:
    """The protocol JSON of a benchmark name or alias, or a path to one."""
    path = Path(name)
    if path.suffix == ".json" and path.is_file():
        return path
    module, _ = resolve(name)
    path = PROTOCOL_DIR / f"{module.NAME}.json"
    if not path.is_file():
        raise ValueError(f"benchmark {name!r} has no protocol file; benchmarks with one: "
                         f"{sorted(p.stem for p in PROTOCOL_DIR.glob('*.json'))}")
    return path


def load_protocol(name: str) -> dict:
    """The protocol dict of a benchmark (classes, splits, fps, metric, prompts, layout)."""
    return read_protocol(protocol_path(name))


def load_benchmark(name: str, root, split: str = "test", task: str | None = None, protocol: dict | None = None,
                   **options) -> FrameTable:
    """Read a benchmark's dataset from ``root`` in its official layout.

    Args:
        name: a dataset name (``cholec80``, ``autolaparo``, ``multibypass140``, ``grasp``,
            ``sarrarp50``, ``cholect50``, ``heichole``, ``surglavi``), an alias (``cholec80-csv``,
            ``autolaparo-csv``, ``cholect50-txt``, ``strasbypass70``, ``bernbypass70``) or a
            protocol JSON path (read by the dataset its ``format`` names).
        root: dataset root laid out as released (the protocol's ``layout``).
        split: an official split name, ``all``, or a file of video ids.
        task: a task of the protocol (default: its first).
        protocol: a protocol dict to use instead of the dataset's own file.
        **options: ``LoadOptions`` fields (frames_fps, name_fps, label_fps, eval_fps, site, fold,
            splits, layout); None values are ignored, an alias's options are the defaults.
    Returns:
        FrameTable with ``sources`` for every video.
    """
    path = Path(name)
    if path.suffix == ".json" and path.is_file():
        protocol = protocol or read_protocol(path)
        fmt = protocol.get("format")
        if fmt not in DATASETS:
            raise ValueError(f"no dataset loader for format {fmt!r} of {name}; formats: {sorted(DATASETS)}")
        module, extra = DATASETS[fmt], {}
    else:
        module, extra = resolve(name)
        protocol = protocol or load_protocol(name)
    task = task or default_task(protocol)
    task_spec(protocol, task)
    opts = LoadOptions(**{**extra, **{k: v for k, v in options.items() if v is not None}})
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"dataset root {root} does not exist (benchmark {name}; layout: "
                                f"{json.dumps(protocol.get('layout', {}))})")
    table = module.load(root, protocol, split, task, opts)
    table.protocol_name = protocol["name"]
    return table


def data_folders() -> dict[str, str]:
    """Sub-folder of a data root per benchmark name and alias (``surgclip eval --data-root``; the
    bundled sample writes exactly these)."""
    return {name: m.FOLDER for m in DATASETS.values() if m.FOLDER
            for name in [m.NAME, *m.ALIASES]}


def prediction_names() -> dict[tuple[str, str], str]:
    """``{(benchmark name, task): dataset}`` of the official ``predictions_{dataset}.csv`` names."""
    return {key: value for m in DATASETS.values() for key, value in m.PREDICTION_NAMES.items()}


def sample_writers() -> dict[str, ModuleType]:
    """The datasets that write a sample: ``{folder: module}`` (``module.write_sample(out, procedures)``)."""
    return {m.FOLDER: m for m in DATASETS.values() if m.write_sample is not None}
