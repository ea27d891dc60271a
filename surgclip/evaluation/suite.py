"""``surgclip eval --suite``: a whole results table from one command.

The built-in ``surglavi`` suite is the SurgLaVi results table: one cell per (benchmark, task), each
read from its dataset's sub-folder of ``--data-root`` (``surgclip.datasets.data_folders``). A user's
suite is a YAML file::

    name: my-table                 # optional
    entries:
      - benchmark: cholec80        # any --benchmark name
        task: phase                # optional (the benchmark's first task)
        root: /data/cholec80       # optional when --data-root is given: <data-root>/<folder of the benchmark>
        prompts: camma             # optional (the task's default set)
        split: test                # optional (test)
        column: Cholec80 phase     # optional header

An entry whose data are absent is skipped with the path that was missing; a malformed entry is an
error naming the entry. ``--model`` takes several models (``SurgCLIP-B,PeskaVLP,HecVL,SurgVLP,MedSigLIP,CLIP``):
the table has a row per model, laid out as the SurgLaVi README's (rows = models, columns = benchmarks).
Each model uses its authors' prompt sets where a task has them (``suite_prompt_set``) unless
``--prompts`` or the entry names one. The table is written as ``table.md``, ``table.csv`` and
``table.json``; each cell keeps its model, protocol, split, prompt set, frames per clip and the
checkpoint hash, and its own report folder; ``--published`` adds the SurgLaVi README's numbers under
each row, labelled as published.
"""
from __future__ import annotations

import csv
import io
import sys
import warnings
from pathlib import Path

from .. import datasets as D
from ..datasets.protocols import default_task, task_classes, task_spec
from ..factory import load as load_model
from ..utils import atomic_write_json, atomic_write_text
from . import reports
from .metrics import CONVENTIONS
from .predictions import read_predictions, score_predictions, score_triplet_predictions
from .runs import component_names, load_run_tables, parse_dataset_name, zero_shot_run

# The SurgLaVi results table, in its column order (the SurgLaVi evaluation code's test sets, HeiChole
# included), plus the SurgLaVi evaluation JSON.
SURGLAVI_SUITE = [
    {"column": "Cholec80 phase", "benchmark": "cholec80", "task": "phase", "split": "test"},
    {"column": "AutoLaparo", "benchmark": "autolaparo", "task": "phase", "split": "test"},
    {"column": "StrasBypass70", "benchmark": "strasbypass70", "task": "phase", "split": "test"},
    {"column": "BernBypass70", "benchmark": "bernbypass70", "task": "phase", "split": "test"},
    {"column": "GraSP phase", "benchmark": "grasp", "task": "phase", "split": "test"},
    {"column": "GraSP step", "benchmark": "grasp", "task": "step", "split": "test"},
    {"column": "SAR-RARP50 action", "benchmark": "sarrarp50", "task": "action", "split": "test"},
    {"column": "HeiChole phase", "benchmark": "heichole", "task": "phase", "split": "test"},
    {"column": "CholecT50 triplet", "benchmark": "cholect50", "task": "triplet", "split": "test"},
    {"column": "Cholec80 tool", "benchmark": "cholec80", "task": "tool", "split": "test"},
    {"column": "GraSP tool", "benchmark": "grasp", "task": "instrument", "split": "test"},
    {"column": "HeiChole tool", "benchmark": "heichole", "task": "instrument", "split": "test"},
    {"column": "SurgLaVi eval JSON", "benchmark": "surglavi", "task": "phase", "split": "all"},
]
ENTRY_KEYS = {"benchmark", "task", "root", "prompts", "split", "column"}


class SuiteError(ValueError):
    """A malformed suite file or entry (the message names the entry)."""


