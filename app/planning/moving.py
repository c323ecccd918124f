"""Planning the moving-target routes: ``moving_target/sector`` and ``moving_target/astrocut``.

A target's path comes from the request's ``ephemeris`` (JSON lists ``time``, ``ra``, ``dec``; times
in TJD or ISO) or from the configured resolver. For each hosted cube whose frames and pixels the
path crosses, one TPF centred on the target is planned from the path and the cube's per-frame
columns (:mod:`core.tpf.moving_stream`) and streamed from the cube when the zip is sent, in
bounded memory; nothing is written to disk.
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


def _moving_member(ctx: Context, record: CubeRecord, part: Any, size: CutoutSize, target: str | None,
                   window: TimeWindow | None = None) -> tuple[ZipMember, int] | None:
    """The zip member of the TPF centred on the path on one cube, and its cadences; None when the
    path (or the time window) has no data there. Nothing is read but the cube's per-frame columns
    and a 1 x 1 TPF for the headers: the member is streamed from the cube when the zip is sent,
    holding about one band (:mod:`core.tpf.moving_stream`), and admitted at what it holds."""
    from core.moving_target import moving_filename
    from core.tpf.moving_stream import MovingTpfStream, plan_moving_tpf

    cube = ctx.catalog.open(record)
    try:
        frames = None if window is None or window.is_default else window.resolve(cube.time)
    except NoDataError:
        return None
    read = cube.nframes if frames is None else frames.ncadences * frames.frame_bin
    nx, ny = (max(1, round(v)) for v in size.pixels(cube.pixel_scales))
    ctx.limits.check(nx, ny, read, field_x="x", field_y="y")
    plan = plan_moving_tpf(cube, part, (nx, ny), frames=frames, target=target, band_bytes=ctx.band_bytes)
    if plan is None:
        return None
    threads = ctx.read_threads

    def build(cancel: Any) -> Any:
        return MovingTpfStream(plan, threads=threads, cancel=cancel).chunks()

    name = f"{record.sector_name}_{moving_filename(safe_name(target or 'path'), plan.tstart, plan.tstop, (nx, ny))}"
    return ZipMember(name, build, plan.nbytes, True, memory_bytes=plan.memory_bytes + (2 << 20)), plan.rows


def plan_moving_astrocut(ctx: Context, p: MovingTargetCutParams) -> NoData | ZipAnswer:
    """TPFs centred on a moving target's path, one per hosted cube it crosses (with frames in the
    time window, if given), in a zip whose members are streamed."""
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
        ctx.catalog.open_many([r for r, _ in crossed])  # the path's cubes opened together (errors: below, in turn)
        members: list[ZipMember] = []
        frames = 0
        for record, part in crossed:
            made = _moving_member(ctx, record, part, size, target, window)
            if made is None:
                continue
            members.append(made[0])
            frames += made[1]
    if not members:
        return no_data(ctx, "The path has no data on any hosted cube.", product)
    px = size.whole_pixels() or (0, 0)
    name = safe_name(obj_id or "path")
    return ZipAnswer(f"astrocut_{name}_{p.size_label}.zip", members, CutoutStats(px[0], px[1], frames, len(members)))


#: what planning holds per path point (the parsed path, its spline, the part on each cube)
_PATH_POINT_BYTES = 2048


def _moving_cost(ctx: Context, p: MovingTargetCutParams) -> Cost:
    """Planning holds the path and, per cube, one value per cadence (the TPFs are streamed later,
    each admitted at what it holds). A pixel size beyond the side limit is refused first."""
    check_pixel_size(ctx, p.size)
    points = len(p.ephemeris["time"]) if p.ephemeris else 10_000
    return Cost(points * _PATH_POINT_BYTES + (16 << 20))


def _path_cost(ctx: Context, p: MovingTargetSectorParams) -> Cost:
    """Planning holds the parsed path (bounded by the ephemeris' length at parse time)."""
    points = len(p.ephemeris["time"]) if p.ephemeris else 10_000
    return Cost(points * _PATH_POINT_BYTES + (4 << 20))


MOVING_SECTOR = Planner(plan_moving_sector, _path_cost)
MOVING_ASTROCUT = Planner(plan_moving_astrocut, _moving_cost)
