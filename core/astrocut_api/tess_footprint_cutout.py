"""astrocut 1.4.0's footprint API (``TessFootprintCutout``, ``cube_cut_from_footprint``,
``get_tess_sectors``) over this service's own catalog of hosted cubes.

astrocut matches a cutout against MAST's FFI footprint file on S3
(``tess_ffi_footprint_cache.json``) and cuts the matching cubes from ``s3://stpubdata``. Here the
cubes are the ones this service hosts: a catalog (``catalog=``, our addition; by default
``core.catalog.snapshot.default_catalog()``; a :class:`core.catalog.snapshot.Catalog`, e.g.
``Catalog.from_files(paths)``) answers which cubes hold a position, and
:class:`core.astrocut_api.tess_cube_cutout.TessCubeCutout` cuts them.

Follows astrocut 1.4.0 for the parameters (``coordinates``, ``cutout_size``, ``fill_value``,
``limit_rounding_method``, ``sequence`` = TESS sectors, ``memory_only``, ``output_dir``,
``verbose``, ``legacy_filenames``), the attributes (``tess_cube_cutout``, ``cutouts_by_file``,
``cutouts``, ``tpf_cutouts_by_file``, ``tpf_cutouts``), the file and zip member names, and
``get_tess_sectors``'s table (columns ``sectorName`` S20, ``sector``, ``camera``, ``ccd`` int32).
Departures, on purpose:

1. the catalog decides what a footprint holds: a cube matches when the cutout's box around the
   position overlaps its science pixels (``radius_deg`` = half the longer side, sizes in pixels
   converted with astrocut's 21"/px); astrocut intersects spherical polygons of whole FFIs;
2. a matching cube whose pixels do not hold the centre itself is skipped with a warning (see
   :mod:`core.astrocut_api.tess_cube_cutout`), so a cutout may hold fewer sectors than ``get_tess_sectors``
   lists for the same box;
3. cubes are cut in (sector, camera, CCD) order;
4. no match is :class:`~core.errors.NoDataError` naming ``coordinates`` (astrocut's
   ``InvalidQueryError``); a missing catalog is :class:`~core.errors.UnavailableError` naming
   ``catalog``;
5. keyword-only additions: ``catalog``, ``product`` (SPOC or TICA, astrocut 0.11.1's) and
   ``s3`` (a :class:`core.storage.s3.S3Config` for ``s3://`` cubes).
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
from astropy import units as u
from astropy.io import fits
from astropy.table import Table

from core.astrocut_api.fits_cutout import cutout_parameters
from core.astrocut_api.tess_cube_cutout import TessCubeCutout, check_product
from core.catalog.configured import default_catalog
from core.catalog.snapshot import Catalog, CubeRecord
from core.cutout_size import first_two
from core.errors import CutoutError, InvalidInputError, NoDataError, UnavailableError
from core.geometry import parse_coordinates
from core.images.cutouts import parse_size
from core.product import Product

#: astrocut's TESS pixel scale for converting pixel sizes to angles (arcsec per pixel)
ARCSEC_PER_PX = 21
#: the widest cutout side a footprint search takes: a side of 360 degrees, radius 180, reaches everywhere
MAX_FOOTPRINT_ARCSEC = 360 * 3600.0
_SECTOR_COLUMNS = ["sectorName", "sector", "camera", "ccd"]
_SECTOR_DTYPES = ["S20", "i4", "i4", "i4"]


def _resolve_catalog(catalog: Catalog | None) -> Catalog:
    """``catalog``, or the catalog the environment names (:func:`core.catalog.snapshot.default_catalog`)."""
    if catalog is None:
        catalog = default_catalog()
    if not callable(getattr(catalog, "containing", None)):
        raise InvalidInputError("catalog must have a containing(ra, dec, radius_deg, ...) method", field="catalog")
    return catalog


def _sectors(sequence: Any) -> list[int] | None:
    """astrocut's ``sequence``: None, one sector number or a list of them."""
    if sequence is None:
        return None
    values = [sequence] if np.isscalar(sequence) else list(sequence)
    out = []
    for value in values:
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) or value < 1:
            raise InvalidInputError(f"a sector is a positive integer, not {value!r}", field="sequence")
        out.append(int(value))
    if not out:
        raise InvalidInputError("give at least one sector, or None for all", field="sequence")
    return out


