"""TESScut API v0.1: ``sector``, ``astrocut``, ``ffi_wcs`` and ``moving_target/*``.

Mounted at both ``/tesscut/api/v0.1`` (where astroquery looks) and ``/api/v0.1`` (how MAST's docs
write paths). Every route answers GET (query string) and POST (form), as TESScut does.

"No data" (a position on no hosted cube, a sector not hosted or missing the position) answers
HTTP 200 with ``{"msg": ..., "results": []}`` rather than 404: astroquery and lightkurve check
"is this a zip?" and otherwise read ``msg``; any other body or status makes them fail.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Annotated, Any

import numpy as np
from astropy.coordinates import SkyCoord
from fastapi import APIRouter, Depends, Form, Query
from fastapi.responses import JSONResponse

from app.catalog import CubeEntry
from app.dependencies import Services, get_services
from app.params import (
    ERROR_RESPONSES,
    AstrocutParams,
    FfiWcsParams,
    FfiWcsResponse,
    MovingTargetCutParams,
    MovingTargetSectorParams,
    NoDataResponse,
    SectorParams,
    SectorResponse,
    _SizeMixin,
)
from app.streaming import MemberMaker, file_response, zip_bytes, zip_response
from core.errors import InvalidInputError, NoDataError, NotFoundError, TooLargeError
from core.geometry import PixelSize, check_side, parse_cutout_size

__all__ = ["no_data", "pixel_size", "router"]

log = logging.getLogger("app.tesscut")

router = APIRouter(tags=["TESScut"], responses=ERROR_RESPONSES)

ServicesDep = Annotated[Services, Depends(get_services)]

_ZIP_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "A zip of target pixel files (streamed), or JSON `{msg, results: []}` when "
        "there is no data.",
        "content": {
            "application/zip": {"schema": {"type": "string", "format": "binary"}},
            "application/json": {"schema": NoDataResponse.model_json_schema()},
        },
    }
}


# ------------------------------------------------------------------------------------------
# helpers (plain functions; the blocking ones run on the worker pool)
# ------------------------------------------------------------------------------------------


def no_data(message: str, services: Services, product: str) -> JSONResponse:
    """The TESScut "no data" answer: HTTP 200, ``msg``, empty ``results``, the hosted sectors."""
    hosted = services.catalog.sectors(product)
    listing = ", ".join(str(s) for s in hosted) or "none"
    body = NoDataResponse(
        msg=f"{message} Hosted {product} sectors: {listing}.", results=[], hosted_sectors=hosted
    )
    return JSONResponse(body.model_dump())


def pixel_size(params: _SizeMixin, wcs: Any, max_side: int) -> PixelSize:
    """The request's x/y (pixels or angles) in whole pixels for a cube's WCS, field-named errors."""
    whole = params.whole_pixels()
    if whole is not None:  # x, y > 0 (validated), so >= 1
        check_side(whole[0], max_side, "x")
        check_side(whole[1], max_side, "y")
        return PixelSize(nx=whole[0], ny=whole[1])
    qx, qy = params.size_quantities()
    nx = parse_cutout_size(qx, wcs, max_side=max_side, field="x").nx
    ny = parse_cutout_size(qy, wcs, max_side=max_side, field="y").ny
    return PixelSize(nx=nx, ny=ny)


def _check_volume(size: PixelSize, nframes: int, limit: int) -> None:
    volume = size.nx * size.ny * nframes
    if volume > limit:
        raise TooLargeError(
            f"a {size.nx}x{size.ny} cutout of {nframes} frames is {volume} pixel-frames, over the limit "
            f"of {limit}",
            field="x",
        )


#: below this many bytes of pixels a cutout is read on the calling thread: starting read threads
#: costs more (~5 ms) than reading a few small rows
_THREADED_READ_BYTES = 4 * 1024 * 1024


def _member_name(entry: CubeEntry, ra: float, dec: float, nx: int, ny: int) -> str:
    from core.tpf import tpf_filename

    # Built from sectorName so SPOC and TICA cubes (whatever their file names) name members alike.
    return tpf_filename(f"{entry.sector_name}-cube.fits", ra, dec, nx, ny)


def _make_tpf(
    entry: CubeEntry, size: Any, ra: float, dec: float, threads: int
) -> tuple[str, bytes | memoryview] | None:
    """Build one TPF (on a worker); None when the cutout has no data on this cube.

    ``size`` is the request's ``[x, y]`` (x first): ints for whole pixels, else Quantities
    (pixels or angles), which the engine turns into pixels as astrocut does. Takes the engine's bytes path (``locate`` +
    ``cut_bytes``, the same bytes ``build_tpf`` wraps) rather than an HDUList: parsing the headers
    back with astropy cost several times the cut itself.
    """
    from core.tpf import cut_bytes, locate

    try:
        # locate's fast path: plain "ra dec" degrees (ICRS) skip astropy's SkyCoord machinery
        geo = locate(entry.cube, f"{ra % 360.0!r} {dec!r}", size)
    except NoDataError as exc:
        log.info("no data on %s: %s", entry.sector_name, exc)
        return None
    win = geo.window  # the TPF's own shape (angular sizes are rounded by the engine, as astrocut does)
    if win.nx * win.ny * entry.nframes * 8 < _THREADED_READ_BYTES:
        threads = 1
    data = cut_bytes(entry.cube, geo, threads).data  # a memoryview: zipped without another copy
    return _member_name(entry, ra, dec, win.nx, win.ny), data


def _select(
    services: Services, ra: float, dec: float, product: str, sectors: list[int]
) -> tuple[list[CubeEntry], str | None]:
    """Hosted cubes of ``product`` containing ICRS (ra, dec) degrees (in ``sectors`` if given), or
    a no-data reason. Plain floats: a SkyCoord per request cost ~0.25 ms, the cut ~0.5 ms."""
    catalog = services.catalog
    hosted = set(catalog.sectors(product))
    if sectors:
        missing = [s for s in sectors if s not in hosted]
        if len(missing) == len(sectors):
            listed = ", ".join(str(s) for s in missing)
            return [], f"Sector {listed} is not hosted on this server for product {product}."
    ra = ra % 360.0
    entries = catalog.containing((ra, dec), 0.0, product, sectors or None)
    if not entries:
        where = f" in sector {', '.join(str(s) for s in sectors)}" if sectors else ""
        return [], (
            f"The position RA {ra:.6f} Dec {dec:.6f} is on no hosted {product} cube{where}."
        )
    return entries, None


def _plan_cutouts(
    services: Services, params: Any, ra: float, dec: float, entries: list[CubeEntry]
) -> tuple[tuple[str, bytes] | None, list[Callable[[], tuple[str, bytes] | None]]]:
    """Check every cutout's size up front (so errors answer 4xx), build the first TPF, and return it
    with the makers of the others (built later, while streaming)."""
    settings = services.settings
    jobs: list[tuple[CubeEntry, Any]] = []
    whole = params.whole_pixels()  # plain ints take the engine's fast path
    request_size = list(whole) if whole is not None else list(params.size_quantities())
    for entry in entries:
        size = pixel_size(params, entry.cube.wcs, settings.max_cutout_side)
        _check_volume(size, entry.nframes, settings.max_cutout_volume)
        jobs.append((entry, request_size))
    first: tuple[str, bytes | memoryview] | None = None
    while jobs and first is None:
        entry, size = jobs.pop(0)
        first = _make_tpf(entry, size, ra, dec, settings.read_threads)
    makers = [
        (lambda e=e, s=s: _make_tpf(e, s, ra, dec, settings.read_threads)) for e, s in jobs
    ]
    return first, makers


#: zips estimated under this size are built whole in the planning call and sent in one piece;
#: larger ones are streamed a member at a time
_INLINE_ZIP_BYTES = 8 * 1024 * 1024


def _zip_of(services: Services, first: tuple[str, bytes | memoryview], makers: list[Any], filename: str) -> Any:
    def members() -> Iterator[MemberMaker]:
        yield lambda: first
        yield from makers

    return zip_response(services.pool, members(), filename)


def _zip_name(params: Any, ra: float, dec: float) -> str:
    return f"astrocut_{ra:.6f}_{dec:.6f}_{params.size_label()}.zip"


# ------------------------------------------------------------------------------------------
# sector
# ------------------------------------------------------------------------------------------


async def _sector(services: Services, p: SectorParams) -> Any:
    entries = await services.pool.run(services.catalog.containing, (p.ra, p.dec), p.radius_angle(), p.product)
    results = [e.as_result() for e in entries]
    if not results:
        return {"results": [], "msg": "The position is on no hosted cube."}
    return {"results": results}


@router.get("/sector", response_model=SectorResponse, response_model_exclude_none=True)
async def sector_get(p: Annotated[SectorParams, Query()], services: ServicesDep) -> Any:
    """Hosted sectors/cameras/CCDs whose pixels (grown by `radius`) contain the position."""
    return await _sector(services, p)


@router.post("/sector", response_model=SectorResponse, response_model_exclude_none=True)
async def sector_post(p: Annotated[SectorParams, Form()], services: ServicesDep) -> Any:
    """As GET, with a form body (what astroquery sends)."""
    return await _sector(services, p)


# ------------------------------------------------------------------------------------------
# astrocut
# ------------------------------------------------------------------------------------------


async def _astrocut(services: Services, p: AstrocutParams) -> Any:
    def plan() -> Any:
        entries, reason = _select(services, p.ra, p.dec, p.product, p.sectors())
        if reason:
            return reason
        first, makers = _plan_cutouts(services, p, p.ra, p.dec, entries)
        if first is None:
            return "The cutout has no data on any hosted cube."
        if len(first[1]) * (1 + len(makers)) <= _INLINE_ZIP_BYTES:
            return zip_bytes([lambda: first, *makers])  # small: the whole zip in this one call
        return first, makers

    planned = await services.pool.run(plan)
    if isinstance(planned, str):
        return no_data(planned, services, p.product)
    if isinstance(planned, bytes):
        return file_response(planned, "application/zip", _zip_name(p, p.ra, p.dec))
    first, makers = planned
    return _zip_of(services, first, makers, _zip_name(p, p.ra, p.dec))


@router.get("/astrocut", response_class=JSONResponse, responses=_ZIP_RESPONSES)
async def astrocut_get(p: Annotated[AstrocutParams, Query()], services: ServicesDep) -> Any:
    """Target pixel files around a position, one per sector/camera/CCD, streamed as a zip."""
    return await _astrocut(services, p)


@router.post("/astrocut", response_class=JSONResponse, responses=_ZIP_RESPONSES)
async def astrocut_post(p: Annotated[AstrocutParams, Form()], services: ServicesDep) -> Any:
    """As GET, with a form body (what astroquery's get_cutouts sends)."""
    return await _astrocut(services, p)


# ------------------------------------------------------------------------------------------
# ffi_wcs
# ------------------------------------------------------------------------------------------


def _json_value(value: Any) -> Any:
    if isinstance(value, (bool, int, str)) or value is None:
        return value
    if isinstance(value, float):
        return value if np.isfinite(value) else str(value)
    return str(value)


def _ffi_wcs(services: Services, p: FfiWcsParams) -> dict[str, Any]:
    entry = services.catalog.get(p.sector, p.camera, p.ccd, p.product)
    if entry is not None:
        header = entry.cube.wcs.to_header(relax=True)
        source = "cube"
    else:
        header = _tesswcs_header(p.sector, p.camera, p.ccd)
        source = "tesswcs"
    return {"wcs": {k: _json_value(v) for k, v in header.items()}, "source": source}


def _tesswcs_header(sector: int, camera: int, ccd: int) -> Any:
    """tesswcs' archived solution for an unhosted sector (as ``tesswcs.WCS.from_sector``), else 404."""
    from core.tess_wcs import archived_wcs

    try:
        return archived_wcs(sector, camera, ccd).to_header(relax=True)
    except NotFoundError:
        raise NotFoundError(
            f"no WCS for sector {sector}: not hosted here and not in tesswcs' archived solutions",
            field="sector",
        ) from None


@router.get("/ffi_wcs", response_model=FfiWcsResponse)
async def ffi_wcs_get(p: Annotated[FfiWcsParams, Query()], services: ServicesDep) -> Any:
    """The reference WCS of a sector/camera/CCD (hosted cube, else tesswcs' fitted WCS, else 404)."""
    return await services.pool.run(_ffi_wcs, services, p)


@router.post("/ffi_wcs", response_model=FfiWcsResponse)
async def ffi_wcs_post(p: Annotated[FfiWcsParams, Form()], services: ServicesDep) -> Any:
    """As GET, with a form body."""
    return await services.pool.run(_ffi_wcs, services, p)


# ------------------------------------------------------------------------------------------
# moving targets
# ------------------------------------------------------------------------------------------

#: days of margin around a cube's time span when selecting path points
_PATH_MARGIN_D = 1.0


def _path(services: Services, obj_id: str | None, obj_type: str | None, ephemeris: dict | None) -> Any:
    """The target's path as an astropy Table (``time`` Time, ``position`` SkyCoord)."""
    from astropy.table import Table
    from astropy.time import Time

    data = ephemeris if ephemeris is not None else services.resolver(obj_id or "", obj_type)
    try:
        times_in = list(data["time"])
        if all(isinstance(t, (int, float)) for t in times_in):
            times = Time(np.asarray(times_in, dtype=float) + 2457000.0, format="jd", scale="tdb")
        else:
            times = Time([str(t) for t in times_in], scale="utc")
        ra = np.asarray(data["ra"], dtype=float)
        dec = np.asarray(data["dec"], dtype=float)
    except (KeyError, TypeError, ValueError) as exc:
        raise InvalidInputError(f"cannot read the ephemeris: {exc}", field="ephemeris") from None
    if not (np.all(np.isfinite(ra)) and np.all(np.isfinite(dec))) or np.any(np.abs(dec) > 90):
        raise InvalidInputError("ephemeris ra/dec must be finite degrees, |dec| <= 90", field="ephemeris")
    order = np.argsort(times.jd)
    return Table({"time": times[order], "position": SkyCoord(ra[order] % 360, dec[order], unit="deg")})


def _path_on(entry: CubeEntry, path: Any) -> Any | None:
    """The part of ``path`` during ``entry``'s frames that falls on its pixels, or None."""
    tjd = path["time"].tdb.jd - 2457000.0
    cube_t = np.asarray(entry.cube.time, dtype=float)
    cube_t = cube_t[np.isfinite(cube_t)]
    if cube_t.size == 0:
        return None
    inside = (tjd >= cube_t.min() - _PATH_MARGIN_D) & (tjd <= cube_t.max() + _PATH_MARGIN_D)
    if inside.sum() < 2:
        return None
    part = path[inside]
    if not any(entry.contains(pos) for pos in part["position"]):
        return None
    return part


def _covering(services: Services, path: Any, product: str, sectors: list[int]) -> list[tuple[CubeEntry, Any]]:
    wanted = set(sectors)
    out = []
    for entry in services.catalog.entries(product):
        if wanted and entry.sector not in wanted:
            continue
        part = _path_on(entry, path)
        if part is not None:
            out.append((entry, part))
    return out


def _moving_tpf(
    services: Services, entry: CubeEntry, part: Any, size: PixelSize, target: str | None
) -> tuple[str, bytes] | None:
    """Cut footprint TPFs along the path from one cube, then centre on the path (on a worker)."""
    import copy
    import shutil
    import tempfile

    from astropy.io import fits

    from core.moving_target import center_on_path, path_to_footprints
    from core.tpf import build_tpf, tpf_bytes

    settings = services.settings
    wcs = copy.deepcopy(entry.cube.wcs)
    wcs.pixel_shape = (entry.nx, entry.ny)
    try:
        footprints = path_to_footprints(part["position"], [size.nx, size.ny], wcs, max_pixels=max(10000, size.nx * size.ny))
    except NoDataError:
        return None
    settings.work_dir.mkdir(parents=True, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix="mt-", dir=settings.work_dir)
    try:
        files = []
        for i, fp in enumerate(footprints):
            ny_fp, nx_fp = fp["size"]
            fp_size = PixelSize(nx=int(nx_fp), ny=int(ny_fp))
            _check_volume(fp_size, entry.nframes, settings.max_cutout_volume)
            try:
                hdul = build_tpf(entry.cube, fp["coordinates"], [fp_size.nx, fp_size.ny], threads=settings.read_threads)
            except NoDataError:
                continue
            path_i = f"{tmp}/fp{i}.fits"
            with open(path_i, "wb") as fh:
                fh.write(tpf_bytes(hdul))
            files.append(path_i)
        if not files:
            return None
        try:
            out = center_on_path(part, [size.nx, size.ny], files, target=target, output_path=tmp, verbose=False)
        except NoDataError:
            return None
        with fits.open(out) as check:  # a sanity read: a broken TPF must not reach the client
            check.verify("silentfix")
        with open(out, "rb") as fh:
            data = fh.read()
        return f"{entry.sector_name}_{out.rsplit('/', 1)[-1]}", data
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


async def _mt_sector(services: Services, p: MovingTargetSectorParams) -> Any:
    def work() -> list[dict[str, str]]:
        path = _path(services, p.obj_id, p.obj_type, p.ephemeris_dict())
        return [e.as_result() for e, _ in _covering(services, path, p.product, [])]

    results = await services.pool.run(work)
    if not results:
        return {"results": [], "msg": "The path crosses no hosted cube."}
    return {"results": results}


@router.get("/moving_target/sector", response_model=SectorResponse, response_model_exclude_none=True)
async def mt_sector_get(p: Annotated[MovingTargetSectorParams, Query()], services: ServicesDep) -> Any:
    """Hosted sectors whose cubes a moving target crosses (`obj_id` needs a resolver; or give
    `ephemeris`)."""
    return await _mt_sector(services, p)


@router.post("/moving_target/sector", response_model=SectorResponse, response_model_exclude_none=True)
async def mt_sector_post(p: Annotated[MovingTargetSectorParams, Form()], services: ServicesDep) -> Any:
    """As GET, with a form body."""
    return await _mt_sector(services, p)


async def _mt_astrocut(services: Services, p: MovingTargetCutParams) -> Any:
    settings = services.settings

    def plan() -> Any:
        path = _path(services, p.obj_id, p.obj_type, p.ephemeris_dict())
        covering = _covering(services, path, p.product, p.sectors())
        if not covering:
            return "The path crosses no hosted cube" + (" in the requested sectors." if p.sectors() else ".")
        jobs = []
        for entry, part in covering:
            size = pixel_size(p, entry.cube.wcs, settings.max_cutout_side)
            _check_volume(size, entry.nframes, settings.max_cutout_volume)
            jobs.append((entry, part, size))
        first = None
        while jobs and first is None:
            entry, part, size = jobs.pop(0)
            first = _moving_tpf(services, entry, part, size, p.obj_id)
        if first is None:
            return "The path has no data on any hosted cube."
        makers = [(lambda e=e, pt=pt, s=s: _moving_tpf(services, e, pt, s, p.obj_id)) for e, pt, s in jobs]
        return first, makers

    planned = await services.pool.run(plan)
    if isinstance(planned, str):
        return no_data(planned, services, p.product)
    first, makers = planned
    name = (p.obj_id or "path").replace("/", "-").replace(" ", "_")
    return _zip_of(services, first, makers, f"astrocut_{name}_{p.size_label()}.zip")


@router.get("/moving_target/astrocut", response_class=JSONResponse, responses=_ZIP_RESPONSES)
async def mt_astrocut_get(p: Annotated[MovingTargetCutParams, Query()], services: ServicesDep) -> Any:
    """TPFs centred on a moving target's path, one per cube it crosses, in a zip."""
    return await _mt_astrocut(services, p)


@router.post("/moving_target/astrocut", response_class=JSONResponse, responses=_ZIP_RESPONSES)
async def mt_astrocut_post(p: Annotated[MovingTargetCutParams, Form()], services: ServicesDep) -> Any:
    """As GET, with a form body."""
    return await _mt_astrocut(services, p)
