"""The private and platform APIs behind ``surgclip.compat``.

The first tests fail, by the API's name, when an upgrade of torch (or another C library) removes
an API the package relies on: its caller would otherwise take the slower fallback without a word.
The others check each wrapper's answer, and the fallback when the API is absent (monkeypatched).
"""
import ctypes
import os
import platform
import subprocess
import sys

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader

from surgclip import compat

GLIBC = platform.libc_ver()[0] == "glibc"


def _attribute(owner, path: str):
    for name in path.split("."):
        owner = getattr(owner, name)
    return owner


@pytest.mark.parametrize("path", ["_C._storage_Use_Count", "ops.mkldnn._is_mkldnn_bf16_supported",
                                  "nn.modules.module._global_forward_hooks",
                                  "nn.modules.module._global_forward_pre_hooks",
                                  "nn.modules.module._global_backward_hooks",
                                  "nn.modules.module._global_backward_pre_hooks"])
def test_torch_still_has(path):
    assert _attribute(torch, path) is not None, f"torch {torch.__version__} has no torch.{path}"


@pytest.mark.parametrize("name", compat._MODULE_HOOKS)
def test_modules_still_keep_their_hooks_in(name):
    assert isinstance(getattr(nn.Linear(2, 2), name), dict), f"torch {torch.__version__}: no Module.{name}"


def test_storages_still_have_a_cdata_handle():
    assert isinstance(torch.empty(1).untyped_storage()._cdata, int)


def test_dataloaders_still_keep_their_iterator_and_its_count():
    loader = DataLoader(list(range(4)), batch_size=2)
    assert "_iterator" in vars(loader), f"torch {torch.__version__}: DataLoader has no _iterator"
    it = iter(loader)
    assert it._num_yielded == 0, f"torch {torch.__version__}: the DataLoader iterator has no _num_yielded"
    next(it)
    assert it._num_yielded == 1


@pytest.mark.skipif(not GLIBC, reason="glibc only")
def test_glibc_still_has_mallopt():
    assert hasattr(ctypes.CDLL(None), "mallopt")


def test_storage_use_count_counts_every_holder():
    t = torch.empty(8)
    assert compat.storage_use_count(t) == 1
    view = t[2:]
    array = t.numpy()
    assert compat.storage_use_count(t) == 3
    del view, array
    assert compat.storage_use_count(t) == 1


def test_storage_use_count_without_the_private_count(monkeypatch):
    """No count: None, and ``ReusableBuffer`` allocates a new buffer each time instead of reusing one."""
    from surgclip.transform import ReusableBuffer

    buffers = ReusableBuffer()
    ptr = buffers.get((4, 4), "cpu").data_ptr()
    assert buffers.get((4, 4), "cpu").data_ptr() == ptr  # reused: nothing held it
    monkeypatch.delattr(torch._C, "_storage_Use_Count")
    assert compat.storage_use_count(torch.empty(2)) is None
    kept = buffers.get((4, 4), "cpu")
    assert kept.data_ptr() != ptr  # taken as held


def test_unstarted_loader_iterator():
    loader = DataLoader(list(range(4)), batch_size=2)
    assert compat.unstarted_loader_iterator(loader) is None  # none kept
    it = iter(loader)
    loader._iterator = it  # as DataLoader keeps it with persistent workers
    assert compat.unstarted_loader_iterator(loader) is it
    next(it)
    assert compat.unstarted_loader_iterator(loader) is None  # started
    # an iterator without the count, a loader without the attribute: None (a new iterator)
    loader._iterator = object()
    assert compat.unstarted_loader_iterator(loader) is None
    assert compat.unstarted_loader_iterator(object()) is None


