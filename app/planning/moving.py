"""Planning the moving-target routes: ``moving_target/sector`` and ``moving_target/astrocut``.

A target's path comes from the request's ``ephemeris`` (JSON lists ``time``, ``ra``, ``dec``; times
in TJD or ISO) or from the configured resolver. For each hosted cube whose frames and pixels the
path crosses, the footprint TPFs along the path are cut in memory and
:func:`core.moving_target.center_on_path` centres one TPF on the target; nothing is written to disk.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from app.params.requests import MovingTargetCutParams, MovingTargetSectorParams
from app.planning.answers import Cost, CutoutStats, NoData, Planner, ZipAnswer, ZipMember
from app.planning.context import Context, api_fields, check_pixel_size, safe_name
from core.catalog.snapshot import CubeRecord
from core.cubes.frames import TimeWindow
from core.cutout_size import CutoutSize
from core.errors import InvalidInputError, NoDataError

__all__ = ["MOVING_ASTROCUT", "MOVING_FIELDS", "MOVING_SECTOR", "covering", "parse_path", "plan_moving_astrocut",
           "plan_moving_sector"]

#: the engine's parameter names -> the API's
MOVING_FIELDS = {"path": "ephemeris", "coordinates": "ephemeris", "cutout_size": "x", "cutout_size.y": "y",
                 "size": "x"}
#: days of margin around a cube's time span when selecting path points
PATH_MARGIN_D = 1.0
#: largest footprint TPF along a path, in pixels (footprints are merged up to this)
FOOTPRINT_PIXELS = 10_000


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def parse_path(data: dict[str, list[Any]]) -> Any:
    """The path as an astropy Table (``time`` Time, ``position`` SkyCoord), sorted in time.

    Times are all numbers (TJD, BTJD days) or all ISO strings; RA/Dec finite degrees (RA within
    [-180, 360], |Dec| <= 90). Booleans are not numbers here.
    """
    from astropy.coordinates import SkyCoord
    from astropy.table import Table
    from astropy.time import Time

    try:
        times_in, ra_in, dec_in = list(data["time"]), list(data["ra"]), list(data["dec"])
        if not (len(times_in) == len(ra_in) == len(dec_in)) or len(times_in) < 2:
            raise ValueError("time, ra and dec must be lists of one length, at least 2")
        if not all(_is_number(v) for v in ra_in + dec_in):
            raise ValueError("ra and dec must be numbers (degrees)")
        if all(_is_number(t) for t in times_in):
            times = Time(np.asarray(times_in, dtype=float) + 2457000.0, format="jd", scale="tdb")
        elif all(isinstance(t, str) for t in times_in):
            times = Time([str(t) for t in times_in], scale="utc")
        else:
            raise ValueError("times must be all numbers (TJD) or all ISO strings")
        ra = np.asarray(ra_in, dtype=float)
        dec = np.asarray(dec_in, dtype=float)
    except (KeyError, TypeError, ValueError) as exc:
        raise InvalidInputError(f"cannot read the ephemeris: {exc}", field="ephemeris") from None
    if not (np.all(np.isfinite(ra)) and np.all(np.isfinite(dec)) and np.all(np.isfinite(times.jd))):
        raise InvalidInputError("ephemeris values must be finite", field="ephemeris")
    if np.any(np.abs(dec) > 90) or np.any((ra < -180) | (ra > 360)):
        raise InvalidInputError("ephemeris ra must lie in [-180, 360] and |dec| <= 90 degrees", field="ephemeris")
    order = np.argsort(times.jd)
    return Table({"time": times[order], "position": SkyCoord(ra[order] % 360, dec[order], unit="deg")})


def _path_on(ctx: Context, record: CubeRecord, path: Any) -> Any | None:
    """The part of ``path`` during ``record``'s frames that falls on its pixels, or None."""
    tjd = path["time"].tdb.jd - 2457000.0
    t0, t1 = record.tstart, record.tstop
    if not (math.isfinite(t0) and math.isfinite(t1)):
        return None
    inside = (tjd >= t0 - PATH_MARGIN_D) & (tjd <= t1 + PATH_MARGIN_D)
    if inside.sum() < 2:
        return None
    part = path[inside]
    geometry = ctx.catalog.geometry(record)
    if not any(geometry.contains_radec(float(p.ra.deg), float(p.dec.deg)) for p in part["position"]):
        return None
    return part


def covering(ctx: Context, path: Any, product: str, sectors: Sequence[int]) -> list[tuple[CubeRecord, Any]]:
    """The hosted cubes a path crosses during their frames, with the part of the path on each."""
    wanted = set(sectors)
    out = []
    for record in ctx.catalog.entries(product):
        if wanted and record.sector not in wanted:
            continue
        part = _path_on(ctx, record, path)
        if part is not None:
            out.append((record, part))
    return out


def _resolve(ctx: Context, obj_id: str | None, obj_type: str | None, ephemeris: dict | None) -> Any:
    if ephemeris is not None:
        return parse_path(ephemeris)
    return parse_path(ctx.resolver(obj_id or "", obj_type))


