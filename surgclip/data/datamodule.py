"""SurgLaViDataModule: caption DB + videos/frame folders -> train / val / test DataLoaders.

One query at ``setup`` selects the clips; videos are split by name (``splits.json`` or a seeded
split), so a video never lands in two splits. Training mixes levels in one pool, or samples them
with per-level weights, and can include a level only every k epochs (PeskaVLP-style schedule,
applied in ``train_dataloader`` each epoch). Tokenizing happens in the collate.

With workers, each split's loader is built once and its workers persist across epochs (``train_dataloader``
moves the same loader's sampler and dataset to the new epoch; the dataset's epoch is shared memory):
an epoch does not pay for starting workers, and each worker keeps its open decoders. A change of the
active levels (``level_every``) builds a new training loader.
"""
from __future__ import annotations

import json
import logging
from dataclasses import asdict
from pathlib import Path

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, DistributedSampler

from ..compat import unstarted_loader_iterator
from ..transform import ClipTransform, PreprocessCfg
from .batch_pool import BatchPool
from .dataset import ClipDataset, PaddedCollate, worker_init
from .db import CaptionDB, ClipTable
from .options import CaptionOptions, DataPaths, LoaderOptions, as_group
from ..sample import DEFAULT_ROOT, ensure_sample

log = logging.getLogger(__name__)


