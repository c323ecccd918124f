"""File objects over byte sources, and opening FITS files lazily from any source.

:class:`RangeFile` turns a :class:`~core.storage.sources.ByteSource` into a read-only, seekable file object
(astropy reads FITS from it); :func:`open_fits` opens a local path or an ``s3://`` URI lazily, so
only header blocks and the bytes of any ``.section`` slice are read. The in-memory TPFs of
:mod:`core.tpf.cut` are read through the same class over a :class:`~core.storage.sources.MemorySource`.
"""

from __future__ import annotations

import io
import os
import threading
from collections import OrderedDict
from typing import TYPE_CHECKING, Any

import numpy as np

from core.errors import CorruptFileError, CutoutError, NotFoundError
from core.storage.sources import ByteSource, LocalSource, open_source

if TYPE_CHECKING:  # pragma: no cover
    from astropy.io.fits import HDUList

    from core.storage.s3 import S3Config

__all__ = ["RangeFile", "RowSection", "image_section", "open_fits"]

KiB = 1024
MiB = 1024 * 1024


class RangeFile(io.RawIOBase):
    """Read-only, seekable file object over a :class:`ByteSource` with a small LRU block cache.

    Reads are served from ``block_size`` blocks (default 64 KiB, ``cache_bytes`` 4 MiB in all);
    missing blocks of one read are fetched with one :meth:`ByteSource.read_ranges` call (so a run
    of missing blocks is one GET). Reads larger than the cache bypass it and fetch exactly the
    bytes asked; ``cache_bytes=0`` turns the cache off (for a :class:`~core.storage.sources.MemorySource`).
    Suits ``astropy.io.fits.open(RangeFile(src), lazy_load_hdus=True)`` followed by
    ``hdu.section[...]``.

    Over a source that offers ``view(offset, n)`` (bytes in memory), :meth:`read` of at least
    ``view_bytes`` returns a read-only view instead of a copy: astropy copies the array data it
    reads from a file object anyway, so a view spares a 20 MB TPF a second copy of its table.
    """

    #: reads of at least this many bytes are views when the source can give them
    view_bytes = 64 * KiB

    mode = "rb"

    def __init__(
        self,
        source: ByteSource,
        *,
        block_size: int = 64 * KiB,
        cache_bytes: int = 4 * MiB,
        close_source: bool = False,
    ) -> None:
        super().__init__()
        self.source = source
        self.name = source.uri
        self._pos = 0
        self._bs = int(block_size)
        self._max_blocks = int(cache_bytes) // self._bs if cache_bytes else 0
        self._view = getattr(source, "view", None)
        self._cache: OrderedDict[int, bytes] = OrderedDict()
        self._lock = threading.Lock()
        self._close_source = close_source

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def writable(self) -> bool:
        return False

    def tell(self) -> int:
        self._checkClosed()
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        self._checkClosed()
        if whence == io.SEEK_SET:
            pos = offset
        elif whence == io.SEEK_CUR:
            pos = self._pos + offset
        elif whence == io.SEEK_END:
            pos = self.source.size + offset
        else:
            raise ValueError(f"invalid whence ({whence})")
        if pos < 0:
            raise OSError(22, "negative seek position")
        self._pos = pos
        return pos

    def _blocks(self, b0: int, b1: int) -> list[bytes]:
        """Blocks ``b0..b1`` inclusive, from cache or fetched together."""
        bs, size = self._bs, self.source.size
        with self._lock:
            have = {b: self._cache.get(b) for b in range(b0, b1 + 1)}
            for b, v in have.items():
                if v is not None:
                    self._cache.move_to_end(b)
        missing = [b for b, v in have.items() if v is None]
        if missing:
            ranges = [(b * bs, min(bs, size - b * bs)) for b in missing]
            datas = self.source.read_ranges(ranges, coalesce_gap=0)
            with self._lock:
                for b, d in zip(missing, datas):
                    have[b] = d
                    self._cache[b] = d
                    self._cache.move_to_end(b)
                while len(self._cache) > self._max_blocks:
                    self._cache.popitem(last=False)
        return [have[b] for b in range(b0, b1 + 1)]  # type: ignore[misc]

    def readinto(self, buffer: Any) -> int:
        self._checkClosed()
        out = memoryview(buffer).cast("B")
        size = self.source.size
        start = self._pos
        n = min(out.nbytes, max(0, size - start))
        if n <= 0:
            return 0
        bs = self._bs
        b0, b1 = start // bs, (start + n - 1) // bs
        if self._max_blocks < 2 or b1 - b0 + 1 > self._max_blocks // 2:
            self.source.read_into(start, out[:n])
        else:
            pos = 0
            for b, blk in zip(range(b0, b1 + 1), self._blocks(b0, b1)):
                lo = max(start, b * bs) - b * bs
                hi = min(start + n, b * bs + len(blk)) - b * bs
                out[pos : pos + hi - lo] = blk[lo:hi]
                pos += hi - lo
        self._pos = start + n
        return n

    def read(self, size: int | None = -1) -> bytes | memoryview:
        self._checkClosed()
        if size is None or size < 0:
            size = max(0, self.source.size - self._pos)
        n = min(size, max(0, self.source.size - self._pos))
        if self._view is not None and n >= self.view_bytes:
            chunk = self._view(self._pos, n)
            self._pos += n
            return chunk
        buf = bytearray(n)
        n = self.readinto(buf)
        return bytes(buf[:n])

    def readall(self) -> bytes:
        return self.read(-1)

    def close(self) -> None:
        if not self.closed and self._close_source:
            self.source.close()
        with self._lock:
            self._cache.clear()
        super().close()


