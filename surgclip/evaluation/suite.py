"""``surgclip eval --suite``: a whole results table from one command.

The built-in ``surglavi`` suite is the SurgLaVi results table: one cell per (benchmark, task), each
read from a fixed sub-folder of ``--data-root`` (``SURGLAVI_FOLDERS``). A user's suite is a YAML file::

    name: my-table                 # optional
    entries:
      - benchmark: cholec80        # any --benchmark name
        task: phase                # optional (the benchmark's first task)
        root: /data/cholec80       # optional when --data-root is given: <data-root>/<folder of the benchmark>
        prompts: camma             # optional (the task's default set)
        split: test                # optional (test)
        column: Cholec80 phase     # optional header

An entry whose data are absent is skipped with the path that was missing; a malformed entry is an
error naming the entry. The table is written as ``table.md``, ``table.csv`` and ``table.json``; each
cell keeps its protocol, split, prompt set and the checkpoint hash, and its own report folder.
"""
from __future__ import annotations

import csv
import io
import sys
import warnings
from pathlib import Path

from ..utils import atomic_write_json, atomic_write_text

# Sub-folder of --data-root per benchmark (the bundled sample writes exactly these).
SURGLAVI_FOLDERS = {"cholec80": "cholec80", "autolaparo": "autolaparo", "strasbypass70": "multibypass140",
                    "bernbypass70": "multibypass140", "multibypass140": "multibypass140", "grasp": "grasp",
                    "sarrarp50": "sarrarp50", "cholect50": "cholect50", "cholect50-txt": "cholect50",
                    "surglavi": "surglavi", "cholec80-csv": "cholec80", "autolaparo-csv": "autolaparo"}

