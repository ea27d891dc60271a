"""``surgclip eval [zeroshot | linear-probe | retrieval | coop | cvs | mcq]``, ``index`` and ``search``
(registered by ``surgclip.cli``; the runs' old top-level names are aliases there)."""
from __future__ import annotations

import csv
import os
import sys
from pathlib import Path

import numpy as np

from .. import datasets as D
from ..datasets import custom
from ..datasets.pathcsv import frame_folder_benchmark
from ..datasets.protocols import default_task, task_classes
from ..utils import IMAGE_EXTENSIONS, VIDEO_EXTENSIONS
from .cli_common import config_of, load_model, metrics_arg, model_args, numbers, write_run_predictions
from .probe_cli import register as register_probes
from .runs import dataset_name


def register(subparsers) -> None:
    """Add ``eval`` (a results table, or one run: zeroshot, linear-probe, coop, cvs, mcq, retrieval),
    ``index`` and ``search`` to the ``surgclip`` parser."""
    p = subparsers.add_parser("eval", help="evaluate: a whole results table (--suite, --from-predictions) or one run "
                                           "(zeroshot, linear-probe, coop, cvs, mcq, retrieval)")
    model_args(p)
    metrics_arg(p)
    p.add_argument("--suite", default=None, help="'surglavi' (the SurgLaVi results table) or a suite YAML file; "
                                                  "--model may list several models (a row each), e.g. "
                                                  "SurgCLIP-B,PeskaVLP,HecVL,SurgVLP,MedSigLIP,CLIP; NAME=WEIGHTS gives "
                                                  "a model its weights file or folder")
    p.add_argument("--published", action="store_true",
                   help="with --suite: show the SurgLaVi README's published numbers under each row, labelled as published")
    p.add_argument("--from-predictions", default=None, metavar="DIR",
                   help="rescore a folder of predictions_*.csv files (ours or the SurgLaVi code's) into the table")
    p.add_argument("--aggregate", default="video", choices=["video", "global"],
                   help="what a table cell shows: the mean over videos (default) or all frames pooled; both are in "
                        "table.csv / table.json")
    p.add_argument("--fold", type=int, default=None, help="MultiBypass140 fold for StrasBypass70/BernBypass70 (default 0)")
    p.add_argument("--splits", default=None, help="MultiBypass140 splits JSON from 'surgclip data splits'")
    p.add_argument("--data-root", default=None, help="folder holding one sub-folder per benchmark (see README)")
    p.add_argument("--out", default="reports/suite", help="folder for table.md, table.csv, table.json and per-cell reports")
    p.add_argument("--prompts", default=None, help="prompt set for every cell (default: each model's authors' set where "
                                                   "the task has it, e.g. camma for CAMMA's models, else the task's default)")
    p.add_argument("--split", default=None, help="split for every cell (default: each entry's)")
    p.add_argument("--mode", default="centered", choices=["centered", "online", "frame"])
    p.add_argument("--stride-s", type=float, default=1.0, help="seconds between clip frames")
    p.add_argument("--limit", type=int, default=None, help="evaluate only the first N labelled rows per video")
    p.set_defaults(func=cmd_eval)
    runs = p.add_subparsers(dest="eval_command", metavar="RUN")

    p = runs.add_parser("zeroshot", help="zero-shot phase/step/action/tool recognition on one benchmark")
    model_args(p)
    metrics_arg(p)
    _bench_args(p)
    p.add_argument("--prompts", default=None,
                   help="prompt set of the protocol (names, descriptive, camma, ...) or a text file; default: the task's")
    p.add_argument("--mode", default="centered", choices=["centered", "online", "frame"])
    p.add_argument("--out", default="reports/zeroshot", help="report folder (JSON, Markdown, plots)")
    p.set_defaults(func=cmd_zeroshot)

    p = runs.add_parser("linear-probe", help="logistic regression on cached frozen features")
    model_args(p)
    metrics_arg(p)
    _bench_args(p, split="train")
    p.add_argument("--test-split", default="test")
    p.add_argument("--percents", default="10,50,100", help="percentages of training procedures ('' for none)")
    p.add_argument("--shots", default="", help="k labelled frames per class, e.g. 1,2,4,8,16 (few-shot probes)")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--mode", default="centered", choices=["centered", "online", "frame"])
    p.add_argument("--cache", default="reports/features", help="feature cache folder (resumable)")
    p.add_argument("--out", default="reports/linear_probe")
    p.set_defaults(func=cmd_linear_probe)

    p = runs.add_parser("retrieval", help="R@1/5/10 and median rank on paired clip-caption CSV")
    model_args(p)
    p.add_argument("--pairs", required=True, help="CSV with columns video,start,end,caption (video = file or folder)")
    p.add_argument("--frames-fps", type=float, default=None)
    p.add_argument("--out", default="reports/retrieval")
    p.set_defaults(func=cmd_retrieval)
    register_probes(runs)

    p = subparsers.add_parser("index", help="embed videos / frame folders as sliding-window clips into a FAISS index")
    model_args(p)
    p.add_argument("sources", nargs="+", help="video files, frame folders, or folders of videos")
    p.add_argument("--index", required=True, help="index directory (created or extended)")
    p.add_argument("--window-s", type=float, default=4.0)
    p.add_argument("--stride-s", type=float, default=2.0)
    p.add_argument("--kind", default=None, choices=["auto", "exact", "flat", "ivf", "pq"],
                   help="search structure: auto (exact below 300k clips, IVF to 1M, then IVF-PQ codes re-ranked "
                        "exactly against the memory-mapped floats; the default for a new index), exact (flat = "
                        "exact), ivf or pq; default for an existing index: its recorded choice")
    p.add_argument("--frames-fps", type=float, default=None, help="fps of frame folders")
    p.set_defaults(func=cmd_index)

    p = subparsers.add_parser("search", help="text-to-clip search in an index")
    p.add_argument("query", nargs="+")
    p.add_argument("--index", required=True)
    p.add_argument("--model", default=None, help="default: the model recorded in the index")
    p.add_argument("--device", default="cpu")
    p.add_argument("--precision", default="fp32", help="fp32 (default) or bf16: run the video tower under bf16 autocast (CPU or GPU; fp16 on GPU)")
    p.add_argument("-k", type=int, default=5)
    p.add_argument("--sheet", default=None, help="write a contact sheet PNG of the hits")
    p.set_defaults(func=cmd_search)


