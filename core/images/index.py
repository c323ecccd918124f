"""Sky footprints of FITS images, indexed once, so that a position is matched to images without
opening any file.

:meth:`ImageIndex.build` walks named groups of locations (local folders and ``s3://`` prefixes;
a group is a survey), opens every FITS file found through :func:`core.storage.range_file.open_fits`
(lazily: header blocks only, never pixel data) and records, for every image HDU with data and a
celestial WCS, its footprint: the sky positions of the pixel-edge corners and edge midpoints (a
polygon) and a circle holding them. :meth:`ImageIndex.containing` then answers "which images hold
this position?" from memory: a vectorised circle test over all footprints, then the exact polygon
test on the few candidates. A rebuild given the previous index re-opens only files that are new or
changed (size and modification time locally, size and ETag on S3): a listing and a ``stat`` per
file otherwise.

Each file found is checked with :func:`core.storage.confine.confine` against its own group's locations
before it is opened: a symlink leading out of a root is skipped, not followed.

Geometry: polygons are kept in the gnomonic (tangent-plane) projection about the footprint's
centre, where great circles are straight lines, so the edges of a TAN image are exact and those
of a distorted (SIP) image are approximated by two segments per side. A footprint wider than
:data:`MAX_POLYGON_RADIUS_DEG` (all-sky images) is matched by its circle alone.
"""

from __future__ import annotations

import logging
import math
import os
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from core.errors import CutoutError
from core.sky_polygon import distance_to_polygon, gnomonic, in_polygon
from core.storage import range_file
from core.storage.confine import confine
from core.storage.s3 import is_s3_uri
from core.storage.walk import walk_files

__all__ = [
    "FITS_SUFFIXES", "MAX_POLYGON_RADIUS_DEG", "ImageEntry", "ImageIndex", "file_stem", "footprint",
    "read_footprints", "split_locations",
]

log = logging.getLogger(__name__)

#: file names (lower-cased) taken as FITS images when a location is walked
FITS_SUFFIXES = (".fits", ".fit", ".fts", ".fits.gz", ".fit.gz", ".fits.fz", ".fz")
#: footprints whose circle is wider than this are matched by the circle alone (a gnomonic
#: projection cannot hold them)
MAX_POLYGON_RADIUS_DEG = 60.0
#: margin added to each footprint's circle, degrees (rounding of the corner positions)
_CIRCLE_MARGIN_DEG = 1e-9


@dataclass(frozen=True)
class ImageEntry:
    """The footprint of one image HDU of one file of one group (survey).

    Attributes
    ----------
    survey : the group the file was found in.
    uri : the file's real local path (symlinks resolved) or ``s3://`` URI.
    ext : the HDU's index in the file.
    shape : (ny, nx) of the image (its last two axes).
    center : (ra, dec) degrees of the image's central pixel.
    radius_deg : radius of a circle about ``center`` holding the whole footprint.
    polygon : (ra, dec) degrees of the pixel-edge corners and edge midpoints, in order around.
    pixel_scale_deg : the mean pixel side, degrees.
    """

    survey: str
    uri: str
    ext: int
    shape: tuple[int, int]
    center: tuple[float, float]
    radius_deg: float
    polygon: tuple[tuple[float, float], ...]
    pixel_scale_deg: float
    # the polygon in the tangent plane about ``center`` (radians), for the containment test
    _plane: tuple[tuple[float, float], ...] = field(default=(), repr=False, compare=False)

    def contains(self, ra: float, dec: float, radius_deg: float = 0.0) -> bool:
        """Whether (ra, dec) degrees lies on the footprint, or within ``radius_deg`` of it."""
        if _separation_deg(self.center, (ra, dec)) > self.radius_deg + radius_deg:
            return False
        if self.radius_deg > MAX_POLYGON_RADIUS_DEG or not self._plane:
            return True
        point = gnomonic(self.center, ra, dec)
        if point is None:  # 90 degrees or more from the centre: only a grown circle reaches it
            return False
        return in_polygon(point, self._plane) or distance_to_polygon(point, self._plane) <= math.radians(radius_deg)


