"""The page's "many targets" form (app/static/jobs.js) in Debian's headless Chromium (Playwright):
it posts a CSV as one job, shows the job's progress and links its results. Skips only when
``/usr/bin/chromium`` is absent; saves ``test-artifacts/jobs.png``."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import httpx
import pytest

from tests.uws_client import manifest_rows

pytestmark = pytest.mark.timeout(180)

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"


def test_page_loads_the_jobs_script(make_server, service_data):
    cubes, _, _ = service_data
    server = make_server(cube_dirs=[str(cubes["spoc38"].parent)])
    with httpx.Client(base_url=server.url, timeout=30) as http:
        assert '<script src="static/jobs.js"></script>' in http.get("/").text
        script = http.get("/static/jobs.js")
        assert script.status_code == 200 and "api/v0.1/async" in script.text


@pytest.mark.browser
def test_many_targets_form_runs_a_job_in_chromium(make_server, service_data):
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is absent (apt-get install chromium): the browser test needs it")
    sync_api = pytest.importorskip("playwright.sync_api")
    from core.synthetic.ffis import DEMO_DEC, DEMO_RA

    cubes, _, _ = service_data
    server = make_server(cube_dirs=[str(cubes["spoc38"].parent)], jobs_dask_workers=1, jobs_dask_memory_limit="1GiB")
    table = f"name,ra,dec\nstar,{DEMO_RA},{DEMO_DEC}\nnear,{DEMO_RA + 0.002},{DEMO_DEC}\noff,10,10\n".encode()
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 1100})
            problems: list[str] = []
            page.on("pageerror", lambda exc: problems.append(str(exc)))
            page.goto(server.url + "/", wait_until="networkidle")
            page.set_input_files("#jobs-file", files=[{"name": "targets.csv", "mimeType": "text/csv",
                                                       "buffer": table}])
            page.fill("#jobs-x", "4")
            page.fill("#jobs-y", "3")
            page.click("#jobs-submit")
            page.wait_for_function("!document.getElementById('jobs-links').hidden", timeout=120_000)
            status = page.inner_text("#jobs-status")
            assert status.startswith("COMPLETED: 3 of 3 targets done") and "4 files, 1 errors" in status
            assert page.eval_on_selector("#jobs-progress", "p => [p.value, p.max]") == [3, 3]
            zip_href = page.get_attribute("#jobs-zip", "href")
            manifest_href = page.get_attribute("#jobs-manifest", "href")
            job_href = page.get_attribute("#jobs-url", "href")
            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "jobs.png"), full_page=True)
            # a table the service refuses: the form shows the service's message
            page.set_input_files("#jobs-file", files=[{"name": "t.csv", "mimeType": "text/csv",
                                                       "buffer": b"name,dec\nx,1\n"}])
            page.click("#jobs-submit")
            page.wait_for_function("document.getElementById('jobs-status').className === 'error'")
            assert "'ra' column" in page.inner_text("#jobs-status")
            assert not problems, problems
        finally:
            browser.close()
    assert job_href.startswith(server.url + "/api/v0.1/async/")
    names = zipfile.ZipFile(io.BytesIO(httpx.get(zip_href, timeout=30).content)).namelist()
    assert len([n for n in names if n.endswith("_4x3_astrocut.fits")]) == 4  # 2 targets x sectors 38, 11
    rows = manifest_rows(httpx.get(manifest_href, timeout=30).text)
    assert [r["status"] for r in rows].count("error") == 1
