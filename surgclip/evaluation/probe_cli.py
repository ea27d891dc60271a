"""``surgclip eval coop | cvs | mcq`` (registered under ``eval`` by ``evaluation.cli``): thin wrappers over
``evaluation.coop``, ``evaluation.cvs`` and ``evaluation.mcq`` that write reports."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from .cli_common import config_of, load_model, metrics_arg, model_args, numbers, write_run_predictions
from .runs import dataset_name


def register(subparsers) -> None:
    """Add the coop, cvs and mcq runs to the ``surgclip eval`` parser's sub-commands."""
    p = subparsers.add_parser("coop", help="CoOp prompt learning (few-shot, towers frozen) on a benchmark")
    model_args(p)
    metrics_arg(p)
    p.add_argument("--benchmark", default="cholec80", help="benchmark name accepted by load_benchmark")
    p.add_argument("--task", default=None, help="single-label task (phase, step, action); default: the benchmark's")
    p.add_argument("--root", required=True, help="dataset root in the released layout")
    p.add_argument("--train-split", default="train")
    p.add_argument("--test-split", default="test")
    p.add_argument("--shots", default="1,2,4,8,16", help="labelled frames per class, comma-separated")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--n-ctx", type=int, default=16, help="context vectors (random init N(0, 0.02))")
    p.add_argument("--ctx-init", default=None, help='initialise the context from a phrase, e.g. "a surgical video of"')
    p.add_argument("--epochs", type=int, default=50)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--mode", default="centered", choices=["centered", "online", "frame"])
    p.add_argument("--stride-s", type=float, default=1.0)
    p.add_argument("--cache", default="reports/features", help="feature cache folder (resumable)")
    p.add_argument("--out", default="reports/coop")
    p.set_defaults(func=cmd_coop)

    p = subparsers.add_parser("cvs", help="Critical View of Safety zero-shot on Endoscapes2023 (per-criterion AP)")
    model_args(p)
    p.add_argument("--root", required=True, help="Endoscapes2023 root (all_metadata.csv, *_vids.txt, train/val/test/)")
    p.add_argument("--split", default="test", choices=["train", "val", "test", "all"])
    p.add_argument("--prompts", default="descriptive,short", help="prompt sets, comma-separated")
    p.add_argument("--out", default="reports/cvs")
    p.set_defaults(func=cmd_cvs)

    p = subparsers.add_parser("mcq", help="multiple-choice questions about clips, scored by option-text similarity")
    model_args(p)
    p.add_argument("--questions", required=True, help="JSON list of {clip: {video, start, end}, question, options, answer}")
    p.add_argument("--with-question", action="store_true", default=True, help="prepend the question to each option (default)")
    p.add_argument("--no-question", dest="with_question", action="store_false", help="score the options alone")
    p.add_argument("--out", default="reports/mcq")
    p.set_defaults(func=cmd_mcq)


def _ints(text: str, flag: str) -> list[int]:
    values = numbers(text, int)
    if not values:
        raise ValueError(f"{flag} needs at least one integer, got {text!r}")
    return values


def cmd_coop(args) -> int:
    from . import reports
    from ..datasets import load_benchmark
    from .coop import coop_probe, readable_class_name
    from .features import extract_features

    shots, seeds = _ints(args.shots, "--shots"), _ints(args.seeds, "--seeds")
    train = load_benchmark(args.benchmark, args.root, split=args.train_split, task=args.task)
    test = load_benchmark(args.benchmark, args.root, split=args.test_split, task=args.task)
    if train.multilabel:
        raise ValueError(f"coop needs a single-label task (phase, step, action); {train.name} is multi-label")
    model, _, tokenizer = load_model(args)
    T = args.num_frames or model.num_frames
    cache = Path(args.cache) / f"{model.name}-{args.mode}-{T}"
    xtr, vtr, s1 = extract_features(model, train, cache, T, args.mode, args.stride_s, args.batch_size, True)
    xte, vte, s2 = extract_features(model, test, cache, T, args.mode, args.stride_s, args.batch_size, True)
    if not vtr.any() or not vte.any():
        raise ValueError(f"no readable clips (train skipped {s1}, test skipped {s2})")
    names = [readable_class_name(c) for c in train.classes]
    res = coop_probe(model, tokenizer, names, xtr[vtr], train.labels[vtr], xte[vte], test.labels[vte], test.video[vte],
                     shots=shots, seeds=seeds, n_ctx=args.n_ctx, ctx_init=args.ctx_init, epochs=args.epochs, lr=args.lr,
                     batch_size=32, convention=args.metrics)
    task = args.task or train.name.split("/")[-1]
    test_rows = test.select(vte)
    written = write_run_predictions(Path(args.out), dataset_name(args.benchmark, task), test_rows, res.pop("scores"))
    rows = [{"shots": k, "f1": r["f1_mean"], "f1_std": r["f1_std"], "accuracy": r["accuracy_mean"],
             "accuracy_std": r["accuracy_std"]} for k, r in res["results"].items()]
    reports.write_report(args.out, "coop", res["results"],
                         {"metric": res["protocol"], "mode": args.mode, "num_frames": T, "benchmark": train.name,
                          "class_texts": names}, config_of(args), reports.checkpoint_hash(args.model, model), rows,
                         ["shots", "f1", "f1_std", "accuracy", "accuracy_std"],
                         extra={"skipped": {"train": s1, "test": s2}, "predictions": written})
    for r in rows:
        print(f"CoOp {train.name} {r['shots']:>8}: F1 {r['f1']:.4f} ± {r['f1_std']:.4f}, "
              f"accuracy {r['accuracy']:.4f} ± {r['accuracy_std']:.4f}")
    print(f"report: {args.out}/")
    return 0


