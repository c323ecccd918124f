"""The hosted cubes, searchable by product, sector, camera/CCD and sky position.

A :class:`Catalog` is an immutable snapshot: one :class:`CubeRecord` per cube (what routing needs,
a few hundred bytes each), a spatial index over their footprints, and a way to open each cube for
cutting without reading its headers again (the catalog index keeps them, see
:mod:`core.catalog.index`). Swapping a catalog for a newer one is one reference assignment, so a
request sees the old catalog or the new one, never a mix.

Position queries (:meth:`Catalog.containing`) look up a grid of declination bands cut into RA
cells (about 2 degrees a side): each cube is listed in the cells its footprint's circle touches,
so a query tests only the few cubes of its cell, first against that circle, then exactly through
the cube's TAN-SIP WCS (:class:`core.cubes.cube.CubeGeometry`, built on first need from the index and
kept in a bounded cache). No cube file is opened to answer a query.
"""

from __future__ import annotations

import math
import os
import threading
from collections import OrderedDict, defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from core.catalog.scan import read_many
from core.cubes.cache import open_cube
from core.cubes.cube import Cube, CubeGeometry
from core.cubes.info import CubeInfo, angular_distance
from core.product import Product
from core.sky_polygon import gnomonic, plane_polygon, side_of_polygon

__all__ = ["CELL_DEG", "Catalog", "CubeRecord", "infos_getter", "sector_name"]

#: height of a declination band of the spatial index, degrees
CELL_DEG = 2.0
#: cube geometries (reference WCS, pixel lookups) kept for routing, per catalog
GEOMETRIES_KEPT = 512
#: radii (degrees) up to which a position far outside a footprint is refused without the WCS
SURE_RADIUS_DEG = 1.0


def sector_name(product: str, sector: int, camera: int, ccd: int) -> str:
    """TESScut's ``sectorName``: ``tess-s0038-2-2`` (SPOC) or ``tica-s0038-2-2`` (TICA)."""
    return Product.parse(product).sector_name(sector, camera, ccd)


@dataclass(frozen=True)
class CubeRecord:
    """One hosted cube, as routing needs it."""

    uri: str
    identity: tuple
    product: str
    sector: int
    camera: int
    ccd: int
    nframes: int
    nx: int
    ny: int
    footprint: tuple[tuple[float, float], ...]
    center: tuple[float, float]
    reach_deg: float
    tstart: float
    tstop: float
    footprint_tol_deg: float = -1.0

    @property
    def sector_name(self) -> str:
        return sector_name(self.product, self.sector, self.camera, self.ccd)

    @classmethod
    def from_info(cls, info: CubeInfo) -> CubeRecord:
        return cls(
            uri=info.uri, identity=tuple(info.identity), product=info.product.upper(), sector=info.sector,
            camera=info.camera, ccd=info.ccd, nframes=info.nframes, nx=info.nx, ny=info.ny,
            footprint=tuple(info.footprint), center=tuple(info.center), reach_deg=float(info.reach_deg),
            tstart=float(info.tstart), tstop=float(info.tstop), footprint_tol_deg=float(info.footprint_tol_deg),
        )  # fmt: skip

    def near(self, ra: float, dec: float, radius_deg: float = 0.0) -> bool:
        """Whether (ra, dec) lies within the circle around the footprint, grown by ``radius_deg``."""
        return angular_distance(self.center[0], self.center[1], ra, dec) <= self.reach_deg + radius_deg

    @cached_property
    def _plane(self) -> tuple[tuple[float, float], ...] | None:
        if self.footprint_tol_deg < 0 or len(self.footprint) < 3:
            return None
        return plane_polygon(self.center, self.footprint)

    def holds(self, ra: float, dec: float, radius_deg: float = 0.0) -> bool | None:
        """Whether the science pixels (grown by ``radius_deg``) hold ICRS (ra, dec) degrees, as far
        as the footprint alone can tell: True or False where it is sure, None near the outline,
        where only the WCS can tell (:meth:`core.cubes.cube.CubeGeometry.contains_radec`).

        Sure means farther than ``footprint_tol_deg`` inside the corners' polygon, or farther than
        the tolerance plus twice the radius outside it (the grown pixel box reaches at most
        radius x sqrt(2) x the pixel scale's variation beyond the outline). Radii above
        ``SURE_RADIUS_DEG`` always ask the WCS outside the polygon.
        """
        polygon = self._plane
        if polygon is None:
            return None
        point = gnomonic(self.center, ra, dec)
        if point is None:  # 90 degrees or more from the centre
            return False if radius_deg <= SURE_RADIUS_DEG else None
        depth = math.degrees(side_of_polygon(point, polygon))
        if depth >= self.footprint_tol_deg:
            return True
        if radius_deg <= SURE_RADIUS_DEG and depth < -(self.footprint_tol_deg + 2.0 * radius_deg):
            return False
        return None


