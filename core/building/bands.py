"""Copying FFI pixels into a cube: rows of each FFI read straight from the file (or through
astropy when it must decode them), transposed and written band by band.
"""

from __future__ import annotations

import errno
import os
import time
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import numpy as np
from astropy.io import fits

from core.building.layout import GB, BuildJob, Frame, Plane
from core.errors import CorruptFileError, CutoutError
from core.storage.atomic import pwrite_all

if TYPE_CHECKING:
    from core.building.progress import Progress

__all__ = ["Bands", "reserve"]

_TARGET_BAND_BYTES = 64 * 1024 * 1024  # one band of the output cube; larger is not faster
_BUFFERS_IN_FLIGHT = 4  # two input staging buffers + two output buffers
_IOV_MAX = 1024


def _pread_into(fd: int, buf: Any, offset: int, path: str) -> None:
    view = memoryview(buf).cast("B")
    while len(view):
        n = os.preadv(fd, [view], offset)
        if n == 0:
            raise CorruptFileError(f"{os.path.basename(path)} ends before its image data does.",
                                   field="file_list")
        view = view[n:]
        offset += n


def _read_rows_direct(fr: Frame, planes: list[tuple[int, Plane]], views: list, stage: np.ndarray, y0: int,
                      n: int, nx: int) -> None:
    """Rows ``y0:y0+n`` of the planes of one plain float32 FFI, ``os.preadv`` into the staging band."""
    fd = os.open(fr.path, os.O_RDONLY)
    try:
        for tp, plane in planes:
            off = plane.offset + y0 * nx * 4
            got = os.preadv(fd, views[tp][:n], off)
            if got != n * nx * 4:
                if got <= 0:
                    raise CorruptFileError(f"{fr.name} ends before its image data does.", field="file_list")
                _pread_into(fd, stage[:n, tp], off, fr.path)
    finally:
        os.close(fd)


def _read_rows_astropy(fr: Frame, planes: list[tuple[int, Plane]], stage: np.ndarray, y0: int, n: int) -> None:
    """Rows ``y0:y0+n`` of the planes of an FFI astropy must decode (compressed, scaled, not float32)."""
    with fits.open(fr.path, mode="denywrite", memmap=True, lazy_load_hdus=True) as hdul:
        for tp, plane in planes:
            stage[:n, tp, :] = hdul[plane.ext].section[y0:y0 + n, :]


def reserve(fd: int, size: int) -> None:
    """Reserve ``size`` bytes of disk for ``fd`` (``posix_fallocate``) where the file system can."""
    try:
        os.posix_fallocate(fd, 0, size)
    except OSError as exc:
        if exc.errno not in (errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS):
            raise


