"""Dataset, collate and DataModule on a small generated sample: shapes, splits, levels, bad items."""
import json
import shutil
import types

import numpy as np
import pytest
import torch

from surgclip.data.dataset import BadItemError, ClipDataset, Collate
from surgclip.data.datamodule import LevelSampler, SurgLaViDataModule
from surgclip.data.db import CaptionDB
from surgclip.transform import ClipTransform

TINY_PRE = {"image_size": 32}


def dm_for(root, **kw):
    dm = SurgLaViDataModule(root=str(root), num_frames=4, batch_size=4, **kw)
    from surgclip import get_tokenizer

    dm.set_model(get_tokenizer("tiny"), TINY_PRE)
    return dm


def test_batch_contract_and_split_by_video(small_sample):
    dm = dm_for(small_sample)
    dm.setup()
    splits = json.loads((small_sample / "splits.json").read_text())
    for split, ds in dm.datasets.items():
        assert set(ds.table.video_name) <= set(splits[split])
    assert not set(dm.datasets["train"].table.video_name) & set(dm.datasets["val"].table.video_name)
    b = next(iter(dm.train_dataloader()))
    assert b["video"].shape == (4, 4, 3, 32, 32) and b["video"].dtype == torch.float32
    assert b["tokens"].dtype == torch.long and b["tokens"].shape[0] == 4
    assert b["level"].dtype == torch.long and b["caption_id"].dtype == torch.long
    assert b["start_s"].shape == (4,) and len(b["video_id"]) == 4 and len(b["caption"]) == 4
    assert torch.all(b["end_s"] > b["start_s"])
    v1, v2 = (next(iter(dm.val_dataloader())) for _ in range(2))
    assert torch.equal(v1["video"], v2["video"])  # val: uniform, no augmentation


def test_train_augmentation_same_for_every_frame(small_sample):
    table = CaptionDB(small_sample / "captions.sqlite").select(levels=[3])
    ds = ClipDataset(table, video_root=small_sample / "videos", num_frames=3, mode="uniform", transform=None)
    frames = ds[0]["video"].numpy()
    same = np.repeat(frames[:1], 3, axis=0)  # three identical frames -> identical outputs iff one draw per clip
    out = ClipTransform(TINY_PRE, train=True)(same)
    assert torch.allclose(out[0], out[1]) and torch.allclose(out[0], out[2])


def test_level_weights_and_schedule(small_sample):
    levels = np.array([1] * 80 + [2] * 15 + [3] * 5)
    s = LevelSampler(levels, [1, 2, 3], {1: 1, 2: 1, 3: 2}, seed=0, epoch=0)
    drawn = levels[list(s)]
    share = np.bincount(drawn, minlength=4)[1:] / len(drawn)
    assert np.allclose(share, [0.25, 0.25, 0.5], atol=0.12)
    assert list(LevelSampler(levels, [1, 2, 3], None, 0, 1)) != list(LevelSampler(levels, [1, 2, 3], None, 0, 2))
    dm = dm_for(small_sample, level_every={3: 2, 2: 3})
    dm.setup()
    assert dm.active_levels(0) == [1, 2, 3] and dm.active_levels(1) == [1] and dm.active_levels(2) == [1, 3]
    dm.trainer = types.SimpleNamespace(current_epoch=1, world_size=1)
    loader = dm.train_dataloader()
    assert set(dm.datasets["train"].table.level[list(loader.sampler)]) == {1}


