"""The browser page, its PNG preview and the offline API docs (app.routers.web, app.routers.preview), against the live server.

The browser test drives Debian's headless Chromium (``/usr/bin/chromium``) with Playwright and
saves ``test-artifacts/preview.png``; it skips only when that binary is absent.
"""

from __future__ import annotations

import io
import re
import zipfile
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import httpx
import numpy as np
import pytest
from PIL import Image

from core.synthetic.ffis import DEMO_DEC, DEMO_RA

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"


@pytest.fixture(scope="module")
def server(live_server):
    """The session's live server (create_app serves the page)."""
    return live_server


@pytest.fixture(scope="module")
def http(server):
    with httpx.Client(base_url=server.url, timeout=30) as client:
        yield client


def _asset_urls(html: str) -> list[str]:
    """Every URL a page loads: src/href attributes and the ``url:`` / ``spec-url`` its scripts fetch."""
    urls = re.findall(r'(?:src|href)\s*=\s*["\']([^"\']+)["\']', html)
    urls += re.findall(r"""url\s*:\s*['"]([^'"]+)['"]""", html)
    urls += re.findall(r'spec-url\s*=\s*["\']([^"\']+)["\']', html)
    return [u for u in urls if not u.startswith(("#", "data:", "javascript:"))]


def _assert_local_assets(http: httpx.Client, page: str) -> list[str]:
    r = http.get(page)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    html = r.text
    assert "cdn." not in html and "fonts.googleapis" not in html and "unpkg" not in html
    urls = _asset_urls(html)
    assert urls, f"no assets found in {page}"
    base = str(http.base_url).rstrip("/") + page
    for url in urls:
        assert not url.startswith(("http:", "https:", "//")), f"{page} loads {url} from elsewhere"
        absolute = urljoin(base, url)
        got = http.get(urlsplit(absolute).path)
        assert got.status_code == 200, f"{url} -> {got.status_code}"
        assert got.content
    return urls


@pytest.mark.parametrize("page, needed", [
    ("/docs", {"swagger-ui-bundle.js", "swagger-ui.css", "openapi.json"}),
    ("/redoc", {"redoc.standalone.js", "openapi.json"}),
])
def test_docs_are_served_offline(http, page, needed):
    urls = _assert_local_assets(http, page)
    assert {u.rsplit("/", 1)[-1] for u in urls} >= needed


def test_index_page_and_its_assets(http):
    urls = _assert_local_assets(http, "/")
    assert {"static/app.js", "static/style.css"} <= set(urls)
    assert http.get("/static/app.js").headers["content-type"].startswith(("application/javascript", "text/javascript"))


def test_preview_png(http, spoc_sector_b):
    r = http.get("/preview/cube.png", params={"ra": DEMO_RA, "dec": DEMO_DEC, "x": 9, "y": 7, "sector": 11,
                                              "stretch": "sqrt"})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "image/png"
    img = Image.open(io.BytesIO(r.content))
    assert img.size == (9, 7) and img.mode == "L"
    pixels = np.asarray(img)
    # the target star (row 3 from the bottom = row 3 from the top for 7 rows) is the brightest spot
    iy, ix = np.unravel_index(np.argmax(pixels), pixels.shape)
    assert abs(iy - 3) <= 1 and abs(ix - 4) <= 1
    assert pixels.max() == 255 and pixels.min() < 64
    # the stretch matters: a linear preview of the same cutout differs
    lin = http.get("/preview/cube.png", params={"ra": DEMO_RA, "dec": DEMO_DEC, "x": 9, "y": 7, "sector": 11,
                                                "stretch": "linear"})
    assert not np.array_equal(np.asarray(Image.open(io.BytesIO(lin.content))), pixels)


@pytest.mark.parametrize("params, status, field", [
    ({"ra": 10.0, "dec": 20.0}, 404, "ra"),                     # on no hosted cube
    ({"ra": DEMO_RA, "dec": DEMO_DEC, "sector": 5}, 404, "ra"),  # sector not hosted
    ({"ra": DEMO_RA, "dec": DEMO_DEC, "x": 51}, 413, "x"),       # over max_cutout_side (50)
    ({"ra": DEMO_RA, "dec": DEMO_DEC, "x": 30, "y": 30}, 413, "x"),  # over the pixel-frame volume
    ({"ra": DEMO_RA, "dec": DEMO_DEC, "product": "XYZ"}, 400, "product"),
    ({"ra": DEMO_RA, "dec": DEMO_DEC, "stretch": "cubic"}, 400, "stretch"),
    ({"ra": DEMO_RA, "dec": 95}, 400, "dec"),
])
def test_preview_errors_have_the_error_shape(http, params, status, field):
    r = http.get("/preview/cube.png", params=params)
    assert r.status_code == status, r.text
    body = r.json()
    assert body["error"]["field"] == field and body["msg"]


