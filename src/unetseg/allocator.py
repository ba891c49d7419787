"""The C allocator, tuned for a process that trains or predicts: the command line's business.

`tune_malloc` changes the whole process, so only the command-line entry point calls it, never
a library call (a library call leaves process-wide state as it found it).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

__all__ = ["tune_malloc"]

_malloc_tuned = False


def tune_malloc() -> bool:
    """Stop glibc from returning large freed blocks to the OS after every step.

    By default glibc serves blocks over 32 MiB with mmap and unmaps them on free, so every
    training step or tile pays page faults to map the same activations again (up to 2x slower
    on the 2-core machine we measured). Same effect as
    ``GLIBC_TUNABLES=glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=68719476736``.
    Returns whether the settings were applied (only on glibc Linux); safe to call repeatedly.
    """
    global _malloc_tuned
    if _malloc_tuned:
        return True
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False            # not glibc (musl has no mallopt): nothing to tune
    m_trim_threshold, m_mmap_max = -1, -4          # from glibc's malloc.h
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    ok = mallopt(m_mmap_max, 0) == 1
    # The largest int mallopt takes; freed memory is kept below 2 GiB of slack.
    ok = mallopt(m_trim_threshold, 2**31 - 1) == 1 and ok
    _malloc_tuned = ok
    return ok
