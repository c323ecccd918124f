"""The in-memory index of hosted cubes: what the TESScut routes search.

At start-up (and on :meth:`Catalog.reindex`) every file under ``cube_dirs`` named as MAST names
cubes is opened once with :func:`core.cube.open_cube` (headers, table and reference WCS only):

- SPOC: ``tess-s0038-2-2-cube.fits``
- TICA: ``tica-s0038-2-2-cube.fits`` or ``s0038-2-2-cube.fits`` (both forms are in use)

Local folders are searched recursively; ``s3://bucket/prefix`` locations are listed with
``list_objects_v2``. A cube that cannot be opened is logged and skipped. The entry keeps the opened
:class:`core.cube.Cube` (so containment tests never re-read the file) and its footprint.
"""

from __future__ import annotations

import logging
import math
import os
import re
import threading
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from astropy import units as u
from astropy.coordinates import SkyCoord

from core.errors import CutoutError

__all__ = ["CUBE_NAME", "Catalog", "CubeEntry", "Position", "radec_deg", "sector_name"]

log = logging.getLogger("app.catalog")

#: MAST cube file names: ``tess-s0038-2-2-cube.fits`` (SPOC), ``[tica-]s0038-2-2-cube.fits`` (TICA)
CUBE_NAME = re.compile(r"^(?:(tess|tica)-)?s(\d{4})-(\d)-(\d)-cube\.fits$", re.IGNORECASE)


def sector_name(product: str, sector: int, camera: int, ccd: int) -> str:
    """TESScut's ``sectorName``: ``tess-s0038-2-2`` (SPOC) or ``tica-s0038-2-2`` (TICA)."""
    prefix = "tica" if product.upper() == "TICA" else "tess"
    return f"{prefix}-s{sector:04d}-{camera}-{ccd}"


#: a sky position: a SkyCoord, or ICRS (ra, dec) in degrees
Position = SkyCoord | tuple[float, float]


def radec_deg(coord: Position) -> tuple[float, float]:
    """ICRS (ra, dec) degrees of a SkyCoord, or of an (ra, dec) pair (ra wrapped to [0, 360))."""
    if isinstance(coord, SkyCoord):
        c = coord.icrs
        return float(c.ra.deg), float(c.dec.deg)
    ra, dec = coord
    return float(ra) % 360.0, float(dec)


def _degrees(radius: u.Quantity | float) -> float:
    """An angle in degrees; plain numbers are degrees."""
    return float(radius.to_value(u.deg)) if isinstance(radius, u.Quantity) else float(radius)


@dataclass(frozen=True)
class CubeEntry:
    """One hosted cube."""

    sector: int
    camera: int
    ccd: int
    product: str
    uri: str
    nframes: int
    nx: int
    ny: int
    footprint: tuple[tuple[float, float], ...]
    center: tuple[float, float]
    reach_deg: float
    cube: Any = field(repr=False, compare=False)

    @property
    def sector_name(self) -> str:
        return sector_name(self.product, self.sector, self.camera, self.ccd)

    def as_result(self) -> dict[str, str]:
        """The TESScut ``sector`` result row (all strings, sector zero-padded)."""
        return {
            "sectorName": self.sector_name,
            "sector": f"{self.sector:04d}",
            "camera": str(self.camera),
            "ccd": str(self.ccd),
        }

    def _near(self, ra: float, dec: float, radius_deg: float) -> bool:
        """Cheap pre-test: ICRS (ra, dec) degrees within the circle around the footprint (grown by
        ``radius_deg``).

        The angular distance is computed with the haversine formula on plain floats: astropy's
        ``SkyCoord.separation`` cost ~1 ms a call, more than the rest of the containment test.
        """
        ra1, dec1 = math.radians(self.center[0]), math.radians(self.center[1])
        ra2, dec2 = math.radians(ra), math.radians(dec)
        hav = math.sin((dec2 - dec1) / 2) ** 2 + math.cos(dec1) * math.cos(dec2) * math.sin((ra2 - ra1) / 2) ** 2
        sep = math.degrees(2 * math.asin(min(1.0, math.sqrt(hav))))
        return sep <= self.reach_deg + radius_deg

    def contains(self, coord: Position, radius: u.Quantity | float = 0 * u.deg) -> bool:
        """Whether the cube's science pixels, grown by ``radius``, contain ``coord``."""
        ra, dec = radec_deg(coord)
        return self._contains(ra, dec, _degrees(radius))

    def _contains(self, ra: float, dec: float, radius_deg: float) -> bool:
        return self._near(ra, dec, radius_deg) and bool(self.cube.contains_radec(ra, dec, radius_deg))


def _list_local(root: str) -> list[str]:
    path = Path(root)
    if not path.is_dir():
        log.warning("cube folder %s does not exist", root)
        return []
    found = []
    for dirpath, _dirs, files in os.walk(path, followlinks=True):
        for name in files:
            if CUBE_NAME.match(name):
                found.append(os.path.join(dirpath, name))
    return found


def _list_s3(location: str, s3: Any) -> list[str]:
    from core import s3 as storage
    from core.errors import CutoutError

    try:
        uris = storage.list_s3(location, s3=s3)
    except CutoutError as exc:  # an unreachable or missing store: log it and go on with what we have
        log.error("cannot list %s: %s", location, exc)
        return []
    return [u for u in uris if CUBE_NAME.match(u.rsplit("/", 1)[-1])]


