"""The private and platform APIs this package relies on, each behind one small function.

Each function names the API it wraps, why the package needs it, and what it returns when the API
is absent (a torch upgrade that renames it, another C library): the callers then take their
ordinary path, slower at worst, never wrong. ``tests/test_compat.py`` asserts that every wrapped
API still exists in the installed torch and C library, so an upgrade that drops one fails that
test by name instead of quietly costing speed.
"""
from __future__ import annotations

import ctypes
import platform

import torch
from torch import nn

# glibc's mallopt parameter numbers (malloc.h)
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3


def storage_use_count(tensor: torch.Tensor) -> int | None:
    """How many holders share ``tensor``'s storage: the tensor itself, its views, tensors autograd
    saved and arrays made by ``.numpy()``, one each (a tensor alone counts 1). Python storage
    objects of it are not counted: torch keeps one per storage, and this call holds it.

    Wraps ``torch._C._storage_Use_Count`` (the storage implementation's reference count, read
    through the storage's private ``_cdata`` handle). ``transform.ReusableBuffer`` reads it to write
    a buffer again only when nothing else holds it; torch has no public way to ask.

    Returns None when this torch has no such count; the caller must then treat the storage as
    held (a new buffer each time).
    """
    count = getattr(torch._C, "_storage_Use_Count", None)
    if count is None:
        return None
    storage = tensor.untyped_storage()
    try:
        handle = storage._cdata
    except AttributeError:
        return None
    return int(count(handle)) - 1  # less the storage object's own reference


def unstarted_loader_iterator(loader: torch.utils.data.DataLoader):
    """The iterator that ``loader`` keeps for its persistent workers, if it has not yielded a batch
    yet; else None.

    Wraps ``DataLoader._iterator`` (the iterator kept with ``persistent_workers``) and
    ``_BaseDataLoaderIter._num_yielded`` (batches it has handed out since its workers last
    reset). ``data.datamodule.EpochLoader`` hands that iterator out again instead of resetting its
    workers a second time in the same epoch.

    Returns None when this torch keeps neither attribute: the caller then starts a new iterator,
    as ``DataLoader.__iter__`` does.
    """
    it = getattr(loader, "_iterator", None)
    if it is None or getattr(it, "_num_yielded", None) != 0:
        return None
    return it


def mkldnn_bf16_supported() -> bool | None:
    """Whether oneDNN runs bf16 matrix products natively on this CPU (AVX512-BF16, AMX, AVX512).

    Wraps ``torch.ops.mkldnn._is_mkldnn_bf16_supported``, oneDNN's own test; torch exposes no
    public one. ``model.cpu_has_fast_bf16`` uses it to warn before a bf16 forward that this CPU
    would emulate.

    Returns None when the probe is absent or fails (unknown).
    """
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return None


_MODULE_HOOKS = ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks")
_GLOBAL_HOOKS = ("_global_forward_hooks", "_global_forward_pre_hooks", "_global_backward_hooks",
                 "_global_backward_pre_hooks")


def has_hooks(module: nn.Module) -> bool:
    """Whether a hook would see ``module`` run: a forward, forward-pre, backward or backward-pre
    hook of the module itself, or one registered for every module.

    Wraps ``Module._forward_hooks``, ``_forward_pre_hooks``, ``_backward_hooks``,
    ``_backward_pre_hooks`` and ``torch.nn.modules.module._global_forward_hooks``,
    ``_global_forward_pre_hooks``, ``_global_backward_hooks``, ``_global_backward_pre_hooks``: torch
    has no public way to ask whether hooks are registered. The inference rewrites
    (``SurgCLIP.prepare_for_inference``) leave a layer that a hook watches as it is.

    Returns True (hooked: the layer stays as it is) when any of these tables is absent.
    """
    from torch.nn.modules import module as torch_module

    try:
        tables = [getattr(module, name) for name in _MODULE_HOOKS] + \
            [getattr(torch_module, name) for name in _GLOBAL_HOOKS]
    except AttributeError:
        return True
    return any(bool(t) for t in tables)


def set_malloc_thresholds(mmap_threshold: int, trim_threshold: int) -> bool:
    """Set glibc malloc's ``M_MMAP_THRESHOLD`` and ``M_TRIM_THRESHOLD`` for this process; True if
    glibc accepted both.

    Wraps glibc's ``mallopt`` through ``ctypes`` (Python exposes no malloc tuning).
    ``data.worker_memory.keep_freed_memory`` uses it in DataLoader workers.

    Returns False (nothing set) off glibc (musl, macOS, Windows) or when the C library has no
    ``mallopt``.
    """
    if platform.libc_ver()[0] != "glibc":
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    return bool(mallopt(M_MMAP_THRESHOLD, int(mmap_threshold))) and bool(mallopt(M_TRIM_THRESHOLD, int(trim_threshold)))
