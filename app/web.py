"""The browser side of the service: a preview page at ``/``, offline ``/docs`` and ``/redoc``.

``install(app)`` adds

- ``GET /``: a plain HTML page (``app/static/``, no build step, no CDN) to pick a position, a size,
  a product, a hosted sector and a stretch, see a preview, download the TPF zip, and copy the curl
  command and astroquery call that fetch the same cutout;
- ``GET /preview/cube.png``: the PNG preview the page shows, the median frame of the TPF the
  ``astrocut`` route would build, scaled with :func:`core.image.normalize_img` (TESScut's API has
  no PNG route for cubes; this one exists for the page and stays out of the OpenAPI document);
- ``/docs`` (Swagger UI) and ``/redoc`` served from assets bundled by the ``fastapi-offline``
  package under ``/static-docs``, replacing FastAPI's defaults, which load them from a CDN.
"""

from __future__ import annotations

import io
import logging
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
from fastapi import FastAPI, Query, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.responses import FileResponse, HTMLResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.routing import Route

from core.errors import InvalidInputError, NoDataError, TooLargeError

__all__ = ["DOCS_STATIC_URL", "STATIC_DIR", "STATIC_URL", "install", "render_cube_preview"]

log = logging.getLogger("app.web")

#: this module's page, script and style sheet
STATIC_DIR = Path(__file__).parent / "static"
#: where they are served
STATIC_URL = "/static"
#: where the Swagger UI / ReDoc assets are served
DOCS_STATIC_URL = "/static-docs"
#: percentiles of the preview's interval (as img_cut's default)
PREVIEW_PERCENT = (0.5, 99.5)


def _docs_assets_dir() -> Path | None:
    try:
        import fastapi_offline
    except ImportError:
        return None
    path = Path(fastapi_offline.__file__).parent / "static"
    return path if (path / "swagger-ui-bundle.js").is_file() else None


def render_cube_preview(cube: Any, ra: float, dec: float, nx: int, ny: int, stretch: str,
                        invert: bool = False, threads: int = 1) -> bytes:
    """PNG bytes of the median frame of an ``nx`` x ``ny`` TPF of ``cube`` centred on (ra, dec).

    The TPF is the one the ``astrocut`` route serves (:func:`core.tpf.build_tpf`); the frame is
    the per-pixel NaN-median of its FLUX, scaled as ``img_cut`` does (0.5-99.5 percentile
    interval, then the stretch) and flipped so north-up images show row 0 at the bottom.

    Raises
    ------
    NoDataError
        The cutout has no data on this cube.
    """
    from astropy import units as u
    from astropy.coordinates import SkyCoord
    from PIL import Image

    from core.image import normalize_img
    from core.tpf import build_tpf

    coord = SkyCoord(ra % 360.0, dec, unit="deg", frame="icrs")
    hdul = build_tpf(cube, coord, [nx * u.pix, ny * u.pix], threads=threads)
    flux = np.asarray(hdul[1].data["FLUX"], dtype=np.float32)
    if flux.ndim == 2:  # a one-frame cube
        flux = flux[None]
    # the median over pixels with data only: all-NaN pixels (off the science area) stay NaN
    # without nanmedian's warning, so no process-wide warning filter is touched (core.quiet)
    valid = np.isfinite(flux).any(axis=0)
    if not valid.any():
        raise NoDataError("the cutout has no valid pixels on this cube", field="ra")
    frame = np.full(flux.shape[1:], np.nan, dtype=np.float32)
    frame[valid] = np.nanmedian(flux[:, valid], axis=0)
    pixels = normalize_img(frame, stretch=stretch, minmax_percent=PREVIEW_PERCENT, invert=invert)
    image = Image.fromarray(pixels).transpose(Image.Transpose.FLIP_TOP_BOTTOM)
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


def _remove_routes(app: FastAPI, paths: set[str]) -> None:
    """Drop FastAPI's own (CDN-based) doc pages; the API routes are left alone."""
    app.router.routes[:] = [
        r for r in app.router.routes if not (isinstance(r, Route) and r.path in paths and not r.include_in_schema)
    ]


