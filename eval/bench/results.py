"""Results files of the benches in ``eval/bench/``: one JSON object per line, one line per measured row.

Every bench takes ``--out FILE`` (default ``eval/bench/results/<script>.jsonl``) and appends a line
for each row it prints::

    {"bench": "bench_index", "row": "1000000 auto:ivf np=4",
     "figures": {"build_s": 53.0, "ms_per_query": 1.187, "recall_at_10": 1.0, "speedup": 34.8},
     "ratio": 34.8, "ratio_of": "fastest exact ms/query / this ms/query",
     "command": "python eval/bench/bench_index.py --sizes 1000000",
     "machine": {"cpu": "...", "cores": 2, "torch_threads": 2, "gpu": null},
     "date": "2026-12-05T10:00:00+00:00", "git": "18d46f3"}

- ``figures``: the numbers the row prints (units in the names); a range is ``[low, high]``;
- ``ratio``: the row's figure against its baseline (null where the row has none), ``ratio_of``
  says what it divides;
- ``command``: the exact argv; ``machine``: CPU model, the cores this process may use, torch's
  threads, the GPU (null if none); ``date``: UTC, ISO 8601; ``git``: the checkout's short commit, or
  null outside a git checkout (a ``+`` suffix: the work tree had uncommitted changes);
- rows copied from the old narrative carry ``source`` (where they came from), their machine as it
  was written there (a string) and its date (or null); any row may carry a ``note``.

A row is one ``write`` of one line to a file opened for appending, so concurrent benches do not
interleave within a line. ``render_results.py`` turns the files into the tables of
``docs/performance.md``. A training run is recorded from its run directory with
``python eval/bench/results.py record-run RUN_DIR`` (``embedded_default.jsonl``).
"""
from __future__ import annotations

import datetime as _dt
import functools
import json
import math
import os
import platform
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
RESULTS_DIR = BENCH_DIR / "results"
REPO = BENCH_DIR.parents[1]
REQUIRED = ("bench", "row", "figures", "command", "machine", "date")


def default_path(script: str) -> Path:
    """``eval/bench/results/<script>.jsonl`` for ``bench_x`` or ``bench_x.py`` or a path to it."""
    return RESULTS_DIR / f"{Path(script).stem}.jsonl"


def add_out_argument(parser, script: str) -> None:
    """The ``--out FILE`` option every bench takes."""
    parser.add_argument("--out", type=Path, default=default_path(script),
                        help="append one JSON line per measured row to this file "
                             f"(default: {default_path(script).relative_to(REPO)})")


@functools.lru_cache(maxsize=None)
def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def cores() -> int:
    """The cores this process may run on."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


@functools.lru_cache(maxsize=None)
def _nvidia_smi_gpu() -> str | None:
    if not shutil.which("nvidia-smi"):
        return None
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True,
                             text=True, timeout=20)
    except (OSError, subprocess.SubprocessError):
        return None
    names = [n.strip() for n in out.stdout.splitlines() if n.strip()]
    return ", ".join(names) or None


def gpu_name() -> str | None:
    """The GPU's name: from torch where this process already initialised CUDA, else ``nvidia-smi``
    (asking torch would initialise CUDA in a bench that forks its workers later)."""
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_initialized():
        return torch.cuda.get_device_name()
    return _nvidia_smi_gpu()


def machine() -> dict:
    torch = sys.modules.get("torch")
    return {"cpu": cpu_model(), "cores": cores(), "torch_threads": torch.get_num_threads() if torch else None,
            "gpu": gpu_name()}


@functools.lru_cache(maxsize=None)
def git_commit(repo: Path = REPO) -> str | None:
    """The checkout's short commit, ``+`` when its tracked files have uncommitted changes; None
    outside a git checkout."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=repo, capture_output=True, text=True,
                              timeout=20)
        if head.returncode:
            return None
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=repo,
                               capture_output=True, text=True, timeout=20).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return head.stdout.strip() + ("+" if dirty else "")


def command(argv: list[str] | None = None) -> str:
    """The command line that ran this bench: ``python`` and the exact argv."""
    return shlex.join(["python", *(sys.argv if argv is None else argv)])


def utc_now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def _plain(x):
    """JSON-safe: numpy scalars to Python numbers, floats to 6 significant digits, NaN and infinities to
    null, tuples to lists."""
    if isinstance(x, dict):
        return {str(k): _plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_plain(v) for v in x]
    if hasattr(x, "item") and callable(x.item) and getattr(x, "ndim", 0) == 0:  # numpy / torch scalar
        x = x.item()
    if isinstance(x, float):
        return float(f"{x:.6g}") if math.isfinite(x) else None  # 6 significant digits: beyond what any bench resolves
    return x