def _bench_args(p, split: str = "test") -> None:
    p.add_argument("--benchmark", default="cholec80", help=" | ".join(D.benchmark_names()) + " | a protocol JSON")
    p.add_argument("--root", help="dataset root in the benchmark's official layout (README: Evaluate)")
    p.add_argument("--split", default=split, help="official split name, 'all', or a file of video ids")
    p.add_argument("--task", default=None, help="task of the benchmark (default: its first): phase, tool, step, "
                                                 "instrument, action, triplet, verb, target; surglavi: the JSON's stem")
    p.add_argument("--site", default=None, choices=["strasbourg", "bern"], help="MultiBypass140 centre")
    p.add_argument("--fold", type=int, default=None, help="MultiBypass140 official fold (default 0)")
    p.add_argument("--splits", default=None, help="MultiBypass140 splits JSON from 'surgclip data splits'")
    p.add_argument("--classes", default=None, help="custom: class names, one per line (line order = id)")
    p.add_argument("--labels", default=None, help="custom: folder of <video stem>.csv label files")
    p.add_argument("--videos", default=None, help="custom: folder of videos (<stem>.mp4) or frame folders (<stem>/)")
    p.add_argument("--label-unit", default="seconds", choices=["seconds", "frames"],
                   help="custom: first column of the label files counts seconds or frames")
    p.add_argument("--eval-fps", type=float, default=None, help="labelled rows kept per second (default: the protocol's)")
    p.add_argument("--label-fps", type=float, default=None, help="fps of the label files' frame numbers")
    p.add_argument("--labels-csv", default=None, help="one-video Frame,Phase CSV (with --frames-dir)")
    p.add_argument("--frames-dir", default=None, help="frame folder of that video")
    p.add_argument("--frames-fps", type=float, default=None, help="fps of frame folders")
    p.add_argument("--name-fps", type=float, default=None, help="rate the frame file numbers count in")
    p.add_argument("--stride-s", type=float, default=1.0, help="seconds between clip frames")
    p.add_argument("--limit", type=int, default=None, help="evaluate only the first N labelled frames per video")