class LevelSampler(DistributedSampler):
    """Indices of one epoch: active levels only, optionally drawn with per-level weights, dealt to ranks.

    The epoch's order is a function of (seed, epoch) alone; with ``num_replicas`` ranks, rank ``r``
    takes positions ``r, r + R, r + 2R, ...`` (padded with the head of the order to a multiple of R,
    as DistributedSampler does). Global batch k on R ranks therefore holds the same items as batch k
    of one process with the same global batch. It subclasses DistributedSampler only so that
    Lightning does not wrap it in another (shuffling) distributed sampler.

    Args:
        levels: int64 [N] level of each item.
        active: levels included this epoch.
        weights: level -> weight (each level's share of the epoch); None = every active item once,
            shuffled.
        seed, epoch: the permutation / draw is a function of both (``set_epoch`` changes the epoch).
        num_replicas, rank: this process's share of the epoch.
    """

    def __init__(self, levels: np.ndarray, active: list[int], weights: dict | None, seed: int, epoch: int,
                 num_replicas: int = 1, rank: int = 0):
        # DistributedSampler.__init__ is not called: it wants a dataset and an initialised process group
        self.levels, self.weights, self.seed, self.epoch = levels, weights, seed, epoch
        self.num_replicas, self.rank = int(num_replicas), int(rank)
        self._resume = (None, 0)
        self.set_active(active)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def resume(self, epoch: int, items: int) -> None:
        """Start epoch ``epoch`` of this rank's share after its first ``items`` items (a run resumed
        mid-epoch: they were trained on before the checkpoint); ``len`` stays the whole share, as
        Lightning counts the resumed epoch's batches from where it stopped. Other epochs are whole."""
        self._resume = (int(epoch), int(items))

    def set_active(self, active: list[int]) -> None:
        """Include these levels from now on (``level_every`` schedules)."""
        pool = np.flatnonzero(np.isin(self.levels, active))
        if pool.size == 0:
            raise ValueError(f"no training clips at levels {active} (levels present: {sorted(set(self.levels.tolist()))})")
        self.active, self.pool = list(active), pool

    def __len__(self) -> int:
        return -(-int(self.pool.size) // self.num_replicas)

    def order(self) -> list[int]:
        """The whole epoch's order (all ranks)."""
        rng = np.random.default_rng([self.seed, self.epoch])
        if not self.weights:
            return rng.permutation(self.pool).tolist()
        per_item = np.array([float(self.weights.get(int(lv), 0.0)) for lv in self.levels[self.pool]])
        counts = {lv: np.sum(self.levels[self.pool] == lv) for lv in self.active}
        per_item /= np.array([counts[int(lv)] for lv in self.levels[self.pool]])
        if per_item.sum() <= 0:
            raise ValueError(f"level_weights {self.weights} give zero weight to every active level {self.active}")
        return rng.choice(self.pool, size=self.pool.size, replace=True, p=per_item / per_item.sum()).tolist()

    def __iter__(self):
        order = self.order()
        total = len(self) * self.num_replicas
        order += order[: total - len(order)]  # equal shares: every rank takes the same number of steps
        mine = order[self.rank::self.num_replicas]
        epoch, done = self._resume
        return iter(mine[done:] if epoch == self.epoch else mine)


class EpochLoader(DataLoader):
    """A DataLoader whose persistent workers start each epoch once.

    ``iter()`` called again before any batch of the current iterator was taken, with the sampler
    still at the same epoch, returns that iterator instead of resetting the workers. Lightning (2.6)
    calls ``iter()`` twice at the start of every epoch after the first when the dataloaders are
    reloaded every epoch (``reload_dataloaders_every_n_epochs: 1``, which the level schedules
    need): with persistent workers a second reset waits for the batches the first queued
    (``prefetch_factor`` per worker) and throws them away, every epoch's wait and the workers' CPU
    for those batches spent for nothing.
    """

    def __iter__(self):
        it = unstarted_loader_iterator(self) if self.persistent_workers else None
        epoch = getattr(self.sampler, "epoch", None)
        if it is not None and getattr(self, "_iter_epoch", None) == epoch:
            return it
        it = super().__iter__()
        self._iter_epoch = epoch
        return it


def split_videos(names: list[str], seed: int, val_fraction: float = 0.1) -> dict:
    """A seeded split of video names into train / val (used when there is no splits file)."""
    names = sorted(names)
    order = np.random.default_rng(seed).permutation(len(names))
    n_val = max(1, int(round(len(names) * val_fraction))) if len(names) > 1 else 0
    val = sorted(names[i] for i in order[:n_val])
    return {"train": sorted(set(names) - set(val)), "val": val, "test": []}


class SurgLaViDataModule(L.LightningDataModule):
    """Clip-caption batches from a SurgLaVi-schema DB.

    Args:
        root: a sample-style root (``captions.sqlite``, ``videos/``, ``frames/``, ``splits.json``);
            the default sample is generated on first use. None: ``paths.db_path`` and
            ``paths.video_root`` or ``paths.frames_root`` are required.
        read_from: under ``root``, read clips from its ``videos`` (H.264 files) or its ``frames``
            (frame folders written by ``extract-frames``: the fast path); ``shards``: training clips
            from ``shards`` (validation and test from the root's ``frames`` when it has them, else
            its videos, or from ``paths``).
        model_name: tokenizer and preprocessing from ``surgclip.get_tokenizer`` /
            ``get_model_config(model_name)["preprocess"]`` (or call ``set_model``).
        num_frames: frames per clip (T).
        levels: caption levels used (1 task, 2 step, 3 phase).
        level_weights: per-level sampling weights for training; None = one mixed pool.
        level_every: level -> k: include that level in training only every k-th epoch.
        batch_size: GLOBAL batch size; divided by the number of devices in ``setup``.
        num_workers: DataLoader workers.
        train_sampling: sampler mode for training (``random`` | ``dynamic`` | ``uniform`` ...).
        skip_errors: skip and count bad items (reported per epoch) instead of raising.
        seed: split and sampling seed.
        paths: ``DataPaths`` (database, media and splits outside ``root``).
        captions: ``CaptionOptions`` (which caption rows are selected).
        loader: ``LoaderOptions`` (worker start, uint8 batches, frame cache, pinned memory).
        shards: with ``read_from: shards``, the folder or fsspec URL (``s3://bucket/prefix``) that
            ``surgclip data pack`` wrote: the training split's rows at ``levels`` are read from it
            (``data.shards.ShardDataset``).
    """

    def __init__(self, root: str | None = DEFAULT_ROOT, read_from: str = "videos", model_name: str = "tiny",
                 num_frames: int = 8, levels: list[int] = [1, 2, 3],  # noqa: B006 (LightningCLI needs a literal)
                 level_weights: dict[int, float] | None = None, level_every: dict[int, int] | None = None,
                 batch_size: int = 8, num_workers: int = 0, train_sampling: str = "random",
                 skip_errors: bool = False, seed: int = 0, paths: DataPaths | None = None,
                 captions: CaptionOptions | None = None, loader: LoaderOptions | None = None,
                 shards: str | None = None):
        super().__init__()
        if read_from not in ("videos", "frames", "shards"):
            raise ValueError(f"data.read_from must be 'videos', 'frames' or 'shards', got {read_from!r}")
        if (read_from == "shards") != bool(shards):
            raise ValueError("data.read_from is 'shards': give data.shards (the folder or URL that `surgclip data "
                             "pack --out` wrote)" if read_from == "shards" else
                             f"data.shards is set but data.read_from is {read_from!r}: add --data.read_from shards")
        self.paths = as_group(DataPaths, paths, "data.paths")
        self.captions = as_group(CaptionOptions, captions, "data.captions")
        self.loader = as_group(LoaderOptions, loader, "data.loader")
        # hyper-parameters hold plain values (checkpoints load with weights_only)
        self.save_hyperparameters(ignore=["paths", "captions", "loader"])
        self.hparams.update(paths=asdict(self.paths), captions=asdict(self.captions), loader=asdict(self.loader))
        self.levels = [int(x) for x in levels]
        self.level_weights = {int(k): float(v) for k, v in (level_weights or {}).items()} or None
        self.level_every = {int(k): int(v) for k, v in (level_every or {}).items()} or None
        self.tokenizer, self.preprocess_cfg = None, None
        self.datasets: dict[str, ClipDataset] = {}
        self._loaders: dict[str, DataLoader] = {}  # kept with their persistent workers (num_workers > 0)
        self.batch_size_per_device = batch_size
        self.skipped_total: dict[str, int] = {}
        self.setup_dropped: dict = {}
        self._resume_at: tuple[int, int] | None = None  # (epoch, batches trained) of a mid-epoch checkpoint

    # -- model-dependent parts ------------------------------------------------------------------
    def set_model(self, tokenizer, preprocess_cfg: dict | PreprocessCfg) -> None:
        """Use this tokenizer (callable list[str] -> LongTensor [N, L]) and preprocessing config."""
        self.tokenizer = tokenizer
        self._loaders = {}  # the workers hold the old transform and tokenizer
        self.preprocess_cfg = preprocess_cfg if isinstance(preprocess_cfg, PreprocessCfg) else PreprocessCfg.from_dict(preprocess_cfg)
        for split, ds in self.datasets.items():
            ds.transform = ClipTransform(self.preprocess_cfg, train=(split == "train"), normalize=False)

    def _ensure_model(self) -> None:
        if self.tokenizer is None:
            from ..factory import get_model_config, get_tokenizer

            self.set_model(get_tokenizer(self.hparams.model_name),
                           get_model_config(self.hparams.model_name).get("preprocess", {}))

    # -- paths ---------------------------------------------------------------------------------
    def _paths(self) -> tuple[Path, Path | None, Path | None, Path | None]:
        hp, paths = self.hparams, self.paths
        if hp.root is None:  # the GPU configs: every path given on its own
            if not paths.db_path or not (paths.video_root or paths.frames_root):
                raise ValueError("data.root is null: give data.paths.db_path and data.paths.video_root or "
                                 "data.paths.frames_root (or a sample-style data.root)")
            root = None
        else:
            root = Path(hp.root)
            if paths.db_path is None and root == Path(DEFAULT_ROOT) and not (root / "manifest.json").is_file():
                ensure_sample(root, seed=0)
        db = Path(paths.db_path) if paths.db_path else root / "captions.sqlite"
        # an explicit frames_root or video_root wins over the root's folder named by read_from
        frames = Path(paths.frames_root) if paths.frames_root else None
        if frames is None and not paths.video_root and root is not None and hp.read_from == "shards" and \
                (root / "frames").is_dir():
            frames = root / "frames"  # validation and test read the frame folders when the root has them
        if frames is None and not paths.video_root and root is not None and hp.read_from == "frames":
            frames = root / "frames"
            if not frames.is_dir():
                raise FileNotFoundError(f"data.read_from is 'frames' but {frames} does not exist: make it with "
                                        f"`surgclip data extract-frames {root / 'videos'} {frames} --size 0`, or read "
                                        f"the videos (data.read_from: videos)")
        videos = Path(paths.video_root) if paths.video_root else (root / "videos" if frames is None else None)
        if paths.splits_file:
            splits = Path(paths.splits_file)
        else:
            splits = root / "splits.json" if root is not None and (root / "splits.json").is_file() else None
        return db, videos, frames, splits

    def _splits(self, path: Path | None, table: ClipTable) -> dict:
        if path is None:
            return split_videos(table.videos(), self.hparams.seed)
        splits = json.loads(Path(path).read_text())
        missing = {"train", "val"} - set(splits)
        if missing:
            raise ValueError(f"{path}: expected keys 'train' and 'val' (and optionally 'test'), missing {sorted(missing)}")
        seen: dict = {}
        for split, names in splits.items():
            for name in names:
                if name in seen:
                    raise ValueError(f"{path}: video {name!r} is in both '{seen[name]}' and '{split}'")
                seen[name] = split
        return {k: list(splits.get(k, [])) for k in ("train", "val", "test")}

    # -- Lightning hooks -----------------------------------------------------------------------
    def setup(self, stage: str | None = None) -> None:
        """Select clips (one DB query), split by video, build the datasets; check the batch split."""
        hp = self.hparams
        trainer = getattr(self, "trainer", None)
        if trainer is not None:
            world = int(getattr(trainer, "world_size", 1) or 1)
            if hp.batch_size % world:
                raise ValueError(f"batch_size {hp.batch_size} (global) does not divide across {world} devices; "
                                 f"choose a multiple of {world}")
            self.batch_size_per_device = hp.batch_size // world
        if self.datasets:
            return
        self._ensure_model()
        db, videos, frames, splits_path = self._paths()
        cap = self.captions
        table = CaptionDB(db).select(levels=self.levels, min_duration=cap.min_duration, max_duration=cap.max_clip_s,
                                     text_field=cap.text_field, clean=cap.clean, skip_errors=hp.skip_errors)
        self.setup_dropped = dict(table.dropped)
        if table.dropped:
            log.warning("skipped %d invalid caption rows at setup: %s", sum(table.dropped.values()), table.dropped)
        splits = self._splits(splits_path, table)
        names = np.asarray(table.video_name, dtype=object)
        for split, mode in (("train", hp.train_sampling), ("val", "uniform"), ("test", "uniform")):
            if split == "train" and hp.read_from == "shards":
                continue  # read from the pack below
            keep = np.isin(names, list(splits[split])) if len(names) else np.zeros(0, bool)
            self.datasets[split] = ClipDataset(
                table.subset(keep), video_root=videos, frames_root=frames, frames_fps=self.paths.frames_fps,
                num_frames=hp.num_frames, mode=mode,
                # items stay uint8; the collate normalises a whole batch at once (or, with
                # uint8_video, the model does after the transfer)
                transform=ClipTransform(self.preprocess_cfg, train=split == "train", normalize=False),
                skip_errors=hp.skip_errors, seed=hp.seed,
                frame_cache_mb=self.loader.frame_cache_mb if split == "train" else 0.0)  # read every epoch
        if hp.read_from == "shards":
            from .shards import ShardDataset, load_index, training_rows

            rows = training_rows(load_index(hp.shards), self.levels, splits["train"], text_field=cap.text_field,
                                 clean=cap.clean, min_duration=cap.min_duration, max_duration=cap.max_clip_s)
            self.datasets["train"] = ShardDataset(rows, num_frames=hp.num_frames, mode=hp.train_sampling, seed=hp.seed,
                                                  transform=ClipTransform(self.preprocess_cfg, train=True, normalize=False))
        if len(self.datasets["train"]) == 0:
            raise ValueError(f"no training clips: {db} at levels {self.levels} with splits "
                             f"{splits_path or 'seeded'} selects none")

    def active_levels(self, epoch: int) -> list[int]:
        """Levels included in training at ``epoch`` under ``level_every``."""
        every = self.level_every or {}
        return [lv for lv in self.levels if epoch % max(1, every.get(lv, 1)) == 0]

    def _loader(self, split: str, sampler=None) -> DataLoader:
        if not self.datasets:
            self.setup()
        hp = self.hparams
        workers, prefetch = hp.num_workers, 4
        # training: each worker's batches outstanding, and the one the main process works on, reuse
        # their shared-memory buffers (``BatchPool``) instead of a fresh zeroed one per batch. Not for
        # validation, whose persistent workers would hold theirs idle through the training epochs.
        pool = BatchPool(workers, prefetch + 1) if workers and split == "train" else None
        return EpochLoader(self.datasets[split], batch_size=self.batch_size_per_device, sampler=sampler,
                          shuffle=False, num_workers=workers,
                          collate_fn=PaddedCollate(self.tokenizer, self._blank(), pool=pool,
                                                   normalize=None if self.loader.uint8_video else self.preprocess_cfg),
                          pin_memory=self.loader.pin_memory, drop_last=split == "train" and sampler is not None and
                          len(sampler) >= self.batch_size_per_device,
                          persistent_workers=workers > 0, prefetch_factor=prefetch if workers else None,
                          # its own generator: creating an iterator never draws from the global RNG,
                          # so dropout etc. repeat exactly after a resume
                          generator=torch.Generator().manual_seed(hp.seed),
                          worker_init_fn=worker_init if workers else None,
                          multiprocessing_context=_worker_context(self.loader.worker_start) if workers else None)

    def _cached(self, split: str, loader: DataLoader) -> DataLoader:
        """Keep a loader whose workers persist, to hand out again next epoch."""
        if loader.num_workers:
            self._loaders[split] = loader
        return loader

    def _kept_or_new(self, split: str) -> DataLoader:
        if not self.datasets:
            self.setup()
        loader = self._loaders.get(split)
        if loader is not None and loader.dataset is self.datasets[split]:
            return loader
        return self._cached(split, self._loader(split))

    def _blank(self) -> dict:
        """A stand-in item for batches whose items were all skipped (masked out of the loss)."""
        size, hp = self.preprocess_cfg.image_size, self.hparams
        # items stay uint8 until the collate (which normalises unless ``uint8_video``)
        return {"video": torch.zeros(hp.num_frames, 3, size, size, dtype=torch.uint8), "caption": "", "level": 0,
                "video_id": "", "caption_id": -1, "start_s": 0.0, "end_s": 0.0}

    def train_dataloader(self) -> DataLoader:
        """Training clips of the levels active this epoch, in this epoch's order (with workers: the same
        loader and workers as last epoch while the active levels stay the same)."""
        trainer = getattr(self, "trainer", None)
        epoch = int(trainer.current_epoch) if trainer is not None else 0
        self.report_skipped("train")
        if not self.datasets:
            self.setup()
        ds = self.datasets["train"]
        ds.set_epoch(epoch)
        world = int(getattr(trainer, "world_size", 1) or 1)
        rank = int(getattr(trainer, "global_rank", 0) or 0)
        active = self.active_levels(epoch)
        loader = self._loaders.get("train")
        if loader is not None and loader.dataset is ds and loader.sampler.active == active and \
                (loader.sampler.num_replicas, loader.sampler.rank) == (world, rank):
            loader.sampler.set_epoch(epoch)  # the same workers go on with the new epoch's order
            self._resume_sampler(loader.sampler, epoch)
            return loader
        sampler = LevelSampler(ds.table.level, active, self.level_weights, self.hparams.seed, epoch,
                               num_replicas=world, rank=rank)
        self._resume_sampler(sampler, epoch)
        return self._cached("train", self._loader("train", sampler))

    def _resume_sampler(self, sampler: LevelSampler, epoch: int) -> None:
        if self._resume_at is not None and self._resume_at[0] == epoch:
            sampler.resume(epoch, self._resume_at[1] * self.batch_size_per_device)
            self._resume_at = None

    # -- mid-epoch checkpoints -------------------------------------------------------------------
    def state_dict(self) -> dict:
        """Where training stands in its epoch, for the checkpoint: ``{"train_epoch", "train_batches"}``
        (the batches trained this epoch, Lightning's own count). A run resumed from a checkpoint taken
        mid-epoch then starts that epoch's order at the next batch it had not trained on, instead of
        training the epoch's first batches again."""
        trainer = getattr(self, "trainer", None)
        loop = getattr(getattr(trainer, "fit_loop", None), "epoch_loop", None)
        done = int(loop.batch_progress.current.processed) if loop is not None else 0
        return {"train_epoch": int(trainer.current_epoch), "train_batches": done} if done else {}

    def load_state_dict(self, state: dict) -> None:
        """Resume at the position ``state_dict`` saved (applied by the next ``train_dataloader`` of that epoch)."""
        if state.get("train_batches"):
            self._resume_at = (int(state["train_epoch"]), int(state["train_batches"]))

    def val_dataloader(self) -> DataLoader:
        """Held-out (val split) clips, uniform sampling, no augmentation."""
        return self._kept_or_new("val")

    def test_dataloader(self) -> DataLoader:
        """Test split clips, uniform sampling, no augmentation."""
        return self._kept_or_new("test")

    # -- skipped items ---------------------------------------------------------------------------
    def report_skipped(self, split: str | None = None) -> dict[str, int]:
        """Items skipped since the last report (all worker processes), per split; logs a warning.

        Call at epoch end (``SkippedItemsCallback`` does); totals accumulate in ``skipped_total``.
        """
        out = {}
        for name, ds in self.datasets.items():
            if split is not None and name != split:
                continue
            n = ds.skipped.take()
            if n:
                out[name] = n
                self.skipped_total[name] = self.skipped_total.get(name, 0) + n
                log.warning("skipped %d bad %s items this epoch (total %d); see skip_errors", n, name,
                            self.skipped_total[name])
        return out


class SkippedItemsCallback(L.Callback):
    """Reports and logs ``data/skipped_{split}`` from the DataModule at the end of every epoch."""

    def _report(self, trainer, pl_module, split: str) -> None:
        dm = getattr(trainer, "datamodule", None)
        if isinstance(dm, SurgLaViDataModule):
            # logged on every rank every epoch (0 included): a key logged by one rank only would
            # leave the other rank waiting in the sync
            n = dm.report_skipped(split).get(split, 0)
            pl_module.log(f"data/skipped_{split}", float(n), on_epoch=True, sync_dist=True, reduce_fx="sum")

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self._report(trainer, pl_module, "train")

    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        self._report(trainer, pl_module, "val")


def _worker_context(method: str):
    import multiprocessing as mp

    if method not in ("forkserver", "spawn", "fork"):
        raise ValueError(f"worker_start must be forkserver, spawn or fork, got {method!r}")
    ctx = mp.get_context(method)
    if method == "forkserver":  # import the heavy modules once in the server, not in every worker
        ctx.set_forkserver_preload(["torch", "torchvision", "decord", "surgclip.data.dataset", "surgclip.transform"])
    return ctx
