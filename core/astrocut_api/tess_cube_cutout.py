"""astrocut 1.4.0's ``TessCubeCutout`` class over this package's TPF engine (:mod:`core.tpf.cut`).

Follows astrocut 1.4.0 (``astrocut.TessCubeCutout`` and its ``CubeCutout``/``Cutout`` bases): the
same constructor parameters and defaults, the cut made on construction, the attributes
``cutouts_by_file`` / ``cutouts`` (one :class:`TessCubeCutout.CubeCutoutInstance` per cube, with
``data``, ``uncertainty``, ``aperture``, ``shape``, ``wcs``, ``wcs_fit``, ``cutout_lims``,
``cube_wcs``, ``cube_filename``), ``tpf_cutouts_by_file`` / ``tpf_cutouts``, the methods
``cutout()``, ``write_as_tpf()``, ``write_as_zip()``, ``parse_table_wcs()``, and the file and zip
member names (default and ``legacy_filenames``). Every cut is
``core.tpf.cut.CutoutFactory().cube_cut(..., memory_only=True)``: cached per cube, nothing re-parsed
between cuts. Departures, on purpose:

1. the TPFs are :mod:`core.tpf.cut`'s: the per-column WCS keys (1CRV5P/2CRV5P...) are written,
   WCS_MSEP/WCS_SIG are the fit's real residuals (astrocut writes 0), CREATOR/PROCVER name this
   package, and no CHECKSUM/DATASUM are written, in files or zip members;
2. a cube whose pixels do not hold the position is skipped with a
   :class:`core.images.cutouts.DataWarning`, whatever the reason; astrocut skips a cube only when the
   WCS inversion fails, pads a cutout whose centre is just off the pixels, and fails with an
   ``IndexError`` when the inversion lands far off them;
3. file-name stems drop a trailing ``-cube`` (astrocut's ``rstrip('-cube')`` strips characters);
4. errors are :mod:`core.errors` types naming the parameter; no cube holding the position is
   :class:`~core.errors.NoDataError` (astrocut's ``InvalidQueryError``); an empty input list is
   an :class:`~core.errors.InvalidInputError` (astrocut reports "no data");
5. keyword-only additions: ``product`` (SPOC or TICA, astrocut 0.11.1's TICA cubes; the cube's
   own layout decides how it is read), ``s3`` (a :class:`core.storage.s3.S3Config`), and
   ``time_min``/``time_max``/``frame_bin`` (a time window in BTJD and a frame binning,
   :mod:`core.cubes.frames`; a cube whose frames miss the window is skipped as one off the
   position is);
6. TPFs in memory are parsed lazily, and an instance's arrays are made on first access;
7. files and zips are written under a temporary name and renamed when complete; zip members are
   written one at a time.
"""

from __future__ import annotations

import math
import os
import re
import warnings
from collections.abc import Callable
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

import numpy as np
from astropy.coordinates import SkyCoord
from astropy.io import fits
from astropy.wcs import WCS, FITSFixedWarning

from core.astrocut_api.fits_cutout import cutout_parameters, default_zip_name, input_list, write_zip, zip_path
from core.cubes.cache import open_cube
from core.cubes.cube import Cube
from core.cubes.frames import TimeWindow
from core.errors import CorruptFileError, CutoutError, InvalidInputError, NoDataError
from core.geometry import Window
from core.images.cutouts import DataWarning, cutout_filename
from core.product import Product
from core.quiet import quiet
from core.storage.atomic import write_bytes_atomic
from core.tpf.cut import (
    CutoutFactory,
    TpfHDUList,
    cut_bytes,
    locate,
    tpf_bytes,
    tpf_filename,
)

_ROUNDING: dict[str, Callable[[float], float]] = {"ceil": math.ceil, "floor": math.floor}
_CUBE_SUFFIX = re.compile(r"-cube$")