def test_preview_at_the_cube_edge_warns_of_nothing(spoc_cube):
    """A preview half off the cube: the off-cube pixels (all-NaN over time) render, and no
    RuntimeWarning is raised (nanmedian's is avoided rather than filtered: see core.quiet)."""
    import os
    import warnings

    from app.params.requests import PreviewParams
    from app.planning.context import Context
    from app.planning.preview import plan_preview
    from core.catalog.configured import open_catalog
    from core.cubes.cache import open_cube
    from core.cutout_size import Limits

    cube = open_cube(spoc_cube)
    ra, dec = (float(v) for v in cube.wcs.all_pix2world(1.0, 30.0, 0))
    ctx = Context(catalog=open_catalog(cube_dirs=[os.path.dirname(spoc_cube)]), limits=Limits(),
                  inline_tpf_bytes=1 << 26, band_bytes=1 << 20, work_dir=os.path.dirname(spoc_cube))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        png = plan_preview(ctx, PreviewParams(ra=ra, dec=dec, x=9, y=7, stretch="linear")).data
    pixels = np.asarray(Image.open(io.BytesIO(png)))
    assert pixels.shape == (7, 9)
    assert pixels[:, :3].max() == 0 and pixels[:, 4:].max() == 255  # off the cube: black


def test_preview_tica(http):
    r = http.get("/preview/cube.png", params={"ra": DEMO_RA, "dec": DEMO_DEC, "x": 5, "sector": 38,
                                              "product": "tica"})
    assert r.status_code == 200 and Image.open(io.BytesIO(r.content)).size == (5, 5)


# ------------------------------------------------------------------------------------------
# the browser
# ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is absent (apt-get install chromium): the browser test needs it")
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        try:
            yield b
        finally:
            b.close()


@pytest.mark.browser
def test_preview_page_in_chromium(browser, server, http):
    page = browser.new_page(viewport={"width": 1200, "height": 820})
    requested: list[str] = []
    problems: list[str] = []
    page.on("request", lambda req: requested.append(req.url))
    page.on("console", lambda msg: problems.append(msg.text) if msg.type == "error" else None)
    page.on("pageerror", lambda exc: problems.append(str(exc)))

    page.goto(server.url + "/", wait_until="networkidle")
    # the sector select is filled from the sector endpoint
    page.wait_for_function("document.querySelectorAll('#sector option[value=\"38\"]').length === 1")
    sectors = page.eval_on_selector_all("#sector option", "els => els.map(e => e.value)")
    assert sorted(sectors) == ["11", "38"]

    page.fill("#size-x", "9")
    page.fill("#size-y", "7")
    page.select_option("#sector", "11")
    page.select_option("#stretch", "sqrt")
    page.wait_for_function(
        "() => { const i = document.getElementById('preview');"
        " return !i.hidden && i.complete && i.naturalWidth === 9 && i.naturalHeight === 7"
        " && i.src.includes('sector=11') && i.src.includes('stretch=sqrt'); }")
    shown = page.eval_on_selector("#preview", "i => [i.naturalWidth, i.naturalHeight, i.clientWidth]")
    assert shown[:2] == [9, 7] and shown[2] > 9  # enlarged on screen

    zip_href = page.get_attribute("#download-zip", "href")
    expected = (f"{server.url}/tesscut/api/v0.1/astrocut?ra={DEMO_RA}&dec={DEMO_DEC}&x=9&y=7&units=px&sector=11")
    assert zip_href == expected
    curl = page.inner_text("#curl-cmd")
    assert curl == f"curl -o astrocut_{DEMO_RA:.6f}_{DEMO_DEC:.6f}_9x7.zip '{expected}'"
    code = page.inner_text("#astroquery-code")
    assert f'ServiceAPI.SERVICE_URL = "{server.url}"' in code
    assert "Tesscut.download_cutouts(coordinates=coord, size=[7, 9], sector=11)" in code
    assert f"SkyCoord({DEMO_RA}, {DEMO_DEC}" in code

    # the link really downloads that TPF
    r = http.get(zip_href)
    names = zipfile.ZipFile(io.BytesIO(r.content)).namelist()
    assert names == [f"tess-s0011-2-2_{DEMO_RA:.6f}_{DEMO_DEC:.6f}_9x7_astrocut.fits"]

    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "preview.png"), full_page=True)

    # a position on no hosted cube says so instead of showing a stale image
    page.fill("#ra", "10")
    page.fill("#dec", "20")
    page.wait_for_function("document.getElementById('status').className === 'error'")
    assert "no hosted" in page.inner_text("#status").lower()
    assert page.eval_on_selector("#preview", "i => i.hidden")
    assert page.inner_text("#preview-caption") == ""  # no caption of the image no longer shown

    # nothing was fetched from anywhere but this server, and the page logged no script errors
    assert requested and all(u.startswith(server.url) for u in requested), requested
    assert not [p for p in problems if "404" not in p], problems
    page.close()


