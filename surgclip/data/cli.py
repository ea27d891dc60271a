"""``surgclip data stats | splits | import | pack | extract-frames | sample`` (the last two also answer to their old
top-level names, aliases in ``surgclip.cli``)."""
from __future__ import annotations

import json

from .db import LEVEL_NAMES


def register(subparsers) -> None:
    """Add ``data`` and its sub-commands to the ``surgclip`` command."""
    p = subparsers.add_parser("data", help="caption databases, benchmark folds, frame extraction, the sample dataset")
    sub = p.add_subparsers(dest="data_command", metavar="SUBCOMMAND")
    s = sub.add_parser("stats", help="captions per level, durations, procedure types")
    s.add_argument("db", help="captions SQLite file")
    s.add_argument("--json", action="store_true", help="print JSON instead of a table")
    s.set_defaults(func=_cmd_stats)
    sp = sub.add_parser("splits", help="official cross-validation folds of a benchmark -> JSON")
    sp.add_argument("dataset", choices=("multibypass140",), help="benchmark whose folds to read")
    sp.add_argument("--repo", required=True, help="clone of the official repository (or dataset root) holding "
                    "labels/<centre>/labels_by70_splits/labels/<split>/1fps_<fold>.pickle")
    sp.add_argument("--out", required=True, help="splits JSON to write (for the fold/splits load options)")
    sp.set_defaults(func=_cmd_splits)
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])

    i = sub.add_parser("import", help="your own (video, start, end, caption[, level]) pairs -> a caption database")
    i.add_argument("pairs", help="CSV (header video,start,end,caption[,level]) or JSONL of caption pairs")
    i.add_argument("--videos", required=True, help="folder the video column is relative to")
    i.add_argument("--out", required=True, help="SQLite file to write (SurgLaVi schema; replaced atomically)")
    i.add_argument("--level", default="1", help="level of rows without one: 1/task, 2/step, 3/phase (default 1)")
    i.add_argument("--skip-bad", action="store_true", help="skip bad rows and count them instead of failing")
    i.set_defaults(func=_cmd_import)

    k = sub.add_parser("pack", help="selected captions' frames -> WebDataset tar shards for streaming training "
                       "(resumable; a folder or s3:// URL)")
    k.add_argument("--db", required=True, help="captions SQLite file")
    src = k.add_mutually_exclusive_group(required=True)
    src.add_argument("--videos", help="video root ({name}/{name}.mp4 or {name}.mp4)")
    src.add_argument("--frames", help="frame-folder root ({name}/000000.jpg ... with frames.json)")
    k.add_argument("--frames-fps", type=float, default=None, help="rate of the frame folders (default: frames.json)")
    k.add_argument("--out", required=True, help="folder or fsspec URL (s3://bucket/prefix) to write the shards to")
    k.add_argument("--fps", type=float, default=1.0, help="frames kept per second of caption (default 1)")
    k.add_argument("--min-frames", type=int, default=16, help="at least this many frames per caption (default 16)")
    k.add_argument("--max-frames", type=int, default=64, help="at most this many frames per caption (default 64)")
    k.add_argument("--size", type=int, default=224, help="stored short side in pixels, 0 = keep (default 224)")
    k.add_argument("--quality", type=int, default=90, help="JPEG quality (default 90)")
    k.add_argument("--shard-size", type=int, default=1000, help="captions per shard (default 1000)")
    k.add_argument("--workers", type=int, default=2)
    k.add_argument("--levels", default="1,2,3", help="caption levels to pack, as training selects them (default 1,2,3)")
    k.add_argument("--text-field", default="caption", choices=("caption", "raw_narration"))
    k.add_argument("--no-clean", action="store_true", help="keep captions as written (training's clean_captions: false)")
    k.add_argument("--min-duration", type=float, default=0.0)
    k.add_argument("--max-duration", type=float, default=500.0)
    k.add_argument("--skip-errors", action="store_true", help="skip and count invalid caption rows instead of failing")
    k.set_defaults(func=_cmd_pack)

    e = sub.add_parser("extract-frames", help="videos -> numbered frame folders (resumable)")
    e.add_argument("src", help="a video, a folder of videos, or a {name}/{name}.mp4 tree")
    e.add_argument("out", help="output root; frames go to OUT/{name}/000000.jpg ...")
    e.add_argument("--fps", type=float, default=None, help="output frame rate (default: the source's)")
    e.add_argument("--size", type=int, default=224, help="short side in pixels (0 = keep)")
    e.add_argument("--square", action="store_true", help="resize to SIZE x SIZE")
    e.add_argument("--ext", default="jpg", choices=("jpg", "png", "webp"))
    e.add_argument("--workers", type=int, default=2)
    e.add_argument("--check", action="store_true", help="only verify existing folders against frames.json")
    e.set_defaults(func=_cmd_extract)

    m = sub.add_parser("sample", help="generate the bundled sample dataset")
    m.add_argument("--out", default="data/sample")
    m.add_argument("--seed", type=int, default=0)
    m.add_argument("--videos", type=int, default=None, help="number of videos (default 34)")
    m.set_defaults(func=_cmd_sample)


