"""Freed memory goes back to the operating system (certattr.engine.heap): the pattern that kept 20.8 GB in the
digits chapter's kernel (blocks under glibc's raised mmap threshold, freed below a live block at the heap's top)
is built here, and the release must shrink the process's resident memory by most of it."""
import ctypes.util
import platform

import pytest

from certattr.engine.heap import PeriodicRelease, release_freed_memory


glibc = platform.system() == "Linux" and platform.libc_ver()[0] == "glibc" and ctypes.util.find_library("c")


_SCENARIO = """
import numpy as np
from certattr.engine.heap import release_freed_memory

def rss():
    with open("/proc/self/status") as fh:
        return int(fh.read().split("VmRSS:")[1].split()[0]) / 1024

import ctypes, ctypes.util
libc = ctypes.CDLL(ctypes.util.find_library("c"))
# the state a long run reaches (glibc raises both thresholds after large frees), set here so that it does not depend
# on what this process did before: blocks up to 64 MiB come from the heap, and free() trims only above 1 GiB
libc.mallopt(-3, 64 * 2 ** 20)  # M_MMAP_THRESHOLD
libc.mallopt(-1, 2 ** 30)  # M_TRIM_THRESHOLD
blocks, pins = [], []
for _ in range(150):  # 150 x 4 MiB, now from the heap, each followed by a small live block: freed, they are holes
    blocks.append(np.ones(2 ** 20 // 8 * 4))  # inside the heap that glibc's automatic trim (of its top) cannot reach
    pins.append(np.ones(1024 * 8))
del blocks
before = rss()
released = release_freed_memory()
print(before, rss(), released, sum(p.sum() for p in pins) == 150 * 1024 * 8)
"""


@pytest.mark.skipif(not glibc, reason="malloc_trim is glibc's: elsewhere the release does nothing, by design")
def test_freed_heap_memory_is_returned():
    """In a fresh process with glibc's thresholds where a long run leaves them: most of the 600 MiB freed comes
    back."""
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-c", _SCENARIO], capture_output=True, text=True, check=True).stdout.split()
    before, after, released, pinned = float(out[0]), float(out[1]), out[2], out[3]
    assert released == "True" and pinned == "True"
    assert before - after > 400, (before, after)


def test_periodic_release_waits_its_interval(monkeypatch):
    import certattr.engine.heap as heap

    calls = []
    monkeypatch.setattr(heap, "release_freed_memory", lambda: calls.append(1))
    clock = iter([0.0, 1.0, 5.0, 10.5, 12.0, 21.0])
    monkeypatch.setattr(heap.time, "monotonic", lambda: next(clock))
    release = PeriodicRelease(10.0)  # created at t = 0
    for _ in range(5):  # t = 1, 5, 10.5, 12, 21
        release()
    assert len(calls) == 2  # at 10.5 and 21