def make_row(bench: str, row: str, figures: dict, ratio=None, ratio_of: str | None = None, **extra) -> dict:
    """A row as this process measured it: command, machine, date and commit filled in."""
    out = {"bench": Path(bench).stem, "row": row, "figures": figures, "ratio": ratio, "ratio_of": ratio_of,
           "command": command(), "machine": machine(), "date": utc_now(), "git": git_commit()}
    out.update(extra)
    return _plain(out)


def append_row(path: Path | str, row: dict) -> None:
    """Append ``row`` to ``path`` as one JSON line (parents made as needed), in a single write."""
    missing = [k for k in REQUIRED if k not in row]
    if missing:
        raise ValueError(f"results row lacks {', '.join(missing)}: {row}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    line = json.dumps(_plain(row), ensure_ascii=False, allow_nan=False) + "\n"
    with open(path, "a", encoding="utf-8") as f:
        f.write(line)


def read_rows(path: Path | str) -> list[dict]:
    """Every row of a results file, in file order (blank lines skipped)."""
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


class Recorder:
    """Appends a bench's rows to its results file: ``Recorder("bench_x", args.out).add(row, figures, ...)``."""

    def __init__(self, bench: str, out: Path | str | None = None):
        self.bench = Path(bench).stem
        self.out = Path(out) if out is not None else default_path(self.bench)

    def add(self, row: str, figures: dict, ratio=None, ratio_of: str | None = None, **extra) -> dict:
        r = make_row(self.bench, row, figures, ratio, ratio_of, **extra)
        append_row(self.out, r)
        return r


def run_row(run_dir: Path, train_command: str, wall_s: float | None = None, max_rss_gb: float | None = None) -> dict:
    """A row for a finished ``surgclip train`` run from its ``timing.json`` and ``report.json``."""
    timing = json.loads((run_dir / "timing.json").read_text())
    report = json.loads((run_dir / "report.json").read_text())
    metrics, chance = report.get("metrics", {}), report.get("chance", {})
    split = timing.get("split_s", {})
    figures = {"elapsed_s": timing["elapsed_s"], "bare_step_ms": 1000 * timing["bare_step_s"],
               "bare_compute_s": timing["bare_compute_s"], "ratio": timing["ratio"],
               "steps_vs_bare": timing.get("steps_vs_bare"), "data_wait_s": split.get("data_wait"),
               "validation_s": split.get("validation"), "precision": timing.get("precision")}
    for key, name in (("val/v2t_R@1", "v2t_R@1_x_chance"), ("val/t2v_R@1", "t2v_R@1_x_chance")):
        if metrics.get(key) is not None and chance.get(key):
            figures[name] = metrics[key] / chance[key]
    if metrics.get("val/zeroshot_accuracy") is not None:
        figures["zeroshot_accuracy"] = metrics["val/zeroshot_accuracy"]
    if wall_s is not None:
        figures["wall_from_command_s"] = wall_s
    if max_rss_gb is not None:
        figures["max_rss_gb"] = max_rss_gb
    row = make_row("embedded_default", train_command, figures, timing["ratio"],
                   "wall time from fit start to report / bare compute of the same steps", run_dir=str(run_dir))
    row["command"] = train_command
    return row


def main(argv: list[str] | None = None) -> int:
    import argparse

    ap = argparse.ArgumentParser(description="Record a training run in the results files (the benches record "
                                             "their own rows).")
    sub = ap.add_subparsers(dest="cmd", required=True)
    rec = sub.add_parser("record-run", help="append a finished `surgclip train` run (timing.json + report.json)")
    rec.add_argument("run_dir", type=Path, help="the run's log dir, e.g. runs/sample/version_0")
    rec.add_argument("--command", default="surgclip train -c configs/base.yaml -c configs/sample.yaml", help="the training command that ran")
    rec.add_argument("--wall-s", type=float, help="seconds from the command's start to its end (e.g. from `time`)")
    rec.add_argument("--max-rss-gb", type=float, help="the command's max RSS (e.g. from /usr/bin/time -v)")
    rec.add_argument("--out", type=Path, default=default_path("embedded_default"))
    args = ap.parse_args(argv)
    row = run_row(args.run_dir, args.command, args.wall_s, args.max_rss_gb)
    append_row(args.out, row)
    print(json.dumps(row))
    return 0


if __name__ == "__main__":
    sys.exit(main())
