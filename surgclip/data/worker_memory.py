"""How a DataLoader worker's malloc keeps the memory its items free (``keep_freed_memory``).

The policy lives here: which thresholds, and when the environment's own malloc settings win.
Setting them goes through glibc's ``mallopt``, wrapped in ``surgclip.compat.set_malloc_thresholds``.
"""
from __future__ import annotations

import os

from ..compat import set_malloc_thresholds

# the environment's own say over the same settings (glibc's variables and tunables for them)
MALLOC_ENV = ("MALLOC_TRIM_THRESHOLD_", "MALLOC_MMAP_THRESHOLD_", "MALLOC_TOP_PAD_", "MALLOC_MMAP_MAX_")
MALLOC_TUNABLES = ("glibc.malloc.trim_threshold", "glibc.malloc.mmap_threshold", "glibc.malloc.top_pad",
                   "glibc.malloc.mmap_max")
MMAP_THRESHOLD = 32 << 20  # the most glibc's own adaptive threshold would reach
TRIM_THRESHOLD = 512 << 20


def environment_sets_malloc() -> bool:
    """Whether the environment sets malloc's thresholds itself: ``MALLOC_TRIM_THRESHOLD_``,
    ``MALLOC_MMAP_THRESHOLD_``, ``MALLOC_TOP_PAD_``, ``MALLOC_MMAP_MAX_``, or the same
    ``glibc.malloc.*`` in ``GLIBC_TUNABLES``. Other malloc settings do not count."""
    tunables = os.environ.get("GLIBC_TUNABLES", "")
    return any(k in os.environ for k in MALLOC_ENV) or any(t in tunables for t in MALLOC_TUNABLES)


def keep_freed_memory(mmap_threshold: int = MMAP_THRESHOLD, trim_threshold: int = TRIM_THRESHOLD) -> bool:
    """Make glibc's malloc keep freed memory in this process for the next allocation; True if it was set.

    Every training item allocates a few MB (its decoded frames, the resized clip, the flipped one)
    and frees them. By default glibc serves such blocks with a fresh ``mmap`` (or gives the top of
    its heap back to the kernel when they are freed), so each item touches new pages: hundreds of
    page faults per clip, and kernel time that is a large share of a DataLoader worker's CPU. Blocks
    under ``mmap_threshold`` (default ``32 << 20``, the most glibc's own adaptive threshold would reach) come from
    the heap instead, and it is trimmed only above ``trim_threshold``, so an item reuses the pages
    the items before it freed. The cost is that a worker keeps its peak heap until it exits.

    Only for processes that do nothing else (the DataLoader workers). Does nothing off glibc, or
    when the environment sets these itself (``environment_sets_malloc``).
    """
    if environment_sets_malloc():
        return False
    return set_malloc_thresholds(mmap_threshold, trim_threshold)