def _table(args, split: str, task: str | None = None):
    """(FrameTable, protocol, task) for the benchmark flags of ``zeroshot`` / ``linear-probe``
    (``task`` overrides ``--task``)."""
    if args.benchmark == custom.NAME:
        missing = [f for f in ("classes", "labels", "videos") if not getattr(args, f)]
        if missing:
            raise ValueError(f"--benchmark custom needs --{' --'.join(missing)}")
        table = custom.load_custom(args.classes, args.labels, args.videos, args.label_unit, args.frames_fps,
                                   args.label_fps)
        protocol, task = custom.protocol(), "custom"
        table = _custom_split(table, split, probe=getattr(args, "test_split", None) is not None)
    elif args.labels_csv:
        if not args.frames_dir or not args.frames_fps:
            raise ValueError("--labels-csv needs --frames-dir and --frames-fps")
        protocol = D.load_protocol(args.benchmark)
        task = task or args.task or default_task(protocol)
        table = frame_folder_benchmark(args.labels_csv, args.frames_dir, task_classes(protocol, task),
                                       args.frames_fps, args.name_fps or args.frames_fps,
                                       label_base=0, name=f"{protocol['name']}/{task}")
    else:
        if not args.root:
            raise ValueError("--root is required (or --labels-csv with --frames-dir, or --benchmark custom)")
        protocol = D.load_protocol(args.benchmark)
        task = task or args.task or default_task(protocol)
        table = D.load_benchmark(args.benchmark, args.root, split=split, task=task, frames_fps=args.frames_fps,
                                 name_fps=args.name_fps, label_fps=args.label_fps, eval_fps=args.eval_fps,
                                 site=args.site, fold=args.fold, splits=args.splits)
    if args.limit:
        table = table.limit_per_video(args.limit)
    return table, protocol, task


def _custom_split(table, split: str, probe: bool):
    """Rows of the videos listed in the file ``split`` (one stem per line); every video for a
    zero-shot run without one. A linear probe needs disjoint train and test files."""
    from ..datasets.parsing import read_text

    if Path(split).is_file():
        stems = [l.strip() for l in read_text(split).splitlines() if l.strip()]
        unknown = sorted(set(stems) - set(table.videos()))
        if unknown:
            raise ValueError(f"{split}: videos {unknown[:5]} have no label file")
        return table.select(np.isin(table.video, stems))
    if probe:
        raise ValueError("linear-probe on --benchmark custom needs --split train.txt --test-split test.txt "
                         "(files listing video stems, one per line)")
    return table


def cmd_zeroshot(args) -> int:
    from . import reports
    from .runs import load_run_tables, summary_line, zero_shot_run

    table, protocol, task = _table(args, args.split)
    tables = load_run_tables(args.benchmark, protocol, task,
                             lambda sub: table if sub == task else _table(args, args.split, task=sub)[0])
    model, _, tokenizer = load_model(args)
    report = zero_shot_run(model, tokenizer, tables, protocol, args.benchmark, task, args.prompts, args.out,
                           convention=args.metrics, num_frames=args.num_frames, mode=args.mode,
                           batch_size=args.batch_size, stride_s=args.stride_s, progress=True, config=config_of(args),
                           checkpoint=reports.checkpoint_hash(args.model, model))
    m = report["metrics"]
    print(summary_line("zero-shot", table.name, m) + f" [{args.metrics} metrics]")
    if any(report["skipped"].values()):
        print(f"skipped labelled frames: {report['skipped']} (see report)", file=sys.stderr)
    print(f"report and predictions: {args.out}/")
    if not m.get("num_scored"):
        print(f"error: no labelled frame of {table.name} could be scored (skipped: {report['skipped']})", file=sys.stderr)
        return 1
    return 0


def cmd_eval(args) -> int:
    from .suite import rescore_predictions, run_suite

    if args.from_predictions:
        return rescore_predictions(args)
    if not args.suite:
        raise ValueError("surgclip eval needs --suite (to run a table) or --from-predictions DIR (to rescore one)")
    return run_suite(args)