def cube_stem(cube_file: str | os.PathLike) -> str:
    """A cube's file name without ``.fits`` and without a trailing ``-cube`` (``tess-s0038-2-2``).

    astrocut uses ``Path(file).stem.rstrip('-cube')``, which also eats trailing 'c', 'u', 'b', 'e'
    and '-' characters of the stem itself.
    """
    return _CUBE_SUFFIX.sub("", Path(os.fspath(cube_file).rstrip("/")).stem)


def _parse_threads(threads: Any) -> int:
    """astrocut's ``threads`` (an int or ``"auto"``) as a thread count, as ``cube_cut`` reads it."""
    if threads == "auto":
        return (os.cpu_count() or 1) + 4
    if isinstance(threads, (bool, np.bool_)) or not isinstance(threads, (int, np.integer)):
        raise InvalidInputError(f"threads must be an integer or 'auto', got {threads!r}", field="threads")
    return max(1, int(threads))



def check_product(product: Any) -> str:
    """``SPOC`` or ``TICA`` (any case), upper-cased; anything else names ``product``."""
    return Product.parse(product).value

class TessCubeCutout:
    """Target pixel file cutouts of TESS FFI cubes (astrocut 1.4.0's ``TessCubeCutout``).

    Follows astrocut 1.4.0's class: same parameters, defaults, attributes, method signatures and
    file names; departs as the module docstring lists (core.tpf.cut's TPFs, skipping any cube off the
    position, ``-cube`` stems, errors with ``field``, ``product=``/``s3=``, atomic writes).

    Parameters
    ----------
    input_files : str, path or list of them
        Cube files: local paths or ``s3://`` URIs.
    coordinates : str, SkyCoord or list of them
        Centre of the cutouts (``"ra dec"`` in degrees); of a list, the first is used, as astrocut.
    cutout_size : int, [nx, ny] or Quantity
        Pixels or an angle; a pair is x-first, as astrocut behaves (its docstring says (ny, nx)).
    fill_value : int or float
        FLUX and FLUX_ERR of pixels off the cube (the aperture is 0 there).
    limit_rounding_method : {"round", "ceil", "floor"}
        How the window limits are rounded.
    threads : int or "auto"
        Threads reading each ``s3://`` cube (local cubes are read by one, as astrocut does).
    verbose : bool
        Print each cut's report to stderr.
    product : {SPOC, TICA}
        Our addition (astrocut 0.11.1's parameter): the kind of cube.
    s3 : core.storage.s3.S3Config, optional
        Our addition: how to reach ``s3://`` cubes.
    time_min, time_max : float, optional
        Our addition: keep the frames whose mid-exposure time (BTJD, TDB) lies in this inclusive
        window (either end open).
    frame_bin : int
        Our addition: average this many frames into each cadence (a trailing partial bin is
        dropped).

    Attributes
    ----------
    cutouts_by_file : dict
        Cube file (as given) -> :class:`TessCubeCutout.CubeCutoutInstance`.
    cutouts : list
        The instances, in input order.
    tpf_cutouts_by_file : dict
        Cube file -> the target pixel file as an HDUList (read lazily from its bytes).
    tpf_cutouts : list of HDUList
        The TPFs, in input order.

    Raises
    ------
    InvalidInputError
        A bad parameter (``field`` names it).
    NotFoundError, CorruptFileError, ForbiddenError, UnavailableError
        From opening a cube.
    NoDataError
        No cube holds the position (``field="coordinates"``).
    """

    def __init__(
        self,
        input_files: Any,
        coordinates: Any,
        cutout_size: Any = 25,
        fill_value: float = np.nan,
        limit_rounding_method: str = "round",
        threads: int | Literal["auto"] = 1,
        verbose: bool = False,
        *,
        product: str = Product.SPOC,
        s3: Any = None,
        time_min: float | None = None,
        time_max: float | None = None,
        frame_bin: int = 1,
    ) -> None:
        self._input_files = input_list(input_files)
        (self._coordinates, self._cutout_size, self._fill_value,
         self._limit_rounding_method) = cutout_parameters(coordinates, cutout_size, fill_value, limit_rounding_method)
        self._threads = _parse_threads(threads)
        self._product = check_product(product)
        self._verbose = verbose
        self._s3 = s3
        self._window = TimeWindow(time_min, time_max, frame_bin)
        self.cutouts_by_file: dict[Any, TessCubeCutout.CubeCutoutInstance] = {}
        self.tpf_cutouts_by_file: dict[Any, fits.HDUList] = {}
        self.cutout()

    class CubeCutoutInstance:
        """One cube's cutout, with astrocut's ``CubeCutout.CubeCutoutInstance`` attributes.

        The arrays are read from the TPF on first access (copies: editing them does not change
        the TPF, as in astrocut, whose TPF columns are copies too).

        Attributes
        ----------
        data, uncertainty : ndarray (frames, ny, nx), float32
            FLUX and FLUX_ERR.
        aperture : ndarray (ny, nx), int32
            1 on the cube's pixels, 0 on padding.
        shape : tuple
            ``data.shape``.
        wcs : astropy.wcs.WCS
            The cutout's fitted linear WCS.
        wcs_fit : dict
            ``{"WCS_MSEP": [value, comment], "WCS_SIG": [value, comment]}`` (real residuals).
        cutout_lims : ndarray
            ``[[x0, x1], [y0, y1]]``: the window in 0-based FFI pixels, end exclusive.
        cube_wcs : astropy.wcs.WCS
            The cube's TAN-SIP WCS (a copy).
        cube_filename : str or path
            The cube file as given.
        """

        def __init__(
            self, tpf: fits.HDUList, file: Any, window: Window, make_wcs: Callable[[], WCS], cube: Callable[[], Cube]
        ) -> None:
            self._tpf = tpf
            self._make_wcs = make_wcs
            self._cube = cube
            self.cube_filename = file
            self.cutout_lims = np.array([[window.x0, window.x1], [window.y0, window.y1]])

        @cached_property
        def shape(self) -> tuple[int, int, int]:
            (x0, x1), (y0, y1) = self.cutout_lims
            return int(self._tpf[1].header["NAXIS2"]), int(y1 - y0), int(x1 - x0)

        @cached_property
        def data(self) -> np.ndarray:
            return np.array(self._tpf[1].data["FLUX"], dtype=np.float32)

        @cached_property
        def uncertainty(self) -> np.ndarray:
            return np.array(self._tpf[1].data["FLUX_ERR"], dtype=np.float32)

        @cached_property
        def aperture(self) -> np.ndarray:
            return np.array(self._tpf[2].data, dtype=np.int32)

        @cached_property
        def wcs(self) -> WCS:
            return self._make_wcs()

        @cached_property
        def cube_wcs(self) -> WCS:
            # a copy: the cached cube's WCS (this thread's) must not be edited
            return self._cube().wcs.deepcopy()

        @cached_property
        def wcs_fit(self) -> dict[str, list[Any]]:
            header = self._tpf[2].header
            return {key: [header[key], header.comments[key]] for key in ("WCS_MSEP", "WCS_SIG")}

    # -- the cut ------------------------------------------------------------------------------
    @property
    def cutouts(self) -> list[TessCubeCutout.CubeCutoutInstance]:
        """The cutouts, one per cube that holds the position, in input order."""
        return list(self.cutouts_by_file.values())

    @property
    def tpf_cutouts(self) -> list[fits.HDUList]:
        """The target pixel files as HDULists, in input order."""
        return list(self.tpf_cutouts_by_file.values())

    def cutout(self) -> list[TessCubeCutout.CubeCutoutInstance]:
        """Cut every cube (again) and return :attr:`cutouts` (astrocut's ``cutout()``).

        Raises
        ------
        NoDataError
            No cube holds the position.
        """
        cutouts, tpfs = {}, {}
        for file in self._input_files:
            made = self._cutout_file(file)
            if made is None:
                warnings.warn(f"Cutout footprint does not overlap with data in {file}, skipping...", DataWarning,
                              stacklevel=3)
                continue
            tpfs[file], cutouts[file] = made
        if not cutouts:
            raise NoDataError("Cube cutout contains no data! (Check image footprint.)", field="coordinates")
        self.cutouts_by_file, self.tpf_cutouts_by_file = cutouts, tpfs
        return self.cutouts

    def _cutout_file(self, file: Any) -> tuple[fits.HDUList, TessCubeCutout.CubeCutoutInstance] | None:
        """The TPF and instance of one cube, or None when its pixels do not hold the position."""
        uri = os.fspath(file)
        threads = self._threads if uri.startswith("s3://") else 1  # astrocut: one thread for local files
        try:
            if self._limit_rounding_method == "round":
                tpf, window, make_wcs = self._cut_round(uri, threads)
            else:
                tpf, window, make_wcs = self._cut_rounded(uri, threads)
        except NoDataError:
            return None
        except CutoutError as exc:
            if exc.field != "cube_file":
                raise
            raise type(exc)(exc.message, field="input_files") from None  # the engine's name for the cube
        if not (isinstance(self._fill_value, float) and math.isnan(self._fill_value)):
            self._fill_padding(tpf)
        s3 = self._s3
        return tpf, self.CubeCutoutInstance(tpf, file, window, make_wcs, lambda: open_cube(uri, s3=s3))

    def _cut_round(self, uri: str, threads: int) -> tuple[fits.HDUList, Window, Callable[[], WCS]]:
        """astrocut's default rounding: exactly the engine's ``cube_cut``."""
        factory = CutoutFactory()
        w = self._window
        tpf = factory.cube_cut(
            uri, self._coordinates, self._cutout_size, product=self._product, memory_only=True,
            threads=threads, verbose=self._verbose, s3=self._s3, time_min=w.time_min, time_max=w.time_max,
            frame_bin=w.frame_bin,
        )  # fmt: skip
        (x0, x1), (y0, y1) = factory.cutout_lims
        return tpf, Window(int(x0), int(x1), int(y0), int(y1)), lambda: factory.cutout_wcs

    def _cut_rounded(self, uri: str, threads: int) -> tuple[fits.HDUList, Window, Callable[[], WCS]]:
        """``ceil``/``floor`` rounding: the engine locates and cuts; only the window's limits are
        rounded here (the engine places windows with astrocut's default, ``round``)."""
        cube = open_cube(uri, s3=self._s3)
        frames = None if self._window.is_default else self._window.resolve(cube.time)
        geo = locate(cube, self._coordinates, self._cutout_size, rounding=self._limit_rounding_method, frames=frames)
        result = cut_bytes(cube, geo, threads=threads, frames=frames)
        fit = result.fit
        return TpfHDUList.from_bytes(result.data), geo.window, lambda: fit.wcs

    def _fill_padding(self, tpf: fits.HDUList) -> None:
        """FLUX and FLUX_ERR of padded pixels (aperture 0) set to ``fill_value`` (the engine pads
        with NaN, astrocut's default)."""
        padding = tpf[2].data == 0
        if padding.any():
            table = tpf[1].data
            for column in ("FLUX", "FLUX_ERR"):
                table[column][:, padding] = self._fill_value

    @staticmethod
    def parse_table_wcs(
        table_data: fits.FITS_rec,
        wcs_axes_keyword: str = "CTYPE2",
        wcs_axes_value: str = "DEC--TAN-SIP",
        return_header: bool = False,
    ) -> WCS | tuple[WCS, fits.Header]:
        """The WCS of a cube table's reference row (astrocut's ``parse_table_wcs``).

        As astrocut: the first row from the middle on (wrapping to the start) whose
        ``wcs_axes_keyword`` column equals ``wcs_axes_value``, made into a Header (NaN values
        skipped) and a WCS. Departs in checking every row (astrocut never checks the row just
        before the middle) and in raising :class:`~core.errors.CorruptFileError` (astrocut:
        ``NoWcsKeywordsFoundError``) when no row qualifies.
        """
        n = len(table_data)
        mid = n // 2
        names = table_data.columns.names
        if wcs_axes_keyword not in names:
            raise CorruptFileError(f"the cube table has no {wcs_axes_keyword} column", field="table_data")
        row = next(
            (table_data[i] for i in [*range(mid, n), *range(mid)]
             if str(table_data[i][wcs_axes_keyword]).strip() == wcs_axes_value),
            None,
        )  # fmt: skip
        if row is None:
            raise CorruptFileError("No FFI rows contain valid WCS keywords.", field="table_data")
        header = fits.Header()
        for name in names:
            value = row[name]
            if isinstance(value, (float, np.floating)) and np.isnan(value):
                continue
            header[name] = value.item() if isinstance(value, np.generic) else value
        with quiet(FITSFixedWarning):
            table_wcs = WCS(header, relax=True)
        return (table_wcs, header) if return_header else table_wcs

    # -- output -------------------------------------------------------------------------------
    def _filename(self, file: Any, legacy_filenames: bool) -> str:
        """astrocut's name of one cube's TPF: ``<stem>_<ra:.7f>_<dec:.7f>_<s0>-x-<s1>_astrocut.fits``,
        or with ``legacy_filenames`` ``<stem>_<ra:.6f>_<dec:.6f>_<W>x<H>_astrocut.fits``."""
        coord = self._coordinates
        if legacy_filenames:
            (x0, x1), (y0, y1) = self.cutouts_by_file[file].cutout_lims
            return tpf_filename(os.fspath(file), coord.ra.deg, coord.dec.deg, int(x1 - x0), int(y1 - y0))
        return cutout_filename(cube_stem(file), coord, self._cutout_size)

    def write_as_tpf(
        self,
        output_dir: str | os.PathLike = ".",
        output_file: str | None = None,
        legacy_filenames: bool = False,
    ) -> list[str]:
        """Write the TPFs to files; return their paths (``output_dir/name`` as posix strings).

        As astrocut: names from :meth:`_filename`, except that ``output_file`` names the file when
        there was a single input cube. Each file is written under a temporary name and renamed.
        """
        Path(output_dir).mkdir(parents=True, exist_ok=True)
        paths = []
        for file, tpf in self.tpf_cutouts_by_file.items():
            if output_file and len(self._input_files) == 1:
                name = output_file
            else:
                name = self._filename(file, legacy_filenames)
            path = Path(output_dir) / name
            write_bytes_atomic(tpf_bytes(tpf), path, field="output_dir")
            paths.append(path.as_posix())
        return paths

    def write_as_zip(
        self,
        output_dir: str | os.PathLike = ".",
        filename: str | os.PathLike | None = None,
        legacy_filenames: bool = False,
    ) -> str:
        """Write the TPFs into one zip archive; return its path.

        As astrocut: the archive is ``astrocut_<ra:.7f>_<dec:.7f>_<s0>-x-<s1>.zip`` unless
        ``filename`` is given (``.zip`` is added when missing; relative names go under
        ``output_dir``), members are named as :meth:`write_as_tpf` names files. Written
        atomically; each member's bytes are made only when it is written.
        """
        path = zip_path(output_dir, filename, default_zip_name(self._coordinates, self._cutout_size))
        entries = (
            (self._filename(file, legacy_filenames), tpf_bytes(tpf)) for file, tpf in self.tpf_cutouts_by_file.items()
        )
        return write_zip(path, entries)

    def __repr__(self) -> str:
        coord: SkyCoord = self._coordinates
        return (
            f"<TessCubeCutout {coord.ra.deg:.6f} {coord.dec.deg:.6f} size {self._cutout_size}: "
            f"{len(self.cutouts_by_file)} of {len(self._input_files)} cubes>"
        )


__all__ = ["TessCubeCutout"]
