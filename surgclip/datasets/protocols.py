"""Protocol files and what they say about a task: its classes, its prompts, its default.

A protocol file (``surgclip/datasets/<dataset>.json``, beside the dataset's module, shipped as
package data) holds, per task, the class list by id (as released), the official splits, the label
fps, the metric, the prompt sets (``names`` and a descriptive set at least) and the official layout
of the released dataset.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

from .parsing import read_text
from .table import FrameTable

PROTOCOL_DIR = Path(__file__).resolve().parent


def read_protocol(path_or_name) -> dict:
    """The protocol dict of a JSON file, or of a dataset's own file ``PROTOCOL_DIR/<name>.json``."""
    path = Path(path_or_name)
    if path.suffix != ".json":
        path = PROTOCOL_DIR / f"{path_or_name}.json"
    return json.loads(path.read_text())


def class_names(entries: list[dict]) -> list[str]:
    """Names indexed by id from ``[{id, name}]``; ids must be 0..C-1 without gaps."""
    by_id = {int(e["id"]): e["name"] for e in entries}
    if sorted(by_id) != list(range(len(by_id))):
        raise ValueError(f"class ids must be 0..{len(by_id) - 1}, found {sorted(by_id)}")
    return [by_id[i] for i in range(len(by_id))]


def default_task(protocol: dict) -> str:
    """The protocol's ``task``, else its first task, else ``phase``."""
    return protocol.get("task") or next(iter(protocol.get("tasks") or {"phase": None}))


def task_spec(protocol: dict, task: str | None) -> dict:
    """The ``tasks[task]`` entry (classes key, prompts key, multilabel, default prompt set).

    Raises:
        ValueError naming the tasks for a task the protocol lacks (SurgLaVi files name their own tasks).
    """
    task = task or default_task(protocol)
    tasks = protocol.get("tasks") or {task: {"classes": "classes", "prompts": "prompts"}}
    if task not in tasks and protocol.get("format") != "surglavi":
        raise ValueError(f"benchmark {protocol['name']} has no task {task!r}; tasks: {sorted(tasks)}")
    return tasks.get(task, {})


def task_classes(protocol: dict, task: str | None) -> list[str]:
    """Class names in id order of a task. Ids need not start at 0 (GraSP instruments are 1-7)."""
    entries = protocol[task_spec(protocol, task).get("classes", "classes")]
    ids = sorted(int(e["id"]) for e in entries)
    if ids != list(range(ids[0], ids[0] + len(ids))):
        raise ValueError(f"{protocol['name']}/{task}: class ids must be consecutive, found {ids}")
    by_id = {int(e["id"]): e["name"] for e in entries}
    return [by_id[i] for i in ids]


def get_prompts(protocol: dict, prompt_set: str | os.PathLike, classes: list[str], key: str = "prompts") -> list[str]:
    """Prompt sentences, one per class: a named set of the protocol, ``names``, or a text file (one
    per line, or ``class name<TAB>prompt`` lines matched by name).

    Raises:
        ValueError naming the classes that lack a prompt when there are fewer prompts than classes.
    """
    sets = protocol.get(key) or {}
    if str(prompt_set) in sets:
        prompts, where = sets[str(prompt_set)], f"prompt set {prompt_set!r} of {protocol.get('name')}"
    elif Path(prompt_set).is_file():
        lines = [l.strip() for l in read_text(prompt_set).splitlines() if l.strip()]
        where = str(prompt_set)
        if lines and all("\t" in l for l in lines):
            by_name = dict(l.split("\t", 1) for l in lines)
            prompts = [by_name[c] for c in classes if c in by_name]
            lacking = [c for c in classes if c not in by_name]
            if lacking:
                raise ValueError(f"{where}: no prompt for classes {lacking} (lines are 'class<TAB>prompt')")
        else:
            prompts = lines
    elif str(prompt_set) == "names":
        prompts, where = [c.replace("_", " ") for c in classes], "class names"
    else:
        raise ValueError(f"unknown prompt set {prompt_set!r}; named sets: {sorted(set(sets) | {'names'})} "
                         f"or a text file path")
    if len(prompts) < len(classes):
        lacking = [f"{i}:{c}" for i, c in enumerate(classes)][len(prompts):]
        raise ValueError(f"{where}: {len(prompts)} prompts for {len(classes)} classes; classes without a prompt "
                         f"(id:name): {lacking}; need one prompt per class in id order")
    if len(prompts) > len(classes):
        raise ValueError(f"{where}: {len(prompts)} prompts for {len(classes)} classes ({classes}); "
                         f"need one prompt per class in id order")
    return list(prompts)


def task_prompts(protocol: dict, task: str | None, prompt_set: str | None,
                 table: FrameTable | None = None) -> tuple[list[str], str]:
    """(prompts, set name) for a task; ``None`` = the task's default set. A table read from a file
    that carries its own prompts (SurgLaVi) offers those as ``names`` / ``descriptive``."""
    spec = task_spec(protocol, task)
    classes = table.classes if table is not None else task_classes(protocol, task)
    own = getattr(table, "prompt_sets", None)
    name = prompt_set or spec.get("default_prompts") or ("descriptive" if own else "names")
    if own and str(name) in own:
        return list(own[str(name)]), str(name)
    return get_prompts(protocol, name, classes, key=spec.get("prompts", "prompts")), str(name)
