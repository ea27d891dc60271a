"""Shared-memory batch buffers that DataLoader workers write again once the main process is done.

A worker sends a batch's frames to the main process in shared memory. A fresh shared buffer costs
the worker several times more than writing the frames into a buffer it has written before: the
kernel hands out and zeroes every page of it.
``BatchPool`` keeps a few buffers per worker and marks each one taken in a small shared flag array
while the main process may still hold it:

- the worker takes a free slot's buffer (``empty``), marks it taken and sends the batch;
- the main process unpickles the frames as a tensor over the same memory whose storage holds a
  ``_Lease``; when the last tensor or view over that storage is freed, the lease marks the slot
  free again.

A slot is written only while its flag says free, so a batch the main process still holds (a view,
a batch kept for later) is never overwritten. When every slot is taken, or the flags are not
known where the batch is unpickled, the worker allocates a fresh buffer. A slot whose
batch is lost on the way (an error between ``empty`` and sending, a batch unpickled in another
process) stays taken: the pool falls back to fresh buffers, never to a shared one.

One pool serves one set of workers: a worker id's slots belong to the first live process that uses
them (``owner``). A second process with the same worker id at the same time (two live iterators of
a loader without persistent workers, a pool inherited by a forked rank) gets fresh buffers, since
two takers of one flag could each free the other's slot.

Ordering: the worker writes a buffer only after it reads its flag as free, and sets the flag before
the batch leaves; the main process clears it after the last reader is gone. x86 keeps these stores
and loads in order; weaker memory models rely on the barriers of the queue and the GIL between them.
"""
from __future__ import annotations

import os
import uuid
import weakref

import numpy as np
import torch
from torch.utils.data import get_worker_info

_FLAGS: "weakref.WeakValueDictionary[int, torch.Tensor]" = weakref.WeakValueDictionary()  # main: pool id -> flags
# dtypes a lease can describe to numpy (``_Lease``); others (bfloat16) always get a fresh buffer
_POOLED_DTYPES = (torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64, torch.float16, torch.float32,
                  torch.float64, torch.bool)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _shared_tensor(storage: torch.UntypedStorage, shape: tuple, dtype: torch.dtype, stride: tuple) -> torch.Tensor:
    return torch.empty(0, dtype=dtype).set_(storage, 0, shape, stride)


def _nbytes(shape: tuple, dtype: torch.dtype) -> int:
    return int(np.prod(shape)) * torch.empty((), dtype=dtype).element_size()


def empty_shared(shape: tuple, dtype: torch.dtype, stride: tuple) -> torch.Tensor:
    """An uninitialised tensor in a fresh shared-memory buffer."""
    return _shared_tensor(torch.UntypedStorage._new_shared(_nbytes(shape, dtype)), shape, dtype, stride)


class _Lease:
    """The memory of a pooled batch tensor, as numpy's ``__array_interface__``; frees its slot when
    numpy (and so torch's storage over it) lets go of it."""

    def __init__(self, tensor: torch.Tensor, flags: torch.Tensor, index: int):
        self.tensor, self.flags, self.index = tensor, flags.numpy(), index
        size = tensor.element_size()
        self.__array_interface__ = {
            "shape": tuple(tensor.shape), "strides": tuple(s * size for s in tensor.stride()),
            "typestr": torch.empty((), dtype=tensor.dtype).numpy().dtype.str,
            "data": (tensor.data_ptr(), False), "version": 3}

    def __del__(self):
        self.flags[self.index] = 0


def _leased(tensor: torch.Tensor, pool_id: int, index: int) -> torch.Tensor:
    """Unpickling a pooled batch tensor: in the process that made the pool, the tensor over the same
    memory that frees the slot when it is gone; elsewhere the tensor as it came (the slot stays taken)."""
    flags = _FLAGS.get(pool_id)
    if flags is None:
        return tensor
    return torch.from_numpy(np.asarray(_Lease(tensor, flags, index)))


class _Pooled:
    """A batch tensor in a pool slot, as the worker hands it to the DataLoader's queue."""

    def __init__(self, tensor: torch.Tensor, pool_id: int, index: int):
        self.tensor, self.pool_id, self.index = tensor, pool_id, index

    def __reduce__(self):
        return _leased, (self.tensor, self.pool_id, self.index)


class BatchPool:
    """``slots`` reusable shared-memory batch buffers for each of ``num_workers`` DataLoader workers.

    Made in the main process with the DataLoader and pickled into its workers with the collate.
    ``empty`` gives a worker's batch tensor; ``wrap`` the object to put in the batch instead of it.
    In the main process (no worker) it gives ordinary tensors.
    """

    def __init__(self, num_workers: int, slots: int):
        self.slots, self.id = int(slots), uuid.uuid4().int >> 65
        self.flags = torch.zeros(max(1, num_workers) * self.slots, dtype=torch.uint8).share_memory_()
        self.owner = torch.zeros(max(1, num_workers), dtype=torch.int64).share_memory_()  # worker id -> pid
        _FLAGS[self.id] = self.flags
        self._buffers: dict[int, torch.UntypedStorage] = {}  # this process's slots (a worker's own)
        self._mine: bool | None = None  # whether this process owns its worker id's slots

    def __getstate__(self) -> dict:
        return {"slots": self.slots, "id": self.id, "flags": self.flags, "owner": self.owner}  # buffers: per process

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state, _buffers={}, _mine=None)

    def _owns(self, worker: int) -> bool:
        """Claim worker id ``worker``'s slots for this process, unless another live process has them."""
        if self._mine is None or (self._mine and int(self.owner[worker]) != os.getpid()):
            if worker >= len(self.owner):
                self._mine = False
                return False
            owners, pid = self.owner.numpy(), os.getpid()
            current = int(owners[worker])
            self._mine = current in (0, pid) or not _alive(current)
            if self._mine:
                owners[worker] = pid
        return self._mine

    def empty(self, shape: tuple, dtype: torch.dtype, stride: tuple) -> torch.Tensor:
        """An uninitialised [B, ...] tensor: in a worker, in a free slot's shared buffer (marked taken)
        or a fresh shared buffer when none is free; elsewhere in ordinary memory."""
        info = get_worker_info()
        if info is None:
            return torch.empty_strided(shape, stride, dtype=dtype)
        if dtype not in _POOLED_DTYPES or not self._owns(info.id):
            return empty_shared(shape, dtype, stride)
        nbytes, flags = _nbytes(shape, dtype), self.flags.numpy()
        for index in range(info.id * self.slots, (info.id + 1) * self.slots):
            if flags[index] == 0:
                storage = self._buffers.get(index)
                if storage is None or storage.nbytes() < nbytes:
                    storage = self._buffers[index] = torch.UntypedStorage._new_shared(nbytes)
                flags[index] = 1
                return _shared_tensor(storage, shape, dtype, stride)
        return empty_shared(shape, dtype, stride)

    def wrap(self, tensor: torch.Tensor):
        """What to put in the batch for a tensor from ``empty``: a pooled one travels as ``_Pooled``
        (unpickled in the main process as a leased tensor), any other as it is."""
        ptr = tensor.untyped_storage().data_ptr()
        for index, storage in self._buffers.items():
            if storage.data_ptr() == ptr:
                return _Pooled(tensor, self.id, index)
        return tensor
