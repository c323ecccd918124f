"""app.heap: with the mmap threshold fixed, freed request-sized buffers go back to the system."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc and /proc")

# After one 8 MiB block is freed, glibc's moving threshold sends 4 MiB blocks to the heap, where
# small long-lived objects between them keep the freed space from being trimmed.
_SCRIPT = textwrap.dedent("""
    import sys
    import numpy as np
    from app.heap import set_mmap_threshold
    fixed = set_mmap_threshold(int(sys.argv[1]))
    def rss_mib():
        return int(open("/proc/self/statm").read().split()[1]) * 4096 / 2**20
    first = np.ones((8 << 20) // 8)
    del first
    base = rss_mib()
    big, keep = [], []
    for _ in range(40):
        big.append(np.ones((4 << 20) // 8))
        keep.append(bytearray(2000))
    peak = rss_mib()
    del big
    print(fixed, round(peak - base), round(rss_mib() - base))
""")


def _run(threshold: int) -> tuple[bool, int, int]:
    # the allocator's defaults: no MALLOC_* tuning inherited (Dask's nanny puts MALLOC_TRIM_THRESHOLD_
    # in this process's environment when a test starts a cluster, and any such setting turns glibc's
    # moving threshold off, so the control run below would keep nothing); one arena, no BLAS threads
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    env.update(MALLOC_ARENA_MAX="1", OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1")
    out = subprocess.run([sys.executable, "-c", _SCRIPT, str(threshold)], capture_output=True, text=True,
                         check=True, timeout=60, env=env).stdout.split()
    return out[0] == "True", int(out[1]), int(out[2])


def test_freed_buffers_return_to_the_system():
    fixed, peak, after = _run(1 << 20)
    if not fixed:
        pytest.skip("not glibc: no mallopt")
    assert peak >= 150 and after <= 20  # 160 MiB held, then given back
    kept, peak0, after0 = _run(0)  # the allocator's own threshold: the same work keeps its memory
    assert not kept and peak0 >= 150 and after0 >= 100


def test_setting_reaches_the_allocator(tmp_path, monkeypatch):
    import app.main
    from app.settings import Settings

    seen = []
    monkeypatch.setattr(app.main, "set_mmap_threshold", seen.append)
    app.main.create_app(Settings(cube_dirs=[], work_dir=tmp_path, mmap_threshold_bytes=2 << 20))
    assert seen == [2 << 20]


# A piece just below the mmap threshold, allocated, written and freed over and over at the top of
# the heap (a streamed answer's pieces): with the trim threshold fixed beside the mmap threshold the
# heap keeps that memory for the next piece; with only the mmap threshold fixed, glibc's trim
# threshold stays at 128 KiB, and every free gives the piece back and every allocation faults it in.
_PIECES = textwrap.dedent("""
    import ctypes, resource, sys
    import numpy as np
    from app.heap import set_mmap_threshold
    if sys.argv[1] == "both":
        set_mmap_threshold(1 << 20)
    else:  # the mmap threshold alone
        ctypes.CDLL("libc.so.6").mallopt(-3, 1 << 20)
    def pieces(n):
        for _ in range(n):
            piece = np.ones((512 << 10) // 8)
            del piece
    pieces(5)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    pieces(200)
    print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
""")


def _faults(mode: str) -> int:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    env.update(MALLOC_ARENA_MAX="1", OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1")
    out = subprocess.run([sys.executable, "-c", _PIECES, mode], capture_output=True, text=True, check=True,
                         timeout=60, env=env).stdout
    return int(out.split()[-1])


def test_pieces_below_the_threshold_are_not_faulted_in_afresh():
    if not _run(1 << 20)[0]:
        pytest.skip("not glibc: no mallopt")
    assert _faults("both") < 2_000  # 200 pieces of 128 pages each, reused
    assert _faults("mmap-only") > 10_000  # the control: each piece given back and faulted in again
