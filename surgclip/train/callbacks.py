"""Callbacks and plugins: atomic checkpoint writes, export of the best checkpoint to the ``load``
format, and the end-of-run report (JSON + Markdown + loss curve)."""
from __future__ import annotations

import csv
import math
import os
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO

from ..checkpoint import save_pretrained
from ..evaluation.reports import write_report
from ..utils import atomic_path


class AtomicCheckpointIO(TorchCheckpointIO):
    """Writes each checkpoint to a temp file beside it and renames it into place, so an interrupted
    save never leaves a truncated ``.ckpt`` (and never replaces a good one with it); reads them with
    ``weights_only=True`` whatever the caller asks, so resuming never unpickles code."""

    def save_checkpoint(self, checkpoint, path, storage_options=None) -> None:
        with atomic_path(path) as tmp:
            torch.save(checkpoint, tmp)

    def load_checkpoint(self, path, map_location=None, weights_only=None):
        return super().load_checkpoint(path, map_location=map_location, weights_only=True)


def best_checkpoint(trainer: L.Trainer) -> str | None:
    cb = trainer.checkpoint_callback
    if cb is None:
        return None
    return cb.best_model_path or cb.last_model_path or None


def export_best(trainer: L.Trainer, module: L.LightningModule, out_dir: str | os.PathLike) -> tuple[Path, int, dict]:
    """Load the best checkpoint's weights into ``module.model`` and write it with ``save_pretrained``.

    Returns (the directory, the global step the exported weights were saved at, the validation
    record saved with them: ``{"step", "metrics", ...}`` or {}).
    """
    path, step, saved = best_checkpoint(trainer), int(trainer.global_step), {}
    if path and Path(path).is_file():
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
        module.load_state_dict(ckpt["state_dict"])
        step = int(ckpt.get("global_step", step))
        saved = ckpt.get("surgclip_val") or {}
    out = save_pretrained(module.model, out_dir, extra={"source_checkpoint": str(path or "final weights"),
                                                        "global_step": step})
    return out, step, saved


class ExportAndReport(L.Callback):
    """At the end of ``fit``: export the best checkpoint to ``{log_dir}/model`` (``surgclip.load``
    format), print the held-out numbers of those weights next to chance, and write ``report.json``,
    ``report.md`` and ``loss_curve.png`` to the log dir.

    The numbers come from the validation the checkpoint was saved after (kept in the checkpoint);
    only weights that were never validated are validated again, in one process on rank 0. Every rank
    enters this hook; rank 0 alone writes, and no collective runs after the ranks part.

    Args:
        export: write the ``load``-format model directory.
        report: evaluate and write the report.
    """

    def __init__(self, export: bool = True, report: bool = True):
        self.export, self.report = export, report

    def on_fit_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        if trainer.fast_dev_run:
            return
        # log_dir broadcasts rank 0's directory: every rank must ask for it, before they part
        run_dir = Path(trainer.log_dir or trainer.default_root_dir)
        if not trainer.is_global_zero:
            return
        model_dir, step, saved = export_best(trainer, module, run_dir / "model") if self.export else (None, None, {})
        if not self.report:
            return
        metrics = dict(module.last_val_metrics)
        if step is not None and saved.get("step") == step and saved.get("metrics"):
            metrics = dict(saved["metrics"])
        dm = trainer.datamodule
        scored = metrics and step is not None and (step == module.last_val_step or saved.get("step") == step)
        if dm is not None and not scored:  # re-score the exported (best) weights on the held-out data
            single = L.Trainer(accelerator="cpu" if module.device.type == "cpu" else "auto", devices=1, logger=False,
                               enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)
            single.validate(module, datamodule=dm, verbose=False)  # module.setup: a 1-process loss
            metrics = dict(module.last_val_metrics)
        skipped = dict(getattr(module, "skipped_total", {}) or {})
        dropped = dict(getattr(dm, "setup_dropped", {}) or {}) if dm is not None else {}
        training_report(run_dir, metrics, module, model_dir, best_checkpoint(trainer), skipped, dropped)


def chance_levels(metrics: dict) -> dict[str, float]:
    """Expected value of each headline metric for random scores (R@K in percent, accuracy as a fraction)."""
    n = metrics.get("val/num_clips") or 0
    out = {}
    for direction in ("v2t", "t2v"):
        for k in (1, 5, 10):  # with repeated caption texts, the chance the module measured for them
            out[f"val/{direction}_R@{k}"] = metrics.get(f"val/chance_R@{k}", 100.0 * min(k, n) / n if n else float("nan"))
    if "val/rsum" in metrics:
        out["val/rsum"] = sum(out[f"val/{d}_R@{k}"] for d in ("v2t", "t2v") for k in (1, 5, 10))
    if "val/zeroshot_num_classes" in metrics:
        out["val/zeroshot_accuracy"] = 1.0 / metrics["val/zeroshot_num_classes"]
    return out