def plan_moving_sector(ctx: Context, p: MovingTargetSectorParams) -> dict[str, Any]:
    """The hosted sectors whose cubes the path crosses."""
    from app.planning.tesscut import sector_result

    with api_fields(MOVING_FIELDS):
        path = _resolve(ctx, p.obj_id, p.obj_type, p.ephemeris)
        results = [sector_result(r) for r, _ in covering(ctx, path, p.product, [])]
    if not results:
        return {"results": [], "msg": "The path crosses no hosted cube."}
    return {"results": results}


def object_card(obj_id: str | None) -> str | None:
    """The target's name as a FITS OBJECT card can hold it: accents dropped, other non-ASCII
    characters as ``?`` (the resolver still gets the original)."""
    if not obj_id:
        return None
    import unicodedata

    text = unicodedata.normalize("NFKD", obj_id)
    return "".join(c if 32 <= ord(c) < 127 else ("" if unicodedata.combining(c) else "?") for c in text)


def _moving_tpf(ctx: Context, record: CubeRecord, part: Any, size: CutoutSize,
                target: str | None, window: TimeWindow | None = None) -> tuple[str, bytes] | None:
    """Footprint TPFs along the path, cut in memory from one cube and read one at a time, centred
    on the path; returns the member's name and bytes, or None when the path (or the time window)
    has no data here."""
    import copy

    from core.moving_target import center_on_path, moving_filename, path_to_footprints
    from core.tpf.cut import build_tpf, tpf_bytes

    cube = ctx.catalog.open(record)
    try:
        frames = None if window is None or window.is_default else window.resolve(cube.time)
    except NoDataError:
        return None
    read = cube.nframes if frames is None else frames.ncadences * frames.frame_bin
    rows = cube.nframes if frames is None else frames.ncadences
    nx, ny = (max(1, round(v)) for v in size.pixels(cube.pixel_scales))
    ctx.limits.check(nx, ny, read, field_x="x", field_y="y")
    wcs = copy.deepcopy(cube.wcs)
    wcs.pixel_shape = (cube.nx, cube.ny)
    # each footprint TPF (all its cadences) stays within the in-memory size, and is made only when read
    per_pixel = rows * 20
    max_pixels = max(nx * ny, min(FOOTPRINT_PIXELS, ctx.inline_tpf_bytes // per_pixel))
    try:
        footprints = path_to_footprints(part["position"], [nx, ny], wcs, max_pixels=max_pixels)
    except NoDataError:
        return None

    def maker(fp: dict[str, Any]) -> Any:
        fp_ny, fp_nx = fp["size"]
        ctx.limits.check(fp_nx, fp_ny, read, field_x="x", field_y="y")
        return lambda: build_tpf(cube, fp["coordinates"], [fp_nx, fp_ny], frames=frames)

    try:
        out = center_on_path(part, [nx, ny], [maker(fp) for fp in footprints], target=target,
                             memory_only=True, verbose=False)
    except NoDataError:
        return None
    tstart, tstop = out[0].header["TSTART"], out[0].header["TSTOP"]
    name = f"{record.sector_name}_{moving_filename(safe_name(target or 'path'), tstart, tstop, (nx, ny))}"
    return name, tpf_bytes(out)


def plan_moving_astrocut(ctx: Context, p: MovingTargetCutParams) -> NoData | ZipAnswer:
    """TPFs centred on a moving target's path, one per hosted cube it crosses (with frames in the
    time window, if given), in a zip."""
    from app.planning.tesscut import in_window, no_data

    obj_id, product, sectors, size, window = p.obj_id, p.product, p.sectors, p.size, p.time_window
    with api_fields(MOVING_FIELDS):
        path = _resolve(ctx, obj_id, p.obj_type, p.ephemeris)
        crossed = covering(ctx, path, product, sectors)
        reachable = {r.uri for r in in_window([r for r, _ in crossed], window)}
        crossed = [(r, part) for r, part in crossed if r.uri in reachable]
        if not crossed:
            return no_data(ctx, "The path crosses no hosted cube" + (" in the requested sectors." if sectors else "."),
                           product)
        target = object_card(obj_id)
        made: list[tuple[str, bytes]] = []
        frames = 0
        for record, part in crossed:
            member = _moving_tpf(ctx, record, part, size, target, window)
            if member is None:
                continue
            frames += record.nframes
            made.append(member)
    if not made:
        return no_data(ctx, "The path has no data on any hosted cube.", product)
    px = size.whole_pixels() or (0, 0)
    members = [ZipMember(name, (lambda cancel, d=data: d), len(data), memory_bytes=len(data)) for name, data in made]
    name = safe_name(obj_id or "path")
    return ZipAnswer(f"astrocut_{name}_{p.size_label}.zip", members, CutoutStats(px[0], px[1], frames, len(members)))


def _moving_cost(ctx: Context, p: MovingTargetCutParams) -> Cost:
    # the footprint TPFs are cut in memory while planning: admitted first, at the in-memory bound
    check_pixel_size(ctx, p.size)
    return Cost(2 * ctx.inline_tpf_bytes)


MOVING_SECTOR = Planner(plan_moving_sector)
MOVING_ASTROCUT = Planner(plan_moving_astrocut, _moving_cost)