def _cells(ra: float, dec: float, radius: float) -> Iterable[tuple[int, int]]:
    """The grid cells a circle may touch (a superset: exact tests follow)."""
    lo = max(-90.0, dec - radius)
    hi = min(90.0, dec + radius)
    for band in range(math.floor((lo + 90.0) / CELL_DEG), math.floor((hi + 90.0) / CELL_DEG) + 1):
        ncells = _cells_in_band(band)
        b_lo, b_hi = band * CELL_DEG - 90.0, (band + 1) * CELL_DEG - 90.0
        widest = max(abs(b_lo), abs(b_hi))
        if widest + radius >= 89.0 or radius >= 90.0:
            yield from ((band, i) for i in range(ncells))
            continue
        # a circle's RA half-width at a latitude: about radius / cos(latitude); 10% and one cell more
        # on each side cover the rest (high declinations, the band's far edge)
        half = min(180.0, 1.1 * radius / math.cos(math.radians(min(89.0, max(abs(dec), widest)))) + CELL_DEG)
        width = 360.0 / ncells
        first = math.floor(((ra - half) % 360.0) / width)
        count = min(ncells, math.ceil(2 * half / width) + 1)
        yield from ((band, (first + k) % ncells) for k in range(count))


def _cells_in_band(band: int) -> int:
    """RA cells of a band: about CELL_DEG wide at the band's equatorward edge."""
    edge = min(abs(band * CELL_DEG - 90.0), abs((band + 1) * CELL_DEG - 90.0))
    return max(1, int(360.0 * math.cos(math.radians(edge)) / CELL_DEG))


def _cell_of(ra: float, dec: float) -> tuple[int, int]:
    band = min(int((dec + 90.0) / CELL_DEG), int(180.0 / CELL_DEG) - 1)
    ncells = _cells_in_band(band)
    return band, min(ncells - 1, int((ra % 360.0) / (360.0 / ncells)))


