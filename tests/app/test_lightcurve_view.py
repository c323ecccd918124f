"""The light-curve view: ``/api/v0.1/lightcurve``, ``/preview/frames.png`` and the page, against the
live server (and the planner without HTTP).

The endpoint's values are compared with lightkurve's ``to_lightcurve(aperture_mask=...)`` on the
TPF that ``/astrocut`` serves for the same position and sector. The browser test drives Debian's
headless Chromium (``/usr/bin/chromium``) with Playwright and saves ``test-artifacts/lightcurve.png``;
it skips only when that binary is absent.
"""

from __future__ import annotations

import io
import os
import warnings
import zipfile
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from core.synthetic.ffis import DEMO_DEC, DEMO_RA

lk = pytest.importorskip("lightkurve")

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
LC = "/api/v0.1/lightcurve"
FRAMES = "/preview/frames.png"


@pytest.fixture(scope="module")
def http(live_server):
    with httpx.Client(base_url=live_server.url, timeout=30) as client:
        yield client


def _astrocut_tpf(http, tmp_path, sector, nx, ny):
    """The TPF /astrocut serves, read by lightkurve with every cadence kept."""
    r = http.get("/tesscut/api/v0.1/astrocut", params={"ra": DEMO_RA, "dec": DEMO_DEC, "x": nx, "y": ny,
                                                       "sector": sector})
    assert r.status_code == 200 and r.headers["content-type"] == "application/zip", r.text[:200]
    with zipfile.ZipFile(io.BytesIO(r.content)) as z:
        (name,) = z.namelist()
        path = tmp_path / name
        path.write_bytes(z.read(name))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return lk.read(str(path), quality_bitmask="none")


def _mask_on(tpf, aperture):
    """The answer's aperture as a mask over ``tpf``, placed by the 1-based column/row both give."""
    full = np.zeros(tpf.shape[1:], dtype=bool)
    oy, ox = aperture["row"] - tpf.row, aperture["column"] - tpf.column
    rows = np.array([[c == "1" for c in r] for r in aperture["mask"]])
    full[oy : oy + rows.shape[0], ox : ox + rows.shape[1]] = rows
    return full


def _f32(values):
    return np.array([np.nan if v is None else v for v in values], dtype=np.float32)


@pytest.mark.parametrize("params", [
    {"aperture": 3},
    {"aperture": 1},
    {"mask": "010,111,010"},
    {"mask": "1100,1111,0011"},
], ids=["3x3", "1x1", "plus", "even-mask"])
@pytest.mark.parametrize("sector", [11, 38])
def test_lightcurve_equals_lightkurve_on_the_astrocut_tpf(http, tmp_path, sector, params):
    """flux, flux_err, time and quality are lightkurve's SAP, bit for bit (the JSON's floats are
    the float32 values as doubles), on a 9x7 TPF from /astrocut with the answer's aperture."""
    r = http.get(LC, params={"ra": DEMO_RA, "dec": DEMO_DEC, "sector": sector, **params})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/json"
    body = r.json()
    assert body["sector"] == sector and body["sectorName"] == f"tess-s{sector:04d}-2-2"
    tpf = _astrocut_tpf(http, tmp_path, sector, 9, 7)
    mask = _mask_on(tpf, body["aperture"])
    assert mask.sum() == body["aperture"]["pixels"] == body["aperture"]["pixels_on_cube"]
    ref = tpf.to_lightcurve(aperture_mask=mask)
    assert np.array_equal(np.asarray(ref.flux.value, np.float32), _f32(body["flux"]))
    assert np.array_equal(np.asarray(ref.flux_err.value, np.float32), _f32(body["flux_err"]))
    assert np.array_equal(ref.time.value, np.array(body["time"]))
    assert np.array_equal(np.asarray(ref.quality), np.array(body["quality"]))
    assert body["cadences"] == len(tpf) == 10
    assert body["flagged"] == np.count_nonzero(body["quality"]) > 0
    # every hosted sector holding the target is listed, as /sector lists them
    listed = http.get("/tesscut/api/v0.1/sector", params={"ra": DEMO_RA, "dec": DEMO_DEC}).json()["results"]
    assert body["sectors"] == listed and [s["sector"] for s in listed] == ["0011", "0038"]


