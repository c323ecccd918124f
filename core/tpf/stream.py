"""Big target pixel files in bounded pieces: the same bytes as an in-memory cut, in bounded memory.

A TPF is frame-major (one table row per frame holding every pixel) while a cube is pixel-major
(each pixel's frames contiguous), so a TPF cannot be written in order from one pass over the cube
without holding all its pixels. :class:`TpfStream` does it in two passes with a pixel spool, a
temporary file under ``work_dir``:

1. the window's cube rows are read in tiles of at most ``band_bytes`` (one contiguous range per
   row, each byte once, all ranges of an S3 tile at once), transposed to frame-major and appended
   to the spool (one write per tile);
2. the file is produced in order: the headers, then the table in bands of frames (each band's
   constant columns from the cube's per-frame columns, its pixels read back from every tile of the
   spool), then the aperture.

Memory stays about three bands (default 32 MB each) whatever the cutout's size; temporary disk is
the window's pixels (frames x planes x 4 bytes a pixel). The rows are filled by the routines of
:mod:`core.tpf.layout`, so the bytes equal :func:`core.tpf.cut.cut_bytes`'s. The spool is removed when
the stream ends, fails or is closed; :meth:`TpfStream.chunks` yields empty chunks between the
tiles of pass 1, so a consumer can stop it early (a client gone away).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from core.cubes.cube import Cube
from core.cubes.frames import FrameSelection, read_cadences
from core.product import Product
from core.storage.atomic import output_error, pwrite_all, remove_stale_temporaries, temporary_file
from core.tpf.layout import cached_fit, fill_rows, fill_slots, layout

__all__ = ["DEFAULT_BAND_BYTES", "StreamCancelled", "TpfStream", "remove_stale_spools"]

#: target bytes of one band (a tile of cube rows in pass 1, a band of table rows in pass 2)
DEFAULT_BAND_BYTES = 32 * 1024 * 1024
#: a spool's name is ``tpf-spool-{pid}-{random}.bin`` (:func:`core.storage.atomic.temporary_file`)
_SPOOL_PREFIX, _SPOOL_SUFFIX = "tpf-spool-", ".bin"


class StreamCancelled(Exception):
    """The stream's ``cancel`` event was set (its consumer has gone away)."""


@dataclass(frozen=True)
class _Tile:
    """A block of the window's on-cube pixels: rows ``y0:y1``, columns ``x0:x1`` (cube pixels),
    spooled frame-major at ``offset``."""

    y0: int
    y1: int
    x0: int
    x1: int
    offset: int

    @property
    def npix(self) -> int:
        return (self.y1 - self.y0) * (self.x1 - self.x0)


def remove_stale_spools(work_dir: str | os.PathLike) -> int:
    """Remove spool files left in ``work_dir`` by processes that no longer run; return how many."""
    return remove_stale_temporaries(work_dir, _SPOOL_PREFIX, _SPOOL_SUFFIX)


