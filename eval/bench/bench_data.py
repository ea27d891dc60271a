"""Data-loading speed: SurgLaViDataModule clips/s next to a raw decord decode of the same frames.

    python eval/bench/bench_data.py [--clips 64] [--frames 16] [--size 224] [--workers 2]
    python eval/bench/bench_data.py --frames 8 --size 160 --source frames --batch 32  # the embedded default's path
    python eval/bench/bench_data.py --frames 8 --size 160 --source frames --batch 32 --frame-cache-mb 512  # its epochs 2+

For the real Cholec clips (../shared/realdata, read in place; a temporary SurgLaVi DB points at
them) and for the bundled sample, it times (a) a one-process loop that opens each video with
decord and decodes the clip's frames with ``get_batch`` (the raw decode rate), and (b) the
DataModule's train loader (random sampling, augmentation, tokenizing) with N workers. It prints
clips/s of both and the ratio per worker-core: (DataModule clips/s / N) / raw clips/s. It also
runs N raw loops at once, one process each, as N workers run: on a host whose cores slow each other
down when all are busy, one loop alone overstates what a worker core can decode.

On a shared machine wall-clock rates move with the load between the two measurements, so it also
prints CPU seconds per clip: the raw loop's process CPU time (decord's own threads included; its
cores-in-use figure shows how much more than one core one decoding process takes) against the
DataModule's CPU time (all workers from /proc + the main process) after the first batch. Their
ratio, raw CPU/clip / DataModule CPU/clip, is the per-core efficiency independent of the load.
"""
from __future__ import annotations

import argparse
import json
import os
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from surgclip.data.db import CaptionDB  # noqa: E402
from surgclip.data.datamodule import SurgLaViDataModule  # noqa: E402
from surgclip.sampling import sample_indices  # noqa: E402
from surgclip.sample import SCHEMA_SQL, ensure_sample  # noqa: E402

from results import Recorder, add_out_argument  # noqa: E402  (eval/bench/results.py)


def real_root(clips_dir: Path, tmp: Path, clip_s: float = 8.0) -> Path:
    """A temporary SurgLaVi root whose videos link to the real clips (8-s captions every second)."""
    import decord

    con = sqlite3.connect(tmp / "captions.sqlite")
    con.executescript(SCHEMA_SQL.read_text())
    con.executemany("INSERT INTO levels VALUES (?, ?)", [(1, "task"), (2, "step"), (3, "phase")])
    names, cid = [], 0
    for vid, path in enumerate(sorted(clips_dir.glob("*.mp4")), 1):
        name = path.stem
        (tmp / "videos" / name).mkdir(parents=True)
        os.symlink(path.resolve(), tmp / "videos" / name / f"{name}.mp4")
        vr = decord.VideoReader(str(path))
        fps, n = vr.get_avg_fps(), len(vr)
        con.execute("INSERT INTO videos (video_id, name, fps, duration, frame_count, procedure_type, specialty) "
                    "VALUES (?, ?, ?, ?, ?, 'cholecystectomy', 'general surgery')", (vid, name, fps, n / fps, n))
        for start in np.arange(0, n / fps - clip_s, 1.0):
            cid += 1
            con.execute("INSERT INTO captions (caption_id, video_id, video_name, level_id, raw_narration, start_time, "
                        "end_time, duration, is_surgical_content, is_descriptive, caption) VALUES "
                        "(?, ?, ?, 1, 'x', ?, ?, ?, 1, 1, 'The surgeon dissects the gallbladder.')",
                        (cid, vid, name, float(start), float(start + clip_s), clip_s))
        names.append(name)
    con.commit()
    con.close()
    (tmp / "splits.json").write_text(json.dumps({"train": names[1:], "val": names[:1], "test": []}))
    return tmp