def test_square_aperture_is_the_tpf_of_that_size(http, tmp_path):
    """``aperture=k`` sums exactly the pixels ``astrocut`` cuts with x=y=k (lightkurve's 'all')."""
    body = http.get(LC, params={"ra": DEMO_RA, "dec": DEMO_DEC, "sector": 38, "aperture": 4}).json()
    tpf = _astrocut_tpf(http, tmp_path, 38, 4, 4)
    assert (body["aperture"]["column"], body["aperture"]["row"]) == (tpf.column, tpf.row)
    ref = tpf.to_lightcurve(aperture_mask="all")
    assert np.array_equal(np.asarray(ref.flux.value, np.float32), _f32(body["flux"]))


def test_csv_and_post_answer_the_same_values(http):
    params = {"ra": DEMO_RA, "dec": DEMO_DEC, "sector": 38, "mask": "010,111,010"}
    body = http.get(LC, params=params).json()
    r = http.get(LC, params={**params, "format": "csv"})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    assert r.headers["content-disposition"].startswith('attachment; filename="lightcurve_tess-s0038-2-2_')
    lines = r.text.splitlines()
    assert lines[0] == "time,flux,flux_err,quality" and len(lines) == 11
    table = np.genfromtxt(io.StringIO(r.text), delimiter=",", names=True)
    assert np.array_equal(table["time"], body["time"])
    assert np.array_equal(table["flux"].astype(np.float32), _f32(body["flux"]))
    assert np.array_equal(table["flux_err"].astype(np.float32), _f32(body["flux_err"]))
    assert table["quality"].astype(int).tolist() == body["quality"]
    posted = http.post(LC, data=params)
    assert posted.status_code == 200 and posted.json() == body


def test_default_sector_is_the_first_hosted(http):
    body = http.get(LC, params={"ra": DEMO_RA, "dec": DEMO_DEC}).json()
    assert body["sector"] == 11 and body["aperture"]["nx"] == body["aperture"]["ny"] == 3


@pytest.mark.parametrize("params, status, field", [
    ({"ra": 10.0, "dec": 20.0}, 404, "ra"),                          # on no hosted cube
    ({"ra": 10.0, "dec": 20.0, "sector": 38}, 404, "ra"),            # a hosted sector without it
    ({"sector": 5}, 404, "sector"),                                  # a sector not hosted
    ({"aperture": 0}, 400, "aperture"),
    ({"aperture": "abc"}, 400, "aperture"),
    ({"aperture": 2.5}, 400, "aperture"),
    ({"aperture": 51}, 413, "aperture"),                             # over max_cutout_side (50)
    ({"aperture": 21}, 413, "aperture"),                             # 21x21x10 over max_cutout_volume
    ({"mask": "012,111"}, 400, "mask"),
    ({"mask": "11,1"}, 400, "mask"),                                 # rows of unequal length
    ({"mask": "000,000"}, 400, "mask"),                              # no pixel
    ({"mask": ",".join(["1" * 21] * 21)}, 413, "mask"),
    ({"format": "xml"}, 400, "format"),
    ({"product": "XYZ"}, 400, "product"),
    ({"dec": 95}, 400, "dec"),
    ({"ra": "nan"}, 400, "ra"),
])
def test_bad_input_is_a_4xx_naming_the_field(http, params, status, field):
    r = http.get(LC, params={"ra": DEMO_RA, "dec": DEMO_DEC, **params})
    assert r.status_code == status, r.text
    body = r.json()
    assert body["error"]["field"] == field and body["msg"]


