"""`keep_freed_memory`: freed blocks stay with the process, so reusing them costs no page faults.

Oracle: the kernel's count of this process's minor page faults (`getrusage`). A loop that
allocates two 16 MB blocks, touches them and frees them is the pattern of a render step; by
default glibc returns the freed top of the heap to the system every time (its trim threshold
is twice the largest block freed so far), so every round faults all 8192 pages in again. Run in
a child process, since the setting holds for the rest of the process that makes it.
"""

from __future__ import annotations

import subprocess
import sys

CHILD = r"""
import ctypes, resource, sys
from microtome.runtime import keep_freed_memory

libc = ctypes.CDLL(None)
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]
SIZE = 16 << 20

def faults(rounds=20):
    start = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(rounds):
        blocks = [libc.malloc(SIZE) for _ in range(2)]
        for b in blocks:
            ctypes.memset(b, 1, SIZE)
        for b in blocks:
            libc.free(b)
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - start

faults(2)  # glibc settles its thresholds
before = faults()
took = keep_freed_memory()
faults(1)  # the heap grows once to the new level
after = faults()
print(took, before, after)
"""


def test_freed_memory_is_reused_without_page_faults():
    out = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True, check=True)
    took, before, after = out.stdout.split()
    assert took == "True"
    pages = 20 * 2 * (16 << 20) // 4096  # every page of every round
    assert int(before) > pages // 2  # the default: faulted in again round after round
    assert int(after) < pages // 20  # kept: next to nothing