def cmd_cvs(args) -> int:
    from . import reports
    from .cvs import CRITERIA, evaluate_cvs, load_endoscapes_cvs

    table = load_endoscapes_cvs(args.root, split=args.split)
    model, _, tokenizer = load_model(args)
    sets = [s.strip() for s in args.prompts.split(",") if s.strip()]
    res = evaluate_cvs(model, tokenizer, table, sets, batch_size=args.batch_size)
    if not res["valid"].any():
        print(f"surgclip cvs: no frame could be read (skipped: {res['skipped']})", file=sys.stderr)
        return 1
    rows = []
    for name, m in res["results"].items():
        row = {"prompts": name, "frames": m["num_frames"], "mAP": m["mAP"], "mean_bal_acc": m["mean_balanced_accuracy"]}
        row.update({f"{c}_AP": m[c]["AP"] for c in CRITERIA})
        row.update({f"{c}_bal_acc": m[c]["balanced_accuracy"] for c in CRITERIA})
        rows.append(row)
    columns = ["prompts", "frames", "mAP", "mean_bal_acc"] + [f"{c}_AP" for c in CRITERIA] + [f"{c}_bal_acc" for c in CRITERIA]
    reports.write_report(args.out, "cvs", res["results"], {"metric": res["protocol"], "mode": "frame", "num_frames": 1,
                         "benchmark": f"endoscapes2023/{args.split}"}, config_of(args),
                         reports.checkpoint_hash(args.model, model), rows, columns, extra={"skipped": res["skipped"]})
    for r in rows:
        print(f"CVS {args.split} [{r['prompts']}]: mAP {r['mAP']:.4f}, mean balanced accuracy {r['mean_bal_acc']:.4f} "
              f"over {r['frames']} frames")
    if res["skipped"]:
        print(f"skipped: {res['skipped']}", file=sys.stderr)
    print(f"report: {args.out}/")
    return 0


def cmd_mcq(args) -> int:
    from . import reports
    from .mcq import evaluate_mcq, load_questions

    questions = load_questions(args.questions)
    model, _, tokenizer = load_model(args)
    res = evaluate_mcq(model, tokenizer, questions, with_question=args.with_question, num_frames=args.num_frames)
    row = {"questions": res["num_questions"], "scored": res["num_scored"], "accuracy": res["accuracy"],
           "chance": res["chance"], "text": "question + option" if args.with_question else "option"}
    metrics = {k: res[k] for k in ("accuracy", "num_scored", "num_questions", "chance", "per_question")}
    reports.write_report(args.out, "mcq", metrics, {"metric": res["protocol"], "mode": "uniform",
                         "num_frames": args.num_frames or model.num_frames, "benchmark": str(args.questions)},
                         config_of(args), reports.checkpoint_hash(args.model, model), [row],
                         ["questions", "scored", "accuracy", "chance", "text"],
                         extra={"skipped": res["skipped"], "errors": res["errors"]})
    for e in res["errors"]:
        print(f"skipped {args.questions} entry {e['entry']} ({e['reason']}): {e['message']}", file=sys.stderr)
    if not res["num_scored"]:
        print(f"surgclip mcq: no question could be scored (skipped: {res['skipped']})", file=sys.stderr)
        return 1
    print(f"MCQ {args.questions}: accuracy {res['accuracy']:.4f} over {res['num_scored']}/{res['num_questions']} "
          f"questions (chance {res['chance']:.4f})")
    print(f"report: {args.out}/")
    return 0