def load_suite(suite: str, data_root: str | None) -> tuple[str, list[dict]]:
    """(name, entries with ``root`` resolved) of ``surglavi`` or a YAML suite file.

    Raises:
        SuiteError naming the entry for an unknown key, benchmark or task, or a missing root.
    """
    if suite == "surglavi":
        name, entries = "surglavi", [dict(e) for e in SURGLAVI_SUITE]
        if not data_root:
            raise SuiteError("--suite surglavi needs --data-root (one sub-folder per benchmark)")
    else:
        import yaml

        path = Path(suite)
        if not path.is_file():
            raise FileNotFoundError(f"suite {suite!r} is neither 'surglavi' nor a YAML file")
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except (yaml.YAMLError, UnicodeDecodeError) as err:
            raise SuiteError(f"{path}: not valid YAML ({err})") from None
        if not isinstance(data, dict) or not isinstance(data.get("entries"), list) or not data["entries"]:
            raise SuiteError(f"{path}: expected a mapping with a non-empty 'entries' list")
        name, entries = str(data.get("name") or path.stem), data["entries"]
    out = []
    for i, entry in enumerate(entries):
        where = f"suite {name} entry {i + 1}"
        if not isinstance(entry, dict):
            raise SuiteError(f"{where}: expected a mapping with benchmark, task, root, prompts, split; found {entry!r}")
        unknown = set(entry) - ENTRY_KEYS
        if unknown:
            raise SuiteError(f"{where}: unknown keys {sorted(unknown)}; allowed: {sorted(ENTRY_KEYS)}")
        if not entry.get("benchmark"):
            raise SuiteError(f"{where}: 'benchmark' is required")
        bench = str(entry["benchmark"])
        try:
            protocol = D.load_protocol(bench)
            task = str(entry.get("task") or default_task(protocol))
            task_spec(protocol, task)
        except ValueError as err:
            raise SuiteError(f"{where} ({bench}): {err}") from None
        root = entry.get("root")
        if root is None:
            if not data_root:
                raise SuiteError(f"{where} ({bench}): no 'root' and no --data-root")
            root = Path(data_root) / D.data_folders().get(bench, bench)
        out.append({"column": str(entry.get("column") or f"{bench} {task}"), "benchmark": bench, "task": task,
                    "root": str(root), "prompts": entry.get("prompts"), "split": str(entry.get("split") or "test")})
    return name, out


def cell_value(m: dict, aggregate: str) -> dict:
    """The numbers a table cell shows: ``{"accuracy", "f1"}`` or ``{"mAP"}`` of the mean over videos
    (``aggregate="video"``) or of all frames pooled (``"global"``); CholecT50 shows the triplet (ivt) mAP."""
    pre = "global_" if aggregate == "global" else ""
    if "accuracy" in m:
        return {"accuracy": m[pre + "accuracy"], "f1": m[pre + "f1"]}
    return {"mAP": m[pre + "mAP"]}


def _cell_text(value: dict) -> str:
    if "mAP" in value:
        return f"{100 * value['mAP']:.1f}"
    return f"{100 * value['accuracy']:.1f} / {100 * value['f1']:.1f}"


KEEP = ("accuracy", "f1", "accuracy_std", "f1_std", "global_accuracy", "global_f1", "mAP", "mAP_std", "global_mAP")


def make_cell(entry: dict, metrics: dict, aggregate: str, **info) -> dict:
    """One table cell from a run's (or a rescored file's) metrics; the same for both paths."""
    keep = {k: metrics[k] for k in KEEP if k in metrics}
    for k in ("ivt", "i", "v", "t", "iv", "it"):
        if k in metrics:
            keep[k] = {"mAP": metrics[k]["mAP"], "global_mAP": metrics[k]["global_mAP"]}
    value = cell_value(metrics, aggregate)
    return {"column": entry["column"], "benchmark_name": entry["benchmark"], "task": entry["task"], **info,
            "convention": metrics.get("convention"), "aggregate": aggregate, "metrics": keep, "value": value,
            "text": _cell_text(value)}


def parse_models(text: str) -> list[tuple[str, str | None]]:
    """``--model`` -> [(name, weights or None)]: comma-separated names (``surgclip.available_models()``),
    ``save_pretrained`` folders or ``hf-hub:`` ids, each optionally ``NAME=WEIGHTS`` (a file or folder).

    Raises:
        SuiteError: naming an unknown model and listing the known ones, or a model named twice.
    """
    from ..factory import available_models

    out = []
    for item in (x.strip() for x in str(text).split(",")):
        if not item:
            continue
        name, _, weights = item.partition("=")
        name = name.strip()
        if name not in available_models() and not Path(name).is_dir() and not name.startswith(("hf-hub:", "local-dir:")):
            raise SuiteError(f"unknown model {name!r} in --model; known models: {', '.join(available_models())} "
                             f"(or a save_pretrained folder, hf-hub:org/repo; NAME=WEIGHTS to give a weights file)")
        if any(name == n for n, _ in out):
            raise SuiteError(f"model {name!r} is named twice in --model")
        out.append((name, weights.strip() or None))
    if not out:
        raise SuiteError("--model names no model")
    return out