def training_report(run_dir: Path, metrics: dict, module: L.LightningModule, model_dir: Path | None,
                    checkpoint: str | None, skipped: dict | None = None, dropped_rows: dict | None = None) -> None:
    """report.json (every number + config + skipped training items by reason + caption rows dropped
    at setup) and report.md (headline table), both by ``reports.write_report``, and loss_curve.png;
    prints the headline numbers and the counts."""
    skipped, dropped_rows = skipped or {}, dropped_rows or {}
    chance = chance_levels(metrics)
    rows = [(k, v, chance.get(k)) for k, v in sorted(metrics.items())]
    lines = ["# surgclip training report", "",
             f"model: `{module.hparams.model}`  exported to: `{model_dir}`  best checkpoint: `{checkpoint}`", "",
             "Held-out retrieval: clip<->caption pairs of the validation videos (ground truth on the diagonal; "
             "R@K in percent). "
             "Zero-shot: Cholec80 protocol (per-video accuracy / macro F1, averaged over videos) on the held-out "
             "labelled videos.", "", "| metric | value | chance |", "|---|---|---|"]
    for key, value, ch in rows:
        lines.append(f"| {key} | {value:.4f} | {'' if ch is None else f'{ch:.4f}'} |")
    skip_line = ("skipped training items (all epochs, all ranks): "
                 + (", ".join(f"{r}: {n}" for r, n in sorted(skipped.items())) or "none"))
    zs_command = module.zero_shot_command(model_dir) if model_dir is not None and "val/zeroshot_accuracy" in metrics \
        else None
    if dropped_rows:
        skip_line += ("\ninvalid caption rows dropped at setup: "
                      + ", ".join(f"{r}: {n}" for r, n in sorted(dropped_rows.items())))
    table = lines[-len(rows) - 2:]
    curve = plot_loss_curve(run_dir)
    if curve:
        lines += ["", f"![loss curve]({curve.name})"]
    lines += ["", skip_line]
    if zs_command:
        lines += ["", "The zero-shot numbers again, from the exported model:", "", f"    {zs_command}"]
    write_report(run_dir, "training", metrics, checkpoint=checkpoint, name="report", markdown="\n".join(lines) + "\n",
                 extra={"chance": chance, "model_dir": str(model_dir), "skipped_train_items": skipped,
                        "dropped_caption_rows": dropped_rows, "zeroshot_command": zs_command,
                        "hyper_parameters": {k: v for k, v in dict(module.hparams).items()},
                        "model_config": module.model.config})
    print("\n" + "\n".join(table + ["", skip_line]))
    headline = []
    for key, label in (("val/v2t_R@1", "held-out retrieval R@1 % (video->text)"),
                       ("val/t2v_R@1", "held-out retrieval R@1 % (text->video)"),
                       ("val/zeroshot_accuracy", "zero-shot phase accuracy")):
        if key in metrics:
            headline.append(f"{label}: {metrics[key]:.3f}  (chance {chance.get(key, float('nan')):.3f}, "
                            f"{metrics[key] / chance[key]:.1f}x)" if chance.get(key) else f"{label}: {metrics[key]:.3f}")
    print("\n".join(headline))
    if zs_command:
        print(f"zero-shot again from the export: {zs_command}")
    print(f"report: {run_dir / 'report.md'}")


def plot_loss_curve(run_dir: Path) -> Path | None:
    """Plot train/val loss from the CSV logger's metrics.csv; None if there is none."""
    csv_path = run_dir / "metrics.csv"
    if not csv_path.is_file():
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series: dict[str, list[tuple[int, float]]] = {}
    with open(csv_path) as f:
        for row in csv.DictReader(f):
            for key in ("train/loss", "val/loss"):
                value = row.get(key)
                if value not in (None, "") and math.isfinite(float(value)):
                    series.setdefault(key, []).append((int(row["step"]), float(value)))
    if not series:
        return None
    fig, ax = plt.subplots(figsize=(6, 3.5))
    for key, points in series.items():
        xs, ys = zip(*points)
        ax.plot(xs, ys, marker="o" if key == "val/loss" else None, label=key)
    ax.set_xlabel("step")
    ax.set_ylabel("InfoNCE loss")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    out = run_dir / "loss_curve.png"
    with atomic_path(out) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
    return out
