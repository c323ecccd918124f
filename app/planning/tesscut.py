"""Planning the TESScut routes: ``sector``, ``astrocut`` and ``ffi_wcs`` (no HTTP here).

"No data" (a position on no hosted cube, a sector not hosted or missing the position, a time
window on none of their frames) is a :class:`~.answers.NoData`, which the TESScut routes answer
with HTTP 200 and ``{"msg", "results": []}``: astroquery and lightkurve check "is this a zip?" and
otherwise read ``msg``.

A time window and a frame binning (:class:`core.cubes.frames.TimeWindow`, an extension over
TESScut, :class:`app.params.groups.TimeWindowGroup`) come as one typed value; the default window
changes nothing.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from app.params.requests import AstrocutParams, FfiWcsParams, SectorParams
from app.params.values import first_values
from app.planning.answers import Cost, CutoutStats, NoData, Planner, ZipAnswer, ZipMember, lookup_cost
from app.planning.context import Context, api_fields, check_pixel_size
from core.catalog.snapshot import CubeRecord
from core.cubes.frames import TimeWindow
from core.cutout_size import CutoutSize
from core.errors import NoDataError, NotFoundError
from core.product import Product
from core.tpf.cut import cut_bytes, locate, tpf_filename, tpf_nbytes

__all__ = [
    "ASTROCUT",
    "FFI_WCS",
    "SECTOR",
    "TESSCUT_FIELDS",
    "cutout_members",
    "in_window",
    "member_name",
    "no_data",
    "plan_astrocut",
    "plan_ffi_wcs",
    "plan_sector",
    "select",
    "tpf_member",
    "zip_name",
]

#: the engine's parameter names -> the TESScut API's
TESSCUT_FIELDS = {"coordinates": "ra", "cutout_size": "x", "cutout_size.y": "y"}
#: pieces below this many bytes are read on the calling thread: starting read threads costs more
_THREADED_READ_BYTES = 4 * 1024 * 1024


def sector_result(record: CubeRecord) -> dict[str, str]:
    """The TESScut ``sector`` result row (all strings, sector zero-padded)."""
    return {"sectorName": record.sector_name, "sector": f"{record.sector:04d}", "camera": str(record.camera),
            "ccd": str(record.ccd)}


def plan_sector(ctx: Context, p: SectorParams) -> dict[str, Any]:
    """The hosted sectors/cameras/CCDs whose pixels (grown by the radius) contain the position."""
    results = [sector_result(r) for r in ctx.catalog.containing(p.ra360, p.dec, p.radius_deg, product=p.product)]
    if not results:
        return {"results": [], "msg": "The position is on no hosted cube."}
    return {"results": results}


def no_data(ctx: Context, message: str, product: Product) -> NoData:
    """TESScut's "no data" answer, listing the sectors hosted for ``product``."""
    return NoData(message, product, hosted=ctx.catalog.sectors(product))


def select(ctx: Context, ra: float, dec: float, product: Product, sectors: Sequence[int]) -> list[CubeRecord] | NoData:
    """The hosted cubes of ``product`` containing ICRS (ra, dec) degrees (in ``sectors`` if given),
    or why there are none (naming a few of the sectors asked for, then how many more)."""
    catalog = ctx.catalog
    if sectors:
        hosted = set(catalog.sectors(product))
        if not any(s in hosted for s in sectors):
            return no_data(ctx, f"Sector {first_values(sectors)} is not hosted on this server for product "
                                f"{product}.", product)
    ra = ra % 360.0
    records = catalog.containing(ra, dec, 0.0, product=product, sectors=sectors or None)
    if not records:
        where = f" in sector {first_values(sectors)}" if sectors else ""
        return no_data(ctx, f"The position RA {ra:.6f} Dec {dec:.6f} is on no hosted {product} cube{where}.",
                       product)
    return records


def member_name(record: CubeRecord, ra: float, dec: float, nx: int, ny: int, frames: Any = None) -> str:
    """The legacy TESScut member name, built from sectorName (SPOC and TICA cubes alike); a TPF of
    some frames says which (:func:`core.tpf.cut.tpf_filename`)."""
    return tpf_filename(f"{record.sector_name}-cube.fits", ra, dec, nx, ny, frames)


def in_window(records: Sequence[CubeRecord], window: TimeWindow | None) -> list[CubeRecord]:
    """The records whose time span the window can reach (all of them without a window)."""
    if window is None or window.is_default:
        return list(records)
    return [r for r in records if window.overlaps(float(r.tstart), float(r.tstop))]


def cutout_members(ctx: Context, records: Sequence[CubeRecord], ra: float, dec: float, size: CutoutSize,
                   window: TimeWindow | None = None) -> tuple[list[ZipMember], CutoutStats | None]:
    """One zip member per cube: each window placed and checked against the limits now (so a
    limit answers 413 before anything is sent), each TPF made later, in memory or streamed. A
    cube whose frames miss the time ``window`` has no member."""
    members: list[ZipMember] = []
    nframes = 0
    first: tuple[int, int] | None = None
    coordinates = f"{ra % 360.0!r} {dec!r}"
    for record, cube in zip(records, ctx.catalog.open_many(records)):  # opened concurrently
        if isinstance(cube, BaseException):
            raise cube  # the first failure, in sector order, as when the cubes were opened in turn
        try:
            frames = None if window is None or window.is_default else window.resolve(cube.time)
            geo = locate(cube, coordinates, size, limits=ctx.limits, frames=frames)
        except NoDataError:
            continue  # no frame in the window (or off this cube's array: cannot happen)
        win = geo.window
        nbytes = tpf_nbytes(cube, win.nx, win.ny, frames)
        nframes += cube.nframes if frames is None else frames.ncadences
        first = first or (win.nx, win.ny)
        members.append(tpf_member(ctx, record, cube, geo, nbytes, frames))
    stats = CutoutStats(first[0], first[1], nframes, len(members)) if first else None
    return members, stats