def suite_prompt_set(model_name: str, protocol: dict, tables: dict, explicit: str | None) -> str | None:
    """The prompt set a cell uses: ``explicit`` (``--prompts`` or the entry's) if given, else the first
    of the model's authors' sets (``baselines.preferred_prompt_sets``: ``camma`` for CAMMA's models,
    ``surgclip`` for SurgCLIP-B) that every table of the run offers, else None (each task's default)."""
    if explicit:
        return explicit
    from ..baselines import preferred_prompt_sets

    for candidate in preferred_prompt_sets(model_name):
        offered = []
        for sub, table in tables.items():
            sets = protocol.get(task_spec(protocol, sub).get("prompts", "prompts")) or {}
            offered.append(candidate in sets or candidate in (getattr(table, "prompt_sets", None) or {}))
        if offered and all(offered):
            return candidate
    return None


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in text.lower())


def run_suite(args) -> int:
    """Run every entry whose data are present for every model of ``--model``; write one table with a
    row per model.

    A model whose files are absent (weights, vocabulary, a gated hub folder) keeps its row, which
    says what it needs; a model that fails to load or a cell that fails keeps its reason in the table;
    the other rows still run. Exit status: 1 if no cell ran, a cell or an entry's data failed, or a
    model failed to load for another reason than absent files; else 0.
    """
    name, entries = load_suite(args.suite, args.data_root)
    models = parse_models(args.model)
    out = Path(args.out)
    skipped, failed, ready = [], [], []
    for entry in entries:  # the data are read once, for every model
        split = args.split or entry["split"]
        root = Path(entry["root"])
        label = f"{entry['column']} ({entry['benchmark']}/{entry['task']}, split {split})"
        if not root.is_dir():
            skipped.append({**entry, "reason": f"missing {root}"})
            print(f"skipped {label}: missing {root}", file=sys.stderr)
            continue
        protocol = D.load_protocol(entry["benchmark"])

        def load(task, entry=entry, root=root, split=split):
            table = D.load_benchmark(entry["benchmark"], root, split=split, task=task, fold=args.fold, splits=args.splits)
            return table.limit_per_video(args.limit) if args.limit else table

        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                tables = load_run_tables(entry["benchmark"], protocol, entry["task"], load)
            for message in dict.fromkeys(str(w.message) for w in caught):
                print(f"note {label}: {message}", file=sys.stderr)
        except FileNotFoundError as err:
            skipped.append({**entry, "reason": str(err)})
            print(f"skipped {label}: {err}", file=sys.stderr)
            continue
        except ValueError as err:
            failed.append({**entry, "error": str(err)})
            print(f"error {label}: {err}", file=sys.stderr)
            continue
        ready.append((entry, split, root, protocol, tables))
    rows, load_failed = [], False
    for model_name, weights in models:
        row = {"model": model_name, "weights": weights, "checkpoint": None, "status": "ran", "reason": None,
               "cells": [], "failed": []}
        rows.append(row)
        if not ready:
            row.update(status="not run", reason="no benchmark data found")
            continue
        try:
            model, _, tokenizer = load_model(model_name, device=args.device, num_frames=args.num_frames,
                                             precision=getattr(args, "precision", "fp32"), pretrained=weights)
        except FileNotFoundError as err:  # absent weights / vocabulary / hub folder: the row says which
            row.update(status="needs files", reason=str(err))
            print(f"{model_name}: not run, needs files: {err}", file=sys.stderr)
            continue
        except Exception as err:  # a broken file or config fails this row only
            row.update(status="failed to load", reason=f"{type(err).__name__}: {err}")
            load_failed = True
            print(f"{model_name}: failed to load: {type(err).__name__}: {err}", file=sys.stderr)
            continue
        checkpoint = row["checkpoint"] = reports.checkpoint_hash(model_name, model)
        cells_dir = out / "cells" / (_slug(model_name) if len(models) > 1 else "")
        for entry, split, root, protocol, tables in ready:
            slug = _slug(entry["column"])
            label = f"{model_name} / {entry['column']}"
            prompts = suite_prompt_set(model.name, protocol, tables, args.prompts or entry["prompts"])
            try:  # an unknown set, one short of a prompt or a model error fails this cell only
                report = zero_shot_run(model, tokenizer, tables, protocol, entry["benchmark"], entry["task"], prompts,
                                       cells_dir / slug, convention=args.metrics, num_frames=args.num_frames,
                                       mode=args.mode, batch_size=args.batch_size, stride_s=args.stride_s,
                                       config={**entry, "split": split, "model": model_name, "weights": weights},
                                       checkpoint=checkpoint, plots=False)
            except (ValueError, RuntimeError) as err:
                row["failed"].append({**entry, "model": model_name, "error": str(err)})
                print(f"error {label}: {err}", file=sys.stderr)
                continue
            m, proto = report["metrics"], report["protocol"]
            if not m.get("num_scored"):
                error = f"no labelled frame could be scored (skipped: {report['skipped']})"
                row["failed"].append({**entry, "model": model_name, "error": error})
                print(f"error {label}: {error}", file=sys.stderr)
                continue
            split_info = report.get("split_info") or {}
            row["cells"].append(make_cell(
                entry, m, args.aggregate, model=model_name, benchmark=protocol["name"], split=split,
                fold=split_info.get("fold"), prompt_set=proto["prompt_set"], mode=proto.get("mode", args.mode),
                num_frames=proto["num_frames"], checkpoint=checkpoint, root=str(root), frames_scored=m["num_scored"],
                frames_skipped=report["skipped"],
                predictions=[str(cells_dir / slug / f) for f in report["predictions"]], report=str(cells_dir / slug)))
            fold = f", fold {split_info['fold']}" if split_info.get("fold") is not None else ""
            print(f"{label}: {row['cells'][-1]['text']}  ({m['num_scored']} frames, prompts {proto['prompt_set']}, "
                  f"split {split}{fold}, {proto['num_frames']} frame(s) per clip)")
        del model
    write_table(out, name, rows, entries, skipped, failed, args.metrics, args.aggregate,
                published=getattr(args, "published", False))
    ran = sum(len(r["cells"]) for r in rows)
    cell_failures = sum(len(r["failed"]) for r in rows)
    print(f"ran {ran} cells for {len(rows)} model(s) over {len(entries)} entries, skipped {len(skipped)}, "
          f"failed {len(failed) + cell_failures}; table: {out}/table.md")
    if not ran:
        print("error: no cell ran (no benchmark data found under the roots above, or no model could be loaded)",
              file=sys.stderr)
        return 1
    return 1 if failed or cell_failures or load_failed else 0