@dataclass(frozen=True)
class _FileRecord:
    """What the index knows of one file: its identity when read, its footprints, and why it has
    none (a file that failed is not re-read until its identity changes)."""

    identity: str
    entries: tuple[ImageEntry, ...]
    reason: str | None = None


def _unit(ra_deg: Any, dec_deg: Any) -> np.ndarray:
    ra, dec = np.radians(ra_deg), np.radians(dec_deg)
    return np.stack([np.cos(dec) * np.cos(ra), np.cos(dec) * np.sin(ra), np.sin(dec)], axis=-1)


def _separation_deg(a: tuple[float, float], b: tuple[float, float]) -> float:
    """Angular distance between two (ra, dec) positions, degrees (haversine: exact when small)."""
    ra1, dec1, ra2, dec2 = (math.radians(v) for v in (*a, *b))
    h = math.sin((dec2 - dec1) / 2) ** 2 + math.cos(dec1) * math.cos(dec2) * math.sin((ra2 - ra1) / 2) ** 2
    return math.degrees(2 * math.asin(min(1.0, math.sqrt(h))))


def footprint(header: Any, shape: Sequence[int]) -> tuple[tuple[float, float], float, tuple, float] | None:
    """The footprint of an image with this header and (…, ny, nx) ``shape``: (centre, circle
    radius, polygon, pixel scale), all degrees; None without a usable celestial WCS.

    The WCS is read as :func:`core.images.cutouts.image_wcs` reads it for cutting (stale SIP terms
    dropped as astrocut does), so the footprint is the one cutouts will see.
    """
    from astropy.wcs.utils import proj_plane_pixel_scales

    from core.images.cutouts import image_wcs
    from core.quiet import quiet

    ny, nx = int(shape[-2]), int(shape[-1])
    if nx < 1 or ny < 1:
        return None
    try:
        wcs, _ = image_wcs(header)
    except CutoutError:
        return None
    if not wcs.has_celestial:
        return None
    cel = wcs.celestial
    x0, x1, y0, y1 = -0.5, nx - 0.5, -0.5, ny - 0.5
    xm, ym = (nx - 1) / 2.0, (ny - 1) / 2.0
    xs = np.array([x0, xm, x1, x1, x1, xm, x0, x0, xm])
    ys = np.array([y0, y0, y0, ym, y1, y1, y1, ym, ym])  # eight points around, then the centre
    try:
        with quiet():
            ra, dec = cel.pixel_to_world_values(xs, ys)
            scales = proj_plane_pixel_scales(cel)
    except (ValueError, MemoryError, ArithmeticError):
        return None
    ra, dec = np.asarray(ra, dtype=float) % 360.0, np.asarray(dec, dtype=float)
    if not (np.all(np.isfinite(ra)) and np.all(np.isfinite(dec))):
        return None
    center = (float(ra[-1]), float(dec[-1]))
    polygon = tuple((float(r), float(d)) for r, d in zip(ra[:-1], dec[:-1]))
    radius = max(_separation_deg(center, p) for p in polygon) + _CIRCLE_MARGIN_DEG
    units = [str(u) or "deg" for u in cel.wcs.cunit]
    factor = [{"deg": 1.0, "arcmin": 1 / 60.0, "arcsec": 1 / 3600.0, "rad": math.degrees(1.0)}.get(u, 1.0) for u in units]
    scale = float(np.mean([abs(float(s)) * f for s, f in zip(scales[:2], factor)]))
    return center, radius, polygon, scale


def _entry(survey: str, uri: str, ext: int, shape: Sequence[int], fp: tuple) -> ImageEntry:
    center, radius, polygon, scale = fp
    plane: tuple[tuple[float, float], ...] = ()
    if radius <= MAX_POLYGON_RADIUS_DEG:
        points = [gnomonic(center, r, d) for r, d in polygon]
        if all(p is not None for p in points):
            plane = tuple(points)  # type: ignore[arg-type]
    return ImageEntry(survey, uri, ext, (int(shape[-2]), int(shape[-1])), center, radius, polygon, scale, plane)


