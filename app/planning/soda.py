"""Planning the IVOA SODA 1.0 service over the hosted cubes: ``{sync}``, VOSI, DataLink (no HTTP here).

SODA 1.0 (with DALI 1.1 and VOSI 1.1) as this server implements it:

- parameter names are case-insensitive; values are DALI's (numbers separated by blanks, ``-Inf`` and
  ``+Inf`` for open interval ends); empty values count as absent; unknown parameters are ignored
  (DALI 1.1).
- ``ID``: one hosted cube, by the sector name the TESScut ``sector`` route lists
  (``tess-s0038-2-2``). The name says the product: ``tess-`` is SPOC and ``tica-`` TICA (TESScut's
  TICA sector names), so the sector name is already product-qualified; ``SPOC:tess-s0038-2-2`` and
  ``TICA:tica-s0038-2-2`` are accepted too. Anything else is a 404 ``UsageError``.
- ``POS`` (``CIRCLE ra dec r``, ``RANGE ra1 ra2 dec1 dec2``, ``POLYGON ra1 dec1 ...``), ``CIRCLE``,
  ``POLYGON``: ICRS degrees, mapped to the smallest window of cube pixels holding the region (the
  pixels its outline, sampled densely along great circles, touches), cut down to the cube as SODA
  says ("reduction ... to the archived dataset size"), then checked against the server's cutout
  limits (413 ``UsageError``). No region is the whole cube, which the limits refuse.
- ``TIME``: an MJD interval in UTC (DALI's default scale), converted to BTJD (TDB) with
  astropy.time; the cadences kept are the frames whose exposure (TSTART..TSTOP) overlaps it. The
  reference position is unknown (DALI), so no barycentric correction is applied: the two differ by
  at most ~8.3 minutes, less than half of a 20-minute frame.
- ``BAND`` (metres) must reach TESS's band pass (600-1000 nm) and ``POL`` include ``I``; either
  missing the data is "no overlap".
- ``RESPONSEFORMAT``: ``application/fits`` (default; also ``fits``) or ``application/zip`` (also
  ``zip``), the TPF alone or in a zip; anything else is a 400 ``UsageError``.
- ``FRAME_BIN`` (custom, described by the DataLink descriptor): average that many frames into each
  cadence (see :mod:`core.cubes.frames`).
- Several values of ``ID``, of ``TIME``, of ``BAND`` or of the region (``POS``, ``CIRCLE`` and
  ``POLYGON`` together) are a 400 ``MultiValuedParamNotSupported``: one sync request makes one
  cutout.
- No overlap between the region, time, band or polarization and the cube is HTTP 204 with no body
  (SODA 1.0 section 5.1, DALI): a :class:`~.answers.NoData` here.
- Errors (400, 404, 413, 503...) are ``text/plain`` starting with the SODA error name
  (``app.errors``, :data:`app.errors.DALI_NAMES`).

The answer is the cube's target pixel file (:mod:`core.tpf.cut`) of that window and those
cadences, made later as the ``astrocut`` route's members are (in memory, or streamed in bounded
pieces).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any
from xml.sax.saxutils import escape, quoteattr

import numpy as np

from app.planning.answers import CutoutStats, FileStreamAnswer, NoData, Planner, ZipAnswer, lookup_cost
from app.planning.context import Context
from app.planning.tesscut import member_name, tpf_member
from core.catalog.snapshot import CubeRecord
from core.cubes.frames import TimeWindow
from core.errors import InvalidInputError, NotFoundError
from core.geometry import CutoutGeometry, Window
from core.product import Product
from core.tpf.cut import estimate_tpf_bytes, tpf_nbytes

__all__ = [
    "SODA_SYNC_ID",
    "SYNC",
    "MultiValuedParamNotSupported",
    "Region",
    "SodaRequest",
    "availability_xml",
    "capabilities_xml",
    "links_votable",
    "parse_soda",
    "plan_soda",
]

SODA_SYNC_ID = "ivo://ivoa.net/std/SODA#sync-1.0"
#: MJD = BTJD + this (BTJD = JD - 2457000, MJD = JD - 2400000.5)
MJD_MINUS_BTJD = 2457000.0 - 2400000.5
#: TESS's band pass, metres
TESS_BAND_M = (6.0e-7, 1.0e-6)
#: points sampled along each edge of a region's outline
_EDGE_SAMPLES = 64
#: the parameters this service reads (upper case)
KNOWN = ("ID", "POS", "CIRCLE", "POLYGON", "TIME", "BAND", "POL", "RESPONSEFORMAT", "FRAME_BIN")
_FORMATS = {"application/fits": "fits", "fits": "fits", "image/fits": "fits", "application/zip": "zip",
            "zip": "zip"}
_ID = re.compile(r"^(?:(spoc|tica):)?(tess|tica)-s(\d{4})-([1-4])-([1-4])$", re.IGNORECASE)


class MultiValuedParamNotSupported(InvalidInputError):  # SODA's error name, not ...Error
    """A parameter given several times that this service takes once (SODA's error of that name)."""

    dali_name = "MultiValuedParamNotSupported"


@dataclass(frozen=True)
class Region:
    """A SODA region: ``kind`` (CIRCLE, RANGE or POLYGON), its numbers, and the parameter named."""

    kind: str
    values: tuple[float, ...]
    field: str

    def outline(self) -> tuple[np.ndarray, np.ndarray]:
        """ICRS (ra, dec) degrees along the region's outline, densely sampled."""
        if self.kind == "CIRCLE":
            ra, dec, r = self.values
            angles = np.linspace(0.0, 2 * np.pi, 4 * _EDGE_SAMPLES, endpoint=False)
            return _offset(ra, dec, r, angles)
        if self.kind == "POLYGON":
            pairs = np.asarray(self.values, float).reshape(-1, 2)
            vectors = _unit(pairs[:, 0], pairs[:, 1])
            edges = [_great_circle(vectors[i], vectors[(i + 1) % len(vectors)]) for i in range(len(vectors))]
            return _radec(np.concatenate(edges))
        ra1, span, dec1, dec2 = _range_box(self.values)
        ras = ra1 + np.linspace(0.0, span, _EDGE_SAMPLES)
        decs = np.linspace(dec1, dec2, _EDGE_SAMPLES)
        ra = np.concatenate([ras, np.full(_EDGE_SAMPLES, ra1 + span), ras, np.full(_EDGE_SAMPLES, ra1)])
        dec = np.concatenate([np.full(_EDGE_SAMPLES, dec1), decs, np.full(_EDGE_SAMPLES, dec2), decs])
        return ra % 360.0, dec

    def centre(self) -> tuple[float, float]:
        """A centre for the TPF's RA_OBJ/DEC_OBJ: the circle's, the range's middle, or the
        polygon's mean vertex direction."""
        if self.kind == "CIRCLE":
            return self.values[0] % 360.0, self.values[1]
        if self.kind == "RANGE":
            ra1, span, dec1, dec2 = _range_box(self.values)
            return (ra1 + span / 2) % 360.0, (dec1 + dec2) / 2
        pairs = np.asarray(self.values, float).reshape(-1, 2)
        v = _unit(pairs[:, 0], pairs[:, 1]).sum(axis=0)
        (ra_c,), (dec_c,) = _radec(v[None, :])
        return float(ra_c), float(dec_c)

    def contains(self, ra: np.ndarray, dec: np.ndarray) -> np.ndarray:
        """Which ICRS (ra, dec) degree positions lie in the region."""
        ra, dec = np.asarray(ra, float), np.asarray(dec, float)
        if self.kind == "CIRCLE":
            c_ra, c_dec, r = self.values
            return _unit(ra, dec) @ _unit(c_ra, c_dec) >= math.cos(math.radians(r))
        if self.kind == "RANGE":
            ra1, span, dec1, dec2 = _range_box(self.values)
            return (dec >= dec1) & (dec <= dec2) & ((ra - ra1) % 360.0 <= span)
        from core.sky_polygon import gnomonic, in_polygon, plane_polygon

        centre = self.centre()
        pairs = list(zip(self.values[::2], self.values[1::2], strict=True))
        polygon = plane_polygon(centre, pairs)
        if polygon is None:
            raise InvalidInputError(f"{self.field}: a polygon must lie within 90 degrees of its centre",
                                    field=self.field)
        out = np.zeros(ra.shape, dtype=bool)
        for i, (r, d) in enumerate(zip(ra.tolist(), dec.tolist(), strict=True)):
            point = gnomonic(centre, r, d)
            out[i] = point is not None and in_polygon(point, polygon)
        return out


def _unit(ra: Any, dec: Any) -> np.ndarray:
    ra, dec = np.radians(np.asarray(ra, float)), np.radians(np.asarray(dec, float))
    return np.stack([np.cos(dec) * np.cos(ra), np.cos(dec) * np.sin(ra), np.sin(dec)], axis=-1)


def _radec(v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    ra = np.degrees(np.arctan2(v[:, 1], v[:, 0])) % 360.0
    dec = np.degrees(np.arcsin(np.clip(v[:, 2] / np.linalg.norm(v, axis=1), -1.0, 1.0)))
    return ra, dec


def _great_circle(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    t = np.linspace(0.0, 1.0, _EDGE_SAMPLES)[:, None]
    return (1 - t) * a + t * b  # directions along the chord: _radec normalises them onto the arc


def _offset(ra: float, dec: float, r: float, angles: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Points at angular distance ``r`` degrees from (ra, dec) in the directions ``angles``."""
    d1, r1, rr = math.radians(dec), math.radians(ra), math.radians(r)
    sin_d = math.sin(d1) * math.cos(rr) + math.cos(d1) * math.sin(rr) * np.cos(angles)
    dec2 = np.arcsin(np.clip(sin_d, -1.0, 1.0))
    ra2 = r1 + np.arctan2(np.sin(angles) * math.sin(rr) * math.cos(d1), math.cos(rr) - math.sin(d1) * sin_d)
    return np.degrees(ra2) % 360.0, np.degrees(dec2)


def _range_box(values: tuple[float, ...]) -> tuple[float, float, float, float]:
    """A RANGE as (first RA, RA span, dec1, dec2), open ends closed at the sky's limits."""
    ra1, ra2, dec1, dec2 = values
    if not (math.isfinite(ra1) and math.isfinite(ra2)) or ra2 - ra1 >= 360.0:
        ra1, span = 0.0, 360.0
    else:
        ra1, span = ra1 % 360.0, ra2 - ra1
    return ra1, span, max(dec1, -90.0), min(dec2, 90.0)


@dataclass(frozen=True)
class SodaRequest:
    """A parsed SODA request (see the module docstring)."""

    id: str
    region: Region | None = None
    time: tuple[float, float] | None = None  # MJD, UTC
    band: tuple[float, float] | None = None  # metres
    pol: tuple[str, ...] = ()
    response_format: str = "fits"
    frame_bin: int = 1


def _numbers(text: str, name: str, *, allow_inf: bool = False) -> list[float]:
    values = []
    for part in text.replace(",", " ").split():
        try:
            number = float(part)
        except ValueError:
            raise InvalidInputError(f"{name}: {part[:30]!r} is not a number", field=name) from None
        if math.isnan(number) or (math.isinf(number) and not allow_inf):
            raise InvalidInputError(f"{name}: {part[:30]!r} is not a finite number", field=name)
        values.append(number)
    return values


def _circle(text: str, name: str) -> Region:
    values = _numbers(text, name)
    if len(values) != 3:
        raise InvalidInputError(f"{name} takes three numbers (ra dec radius, degrees), not {len(values)}", field=name)
    ra, dec, r = values
    _check_radec(ra, dec, name)
    if not 0 <= r <= 90:
        raise InvalidInputError(f"{name}: the radius must lie in [0, 90] degrees, not {r:g}", field=name)
    return Region("CIRCLE", (ra, dec, r), name)


def _polygon(text: str, name: str) -> Region:
    values = _numbers(text, name)
    if len(values) < 6 or len(values) % 2:
        raise InvalidInputError(f"{name} takes at least three (ra, dec) pairs, degrees", field=name)
    for ra, dec in zip(values[::2], values[1::2], strict=True):
        _check_radec(ra, dec, name)
    return Region("POLYGON", tuple(values), name)


def _range(text: str, name: str) -> Region:
    values = _numbers(text, name, allow_inf=True)
    if len(values) != 4:
        raise InvalidInputError(f"{name} RANGE takes four numbers (ra1 ra2 dec1 dec2), not {len(values)}", field=name)
    ra1, ra2, dec1, dec2 = values
    if dec1 > dec2 or (math.isfinite(ra1) and math.isfinite(ra2) and ra1 > ra2):
        raise InvalidInputError(f"{name}: RANGE limits must be in increasing order", field=name)
    if (math.isfinite(dec1) and not -90 <= dec1 <= 90) or (math.isfinite(dec2) and not -90 <= dec2 <= 90):
        raise InvalidInputError(f"{name}: declinations must lie in [-90, 90] degrees", field=name)
    for ra in (ra1, ra2):
        if math.isfinite(ra) and not -180 <= ra <= 360:
            raise InvalidInputError(f"{name}: right ascensions must lie in [-180, 360] degrees", field=name)
    return Region("RANGE", (ra1, ra2, dec1, dec2), name)


def _check_radec(ra: float, dec: float, name: str) -> None:
    if not (-180 <= ra <= 360 and -90 <= dec <= 90):
        raise InvalidInputError(f"{name}: RA must lie in [-180, 360] and Dec in [-90, 90] degrees", field=name)


def _pos(text: str) -> Region:
    shape, _, rest = text.strip().partition(" ")
    kind = shape.upper()
    if kind == "CIRCLE":
        return _circle(rest, "POS")
    if kind == "POLYGON":
        return _polygon(rest, "POS")
    if kind == "RANGE":
        return _range(rest, "POS")
    raise InvalidInputError(f"POS must start with CIRCLE, RANGE or POLYGON, not {shape[:20]!r}", field="POS")


def _interval(text: str, name: str) -> tuple[float, float]:
    values = _numbers(text, name, allow_inf=True)
    if len(values) != 2:
        raise InvalidInputError(f"{name} takes an interval of two numbers, not {len(values)}", field=name)
    if values[0] > values[1]:
        raise InvalidInputError(f"{name}: the interval's lower limit is above its upper limit", field=name)
    return values[0], values[1]


def parse_soda(pairs: Iterable[tuple[str, str]]) -> SodaRequest:
    """Read a SODA request from its (name, value) pairs (query string or form, in order).

    Raises
    ------
    InvalidInputError
        A missing ``ID`` or a bad value (``UsageError``), naming the parameter.
    MultiValuedParamNotSupported
        Several values of a parameter taken once.
    """
    values: dict[str, list[str]] = {}
    for name, value in pairs:
        key = str(name).strip().upper()
        text = str(value).strip()
        if key in KNOWN and text:
            values.setdefault(key, []).append(text)
    for key in ("ID", "TIME", "BAND", "RESPONSEFORMAT", "FRAME_BIN"):
        if len(values.get(key, ())) > 1:
            raise MultiValuedParamNotSupported(f"{key} takes one value per request here", field=key)
    regions = [(k, v) for k in ("POS", "CIRCLE", "POLYGON") for v in values.get(k, ())]
    if len(regions) > 1:
        raise MultiValuedParamNotSupported("one region (POS, CIRCLE or POLYGON) per request here", field=regions[1][0])
    if "ID" not in values:
        raise InvalidInputError("ID is required: a hosted cube's sector name, e.g. tess-s0038-2-2", field="ID")
    region = None
    if regions:
        key, text = regions[0]
        region = _pos(text) if key == "POS" else _circle(text, key) if key == "CIRCLE" else _polygon(text, key)
    fmt = values.get("RESPONSEFORMAT", ["application/fits"])[0]
    if fmt.lower() not in _FORMATS:
        raise InvalidInputError(f"RESPONSEFORMAT {fmt[:40]!r} is not served: use application/fits or "
                                "application/zip", field="RESPONSEFORMAT")
    frame_bin = 1
    if "FRAME_BIN" in values:
        text = values["FRAME_BIN"][0]
        if not re.fullmatch(r"\+?[0-9]{1,9}", text) or int(text) < 1:
            raise InvalidInputError(f"FRAME_BIN must be a whole number >= 1, not {text[:20]!r}", field="FRAME_BIN")
        frame_bin = int(text)
    return SodaRequest(
        id=values["ID"][0], region=region,
        time=_interval(values["TIME"][0], "TIME") if "TIME" in values else None,
        band=_interval(values["BAND"][0], "BAND") if "BAND" in values else None,
        pol=tuple(p.upper() for v in values.get("POL", ()) for p in v.split()),
        response_format=_FORMATS[fmt.lower()], frame_bin=frame_bin,
    )


def find_cube(ctx: Context, dataset_id: str) -> CubeRecord:
    """The hosted cube named by a SODA ``ID`` (see the module docstring).

    Raises
    ------
    NotFoundError
        No hosted cube has that name (``field="ID"``).
    """
    m = _ID.match(dataset_id.strip())
    if m:
        qualifier, prefix, sector, camera, ccd = m.groups()
        product = next(p for p in Product if p.prefix == prefix.lower())
        if qualifier is None or Product.parse(qualifier) is product:
            record = ctx.catalog.get(int(sector), int(camera), int(ccd), product)
            if record is not None:
                return record
    raise NotFoundError(f"no hosted cube has the ID {dataset_id[:60]!r}; the sector route lists them "
                        "(e.g. tess-s0038-2-2)", field="ID")


def mjd_to_btjd(mjd_utc: float) -> float:
    """An MJD in UTC as BTJD (BJD - 2457000) in TDB, via astropy.time; infinities stay infinite."""
    if not math.isfinite(mjd_utc):
        return mjd_utc
    from astropy.time import Time

    from core.quiet import quiet

    with quiet():  # ERFA's "dubious year" past its leap-second table
        return float(Time(mjd_utc, format="mjd", scale="utc").tdb.jd) - 2457000.0


def btjd_to_mjd(btjd: float) -> float:
    """The inverse of :func:`mjd_to_btjd` (BTJD in TDB -> MJD in UTC)."""
    from astropy.time import Time

    from core.quiet import quiet

    with quiet():
        return float(Time(btjd + 2457000.0, format="jd", scale="tdb").utc.mjd)


def _time_window(cube: Any, interval: tuple[float, float] | None, frame_bin: int) -> TimeWindow | None:
    """The frames whose exposure overlaps the MJD (UTC) ``interval``, as a window on their
    mid-exposure times; None when no frame does."""
    frames = cube.frames
    if interval is None:
        return TimeWindow(frame_bin=frame_bin)
    lo, hi = (mjd_to_btjd(v) for v in interval)
    start = np.asarray(frames.start if frames.start is not None else frames.time, float)
    stop = np.asarray(frames.stop if frames.stop is not None else frames.time, float)
    hit = np.flatnonzero((stop >= lo) & (start <= hi))
    if not hit.size:
        return None
    times = np.asarray(frames.time, float)
    return TimeWindow(float(times[hit[0]]), float(times[hit[-1]]), frame_bin)


#: regions whose outline stays within this many degrees of a cube's centre are placed by projecting
#: the outline into the cube's pixels; larger ones by testing a grid of the cube's pixels
_OUTLINE_REACH_DEG = 30.0
#: pixels between the grid points tested for a large region
_GRID_STEP = 16


def _pixel_window(cube: Any, region: Region | None) -> tuple[Window, float, float]:
    """The smallest window of cube pixels holding ``region``, cut to the cube (empty when they do
    not overlap), and the TPF's centre (RA_OBJ, DEC_OBJ).

    A region near the cube (its outline within :data:`_OUTLINE_REACH_DEG` of the cube's centre) is
    placed exactly: its outline, sampled densely, is projected through the cube's TAN-SIP WCS and
    the window is the pixels its bounding box touches. A larger one (a band of declination, a
    wide circle) is placed by testing which points of a grid of the cube's pixels (every
    :data:`_GRID_STEP`) it holds: the window is their box grown by a step, so it may be up to a
    step wider than the smallest.
    """
    full = Window(0, cube.nx, 0, cube.ny)
    if region is None:
        (ra,), (dec,) = cube.wcs.all_pix2world([cube.nx / 2 - 0.5], [cube.ny / 2 - 0.5], 0)
        return full, float(ra) % 360.0, float(dec)
    ra_c, dec_c = region.centre()
    ra, dec = region.outline()
    centre = _unit(*cube.info.center)
    from core.quiet import quiet

    if np.all(_unit(ra, dec) @ centre >= math.cos(math.radians(_OUTLINE_REACH_DEG))):
        with quiet():
            x, y = cube.wcs.all_world2pix(ra, dec, 0, quiet=True)
        x, y = np.asarray(x, float), np.asarray(y, float)
        if np.isfinite(x).all() and np.isfinite(y).all():
            win = Window(math.floor(x.min() + 0.5), math.floor(x.max() + 0.5) + 1,
                         math.floor(y.min() + 0.5), math.floor(y.max() + 0.5) + 1)
            return win.clip(cube.nx, cube.ny), ra_c, dec_c
    xs = np.unique(np.r_[np.arange(0, cube.nx, _GRID_STEP), cube.nx - 1])
    ys = np.unique(np.r_[np.arange(0, cube.ny, _GRID_STEP), cube.ny - 1])
    gx, gy = np.meshgrid(xs, ys)
    with quiet():
        g_ra, g_dec = cube.wcs.all_pix2world(gx.ravel(), gy.ravel(), 0)
    inside = region.contains(g_ra, g_dec)
    if not inside.any():
        return Window(0, 0, 0, 0), ra_c, dec_c
    px, py = gx.ravel()[inside], gy.ravel()[inside]
    win = Window(int(px.min()) - _GRID_STEP, int(px.max()) + _GRID_STEP + 1,
                 int(py.min()) - _GRID_STEP, int(py.max()) + _GRID_STEP + 1)
    return win.clip(cube.nx, cube.ny), ra_c, dec_c


def _overlaps_band(band: tuple[float, float] | None) -> bool:
    return band is None or (band[0] <= TESS_BAND_M[1] and band[1] >= TESS_BAND_M[0])


def plan_soda(ctx: Context, req: SodaRequest) -> NoData | FileStreamAnswer | ZipAnswer:
    """The TPF of the request's cube, region and cadences (see the module docstring), or
    :class:`NoData` (HTTP 204) when they do not overlap.

    Raises
    ------
    NotFoundError
        The ID names no hosted cube.
    InvalidInputError
        ``FRAME_BIN`` larger than the cadences in ``TIME``.
    TooLargeError
        The region's window exceeds the cutout limits.
    """
    record = find_cube(ctx, req.id)
    product = record.product
    if not _overlaps_band(req.band) or (req.pol and "I" not in req.pol):
        return NoData("the band or polarization asked for is not in TESS data", product, status=204)
    cube = ctx.catalog.open(record)
    window = _time_window(cube, req.time, req.frame_bin)
    if window is None:
        return NoData("no frame of the cube overlaps TIME", product, status=204)
    try:
        frames = window.resolve(cube.time)
    except InvalidInputError as exc:
        exc.field = "FRAME_BIN" if exc.field == "frame_bin" else exc.field
        raise
    frames = None if frames.is_full else frames
    win, ra, dec = _pixel_window(cube, req.region)
    if win.empty:
        return NoData("the region does not overlap the cube", product, status=204)
    read = cube.nframes if frames is None else frames.ncadences * frames.frame_bin
    rows = cube.nframes if frames is None else frames.ncadences
    where = req.region.field if req.region is not None else "POS"
    ctx.limits.check(win.nx, win.ny, read, bytes_needed=estimate_tpf_bytes(win.nx, win.ny, rows),
                     field_x=where, field_y=where)
    x, y = (win.x0 + win.x1 - 1) / 2, (win.y0 + win.y1 - 1) / 2
    geo = CutoutGeometry(ra=ra, dec=dec, x=x, y=y, window=win, inside=win)
    member = tpf_member(ctx, record, cube, geo, tpf_nbytes(cube, win.nx, win.ny, frames), frames)
    stats = CutoutStats(win.nx, win.ny, rows, 1)
    if req.response_format == "zip":
        stem = member_name(record, ra, dec, win.nx, win.ny, frames)[: -len(".fits")]
        return ZipAnswer(f"{stem}.zip", [member], stats)
    return FileStreamAnswer(member, "application/fits", stats)


# -- VOSI and DataLink ---------------------------------------------------------------------------

_VOSI_CAP = "http://www.ivoa.net/xml/VOSICapabilities/v1.0"
_VOSI_AVAIL = "http://www.ivoa.net/xml/VOSIAvailability/v1.0"
_VOD = "http://www.ivoa.net/xml/VODataService/v1.1"
_XSI = "http://www.w3.org/2001/XMLSchema-instance"


def capabilities_xml(base: str) -> bytes:
    """The VOSI capabilities document of the SODA service whose resources are under ``base``
    (``http://host/soda``): VOSI capabilities and availability, SODA sync."""
    caps = (("ivo://ivoa.net/std/VOSI#capabilities", "capabilities", ""),
            ("ivo://ivoa.net/std/VOSI#availability", "availability", ""),
            (SODA_SYNC_ID, "sync", ' role="std"'))
    body = "".join(
        f'  <capability standardID="{sid}">\n'
        f'    <interface xsi:type="vod:ParamHTTP"{role} version="1.0">\n'
        f'      <accessURL use="full">{escape(base)}/{name}</accessURL>\n'
        "    </interface>\n  </capability>\n"
        for sid, name, role in caps)
    return (f'<?xml version="1.0" encoding="UTF-8"?>\n<vosi:capabilities xmlns:vosi="{_VOSI_CAP}" '
            f'xmlns:xsi="{_XSI}" xmlns:vod="{_VOD}">\n{body}</vosi:capabilities>\n').encode()


def availability_xml(available: bool, note: str) -> bytes:
    """The VOSI availability document."""
    return (f'<?xml version="1.0" encoding="UTF-8"?>\n<vosi:availability xmlns:vosi="{_VOSI_AVAIL}">\n'
            f"  <vosi:available>{'true' if available else 'false'}</vosi:available>\n"
            f"  <vosi:note>{escape(note)}</vosi:note>\n</vosi:availability>\n").encode()


def _param(name: str, datatype: str, arraysize: str, ucd: str, description: str, *, value: str = "",
           unit: str = "", xtype: str = "", values: str = "") -> str:
    attrs = f'name="{name}" datatype="{datatype}" arraysize="{arraysize}" ucd="{ucd}" value={quoteattr(value)}'
    attrs += f' unit="{unit}"' if unit else ""
    attrs += f' xtype="{xtype}"' if xtype else ""
    inner = f"<DESCRIPTION>{escape(description)}</DESCRIPTION>{values}"
    return f"        <PARAM {attrs}>{inner}</PARAM>\n"


def links_votable(ctx: Context, dataset_id: str, sync_url: str) -> bytes:
    """The DataLink ``{links}`` VOTable of one hosted cube: a ``#cutout`` row whose service
    descriptor points at the SODA sync endpoint with the cube's parameter ranges (its footprint,
    its time span in MJD UTC, TESS's band, frames per cadence), so a DataLink client (pyvo) can
    build the SODA query itself.

    Raises
    ------
    NotFoundError
        No hosted cube has that ID.
    """
    record = find_cube(ctx, dataset_id)
    info = ctx.catalog.geometry(record).info
    corners = " ".join(f"{ra!r} {dec!r}" for ra, dec in info.footprint)
    reach = f"{info.center[0]!r} {info.center[1]!r} {info.reach_deg!r}"
    t0, t1 = btjd_to_mjd(float(record.tstart)), btjd_to_mjd(float(record.tstop))
    params = "".join([
        _param("ID", "char", "*", "meta.ref.url;meta.curation", "The hosted cube (a sector name)",
               value=record.sector_name),
        _param("POS", "char", "*", "pos.outline;obs", "Region to cut out: CIRCLE, RANGE or POLYGON (ICRS degrees)"),
        _param("CIRCLE", "double", "3", "pos.outline;obs", "A circle the cutout should hold", unit="deg",
               xtype="circle", values=f'<VALUES><MAX value="{reach}"/></VALUES>'),
        _param("POLYGON", "double", "*", "pos.outline;obs", "A polygon the cutout should hold", unit="deg",
               xtype="polygon", values=f'<VALUES><MAX value="{corners}"/></VALUES>'),
        _param("TIME", "double", "2", "time.interval;obs.exposure", "Time interval to keep, MJD (UTC)", unit="d",
               xtype="interval", values=f'<VALUES><MIN value="{t0!r}"/><MAX value="{t1!r}"/></VALUES>'),
        _param("BAND", "double", "2", "em.wl;stat.interval", "Wavelength interval (TESS: one band)", unit="m",
               xtype="interval",
               values=f'<VALUES><MIN value="{TESS_BAND_M[0]!r}"/><MAX value="{TESS_BAND_M[1]!r}"/></VALUES>'),
        _param("FRAME_BIN", "int", "1", "meta.number", "Frames averaged into each cadence (custom)",
               values=f'<VALUES><MIN value="1"/><MAX value="{int(record.nframes)}"/></VALUES>'),
        _param("RESPONSEFORMAT", "char", "*", "meta.code.mime", "application/fits (default) or application/zip"),
    ])
    row = "".join(f"<TD>{escape(v)}</TD>" for v in (record.sector_name, "", "soda-sync", "", "#cutout",
                                                    "A cutout (target pixel file) of this cube",
                                                    "application/fits"))
    fields = "".join(
        f'      <FIELD name="{n}" datatype="char" arraysize="*" ucd="{u}"{" ID=" + quoteattr(i) if i else ""}/>\n'
        for n, u, i in (("ID", "meta.id;meta.main", "idcol"), ("access_url", "meta.ref.url", ""),
                        ("service_def", "meta.ref", ""), ("error_message", "meta.code.error", ""),
                        ("semantics", "meta.code", ""), ("description", "meta.note", ""),
                        ("content_type", "meta.code.mime", "")))
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<VOTABLE xmlns="http://www.ivoa.net/xml/VOTable/v1.3" version="1.3">\n'
        '  <RESOURCE type="results">\n    <TABLE>\n'
        f"{fields}      <DATA><TABLEDATA><TR>{row}</TR></TABLEDATA></DATA>\n    </TABLE>\n  </RESOURCE>\n"
        '  <RESOURCE type="meta" utype="adhoc:service" ID="soda-sync">\n'
        f'    <PARAM name="standardID" datatype="char" arraysize="*" value="{SODA_SYNC_ID}"/>\n'
        f'    <PARAM name="accessURL" datatype="char" arraysize="*" value={quoteattr(sync_url)}/>\n'
        f'    <GROUP name="inputParams">\n{params}    </GROUP>\n  </RESOURCE>\n</VOTABLE>\n'
    ).encode()


#: the sync endpoint's work (the region's window is bounded by the limits when planned)
SYNC = Planner(plan_soda, lookup_cost)  # the TPF is admitted as it is made
