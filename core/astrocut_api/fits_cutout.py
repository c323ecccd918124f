"""astrocut 1.4.0's ``FITSCutout`` class over :func:`core.images.cutouts.cut_images`.

Follows astrocut 1.4.0 (``astrocut.FITSCutout`` and its ``ImageCutout``/``Cutout`` bases): the same
constructor parameters and defaults, the cut made on construction, the attributes
``cutouts_by_file``, ``hdu_cutouts_by_file``, ``fits_cutouts``, ``image_cutouts``, the methods
``cutout()``, ``write_as_fits()``, ``write_as_zip()``, ``get_image_cutouts()``, ``write_as_img()``,
``normalize_img()``, and the same file and zip member names. The pixels and headers are those of
:func:`core.images.cutouts.fits_cut` (whose module docstring lists its departures). Departures here, on
purpose:

1. errors are :mod:`core.errors` types naming the parameter (astrocut: ``InvalidInputError`` /
   ``InvalidQueryError`` without one); no overlap at all is :class:`~core.errors.NoDataError`, an
   empty input list an :class:`~core.errors.InvalidInputError` (astrocut reports "no data");
2. PROCVER names this package's version, not astrocut's;
3. ``s3=`` (a :class:`core.storage.s3.S3Config`) reaches ``s3://`` inputs; ``fsspec_kwargs`` is
   accepted for compatibility but not used (a :class:`UserWarning` says so);
4. ``CutoutInstance.slices_original`` ends at the last cut pixel + 1 (Python's exclusive end, as
   ``Cutout2D``); astrocut adds one more row and column;
5. ``write_as_img`` names the i-th image after its own input file and writes one image per
   cutout (astrocut indexes images by input file, which mismatches when a file gives several
   cutouts); unknown image formats raise :class:`~core.errors.InvalidInputError` instead of a
   warning and a ``None`` path;
6. files and zips are written under a temporary name and renamed when complete, and zip members
   are serialised one at a time straight into the archive.

The module also holds the few helpers astrocut keeps in its ``Cutout`` base class that
:mod:`core.astrocut_api.tess_cube_cutout` shares: :func:`first_coordinate`, :func:`zip_path` and
:func:`write_zip`.
"""

from __future__ import annotations

import logging
import os
import warnings
import zipfile
from collections.abc import Iterable
from functools import cached_property
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
from astropy.coordinates import SkyCoord
from astropy.io import fits
from astropy.wcs import WCS
from PIL import Image

from core.errors import InvalidInputError
from core.geometry import parse_coordinates
from core.images.cutouts import (
    ImageCut,
    check_fill_value,
    check_rounding,
    cut_images,
    cutout_filename,
    input_stem,
    parse_extension,
    parse_size,
    primary_hdu,
    size_label,
    write_atomic,
)
from core.images.render import (
    DEFAULT_PERCENT,
    InputWarning,
    image_metadata,
    parse_format,
    parse_stretch,
    save_image,
)
from core.images.render import normalize_img as _normalize_img
from core.quiet import quiet
from core.storage.atomic import atomic_output

# --------------------------------------------------------------------------------------------------
# helpers astrocut keeps in its Cutout base class (shared with core.astrocut_api.tess_cube_cutout)
# --------------------------------------------------------------------------------------------------


def input_list(input_files: Any) -> list[Any]:
    """The inputs as a list, each kept as given (astrocut keys its results by the caller's objects).

    A single ``str`` or path becomes a one-element list, as in astrocut.

    Raises
    ------
    InvalidInputError
        No input, or an input that is not a path (``field="input_files"``).
    """
    if isinstance(input_files, (str, os.PathLike)):
        return [input_files]
    try:
        files = list(input_files)
    except TypeError:
        raise InvalidInputError("give a file name or a list of file names", field="input_files") from None
    if not files:
        raise InvalidInputError("give at least one input file", field="input_files")
    for f in files:
        if not isinstance(f, (str, os.PathLike)) or not os.fspath(f):
            raise InvalidInputError(f"not a file name: {f!r}", field="input_files")
    return files


class CutoutParameters(NamedTuple):
    """The parameters every astrocut cutout class takes, checked (astrocut's ``Cutout`` base)."""

    coordinates: SkyCoord
    cutout_size: Any
    fill_value: float
    limit_rounding_method: str