def footprint_radius_deg(cutout_size: Any, allow_zero: bool = False) -> float:
    """Half the longer side of a cutout, in degrees, as astrocut sizes a cutout's footprint.

    Pixel sizes (numbers or pixel Quantities) are converted with :data:`ARCSEC_PER_PX`; angles
    are taken as they are. A size of 0 (allowed with ``allow_zero``, as ``get_tess_sectors``
    allows it) means the position itself.

    Raises
    ------
    InvalidInputError
        Negative, non-finite or non-numeric sizes, or units neither angular nor pixels
        (``field="cutout_size"``).
    """
    if not allow_zero:
        pair = parse_size(cutout_size)
    else:
        values = np.atleast_1d(cutout_size) if isinstance(cutout_size, u.Quantity) else cutout_size
        if np.isscalar(values):
            values = [values, values]
        try:
            pair = list(values)
        except TypeError:
            raise InvalidInputError(f"cannot read {cutout_size!r} as a cutout size", field="cutout_size") from None
        if len(pair) == 1:
            pair = pair * 2
        if len(pair) < 2:
            raise InvalidInputError("a cutout size has one or two elements", field="cutout_size")
        pair = first_two(pair)
    arcsec = []
    for value in pair:
        if isinstance(value, u.Quantity):
            if value.unit.physical_type == "angle":
                number = float(value.to_value(u.arcsec))
            elif value.unit in (u.pix, u.dimensionless_unscaled):
                number = float(value.value) * ARCSEC_PER_PX
            else:
                raise InvalidInputError(f"unit {value.unit} is neither angular nor pixels", field="cutout_size")
        elif isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
            raise InvalidInputError(f"cannot read {value!r} as a number of pixels", field="cutout_size")
        else:
            number = float(value) * ARCSEC_PER_PX
        if np.isnan(number):
            raise InvalidInputError(f"cutout size must be a number, got {value}", field="cutout_size")
        if number < 0:
            raise InvalidInputError(f"cutout size must not be negative, got {value}", field="cutout_size")
        if number > MAX_FOOTPRINT_ARCSEC:
            raise InvalidInputError(f"cutout size {value} is wider than the whole sky ({MAX_FOOTPRINT_ARCSEC / 3600:g} degrees): "
                                    "give a smaller size", field="cutout_size")
        arcsec.append(number)
    return max(arcsec) / 2 / 3600


def _matching(
    catalog: Catalog, ra: float, dec: float, radius_deg: float, product: str, sectors: list[int] | None
) -> list[CubeRecord]:
    """The catalog's cubes for the cutout, in (sector, camera, CCD) order."""
    try:
        records = catalog.containing(ra, dec, radius_deg, product=product, sectors=sectors)
    except CutoutError:
        raise
    except (OSError, RuntimeError) as exc:
        raise UnavailableError(f"the catalog of hosted cubes failed: {exc}", field="catalog") from None
    return sorted(records, key=lambda r: (int(r.sector), int(r.camera), int(r.ccd)))


class TessFootprintCutout:
    """Target pixel files from every hosted cube that holds a position (astrocut 1.4.0's
    ``TessFootprintCutout``, matched against this service's catalog).

    Follows astrocut 1.4.0's class (parameters, attributes, methods, names); departs as the module
    docstring lists (the catalog instead of MAST's footprint file, keyword-only ``catalog``,
    ``product``, ``s3``).

    Parameters
    ----------
    coordinates : str or SkyCoord
        Centre of the cutouts (``"ra dec"`` in degrees).
    cutout_size : int, [nx, ny] or Quantity
        Pixels or an angle; a pair is x-first.
    fill_value : int or float
        FLUX/FLUX_ERR of pixels off a cube.
    limit_rounding_method : {"round", "ceil", "floor"}
        How window limits are rounded.
    sequence : int, list of int or None
        TESS sectors to cut from; None for every sector that holds the position.
    verbose : bool
        Print each cut's report to stderr.
    catalog : Catalog, optional
        Our addition: the hosted cubes; default ``core.catalog.snapshot.default_catalog()``.
    product : {SPOC, TICA}
        Our addition: which kind of cube.
    s3 : core.storage.s3.S3Config, optional
        Our addition: how to reach ``s3://`` cubes.

    Attributes
    ----------
    tess_cube_cutout : TessCubeCutout
        The cutouts of the matching cubes.
    cutouts_by_file, cutouts, tpf_cutouts_by_file, tpf_cutouts
        As :class:`~core.astrocut_api.tess_cube_cutout.TessCubeCutout`'s (keys are the cubes' URIs).

    Raises
    ------
    InvalidInputError
        A bad parameter (``field`` names it).
    NoDataError
        No hosted cube (of those sectors) holds the position (``field="coordinates"``).
    UnavailableError
        No catalog is available (``field="catalog"``).
    """

    ARCSEC_PER_PX = ARCSEC_PER_PX

    def __init__(
        self,
        coordinates: Any,
        cutout_size: Any = 25,
        fill_value: float = np.nan,
        limit_rounding_method: str = "round",
        sequence: int | list[int] | None = None,
        verbose: bool = False,
        *,
        catalog: Catalog | None = None,
        product: str = Product.SPOC,
        s3: Any = None,
    ) -> None:
        (self._coordinates, self._cutout_size, self._fill_value,
         self._limit_rounding_method) = cutout_parameters(coordinates, cutout_size, fill_value, limit_rounding_method)
        self._radius_deg = footprint_radius_deg(cutout_size)
        self._sequence = _sectors(sequence)
        self._product = check_product(product)
        self._verbose = verbose
        self._s3 = s3
        self._catalog = _resolve_catalog(catalog)
        self.cutout()

    def cutout(self) -> None:
        """Find the hosted cubes holding the position and cut them (astrocut's ``cutout()``).

        Raises
        ------
        NoDataError
            No cube (of the requested sectors) holds the position, or none of the matching
            cubes' pixels holds its centre.
        """
        coord = self._coordinates
        records = _matching(
            self._catalog, float(coord.ra.deg), float(coord.dec.deg), self._radius_deg, self._product, self._sequence
        )
        if not records:
            where = "" if self._sequence is None else " in sector(s) " + ", ".join(map(str, self._sequence))
            raise NoDataError(
                f"The given coordinates were not found within any hosted {self._product} cube{where}.",
                field="coordinates",
            )
        cubes = TessCubeCutout(
            [r.uri for r in records], coord, self._cutout_size, self._fill_value, self._limit_rounding_method,
            threads=8, verbose=self._verbose, product=self._product, s3=self._s3,
        )  # fmt: skip
        self.tess_cube_cutout = cubes
        self.cutouts_by_file = cubes.cutouts_by_file
        self.cutouts = cubes.cutouts
        self.tpf_cutouts_by_file = cubes.tpf_cutouts_by_file
        self.tpf_cutouts = cubes.tpf_cutouts

    def write_as_tpf(self, output_dir: str | os.PathLike = ".", legacy_filenames: bool = False) -> list[str]:
        """Write the TPFs to ``output_dir``; return their paths (names as astrocut's)."""
        return self.tess_cube_cutout.write_as_tpf(output_dir, legacy_filenames=legacy_filenames)

    def write_as_zip(
        self,
        output_dir: str | os.PathLike = ".",
        filename: str | os.PathLike | None = None,
        legacy_filenames: bool = False,
    ) -> str:
        """Write the TPFs into one zip archive; return its path (names as astrocut's)."""
        return self.tess_cube_cutout.write_as_zip(output_dir, filename, legacy_filenames=legacy_filenames)