# ------------------------------------------------------------------------------------------
# the planner, without HTTP
# ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ctx(service_data, tmp_path_factory):
    from app.planning.context import Context
    from core.catalog.configured import open_catalog
    from core.cutout_size import Limits

    cubes, _, _ = service_data
    return Context(catalog=open_catalog(cube_dirs=[str(cubes["spoc38"].parent)]),
                   limits=Limits(max_side=50, max_volume=4000), inline_tpf_bytes=1 << 26, band_bytes=256,
                   work_dir=tmp_path_factory.mktemp("lc-work"))


def test_planner_returns_plain_data(ctx):
    from app.planning.lightcurve import lightcurve_result

    result = lightcurve_result(ctx, DEMO_RA, DEMO_DEC, 38, "SPOC", aperture=3)
    lc = result.lightcurve
    assert (result.record.sector, result.record.camera, result.record.ccd) == (38, 2, 2)
    assert lc.flux.dtype == np.float32 and len(lc) == 10 and lc.mask.shape == (3, 3)
    d = result.to_dict()
    assert d["aperture"]["mask"] == ["111"] * 3 and d["flux"] == lc.flux.tolist()
    assert [s["sector"] for s in d["sectors"]] == ["0011", "0038"]
    assert result.to_csv().decode().splitlines()[0] == "time,flux,flux_err,quality"
    tica = lightcurve_result(ctx, DEMO_RA, DEMO_DEC, 38, "TICA", mask="11,11")
    assert tica.record.product == "TICA" and tica.flux_unit == "e-" and tica.lightcurve.mask.shape == (2, 2)


def test_planner_errors_name_the_fields(ctx):
    from app.planning.lightcurve import lightcurve_result
    from core.errors import InvalidInputError, NoDataError, NotFoundError, TooLargeError

    cases = [
        ({"sector": 5}, NotFoundError, "sector"),
        ({"ra": 10.0, "dec": 20.0}, NoDataError, "ra"),
        ({"aperture": 0}, InvalidInputError, "aperture"),
        ({"aperture": 30}, TooLargeError, "aperture"),
        ({"mask": "1" * 51}, TooLargeError, "mask"),
        ({"mask": "2"}, InvalidInputError, "mask"),
    ]
    for changes, error, field in cases:
        kwargs = {"ra": DEMO_RA, "dec": DEMO_DEC, "sector": 38, **changes}
        ra, dec, sector = kwargs.pop("ra"), kwargs.pop("dec"), kwargs.pop("sector")
        with pytest.raises(error) as exc:
            lightcurve_result(ctx, ra, dec, sector, "SPOC", **kwargs)
        assert exc.value.field == field, changes


def test_frame_planner_scales_every_frame_alike(ctx):
    """One interval (the median frame's percentiles) for all frames: the same pixel values give
    the same grey in every frame, so frames differ where the flux changed (the synthetic star's
    transit, frames 4-6), and each is that frame's flux through the shared interval."""
    from app.params.requests import FrameParams
    from app.planning.lightcurve import plan_frame
    from core.cubes.preview import frame_flux

    pngs = [plan_frame(ctx, FrameParams(ra=DEMO_RA, dec=DEMO_DEC, x=9, y=7, sector=38, frame=i, stretch="linear")).data
            for i in (0, 1, 5)]
    images = [np.asarray(Image.open(io.BytesIO(p))) for p in pngs]
    assert all(im.shape == (7, 9) for im in images)
    assert np.array_equal(images[0], images[1])  # out of transit: the same picture
    assert images[2].astype(int).sum() < images[0].astype(int).sum()  # in transit: fainter, same scale
    cube = ctx.catalog.open(ctx.catalog.get(38, 2, 2))
    from core.cutout_size import CutoutSize
    from core.tpf.cut import locate

    win = locate(cube, f"{DEMO_RA} {DEMO_DEC}", CutoutSize(9, 7)).window
    lo, hi = cube.memo.values("frame_limits")[-1]
    expected = np.clip((frame_flux(cube, win, 1) - lo) / (hi - lo), 0, 1) * 255
    assert np.abs(images[1][::-1].astype(int) - expected.astype(np.uint8).astype(int)).max() <= 1