def proc_cpu_s(pid: int) -> float:
    """utime + stime of a process (all its threads) in seconds, from /proc."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def raw_decode_rate(root: Path, table, num_frames: int, clips: int, source: str = "videos") -> tuple[float, float]:
    """(clips/s, CPU s per clip) of a one-process loop decoding the same clips' frames (random
    indices): decord ``get_batch`` on the video files (readers cached, parked after each read: left
    alone, decord's thread goes on decoding frames nobody asked for), or, on the frame folders' JPEGs
    (``source="frames"``), the image decoder the readers use (``surgclip.data.readers._read_rgb``:
    torchvision's JPEG op after PIL reads the header) in a bare loop."""
    import decord

    from surgclip.data.readers import _read_rgb
    from surgclip.utils import list_frame_files

    readers, t0, c0 = {}, time.perf_counter(), time.process_time()
    for i in range(clips):
        name = table.video_name[i % len(table)]
        if source == "frames":
            if name not in readers:  # the file list and fps once per folder, as the DataModule's readers
                readers[name] = (list_frame_files(root / "frames" / name),
                                 json.loads((root / "frames" / name / "frames.json").read_text())["fps"])
            files, fps = readers[name]
            idx = sample_indices(table.start_s[i % len(table)], table.end_s[i % len(table)], fps, num_frames,
                                 "random", np.random.default_rng(i), len(files))
            np.stack([_read_rgb(files[j]) for j in idx])
            continue
        vr = readers.get(name) or readers.setdefault(name, decord.VideoReader(str(root / "videos" / name / f"{name}.mp4"), num_threads=1))
        idx = sample_indices(table.start_s[i % len(table)], table.end_s[i % len(table)], vr.get_avg_fps(), num_frames,
                             "random", np.random.default_rng(i), len(vr))
        vr.get_batch(idx.tolist()).asnumpy()
        vr.seek(0)  # stops decord's read-ahead, as the readers do after each read (``VideoFileReader._park``)
    return clips / (time.perf_counter() - t0), (time.process_time() - c0) / clips


def _raw_worker(root, table, num_frames, clips, source, barrier, results) -> None:
    raw_decode_rate(root, table, num_frames, min(clips, 32), source)  # warm: imports, page cache
    barrier.wait()
    results.put(raw_decode_rate(root, table, num_frames, clips, source))


def raw_decode_together(root: Path, table, num_frames: int, clips: int, source: str, n: int) -> tuple[float, float]:
    """(clips/s summed, CPU s per clip averaged) of ``n`` raw decode loops running at once, one per
    process (forked, started together at a barrier, each on its own order of the clips): what ``n``
    cores give when every one of them decodes, as the DataModule's ``n`` workers all do. On this
    2-core host two loops at once took 1.3x the CPU per clip of one alone (shared caches, memory
    bandwidth and whatever the hypervisor shares); charging that to the DataModule would count the
    machine against it."""
    import multiprocessing as mp

    ctx = mp.get_context("fork")  # the table as it is, no pickling; the loop uses no torch threads
    barrier, results = ctx.Barrier(n), ctx.Queue()
    procs = [ctx.Process(target=_raw_worker, args=(root, table.subset(np.roll(np.arange(len(table)), k * len(table) // n)),
                                                  num_frames, clips, source, barrier, results)) for k in range(n)]
    for p in procs:
        p.start()
    out = [results.get() for _ in procs]
    for p in procs:
        p.join()
    return sum(r for r, _ in out), sum(c for _, c in out) / n


def datamodule_rate(root: Path, num_frames: int, size: int, workers: int, clips: int, batch: int = 8,
                    uint8_video: bool = False, source: str = "videos",
                    frame_cache_mb: float = 0.0) -> tuple[float, float, float]:
    """(clips/s including worker start-up, as an epoch pays it; clips/s after the first batch;
    CPU s per clip after the first batch, all workers + the main process).

    ``frame_cache_mb``: the workers keep decoded frames (``data.loader.frame_cache_mb``), and the timing starts
    after one whole untimed epoch, as a training run's later epochs see them: the same persistent
    workers, each epoch in a new order (the epoch comes from a stand-in for the trainer).
    """
    from types import SimpleNamespace

    dm = SurgLaViDataModule(root=str(root), read_from=source, num_frames=num_frames, batch_size=batch,
                            num_workers=workers, levels=[1, 2, 3] if (root / "manifest.json").is_file() else [1],
                            loader={"uint8_video": uint8_video, "frame_cache_mb": frame_cache_mb})
    from surgclip import get_tokenizer

    dm.set_model(get_tokenizer("tiny"), {"image_size": size})
    dm.setup()
    if frame_cache_mb:
        dm.trainer = SimpleNamespace(current_epoch=0, world_size=1, global_rank=0)
        for _ in dm.train_dataloader():  # epoch 0, untimed: the workers' caches fill
            pass
        dm.trainer.current_epoch = 1
    n, t0, first, cpu = 0, time.perf_counter(), None, 0.0

    def cpu_now(it) -> float:
        return time.process_time() + sum(proc_cpu_s(w.pid) for w in getattr(it, "_workers", []))

    while n < clips:
        it = iter(dm.train_dataloader())
        cpu_start = cpu_last = None
        for b in it:
            if first is None:
                first, n_first = time.perf_counter(), len(b["video_id"])
                cpu_start = cpu_now(it)
            elif cpu_start is None:
                cpu_start = cpu_now(it)  # a later epoch's first batch: count from here
            n += len(b["video_id"])
            cpu_last = cpu_now(it)  # read while the workers live (they exit when the epoch ends)
            if n >= clips:
                break
        cpu += cpu_last - cpu_start
        del it
        if frame_cache_mb:
            dm.trainer.current_epoch += 1
    end = time.perf_counter()
    return n / (end - t0), (n - n_first) / (end - first), cpu / max(1, n - n_first)


def _reused_buffer():
    """An ``_empty(shape, dtype, stride)`` for a Collate that hands back the buffer of its last call:
    a worker's BatchPool slot, in one process (a fresh 77-MB float batch would be timed paging in)."""
    import torch

    kept = {}

    def empty(shape, dtype, stride):
        key = (tuple(shape), dtype, tuple(stride))
        if key not in kept:
            kept[key] = torch.empty_strided(shape, stride, dtype=dtype)
        return kept[key]
    return empty


def in_process_parts(root: Path, num_frames: int, size: int, clips: int, batch: int = 32,
                     source: str = "videos") -> dict:
    """CPU ms per clip of each stage of a training item, in this process (no workers): reading the
    frames (``load_frames``: sampling + decode), the augmentation (random resized crop + flip, uint8),
    the collate (stack the uint8 clips into the batch + tokenize the captions), and what a float
    batch adds: the collate's uint8 -> normalised float32 pass instead of the uint8 copy."""
    import torch

    from surgclip.data.dataset import PaddedCollate

    dm = SurgLaViDataModule(root=str(root), read_from=source, num_frames=num_frames, batch_size=batch, num_workers=0,
                            levels=[1, 2, 3] if (root / "manifest.json").is_file() else [1], loader={"uint8_video": True})
    from surgclip import get_tokenizer

    dm.set_model(get_tokenizer("tiny"), {"image_size": size})
    dm.setup()
    loader = dm.train_dataloader()
    ds, collate = loader.dataset, loader.collate_fn
    order = list(loader.sampler)[:clips]  # the training order: a video decoder seeks as it does in training
    n = len(order)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as in a worker (surgclip.data.dataset.worker_init)
    float_collate = PaddedCollate(collate.collate.tokenizer, collate.blank, normalize=dm.preprocess_cfg)
    for c in (collate, float_collate):  # each writes into a buffer it used before, as workers do (BatchPool)
        c.collate._empty = _reused_buffer()
    read = augment = collate_s = float_s = 0.0
    try:
        ds[order[0]]  # warm-up
        for start in range(0, n, batch):  # one batch in memory at a time
            for i in order[start:start + batch]:
                c0 = time.process_time()
                _, frames = ds.load_frames(i, np.random.default_rng(i))
                c1 = time.process_time()
                ds.transform(frames)  # the augmentation, on the frames just read
                c2 = time.process_time()
                read, augment = read + c1 - c0, augment + c2 - c1
            items = [ds[i] for i in order[start:start + batch]]  # untimed: the collate's input
            c0 = time.process_time()
            collate(items)
            c1 = time.process_time()
            float_collate(items)
            collate_s, float_s = collate_s + c1 - c0, float_s + time.process_time() - c1
    finally:
        torch.set_num_threads(threads)
    return {"read_ms": 1000 * read / n, "augment_ms": 1000 * augment / n, "collate_ms": 1000 * collate_s / n,
            "float_extra_ms": 1000 * (float_s - collate_s) / n}


def bench(label: str, root: Path, args) -> dict:
    levels = [1, 2, 3] if (root / "manifest.json").is_file() else [1]
    table = CaptionDB(root / "captions.sqlite").select(levels=levels)
    train = set(json.loads((root / "splits.json").read_text())["train"])
    table = table.subset(np.isin(table.video_name, list(train)))
    table = table.subset(np.random.default_rng(0).permutation(len(table)))
    label = f"{label} {args.source} {args.frames}x{args.size}" + (
        f" cache {args.frame_cache_mb:g} MiB, epochs 2+" if args.frame_cache_mb and args.source == "frames" else "")
    # once untimed: the files come into the page cache and the decoders' imports are paid, as they are
    # for the DataModule runs that follow (a first pass on a fresh machine waited on the disk: 0.59 cores in use)
    raw_decode_rate(root, table, args.frames, args.clips, args.source)
    raw, raw_cpu = raw_decode_rate(root, table, args.frames, args.clips, args.source)
    out = {"raw_clips_per_s": raw, "raw_cpu_ms_per_clip": 1000 * raw_cpu, "raw_cores_in_use": raw * raw_cpu}
    n = max(1, args.workers)
    raw_n, raw_n_cpu = raw_decode_together(root, table, args.frames, args.clips, args.source, n) if n > 1 else (raw, raw_cpu)
    out.update({f"raw_{n}_at_once_clips_per_s": raw_n, f"raw_{n}_at_once_cpu_ms_per_clip": 1000 * raw_n_cpu})
    print(f"{label:8s} raw decode, {n} loops at once (one per worker core): {raw_n:7.1f} clips/s, CPU per clip "
          f"{1000 * raw_n_cpu:6.1f} ms = {raw_n_cpu / raw_cpu:.2f}x one loop alone", flush=True)
    for uint8 in (False, True):
        dm, steady, dm_cpu = datamodule_rate(root, args.frames, args.size, args.workers, args.clips, args.batch,
                                             uint8_video=uint8, source=args.source,
                                             frame_cache_mb=args.frame_cache_mb if args.source == "frames" else 0.0)
        ratio, steady_ratio = dm / max(1, args.workers) / raw, steady / max(1, args.workers) / raw
        kind = "uint8 batches" if uint8 else "float batches"
        print(f"{label:8s} raw decode {raw:7.1f} clips/s (1 process) | DataModule, {kind}: {dm:7.1f} clips/s with "
              f"worker start-up, {steady:7.1f} after the first batch ({args.workers} workers) | per worker-core "
              f"{ratio:.2f}x / {steady_ratio:.2f}x; against {n} raw loops at once {steady / raw_n:.2f}x", flush=True)
        print(f"{label:8s} CPU per clip: raw decode {1000 * raw_cpu:6.1f} ms ({raw * raw_cpu:.2f} cores in use) | "
              f"DataModule {kind} {1000 * dm_cpu:6.1f} ms (workers + main) | raw / DataModule CPU "
              f"{raw_cpu / dm_cpu:.2f}x; {n} raw loops at once / DataModule CPU {raw_n_cpu / dm_cpu:.2f}x", flush=True)
        key = "uint8" if uint8 else "float"
        args.recorder.add(f"{label}, {kind}", {
            "raw_clips_per_s": raw, "raw_cpu_ms_per_clip": 1000 * raw_cpu, "raw_cores_in_use": raw * raw_cpu,
            f"raw_{n}_at_once_clips_per_s": raw_n, f"raw_{n}_at_once_cpu_ms_per_clip": 1000 * raw_n_cpu,
            "datamodule_clips_per_s": dm, "datamodule_steady_clips_per_s": steady,
            "datamodule_cpu_ms_per_clip": 1000 * dm_cpu, "ratio_per_worker": ratio, "steady_ratio_per_worker": steady_ratio,
            f"steady_ratio_{n}_at_once": steady / raw_n, "cpu_ratio": raw_cpu / dm_cpu,
            f"cpu_ratio_{n}_at_once": raw_n_cpu / dm_cpu, "workers": args.workers},
            ratio=raw_cpu / dm_cpu, ratio_of="raw decode CPU per clip (one loop alone) / DataModule CPU per clip")
        out.update({f"datamodule_{key}_clips_per_s": dm, f"datamodule_{key}_steady_clips_per_s": steady,
                    f"ratio_per_worker_{key}": ratio, f"steady_ratio_per_worker_{key}": steady_ratio,
                    f"steady_ratio_{n}_at_once_{key}": steady / raw_n,
                    f"datamodule_{key}_cpu_ms_per_clip": 1000 * dm_cpu, f"cpu_ratio_{key}": raw_cpu / dm_cpu,
                    f"cpu_ratio_{n}_at_once_{key}": raw_n_cpu / dm_cpu})
    parts = in_process_parts(root, args.frames, args.size, args.clips, args.batch, source=args.source)
    uint8_parts = parts["read_ms"] + parts["augment_ms"] + parts["collate_ms"]
    rest = out["datamodule_uint8_cpu_ms_per_clip"] - uint8_parts
    # the same work, slowed as the raw loops were (none where they were not: decoding 480p, each
    # loop mostly in its own core's caches; the in-process parts then vary run to run around the whole)
    shared = uint8_parts * max(0.0, raw_n_cpu / raw_cpu - 1)
    print(f"{label:8s} where a uint8 clip's CPU goes, one process without a frame cache: read {parts['read_ms']:.1f} ms "
          f"(raw decode loop {1000 * raw_cpu:.1f}) + augment {parts['augment_ms']:.1f} + collate (stack + tokenize) "
          f"{parts['collate_ms']:.1f}" + ("" if args.frame_cache_mb and args.source == "frames" else
                                          f"; the DataModule's remaining {rest:.1f} ms: {shared:.1f} from {n} cores "
                                          f"working at once (the parts x {max(0.0, raw_n_cpu / raw_cpu - 1):.2f}, as the raw "
                                          f"loops), {rest - shared:.1f} worker processes, the batch's transfer, the "
                                          f"loader") + f". A float batch adds {parts['float_extra_ms']:.1f} ms: the "
          f"collate's normalising pass writes 4x the bytes of the uint8 copy (DataModule float - uint8: "
          f"{out['datamodule_float_cpu_ms_per_clip'] - out['datamodule_uint8_cpu_ms_per_clip']:.1f} ms)", flush=True)
    out["parts_ms_per_clip"] = parts
    args.recorder.add(f"{label}, where a uint8 clip's CPU goes (one process)", {
        **parts, "raw_cpu_ms_per_clip": 1000 * raw_cpu,
        **({} if args.frame_cache_mb and args.source == "frames" else
           {"remaining_ms": rest, "cores_at_once_ms": shared, "worker_overhead_ms": rest - shared}),
        "float_minus_uint8_datamodule_ms": out["datamodule_float_cpu_ms_per_clip"] - out["datamodule_uint8_cpu_ms_per_clip"]})
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--clips", type=int, default=64)
    p.add_argument("--frames", type=int, default=16)
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--batch", type=int, default=8, help="clips per batch (the embedded default trains with 32)")
    p.add_argument("--source", choices=("videos", "frames"), default="videos",
                   help="read the sample's videos/ or its frames/ (the real clips have videos only)")
    p.add_argument("--frame-cache-mb", type=float, default=0.0,
                   help="with --source frames: decoded frames kept per worker (data.loader.frame_cache_mb; the embedded "
                        "default uses 512), timed after one untimed epoch")
    p.add_argument("--realdata", default=str(REPO.parent / "shared" / "realdata"))
    p.add_argument("--sample", default=str(REPO / "data" / "sample"))
    add_out_argument(p, __file__)
    args = p.parse_args()
    args.recorder = Recorder(__file__, args.out)
    out = {}
    clips_dir = Path(args.realdata) / "videos" / "cholec_clips"
    if args.source == "frames":
        pass
    elif clips_dir.is_dir():
        with tempfile.TemporaryDirectory() as tmp:
            out["cholec"] = bench("cholec", real_root(clips_dir, Path(tmp)), args)
    else:
        print(f"(no real clips at {clips_dir}: skipped)")
    out["sample"] = bench("sample", ensure_sample(args.sample), args)
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