@pytest.mark.browser
def test_swagger_ui_renders_offline(browser, server):
    page = browser.new_page()
    requested: list[str] = []
    page.on("request", lambda req: requested.append(req.url))
    page.goto(server.url + "/docs", wait_until="domcontentloaded")
    page.wait_for_selector(".opblock-summary-path", timeout=15000)
    paths = page.eval_on_selector_all(".opblock-summary-path", "els => els.map(e => e.textContent)")
    assert any("/tesscut/api/v0.1/astrocut" in p for p in paths)
    assert all(u.startswith(server.url) for u in requested), requested
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "docs.png"))
    page.close()


@pytest.mark.browser
@pytest.mark.parametrize("width", [420, 1400])
def test_page_fits_narrow_and_wide_windows(browser, server, width):
    page = browser.new_page(viewport={"width": width, "height": 900})
    page.goto(server.url + "/", wait_until="networkidle")
    page.wait_for_function("() => { const i = document.getElementById('preview');"
                           " return !i.hidden && i.complete && i.naturalWidth > 0; }")
    page.wait_for_function("() => !document.getElementById('lightcurve').hidden"
                           " && document.querySelectorAll('#lc-plot circle.pt').length > 0")
    # nothing sideways: the page is no wider than the window
    assert page.evaluate("document.documentElement.scrollWidth") <= width
    # the code boxes show all their text (no line cut off at the box's edge)
    for box in ("#astroquery-code", "#curl-cmd"):
        inner, shown, right = page.eval_on_selector(
            box, "p => [p.scrollWidth, p.clientWidth, p.getBoundingClientRect().right]")
        assert inner <= shown and right <= width, (box, inner, shown, right)
    assert "download_cutouts(coordinates=coord" in page.inner_text("#astroquery-code")
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"page-{width}.png"), full_page=True)
    page.close()


def _refs(node, found):
    """Every ``$ref`` value under ``node``."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref":
                found.append(value)
            else:
                _refs(value, found)
    elif isinstance(node, list):
        for value in node:
            _refs(value, found)
    return found


def test_every_openapi_ref_resolves(http):
    doc = http.get("/openapi.json").json()
    refs = _refs(doc, [])
    assert refs
    for ref in sorted(set(refs)):
        # Swagger UI and ReDoc resolve local references to the document's components only
        assert ref.startswith("#/components/"), ref
        node = doc
        for part in ref[2:].split("/"):
            part = part.replace("~1", "/").replace("~0", "~")
            assert isinstance(node, dict) and part in node, f"{ref} does not resolve"
            node = node[part]


#: what Swagger UI and ReDoc show when they cannot use the document
_DOC_ERRORS = ("Resolver error", "Could not resolve reference", "Invalid reference token",
               "Something went wrong", "failed to render")


@pytest.mark.browser
def test_swagger_ui_expands_operations_without_errors(browser, server):
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    problems: list[str] = []
    page.on("pageerror", lambda exc: problems.append(str(exc)))
    page.goto(server.url + "/docs", wait_until="domcontentloaded")
    page.wait_for_selector(".opblock-summary-path", timeout=15000)
    for path in ("/tesscut/api/v0.1/astrocut", "/tesscut/api/v0.1/sector"):
        block = page.locator(f".opblock-get:has(.opblock-summary-path[data-path='{path}'])").first
        block.locator(".opblock-summary").click()
        # the expanded operation lists its responses, the 200 answer's JSON schema among them
        block.locator(".responses-table").first.wait_for(timeout=15000)
    page.locator(".model-example").first.wait_for(timeout=15000)
    text = page.inner_text("body")
    assert not [e for e in _DOC_ERRORS if e in text], text[:2000]
    assert not page.locator(".errors-wrapper").count()
    assert not problems, problems
    page.close()


@pytest.mark.browser
def test_redoc_renders_offline(browser, server):
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    elsewhere: list[str] = []
    problems: list[str] = []
    local = (server.url, "blob:" + server.url)
    # a request to another site counts unless the page's policy stopped it in the browser
    page.on("requestfinished", lambda req: None if req.url.startswith(local) else elsewhere.append(req.url))
    page.on("requestfailed", lambda req: None if req.url.startswith(local) or req.failure == "csp"
            else elsewhere.append(f"{req.url} ({req.failure})"))
    page.on("pageerror", lambda exc: problems.append(str(exc)))
    page.goto(server.url + "/redoc", wait_until="domcontentloaded")
    # ReDoc shows either the API (its title and the operations) or an error message
    page.wait_for_function(
        "() => document.body.innerText.includes('TESS cutout service') || /wrong|failed|error/i.test("
        "document.body.innerText)", timeout=30000)
    text = page.inner_text("body")
    assert not [e for e in _DOC_ERRORS if e in text], text[:2000]
    assert "TESS cutout service" in text and "/tesscut/api/v0.1/astrocut" in text
    assert not elsewhere, elsewhere
    assert not problems, problems
    page.close()