@pytest.mark.slow
def test_persistent_workers_follow_the_epoch(small_sample):
    dm = dm_for(small_sample, num_workers=1, level_every={3: 2})
    dm.setup()
    ds, batches, pids = dm.datasets["train"], {}, set()
    loaders = []
    for epoch in (0, 2, 1):  # epoch 1 leaves level 3 out: a new sampler, so a new loader
        dm.trainer = types.SimpleNamespace(current_epoch=epoch, world_size=1)
        loader = dm.train_dataloader()
        loaders.append(loader)
        batches[epoch] = (next(iter(loader)), list(loader.sampler)[:4])
        pids.add(loader._iterator._workers[0].pid)
    assert loaders[1] is loaders[0] and loaders[2] is not loaders[0]
    assert len(pids) == 2  # epochs 0 and 2 ran in the same worker process
    for epoch, (batch, order) in batches.items():  # the worker drew each epoch's frames and augmentation
        ds.set_epoch(epoch)
        ref = loaders[0].collate_fn([ds[i] for i in order])
        assert batch["caption_id"].tolist() == ref["caption_id"].tolist()
        assert torch.equal(batch["video"], ref["video"]), epoch


@pytest.mark.slow
def test_workers_start_each_epoch_once(small_sample, monkeypatch):
    """Lightning calls iter() twice at an epoch's start when it reloads the loaders every epoch: the
    second call gets the iterator the first started (no second reset of the workers), and every epoch
    still delivers its own order."""
    import torch.utils.data.dataloader as tud

    resets = []
    reset = tud._MultiProcessingDataLoaderIter._reset
    monkeypatch.setattr(tud._MultiProcessingDataLoaderIter, "_reset",
                        lambda self, loader, first_iter=False: resets.append(first_iter) or reset(self, loader, first_iter))
    dm = dm_for(small_sample, num_workers=1)
    dm.setup()
    for epoch in (0, 1, 2):
        dm.trainer = types.SimpleNamespace(current_epoch=epoch, world_size=1)
        loader = dm.train_dataloader()
        first = iter(loader)
        assert iter(loader) is first  # nothing taken yet, same epoch: no reset
        ids = [i for b in first for i in b["caption_id"].tolist()]
        assert len(ids) == len(loader) * 4  # whole batches (drop_last)
        assert ids == dm.datasets["train"].table.caption_id[list(loader.sampler)[:len(ids)]].tolist()
        assert resets == [True] + [False] * epoch  # one reset per epoch (the first when the workers start)
    assert iter(loader) is first and resets[-1] is False and len(resets) == 4  # exhausted: a new epoch's reset
    loader.sampler.set_epoch(7)  # another epoch before any batch was taken: reset, not the started iterator
    iter(loader)
    assert len(resets) == 5


def test_global_batch_must_divide(small_sample):
    dm = dm_for(small_sample)
    dm.hparams.batch_size = 6
    dm.trainer = types.SimpleNamespace(current_epoch=0, world_size=4)
    with pytest.raises(ValueError, match="batch_size 6 .* does not divide across 4 devices"):
        dm.setup("fit")
    dm.hparams.batch_size = 8
    dm.setup("fit")
    assert dm.batch_size_per_device == 2


def _broken_root(small_sample, tmp_path):
    root = tmp_path / "broken"
    shutil.copytree(small_sample, root)
    train = json.loads((root / "splits.json").read_text())["train"]
    (root / "videos" / train[0] / f"{train[0]}.mp4").write_bytes(b"")  # zero-byte video
    shutil.rmtree(root / "videos" / train[1])  # missing video
    return root, train


def test_bad_items_raise_with_ids(small_sample, tmp_path):
    root, train = _broken_root(small_sample, tmp_path)
    dm = dm_for(root)
    dm.setup()
    ds = dm.datasets["train"]
    bad = ds.table.video_name.index(train[0])
    with pytest.raises(BadItemError, match=rf"caption {ds.table.caption_id[bad]} \(video '{train[0]}'.*empty"):
        ds[bad]
    good = next(i for i, n in enumerate(ds.table.video_name) if n not in train[:2])
    ds.table.end_s[good] = 1e4  # a clip ending far past its video
    with pytest.raises(BadItemError, match=rf"caption {ds.table.caption_id[good]} .*past the video's end"):
        ds[good]


