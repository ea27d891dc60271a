"""BatchPool: workers reuse their shared batch buffers, never one the main process still holds."""
import gc
import pickle

import torch
from torch.utils.data import DataLoader

from surgclip.data.batch_pool import BatchPool, _Pooled
from surgclip.data.dataset import Collate

SLOTS = 2


def _item(i: int) -> dict:
    g = torch.Generator().manual_seed(i)
    return {"video": torch.randint(0, 256, (2, 3, 8, 8), dtype=torch.uint8, generator=g), "caption": f"c{i}",
            "level": 1, "video_id": "v", "caption_id": i, "start_s": 0.0, "end_s": 1.0}


def _tokenize(texts: list[str]) -> torch.Tensor:
    return torch.zeros(len(texts), 4, dtype=torch.long)


class PoolCollate:
    """Collate with a pool; also reports the worker-side address of the batch's buffer."""

    def __init__(self, pool):
        self.pool, self.collate = pool, Collate(_tokenize, pool=pool)

    def __call__(self, idx: list[int]) -> dict:
        batch = self.collate([_item(i) for i in idx])
        video = batch["video"]
        batch["worker_ptr"] = (video.tensor if isinstance(video, _Pooled) else video).untyped_storage().data_ptr()
        return batch


def _expected(idx) -> torch.Tensor:
    return torch.stack([_item(i)["video"] for i in idx])


def test_workers_reuse_buffers_the_main_process_let_go_of():
    pool = BatchPool(num_workers=1, slots=SLOTS)
    loader = DataLoader(range(40), batch_size=2, num_workers=1, prefetch_factor=1, collate_fn=PoolCollate(pool))
    held, ptrs, flags = [], [], pool.flags.numpy()
    for k, batch in enumerate(loader):
        idx = list(range(2 * k, 2 * k + 2))
        assert torch.equal(batch["video"], _expected(idx))
        ptrs.append(batch["worker_ptr"])
        if k in (2, 3):  # kept: the first as the whole batch, the second as a view of one clip
            held.append((batch["video"] if k == 2 else batch["video"][1], idx if k == 2 else idx[1]))
        del batch
        gc.collect()
    for tensor, idx in held:  # written again by later batches? no: their slots were taken while held
        assert torch.equal(tensor, _expected(idx) if isinstance(idx, list) else _expected([idx])[0])
    assert flags.sum() == 2  # the two held batches' slots are still taken
    kept = {ptrs[2], ptrs[3]}
    assert len(kept) == 2 and kept.isdisjoint(ptrs[4:])  # ... and no later batch was written there
    assert len(set(ptrs[:2])) <= SLOTS  # before that, batches went round the slots
    del tensor
    held.pop(0)
    gc.collect()
    assert flags.sum() == 1  # the view of the second batch still holds its slot
    held.clear()
    gc.collect()
    assert flags.sum() == 0  # freed with the last view


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


def test_no_worker_no_pool():
    pool = BatchPool(num_workers=2, slots=2)
    batch = PoolCollate(pool)([0, 1])
    assert isinstance(batch["video"], torch.Tensor) and torch.equal(batch["video"], _expected([0, 1]))
    assert pool.flags.sum() == 0 and not pool._buffers


def test_pool_travels_to_started_workers():
    """Workers started by forkserver (as the DataModule's) get the pool through pickling and still
    hand their slots back."""
    pool = BatchPool(num_workers=2, slots=SLOTS)
    loader = DataLoader(range(24), batch_size=2, num_workers=2, prefetch_factor=1, collate_fn=PoolCollate(pool),
                        multiprocessing_context="forkserver")
    ptrs = []
    for k, batch in enumerate(loader):
        assert torch.equal(batch["video"], _expected([2 * k, 2 * k + 1]))
        ptrs.append(batch["worker_ptr"])
        del batch
    gc.collect()
    assert pool.flags.sum() == 0
    assert len(set(ptrs)) <= 2 * SLOTS  # 12 batches from at most 4 buffers