class Catalog:
    """The hosted cubes, searchable by product, sector, camera/CCD and sky position.

    Parameters
    ----------
    cube_dirs : sequence of str
        Local folders and/or ``s3://bucket/prefix`` locations.
    s3 : core.s3.S3Config, optional
        How to reach S3.
    threads : int
        Cubes opened at once while indexing.
    """

    def __init__(self, cube_dirs: Sequence[str], s3: Any = None, *, threads: int = 8) -> None:
        self.cube_dirs = list(cube_dirs)
        self.s3 = s3
        self.threads = threads
        self._entries: tuple[CubeEntry, ...] = ()
        self._lock = threading.Lock()
        self.skipped: list[tuple[str, str]] = []

    # -- indexing -------------------------------------------------------------------------
    def _uris(self) -> list[str]:
        uris: list[str] = []
        for location in self.cube_dirs:
            if location[:5].lower() == "s3://":
                uris.extend(_list_s3(location, self.s3))
            else:
                uris.extend(_list_local(location))
        return sorted(set(uris))

    def _open(self, uri: str) -> CubeEntry | tuple[str, str]:
        from core.cube import open_cube

        try:
            cube = open_cube(uri, s3=self.s3)
            corners = cube.footprint()
            footprint = tuple((float(c.ra.deg), float(c.dec.deg)) for c in corners)
            cx, cy = (cube.nx - 1) / 2.0, (cube.ny - 1) / 2.0
            cra, cdec = (float(v) for v in cube.wcs.all_pix2world(cx, cy, 0))
            centre = SkyCoord(cra, cdec, unit="deg")
            reach = float(centre.separation(corners).deg.max()) + 0.5  # margin for SIP curvature
        except (CutoutError, OSError, ValueError, KeyError) as exc:
            return uri, str(exc)
        m = CUBE_NAME.match(uri.rsplit("/", 1)[-1])
        if m:
            named = (int(m.group(2)), int(m.group(3)), int(m.group(4)))
            if named != (cube.sector, cube.camera, cube.ccd):
                log.warning("%s: name says s%d %d-%d, header says s%d %d-%d; using the header",
                            uri, *named, cube.sector, cube.camera, cube.ccd)
        return CubeEntry(
            sector=int(cube.sector),
            camera=int(cube.camera),
            ccd=int(cube.ccd),
            product=str(cube.product).upper(),
            uri=uri,
            nframes=int(cube.nframes),
            nx=int(cube.nx),
            ny=int(cube.ny),
            footprint=footprint,
            center=(cra, cdec),
            reach_deg=reach,
            cube=cube,
        )

    def reindex(self) -> int:
        """Rebuild the index from ``cube_dirs``; return the number of cubes found.

        Cubes that fail to open are logged (and listed in :attr:`skipped`), not fatal.
        """
        uris = self._uris()
        entries: list[CubeEntry] = []
        skipped: list[tuple[str, str]] = []
        with ThreadPoolExecutor(max_workers=max(1, min(self.threads, len(uris) or 1))) as ex:
            for result in ex.map(self._open, uris):
                if isinstance(result, CubeEntry):
                    entries.append(result)
                else:
                    log.error("skipping cube %s: %s", *result)
                    skipped.append(result)
        entries.sort(key=lambda e: (e.product, e.sector, e.camera, e.ccd, e.uri))
        with self._lock:
            self._entries = tuple(entries)
            self.skipped = skipped
        log.info("catalog: %d cubes indexed, %d skipped", len(entries), len(skipped))
        return len(entries)

    # -- queries --------------------------------------------------------------------------
    def entries(self, product: str | None = None) -> list[CubeEntry]:
        """Every hosted cube (of ``product`` if given), sorted by sector, camera, CCD."""
        items: Iterable[CubeEntry] = self._entries
        if product is not None:
            items = (e for e in items if e.product == product.upper())
        return list(items)

    def __len__(self) -> int:
        return len(self._entries)

    def sectors(self, product: str | None = None) -> list[int]:
        """The hosted sector numbers (of ``product``)."""
        return sorted({e.sector for e in self.entries(product)})

    def get(self, sector: int, camera: int, ccd: int, product: str = "SPOC") -> CubeEntry | None:
        """The cube of one sector/camera/CCD, or None."""
        for e in self.entries(product):
            if (e.sector, e.camera, e.ccd) == (sector, camera, ccd):
                return e
        return None

    def containing(
        self,
        coord: Position,
        radius: u.Quantity | float = 0 * u.deg,
        product: str = "SPOC",
        sectors: Iterable[int] | None = None,
    ) -> list[CubeEntry]:
        """The hosted cubes whose science pixels (grown by ``radius``) contain ``coord`` (a
        SkyCoord or ICRS degrees; converted once, then every cube is tested on plain floats)."""
        wanted = set(sectors) if sectors else None
        ra, dec = radec_deg(coord)
        r = _degrees(radius)
        return [
            e
            for e in self.entries(product)
            if (wanted is None or e.sector in wanted) and e._contains(ra, dec, r)
        ]

    def summary(self) -> dict[str, Any]:
        """Counts per product, for /health."""
        out: dict[str, Any] = {"cubes": len(self._entries), "skipped": len(self.skipped)}
        for product in ("SPOC", "TICA"):
            out[product] = self.sectors(product)
        return out