def cube_cut_from_footprint(
    coordinates: Any,
    cutout_size: Any,
    sequence: int | list[int] | None = None,
    memory_only: bool = False,
    output_dir: str | os.PathLike = ".",
    verbose: bool = False,
    legacy_filenames: bool = False,
    *,
    catalog: Catalog | None = None,
    product: str = Product.SPOC,
    s3: Any = None,
) -> list[str] | list[fits.HDUList]:
    """Cut TPFs around ``coordinates`` from every hosted cube holding it (astrocut 1.4.0's function).

    Follows astrocut 1.4.0: returns the TPF HDULists (``memory_only``) or the written paths in
    ``output_dir`` (default or ``legacy_filenames`` names). Departs as
    :class:`TessFootprintCutout` does (this service's catalog, keyword-only ``catalog``,
    ``product``, ``s3``).

    Raises
    ------
    InvalidInputError, NoDataError, UnavailableError
        As :class:`TessFootprintCutout`.
    """
    cutouts = TessFootprintCutout(
        coordinates, cutout_size, sequence=sequence, verbose=verbose, catalog=catalog, product=product, s3=s3
    )
    if memory_only:
        return cutouts.tpf_cutouts
    return cutouts.write_as_tpf(output_dir, legacy_filenames=legacy_filenames)


def get_tess_sectors(
    coordinates: Any,
    cutout_size: Any,
    *,
    catalog: Catalog | None = None,
    product: str = Product.SPOC,
) -> Table:
    """The hosted sectors (sector, camera, CCD) whose cubes overlap a cutout (astrocut 1.4.0's function).

    Follows astrocut 1.4.0: an astropy Table with columns ``sectorName`` (S20, e.g.
    ``tess-s0038-2-2``), ``sector``, ``camera``, ``ccd`` (int32), empty (same columns) when
    nothing matches; a ``cutout_size`` of 0 asks for the cubes holding the position itself.
    Departs in asking this service's catalog (keyword-only ``catalog``, ``product``; rows in
    sector, camera, CCD order).

    Raises
    ------
    InvalidInputError
        Bad coordinates, size or product (``field`` names it).
    UnavailableError
        No catalog is available (``field="catalog"``).
    """
    coord = parse_coordinates(coordinates)
    radius = footprint_radius_deg(cutout_size, allow_zero=True)
    found = _matching(
        _resolve_catalog(catalog), float(coord.ra.deg), float(coord.dec.deg), radius, check_product(product), None
    )
    rows = [(str(r.sector_name), int(r.sector), int(r.camera), int(r.ccd)) for r in found]
    if not rows:
        return Table(names=_SECTOR_COLUMNS, dtype=_SECTOR_DTYPES)
    return Table(rows=rows, names=_SECTOR_COLUMNS, dtype=_SECTOR_DTYPES)


__all__ = ["TessFootprintCutout", "cube_cut_from_footprint", "get_tess_sectors"]