def cutout_parameters(coordinates: Any, cutout_size: Any, fill_value: Any,
                      limit_rounding_method: Any) -> CutoutParameters:
    """Check the parameters shared by :class:`FITSCutout`, ``TessCubeCutout`` and
    ``TessFootprintCutout``; each error names its parameter."""
    return CutoutParameters(first_coordinate(coordinates), parse_size(cutout_size), check_fill_value(fill_value),
                            check_rounding(limit_rounding_method))


def first_coordinate(coordinates: Any) -> SkyCoord:
    """The one position astrocut's cube and FITS cutouts use: the first of those given.

    As astrocut's ``Cutout``: a list or tuple of SkyCoords or strings, or an array SkyCoord, is
    flattened and its first element used (the others are ignored, as there). Anything else is
    read by :func:`core.geometry.parse_coordinates` (a SkyCoord, ``"ra dec"`` in degrees, or an
    ``(ra, dec)`` pair of numbers, which astrocut does not accept).

    Raises
    ------
    InvalidInputError
        No position, or one that cannot be read (``field="coordinates"``).
    """
    if isinstance(coordinates, SkyCoord) and not coordinates.isscalar:
        flat = coordinates.ravel()
        if len(flat) == 0:
            raise InvalidInputError("At least one coordinate must be provided.", field="coordinates")
        return parse_coordinates(flat[0])
    if isinstance(coordinates, (list, tuple)):
        if len(coordinates) == 0:
            raise InvalidInputError("At least one coordinate must be provided.", field="coordinates")
        if isinstance(coordinates[0], (SkyCoord, str)):
            return first_coordinate(coordinates[0])
    return parse_coordinates(coordinates)


def default_zip_name(coord: SkyCoord, size: list[Any]) -> str:
    """astrocut's default archive name: ``astrocut_<ra:.7f>_<dec:.7f>_<s0>-x-<s1>.zip``."""
    return f"astrocut_{coord.ra.deg:.7f}_{coord.dec.deg:.7f}_{size_label(size)}.zip"