def cmd_linear_probe(args) -> int:
    from . import reports
    from .features import extract_features
    from .linear_probe import linear_probe

    train, protocol, task = _table(args, args.split)
    test, _, _ = _table(args, args.test_split)
    model, _, _ = load_model(args)
    cache = Path(args.cache) / f"{model.name}-{args.mode}-{args.num_frames or model.num_frames}"
    xtr, vtr, s1 = extract_features(model, train, cache, args.num_frames, args.mode, args.stride_s, args.batch_size, True)
    xte, vte, s2 = extract_features(model, test, cache, args.num_frames, args.mode, args.stride_s, args.batch_size, True)
    y_train, y_test = (train.targets, test.targets) if train.multilabel else (train.labels, test.labels)
    res = linear_probe(xtr[vtr], y_train[vtr], train.video[vtr], xte[vte], y_test[vte], test.video[vte],
                       percents=numbers(args.percents, float), shots=numbers(args.shots, int),
                       seeds=numbers(args.seeds, int), video_wise=train.name.startswith("cholect50/triplet"),
                       num_classes=len(train.classes), convention=args.metrics)
    written = write_run_predictions(Path(args.out), dataset_name(args.benchmark, task), test.select(vte),
                                    res.pop("scores"))
    if train.multilabel:
        columns = ["percent", "mAP", "mAP_std"]
        rows = [{"percent": p, "mAP": r["mAP_mean"], "mAP_std": r["mAP_std"]} for p, r in res["results"].items()]
    else:
        columns = ["percent", "f1", "f1_std", "accuracy", "accuracy_std"]
        rows = [{"percent": p, "f1": r["f1_mean"], "f1_std": r["f1_std"], "accuracy": r["accuracy_mean"],
                 "accuracy_std": r["accuracy_std"]} for p, r in res["results"].items()]
    skipped = {"train": s1, "test": s2}
    reports.write_report(args.out, "linear_probe", res["results"], {"metric": res["protocol"], "mode": args.mode,
                         "num_frames": args.num_frames or model.num_frames, "benchmark": protocol.get("name"),
                         "task": task, "split": args.split, "test_split": args.test_split},
                         config_of(args), reports.checkpoint_hash(args.model, model), rows, columns,
                         extra={"skipped": skipped, "predictions": written})
    metric = columns[1]
    for r in rows:
        what = r["percent"] if r["percent"].endswith("-shot") else f"{r['percent']}% of training procedures"
        print(f"{what:>32}: {metric} {r[metric]:.4f} ± {r[metric + '_std']:.4f}")
    print(f"report: {args.out}/ (test predictions of every run under predictions/)")
    return 0


def _expand_sources(sources: list[str]) -> list[Path]:
    """Video files and frame folders named on the command line, expanding library folders.

    A folder of images is one frame folder; any other folder contributes its video files, its
    ``{name}/{name}.mp4``-style subfolders' videos (the SurgLaVi / sample layout) and its
    subfolders of images (frame folders).
    """
    out = []
    for s in map(Path, sources):
        if not s.is_dir() or any(p.suffix.lower() in IMAGE_EXTENSIONS for p in s.iterdir()):
            out.append(s)
            continue
        for p in sorted(s.iterdir()):
            if p.suffix.lower() in VIDEO_EXTENSIONS:
                out.append(p)
            elif p.is_dir():
                videos = sorted(q for q in p.iterdir() if q.suffix.lower() in VIDEO_EXTENSIONS)
                out += videos if videos else [p]
    return out


def _model_source(model: str) -> str:
    """How to load ``model`` again from any folder: a local path made absolute, a name as given."""
    local = model[len("local-dir:"):] if model.startswith("local-dir:") else model
    return os.path.abspath(local) if os.path.exists(local) else model


