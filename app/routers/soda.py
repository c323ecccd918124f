"""IVOA SODA 1.0 over the hosted cubes: ``/soda/sync`` (GET and POST), ``/soda/capabilities`` and
``/soda/availability`` (VOSI), ``/soda/links`` (DataLink).

The handlers read the raw parameters (SODA names are case-insensitive and may repeat), plan on the
worker pool with :mod:`app.planning.soda` and send. No overlap is HTTP 204; errors are DALI text
documents (``UsageError: ...``, see :mod:`app.errors`).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from app.dependencies import Services, ServicesDep
from app.pipeline import serve
from app.planning import soda
from core.errors import InvalidInputError

__all__ = ["router"]

router = APIRouter(prefix="/soda", tags=["SODA"])

_TEXT = {"text/plain": {"schema": {"type": "string"}}}
_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"description": f"{text}: a text/plain DALI error document starting with its name", "content": _TEXT}
    for code, text in {400: "UsageError or MultiValuedParamNotSupported", 404: "UsageError (unknown ID)",
                       413: "UsageError (the cutout exceeds the limits)", 422: "Error (a corrupt cube)",
                       503: "ServiceUnavailable (busy; Retry-After)", 504: "ServiceUnavailable (timed out)"}.items()
}
_SYNC_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"description": "The target pixel file of the region and cadences (or a zip of it).",
          "content": {"application/fits": {"schema": {"type": "string", "format": "binary"}},
                      "application/zip": {"schema": {"type": "string", "format": "binary"}}}},
    204: {"description": "No overlap between the request and the cube (no body)."},
    **_ERRORS,
}


def _parameter(name: str, description: str, *, required: bool = False, example: str | None = None) -> dict:
    spec: dict[str, Any] = {"name": name, "in": "query", "required": required, "description": description,
                            "schema": {"type": "string"}}
    if example is not None:
        spec["example"] = example
    return spec


_SYNC_PARAMETERS = [
    _parameter("ID", "A hosted cube: the sector name the sector route lists (tess-s0038-2-2; tica-... for TICA), "
               "optionally product-qualified (SPOC:tess-s0038-2-2).", required=True, example="tess-s0038-2-2"),
    _parameter("POS", "Region, ICRS degrees: CIRCLE ra dec r | RANGE ra1 ra2 dec1 dec2 | POLYGON ra1 dec1 ...",
               example="CIRCLE 217.42893801 -62.67949189 0.01"),
    _parameter("CIRCLE", "ra dec radius, degrees (the region, as POS=CIRCLE)."),
    _parameter("POLYGON", "ra1 dec1 ra2 dec2 ra3 dec3 ..., degrees (the region, as POS=POLYGON)."),
    _parameter("TIME", "Interval t1 t2, MJD (UTC); -Inf/+Inf for open ends. Frames whose exposure overlaps it."),
    _parameter("BAND", "Wavelength interval, metres: must reach TESS's band (600-1000 nm)."),
    _parameter("POL", "Polarization states: must include I."),
    _parameter("RESPONSEFORMAT", "application/fits (default) or application/zip."),
    _parameter("FRAME_BIN", "Custom: average this many frames into each cadence (>= 1)."),
]
_FORM_SCHEMA = {
    "type": "object", "required": ["ID"],
    "properties": {p["name"]: {"type": "string", "description": p["description"],
                               **({"examples": [p["example"]]} if "example" in p else {})} for p in _SYNC_PARAMETERS},
}


async def _sync(request: Request, services: Services, pairs: list[tuple[str, str]]) -> Response:
    # the TPF or its zip; no overlap is a NoData answered 204
    return await serve(request, soda.SYNC, soda.parse_soda(pairs))


@router.get("/sync", response_class=Response, responses=_SYNC_RESPONSES,
            openapi_extra={"parameters": _SYNC_PARAMETERS})
async def sync_get(request: Request, services: ServicesDep) -> Response:
    """SODA 1.0 sync: the target pixel file of a hosted cube's region and time interval."""
    return await _sync(request, services, list(request.query_params.multi_items()))


@router.post("/sync", response_class=Response, responses=_SYNC_RESPONSES,
             openapi_extra={"requestBody": {"required": True, "content": {
                 "application/x-www-form-urlencoded": {"schema": _FORM_SCHEMA}}}})
async def sync_post(request: Request, services: ServicesDep) -> Response:
    """As GET, with a form body."""
    form = await request.form()
    pairs = [(k, v) for k, v in form.multi_items() if isinstance(v, str)]
    return await _sync(request, services, list(request.query_params.multi_items()) + pairs)


def _base(request: Request) -> str:
    return str(request.url_for("sync_get")).rsplit("/", 1)[0]


@router.get("/capabilities", response_class=Response,
            responses={200: {"description": "VOSI capabilities", "content": {"text/xml": {"schema": {"type": "string"}}}}})
async def capabilities(request: Request) -> Response:
    """VOSI capabilities: the SODA sync endpoint (standardID ivo://ivoa.net/std/SODA#sync-1.0) and VOSI's own."""
    return Response(soda.capabilities_xml(_base(request)), media_type="text/xml")


@router.get("/availability", response_class=Response,
            responses={200: {"description": "VOSI availability", "content": {"text/xml": {"schema": {"type": "string"}}}}})
async def availability(services: ServicesDep) -> Response:
    """VOSI availability: whether the service answers, and how many cubes it hosts."""
    summary = services.catalog.summary()
    cubes = int(summary.get("cubes", 0)) if isinstance(summary, dict) else 0
    return Response(soda.availability_xml(True, f"serving cutouts of {cubes} hosted cubes"), media_type="text/xml")


_LINKS = "application/x-votable+xml;content=datalink"


@router.get("/links", response_class=Response,
            responses={200: {"description": "DataLink links of a cube: a #cutout row and its SODA service descriptor",
                             "content": {_LINKS: {"schema": {"type": "string"}}}}, **_ERRORS},
            openapi_extra={"parameters": [_SYNC_PARAMETERS[0]]})
async def links(request: Request, services: ServicesDep) -> Response:
    """DataLink {links} of one hosted cube (its SODA service descriptor, with parameter ranges)."""
    ids = [v for k, v in request.query_params.multi_items() if k.upper() == "ID" and v.strip()]
    if len(ids) > 1:
        raise soda.MultiValuedParamNotSupported("give one ID", field="ID")
    if not ids:
        raise InvalidInputError("ID is required: a hosted cube's sector name", field="ID")
    body = await services.pool.run(soda.links_votable, services.context(), ids[0],
                                   str(request.url_for("sync_get")))
    return Response(body, media_type=_LINKS)