class Bands:
    """A cube's image data copied from the FFIs in bands of rows.

    Each band of every new FFI is read into a staging buffer (and, when updating, the old cube's
    rows into another), transposed into an output buffer and written. There are two of each
    buffer, so the next band is read and the previous one written (on the pool's two threads)
    while the main thread transposes this one. The band's height keeps the four buffers within
    ``max_memory`` (and the band near ``_TARGET_BAND_BYTES``).
    """

    def __init__(self, job: BuildJob) -> None:
        self.job = job
        layout, old = job.layout, job.old
        nx, nplanes = layout.nx, layout.nplanes
        t_new = len(job.frames)
        self.tp_new = t_new * nplanes
        # Bytes held per row of a band: staging (new frames, + old rows) and output, two of each.
        per_row = 2 * (t_new * nplanes * nx * 4 + (layout.row_bytes if old else 0)) + 2 * layout.row_bytes
        rows = int(min(job.max_memory * GB // per_row, max(1, _TARGET_BAND_BYTES // layout.row_bytes),
                       layout.ny, _IOV_MAX))
        self.rows = max(rows, 1)
        self.count = -(-layout.ny // self.rows)
        self.stats = layout.stats
        self.stats.update(read=0.0, transpose=0.0, write=0.0, blocks=self.count, rows=self.rows)
        self.stages = [np.empty((self.rows, self.tp_new, nx), dtype=">f4") for _ in range(2)]
        self.olds = ([np.empty((self.rows, nx, old.shape[2], nplanes), dtype=">f4") for _ in range(2)]
                     if old else None)
        self.outs = [np.empty((self.rows, nx, layout.nframes, nplanes), dtype=">f4") for _ in range(2)]
        # Row views for preadv, built once per staging buffer: views[b][tp] = [row 0, row 1, ...].
        self.views = [[[memoryview(st[r, tp]).cast("B") for r in range(self.rows)] for tp in range(self.tp_new)]
                      for st in self.stages]

    def _span(self, k: int) -> tuple[int, int]:
        """First row and number of rows of band ``k``."""
        y0 = k * self.rows
        return y0, min(self.rows, self.job.layout.ny - y0)

    def read(self, k: int) -> int:
        """Read band ``k`` of every new FFI (and of the old cube) into staging buffer ``k % 2``."""
        t = time.monotonic()
        job, b = self.job, k % 2
        y0, n = self._span(k)
        nplanes, nx = job.layout.nplanes, job.layout.nx
        for f, fr in enumerate(job.frames):
            try:
                direct = [(f * nplanes + p, pl) for p, pl in enumerate(fr.planes) if pl.offset is not None]
                through_astropy = [(f * nplanes + p, pl) for p, pl in enumerate(fr.planes) if pl.offset is None]
                if direct:
                    _read_rows_direct(fr, direct, self.views[b], self.stages[b], y0, n, nx)
                if through_astropy:
                    _read_rows_astropy(fr, through_astropy, self.stages[b], y0, n)
            except CutoutError:
                raise
            except Exception as exc:
                raise CorruptFileError(f"Could not read the pixels of {fr.name} ({exc}).",
                                       field="file_list") from exc
        old = job.old
        if old is not None:
            with open(old.path, "rb", buffering=0) as fh:
                _pread_into(fh.fileno(), self.olds[b][:n],
                            old.offset + y0 * old.shape[1] * old.shape[2] * nplanes * 4, old.path)
        self.stats["read"] += time.monotonic() - t
        return k

    def transpose(self, k: int) -> None:
        """Band ``k``'s staged frames (and old rows) into output buffer ``k % 2``, in time order."""
        t = time.monotonic()
        layout, plan = self.job.layout, self.job.placement
        n = self._span(k)[1]
        st, out = self.stages[k % 2][:n], self.outs[k % 2][:n]
        if self.job.old is None:
            # (rows, T*P, nx) -> (rows, nx, T*P): one transpose per band.
            np.copyto(out.reshape(n, layout.nx, self.tp_new), st.transpose(0, 2, 1))
        else:
            out[:, :, plan.old_pos, :] = self.olds[k % 2][:n]
            out[:, :, plan.new_pos, :] = st.reshape(n, len(self.job.frames), layout.nplanes,
                                                    layout.nx).transpose(0, 3, 1, 2)
        self.stats["transpose"] += time.monotonic() - t

    def write(self, fd: int, k: int) -> int:
        """Write output buffer ``k % 2`` at band ``k``'s place in the file ``fd``."""
        t = time.monotonic()
        layout = self.job.layout
        y0, n = self._span(k)
        pwrite_all(fd, self.outs[k % 2][:n], layout.data_offset + y0 * layout.row_bytes)
        self.stats["write"] += time.monotonic() - t
        return k

    def copy(self, fd: int, pool: ThreadPoolExecutor, bar: Progress) -> None:
        """Every band into ``fd``: band k+1 is read and band k-1 written while band k is transposed."""
        reading = pool.submit(self.read, 0)
        writing = None
        for k in range(self.count):
            reading.result()
            if k + 1 < self.count:
                reading = pool.submit(self.read, k + 1)
            self.transpose(k)
            if writing is not None:
                writing.result()
                bar.update(k)
            writing = pool.submit(self.write, fd, k)
        writing.result()
        bar.update(self.count)
