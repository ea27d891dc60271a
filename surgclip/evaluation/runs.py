"""One zero-shot run of one (benchmark, task): what ``surgclip zeroshot`` does and what each cell
of ``surgclip eval --suite`` does, through the same function.

A run scores the labelled frames, writes ``predictions_{dataset}.csv`` (the SurgLaVi evaluation
code's layout, ``predictions.py``) and a report (``zeroshot.json`` / ``zeroshot.md``), and returns
the report. CholecT50's triplet task is scored as the SurgLaVi code scores it: its four sub-tasks
(triplet, instrument, verb, target) each with its own prompts on one set of clip embeddings.
"""
from __future__ import annotations

from pathlib import Path

from ..datasets import prediction_names
from ..datasets.protocols import task_classes, task_prompts, task_spec
from ..datasets.table import FrameTable
from . import metrics as M
from . import reports
from .predictions import write_predictions
from .zeroshot import evaluate_triplets, evaluate_zero_shot

TRIPLET_TASKS = ("triplet", "instrument", "verb", "target")


def dataset_name(benchmark: str, task: str) -> str:
    """The ``{dataset}`` of ``predictions_{dataset}.csv`` for a benchmark name and task: the SurgLaVi
    evaluation code's name where the dataset's module gives one (``PREDICTION_NAMES``), else
    ``{benchmark}_{task}``."""
    return prediction_names().get((benchmark, task), f"{benchmark}_{task}")


def parse_dataset_name(stem: str) -> tuple[str | None, str, str]:
    """``predictions_<...>`` file stem -> (benchmark, task, sub-task) where known.

    ``predictions_triplet_cholect50`` -> (cholect50, triplet, triplet); ``predictions_grasp_steps``
    -> (grasp, step, step); an unknown name -> (None, name, name). A ``_test`` suffix is ignored.
    """
    name = stem[len("predictions_"):] if stem.startswith("predictions_") else stem
    name = name[:-len("_test")] if name.endswith("_test") else name
    for sub in TRIPLET_TASKS:
        if name == f"{sub}_cholect50":
            return "cholect50", "triplet", sub
    reverse = {v: k for k, v in prediction_names().items()}
    if name in reverse:
        bench, task = reverse[name]
        return bench, task, task
    return None, name, name


def is_triplet_run(benchmark: str, protocol: dict, task: str) -> bool:
    return protocol.get("name") == "cholect50" and task == "triplet"


def component_names(protocol: dict) -> dict:
    """CholecT50's ``{"i", "v", "t"}`` class names in id order (to derive the iv / it pairs)."""
    return {"i": task_classes(protocol, "instrument"), "v": task_classes(protocol, "verb"),
            "t": task_classes(protocol, "target")}


def load_run_tables(benchmark: str, protocol: dict, task: str, load) -> dict[str, FrameTable]:
    """The tables a run scores: ``{task: table}``, or CholecT50's four sub-tasks for ``triplet``.

    Args:
        load: ``load(task) -> FrameTable`` (the caller's loader with its root, split and options).
    """
    if is_triplet_run(benchmark, protocol, task):
        return {sub: load(sub) for sub in TRIPLET_TASKS}
    return {task: load(task)}