def read_footprints(uri: str, survey: str, *, s3: Any = None) -> list[ImageEntry]:
    """The footprints of every image HDU with data and a celestial WCS in one file, from its
    headers alone (:func:`core.storage.range_file.open_fits` is lazy: no pixel data is read)."""
    hdul = range_file.open_fits(uri, s3=s3)
    try:
        found = []
        for ext, hdu in enumerate(hdul):
            if not hdu.is_image:
                continue
            shape = hdu.shape
            if len(shape) < 2 or min(shape) < 1:
                continue
            fp = footprint(hdu.header, shape)
            if fp is not None:
                found.append(_entry(survey, uri, ext, shape, fp))
        return found
    finally:
        hdul.close()


def _is_fits_name(name: str) -> bool:
    return name.lower().endswith(FITS_SUFFIXES)


def _local_files(root: str, skipped: list[tuple[str, str]] | None = None) -> Iterable[tuple[str, str]]:
    """(path, identity) of every regular FITS file under a local folder, in sorted order (links
    followed inside the folder only, each folder once: :func:`core.storage.walk.walk_files`;
    each file is still confined to its survey's locations before it is opened)."""
    for path, st in walk_files(root, match=_is_fits_name, skipped=skipped):
        yield path, f"{st.st_size}:{st.st_mtime_ns}"


def _s3_files(prefix: str, s3: Any) -> Iterable[tuple[str, str]]:
    from core.storage.s3 import list_objects

    for info in list_objects(prefix, s3=s3):
        if _is_fits_name(info.uri.rsplit("/", 1)[-1]):
            yield info.uri, f"{info.size}:{info.etag}"


def split_locations(locations: Sequence[str]) -> tuple[list[str], list[str]]:
    """(local folders, ``s3://`` prefixes) of a group's locations."""
    local = [loc for loc in locations if not is_s3_uri(loc)]
    return local, [loc for loc in locations if is_s3_uri(loc)]


