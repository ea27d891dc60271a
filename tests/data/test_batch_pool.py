"""BatchPool: workers reuse their shared batch buffers, never one the main process still holds.

The loaders here have one batch in flight per worker (``prefetch_factor=1``) and the test drops each
batch before asking for the next, so a worker building a batch finds at most the batches held on
purpose + 1 slot taken: with 4 slots every batch is pooled, whatever the timing.
"""
import gc
import pickle

import pytest
import torch
from torch.utils.data import DataLoader

from surgclip.data.batch_pool import BatchPool, _Pooled
from surgclip.data.dataset import Collate

SLOTS = 4


def _item(i: int, dtype=torch.uint8) -> dict:
    g = torch.Generator().manual_seed(i)
    return {"video": torch.randint(0, 256, (2, 3, 8, 8), dtype=torch.uint8, generator=g).to(dtype), "caption": f"c{i}",
            "level": 1, "video_id": "v", "caption_id": i, "start_s": 0.0, "end_s": 1.0}


def _tokenize(texts: list[str]) -> torch.Tensor:
    return torch.zeros(len(texts), 4, dtype=torch.long)


class PoolCollate:
    """Collate with a pool; also reports whether the batch went out pooled and the worker's buffer count."""

    def __init__(self, pool, dtype=torch.uint8):
        self.pool, self.dtype, self.collate = pool, dtype, Collate(_tokenize, pool=pool)

    def __call__(self, idx: list[int]) -> dict:
        batch = self.collate([_item(i, self.dtype) for i in idx])
        batch["pooled"], batch["buffers"] = isinstance(batch["video"], _Pooled), len(self.pool._buffers)
        return batch


def _expected(idx, dtype=torch.uint8) -> torch.Tensor:
    return torch.stack([_item(i, dtype)["video"] for i in idx])


def test_workers_reuse_buffers_the_main_process_let_go_of():
    pool = BatchPool(num_workers=1, slots=SLOTS)
    it = iter(DataLoader(range(40), batch_size=2, num_workers=1, prefetch_factor=1, collate_fn=PoolCollate(pool)))
    held, flags = [], pool.flags.numpy()
    for k in range(20):
        batch = next(it)
        idx = [2 * k, 2 * k + 1]
        assert torch.equal(batch["video"], _expected(idx))
        assert batch["pooled"] and batch["buffers"] <= SLOTS  # 20 batches from at most 4 buffers
        if k in (2, 3):  # kept: the first as the whole batch, the second as a view of one clip
            held.append((batch["video"] if k == 2 else batch["video"][1], _expected(idx) if k == 2 else _expected(idx)[1]))
        del batch
        gc.collect()
    for tensor, expected in held:  # never written again by the 16 batches after them
        assert torch.equal(tensor, expected)
    del tensor
    assert flags.sum() == 2  # the two held batches' slots are taken, no other
    held.pop(0)
    gc.collect()
    assert flags.sum() == 1  # the view of the second batch still holds its slot
    held.clear()
    gc.collect()
    assert flags.sum() == 0  # freed with the last view


def test_pool_travels_to_started_workers():
    """Workers started by forkserver (as the DataModule's) get the pool by pickling, and their slots come back."""
    pool = BatchPool(num_workers=2, slots=SLOTS)
    it = iter(DataLoader(range(24), batch_size=2, num_workers=2, prefetch_factor=1, collate_fn=PoolCollate(pool),
                         multiprocessing_context="forkserver"))
    for k in range(12):
        batch = next(it)
        assert torch.equal(batch["video"], _expected([2 * k, 2 * k + 1]))
        assert batch["pooled"] and batch["buffers"] <= SLOTS and pool.flags.sum() >= 1
        del batch
    gc.collect()
    assert pool.flags.sum() == 0


def test_one_pool_serves_one_set_of_workers():
    """Two live iterators of a loader without persistent workers: two processes with worker id 0.
    The first to write takes the slots; the other gets fresh buffers, and no held batch changes."""
    pool = BatchPool(num_workers=1, slots=SLOTS)
    loader = DataLoader(range(40), batch_size=2, num_workers=1, prefetch_factor=1, collate_fn=PoolCollate(pool))
    first = iter(loader)
    a = next(first)
    second = iter(loader)
    held, pooled = [(a["video"], _expected([0, 1]))], {1: [a["pooled"]], 2: []}
    del a
    for k in range(1, 8):
        for it, name in ((first, 1), (second, 2)):
            batch = next(it)
            pooled[name].append(batch["pooled"])
            held.append((batch["video"], _expected([2 * (k if name == 1 else k - 1), 2 * (k if name == 1 else k - 1) + 1])))
            del batch
        held = held[-3:]
        for tensor, expected in held:
            assert torch.equal(tensor, expected)
    assert all(pooled[1]) and not any(pooled[2])


def test_pooled_batches_outside_their_process_keep_their_slot():
    """A pooled tensor unpickled where its pool is unknown comes as it is, its slot still taken."""
    pool = BatchPool(num_workers=1, slots=1)
    t = torch.arange(6, dtype=torch.uint8).view(2, 3)
    got = pickle.loads(pickle.dumps(_Pooled(t, pool.id + 1, 0)))
    assert torch.equal(got, t) and got.data_ptr() != t.data_ptr()
    pool.flags[0] = 1
    leased = pickle.loads(pickle.dumps(_Pooled(t.t(), pool.id, 0)))  # the pool's own process: leased
    assert torch.equal(leased, t.t()) and leased.stride() == t.t().stride()
    del leased
    gc.collect()
    assert pool.flags[0] == 0


def test_dtypes_numpy_cannot_describe_get_fresh_buffers():
    pool = BatchPool(num_workers=1, slots=SLOTS)
    loader = DataLoader(range(4), batch_size=2, num_workers=1, collate_fn=PoolCollate(pool, torch.bfloat16))
    for k, batch in enumerate(loader):
        assert not batch["pooled"] and torch.equal(batch["video"], _expected([2 * k, 2 * k + 1], torch.bfloat16))


def test_no_worker_no_pool_and_clips_of_one_shape():
    pool = BatchPool(num_workers=2, slots=2)
    batch = PoolCollate(pool)([0, 1])
    assert isinstance(batch["video"], torch.Tensor) and torch.equal(batch["video"], _expected([0, 1]))
    assert pool.flags.sum() == 0 and not pool._buffers
    short = dict(_item(1), video=_item(1)["video"][:1])  # a 1-frame clip would broadcast into the batch
    with pytest.raises(ValueError, match=r"differ in shape: \[\(1, 3, 8, 8\), \(2, 3, 8, 8\)\]"):
        Collate(_tokenize)([_item(0), short])
