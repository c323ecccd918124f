"""Building TESS image cubes (the astrocut/MAST cube layout) from full-frame images.

:class:`CubeFactory` turns a list of SPOC FFIs (or TICA FFIs with ``product=Product.TICA`` /
:class:`TicaCubeFactory`) into one cube file that cutouts read quickly: each CCD row of the cube
holds, for every column, the whole time series of flux and error.

Follows astrocut 1.4.0 ``CubeFactory`` (and 0.11.1 ``TicaCubeFactory`` for TICA) for everything a
reader of the file can see:

* HDU 0: primary header of the earliest FFI (inputs sorted by ``TSTART`` of extension 1; TICA:
  ``STARTTJD`` of extension 0), ``CHECKSUM`` removed, ``ORIGIN='STScI/MAST'``, ``DATE`` (build
  date), ``CAMERA``/``CCD`` (TICA: ``CAMNUM``/``CCDNUM``), ``SECTOR``, then ``DATE-END``/``TSTOP``
  (TICA: ``ENDTJD``) of the last FFI and ``EXTNAME='PRIMARY'``.
* HDU 1: float32 big-endian, FITS dims ``(P, T, nx, ny)`` = numpy ``(ny, nx, T, P)``, only the
  mandatory cards. SPOC: ``P=2`` (flux from extension 1, error from extension 2). TICA: ``P=1``
  (flux only; TICA FFIs have no error image), as astrocut 0.11.1 made them.
* HDU 2: binary table, one row per FFI in time order, one column per card of a template FFI's image
  header (the first input, in the order given, whose header has ``WCSAXES=2``; TICA ``NAXIS=2``):
  strings ``A<len of template value>``, bools and ints ``J``, everything else ``D``; missing values
  are ``""``, ``0`` and NaN; plus ``FFI_FILE`` (basename, ``A<len of template name>``). The table
  header carries each card's comment as the value of a keyword of the column's name, as astrocut
  does. Every FFI is kept, whether or not it has a WCS (astrocut does not skip any either).

Departs from astrocut, on purpose:

* Memory and I/O: astrocut peaks at about 2x the cube whatever ``max_memory`` says and writes the
  cube's bytes twice. Here the file is written once, by ``os.pwrite`` at computed offsets, into a
  temporary file opened once: headers, then the image data in bands of rows (each FFI's row band
  is one contiguous byte range read with ``os.preadv``, transposed once by numpy and written with
  one ``pwrite``), then the table. Reads of the next band and the write of the previous band run
  on two threads while the main thread transposes. Peak memory is about four bands, bounded by
  ``max_memory`` (and by a 64 MB band target; a larger band is not faster). Direct reads are used
  instead of astropy's data access for speed; files that are compressed, scaled or not float32
  are read through astropy's ``section`` instead. For the same reason FFI headers are located
  and their plain cards parsed from the raw 80-byte cards (astropy's parser costs ~10 ms per
  header, several seconds per sector); the template header, the primary headers and anything
  unusual (commentary, CONTINUE, HIERARCH cards) still go through astropy.
* The output is written to ``<cube_file>.partial-<pid>-<random>`` and renamed when complete; on
  any error the temporary file is removed. Stale temporary files of dead processes are removed.
* ``SECTOR``: when ``sector`` is not given it is taken from the FFIs (primary ``SECTOR`` card, else
  the ``-sNNNN-`` / ``_sNNNN-`` part of the file name) instead of being left undefined.
* TICA cubes also get ``CAMERA``/``CCD`` (copies of ``CAMNUM``/``CCDNUM``) so that one reader fits
  both products.
* Header values that astrocut cannot store (commentary cards, a string in a number column) are
  stored as their text or as the column's null value instead of raising.
* ``update=True`` rewrites the cube (its dimensions change) merging old and new frames in time
  order; astrocut's ``update_cube`` appends new frames at the end whatever their times. The table
  keeps the existing cube's columns; the primary header gains astrocut's two HISTORY cards.
* A disk that fills up raises :class:`UnavailableError` (a server-side condition that may clear,
  not a bad request) and leaves no partial cube; the file is reserved with ``posix_fallocate``
  first so that a full disk is usually found before any work is done.
* When no FFI satisfies the template requirement astrocut fails; here the first FFI is used.
"""

