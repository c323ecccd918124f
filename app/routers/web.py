"""The browser side of the service: the page at ``/``, offline ``/docs`` and ``/redoc``.

- ``GET /``: a plain HTML page (``app/static/``, no build step, no CDN) to pick a position, a size,
  a product, a hosted sector and a stretch, see a preview (:mod:`app.routers.preview`), download the
  TPF zip, and copy the curl command and astroquery call that fetch the same cutout;
- ``/docs`` (Swagger UI) and ``/redoc`` served from assets bundled by the ``fastapi-offline``
  package under ``/static-docs`` (the app is built with FastAPI's own CDN-based pages turned off).

:func:`mount` serves the page's files and the docs' assets (mounts live on the app itself).
"""

from __future__ import annotations

import logging
from pathlib import Path

from fastapi import APIRouter, FastAPI, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.responses import FileResponse, HTMLResponse
from fastapi.staticfiles import StaticFiles

__all__ = ["DOCS_STATIC_URL", "STATIC_DIR", "STATIC_URL", "mount", "router"]

log = logging.getLogger("app.web")

#: this module's page, script and style sheet
STATIC_DIR = Path(__file__).parent.parent / "static"
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


router = APIRouter(include_in_schema=False)

#: where the Swagger UI OAuth redirect is served (FastAPI's default path)
OAUTH_URL = "/docs/oauth2-redirect"


def _root(request: Request) -> str:
    return request.scope.get("root_path", "").rstrip("/")


@router.get("/docs", response_class=HTMLResponse)
async def swagger_ui(request: Request) -> HTMLResponse:
    base = _root(request)
    app = request.app
    return get_swagger_ui_html(
        openapi_url=base + (app.openapi_url or "/openapi.json"),
        title=f"{app.title} - Swagger UI",
        oauth2_redirect_url=base + OAUTH_URL,
        swagger_js_url=f"{base}{DOCS_STATIC_URL}/swagger-ui-bundle.js",
        swagger_css_url=f"{base}{DOCS_STATIC_URL}/swagger-ui.css",
        swagger_favicon_url=f"{base}{DOCS_STATIC_URL}/favicon.png",
        swagger_ui_parameters=app.swagger_ui_parameters,
    )


@router.get(OAUTH_URL, response_class=HTMLResponse)
async def swagger_redirect() -> HTMLResponse:
    return get_swagger_ui_oauth2_redirect_html()


@router.get("/redoc", response_class=HTMLResponse)
async def redoc(request: Request) -> HTMLResponse:
    base = _root(request)
    app = request.app
    page = get_redoc_html(
        openapi_url=base + (app.openapi_url or "/openapi.json"),
        title=f"{app.title} - ReDoc",
        redoc_js_url=f"{base}{DOCS_STATIC_URL}/redoc.standalone.js",
        redoc_favicon_url=f"{base}{DOCS_STATIC_URL}/favicon.png",
        with_google_fonts=False,
    )
    # ReDoc's bundle shows its maker's logo from cdn.redoc.ly: images from this server only, so
    # the page asks nothing of another site (the logo hides itself when it cannot load)
    page.headers["Content-Security-Policy"] = "img-src 'self' data: blob:"
    return page


@router.get("/", response_class=FileResponse)
async def index() -> FileResponse:
    return FileResponse(STATIC_DIR / "index.html", media_type="text/html", headers={"Cache-Control": "no-cache"})


def mount(app: FastAPI) -> None:
    """Serve the page's files and the docs' assets."""
    if not (STATIC_DIR / "index.html").is_file():  # pragma: no cover - a broken install
        raise RuntimeError(f"the page's files are missing from {STATIC_DIR}")
    assets = _docs_assets_dir()
    if assets is None:
        log.warning("fastapi-offline is not installed: /docs and /redoc cannot load their assets")
    else:
        app.mount(DOCS_STATIC_URL, StaticFiles(directory=str(assets)), name="static-docs")
    app.mount(STATIC_URL, StaticFiles(directory=str(STATIC_DIR)), name="static")