class TpfStream:
    """The TPF of a located cut (:func:`core.tpf.cut.locate`), produced in bounded pieces.

    Parameters
    ----------
    cube, geo : the cube and where the cut lands.
    work_dir : directory of the pixel spool.
    band_bytes : target size of a band (memory is about three bands).
    threads : reads in flight at once when reading a tile (default the source's).
    cancel : an event; once set, the stream stops at its next tile or band with
        :class:`StreamCancelled` (and removes its spool).
    frames : the frame selection (time window, binning) to keep; default every frame. Tiles are
        planned on the frames read, and binned before they are spooled.

    Attributes
    ----------
    nbytes : size of the TPF.
    spool_bytes : temporary disk the stream takes while it runs.
    memory_bytes : memory it takes, about.
    fit : the window's linear WCS fit.
    """

    def __init__(self, cube: Cube, geo: Any, *, work_dir: str | os.PathLike, band_bytes: int = DEFAULT_BAND_BYTES,
                 threads: int | None = None, cancel: Any = None, frames: FrameSelection | None = None) -> None:
        self.cube, self.geo = cube, geo
        self.frames = frames
        self.cancel = cancel
        self.work_dir = os.fspath(work_dir)
        self.band_bytes = max(1 << 20, int(band_bytes))
        self.threads = threads
        win = geo.window
        self.layout = layout(cube, win.nx, win.ny, frames)
        self.fit, self._values = cached_fit(cube, win, self.layout)
        self.nbytes = self.layout.nbytes
        self._tiles = self._plan_tiles()
        ins = geo.inside
        self.spool_bytes = ins.nx * ins.ny * self.layout.nrows * cube.nplanes * 4
        self.memory_bytes = 3 * self.band_bytes + 2 * self.layout.row_bytes
        self._spool: str | None = None
        self._fd: int | None = None

    # -- planning --------------------------------------------------------------------------------
    def _plan_tiles(self) -> list[_Tile]:
        cube, ins, frames = self.cube, self.geo.inside, self.frames
        read = cube.nframes if frames is None else frames.ncadences * frames.frame_bin
        per_px = read * cube.nplanes * 4  # what a tile reads per pixel
        cols = max(1, min(ins.nx, self.band_bytes // per_px))
        rows = max(1, min(ins.ny, self.band_bytes // (per_px * cols))) if cols == ins.nx else 1
        per_px = self.layout.nrows * cube.nplanes * 4  # what it spools per pixel
        tiles, offset = [], 0
        for y0 in range(ins.y0, ins.y1, rows):
            y1 = min(ins.y1, y0 + rows)
            for x0 in range(ins.x0, ins.x1, cols):
                x1 = min(ins.x1, x0 + cols)
                tile = _Tile(y0, y1, x0, x1, offset)
                tiles.append(tile)
                offset += tile.npix * per_px
        return tiles

    # -- the stream --------------------------------------------------------------------------------
    def chunks(self) -> Iterator[memoryview]:
        """The TPF's bytes in order, in pieces of at most about ``band_bytes`` (empty pieces while
        the spool is written). The spool is removed when the generator ends or is closed."""
        try:
            yield from self._spool_pixels()
            yield from self._emit()
        finally:
            self.close()

    def _check_cancel(self) -> None:
        if self.cancel is not None and self.cancel.is_set():
            raise StreamCancelled("the TPF stream was cancelled")

    def close(self) -> None:
        """Remove the spool (idempotent)."""
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)
        spool, self._spool = self._spool, None
        if spool is not None:
            try:
                os.unlink(spool)
            except FileNotFoundError:
                pass

    def _spool_pixels(self) -> Iterator[memoryview]:
        os.makedirs(self.work_dir, exist_ok=True)
        try:
            self._spool = temporary_file(self.work_dir, _SPOOL_PREFIX, _SPOOL_SUFFIX, mode=0o600)
            self._fd = os.open(self._spool, os.O_RDWR | getattr(os, "O_CLOEXEC", 0))
            for tile in self._tiles:
                self._check_cancel()
                block = read_cadences(self.cube, tile.y0, tile.y1, tile.x0, tile.x1, self.frames, self.threads)
                frame_major = np.ascontiguousarray(block.transpose(2, 3, 0, 1))  # (T, P, ty, tx)
                del block
                pwrite_all(self._fd, frame_major, tile.offset)
                del frame_major
                yield memoryview(b"")
        except OSError as exc:
            from core.errors import CutoutError

            if isinstance(exc, CutoutError):
                raise
            raise output_error(exc, self._spool or self.work_dir, "work_dir") from None

    def _emit(self) -> Iterator[memoryview]:
        lay, geo = self.layout, self.geo
        o = lay.offsets
        # the primary and PIXELS headers, with their per-cut values
        head = np.empty(o[2], np.uint8)
        head[o[0] : o[1]] = np.frombuffer(lay.headers[0], np.uint8)
        head[o[1] : o[2]] = np.frombuffer(lay.headers[1], np.uint8)
        fill_slots(head, lay, self._values, geo.ra, geo.dec, base=0)
        yield memoryview(head)
        del head
        # the table, a band of frames at a time
        frames = max(1, self.band_bytes // lay.row_bytes)
        for t0 in range(0, lay.nrows, frames):
            self._check_cancel()
            t1 = min(lay.nrows, t0 + frames)
            yield memoryview(self._rows(t0, t1))
        # the table's padding, the APERTURE header with its values, the aperture and its padding
        tail_start = o[2] + lay.nrows * lay.row_bytes
        tail = np.zeros(o[5] - tail_start, np.uint8)
        hdr = tail[o[3] - tail_start : o[4] - tail_start]
        hdr[:] = np.frombuffer(lay.headers[2], np.uint8)
        fill_slots(tail, lay, self._values, geo.ra, geo.dec, base=tail_start)
        aperture = tail[o[4] - tail_start : o[4] - tail_start + lay.nx * lay.ny * 4].view(">i4").reshape(lay.ny, lay.nx)
        win, ins = geo.window, geo.inside
        aperture[ins.y0 - win.y0 : ins.y1 - win.y0, ins.x0 - win.x0 : ins.x1 - win.x0] = 1
        yield memoryview(tail)

    def _rows(self, t0: int, t1: int) -> np.ndarray:
        """Table rows of frames ``t0:t1`` as bytes, filled as :func:`core.tpf.layout.fill_pixels` fills them."""
        lay, cube, geo = self.layout, self.cube, self.geo
        n = t1 - t0
        buf = np.empty(n * lay.row_bytes, np.uint8)
        rec = buf.view(lay.dtype)
        fill_rows(rec, cube, t0, t1, pixels=False, frames=self.frames)
        win, ins = geo.window, geo.inside
        partial = ins.nx != win.nx or ins.ny != win.ny
        with_err = cube.product == Product.SPOC and cube.nplanes > 1
        if partial:  # astrocut pads with its fill value, NaN
            rec["FLUX"] = np.nan
            rec["FLUX_ERR"] = np.nan
        if not with_err:
            rec["FLUX_ERR"] = 0  # TICA: astrocut 0.11.1 writes zeros (TICA cubes carry no errors)
        planes = 2 if with_err and lay.err_follows else 1
        flux = lay.dtype.fields["FLUX"][1]
        dst = np.ndarray((n, planes, lay.ny, lay.nx), ">f4", buf, flux,
                         (lay.row_bytes, lay.ny * lay.nx * 4, lay.nx * 4, 4))
        P = cube.nplanes
        for tile in self._tiles:
            ty, tx = tile.y1 - tile.y0, tile.x1 - tile.x0
            per_frame = P * ty * tx * 4
            chunk = np.empty((n, P, ty, tx), ">f4")
            _pread_all(self._fd, chunk, tile.offset + t0 * per_frame)
            dst[:, :, tile.y0 - win.y0 : tile.y1 - win.y0, tile.x0 - win.x0 : tile.x1 - win.x0] = chunk[:, :planes]
        return buf


def _pread_all(fd: int, array: np.ndarray, offset: int) -> None:
    view = memoryview(array).cast("B")
    got = 0
    while got < len(view):
        n = os.preadv(fd, [view[got:]], offset + got)
        if n <= 0:
            raise OSError(f"the pixel spool ended at byte {offset + got}")
        got += n