from __future__ import annotations

import errno
import io
import logging
import os
import re
import time
import warnings
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from copy import deepcopy
from datetime import date
from typing import Any

import numpy as np
from astropy.io import fits

from core.building.bands import Bands, reserve
from core.building.layout import (
    COMMENTARY,
    GB,
    PRODUCTS,
    BuildJob,
    Column,
    Frame,
    Layout,
    OldCube,
    Placement,
    Plane,
    header_value,
    is_plain_fits,
    store,
)
from core.building.progress import Progress, print_timings
from core.errors import (
    CorruptFileError,
    CutoutError,
    DataWarning,
    InvalidInputError,
    MissingInputError,
    NotFoundError,
    UnavailableError,
)
from core.fitsio.cards import TooFewHdus, card_values, raw_hdus
from core.product import Product
from core.storage.atomic import pwrite_all, remove_stale_temporaries, temporary_file

__all__ = ["CubeFactory", "TicaCubeFactory"]

logger = logging.getLogger("core.building.factory")

# Keywords that a binary table header already uses: astrocut does not copy comments onto them.
_TABLE_STRUCTURAL = ("XTENSION", "BITPIX", "NAXIS", "NAXIS1", "NAXIS2", "PCOUNT", "GCOUNT", "TFIELDS")
_SECTOR_IN_NAME = re.compile(r"[-_]s(\d{4})[-_]")