def zip_path(output_dir: str | os.PathLike, filename: str | os.PathLike | None, default: str) -> Path:
    """Where astrocut's ``write_as_zip`` puts the archive.

    ``filename`` defaults to ``default``; a name without a ``.zip`` suffix gets one (replacing any
    other suffix, as ``Path.with_suffix``); an absolute name is used as is, a relative one under
    ``output_dir`` (created if missing).
    """
    name = Path(default if filename is None else filename)
    if name.suffix.lower() != ".zip":
        name = name.with_suffix(".zip")
    out_dir = Path(output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    return name if name.is_absolute() else out_dir / name


Payload = bytes | memoryview | fits.HDUList


def write_zip(path: str | os.PathLike, entries: Iterable[tuple[str, Payload]]) -> str:
    """Write a deflated zip of ``(member name, payload)`` entries atomically; return its posix path.

    ``entries`` is consumed lazily, one member at a time: a payload's bytes are written as they
    are (FITS bytes, e.g. a TPF's), an HDUList is serialised with checksums straight into the
    member's stream (no copy of the whole file in memory). The archive is written under a
    temporary name beside ``path`` and renamed when complete, so a reader never sees a partial
    zip (astrocut writes in place).
    """
    with atomic_output(path) as tmp, zipfile.ZipFile(tmp, mode="w", compression=zipfile.ZIP_DEFLATED) as zf:
        for arcname, payload in entries:
            if isinstance(payload, fits.HDUList):
                # the size is not known in advance: allow members beyond 2 GiB
                with zf.open(arcname, mode="w", force_zip64=True) as dest, quiet(fits.verify.VerifyWarning):
                    payload.writeto(dest, checksum=True)
            else:
                zf.writestr(arcname, payload)
    return Path(path).as_posix()


# --------------------------------------------------------------------------------------------------
# FITSCutout
# --------------------------------------------------------------------------------------------------


class FITSCutout:
    """Cutouts of the same sky window from one or more FITS images (astrocut 1.4.0's ``FITSCutout``).

    Follows astrocut 1.4.0's class: same parameters, defaults, attributes, method signatures and
    file names; departs as the module docstring lists (errors with ``field``, PROCVER, ``s3=``,
    ``slices_original``, image names, atomic writes).

    Parameters
    ----------
    input_files : str, path or list of them
        Local paths or ``s3://`` URIs.
    coordinates : str, SkyCoord or list of them
        Centre of the cutout (``"ra dec"`` in degrees); of a list, the first is used, as astrocut.
    cutout_size : int, [nx, ny] or Quantity
        Pixels or an angle; a pair is x-first, as astrocut behaves (its docstring says (ny, nx)).
    fill_value : int or float
        Value of pixels outside the image.
    limit_rounding_method : {"round", "ceil", "floor"}
        How the window limits are rounded.
    extension : int, list of int, "all" or None
        HDUs to cut; by default the first image HDU with data.
    single_outfile : bool
        One HDUList (file) for all cutouts, or one per input file.
    verbose : bool
        Log progress at DEBUG level (the ``core.images.cutouts`` logger).
    fsspec_kwargs : dict, optional
        Accepted for compatibility and not used: use ``s3``.
    allow_empty : bool
        Keep cutouts whose pixels are all 0 or NaN (marked ``EMPTY = T``).
    s3 : core.storage.s3.S3Config, optional
        Our addition: how to reach ``s3://`` inputs.

    Attributes
    ----------
    cutouts_by_file : dict
        Input file (as given) -> list of :class:`FITSCutout.CutoutInstance` (non-empty ones, or
        all with ``allow_empty``).
    hdu_cutouts_by_file : dict
        Input file -> list of ``CUTOUT`` ImageHDUs (empty ones included, marked ``EMPTY``).
    fits_cutouts : list of HDUList
        One HDUList (``single_outfile``) or one per input file with data.
    image_cutouts : list of PIL.Image.Image
        The cutouts rendered with the default stretch and interval.

    Raises
    ------
    InvalidInputError
        A bad parameter (``field`` names it).
    NotFoundError, CorruptFileError, ForbiddenError, UnavailableError
        From opening the inputs.
    NoDataError
        No input has data at the position (``field="coordinates"``).
    """

    def __init__(
        self,
        input_files: Any,
        coordinates: Any,
        cutout_size: Any = 25,
        fill_value: float = np.nan,
        limit_rounding_method: str = "round",
        extension: int | list[int] | str | None = None,
        single_outfile: bool = True,
        verbose: bool = False,
        *,
        fsspec_kwargs: dict | None = None,
        allow_empty: bool = False,
        s3: Any = None,
    ) -> None:
        self._input_files = input_list(input_files)
        (self._coordinates, self._cutout_size, self._fill_value,
         self._limit_rounding_method) = cutout_parameters(coordinates, cutout_size, fill_value, limit_rounding_method)
        self._extension = parse_extension(extension)
        self._single_outfile = bool(single_outfile)
        self._allow_empty = bool(allow_empty)
        self._verbose = verbose
        self._s3 = s3
        if fsspec_kwargs:
            warnings.warn(
                "fsspec_kwargs is not used here; pass s3=core.storage.s3.S3Config(...) for s3:// inputs",
                UserWarning,
                stacklevel=2,
            )
        if verbose:
            logging.getLogger("core.images.cutouts").setLevel(logging.DEBUG)
        self.cutouts_by_file: dict[Any, list[FITSCutout.CutoutInstance]] = {}
        self.hdu_cutouts_by_file: dict[Any, list[fits.ImageHDU]] = {}
        self._fits_cutouts: list[fits.HDUList] | None = None
        self._image_cutouts: list[Image.Image] | None = None
        self.cutout()

    class CutoutInstance:
        """One cutout of one image extension, with astrocut's ``FITSCutout.CutoutInstance`` attributes.

        Wraps a :class:`core.images.cutouts.ImageCut`; ``shape_input`` and the ``*_original`` limits
        read the source image's header on first access (only then).

        Attributes
        ----------
        data : ndarray (ny, nx)
        shape : tuple
        wcs : astropy.wcs.WCS
            The cutout's WCS.
        shape_input : tuple
            Shape of the source image.
        xmin_original, xmax_original, ymin_original, ymax_original : int
            The window clipped to the source image (0-based, end exclusive).
        slices_original : tuple of slice
            ``(rows, columns)`` of the source image the cutout's data came from (exclusive ends;
            astrocut's are one longer).
        """

        def __init__(self, cut: ImageCut, s3: Any = None) -> None:
            self._cut = cut
            self._s3 = s3
            self.data: np.ndarray = cut.data
            self.shape: tuple[int, ...] = cut.data.shape
            self.wcs: WCS = cut.wcs

        @cached_property
        def shape_input(self) -> tuple[int, ...]:
            """The source extension's data shape (from its header)."""
            from core.storage.range_file import open_fits

            hdul = open_fits(self._cut.file, s3=self._s3)
            try:
                return tuple(hdul[self._cut.ext].shape)
            finally:
                hdul.close()

        def _clipped(self) -> tuple[int, int, int, int]:
            x0, x1, y0, y1 = self._cut.limits
            ny, nx = self.shape_input[-2:]
            return max(0, x0), min(nx, x1), max(0, y0), min(ny, y1)

        @property
        def xmin_original(self) -> int:
            return self._clipped()[0]

        @property
        def xmax_original(self) -> int:
            return self._clipped()[1]

        @property
        def ymin_original(self) -> int:
            return self._clipped()[2]

        @property
        def ymax_original(self) -> int:
            return self._clipped()[3]

        @property
        def slices_original(self) -> tuple[slice, slice]:
            x0, x1, y0, y1 = self._clipped()
            return slice(y0, y1), slice(x0, x1)

    # -- the cut ------------------------------------------------------------------------------
    def cutout(self) -> list[fits.HDUList]:
        """Cut every input (again) and return :attr:`fits_cutouts` (astrocut's ``cutout()``).

        Raises
        ------
        NoDataError
            No input has data at the position.
        """
        result = cut_images(
            [os.fspath(f) for f in self._input_files], self._coordinates, self._cutout_size,
            extension=self._extension, fill_value=self._fill_value,
            limit_rounding_method=self._limit_rounding_method, allow_empty=self._allow_empty, s3=self._s3,
        )  # fmt: skip
        given = {os.fspath(f): f for f in self._input_files}
        self.hdu_cutouts_by_file = {given[name]: [c.hdu for c in cuts] for name, cuts in result.by_file.items()}
        self.cutouts_by_file = {
            given[name]: [self.CutoutInstance(c, self._s3) for c in cuts if self._allow_empty or not c.empty]
            for name, cuts in result.by_file.items()
        }
        self._fits_cutouts = None
        self._image_cutouts = None
        return self.fits_cutouts

    @property
    def fits_cutouts(self) -> list[fits.HDUList]:
        """The cutouts as HDULists: one for all (``single_outfile``) or one per input file."""
        if not self._fits_cutouts:
            if self._single_outfile:
                hdus = [hdu for hdus in self.hdu_cutouts_by_file.values() for hdu in hdus]
                self._fits_cutouts = [fits.HDUList([primary_hdu(self._coordinates), *hdus])]
            else:
                self._fits_cutouts = [
                    fits.HDUList([primary_hdu(self._coordinates), *hdus]) for hdus in self.hdu_cutouts_by_file.values()
                ]
        return self._fits_cutouts

    def _names(self, prefix: str) -> list[str]:
        """The file name of each of :attr:`fits_cutouts`, as astrocut's ``write_as_fits`` names them."""
        coord, size = self._coordinates, self._cutout_size
        if self._single_outfile:
            return [cutout_filename(prefix, coord, size)]
        return [cutout_filename(input_stem(os.fspath(f)), coord, size) for f in self.hdu_cutouts_by_file]

    # -- output -------------------------------------------------------------------------------
    def write_as_fits(self, output_dir: str | os.PathLike = ".", cutout_prefix: str = "cutout") -> list[str]:
        """Write the cutouts to FITS files (with checksums); return their paths (always a list).

        Names as astrocut: ``<cutout_prefix>_<ra:.7f>_<dec:.7f>_<s0>-x-<s1>_astrocut.fits`` for the
        single file, ``<input stem>_...`` per input file otherwise. Each file is written under a
        temporary name and renamed.
        """
        Path(output_dir).mkdir(parents=True, exist_ok=True)
        return [
            write_atomic(hdul, Path(output_dir, name))
            for hdul, name in zip(self.fits_cutouts, self._names(cutout_prefix))
        ]

    def write_as_zip(self, output_dir: str | os.PathLike = ".", filename: str | os.PathLike | None = None) -> str:
        """Write the FITS cutouts into one zip archive; return its path.

        As astrocut: the archive is ``astrocut_<ra:.7f>_<dec:.7f>_<s0>-x-<s1>.zip`` unless
        ``filename`` is given (``.zip`` is added when missing; relative names go under
        ``output_dir``); members are named as :meth:`write_as_fits` names files, the single file
        with the prefix ``cutout``. Written atomically, one member at a time.
        """
        path = zip_path(output_dir, filename, default_zip_name(self._coordinates, self._cutout_size))
        return write_zip(path, zip(self._names("cutout"), self.fits_cutouts))

    # -- images -------------------------------------------------------------------------------
    normalize_img = staticmethod(_normalize_img)

    @property
    def image_cutouts(self) -> list[Image.Image]:
        """The cutouts as PIL images with the default normalisation (made on first access)."""
        if not self._image_cutouts:
            self._image_cutouts = self.get_image_cutouts()
        return self._image_cutouts

    def _rendered(self) -> list[tuple[Any, FITSCutout.CutoutInstance]]:
        return [(file, cut) for file, cuts in self.cutouts_by_file.items() for cut in cuts]

    def get_image_cutouts(
        self,
        stretch: str | None = "asinh",
        minmax_percent: list[float] | None = None,
        minmax_value: list[float] | None = None,
        invert: bool | None = False,
        colorize: bool | None = False,
        flip_orientation: bool | None = True,
    ) -> list[Image.Image]:
        """Render the cutouts as PIL images (mode L, or one RGB image with ``colorize``).

        Follows astrocut's ``ImageCutout.get_image_cutouts``: default interval ``[0.5, 99.5]``
        percent; rows flipped so north is up unless ``flip_orientation`` is False; with
        ``colorize``, the first three cutouts in input order make one RGB image (more: an
        :class:`core.images.render.InputWarning` and the rest ignored; fewer: an error). Each image's
        ``info`` holds astrocut's metadata. Sets :attr:`image_cutouts`.

        Raises
        ------
        InvalidInputError
            Unknown stretch (``field="stretch"``), bad intervals, or fewer than three cutouts to
            colorize (``field="input_files"``).
        """
        stretch = parse_stretch(stretch)
        if minmax_percent is None and minmax_value is None:
            minmax_percent = list(DEFAULT_PERCENT)
        cuts = self._rendered()

        def render(inst: FITSCutout.CutoutInstance) -> np.ndarray:
            return _normalize_img(inst.data, stretch, minmax_percent, minmax_value, bool(invert))

        images = []
        if colorize:
            if len(cuts) > 3:
                warnings.warn("Too many inputs for a color cutout, only the first three will be used.",
                              InputWarning, stacklevel=2)
                cuts = cuts[:3]
            if len(cuts) < 3:
                raise InvalidInputError(
                    "Color cutouts require 3 input images (RGB). If you supplied 3 images one of the "
                    "cutouts may have been empty.",
                    field="input_files",
                )
            img = Image.fromarray(np.dstack([render(c) for _, c in cuts]).astype(np.uint8))
            groups = [(img, [os.fspath(f) for f, _ in cuts], cuts[0][1])]
        else:
            groups = [(Image.fromarray(render(c)), [os.fspath(f)], c) for f, c in cuts]
        for img, files, first in groups:
            if flip_orientation:
                img = img.transpose(Image.Transpose.FLIP_TOP_BOTTOM)
            img.info.update(image_metadata(first._cut, files, self._coordinates))
            images.append(img)
        self._image_cutouts = images
        return images

    def write_as_img(
        self,
        stretch: str | None = "asinh",
        minmax_percent: list[float] | None = None,
        minmax_value: list[float] | None = None,
        invert: bool | None = False,
        colorize: bool | None = False,
        output_format: str = ".jpg",
        output_dir: str | os.PathLike = ".",
        cutout_prefix: str = "cutout",
        flip_orientation: bool | None = True,
    ) -> str | list[str]:
        """Write the rendered cutouts as image files; return the path (colorized) or the paths.

        Names as astrocut: ``<cutout_prefix>_<ra:.7f>_<dec:.7f>_<s0>-x-<s1>_astrocut<fmt>`` when
        colorized, else ``<input stem>_..._astrocut_<i><fmt>`` for the i-th image (i counts every
        image; astrocut counts input files, the same when each file gives one cutout). Metadata
        go into PNG text chunks or the JPEG/TIFF EXIF ImageDescription; files are renamed into
        place when complete.

        Raises
        ------
        InvalidInputError
            An unsupported ``output_format`` (astrocut warns and returns None), and the errors of
            :meth:`get_image_cutouts`.
        """
        try:
            suffix = parse_format(output_format)
        except InvalidInputError as exc:
            raise InvalidInputError(exc.message, field="output_format") from None
        images = self.get_image_cutouts(stretch, minmax_percent, minmax_value, invert, colorize, flip_orientation)
        Path(output_dir).mkdir(parents=True, exist_ok=True)
        coord, size = self._coordinates, self._cutout_size
        if colorize:
            return save_image(images[0], Path(output_dir, cutout_filename(cutout_prefix, coord, size, suffix)))
        paths = []
        for i, ((file, _), img) in enumerate(zip(self._rendered(), images)):
            name = cutout_filename(input_stem(os.fspath(file)), coord, size, f"_{i}{suffix}")
            paths.append(save_image(img, Path(output_dir, name)))
        return paths


__all__ = ["FITSCutout"]