def _install_docs(app: FastAPI, docs_url: str, redoc_url: str) -> None:
    assets = _docs_assets_dir()
    if assets is None:
        log.warning("fastapi-offline is not installed: /docs and /redoc keep FastAPI's CDN assets")
        return
    oauth_url = app.swagger_ui_oauth2_redirect_url or "/docs/oauth2-redirect"
    _remove_routes(app, {p for p in (app.docs_url, app.redoc_url, oauth_url, docs_url, redoc_url) if p})
    app.mount(DOCS_STATIC_URL, StaticFiles(directory=str(assets)), name="static-docs")
    openapi_url = app.openapi_url or "/openapi.json"

    def root(request: Request) -> str:
        return request.scope.get("root_path", "").rstrip("/")

    async def swagger_ui(request: Request) -> HTMLResponse:
        base = root(request)
        return get_swagger_ui_html(
            openapi_url=base + openapi_url,
            title=f"{app.title} - Swagger UI",
            oauth2_redirect_url=base + oauth_url,
            swagger_js_url=f"{base}{DOCS_STATIC_URL}/swagger-ui-bundle.js",
            swagger_css_url=f"{base}{DOCS_STATIC_URL}/swagger-ui.css",
            swagger_favicon_url=f"{base}{DOCS_STATIC_URL}/favicon.png",
            swagger_ui_parameters=app.swagger_ui_parameters,
        )

    async def swagger_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    async def redoc(request: Request) -> HTMLResponse:
        base = root(request)
        return get_redoc_html(
            openapi_url=base + openapi_url,
            title=f"{app.title} - ReDoc",
            redoc_js_url=f"{base}{DOCS_STATIC_URL}/redoc.standalone.js",
            redoc_favicon_url=f"{base}{DOCS_STATIC_URL}/favicon.png",
            with_google_fonts=False,
        )

    app.add_api_route(docs_url, swagger_ui, methods=["GET"], include_in_schema=False)
    app.add_api_route(oauth_url, swagger_redirect, methods=["GET"], include_in_schema=False)
    app.add_api_route(redoc_url, redoc, methods=["GET"], include_in_schema=False)


def _install_preview(app: FastAPI) -> None:
    async def cube_preview(
        request: Request,
        ra: Annotated[float, Query(description="Right ascension, degrees.", allow_inf_nan=False)],
        dec: Annotated[float, Query(ge=-90, le=90, description="Declination, degrees.", allow_inf_nan=False)],
        x: Annotated[int, Query(ge=1, description="Width, pixels.")] = 15,
        y: Annotated[int | None, Query(ge=1, description="Height, pixels (default: x).")] = None,
        sector: Annotated[int | None, Query(ge=1, description="Sector (default: the first hosted one).")] = None,
        product: Annotated[str, Query(description="SPOC or TICA (case-insensitive).")] = "SPOC",
        stretch: Annotated[Literal["asinh", "sinh", "sqrt", "log", "linear"], Query()] = "asinh",
        invert: bool = False,
    ) -> Response:
        """The median frame of the TPF `astrocut` would serve, as a PNG (for the preview page)."""
        from astropy.coordinates import SkyCoord

        from app.observability import record_cutout
        from app.streaming import file_response

        services = request.app.state.services
        settings = services.settings
        nx, ny = x, (y if y is not None else x)
        for name, side in (("x", nx), ("y", ny)):
            if side > settings.max_cutout_side:
                raise TooLargeError(f"cutout side of {side} pixels exceeds the limit of "
                                    f"{settings.max_cutout_side}", field=name)
        prod = product.strip().upper()
        if prod not in ("SPOC", "TICA"):
            raise InvalidInputError(f"product must be SPOC or TICA, not {product!r}", field="product")
        coord = SkyCoord(ra % 360.0, dec, unit="deg")

        def work() -> tuple[bytes, int]:
            entries = services.catalog.containing(coord, product=prod, sectors=[sector] if sector else None)
            if not entries:
                where = f" in sector {sector}" if sector else ""
                raise NoDataError(f"RA {ra:g} Dec {dec:g} is on no hosted {prod} cube{where}", field="ra")
            entry = entries[0]
            if nx * ny * entry.nframes > settings.max_cutout_volume:
                raise TooLargeError(f"a {nx}x{ny} cutout of {entry.nframes} frames is over the limit of "
                                    f"{settings.max_cutout_volume} pixel-frames", field="x")
            data = render_cube_preview(entry.cube, ra, dec, nx, ny, stretch, invert, settings.read_threads)
            return data, entry.nframes

        data, frames = await services.pool.run(work)
        record_cutout(request, nx, ny, frames)
        name = f"preview_{ra:.6f}_{dec:.6f}_{nx}x{ny}_s{sector or 0:04d}.png"
        return file_response(data, "image/png", name, inline=True)

    app.add_api_route("/preview/cube.png", cube_preview, methods=["GET"], include_in_schema=False,
                      response_class=Response)


def install(app: FastAPI, *, docs_url: str = "/docs", redoc_url: str = "/redoc") -> None:
    """Add the preview page, its PNG route, its static files and offline API docs (idempotent).

    Routes may be added to a running app (only middleware may not), so this also works on an app
    already serving.
    """
    if getattr(app.state, "web_installed", False):
        return
    app.state.web_installed = True
    if not (STATIC_DIR / "index.html").is_file():  # pragma: no cover - a broken install
        raise RuntimeError(f"the page's files are missing from {STATIC_DIR}")
    _install_docs(app, docs_url, redoc_url)
    _install_preview(app)
    app.mount(STATIC_URL, StaticFiles(directory=str(STATIC_DIR)), name="static")

    async def index() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html", media_type="text/html",
                            headers={"Cache-Control": "no-cache"})

    app.add_api_route("/", index, methods=["GET"], include_in_schema=False, response_class=FileResponse)