def zero_shot_run(model, tokenizer, tables: dict[str, FrameTable], protocol: dict, benchmark: str, task: str,
                  prompt_set: str | None, out, *, convention: str = M.DEFAULT_CONVENTION, num_frames=None,
                  mode: str = "centered", batch_size: int = 8, stride_s: float = 1.0, progress: bool = False,
                  config: dict | None = None, checkpoint: str = "unknown", plots: bool = True) -> dict:
    """Score ``tables`` zero-shot, write the predictions and the report under ``out``.

    Args:
        tables: from ``load_run_tables``.
        protocol: the benchmark's protocol dict (``{"name": "custom", ...}`` for a user's dataset).
        benchmark, task: the names the user gave (they name the predictions file).
        prompt_set: a prompt set name or file, None = each task's default.
        convention: metric convention (``metrics.CONVENTIONS``).
    Returns:
        the report dict (``metrics``, ``protocol``, ``skipped``, ``predictions`` file names).
    Raises:
        ValueError for a prompt set that does not fit the classes.
    """
    out = Path(out)
    prompts, set_names = {}, {}
    for sub, table in tables.items():
        prompts[sub], set_names[sub] = task_prompts(protocol, sub, prompt_set, table)
    kwargs = dict(num_frames=num_frames, mode=mode, batch_size=batch_size, stride_s=stride_s, progress=progress,
                  convention=convention)
    name = dataset_name(benchmark, task)
    if len(tables) > 1:
        results = evaluate_triplets(model, tokenizer, tables, prompts, component_names(protocol), **kwargs)
        files = {sub: out / f"predictions_{sub}_{name}.csv" for sub in tables}
    else:
        results = {task: evaluate_zero_shot(model, tokenizer, tables[task], prompts[task], **kwargs)}
        files = {task: out / f"predictions_{name}.csv"}
    for sub, res in results.items():
        t, v = tables[sub], res.valid
        truth = t.targets if t.multilabel else t.labels
        write_predictions(files[sub], t.video[v], t.frame[v], res.scores[v], truth[v], t.time_s[v])
    main = results[task]
    m = main.metrics
    protocol_out = {**main.protocol, "benchmark": protocol.get("name"), "task": task,
                    "prompt_set": set_names[task], "dataset": name,
                    "benchmark_metric": task_spec(protocol, task).get("metric", protocol.get("metric"))}
    if len(tables) > 1:
        protocol_out["sub_tasks"] = {sub: {"prompt_set": set_names[sub], "prompts": prompts[sub]} for sub in tables}
    rows, cols = report_rows(m, tables[task].multilabel)
    report = reports.write_report(out, "zeroshot", m, protocol_out, config or {}, checkpoint, rows, cols,
                                  extra={"skipped": main.skipped, "split_info": getattr(tables[task], "split_info", {}),
                                         "predictions": [p.name for p in files.values()]})
    table = tables[task]
    if plots and not table.multilabel and main.valid.any():
        _plots(out, table, main)
    return report


def report_rows(m: dict, multilabel: bool) -> tuple[list[dict], list[str]]:
    """Rows and columns of a zero-shot report's Markdown table: every video, then the mean over
    videos and all frames pooled ("global")."""
    if "ivt" in m:
        rows = [{"component": k, "mAP (video-wise)": m[k]["mAP"], "mAP (global)": m[k]["global_mAP"]}
                for k in ("ivt", "i", "v", "t", "iv", "it") if k in m]
        return rows, ["component", "mAP (video-wise)", "mAP (global)"]
    if multilabel:
        rows = [{"video": v, "mAP": x} for v, x in m.get("per_video_mAP", {}).items()]
        rows += [{"video": "mean over videos", "mAP": m.get("mAP")}, {"video": "global", "mAP": m.get("global_mAP")}]
        return rows, ["video", "mAP"]
    rows = [{"video": v, "frames": r["n"], "accuracy": r["accuracy"], "f1": r["f1"]}
            for v, r in m.get("per_video", {}).items()]
    rows.append({"video": "mean over videos", "frames": m.get("num_scored"), "accuracy": m.get("accuracy"),
                 "f1": m.get("f1")})
    rows.append({"video": "global", "frames": m.get("num_scored"), "accuracy": m.get("global_accuracy"),
                 "f1": m.get("global_f1")})
    return rows, ["video", "frames", "accuracy", "f1"]


def _plots(out: Path, table: FrameTable, result) -> None:
    from . import plots

    v = result.valid
    vids = list(dict.fromkeys(table.video[v].tolist()))
    truth = {x: table.labels[v][table.video[v] == x] for x in vids}
    pred = {x: result.pred[v][table.video[v] == x] for x in vids}
    plots.phase_ribbons(out / "phase_ribbons.png", vids, truth, pred, table.classes)
    plots.confusion_plot(out / "confusion.png", M.confusion_matrix(table.labels[v], result.pred[v], len(table.classes)),
                         table.classes)


def summary_line(what: str, name: str, m: dict) -> str:
    """One line of the headline numbers (both aggregations)."""
    if "ivt" in m:
        parts = ", ".join(f"{k} {m[k]['mAP']:.4f}" for k in ("ivt", "i", "v", "t", "iv", "it") if k in m)
        return f"{what} {name}: video-wise mAP {parts} over {m['num_scored']} frames"
    if "accuracy" in m:
        return (f"{what} {name}: accuracy {m['accuracy']:.4f}, F1 {m['f1']:.4f} (mean over videos); "
                f"global accuracy {m['global_accuracy']:.4f}, F1 {m['global_f1']:.4f} over {m['num_scored']} frames")
    if "mAP" in m:
        return (f"{what} {name}: mAP {m['mAP']:.4f} (mean over videos), global mAP {m['global_mAP']:.4f} "
                f"over {m['num_scored']} frames")
    return f"{what} {name}: no frame scored"