@pytest.mark.slow
def test_skip_errors_counted_across_workers(small_sample, tmp_path):
    root, train = _broken_root(small_sample, tmp_path)
    dm = dm_for(root, skip_errors=True, num_workers=2)
    dm.setup()
    ds = dm.datasets["train"]
    bad = np.isin(ds.table.video_name, train[:2])
    fetched = (len(ds) // 4) * 4  # the train loader drops the last incomplete batch before fetching it
    seen, valid, skipped_in_batches = 0, 0, 0
    loader = dm.train_dataloader()
    expected = int(bad[list(loader.sampler)[:fetched]].sum())
    assert expected > 0
    for b in loader:  # skipped items are padded with copies of valid ones, so batches keep their size
        seen += len(b["video_id"])
        valid += int(b["valid"].sum())
        skipped_in_batches += b["num_skipped"]
        assert b["num_skipped"] == int((~b["valid"]).sum()) == sum(b["skipped"].values())
        assert not set(b["video_id"]) & set(train[:2])
    assert seen == fetched and valid == fetched - expected and skipped_in_batches == expected
    assert dm.report_skipped("train") == {"train": expected}  # counted in worker processes, read here
    assert dm.report_skipped("train") == {} and dm.skipped_total["train"] == expected


def test_collate_all_skipped():
    b = Collate(lambda texts: torch.zeros(len(texts), 4, dtype=torch.long))([{"skipped": True}] * 2)
    assert b["num_skipped"] == 2 and b["video"].numel() == 0 and b["video_id"] == []


def test_decode_size_rules():
    from surgclip.data.dataset import DecodeSize

    # eval: straight at what the resize would produce; never upscale
    assert DecodeSize(224, "squash")(480, 854) == (224, 224)
    assert DecodeSize(224, "squash")(160, 160) is None
    assert DecodeSize(224, "shortest")(480, 854) == (224, 398)  # torchvision: int(224 * 854 / 480)
    assert DecodeSize(224, "laparoscopic")(480, 854) == (360, 640)
    # train: aspect kept, short side S / sqrt(min scale) = 317 for scale 0.5
    assert DecodeSize(224, "squash", train=True, min_scale=0.5)(480, 854) == (317, 564)
    assert DecodeSize(224, "squash", train=True, min_scale=0.5)(300, 300) is None
    rule = DecodeSize.for_transform(ClipTransform({"image_size": 64}, train=True, crop_scale=(0.25, 1.0)))
    assert (rule.image_size, rule.train, rule.min_scale) == (64, True, 0.25)
    assert DecodeSize.for_transform(lambda x: x) is None


def test_collate_normalises_uint8_batches_once():
    from surgclip.transform import PreprocessCfg, normalize_frames

    cfg = PreprocessCfg(image_size=8, mean=(0.1, 0.2, 0.3), std=(0.5, 0.25, 0.125))
    g = torch.Generator().manual_seed(0)
    items = [{"video": torch.randint(0, 256, (2, 3, 8, 8), dtype=torch.uint8, generator=g), "caption": f"c{i}",
              "level": 1, "video_id": "v", "caption_id": i, "start_s": 0.0, "end_s": 1.0} for i in range(3)]
    tok = lambda texts: torch.zeros(len(texts), 4, dtype=torch.long)  # noqa: E731
    batch = Collate(tok, normalize=cfg)(items)
    assert batch["video"].dtype == torch.float32 and batch["video"].shape == (3, 2, 3, 8, 8)
    ref = normalize_frames(torch.stack([it["video"] for it in items]), cfg)
    torch.testing.assert_close(batch["video"], ref, rtol=0, atol=1e-5)
    raw = Collate(tok)(items)["video"]
    assert raw.dtype == torch.uint8 and torch.equal(raw, torch.stack([it["video"] for it in items]))


def _stack_items(i):  # a module-level collate input for a worker process: two channels-last items
    g = torch.Generator().manual_seed(i)
    return {"video": torch.randint(0, 256, (2, 8, 8, 3), dtype=torch.uint8, generator=g).permute(0, 3, 1, 2),
            "caption": f"c{i}", "level": 1, "video_id": "v", "caption_id": i, "start_s": 0.0, "end_s": 1.0}


def test_collate_keeps_the_items_channels_last_layout():
    """Augmented uint8 items are channels-last ([T, S, S, 3] in memory); the batch keeps that layout
    (a straight copy, not a transposing one), in a worker's shared memory too, with the same values
    as a contiguous stack. Items of mixed layouts give a contiguous batch."""
    from torch.utils.data import DataLoader

    from surgclip.transform import ClipTransform, PreprocessCfg, normalize_frames

    tok = lambda texts: torch.zeros(len(texts), 4, dtype=torch.long)  # noqa: E731
    torch.manual_seed(0)
    augment = ClipTransform({"image_size": 8}, train=True, normalize=False)
    items = [dict(_stack_items(i), video=augment(np.random.default_rng(i).integers(0, 256, (2, 12, 12, 3), np.uint8)))
             for i in range(3)]
    assert all(it["video"].is_contiguous(memory_format=torch.channels_last) for it in items)
    ref = torch.stack([it["video"] for it in items])
    channels_last = (2 * 8 * 8 * 3, 8 * 8 * 3, 1, 8 * 3, 3)
    batch = Collate(tok)(items)["video"]
    assert batch.stride() == channels_last and torch.equal(batch, ref)
    cfg = PreprocessCfg(image_size=8, mean=(0.1, 0.2, 0.3), std=(0.5, 0.25, 0.125))
    normalised = Collate(tok, normalize=cfg)(items)["video"]
    assert normalised.stride() == channels_last
    torch.testing.assert_close(normalised, normalize_frames(ref, cfg), rtol=0, atol=1e-5)
    contiguous = Collate(tok, normalize=cfg)([dict(it, video=it["video"].contiguous()) for it in items])["video"]
    assert contiguous.is_contiguous() and torch.equal(normalised, contiguous)  # row by row: the same bits
    mixed = Collate(tok)([items[0], dict(items[1], video=items[1]["video"].contiguous())])["video"]
    assert mixed.is_contiguous() and torch.equal(mixed, ref[:2])
    loader = DataLoader(list(range(4)), batch_size=2, num_workers=1,
                        collate_fn=lambda idx: Collate(tok)([_stack_items(i) for i in idx]))
    for idx, got in zip(([0, 1], [2, 3]), loader):
        assert got["video"].stride() == channels_last and got["video"].is_shared()
        assert torch.equal(got["video"], torch.stack([_stack_items(i)["video"] for i in idx]))


def test_frame_cache_gives_the_same_batches_and_decodes_less(small_sample, monkeypatch):
    """With ``frame_cache_mb`` the batches of every epoch equal those read without it, and a later
    epoch takes frames it decoded before from the cache instead of decoding them again."""
    import surgclip.data.readers as readers

    decoded = []
    real = readers._read_rgb
    monkeypatch.setattr(readers, "_read_rgb", lambda p: decoded.append(p) or real(p))
    runs = {}
    for mb in (0, 64):
        dm = dm_for(small_sample, read_from="frames", loader={"frame_cache_mb": mb, "uint8_video": True})
        dm.setup()
        decoded.clear()
        runs[mb] = []
        for epoch in (0, 1):
            dm.trainer = types.SimpleNamespace(current_epoch=epoch, world_size=1)
            runs[mb].append([b["video"] for b in dm.train_dataloader()])
            runs[mb].append(len(decoded))
        ds = dm.datasets["train"]
    assert len(runs[0][0]) > 1 and all(torch.equal(a, b) for e in (0, 2) for a, b in zip(runs[0][e], runs[64][e]))
    reads_0, reads_1 = runs[0][1], runs[0][3] - runs[0][1]  # frames decoded per epoch without the cache
    assert runs[64][1] <= reads_0 and runs[64][3] - runs[64][1] < reads_1  # epoch 1 decodes fewer
    cache = ds._frame_cache
    assert cache.hits > 0 and cache.misses == runs[64][3] and 0 < cache.nbytes <= 64 * 2 ** 20
    assert ds.__getstate__()["_frame_cache"] is None  # workers start with their own, empty
    assert dm.datasets["val"].frame_cache_mb == 0 == dm.datasets["test"].frame_cache_mb  # read once per validation


FORKED_LOADER = r"""
import sys
from surgclip import get_tokenizer
from surgclip.data.datamodule import SurgLaViDataModule

dm = SurgLaViDataModule(root=sys.argv[1], read_from="videos", num_frames=4, batch_size=2, num_workers=2,
                        levels=[1, 2, 3], loader={"worker_start": "fork"})
dm.set_model(get_tokenizer("tiny"), {"image_size": 32})
dm.setup()
loader = dm.train_dataloader()
for i in range(0, 40, 5):  # a look at some items in the main process: decord readers open here
    loader.dataset[i]
assert len(loader.dataset._readers) >= 1
batches = 0
for batch in loader:
    batches += 1
    if batches == 4:
        break
print("batches", batches)
"""


def test_forked_workers_start_after_items_were_read_in_the_main_process(small_sample):
    """With ``worker_start: fork`` each worker inherits the main process's open decord readers. It
    used to drop them, and freeing a decord reader in a forked child waits for a decoding thread
    that was not forked: the loader hung for good. The inherited readers are now kept, unused."""
    import os
    import signal
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-c", FORKED_LOADER, str(small_sample)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=90)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # the workers too
        proc.communicate()
        pytest.fail("the forked workers hung (freeing the main process's decord readers?)")
    assert proc.returncode == 0 and out.strip().endswith("batches 4"), (out, err[-2000:])


_MALLINFO = """
import ctypes, os, sys
import torch
from surgclip.data.dataset import worker_init

class Info(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost".split()]
libc = ctypes.CDLL(None)
libc.mallinfo2.restype = Info
if sys.argv[1] == "worker":
    worker_init(0)
before = libc.mallinfo2().hblkhd
clip = torch.empty(4 << 20, dtype=torch.uint8).fill_(1)  # an item's clip
mapped = libc.mallinfo2().hblkhd - before
del clip
print(mapped, libc.mallinfo2().fordblks)
"""


@pytest.mark.skipif(not hasattr(__import__("ctypes").CDLL(None), "mallinfo2"), reason="glibc >= 2.33 only")
def test_workers_keep_freed_memory_for_the_next_item():
    """In a DataLoader worker an item's 4-MB clip comes from malloc's heap and stays there when freed
    (the next item reuses its pages: no page faults), where by default it is a fresh mmap returned
    to the kernel on free; a user's own malloc settings are left alone, and only those."""
    import os
    import subprocess
    import sys

    def run(mode, **env):
        out = subprocess.run([sys.executable, "-c", _MALLINFO, mode], capture_output=True, text=True, check=True,
                             env={k: v for k, v in os.environ.items()
                                  if not k.startswith("MALLOC_") and k != "GLIBC_TUNABLES"} | env)
        return [int(v) for v in out.stdout.split()]

    mapped, _ = run("default")
    assert mapped >= 4 << 20
    mapped, free_in_heap = run("worker")
    assert mapped == 0 and free_in_heap >= 4 << 20
    mapped, _ = run("worker", MALLOC_ARENA_MAX="2", MALLOC_TOP_PAD_="0")
    assert mapped >= 4 << 20
    mapped, _ = run("worker", GLIBC_TUNABLES="glibc.malloc.mmap_threshold=131072")
    assert mapped >= 4 << 20
    mapped, _ = run("worker", GLIBC_TUNABLES="glibc.pthread.rseq=0", MALLOC_PERTURB_="0")  # other settings
    assert mapped == 0