# ------------------------------------------------------------------------------------------
# frames
# ------------------------------------------------------------------------------------------


def test_frames_png(http):
    base = {"ra": DEMO_RA, "dec": DEMO_DEC, "x": 9, "y": 7, "sector": 11}
    got = []
    for i in (0, 5, 9):
        r = http.get(FRAMES, params={**base, "frame": i})
        assert r.status_code == 200, r.text
        assert r.headers["content-type"] == "image/png" and "max-age" in r.headers["cache-control"]
        img = Image.open(io.BytesIO(r.content))
        assert img.size == (9, 7) and img.mode == "L"
        got.append(np.asarray(img))
    assert not np.array_equal(got[0], got[1])
    # the target star, at the centre, is bright in every frame
    for pixels in got:
        iy, ix = np.unravel_index(np.argmax(pixels), pixels.shape)
        assert abs(iy - 3) <= 1 and abs(ix - 4) <= 1


@pytest.mark.parametrize("params, status, field", [
    ({"frame": 10}, 400, "frame"),                 # the cubes have 10 frames
    ({"frame": -1}, 400, "frame"),
    ({"frame": "x"}, 400, "frame"),
    ({"sector": 5}, 404, "sector"),
    ({"ra": 10.0, "dec": 20.0}, 404, "ra"),
    ({"x": 51}, 413, "x"),
    ({"product": "XYZ"}, 400, "product"),
    ({"stretch": "cubic"}, 400, "stretch"),
])
def test_frames_errors_name_the_field(http, params, status, field):
    r = http.get(FRAMES, params={"ra": DEMO_RA, "dec": DEMO_DEC, "x": 9, "y": 7, **params})
    assert r.status_code == status, r.text
    assert r.json()["error"]["field"] == field


# ------------------------------------------------------------------------------------------
# the page in a browser
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


#: a hash of the frame image's pixels as the browser decoded them
_FRAME_HASH = """() => { const i = document.getElementById('frame');
  const c = document.createElement('canvas'); c.width = i.naturalWidth; c.height = i.naturalHeight;
  const g = c.getContext('2d'); g.drawImage(i, 0, 0);
  const d = g.getImageData(0, 0, c.width, c.height).data; let h = 0;
  for (let k = 0; k < d.length; k += 4) h = (h * 31 + d[k]) >>> 0; return h; }"""