class ImageIndex:
    """An immutable set of image footprints, grouped by survey, answering position queries
    from memory.

    Parameters
    ----------
    entries : the footprints, in the order queries return them (survey order, then file).
    surveys : every group's name, in registry order (also groups with no image).
    files : per (survey, uri), the identity and entries it was built from, or why it has none
        (for rebuilds).
    skipped : (uri, reason) of files found but not indexed.
    opened : how many files the build opened.
    """

    def __init__(self, entries: Sequence[ImageEntry] = (), *, surveys: Sequence[str] = (),
                 files: Mapping[tuple[str, str], _FileRecord] | None = None,
                 skipped: Sequence[tuple[str, str]] = (), opened: int = 0) -> None:
        self.entries: tuple[ImageEntry, ...] = tuple(entries)
        self.survey_names: tuple[str, ...] = tuple(dict.fromkeys([*surveys, *(e.survey for e in self.entries)]))
        self.files: dict[tuple[str, str], _FileRecord] = dict(files or {})
        self.skipped: list[tuple[str, str]] = list(skipped)
        self.opened = opened
        n = len(self.entries)
        self._units = _unit([e.center[0] for e in self.entries], [e.center[1] for e in self.entries]).reshape(n, 3)
        self._radii = np.radians(np.array([e.radius_deg for e in self.entries], dtype=float))

    # -- building ------------------------------------------------------------------------------
    @classmethod
    def build(cls, locations: Mapping[str, Sequence[str]], *, s3: Any = None, previous: ImageIndex | None = None,
              threads: int = 8, on_error: Callable[[str, str], None] | None = None) -> ImageIndex:
        """Index every FITS image under each survey's locations.

        Parameters
        ----------
        locations : mapping
            Survey name -> local folders and/or ``s3://bucket/prefix`` locations.
        s3 : core.storage.s3.S3Config, optional
            For ``s3://`` locations.
        previous : ImageIndex, optional
            An earlier index: files whose identity is unchanged keep their entries unopened.
        threads : int
            Files whose headers are read at once (S3 latency hides behind them).
        on_error : callable, optional
            ``on_error(location, reason)`` for a location that cannot be listed (default: logged).

        Returns
        -------
        ImageIndex
            Unreadable files, files without a usable image and files outside their survey's
            locations are listed in ``skipped``; a location that cannot be listed is logged
            and contributes nothing (the rest of the registry is still indexed).
        """
        old = previous.files if previous is not None else {}
        found: list[tuple[str, str, str]] = []  # (survey, uri, identity)
        skipped: list[tuple[str, str]] = []
        for survey, locs in locations.items():
            local, prefixes = split_locations(list(locs))
            seen: set[str] = set()
            for loc in locs:
                if not is_s3_uri(loc) and not os.path.isdir(loc):
                    (on_error or _log_location_error)(loc, "not a folder")
                    continue
                try:
                    listing = _s3_files(loc, s3) if is_s3_uri(loc) else _local_files(loc, skipped)
                    for uri, identity in listing:
                        try:
                            real = confine(uri, local, prefixes, field="survey")
                        except CutoutError as exc:
                            skipped.append((uri, exc.message))
                            continue
                        if real not in seen:
                            seen.add(real)
                            found.append((survey, real, identity))
                except CutoutError as exc:
                    (on_error or _log_location_error)(loc, exc.message)

        def read(item: tuple[str, str, str]) -> tuple[_FileRecord, bool]:
            survey, uri, identity = item
            record = old.get((survey, uri))
            if record is not None and record.identity == identity:
                return record, False
            try:
                entries = read_footprints(uri, survey, s3=s3)
            except CutoutError as exc:
                return _FileRecord(identity, (), exc.message), True
            except Exception as exc:  # noqa: BLE001 - one bad file must not stop the index
                return _FileRecord(identity, (), f"{type(exc).__name__}: {exc}"), True
            if not entries:
                return _FileRecord(identity, (), "no image HDU with data and a celestial WCS"), True
            return _FileRecord(identity, tuple(entries)), True

        if len(found) > 1 and threads > 1:
            with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="image-index") as pool:
                results = list(pool.map(read, found))
        else:
            results = [read(item) for item in found]
        files: dict[tuple[str, str], _FileRecord] = {}
        entries: list[ImageEntry] = []
        opened = 0
        for (survey, uri, _), (record, was_opened) in zip(found, results):
            opened += was_opened
            files[(survey, uri)] = record
            if record.reason is not None:
                skipped.append((uri, record.reason))
                if was_opened:
                    log.info("image index: skipped %s: %s", uri, record.reason)
            entries.extend(record.entries)
        return cls(entries, surveys=list(locations), files=files, skipped=skipped, opened=opened)

    # -- questions -----------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.entries)

    def surveys(self) -> list[str]:
        """Every survey's name, in registry order."""
        return list(self.survey_names)

    def containing(self, ra: float, dec: float, radius_deg: float = 0.0, *,
                   surveys: Iterable[str] | None = None) -> list[ImageEntry]:
        """The footprints holding (ra, dec) degrees, or within ``radius_deg`` of it, in index
        order (of ``surveys`` only, when given). Opens nothing."""
        if not self.entries:
            return []
        point = _unit(ra % 360.0, dec)
        reach = np.minimum(np.pi, self._radii + math.radians(max(0.0, radius_deg)))
        # a little slack on the cosine: the exact test below decides
        candidates = np.nonzero(self._units @ point >= np.cos(reach) - 1e-12)[0]
        wanted = set(surveys) if surveys is not None else None
        out = []
        for i in candidates:
            entry = self.entries[int(i)]
            if wanted is not None and entry.survey not in wanted:
                continue
            if entry.contains(ra % 360.0, dec, radius_deg):
                out.append(entry)
        return out

    def summary(self) -> dict[str, Any]:
        """Counts per survey, for health and logs."""
        per: dict[str, dict[str, int]] = {name: {"files": 0, "images": 0} for name in self.survey_names}
        for (survey, _), record in self.files.items():
            per[survey]["files"] += bool(record.entries)
        for entry in self.entries:
            per[entry.survey]["images"] += 1
        return {"surveys": per, "skipped": len(self.skipped)}


def _log_location_error(location: str, reason: str) -> None:
    log.warning("image index: cannot list %s: %s", location, reason)


def file_stem(uri: str) -> str:
    """A file's name without its FITS suffix (``x.fits.gz`` -> ``x``)."""
    base = uri.rstrip("/").rsplit("/", 1)[-1]
    return re.sub(r"\.(fits?|fts)(\.gz|\.fz)?$|\.fz$", "", base, flags=re.IGNORECASE) or base