def _cmd_stats(args) -> int:
    from .db import CaptionDB, format_stats

    stats = CaptionDB(args.db).stats()
    print(json.dumps(stats, indent=2) if args.json else format_stats(stats))
    return 0


def _cmd_splits(args) -> int:
    from ..datasets.multibypass140 import write_multibypass_splits

    splits = write_multibypass_splits(args.repo, args.out)
    for centre, folds in splits.items():
        for fold, by_split in folds.items():
            counts = ", ".join(f"{k} {len(by_split[k])}" for k in ("train", "val", "test") if k in by_split)
            print(f"{args.dataset} {centre} fold {fold}: {counts} videos")
    print(f"wrote {args.out}")
    return 0


def _cmd_import(args) -> int:
    from .importer import import_pairs

    res = import_pairs(args.pairs, args.videos, args.out, level=args.level, skip_bad=args.skip_bad)
    levels = ", ".join(f"{LEVEL_NAMES[k]} {v}" for k, v in res["levels"].items())
    print(f"{args.out}: {res['captions']} captions ({levels}) over {res['videos']} videos")
    if res["skipped"]:
        print(f"skipped bad rows: {res['skipped']}")
    print(f"train on it: surgclip train fit -c configs/base.yaml -c configs/sample.yaml --data.root null "
          f"--data.paths.db_path {args.out} "
          f"--data.paths.video_root {args.videos} --model.zeroshot.root null")
    return 0


def _cmd_pack(args) -> int:
    from .pack import PackSettings, format_manifest, pack

    settings = PackSettings(fps=args.fps, min_frames=args.min_frames, max_frames=args.max_frames, size=args.size,
                            quality=args.quality, shard_captions=args.shard_size)
    levels = [int(x) for x in args.levels.split(",") if x.strip()]
    manifest = pack(args.db, args.out, video_root=args.videos, frames_root=args.frames, frames_fps=args.frames_fps,
                    settings=settings, levels=levels, min_duration=args.min_duration, max_duration=args.max_duration,
                    text_field=args.text_field, clean=not args.no_clean, skip_errors=args.skip_errors,
                    workers=args.workers)
    print(f"{args.out}: " + format_manifest(manifest))
    media = f"--data.paths.frames_root {args.frames}" if args.frames else f"--data.paths.video_root {args.videos}"
    print(f"train from it: surgclip train fit -c configs/base.yaml -c configs/sample.yaml --data.root null "
          f"--data.paths.db_path {args.db} {media} --data.read_from shards --data.shards {args.out}")
    return 0


def _cmd_extract(args) -> int:
    from pathlib import Path

    from .extract import check_folder, extract_frames

    if args.check:
        folders = [p for p in sorted(Path(args.out).iterdir()) if p.is_dir()]
        problems = [msg for f in folders for msg in check_folder(f, decode=True)]
        print("\n".join(problems) or f"{len(folders)} frame folders intact")
        return 1 if problems else 0
    manifest = extract_frames(args.src, args.out, fps=args.fps, size=args.size or None, square=args.square,
                              ext=args.ext, workers=args.workers)
    print(f"{len(manifest['videos'])} videos extracted to {args.out}; {len(manifest['failed'])} failed")
    for name, err in manifest["failed"].items():
        print(f"  {name}: {err}")
    return 1 if manifest["failed"] else 0


def _cmd_sample(args) -> int:
    import time

    from ..sample import make_sample

    t0 = time.time()
    root = make_sample(args.out, seed=args.seed, num_videos=args.videos)
    print(f"sample written to {root} in {time.time() - t0:.1f}s")
    return 0