@pytest.mark.browser
def test_lightcurve_page_in_chromium(browser, live_server, http):
    server = live_server
    page = browser.new_page(viewport={"width": 1280, "height": 1000})
    requested: list[str] = []
    problems: list[str] = []
    page.on("request", lambda req: requested.append(req.url))
    page.on("console", lambda msg: problems.append(msg.text) if msg.type == "error" else None)
    page.on("pageerror", lambda exc: problems.append(str(exc)))

    page.goto(server.url + "/", wait_until="networkidle")
    page.wait_for_function("document.querySelectorAll('#sector option[value=\"38\"]').length === 1")
    page.fill("#size-x", "9")
    page.fill("#size-y", "7")
    page.select_option("#sector", "38")

    # the light curve of sector 38: one point per cadence, the flagged ones marked
    page.wait_for_function("() => !document.getElementById('lightcurve').hidden"
                           " && document.getElementById('lc-title').textContent.includes('sector 38')"
                           " && document.querySelectorAll('#lc-plot circle.pt').length === 10")
    expected = http.get(LC, params={"ra": DEMO_RA, "dec": DEMO_DEC, "sector": 38,
                                    "mask": "000000000,000000000,000111000,000111000,000111000,"
                                            "000000000,000000000"}).json()
    flagged_frames = sorted(int(i) for i in np.flatnonzero(expected["quality"]))
    shown = page.eval_on_selector_all("#lc-plot circle.pt.flagged", "els => els.map(e => +e.dataset.frame)")
    assert sorted(shown) == flagged_frames and flagged_frames
    colours = page.eval_on_selector_all(
        "#lc-plot circle.pt", "els => [...new Set(els.map(e => getComputedStyle(e).fill))]")
    assert len(colours) == 2  # flagged cadences in another colour
    # the page's aperture is the central 3x3, so its points are the endpoint's values
    ys = page.eval_on_selector_all("#lc-plot circle.pt.good", "els => els.map(e => +e.getAttribute('cy'))")
    assert len(ys) == 10 - len(flagged_frames) and len(set(ys)) > 1
    assert expected["aperture"]["pixels"] == 9
    caption = page.inner_text("#lc-caption")
    assert f"10 cadences, {len(flagged_frames)} with a quality flag" in caption and "9 px" in caption
    # where the aperture is: the central 3x3 of the 9x7 cutout, not the cutout's corner
    col, row = expected["aperture"]["column"], expected["aperture"]["row"]
    where = f"(columns {col + 3}-{col + 5}, rows {row + 2}-{row + 4})"
    page.wait_for_function(f"() => document.getElementById('lc-caption').textContent.includes('{where}')")
    assert f"aperture of 9 px {where}" in page.inner_text("#lc-caption")
    # every hosted sector with the target is offered
    assert page.eval_on_selector_all("#lc-sectors button", "els => els.map(e => e.dataset.sector)") == ["11", "38"]

    # the slider: frame 0 first, then the arrow key moves it and the image changes
    page.wait_for_function("() => { const i = document.getElementById('frame');"
                           " return i.complete && i.naturalWidth === 9 && i.dataset.frame === '0'; }")
    assert page.get_attribute("#frame-slider", "max") == "9"
    first = page.evaluate(_FRAME_HASH)
    page.focus("#frame-slider")
    for _ in range(5):  # to frame 5, in the synthetic star's transit
        page.keyboard.press("ArrowRight")
    assert page.input_value("#frame-slider") == "5"
    page.wait_for_function("() => { const i = document.getElementById('frame');"
                           " return i.complete && i.dataset.frame === '5' && i.src.includes('frame=5'); }")
    assert page.evaluate(_FRAME_HASH) != first
    assert "Frame 6 of 10" in page.inner_text("#frame-label")
    cursor = page.eval_on_selector("#lc-cursor", "l => +l.getAttribute('x1')")
    point = page.eval_on_selector("#lc-plot circle[data-frame='5']", "c => +c.getAttribute('cx')")
    assert abs(cursor - point) < 0.5  # the shown frame is marked on the plot

    # clicking a pixel of the frame adds it to the aperture: a new light curve of 10 pixels
    box = page.eval_on_selector("#aperture-overlay", "s => { const b = s.getBoundingClientRect();"
                                " return [b.left, b.top, b.width, b.height]; }")
    assert page.eval_on_selector_all("#aperture-overlay rect.ap", "r => r.length") == 9
    page.mouse.click(box[0] + box[2] * (0.5 / 9), box[1] + box[3] * (0.5 / 7))  # top-left pixel
    page.wait_for_function("() => document.getElementById('lc-caption').textContent.includes('10 px')")
    assert page.eval_on_selector_all("#aperture-overlay rect.ap", "r => r.length") == 10
    href = page.get_attribute("#lc-json", "href")
    assert "mask=100000000%2C" not in href and "%2C100000000" in href  # the top row is the last (north up)

    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "lightcurve.png"), full_page=True)

    # the other sector, picked from the listing
    page.click("#lc-sectors button[data-sector='11']")
    page.wait_for_function("() => document.getElementById('lc-title').textContent.includes('sector 11')"
                           " && document.getElementById('sector').value === '11'")
    # play runs through frames
    page.click("#play")
    page.wait_for_function("() => document.getElementById('frame').dataset.frame !== '5'", timeout=10000)
    page.click("#play")

    # the existing preview still works beside it
    assert page.eval_on_selector("#preview", "i => !i.hidden && i.naturalWidth === 9")
    # nothing was fetched from anywhere but this server, and the page logged no script errors
    assert requested and all(u.startswith(server.url) for u in requested), requested
    assert not problems, problems
    page.close()
    assert os.path.getsize(ARTIFACTS / "lightcurve.png") > 10_000