# The SurgLaVi results table, in its column order (plus the SurgLaVi evaluation JSON).
SURGLAVI_SUITE = [
    {"column": "Cholec80 phase", "benchmark": "cholec80", "task": "phase", "split": "test"},
    {"column": "AutoLaparo", "benchmark": "autolaparo", "task": "phase", "split": "test"},
    # No official Strasbourg test list is readable without unpickling (see the protocol's splits_note).
    {"column": "StrasBypass70", "benchmark": "strasbypass70", "task": "phase", "split": "all"},
    {"column": "BernBypass70", "benchmark": "bernbypass70", "task": "phase", "split": "test"},
    {"column": "GraSP phase", "benchmark": "grasp", "task": "phase", "split": "test"},
    {"column": "GraSP step", "benchmark": "grasp", "task": "step", "split": "test"},
    {"column": "SAR-RARP50 action", "benchmark": "sarrarp50", "task": "action", "split": "test"},
    {"column": "CholecT50 triplet", "benchmark": "cholect50", "task": "triplet", "split": "test"},
    {"column": "Cholec80 tool", "benchmark": "cholec80", "task": "tool", "split": "test"},
    {"column": "GraSP tool", "benchmark": "grasp", "task": "instrument", "split": "test"},
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
    from . import benchmarks as B

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
            protocol = B.load_protocol(bench)
            task = str(entry.get("task") or B.default_task(protocol))
            B.task_spec(protocol, task)
        except ValueError as err:
            raise SuiteError(f"{where} ({bench}): {err}") from None
        root = entry.get("root")
        if root is None:
            if not data_root:
                raise SuiteError(f"{where} ({bench}): no 'root' and no --data-root")
            root = Path(data_root) / SURGLAVI_FOLDERS.get(bench, bench)
        out.append({"column": str(entry.get("column") or f"{bench} {task}"), "benchmark": bench, "task": task,
                    "root": str(root), "prompts": entry.get("prompts"), "split": str(entry.get("split") or "test")})
    return name, out


def _cell_text(m: dict) -> str:
    if "mAP" in m:
        return f"{100 * m['mAP']:.1f}"
    return f"{100 * m['accuracy']:.1f} / {100 * m['f1']:.1f}"


def run_suite(args) -> int:
    """Run every entry whose data are present; write the table; non-zero exit if nothing ran or a
    cell failed on bad data."""
    import surgclip

    from . import benchmarks as B
    from . import reports
    from .cli import limit_rows
    from .zeroshot import evaluate_zero_shot

    name, entries = load_suite(args.suite, args.data_root)
    out = Path(args.out)
    model = tokenizer = checkpoint = None
    cells, skipped, failed = [], [], []
    for entry in entries:
        split = args.split or entry["split"]
        root = Path(entry["root"])
        label = f"{entry['column']} ({entry['benchmark']}/{entry['task']}, split {split})"
        if not root.is_dir():
            skipped.append({**entry, "reason": f"missing {root}"})
            print(f"skipped {label}: missing {root}", file=sys.stderr)
            continue
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                table = B.load_benchmark(entry["benchmark"], root, split=split, task=entry["task"])
            for w in caught:
                print(f"note {label}: {w.message}", file=sys.stderr)
        except FileNotFoundError as err:
            skipped.append({**entry, "reason": str(err)})
            print(f"skipped {label}: {err}", file=sys.stderr)
            continue
        except ValueError as err:
            failed.append({**entry, "error": str(err)})
            print(f"error {label}: {err}", file=sys.stderr)
            continue
        if args.limit:
            table = limit_rows(table, args.limit)
        protocol = B.load_protocol(entry["benchmark"])
        try:  # an unknown set or one short of a prompt fails this cell only; the table is still written
            prompts, set_name = B.task_prompts(protocol, entry["task"], args.prompts or entry["prompts"], table)
        except ValueError as err:
            failed.append({**entry, "error": str(err)})
            print(f"error {label}: {err}", file=sys.stderr)
            continue
        if model is None:
            model, _, tokenizer = surgclip.load(args.model, device=args.device, num_frames=args.num_frames,
                                                 precision=getattr(args, "precision", "fp32"))
            checkpoint = reports.checkpoint_hash(args.model, model)
        result = evaluate_zero_shot(model, tokenizer, table, prompts, num_frames=args.num_frames, mode=args.mode,
                                    batch_size=args.batch_size, stride_s=args.stride_s)
        m = result.metrics
        metric = B.task_spec(protocol, entry["task"]).get("metric", protocol.get("metric"))
        result.protocol.update(benchmark=protocol["name"], task=entry["task"], split=split, prompt_set=set_name,
                               benchmark_metric=metric)
        slug = "".join(c if c.isalnum() else "_" for c in entry["column"].lower())
        reports.write_report(out / "cells" / slug, "zeroshot", m, result.protocol, {**entry, "split": split,
                             "model": args.model}, checkpoint, [{k: m.get(k) for k in ("accuracy", "f1", "mAP", "num_scored")}],
                             ["accuracy", "f1", "mAP", "num_scored"], extra={"skipped": result.skipped})
        if not m.get("num_scored"):
            failed.append({**entry, "error": f"no labelled frame could be scored (skipped: {result.skipped})"})
            print(f"error {label}: no labelled frame could be scored ({result.skipped})", file=sys.stderr)
            continue
        keep = {k: m[k] for k in ("accuracy", "f1", "accuracy_std", "f1_std", "global_accuracy", "global_f1", "mAP")
                if k in m}
        cells.append({"column": entry["column"], "benchmark": protocol["name"], "benchmark_name": entry["benchmark"],
                      "task": entry["task"], "split": split, "prompt_set": set_name, "protocol": metric,
                      "mode": args.mode, "num_frames": result.protocol["num_frames"], "checkpoint": checkpoint,
                      "root": str(root), "frames_scored": m["num_scored"], "frames_skipped": result.skipped,
                      "metrics": keep, "text": _cell_text(m), "report": str(out / "cells" / slug)})
        print(f"{entry['column']}: {cells[-1]['text']}  ({m['num_scored']} frames, prompts {set_name}, split {split})")
    _write_table(out, name, args.model, checkpoint, entries, cells, skipped, failed)
    print(f"ran {len(cells)} of {len(entries)} cells, skipped {len(skipped)}, failed {len(failed)}; table: {out}/table.md")
    if not cells:
        print("error: no cell ran (no benchmark data found under the roots above)", file=sys.stderr)
        return 1
    return 1 if failed else 0


def _write_table(out: Path, name: str, model: str, checkpoint, entries, cells, skipped, failed) -> None:
    by_column = {c["column"]: c for c in cells}
    headers = ["Model"] + [e["column"] + (" mAP" if e["task"] in ("tool", "instrument", "triplet", "verb", "target")
                                           else " Acc / F1") for e in entries]
    row = [model] + [by_column[e["column"]]["text"] if e["column"] in by_column else "-" for e in entries]
    md = [f"# Suite {name}: zero-shot, model `{model}` ({checkpoint})", "",
          "| " + " | ".join(headers) + " |", "|" + "---|" * len(headers), "| " + " | ".join(row) + " |", "",
          "Values in %. Per cell: benchmark/task, split, prompt set, protocol:", ""]
    for c in cells:
        md.append(f"- {c['column']}: {c['benchmark_name']}/{c['task']}, split {c['split']}, prompts {c['prompt_set']}, "
                  f"{c['frames_scored']} frames; {c['protocol']}")
    for s in skipped:
        md.append(f"- {s['column']}: skipped ({s['reason']})")
    for f in failed:
        md.append(f"- {f['column']}: FAILED ({f['error']})")
    atomic_write_text(out / "table.md", "\n".join(md) + "\n")
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(["column", "benchmark", "task", "split", "prompt_set", "accuracy", "f1", "mAP", "frames",
                     "checkpoint", "protocol"])
    for c in cells:
        m = c["metrics"]
        writer.writerow([c["column"], c["benchmark_name"], c["task"], c["split"], c["prompt_set"], m.get("accuracy", ""),
                         m.get("f1", ""), m.get("mAP", ""), c["frames_scored"], c["checkpoint"], c["protocol"]])
    atomic_write_text(out / "table.csv", buf.getvalue())
    atomic_write_json(out / "table.json", {"suite": name, "model": model, "checkpoint": checkpoint,
                                           "columns": [e["column"] for e in entries], "cells": cells,
                                           "skipped": skipped, "failed": failed})