class CubeFactory:
    """Build TESS image cubes (astrocut/MAST layout) from FFIs, with bounded memory.

    Follows astrocut 1.4.0 ``CubeFactory`` for the file's content; departs in memory use, I/O and
    failure handling (see the module docstring).

    Parameters
    ----------
    max_memory : float
        Memory in GB (1e9 bytes) available for the cube data being assembled.
    product : str
        ``SPOC`` (default) or ``TICA``.
    """

    def __init__(self, max_memory: float = 50, product: str = Product.SPOC) -> None:
        self._max_memory = self._check_memory(max_memory)
        key = Product.parse(product)
        self.product = key.value
        self._spec = PRODUCTS[key]

    # ------------------------------------------------------------------ public
    def make_cube(
        self,
        file_list: Iterable[str | os.PathLike] | str | os.PathLike,
        cube_file: str | os.PathLike = "img-cube.fits",
        sector: int | None = None,
        max_memory: float | None = None,
        verbose: bool = True,
        update: bool = False,
        progress: Callable[[int, int], Any] | None = None,
    ) -> str:
        """Build a cube from FFIs, or add FFIs to an existing cube.

        Parameters
        ----------
        file_list : iterable of path
            FFI files of one sector, camera and CCD, in any order.
        cube_file : path
            Where to write the cube (its directory is created if needed).
        sector : int, optional
            Sector number for the ``SECTOR`` card; taken from the FFIs when not given.
        max_memory : float, optional
            Memory in GB for the cube data; defaults to the factory's.
        verbose : bool
            Show progress (tqdm bar on a terminal, else ``logging`` lines). False: silent.
        update : bool
            Add ``file_list`` to the existing ``cube_file``; frames already in it (same
            ``FFI_FILE``) are skipped; old and new frames are merged in time order.
        progress : callable, optional
            Called as ``progress(blocks_done, blocks_total)``.

        Returns
        -------
        str
            The path written (``cube_file``).

        Raises
        ------
        InvalidInputError
            Empty list, mixed sectors/cameras/CCDs/image shapes, bad ``sector``/``max_memory``,
            nothing new to add in update mode (after a :class:`~core.errors.DataWarning`
            "Removed duplicate file: ..." per file already in the cube, as astrocut warns).
        NotFoundError
            An FFI does not exist; with ``update``, a missing cube is a
            :class:`~core.errors.MissingInputError` (also an ``InvalidInputError``, as astrocut's).
        CorruptFileError
            An input is not a readable FFI of the factory's product (or not a cube).
        UnavailableError
            The output could not be written (disk full, I/O error); no partial cube is left.
        """
        t0 = time.monotonic()
        mem = self._max_memory if max_memory is None else self._check_memory(max_memory)
        files = self._normalise_files(file_list)
        sector = self._check_sector(sector)
        cube_file = os.fspath(cube_file)
        old = None
        if update:
            old, files = self._read_cube_to_update(cube_file, files)

        frames, template, pending_cols = self._scan(files, verbose)
        sector = self._check_consistency(frames, sector, old)
        order = np.argsort([fr.start for fr in frames], kind="stable")
        frames = [frames[i] for i in order]
        t_scan = time.monotonic() - t0

        if old is None:
            layout, plan = self._plan_new(frames, template, pending_cols, order, sector)
        else:
            layout, plan = self._plan_update(frames, old, order)
        layout.stats["scan"] = t_scan

        label = os.path.basename(cube_file)
        if verbose:
            print(f"{'Updating' if old else 'Building'} {label}: {layout.nframes} frames of {layout.ny}x{layout.nx} "
                  f"({layout.nplanes} planes), {layout.data_bytes / GB:.2f} GB", flush=True)
        t_write = time.monotonic()
        self._write_cube_file(cube_file, BuildJob(layout, plan, frames, old, mem, verbose, progress, label))
        if verbose:
            print_timings(layout, time.monotonic() - t_write, time.monotonic() - t0)
        return cube_file

    def update_cube(
        self,
        file_list: Iterable[str | os.PathLike] | str | os.PathLike,
        cube_file: str | os.PathLike,
        sector: int | None = None,
        max_memory: float | None = None,
        verbose: bool = True,
    ) -> str:
        """Add FFIs to an existing cube (astrocut's ``CubeFactory.update_cube``): ``make_cube`` with
        ``update=True``; frames already in the cube (same ``FFI_FILE``) are skipped with a
        ``DataWarning`` as in astrocut, old and new frames are merged in time order (astrocut
        appends new frames at the end). A missing cube raises ``MissingInputError``, both a
        ``NotFoundError`` and astrocut's ``InvalidInputError``."""
        return self.make_cube(file_list, cube_file, sector=sector, max_memory=max_memory, verbose=verbose,
                              update=True)

    @staticmethod
    def _check_sector(sector: Any) -> int | None:
        """``sector`` as a non-negative int (None stays None: taken from the FFIs)."""
        if sector is None:
            return None
        try:
            if isinstance(sector, bool) or int(sector) != float(sector) or int(sector) < 0:
                raise ValueError
            return int(sector)
        except (TypeError, ValueError):
            raise InvalidInputError(f"sector must be a non-negative integer, not {sector!r}.",
                                    field="sector") from None

    def _read_cube_to_update(self, cube_file: str, files: list[str]) -> tuple[OldCube, list[str]]:
        """The existing cube and the files not in it yet (each one already there or given twice
        dropped with astrocut's ``DataWarning``)."""
        if not os.path.isfile(cube_file):
            raise MissingInputError(f"Cube file {cube_file} does not exist; cannot update it.",
                                    field="cube_file")
        old = self._read_old_cube(cube_file)
        known = set(old.names)
        kept, seen = [], set()
        for f in files:
            name = os.path.basename(f)
            if name in known or name in seen:
                # astrocut's warning, word for word
                warnings.warn(f"Removed duplicate file: {name}", DataWarning, stacklevel=3)
                continue
            seen.add(name)
            kept.append(f)
        if not kept:
            raise InvalidInputError("No new images were found in the provided file list.",
                                    field="file_list")
        return old, kept

    def _write_cube_file(self, cube_file: str, job: BuildJob) -> None:
        """Write ``job``'s cube under a temporary name beside ``cube_file`` and rename it; on any
        error remove it, and raise :class:`UnavailableError` for an ``OSError`` (a full disk, no
        permission). Temporary files of processes that died are removed first."""
        directory, label = os.path.split(cube_file)
        prefix = f"{label}.partial-"
        tmp = None
        try:
            if directory:
                os.makedirs(directory, exist_ok=True)
            remove_stale_temporaries(directory, prefix)
            tmp = temporary_file(directory, prefix)
            self._write(tmp, job)
            os.replace(tmp, cube_file)
        except BaseException as exc:
            if tmp is not None:
                try:
                    os.unlink(tmp)
                except OSError:  # already gone
                    pass
            if isinstance(exc, OSError) and not isinstance(exc, CutoutError):
                if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                    raise UnavailableError(
                        f"Not enough disk space to write {label} ({job.layout.total_bytes / GB:.2f} GB needed); "
                        "nothing was written.", field="cube_file") from exc
                raise UnavailableError(f"Could not write {label}: {exc.strerror or exc}.",
                                       field="cube_file") from exc
            raise

    # ------------------------------------------------------------------ input
    @staticmethod
    def _check_memory(max_memory: Any) -> float:
        try:
            value = float(max_memory)
        except (TypeError, ValueError):
            value = float("nan")
        if not value > 0 or value == float("inf"):
            raise InvalidInputError(f"max_memory must be a positive number of GB, not {max_memory!r}.",
                                    field="max_memory")
        return value

    @staticmethod
    def _normalise_files(file_list: Any) -> list[str]:
        if isinstance(file_list, (str, bytes, os.PathLike)):
            file_list = [file_list]
        try:
            files = [os.fsdecode(os.fspath(f)) for f in file_list]
        except TypeError:
            raise InvalidInputError("file_list must be a list of file paths.", field="file_list") from None
        if not files:
            raise InvalidInputError("file_list is empty: give at least one FFI.", field="file_list")
        for f in files:
            if not os.path.isfile(f):
                raise NotFoundError(f"FFI file {f} does not exist.", field="file_list")
        return files

    def _scan(self, files: Sequence[str], verbose: bool = False) -> tuple[list[Frame], int, list[Column]]:
        """Read every FFI's headers: start time, pixel locations, and its row of the table
        (``verbose``: a line per file, as astrocut prints)."""
        spec = self._spec
        frames: list[Frame] = []
        template = None
        cols: list[Column] = []
        pending: list[tuple[int, fits.Header]] = []  # rows read before the template FFI
        shape = None
        t_file = time.monotonic()
        for i, path in enumerate(files):
            if verbose and i:
                print(f"Completed file {i - 1} in {time.monotonic() - t_file:.3f} sec.", flush=True)
                t_file = time.monotonic()
            name = os.path.basename(path)
            headers, infos, plain, compressed, img_text = self._read_headers(path, name)
            planes, shape = self._planes(path, name, headers, infos, plain and not compressed, shape)
            frames.append(self._frame(path, name, headers, planes))

            img = headers[spec.img_ext]
            if template is None:
                if not all(img.get(k) == v for k, v in spec.template_requirements.items()):
                    pending.append((i, img))
                    continue
                template = i
                if not isinstance(img, fits.Header):  # column types and comments come from astropy
                    img = fits.Header.fromstring(img_text.decode("ascii", "replace"))
                cols = self._columns_from_template(img, name, len(files))
                for j, h in pending:
                    self._fill_row(cols, j, h, files[j])
                pending = []
            self._fill_row(cols, i, img, path)
        if verbose and files:
            print(f"Completed file {len(files) - 1} in {time.monotonic() - t_file:.3f} sec.", flush=True)
        if template is None:
            # astrocut fails here; a cube is still useful, so use the first FFI's header.
            logger.warning("No FFI has %s; using %s for the table columns.", spec.template_requirements,
                           frames[0].name)
            template = 0
            with fits.open(files[0], mode="denywrite", lazy_load_hdus=True) as hdul:
                first = hdul[spec.img_ext].header
                cols = self._columns_from_template(first, frames[0].name, len(files))
            for j, h in pending:
                self._fill_row(cols, j, h, files[j])
        return frames, template, cols

    def _not_an_ffi(self, name: str) -> str:
        """The error message for a file that is not an FFI of this factory's product."""
        need = ("(needs image extensions 1 and 2)." if self._spec.name == Product.SPOC
                else "(needs a 2-D image in the primary HDU).")
        return f"{name} is not a {self._spec.name} FFI {need}"

    def _read_headers(self, path: str, name: str) -> tuple[list[Any], list[dict], bool, bool, bytes | None]:
        """An FFI's headers up to its last plane: ``(headers, infos, plain, compressed, img_text)``.

        Plain FITS with uncompressed planes is read from the raw cards (astropy parses only the
        header that feeds the table; ``img_text`` is its raw text); anything else through astropy
        (``img_text`` None). ``infos`` holds each plane's ``datLoc``; ``plain`` is False for a file
        astropy must decode (gzip)."""
        spec = self._spec
        nhdus = max(spec.plane_exts) + 1
        try:
            raw = raw_hdus(path, nhdus)
            if raw is not None and not any(raw[e][2].get("ZIMAGE") for e in spec.plane_exts):
                # Fast path: astropy parses only the header that feeds the table.
                headers: list[Any] = [None] * nhdus
                img_text = raw[spec.img_ext][0]
                headers[spec.img_ext] = card_values(img_text)
                if headers[spec.img_ext] is None:
                    headers[spec.img_ext] = fits.Header.fromstring(img_text.decode("ascii", "replace"))
                for e in range(nhdus):
                    if headers[e] is None:
                        headers[e] = raw[e][2]
                return headers, [{"datLoc": raw[e][1]} for e in spec.plane_exts], True, False, img_text
            with fits.open(path, mode="denywrite", memmap=False, lazy_load_hdus=True) as hdul:
                headers = [hdul[e].header for e in range(nhdus)]
                infos = [hdul.fileinfo(e) for e in spec.plane_exts]
                compressed = any(isinstance(hdul[e], fits.CompImageHDU) for e in spec.plane_exts)
            return headers, infos, raw is not None, compressed, None
        except (IndexError, TooFewHdus):
            raise CorruptFileError(self._not_an_ffi(name), field="file_list") from None
        except CutoutError:
            raise
        except Exception as exc:  # astropy raises OSError, ValueError, ... on non-FITS bytes
            raise CorruptFileError(f"{name} is not a readable FITS file ({exc}).", field="file_list") from exc

    def _planes(self, path: str, name: str, headers: list[Any], infos: list[dict], raw_ok: bool,
                shape: tuple[int, int] | None) -> tuple[list[Plane], tuple[int, int]]:
        """Where each plane's pixels are (a byte offset for direct reads when ``raw_ok`` and the
        plane is plain float32, else None), checking that every plane has the first FFI's
        ``shape`` (the first plane seen sets it); returns the planes and the shape."""
        planes = []
        fsize = os.path.getsize(path)
        for ext, info in zip(self._spec.plane_exts, infos):
            h = headers[ext]
            if h.get("NAXIS") != 2:
                raise CorruptFileError(self._not_an_ffi(name), field="file_list")
            s = (int(h["NAXIS2"]), int(h["NAXIS1"]))
            if shape is None:
                shape = s
            elif s != shape:
                raise InvalidInputError(f"{name} has images of {s[0]}x{s[1]} pixels, the first FFI "
                                        f"{shape[0]}x{shape[1]}: all FFIs must have one shape.",
                                        field="file_list")
            direct = raw_ok and h.get("BITPIX") == -32 and h.get("BSCALE", 1) == 1 and h.get("BZERO", 0) == 0
            offset = info["datLoc"] if direct else None
            if direct and offset + s[0] * s[1] * 4 > fsize:
                raise CorruptFileError(f"{name} is truncated: it ends before its image data does.",
                                       field="file_list")
            planes.append(Plane(ext, offset))
        return planes, shape

    def _frame(self, path: str, name: str, headers: list[Any], planes: list[Plane]) -> Frame:
        """An FFI's start time, sector (from the primary header, else the file name) and camera/CCD."""
        spec = self._spec
        img = headers[spec.img_ext]
        start = img.get(spec.time_keyword)
        if isinstance(start, bool) or not isinstance(start, (int, float)):
            raise CorruptFileError(f"{self._not_an_ffi(name)} (no numeric {spec.time_keyword} card).",
                                   field="file_list")
        ids = []
        for kwd in spec.image_header_keywords:
            if kwd not in img:
                raise CorruptFileError(f"{self._not_an_ffi(name)} (no {kwd} card).", field="file_list")
            ids.append(img[kwd])
        sec = headers[0].get("SECTOR")
        if not isinstance(sec, int) or isinstance(sec, bool):
            m = _SECTOR_IN_NAME.search(name)
            sec = int(m.group(1)) if m else None
        return Frame(path, name, float(start), planes, sec, tuple(ids))

    @staticmethod
    def _columns_from_template(header: fits.Header, name: str, n: int) -> list[Column]:
        """Column types from a template header, by astrocut's rules (str -> A, int/bool -> J, else D)."""
        cols, seen = [], set()
        for kwd, val, cmt in header.cards:
            if kwd in seen:
                continue
            seen.add(kwd)
            if isinstance(val, str):
                col = Column(kwd, "S", len(val), cmt)
            elif isinstance(val, int):
                col = Column(kwd, "J", 0, cmt)
            else:
                col = Column(kwd, "D", 0, cmt)
            cols.append(col)
        cols.append(Column("FFI_FILE", "S", len(name), ""))
        for col in cols:
            col.values = np.zeros(n, dtype=col.dtype)
        return cols

    @staticmethod
    def _fill_row(cols: list[Column], i: int, header: fits.Header, path: str) -> None:
        for col in cols:
            if col.name == "FFI_FILE":
                store(col, i, os.path.basename(path))
            else:
                store(col, i, header_value(header, col.name, col.null()))

    def _check_consistency(self, frames: list[Frame], sector: int | None, old: OldCube | None) -> int | None:
        spec = self._spec
        ids = {fr.ids for fr in frames}
        if len(ids) > 1:
            raise InvalidInputError(
                f"The FFIs come from more than one camera/CCD ({', '.join(map(str, sorted(ids)))}); "
                "a cube holds one.", field="file_list")
        sectors = {fr.sector for fr in frames if fr.sector is not None}
        if len(sectors) > 1:
            raise InvalidInputError(f"The FFIs come from more than one sector ({sorted(sectors)}); a cube holds one.",
                                    field="file_list")
        if sector is not None and sectors and sector not in sectors:
            raise InvalidInputError(f"sector={sector} but the FFIs are from sector {sectors.pop()}.",
                                    field="sector")
        if sector is None and sectors:
            sector = next(iter(sectors))
        if old is not None:
            ph = old.primary
            old_ids = tuple(ph.get(k) for k in spec.image_header_keywords)
            if old_ids != frames[0].ids:
                raise InvalidInputError(f"The FFIs are from {'/'.join(spec.image_header_keywords)} "
                                        f"{frames[0].ids}, the cube from {old_ids}.", field="file_list")
            old_sector = ph.get("SECTOR")
            if isinstance(old_sector, int) and sector is not None and old_sector != sector:
                raise InvalidInputError(f"The FFIs are from sector {sector}, the cube from {old_sector}.",
                                        field="file_list")
        return sector

    # ------------------------------------------------------------------ headers
    def _primary_bytes(self, header: fits.Header) -> bytes:
        hdu = fits.PrimaryHDU(header=header)
        if "DATASUM" in hdu.header:
            # astrocut appends the table in update mode and astropy then refreshes this card.
            hdu.add_datasum()
        buf = io.BytesIO()
        fits.HDUList([hdu]).writeto(buf)
        return buf.getvalue()

    @staticmethod
    def _image_header_bytes(ny: int, nx: int, nframes: int, nplanes: int) -> bytes:
        header = fits.ImageHDU(np.zeros((1, 1, 1, 1), dtype=np.float32)).header
        header["NAXIS4"], header["NAXIS3"], header["NAXIS2"], header["NAXIS1"] = ny, nx, nframes, nplanes
        return header.tostring().encode("ascii")

    @staticmethod
    def _table_bytes(cols: list[Column]) -> bytes:
        fcols = [fits.Column(name=c.name, format=c.fits_format, array=c.values) for c in cols]
        hdu = fits.BinTableHDU.from_columns(fits.ColDefs(fcols))
        for c in cols:
            if c.name in _TABLE_STRUCTURAL:
                continue
            hdu.header[c.name] = c.comment
        buf = io.BytesIO()
        fits.HDUList([fits.PrimaryHDU(), hdu]).writeto(buf)
        return buf.getvalue()[len(fits.PrimaryHDU().header.tostring()):]

    def _last_file_cards(self, header: fits.Header, last: Frame) -> None:
        spec = self._spec
        with fits.open(last.path, mode="denywrite", lazy_load_hdus=True) as hdul:
            img = hdul[spec.img_ext].header
            for kwd in spec.last_file_keywords:
                if kwd not in img:
                    raise CorruptFileError(f"{last.name} is not a {spec.name} FFI (no {kwd} card).",
                                           field="file_list")
                header[kwd] = (img[kwd], img.comments[kwd])

    def _plan_new(self, frames: list[Frame], template: int, cols: list[Column], order: np.ndarray,
                  sector: int | None) -> tuple[Layout, Placement]:
        spec = self._spec
        for c in cols:
            c.values = c.values[order]
        with fits.open(frames[0].path, mode="denywrite", lazy_load_hdus=True) as hdul:
            header = deepcopy(hdul[0].header)
            img = hdul[spec.img_ext].header
            header.remove("CHECKSUM", ignore_missing=True)
            header["ORIGIN"] = "STScI/MAST"
            header["DATE"] = str(date.today())
            for kwd in spec.image_header_keywords:
                header[kwd] = (img[kwd], img.comments[kwd])
            header["SECTOR"] = (sector, "Observing sector")
        self._last_file_cards(header, frames[-1])
        header["EXTNAME"] = "PRIMARY"
        if spec.name == Product.TICA:  # departure: one reader for both products
            for src, dst, cmt in (("CAMNUM", "CAMERA", "Camera number"), ("CCDNUM", "CCD", "CCD chip number")):
                if dst not in header:
                    header[dst] = (header[src], cmt)
        ny, nx = self._shape(frames[0])
        layout = Layout(ny, nx, len(frames), len(spec.plane_exts))
        layout.primary = self._primary_bytes(header)
        layout.image_header = self._image_header_bytes(ny, nx, len(frames), layout.nplanes)
        layout.table = self._table_bytes(cols)
        layout.data_offset = len(layout.primary) + len(layout.image_header)
        return layout, Placement(np.arange(len(frames)))

    def _image_header(self, path: str) -> dict | fits.Header:
        """The values of an FFI's image header (raw parse when possible, else astropy)."""
        img_ext = self._spec.img_ext
        raw = raw_hdus(path, img_ext + 1)
        if raw is not None:
            values = card_values(raw[img_ext][0])
            if values is not None:
                return values
            return fits.Header.fromstring(raw[img_ext][0].decode("ascii", "replace"))
        with fits.open(path, mode="denywrite", lazy_load_hdus=True) as hdul:
            return hdul[img_ext].header

    def _shape(self, frame: Frame) -> tuple[int, int]:
        with fits.open(frame.path, mode="denywrite", lazy_load_hdus=True) as hdul:
            h = hdul[self._spec.plane_exts[0]].header
            return int(h["NAXIS2"]), int(h["NAXIS1"])

    # ------------------------------------------------------------------ update
    def _read_old_cube(self, cube_file: str) -> OldCube:
        spec = self._spec
        name = os.path.basename(cube_file)
        try:
            plain = is_plain_fits(cube_file)
            with fits.open(cube_file, mode="denywrite", memmap=False, lazy_load_hdus=True) as hdul:
                primary = hdul[0].header.copy()
                h1 = hdul[1].header
                info = hdul.fileinfo(1)
                tab = hdul[2]
                th = tab.header.copy()
                data = tab.data
                columns = [(c.name, c.format) for c in tab.columns]
                values = {c: np.asarray(data[c]) for c, _ in columns}
        except Exception as exc:
            raise CorruptFileError(f"{name} is not a readable cube file ({exc}).", field="cube_file") from exc
        nplanes = len(spec.plane_exts)
        if not plain or h1.get("NAXIS") != 4 or h1.get("BITPIX") != -32 or h1.get("NAXIS1") != nplanes:
            raise CorruptFileError(f"{name} is not a {spec.name} cube (float32, 4 axes, {nplanes} planes).",
                                   field="cube_file")
        shape = (h1["NAXIS4"], h1["NAXIS3"], h1["NAXIS2"], h1["NAXIS1"])
        if "FFI_FILE" not in values or spec.time_keyword not in values or len(values["FFI_FILE"]) != shape[2]:
            raise CorruptFileError(f"{name} has no usable frame table (FFI_FILE, {spec.time_keyword}).",
                                   field="cube_file")
        if info["datLoc"] + int(np.prod(shape)) * 4 > os.path.getsize(cube_file):
            raise CorruptFileError(f"{name} is truncated.", field="cube_file")
        names = [v.decode("ascii", "replace") if isinstance(v, bytes) else str(v) for v in values["FFI_FILE"]]
        return OldCube(cube_file, primary, shape, info["datLoc"], th, columns, values, [n.strip() for n in names])

    def _plan_update(self, frames: list[Frame], old: OldCube, order: np.ndarray) -> tuple[Layout, Placement]:
        spec = self._spec
        ny, nx, t_old, nplanes = old.shape
        if self._shape(frames[0]) != (ny, nx):
            raise InvalidInputError(f"The FFIs are {self._shape(frames[0])} pixels, the cube {(ny, nx)}.",
                                    field="file_list")
        old_times = np.asarray(old.values[spec.time_keyword], dtype=float)
        new_times = np.array([fr.start for fr in frames])
        times = np.concatenate([old_times, new_times])
        merged = np.argsort(times, kind="stable")  # old first on ties
        pos = np.empty(len(times), dtype=np.intp)
        pos[merged] = np.arange(len(times))
        old_pos, new_pos = pos[:t_old], pos[t_old:]
        total = len(times)

        # Table: keep the cube's columns; new rows from the new FFIs' headers.
        cols = []
        for cname, fmt in old.columns:
            m = re.fullmatch(r"(\d*)([A-Z])(.*)", fmt.strip())
            if m is None:
                raise CorruptFileError(f"Column {cname} of the cube's table has format {fmt!r}.", field="cube_file")
            kind = "S" if m.group(2) == "A" else ("J" if m.group(2) in "JIBKL" else "D")
            width = int(m.group(1) or 1) if kind == "S" else 0
            th = old.table_header
            comment = th.get(cname, "") if cname not in _TABLE_STRUCTURAL else ""
            if cname.strip().upper() in COMMENTARY:  # all the cards: keep the first, as a comment
                comment = str(comment[0]) if len(comment) else ""
            col = Column(cname, kind, width, comment if isinstance(comment, str) else str(comment))
            col.values = np.zeros(total, dtype=col.dtype)
            ov = old.values[cname]
            col.values[old_pos] = ov.astype(col.dtype) if ov.dtype.kind != "U" else np.char.encode(ov, "ascii")
            cols.append(col)
        tmp_cols = [
            Column(c.name, c.kind, c.width, c.comment, np.zeros(len(frames), dtype=c.dtype)) for c in cols
        ]
        for i, fr in enumerate(frames):
            self._fill_row(tmp_cols, i, self._image_header(fr.path), fr.path)
        for c, t in zip(cols, tmp_cols):
            c.values[new_pos] = t.values

        header = old.primary
        header["HISTORY"] = f"Updated on {date.today()} with new image delivery."
        header["HISTORY"] = f"First image is {frames[0].name}."
        if new_pos[-1] == total - 1:  # the latest frame is a new one
            self._last_file_cards(header, frames[-1])
        layout = Layout(ny, nx, total, nplanes)
        layout.primary = self._primary_bytes(header)
        layout.image_header = self._image_header_bytes(ny, nx, total, nplanes)
        layout.table = self._table_bytes(cols)
        layout.data_offset = len(layout.primary) + len(layout.image_header)
        return layout, Placement(new_pos, old_pos)

    # ------------------------------------------------------------------ data
    def _write(self, tmp: str, job: BuildJob) -> None:
        """Write the cube file ``tmp``: headers, the image data band by band, the table."""
        layout = job.layout
        bands = Bands(job)
        fd_out = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o666)
        bar = Progress(job.verbose, bands.count, job.progress, job.label)
        pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="cube")
        try:
            reserve(fd_out, layout.total_bytes)  # fail early when the disk is full
            pwrite_all(fd_out, layout.primary + layout.image_header, 0)
            bands.copy(fd_out, pool, bar)
            t = time.monotonic()
            tail = layout.data_offset + layout.data_bytes
            pwrite_all(fd_out, bytes(layout.padded_data_bytes - layout.data_bytes) + layout.table, tail)
            os.ftruncate(fd_out, layout.total_bytes)
            layout.stats["write"] += time.monotonic() - t
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
            bar.close()
            os.close(fd_out)


class TicaCubeFactory(CubeFactory):
    """:class:`CubeFactory` for TICA FFIs (``product=Product.TICA``), as astrocut 0.11.1 ``TicaCubeFactory``.

    TICA cubes have one plane (flux; TICA FFIs carry no error image).
    """

    def __init__(self, max_memory: float = 50, product: str = Product.TICA) -> None:
        super().__init__(max_memory=max_memory, product=product)