@pytest.mark.browser
def test_light_curve_of_a_1000_px_cutout_in_chromium(browser, make_server, service_data):
    """A big cutout's aperture (a million-character mask) travels in a POST body, not the URL."""
    server = make_server(cube_dirs=[str(service_data[0]["spoc38"].parent)], max_cutout_side=1000,
                         max_cutout_volume=1000 * 1000 * 10)
    page = browser.new_page(viewport={"width": 1280, "height": 1000}, accept_downloads=True)
    requests: list[tuple[str, str]] = []
    problems: list[str] = []
    page.on("request", lambda req: requests.append((req.method, req.url)))
    page.on("console", lambda msg: problems.append(msg.text) if msg.type == "error" else None)
    page.on("pageerror", lambda exc: problems.append(str(exc)))
    page.goto(server.url + "/", wait_until="networkidle")
    page.wait_for_function("document.querySelectorAll('#sector option[value=\"38\"]').length === 1")
    page.select_option("#sector", "38")
    page.fill("#size-x", "1000")
    page.fill("#size-y", "1000")
    # the page's aperture (the central 3x3) asked of the endpoint directly, as a POST form
    mask = ",".join("0" * 498 + "111" + "0" * 499 if 498 <= r <= 500 else "0" * 1000 for r in range(1000))
    with httpx.Client(base_url=server.url, timeout=60) as client:
        direct = client.post(LC, data={"ra": DEMO_RA, "dec": DEMO_DEC, "sector": 38, "mask": mask})
    assert direct.status_code == 200, direct.text[:300]
    col, row = direct.json()["aperture"]["column"], direct.json()["aperture"]["row"]
    where = f"aperture of 9 px (columns {col + 498}-{col + 500}, rows {row + 498}-{row + 500})"
    page.wait_for_function(f"() => document.getElementById('lc-caption').textContent.includes('{where}')"
                           " || document.getElementById('lc-caption').className.includes('error')", timeout=60000)
    caption = page.inner_text("#lc-caption")
    assert "10 cadences" in caption and where in caption, caption
    ys = page.eval_on_selector_all("#lc-plot circle.pt", "els => els.length")
    assert ys == 10
    lc_requests = [(m, u) for m, u in requests if "/api/v0.1/lightcurve" in u]
    assert lc_requests and all(m == "POST" and len(u) < 200 for m, u in lc_requests), lc_requests[:3]

    # clicking a pixel of the frame adds it: a new curve of 10 pixels, still by POST
    page.wait_for_function("() => document.getElementById('frame').complete"
                           " && document.getElementById('frame').naturalWidth === 1000")
    overlay = page.locator("#aperture-overlay")
    overlay.scroll_into_view_if_needed()
    box = overlay.bounding_box()
    assert box["width"] <= 1280 - 40  # the frame is shrunk to fit the page
    overlay.click(position={"x": box["width"] * 0.25, "y": box["height"] * 0.25})
    page.wait_for_function("() => document.getElementById('lc-caption').textContent.includes('10 px')",
                           timeout=60000)
    # the links: the answer as it came (a blob: URL), and a CSV fetched by POST when clicked
    href = page.get_attribute("#lc-json", "href")
    assert href.startswith("blob:")
    linked = page.evaluate("async (u) => (await (await fetch(u)).json()).aperture.pixels", href)
    assert linked == 10
    with page.expect_download() as download:
        page.click("#lc-csv")
    lines = Path(download.value.path()).read_text().splitlines()
    assert lines[0] == "time,flux,flux_err,quality" and len(lines) == 11
    assert not problems, problems
    page.close()

