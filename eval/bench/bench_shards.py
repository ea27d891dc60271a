"""Packed shards: read rate per loader core against frame folders, video files and a bare JPEG
decode loop; pack throughput; one epoch of a SurgLaVi-β-size corpus through the DataModule with its
memory over the epoch.

    python eval/bench/bench_shards.py                          # both parts (the scale part takes minutes)
    python eval/bench/bench_shards.py --skip-scale             # the rates only
    python eval/bench/bench_shards.py --skip-rates --scale-videos 300 --scale-captions 5000   # a small proof

Rates: the real Cholec clips (../shared/realdata, read in place; a temporary SurgLaVi DB with 8-s
captions every second, as ``bench_data.py``) are packed (``--fps``, 224-px short side) and extracted
to frame folders at the same rate and size. The same ``--clips`` training clips (T = ``--frames``,
random sampling) are read in one process from each source, and each rate is clips per CPU-second of
that process (clips/s per loader core; CPU time, so the load of a shared machine moves it less):

- ``bare JPEG``: read the same stored frames' bytes from the shards (their offsets from the index)
  and decode them (``readers.decode_image``): the floor of any reader of these frames;
- ``shards raw``: ``ShardDataset`` items without a transform (sampling, ranged reads, decode);
- ``videos raw``: the same clips' frames decoded from the video files (``readers.read_clip``) at the
  size a training read decodes them at (``DecodeSize`` of the training transform);
- ``shards`` / ``frames`` / ``videos``: items with the training transform (random resized crop to
  224) from the shards, the frame folders and the video files (decoded at the transform's size).

Goals: shards raw >= 0.9x bare JPEG; shards raw >= 20x videos raw (and, for information, the same
with the transform, which then costs more than reading the shards).

Scale: ``--scale-videos`` short synthetic videos (32 px, 4 fps, 8-20 s) with ``--scale-captions``
captions at three levels, packed with ``--workers`` processes (captions/s, peak RSS), then one epoch
read through ``SurgLaViDataModule(read_from="shards")`` with ``--workers`` loader workers, the RSS of
the main process and its workers sampled along the epoch (flat: the last sample within a few MiB of
the first after warm-up).
"""
from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import resource
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from results import Recorder, add_out_argument  # noqa: E402  (eval/bench/results.py)

REALDATA = Path(os.environ.get("SURGCLIP_SHARED", REPO.parent / "shared")) / "realdata" / "videos" / "cholec_clips"