def rescore_predictions(args) -> int:
    """``surgclip eval --from-predictions DIR``: score every ``predictions_*.csv`` under DIR (ours or
    the SurgLaVi code's) into the same table as a run, under ``--metrics``."""
    folder = Path(args.from_predictions)
    files = sorted(folder.rglob("predictions_*.csv")) if folder.is_dir() else []
    if not files:
        raise FileNotFoundError(f"no predictions_*.csv files under {folder}")
    groups: dict[tuple, dict] = {}
    for path in files:
        bench, task, sub = parse_dataset_name(path.stem)
        group = groups.setdefault((bench, task), {})
        if sub in group:
            raise ValueError(f"two prediction files for {bench or task}/{sub}: {group[sub]} and {path}")
        group[sub] = path
    known = {(e["benchmark"], e["task"]): e for e in SURGLAVI_SUITE}
    order = [k for k in known if k in groups] + [k for k in groups if k not in known]
    entries, cells = [], []
    for bench, task in order:
        entry = known.get((bench, task)) or {"column": task, "benchmark": bench or task, "task": task}
        protocol = D.load_protocol(bench) if bench else None
        classes = lambda sub: len(task_classes(protocol, sub)) if protocol and protocol.get("tasks") else None
        preds = {sub: read_predictions(path, classes(sub)) for sub, path in groups[(bench, task)].items()}
        if bench == "cholect50":
            m = score_triplet_predictions(preds, task_classes(protocol, "triplet"), component_names(protocol),
                                          args.metrics, where=str(folder))
        else:
            m = score_predictions(preds[task], args.metrics)
        m["num_scored"] = len(next(iter(preds.values())).video)
        entries.append(entry)
        cells.append(make_cell(entry, m, args.aggregate, benchmark=bench, frames_scored=m["num_scored"],
                               predictions=[str(p) for p in groups[(bench, task)].values()]))
        print(f"{entry['column']}: {cells[-1]['text']}  ({m['num_scored']} frames, from {len(preds)} file(s))")
    rows = [{"model": "from predictions", "weights": None, "checkpoint": None, "status": "ran", "reason": None,
             "cells": cells, "failed": []}]
    write_table(Path(args.out), f"predictions in {folder}", rows, entries, [], [], args.metrics, args.aggregate)
    print(f"rescored {len(cells)} datasets; table: {args.out}/table.md")
    return 0


def _header(entry: dict, aggregate: str) -> str:
    multi = entry["task"] in ("tool", "instrument", "triplet", "verb", "target")
    what = ("ivt mAP" if entry["task"] == "triplet" else "mAP") if multi else "Acc / F1"
    return f"{entry['column']} {what} ({'video mean' if aggregate == 'video' else 'global'})"


def published_rows() -> dict:
    """The SurgLaVi README's published zero-shot numbers (``baselines/surglavi_published.json``):
    ``{"source", "note", "rows": {model: {column: text}}}``."""
    import json

    return json.loads((Path(__file__).parent.parent / "baselines" / "surglavi_published.json").read_text())