def test_mkldnn_bf16_probe(monkeypatch):
    """A bool from oneDNN; absent or failing: None, and ``cpu_has_fast_bf16`` then does not warn (True)."""
    from surgclip.model import cpu_has_fast_bf16

    assert isinstance(compat.mkldnn_bf16_supported(), bool)
    for err in (AttributeError, RuntimeError):
        def probe(err=err):
            raise err("no such op")

        monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", probe)
        assert compat.mkldnn_bf16_supported() is None
        assert cpu_has_fast_bf16() is True
    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: False)
    assert cpu_has_fast_bf16() is False


@pytest.mark.parametrize("kind", ["forward", "forward_pre", "full_backward", "full_backward_pre", "global_forward",
                                  "global_forward_pre", "global_backward"])
def test_has_hooks_sees_every_kind(kind):
    from torch.nn.modules import module as m

    layer = nn.Linear(2, 2)
    assert not compat.has_hooks(layer)
    hook = {"forward": lambda: layer.register_forward_hook(lambda *a: None),
            "forward_pre": lambda: layer.register_forward_pre_hook(lambda *a: None),
            "full_backward": lambda: layer.register_full_backward_hook(lambda *a: None),
            "full_backward_pre": lambda: layer.register_full_backward_pre_hook(lambda *a: None),
            "global_forward": lambda: m.register_module_forward_hook(lambda *a: None),
            "global_forward_pre": lambda: m.register_module_forward_pre_hook(lambda *a: None),
            "global_backward": lambda: m.register_module_full_backward_hook(lambda *a: None)}[kind]()
    try:
        assert compat.has_hooks(layer)
    finally:
        hook.remove()
    assert not compat.has_hooks(layer)


@pytest.mark.parametrize("table", ["_MODULE_HOOKS", "_GLOBAL_HOOKS"])
def test_without_the_hook_tables_every_layer_counts_as_hooked(table, monkeypatch):
    """A torch that keeps its hooks elsewhere: every layer counts as watched, so the inference
    rewrites install nothing (the plain forward, same outputs)."""
    from helpers import small_model

    monkeypatch.setattr(compat, table, getattr(compat, table) + ("_hooks_moved_elsewhere",))
    assert compat.has_hooks(nn.Linear(2, 2))
    assert small_model("SurgCLIP-B").prepare_for_inference().inference_rewrites == {}


@pytest.mark.skipif(not GLIBC, reason="glibc only")
def test_set_malloc_thresholds_on_glibc():
    """In a process of its own: the thresholds stay set for the rest of a process."""
    code = "from surgclip.compat import set_malloc_thresholds as s; print(s(32 << 20, 512 << 20))"
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_") and k != "GLIBC_TUNABLES"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env)
    assert out.stdout.strip() == "True"


def test_set_malloc_thresholds_without_glibc_or_mallopt(monkeypatch):
    import types

    monkeypatch.setattr(platform, "libc_ver", lambda: ("", ""))
    assert compat.set_malloc_thresholds(1 << 20, 1 << 20) is False
    monkeypatch.setattr(platform, "libc_ver", lambda: ("glibc", "2.36"))
    monkeypatch.setattr(ctypes, "CDLL", lambda name: types.SimpleNamespace())  # a libc without mallopt
    assert compat.set_malloc_thresholds(1 << 20, 1 << 20) is False


@pytest.mark.parametrize("env", [{"MALLOC_TOP_PAD_": "0"}, {"MALLOC_MMAP_MAX_": "65536"},
                                 {"GLIBC_TUNABLES": "glibc.malloc.trim_threshold=1"}])
def test_keep_freed_memory_leaves_the_environments_settings(env, monkeypatch):
    from surgclip.data import worker_memory

    calls = []
    monkeypatch.setattr(worker_memory, "set_malloc_thresholds", lambda *a: calls.append(a) or True)
    for name in worker_memory.MALLOC_ENV + ("GLIBC_TUNABLES",):
        monkeypatch.delenv(name, raising=False)
    assert worker_memory.keep_freed_memory() is True
    assert calls == [(32 << 20, 512 << 20)]
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert worker_memory.keep_freed_memory() is False and len(calls) == 1