def tpf_member(ctx: Context, record: CubeRecord, cube: Any, geo: Any, nbytes: int, frames: Any = None) -> ZipMember:
    """The zip member of one located cut (of ``frames`` only, if given): made in memory when it
    is at most ``ctx.inline_tpf_bytes``, else streamed in bounded pieces."""
    win, ins = geo.window, geo.inside
    name = member_name(record, geo.ra, geo.dec, win.nx, win.ny, frames)
    read = cube.nframes if frames is None else frames.ncadences * frames.frame_bin
    pixel_bytes = ins.nx * ins.ny * read * cube.nplanes * 4
    threads = ctx.read_threads if pixel_bytes >= _THREADED_READ_BYTES else None
    if nbytes <= ctx.inline_tpf_bytes:
        def build(cancel: Any) -> memoryview:
            return cut_bytes(cube, geo, threads, frames).data  # a memoryview: zipped without another copy

        # the file, the pixel block read into it, and the zip's chunk of it
        return ZipMember(name, build, nbytes, False, memory_bytes=nbytes + pixel_bytes + (1 << 20))
    from core.tpf.stream import TpfStream

    stream_probe = TpfStream(cube, geo, work_dir=ctx.work_dir, band_bytes=ctx.band_bytes, threads=threads,
                             frames=frames)

    def build_streamed(cancel: Any) -> Any:
        stream = TpfStream(cube, geo, work_dir=ctx.work_dir, band_bytes=ctx.band_bytes, threads=threads,
                           cancel=cancel, frames=frames)
        return stream.chunks()

    return ZipMember(name, build_streamed, nbytes, True, memory_bytes=stream_probe.memory_bytes + (2 << 20),
                     disk_bytes=stream_probe.spool_bytes)


def _bound(value: float | None) -> str:
    return "open" if value is None else f"{value:.6f}"


def zip_name(ra: float, dec: float, label: str) -> str:
    return f"astrocut_{ra % 360.0:.6f}_{dec:.6f}_{label}.zip"


def plan_astrocut(ctx: Context, p: AstrocutParams) -> NoData | ZipAnswer:
    """TPFs around a position, one per hosted sector/camera/CCD containing it (and, with a time
    window, having frames in it), as a zip."""
    window = p.time_window
    with api_fields(TESSCUT_FIELDS):
        selected = select(ctx, p.ra, p.dec, p.product, p.sectors)
        if isinstance(selected, NoData):
            return selected
        members, stats = cutout_members(ctx, in_window(selected, window), p.ra, p.dec, p.size, window)
    if not members:
        if not window.is_default:
            return no_data(ctx, f"The time window [{_bound(window.time_min)}, {_bound(window.time_max)}] (BTJD) "
                                "holds no frame of the hosted cubes with this position.", p.product)
        return no_data(ctx, "The cutout has no data on any hosted cube.", p.product)
    return ZipAnswer(zip_name(p.ra, p.dec, p.size_label), members, stats)


def plan_ffi_wcs(ctx: Context, p: FfiWcsParams) -> dict[str, Any]:
    """The reference WCS of a sector/camera/CCD: the hosted cube's, else tesswcs' archived
    solution, else 404 naming ``sector``."""
    sector, camera, ccd = p.sector, p.camera, p.ccd
    record = ctx.catalog.get(sector, camera, ccd, p.product)
    if record is not None:
        header = ctx.catalog.geometry(record).wcs.to_header(relax=True)
        source = "cube"
    else:
        from core.tess_wcs import archived_wcs

        try:
            header = archived_wcs(sector, camera, ccd).to_header(relax=True)
        except NotFoundError:
            raise NotFoundError(
                f"no WCS for sector {sector}: not hosted here and not in tesswcs' archived solutions",
                field="sector",
            ) from None
        source = "tesswcs"
    return {"wcs": {k: _json_value(v) for k, v in header.items()}, "source": source}


def _json_value(value: Any) -> Any:
    if isinstance(value, (bool, int, str)) or value is None:
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    return str(value)


#: what planning an astrocut request holds: per cube a layout (headers, slot indexes) and a stream's plan
_PLANNING_BYTES = 8 * 1024 * 1024


def astrocut_cost(ctx: Context, p: AstrocutParams) -> Cost:
    """Planning places a window on each cube (headers and a plan per cube, small); the TPFs are made
    when the zip is sent, admitted at what they hold. A side over ``max_cutout_side`` on any cube is
    refused first."""
    check_pixel_size(ctx, p.size)
    return Cost(_PLANNING_BYTES)


SECTOR = Planner(plan_sector, lookup_cost)
ASTROCUT = Planner(plan_astrocut, astrocut_cost)
FFI_WCS = Planner(plan_ffi_wcs, lookup_cost)