# --------------------------------------------------------------------------------------------
# FITS
# --------------------------------------------------------------------------------------------


def open_fits(uri: str | os.PathLike, *, s3: S3Config | None = None) -> HDUList:
    """Open a FITS file lazily from a local path or ``s3://`` URI.

    Both go through a :class:`RangeFile` over the file's :class:`~core.storage.sources.ByteSource`
    (``os.pread`` locally, ranged GETs on S3), so only header blocks and the bytes of any
    ``.section`` slice (or :func:`image_section` window) are read. Nothing is memory-mapped: a
    local file truncated while it is read fails that read (:class:`CorruptFileError`) instead of
    killing the process with SIGBUS, and only a regular file is opened at all.

    Raises
    ------
    NotFoundError, ForbiddenError, UnavailableError
        From :func:`open_source`.
    CorruptFileError
        The file is not a readable FITS file.
    """
    from astropy.io import fits

    src = open_source(uri, s3=s3)
    try:
        head = src.read_range(0, min(src.size, 80))
        if not head.startswith(b"SIMPLE  ="):
            raise CorruptFileError(f"Not a FITS file: {src.uri}")
        hdul = fits.open(RangeFile(src, close_source=True), lazy_load_hdus=True, mode="readonly")
        # make sure the primary header parses now (lazy_load_hdus defers the rest)
        hdul[0]
        return hdul
    except CutoutError:
        src.close()
        raise
    except FileNotFoundError:
        src.close()
        raise NotFoundError(f"File not found: {uri}") from None
    except (OSError, ValueError, IndexError, TypeError, ArithmeticError) as exc:
        src.close()
        raise CorruptFileError(f"Cannot read FITS file {uri}: {exc}") from None


_BITPIX_DTYPES = {8: "u1", 16: ">i2", 32: ">i4", 64: ">i8", -32: ">f4", -64: ">f8"}


def _source_of(hdu: Any) -> ByteSource | None:
    """The byte source behind an HDU opened by :func:`open_fits`, if it has one."""
    info = hdu.fileinfo() or {}
    raw = getattr(info.get("file"), "_file", None)
    return raw.source if isinstance(raw, RangeFile) else None


def image_section(hdu: Any) -> Any:
    """What to slice a window of a 2-D image HDU from, reading only the window.

    For an uncompressed, unscaled image of a local file opened by :func:`open_fits`: a
    :class:`RowSection`, one ``pread`` per window row straight into the result (astropy's
    ``section`` reads row by row through the file object, ~100x slower); otherwise ``hdu.section``.
    """
    from astropy.io import fits

    header = hdu.header
    source = _source_of(hdu)
    if (
        type(hdu) in (fits.PrimaryHDU, fits.ImageHDU)
        and isinstance(source, LocalSource)
        and len(hdu.shape) == 2
        and header.get("BITPIX") in _BITPIX_DTYPES
        and header.get("BSCALE", 1) == 1
        and header.get("BZERO", 0) == 0
        and "BLANK" not in header
    ):
        return RowSection(hdu, source, int(hdu.fileinfo()["datLoc"]), np.dtype(_BITPIX_DTYPES[header["BITPIX"]]))
    return hdu.section


def _section_base() -> type:
    from astropy.io.fits.hdu.image import Section

    return Section


class RowSection(_section_base()):  # type: ignore[misc]
    """A 2-D image's pixels read a window at a time with ``pread`` (an astropy ``Section``, so
    :class:`astropy.nddata.Cutout2D` takes it without reading the image).

    A slice ``[y0:y1, x0:x1]`` (unit steps) is one ``preadv`` per row into the result; anything
    else falls back to astropy's own section. Reads past the end of a file that shrank raise
    :class:`~core.errors.CorruptFileError`.
    """

    def __init__(self, hdu: Any, source: LocalSource, offset: int, dtype: np.dtype) -> None:
        super().__init__(hdu)
        self._source, self._offset, self._dtype = source, offset, dtype
        self._ny, self._nx = (int(v) for v in hdu.shape)

    @property
    def shape(self) -> tuple[int, int]:
        return self._ny, self._nx

    @property
    def dtype(self) -> np.dtype:
        return self._dtype

    @property
    def ndim(self) -> int:
        return 2

    def __getitem__(self, key: Any) -> Any:
        if not (isinstance(key, tuple) and len(key) == 2 and all(isinstance(k, slice) for k in key)):
            return super().__getitem__(key)
        (y0, y1, ys), (x0, x1, xs) = key[0].indices(self._ny), key[1].indices(self._nx)
        if ys != 1 or xs != 1:
            return super().__getitem__(key)
        ny, nx = max(0, y1 - y0), max(0, x1 - x0)
        out = np.empty((ny, nx), self._dtype)
        if ny and nx:
            size = self._dtype.itemsize
            self._source.read_rows_into(self._offset + (y0 * self._nx + x0) * size, self._nx * size, ny, out)
        return out
