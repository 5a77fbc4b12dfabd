"""Keep freed CPU memory in the process for reuse (glibc only).

PyTorch's CPU allocator hands every tensor to ``malloc``. glibc serves large blocks with fresh ``mmap`` pages, or
returns freed memory at the top of its heap to the system, so the next tensor of that size touches new pages: each
page costs a fault and zero-filling. With the batched evaluation of several videos (16 rows of 64-channel maps
at the output resolution) this was a fifth to a quarter of the wall time on the 2-core CPU: one synthetic evaluation took
about 279 000 page faults and 0.7 s of system time; with freed memory kept, 128 faults (docs/benchmarks.md).

:func:`retain_freed_memory` raises glibc's mmap threshold to its maximum (32 MiB on 64-bit; larger blocks are
still mapped) and turns off trimming. The cost: the process keeps its peak heap size until it exits, which
suits a tool that runs one job and stops. ``tools/evaluate.py`` and the evaluation benchmark call it; training
gained nothing from it (``tools/benchmark.py --train``) and does not.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import sys

logger = logging.getLogger(__name__)

M_TRIM_THRESHOLD = -1  # glibc <malloc.h>
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD_MAX = 32 * 1024 * 1024  # DEFAULT_MMAP_THRESHOLD_MAX on 64-bit glibc
TRIM_NEVER = 2**31 - 1  # mallopt takes an int

_applied = False


def retain_freed_memory() -> bool:
    """Ask glibc to keep freed memory for reuse; returns True when it took effect (repeat calls are free).

    Does nothing (returns False) off Linux or when the C library is not glibc.
    """
    global _applied
    if _applied:
        return True
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        logger.debug("no glibc mallopt: freed memory is returned to the system as usual")
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    # mallopt returns 1 on success; the trim setting first, since it also stops the dynamic mmap threshold
    if mallopt(M_TRIM_THRESHOLD, TRIM_NEVER) != 1 or mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_MAX) != 1:
        logger.debug("mallopt refused the settings: freed memory is returned to the system as usual")
        return False
    _applied = True
    logger.debug("glibc keeps freed memory (mmap threshold %d bytes, no trimming)", MMAP_THRESHOLD_MAX)
    return True
