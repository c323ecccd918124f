"""The browser side of the service: a preview page at ``/``, offline ``/docs`` and ``/redoc``.

``install(app)`` adds

- ``GET /``: a plain HTML page (``app/static/``, no build step, no CDN) to pick a position, a size,
  a product, a hosted sector and a stretch, see a preview, download the TPF zip, and copy the curl
  command and astroquery call that fetch the same cutout;
- ``GET /preview/cube.png``: the PNG preview the page shows, the median frame of the cutout the
  ``astrocut`` route would build (:mod:`app.planning.preview`; TESScut's API has no PNG route for
  cubes; this one exists for the page and stays out of the OpenAPI document);
- ``/docs`` (Swagger UI) and ``/redoc`` served from assets bundled by the ``fastapi-offline``
  package under ``/static-docs``, replacing FastAPI's defaults, which load them from a CDN.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated, Literal

from fastapi import FastAPI, Query, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.responses import FileResponse, HTMLResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.routing import Route

from core.errors import InvalidInputError

__all__ = ["DOCS_STATIC_URL", "STATIC_DIR", "STATIC_URL", "install"]

log = logging.getLogger("app.web")

#: this module's page, script and style sheet
STATIC_DIR = Path(__file__).parent / "static"
#: where they are served
STATIC_URL = "/static"
#: where the Swagger UI / ReDoc assets are served
DOCS_STATIC_URL = "/static-docs"


def _docs_assets_dir() -> Path | None:
    try:
        import fastapi_offline
    except ImportError:
        return None
    path = Path(fastapi_offline.__file__).parent / "static"
    return path if (path / "swagger-ui-bundle.js").is_file() else None


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
        page = get_redoc_html(
            openapi_url=base + openapi_url,
            title=f"{app.title} - ReDoc",
            redoc_js_url=f"{base}{DOCS_STATIC_URL}/redoc.standalone.js",
            redoc_favicon_url=f"{base}{DOCS_STATIC_URL}/favicon.png",
            with_google_fonts=False,
        )
        # ReDoc's bundle shows its maker's logo from cdn.redoc.ly: images from this server only, so
        # the page asks nothing of another site (the logo hides itself when it cannot load)
        page.headers["Content-Security-Policy"] = "img-src 'self' data: blob:"
        return page

    app.add_api_route(docs_url, swagger_ui, methods=["GET"], include_in_schema=False)
    app.add_api_route(oauth_url, swagger_redirect, methods=["GET"], include_in_schema=False)
    app.add_api_route(redoc_url, redoc, methods=["GET"], include_in_schema=False)


def _install_preview(app: FastAPI) -> None:
    async def cube_preview(
        request: Request,
        ra: Annotated[float, Query(description="Right ascension, degrees.", ge=-180, le=360, allow_inf_nan=False)],
        dec: Annotated[float, Query(ge=-90, le=90, description="Declination, degrees.", allow_inf_nan=False)],
        x: Annotated[int, Query(ge=1, description="Width, pixels.")] = 15,
        y: Annotated[int | None, Query(ge=1, description="Height, pixels (default: x).")] = None,
        sector: Annotated[int | None, Query(ge=1, description="Sector (default: the first hosted one).")] = None,
        product: Annotated[str, Query(description="SPOC or TICA (case-insensitive).")] = "SPOC",
        stretch: Annotated[Literal["asinh", "sinh", "sqrt", "log", "linear"], Query()] = "asinh",
        invert: bool = False,
    ) -> Response:
        """The median frame of the TPF `astrocut` would serve, as a PNG (for the preview page)."""
        from app.observability import record_cutout
        from app.planning.preview import plan_preview
        from app.streaming import file_response

        services = request.app.state.services
        prod = product.strip().upper()
        if prod not in ("SPOC", "TICA"):
            raise InvalidInputError(f"product must be SPOC or TICA, not {product[:20]!r}", field="product")
        ctx = services.context()
        # one band of rows at a time, and the PNG: bounded by the band size, not the window
        ticket = await services.budget.admit(2 * ctx.band_bytes + 16 * x * (y or x))
        try:
            answer = await services.pool.run(plan_preview, ctx, ra, dec, x, y if y is not None else x, sector,
                                             prod, stretch, invert)
        finally:
            ticket.release()
        record_cutout(request, answer.stats)
        return file_response(answer.data, answer.media_type, answer.filename, inline=True)

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