def rss_mib(pid: int | None = None) -> float:
    """Resident memory of a process (MiB), from /proc."""
    with open(f"/proc/{pid or os.getpid()}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def children(pid: int) -> list[int]:
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    if int(f.read().rsplit(")", 1)[1].split()[1]) == pid:
                        out.append(int(entry))
            except (OSError, IndexError, ValueError):
                continue
    return out


def per_core(fn, n: int) -> float:
    """Clips per CPU-second of this process over ``fn(i)`` for i < n."""
    fn(0)  # open what the loop keeps open
    c0 = time.process_time()
    for i in range(n):
        fn(i)
    return n / (time.process_time() - c0)


def rates(args, rec: Recorder) -> None:
    from bench_data import real_root

    from surgclip.data.dataset import ClipDataset, DecodeSize
    from surgclip.data.readers import open_source, read_clip
    from surgclip.data.db import CaptionDB
    from surgclip.data.extract import extract_frames
    from surgclip.data.pack import PackSettings, pack
    from surgclip.data.readers import decode_image
    from surgclip.data.shards import ShardDataset, load_index, shard_name
    from surgclip.sampling import sample_indices
    from surgclip.transform import ClipTransform, PreprocessCfg

    if not REALDATA.is_dir():
        sys.exit(f"no real clips at {REALDATA}: run with --skip-rates")
    with tempfile.TemporaryDirectory() as tmp:
        root = real_root(REALDATA, Path(tmp))
        db = root / "captions.sqlite"
        t0 = time.perf_counter()
        m = pack(db, str(root / "shards"), video_root=root / "videos", workers=args.workers, progress=False,
                 settings=PackSettings(fps=args.fps, min_frames=args.frames, max_frames=64, size=224))
        pack_s = time.perf_counter() - t0
        extract_frames(root / "videos", root / "frames", fps=args.fps, size=224, workers=args.workers, progress=False)
        table = CaptionDB(db).select()
        ix = load_index(str(root / "shards"))
        order = np.random.default_rng(0).permutation(len(ix.table))[: args.clips]
        cfg = PreprocessCfg.from_dict({"image_size": 224})
        aug = ClipTransform(cfg, train=True, normalize=False)
        T = args.frames
        shards_raw = ShardDataset(ix, num_frames=T, mode="random")
        shards = ShardDataset(ix, num_frames=T, mode="random", transform=aug)
        by_id = {int(c): i for i, c in enumerate(table.caption_id)}
        same = table.subset(np.array([by_id[int(ix.table.caption_id[i])] for i in range(len(ix.table))]))
        frames = ClipDataset(same, frames_root=root / "frames", num_frames=T, mode="random", transform=aug)
        videos = ClipDataset(same, video_root=root / "videos", num_frames=T, mode="random", transform=aug)
        fds = {}

        def bare(i):
            k = int(order[i % len(order)])
            n, dur = int(ix.count[k]), float(ix.table.end_s[k] - ix.table.start_s[k])
            idx = sample_indices(0.0, dur, n / dur, T, "random", np.random.default_rng([0, 0, k]), num_frames_in_video=n)
            name = shard_name(int(ix.shard[k]))
            fd = fds.get(name) or fds.setdefault(name, os.open(root / "shards" / name, os.O_RDONLY))
            first = int(ix.first[k])
            return np.stack([decode_image(os.pread(fd, int(ix.sizes[first + j]), int(ix.offsets[first + j])), name)
                             for j in idx])

        size = DecodeSize.for_transform(aug)  # what a training read decodes the video at
        readers = {}

        def videos_raw(i):
            k = by_id[int(ix.table.caption_id[int(order[i % len(order)])])]
            name = table.video_name[k]
            reader = readers.get(name) or readers.setdefault(name, open_source(
                root / "videos" / name / f"{name}.mp4", size=size))
            return read_clip(reader, table.start_s[k], table.end_s[k], T, "random", np.random.default_rng(i))[1]

        figures = {}
        for label, fn in (("bare_jpeg", bare), ("shards_raw", lambda i: shards_raw[int(order[i % len(order)])]),
                          ("videos_raw", videos_raw),
                          ("shards", lambda i: shards[int(order[i % len(order)])]),
                          ("frames", lambda i: frames[int(order[i % len(order)])]),
                          ("videos", lambda i: videos[int(order[i % len(order)])])):
            figures[f"{label}_clips_per_core_s"] = per_core(fn, args.video_clips if label.startswith("videos") else args.clips)
            print(f"{label:>10}: {figures[f'{label}_clips_per_core_s']:8.1f} clips/s per core", flush=True)
        c = m["counts"]
        rec.add(f"Cholec clips T={T} 224px, {args.clips} clips", figures,
                ratio=figures["shards_raw_clips_per_core_s"] / figures["bare_jpeg_clips_per_core_s"],
                ratio_of="shards raw / bare JPEG decode (clips per CPU-second)",
                raw_shards_vs_videos=figures["shards_raw_clips_per_core_s"] / figures["videos_raw_clips_per_core_s"],
                shards_vs_videos=figures["shards_clips_per_core_s"] / figures["videos_clips_per_core_s"],
                shards_vs_frames=figures["shards_clips_per_core_s"] / figures["frames_clips_per_core_s"])
        rec.add(f"pack Cholec clips ({c['packed']} captions, {args.workers} workers)",
                {"captions_per_s": c["packed"] / pack_s, "frames_per_s": c["frames"] / pack_s,
                 "mib": c["bytes"] / 2 ** 20, "pack_s": pack_s})
        print(f"shards raw / bare JPEG: {figures['shards_raw_clips_per_core_s'] / figures['bare_jpeg_clips_per_core_s']:.2f}x; "
              f"shards raw / videos raw: {figures['shards_raw_clips_per_core_s'] / figures['videos_raw_clips_per_core_s']:.1f}x; "
              f"with the transform: {figures['shards_clips_per_core_s'] / figures['videos_clips_per_core_s']:.1f}x; "
              f"pack: {c['packed'] / pack_s:.1f} captions/s")


def _video_job(job) -> None:
    import av

    path, seconds, seed = job
    rng = np.random.default_rng(seed)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with av.open(path, "w") as out:
        s = out.add_stream("libx264", rate=4)
        s.width = s.height = 32
        s.pix_fmt, s.options = "yuv420p", {"preset": "ultrafast"}
        for _ in range(seconds):
            colour = rng.integers(0, 255, 3, dtype=np.uint8)
            for _ in range(4):
                img = np.broadcast_to(colour, (32, 32, 3)).copy()
                img[rng.integers(0, 32), :] = 255  # a moving line: frames differ within a second
                for p in s.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                    out.mux(p)
        for p in s.encode():
            out.mux(p)


def make_scale_corpus(root: Path, n_videos: int, n_captions: int, workers: int) -> None:
    """``n_videos`` synthetic videos and a SurgLaVi-schema DB of ``n_captions`` captions (levels 1:2:3
    about 6:3:1, 1-4 s, 4-8 s and 8-16 s)."""
    from concurrent.futures import ProcessPoolExecutor

    from surgclip.data.importer import SCHEMA_SQL

    rng = np.random.default_rng(0)
    seconds = rng.integers(8, 21, n_videos)
    jobs = [(str(root / "videos" / f"v{k:05d}" / f"v{k:05d}.mp4"), int(seconds[k]), k) for k in range(n_videos)]
    with ProcessPoolExecutor(workers) as pool:
        list(pool.map(_video_job, jobs, chunksize=64))
    con = sqlite3.connect(root / "captions.sqlite")
    con.executescript(SCHEMA_SQL.read_text())
    con.executemany("INSERT INTO levels VALUES (?, ?)", [(1, "task"), (2, "step"), (3, "phase")])
    con.executemany("INSERT INTO videos (video_id, name, fps, duration, frame_count, procedure_type, specialty) "
                    "VALUES (?, ?, 4.0, ?, ?, 'synthetic', 'synthetic')",
                    [(k + 1, f"v{k:05d}", float(seconds[k]), int(seconds[k]) * 4) for k in range(n_videos)])
    video = rng.integers(0, n_videos, n_captions)
    level = rng.choice([1, 2, 3], n_captions, p=[0.6, 0.3, 0.1])
    lo, hi = np.array([0, 1.0, 4.0, 8.0]), np.array([0, 4.0, 8.0, 16.0])
    dur = np.minimum(rng.uniform(lo[level], hi[level]), seconds[video] - 0.5)
    start = rng.uniform(0, seconds[video] - dur)
    con.executemany("INSERT INTO captions (caption_id, video_id, video_name, level_id, raw_narration, start_time, "
                    "end_time, duration, is_surgical_content, is_descriptive, caption) VALUES (?, ?, ?, ?, 'x', ?, ?, "
                    "?, 1, 1, ?)",
                    [(i + 1, int(video[i]) + 1, f"v{int(video[i]):05d}", int(level[i]), float(start[i]),
                      float(start[i] + dur[i]), float(dur[i]), f"The surgeon does step {i % 997} of phase {level[i]}.")
                     for i in range(n_captions)])
    con.commit()
    con.close()


def _pack_job(root: Path, workers: int, queue) -> None:
    """Pack the scale corpus; put (manifest, the largest RSS of this process or one of its workers, MiB)."""
    from surgclip.data.pack import PackSettings, pack

    m = pack(root / "captions.sqlite", str(root / "shards"), video_root=root / "videos", workers=workers,
             progress=False, settings=PackSettings(fps=2.0, min_frames=8, max_frames=16, size=0))
    queue.put((m, max(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
                      resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss) / 1024))


class NoTokens:
    """A stand-in tokenizer (the bench times reading clips, not BERT's tokenizer): [N, 8] zeros."""

    def __call__(self, texts):
        import torch

        return torch.zeros(len(texts), 8, dtype=torch.long)


def scale(args, rec: Recorder) -> None:
    from surgclip.data.datamodule import SurgLaViDataModule

    with tempfile.TemporaryDirectory(dir=args.tmp) as tmp:
        root = Path(tmp)
        t0 = time.perf_counter()
        make_scale_corpus(root, args.scale_videos, args.scale_captions, args.workers)
        print(f"corpus: {args.scale_videos} videos, {args.scale_captions} captions in {time.perf_counter() - t0:.0f} s",
              flush=True)
        t0 = time.perf_counter()
        ctx = mp.get_context("fork")  # the pack in a process of its own: its peak RSS is the pack's alone
        queue = ctx.Queue()
        proc = ctx.Process(target=_pack_job, args=(root, args.workers, queue))
        proc.start()
        m, pack_peak = queue.get()
        proc.join()
        pack_s = time.perf_counter() - t0
        c = m["counts"]
        print(f"pack: {c['packed']} captions, {c['shards']} shards, {c['bytes'] / 2 ** 20:.0f} MiB in {pack_s:.0f} s "
              f"({c['packed'] / pack_s:.0f} captions/s); peak RSS of one pack process {pack_peak:.0f} MiB", flush=True)
        rec.add(f"pack {c['packed']} captions over {args.scale_videos} videos ({args.workers} workers)",
                {"captions_per_s": c["packed"] / pack_s, "frames_per_s": c["frames"] / pack_s, "pack_s": pack_s,
                 "shards": c["shards"], "mib": c["bytes"] / 2 ** 20, "peak_rss_mib": pack_peak})
        dm = SurgLaViDataModule(root=str(root), read_from="shards", shards=str(root / "shards"), num_frames=8,
                                batch_size=args.batch, num_workers=args.workers, seed=0,
                                loader={"uint8_video": True})
        dm.set_model(NoTokens(), {"image_size": 32})
        dm.setup("fit")
        n_train = len(dm.datasets["train"])
        loader = dm.train_dataloader()
        samples, items, t0 = [], 0, time.perf_counter()
        for b, batch in enumerate(loader):
            items += int(batch["valid"].sum())
            if b % 20 == 0:
                samples.append(rss_mib() + sum(rss_mib(p) for p in children(os.getpid())))
        wall = time.perf_counter() - t0
        samples.append(rss_mib() + sum(rss_mib(p) for p in children(os.getpid())))
        warm = samples[min(len(samples) - 1, max(1, len(samples) // 10))]
        print(f"epoch: {items} of {n_train} training clips in {wall:.0f} s ({items / wall:.0f} clips/s, "
              f"{args.workers} workers); RSS main + workers after warm-up {warm:.0f} MiB, at the end {samples[-1]:.0f} "
              f"MiB, max {max(samples):.0f} MiB", flush=True)
        rec.add(f"one epoch from shards, {items} clips T=8 ({args.workers} workers, batch {args.batch})",
                {"clips_per_s": items / wall, "epoch_s": wall, "rss_after_warmup_mib": warm,
                 "rss_end_mib": samples[-1], "rss_max_mib": max(samples)},
                ratio=samples[-1] / warm, ratio_of="RSS at the end / RSS after 10 % of the epoch")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clips", type=int, default=200)
    ap.add_argument("--video-clips", type=int, default=48, help="clips for the (slow) video row")
    ap.add_argument("--frames", type=int, default=16)
    ap.add_argument("--fps", type=float, default=4.0)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--scale-videos", type=int, default=6812)
    ap.add_argument("--scale-captions", type=int, default=113000)
    ap.add_argument("--tmp", default=None, help="folder for the scale corpus (default: the system's)")
    ap.add_argument("--skip-rates", action="store_true")
    ap.add_argument("--skip-scale", action="store_true")
    add_out_argument(ap, __file__)
    args = ap.parse_args()
    rec = Recorder(__file__, args.out)
    if not args.skip_rates:
        rates(args, rec)
    if not args.skip_scale:
        scale(args, rec)


if __name__ == "__main__":
    main()