class Catalog:
    """An immutable snapshot of hosted cubes (see the module docstring).

    Parameters
    ----------
    records : sequence of CubeRecord
    load_info : callable, optional
        ``load_info(uri) -> CubeInfo``: the full info of a cube (the index's headers); default:
        read from the file itself.
    s3 : core.storage.s3.S3Config, optional
        How to reach ``s3://`` cubes.
    """

    def __init__(self, records: Sequence[CubeRecord], *, load_info: Callable[[str], CubeInfo] | None = None,
                 s3: Any = None, skipped: Sequence[tuple[str, str]] = (),
                 on_stale: Callable[[CubeRecord], Any] | None = None) -> None:
        ordered = sorted(records, key=lambda r: (r.product, r.sector, r.camera, r.ccd, r.uri))
        self._records: tuple[CubeRecord, ...] = tuple(ordered)
        self._by_uri = {r.uri: r for r in ordered}
        self._load_info = load_info
        self.s3 = s3
        self.on_stale = on_stale
        self.skipped = list(skipped)
        grid: dict[tuple[int, int], list[CubeRecord]] = defaultdict(list)
        for r in ordered:
            for cell in _cells(r.center[0], r.center[1], r.reach_deg):
                grid[cell].append(r)
        self._grid = dict(grid)
        self._geometries: OrderedDict[tuple, CubeGeometry] = OrderedDict()
        self._infos: OrderedDict[str, CubeInfo] = OrderedDict()
        self._lock = threading.Lock()

    @classmethod
    def from_files(cls, paths: Sequence[str | os.PathLike], *, s3: Any = None) -> Catalog:
        """A catalog of the given cube files (local paths or ``s3://`` URIs); files that are not
        cubes are left out and listed in :attr:`skipped`."""
        infos, skipped = read_many([os.fspath(p) for p in paths], s3, threads=8)
        return cls([CubeRecord.from_info(i) for i in infos], load_info=infos_getter(infos), s3=s3,
                   skipped=skipped)

    # -- listing ---------------------------------------------------------------------------------
    def entries(self, product: str | None = None) -> list[CubeRecord]:
        """Every hosted cube (of ``product`` if given), sorted by product, sector, camera, CCD."""
        if product is None:
            return list(self._records)
        wanted = product.upper()
        return [r for r in self._records if r.product == wanted]

    def __len__(self) -> int:
        return len(self._records)

    def sectors(self, product: str | None = None) -> list[int]:
        """The hosted sector numbers (of ``product``)."""
        return sorted({r.sector for r in self.entries(product)})

    def get(self, sector: int, camera: int, ccd: int, product: str = Product.SPOC) -> CubeRecord | None:
        """The cube of one sector/camera/CCD, or None."""
        for r in self.entries(product):
            if (r.sector, r.camera, r.ccd) == (sector, camera, ccd):
                return r
        return None

    def record(self, uri: str) -> CubeRecord | None:
        return self._by_uri.get(uri)

    def summary(self) -> dict[str, Any]:
        """Counts per product, for /health."""
        return {"cubes": len(self._records), "skipped": len(self.skipped),
                **{p.value: self.sectors(p) for p in Product}}

    # -- positions -------------------------------------------------------------------------------
    def candidates(self, ra: float, dec: float, radius_deg: float = 0.0) -> list[CubeRecord]:
        """Cubes whose footprint circle may hold (ra, dec) grown by ``radius_deg`` (prefilter)."""
        if radius_deg <= 0.0:
            cell_list = self._grid.get(_cell_of(ra, dec), ())
            return [r for r in cell_list if r.near(ra, dec)]
        seen: dict[str, CubeRecord] = {}
        for cell in _cells(ra, dec, radius_deg):
            for r in self._grid.get(cell, ()):
                seen.setdefault(r.uri, r)
        return [r for r in seen.values() if r.near(ra, dec, radius_deg)]

    def containing(self, ra: float, dec: float, radius_deg: float = 0.0, *, product: str = Product.SPOC,
                   sectors: Iterable[int] | None = None) -> list[CubeRecord]:
        """The cubes of ``product`` whose science pixels (grown by ``radius_deg``) contain ICRS
        (ra, dec) degrees, in sector, camera, CCD order; only ``sectors`` if given."""
        wanted = set(sectors) if sectors else None
        product = product.upper()
        ra = ra % 360.0
        found = [
            r for r in self.candidates(ra, dec, radius_deg)
            if r.product == product and (wanted is None or r.sector in wanted)
            and self._contains(r, ra, dec, radius_deg)
        ]
        return sorted(found, key=lambda r: (r.sector, r.camera, r.ccd, r.uri))

    def _contains(self, record: CubeRecord, ra: float, dec: float, radius_deg: float) -> bool:
        """The footprint's answer where it is sure, else the cube's WCS."""
        sure = record.holds(ra, dec, radius_deg)
        if sure is not None:
            return sure
        return self.geometry(record).contains_radec(ra, dec, radius_deg)

    def geometry(self, record: CubeRecord) -> CubeGeometry:
        """The cube's reference WCS and containment tests (from the index: no file opened)."""
        key = (record.uri, record.identity)
        geo = self._geometries.get(key)
        if geo is not None:
            with self._lock:
                if key in self._geometries:
                    self._geometries.move_to_end(key)  # least recently used goes first
            return geo
        geo = CubeGeometry(self.info(record))
        with self._lock:
            self._geometries[key] = geo
            while len(self._geometries) > GEOMETRIES_KEPT:
                self._geometries.popitem(last=False)
        return geo

    # -- opening ---------------------------------------------------------------------------------
    def info(self, record: CubeRecord) -> CubeInfo:
        """The cube's full :class:`CubeInfo` (from the index when there is one)."""
        info = self._infos.get(record.uri)
        if info is not None and tuple(info.identity) == tuple(record.identity):
            return info
        if self._load_info is not None:
            info = self._load_info(record.uri)
        else:
            info = open_cube(record.uri, s3=self.s3).info
        with self._lock:
            self._infos[record.uri] = info
            while len(self._infos) > GEOMETRIES_KEPT:
                self._infos.popitem(last=False)
        return info

    def open(self, record: CubeRecord) -> Cube:
        """The cube, for cutting (through the process-wide cube cache; the index's info spares
        reading its headers when the file is unchanged). A file replaced since it was indexed is
        read afresh; for one that is gone, UnavailableError (the catalog is behind the disk, not
        the request wrong). Either calls ``on_stale`` (the service then refreshes the catalog)."""
        from core.errors import NotFoundError, UnavailableError

        info = self.info(record)
        try:
            cube = open_cube(record.uri, s3=self.s3, info=info)
        except NotFoundError:
            if self.on_stale is not None:
                self.on_stale(record)
            raise UnavailableError(
                f"cube {record.sector_name} is no longer available here; the catalog is being refreshed"
            ) from None
        if tuple(cube.info.identity) != tuple(record.identity) and self.on_stale is not None:
            self.on_stale(record)
        geo = self._geometries.get((record.uri, record.identity))
        if geo is not None and cube.geometry is not geo and geo.info.identity == cube.info.identity:
            cube.geometry = geo  # share the WCS copies and pixel cache built for routing
        return cube


def infos_getter(infos: Sequence[CubeInfo]) -> Callable[[str], CubeInfo]:
    by_uri = {i.uri: i for i in infos}

    def load(uri: str) -> CubeInfo:
        info = by_uri.get(uri)
        if info is None:
            from core.errors import NotFoundError

            raise NotFoundError(f"cube {os.path.basename(uri)} is not in the catalog", field="cube_file")
        return info

    return load