def write_table(out: Path, name: str, rows: list[dict], entries, skipped, failed, convention: str, aggregate: str,
                published: bool = False) -> None:
    """``table.md`` (a row per model, cells per ``aggregate``; with ``published`` the SurgLaVi README's
    numbers under each row, labelled as published), ``table.csv`` and ``table.json`` (both aggregations,
    every row's checkpoint hash, status and, for a row that did not run, what it needs)."""
    shown = "mean over videos" if aggregate == "video" else "all frames pooled (global)"
    headers = ["Model"] + [_header(e, aggregate) for e in entries]
    pub = published_rows() if published else None
    if len(rows) == 1:
        title = f"# Suite {name}: zero-shot, model `{rows[0]['model']}` ({rows[0]['checkpoint']})"
    else:
        names = ", ".join(f"`{r['model']}`" for r in rows)
        title = f"# Suite {name}: zero-shot, models {names}"
    md = [title, "", "| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    for r in rows:
        by_column = {c["column"]: c for c in r["cells"]}
        if r["status"] == "ran":
            values = [by_column[e["column"]]["text"] if e["column"] in by_column else "-" for e in entries]
        else:
            values = [r["status"]] + ["-"] * (len(entries) - 1)
        md.append("| " + " | ".join([r["model"]] + values) + " |")
        theirs = pub["rows"].get(r["model"]) if pub is not None else None
        if theirs:  # models the README publishes numbers for
            md.append("| " + " | ".join([f"{r['model']} (published)"] + [theirs.get(e["column"], "n/a") for e in entries])
                      + " |")
    md += ["", f"Values in %. Metric convention `{convention}`: {CONVENTIONS[convention]}.", "",
           f"Each cell shows the {shown}; table.csv and table.json hold both."]
    if pub is not None:
        md += ["", f"Rows marked (published): numbers published in the {pub['source']}, not computed here; "
                   f"{pub['note']}."]
    md += ["", "Per model and cell:", ""]
    for r in rows:
        if r["status"] != "ran":
            md.append(f"- {r['model']}: {r['status'].upper()}: {r['reason']}")
            continue
        frames = sorted({c["num_frames"] for c in r["cells"] if c.get("num_frames")})
        md.append(f"- {r['model']} (weights {r['checkpoint']}; {', '.join(map(str, frames)) or '-'} frame(s) per clip"
                  f"{', mean of the frames’ unit embeddings' if frames and frames != [1] else ''}):")
        for c in r["cells"]:
            where = f", split {c['split']}" if c.get("split") else ""
            where += f", fold {c['fold']}" if c.get("fold") is not None else ""
            md.append(f"  - {c['column']}: {c['benchmark_name']}/{c['task']}{where}, prompts {c.get('prompt_set', '-')}, "
                      f"{c['frames_scored']} frames")
        for f in r["failed"]:
            md.append(f"  - {f['column']}: FAILED ({f['error']})")
    for s in skipped:
        md.append(f"- {s['column']}: skipped ({s['reason']})")
    for f in failed:
        md.append(f"- {f['column']}: FAILED ({f['error']})")
    atomic_write_text(out / "table.md", "\n".join(md) + "\n")
    buf = io.StringIO()
    writer = csv.writer(buf)
    cols = ["model", "column", "benchmark", "task", "split", "fold", "prompt_set", "convention", "shown", "accuracy",
            "f1", "global_accuracy", "global_f1", "mAP", "global_mAP", "frames", "num_frames", "checkpoint"]
    writer.writerow(cols)
    for r in rows:
        for c in r["cells"]:
            m = c["metrics"]
            writer.writerow([r["model"], c["column"], c["benchmark_name"], c["task"], c.get("split", ""),
                             c.get("fold", ""), c.get("prompt_set", ""), c["convention"], aggregate]
                            + [m.get(k, "") for k in ("accuracy", "f1", "global_accuracy", "global_f1", "mAP",
                                                      "global_mAP")]
                            + [c["frames_scored"], c.get("num_frames", ""), c.get("checkpoint", "")])
    atomic_write_text(out / "table.csv", buf.getvalue())
    first = rows[0] if rows else {"model": None, "checkpoint": None}
    atomic_write_json(out / "table.json", {
        "suite": name, "model": first["model"], "checkpoint": first["checkpoint"], "models": [r["model"] for r in rows],
        "convention": convention, "convention_text": CONVENTIONS[convention], "aggregate": aggregate,
        "columns": [e["column"] for e in entries], "rows": rows, "cells": [c for r in rows for c in r["cells"]],
        "skipped": skipped, "failed": failed + [f for r in rows for f in r["failed"]],
        "published": pub})