def cmd_index(args) -> int:
    from .library import index_library

    sources = _expand_sources(args.sources)
    if not sources:
        raise FileNotFoundError(f"no videos or frame folders found in {' '.join(args.sources)}")
    model, _, _ = load_model(args)
    report = index_library(model, sources, args.index, args.window_s, args.stride_s, args.num_frames, args.kind,
                           args.batch_size, args.frames_fps, progress=True, model_source=_model_source(args.model))
    reasons = ", ".join(f"{r}: {n}" for r, n in sorted(report["failed_by_reason"].items()))
    print(f"index {args.index}: {report['num_clips']} clips, {report['search']} search; added "
          f"{len(report['added'])} videos, kept {len(report['skipped_existing'])}, failed {len(report['failed'])}"
          + (f" ({reasons})" if reasons else ""))
    if report["cleaned"]:
        print(f"  removed {len(report['cleaned'])} files left by an interrupted run")
    for vid, why in report["failed"].items():
        print(f"  failed {vid}: {why}", file=sys.stderr)
    if report["ivf"]:
        ivf = report["ivf"]
        print(f"  IVF: {ivf['nlist']} lists, nprobe {ivf['nprobe']}, recall@10 {ivf['recall@10']} against exact search "
              f"(trained on {ivf['trained_on']} clips)")
    if report.get("pq"):
        pq = report["pq"]
        print(f"  IVF-PQ: {pq['nlist']} lists, {pq['code_bytes']}-byte codes, nprobe {pq['nprobe']}, exact re-rank of "
              f"{pq['rerank']} candidates, recall@10 {pq['recall@10']} against exact search (trained on "
              f"{pq['trained_on']} clips)")
    if report.get("index_kind") in ("ivf", "pq") and report["search"] == "exact" and report["num_clips"]:
        print(f"  note: --kind {report['index_kind']} needs at least {report['min_clips']} clips to train its quantizer "
              f"(k-means wants >= 39 points per centroid); this index holds {report['num_clips']}, so it is "
              f"searched exactly until it grows past that", file=sys.stderr)
    if report["failed"] and not report["added"]:
        print(f"surgclip index: error: no video could be indexed in this run ({reasons})", file=sys.stderr)
        return 1
    if not report["num_clips"]:
        print("surgclip index: error: the index holds no clips", file=sys.stderr)
        return 1
    return 0


def cmd_search(args) -> int:
    import surgclip

    from .index import ClipIndex
    from .library import search_text

    index = ClipIndex(args.index)  # IndexError_ (clear, one line) when missing or corrupt
    meta = index.meta
    model, _, tokenizer = surgclip.load(args.model or meta.get("model_source") or meta["model"], device=args.device,
                                         precision=args.precision)
    query = " ".join(args.query)
    hits = search_text(model, tokenizer, args.index, [query], k=args.k)[0]
    for r, h in enumerate(hits, 1):
        print(f"{r:>2}. {h['video']}  {h['start']:8.2f}-{h['end']:8.2f} s  score {h['score']:.4f}")
    if args.sheet:
        from .plots import contact_sheet

        fps = next(iter(index.video_info().values()), {}).get("fps")
        contact_sheet(args.sheet, query, hits, frames_fps=fps)
        print(f"contact sheet: {args.sheet}")
    return 0


def cmd_retrieval(args) -> int:
    import torch

    from ..data.readers import read_clip
    from ..tokenizer import tokenize
    from ..transform import ClipTransform
    from . import reports
    from .metrics import retrieval_metrics

    model, _, tokenizer = load_model(args)
    with open(args.pairs, newline="") as f:
        pairs = list(csv.DictReader(f))
    transform, T = ClipTransform(model.preprocess_cfg, normalize=False), args.num_frames or model.num_frames
    vids, caps, failed = [], [], []
    with torch.no_grad():
        for n, row in enumerate(pairs, start=2):
            try:
                frames = read_clip(row["video"], float(row["start"]), float(row["end"]), T, fps=args.frames_fps)[1]
                vids.append(model.encode_video(transform(frames)[None]).float())
                caps.append(row["caption"])
            except (ValueError, KeyError, OSError) as err:
                failed.append(f"{args.pairs}:{n}: {err}")
        if not vids:
            raise ValueError(f"no readable pairs in {args.pairs}: {failed[:3]}")
        text = model.encode_text(tokenize(caps, tokenizer, max_length=getattr(tokenizer, "context_length", 77)))
    sim = text @ torch.cat(vids).T
    groups = np.unique(caps, return_inverse=True)[1]  # a caption text repeated for several clips fits each
    m = {"text_to_video": retrieval_metrics(sim, groups), "video_to_text": retrieval_metrics(sim.T, groups),
         "pairs": len(caps), "failed": failed}
    rows = [dict(direction=k, **v) for k, v in m.items() if isinstance(v, dict)]
    reports.write_report(args.out, "retrieval", m, {"metric": "R@K (%) and median rank, ground truth on the diagonal (a repeated caption text matches each of its clips)",
                         "num_frames": T, "mode": "uniform"}, config_of(args), reports.checkpoint_hash(args.model, model),
                         rows, ["direction", "R@1", "R@5", "R@10", "MedR", "MeanR"])
    for r in rows:
        print(f"{r['direction']}: R@1 {r['R@1']:.1f} R@5 {r['R@5']:.1f} R@10 {r['R@10']:.1f} MedR {r['MedR']:.1f}")
    return 0
