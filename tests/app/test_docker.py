"""The service image, built from the Dockerfile and run for real.

Skipped, with the reason, where Docker cannot run (no ``docker`` client, no daemon: CI's case) or the
base image is neither here nor pullable. The base is ``$DOCKER_TEST_PYTHON_BASE`` (default
``python:3.11-slim``), passed as the Dockerfile's ``PYTHON_BASE`` build argument; on a machine that
cannot reach a registry, ``scripts/docker_standins.sh python`` builds a local stand-in:

    scripts/docker_standins.sh python
    DOCKER_TEST_PYTHON_BASE=tess-standin/python:3.11-slim .venv/bin/python -m pytest tests/app/test_docker.py

Checked: the layers above the base stay within the size budget; the container (default command: the
synthetic demo sectors) answers ``/health`` and serves a cutout equal to the engine's, and every
route, Dask batch cutouts and ``cutout demo-data`` work inside it; Docker's HEALTHCHECK turns
"healthy"; it runs as uid 10001 and cannot write its code; an arbitrary uid in group 0 (OpenShift,
Kubernetes ``runAsUser``) serves too, writing its demo data; ``docker stop`` ends it cleanly.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import urllib.error
import urllib.parse
import urllib.request
import uuid
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from core.synthetic.ffis import DEMO_DEC, DEMO_RA
from tests.polling import wait_until

ROOT = Path(__file__).resolve().parents[2]
BASE = os.environ.get("DOCKER_TEST_PYTHON_BASE", "python:3.11-slim")
#: the layers the Dockerfile adds above its base, at most (what a new replica pulls besides the base)
LAYER_BUDGET_BYTES = 350 * 10**6
#: uid the image runs as, and an arbitrary one in group 0 as OpenShift assigns
IMAGE_UID = 10001
ARBITRARY_UID = 12345
POS = {"ra": DEMO_RA, "dec": DEMO_DEC}
FFI = "s0038/tess2021118175850-s0038-2-2-0209-s_ffic.fits"  # one of the demo sector's FFIs
FFI_2 = "s0038/tess2021118180850-s0038-2-2-0209-s_ffic.fits"

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1500)]


def _docker(*args: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run ``docker ARGS``; with ``check``, fail the test with docker's stderr when it fails."""
    result = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout, check=False,
                            stdin=subprocess.DEVNULL)
    if check and result.returncode != 0:
        pytest.fail(f"docker {' '.join(args[:3])} ... failed ({result.returncode}): {result.stderr[-3000:]}")
    return result


@pytest.fixture(scope="module")
def docker_base() -> str:
    """The base image, present locally (pulled if it can be); skips when Docker cannot run here."""
    if shutil.which("docker") is None:
        pytest.skip("the docker client is not installed")
    info = _docker("info", "--format", "{{.ServerVersion}}", timeout=60, check=False)
    if info.returncode != 0:
        pytest.skip(f"no Docker daemon answers: {info.stderr.strip().splitlines()[-1:]}")
    if _docker("image", "inspect", BASE, check=False).returncode != 0:
        try:
            pulled = _docker("pull", BASE, timeout=600, check=False)
        except subprocess.TimeoutExpired:
            pulled = None
        if pulled is None or pulled.returncode != 0:
            pytest.skip(f"base image {BASE} is not here and cannot be pulled; build a stand-in with "
                        "scripts/docker_standins.sh python and set DOCKER_TEST_PYTHON_BASE")
    return BASE


@pytest.fixture(scope="module")
def image(docker_base) -> Iterator[str]:
    """The image built from the Dockerfile on ``docker_base``; removed afterwards."""
    tag = f"tess-cutout:test-{uuid.uuid4().hex[:8]}"
    build = _docker("build", "--network", "host", "--build-arg", f"PYTHON_BASE={docker_base}", "-t", tag,
                    str(ROOT), timeout=1800, check=False)
    assert build.returncode == 0, (build.stdout + build.stderr)[-5000:]
    try:
        yield tag
    finally:
        _docker("image", "rm", "-f", tag, check=False)


class Container:
    """One detached container of the image, its port 8000 published on 127.0.0.1 (a free port)."""

    def __init__(self, image: str, *run_args: str) -> None:
        self.name = f"tess-cutout-test-{uuid.uuid4().hex[:8]}"
        _docker("run", "-d", "--name", self.name, "-p", "127.0.0.1::8000", *run_args, image)
        port = _docker("port", self.name, "8000/tcp").stdout.strip().splitlines()[0]
        self.url = f"http://127.0.0.1:{port.rsplit(':', 1)[1]}"

    def get(self, path: str, params: dict | list | None = None, timeout: float = 60) -> tuple[int, str, bytes]:
        """(status, content type, body) of a GET."""
        url = self.url + path + ("?" + urllib.parse.urlencode(params, doseq=True) if params else "")
        try:
            with urllib.request.urlopen(url, timeout=timeout) as resp:
                return resp.status, resp.headers.get("Content-Type", ""), resp.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.headers.get("Content-Type", ""), exc.read()

    def wait_healthy_http(self, timeout: float = 300) -> dict:
        """Poll ``/health`` until it answers 200 (the first start writes the demo sectors)."""
        def health() -> dict | None:
            try:
                status, _type, body = self.get("/health", timeout=5)
                if status == 200:
                    return json.loads(body)
            except OSError:
                pass
            if not self.running():
                pytest.fail(f"{self.name} stopped before serving /health: {self.logs()[-3000:]}")
            return None

        try:
            return wait_until(health, timeout=timeout, interval=0.5)
        except AssertionError:
            pytest.fail(f"{self.name} did not serve /health: {self.logs()[-3000:]}")

    def running(self) -> bool:
        return _docker("inspect", "--format", "{{.State.Running}}", self.name).stdout.strip() == "true"

    def state(self, template: str) -> str:
        return _docker("inspect", "--format", template, self.name).stdout.strip()

    def exec(self, *command: str) -> subprocess.CompletedProcess[str]:
        return _docker("exec", self.name, *command, check=False, timeout=300)

    def logs(self) -> str:
        result = _docker("logs", self.name, check=False)
        return result.stdout + result.stderr

    def stop(self) -> int:
        """``docker stop`` (SIGTERM, SIGKILL after 10 s); returns the exit code."""
        _docker("stop", self.name, timeout=60)
        return int(self.state("{{.State.ExitCode}}"))

    def remove(self) -> None:
        _docker("rm", "-f", self.name, check=False)


@pytest.fixture(scope="module")
def served(image) -> Iterator[Container]:
    """The image's default command, as uid 10001, with the demo FFIs as image roots and surveys."""
    container = Container(image, "-e", 'CUTOUT_IMAGE_ROOTS=["/srv/demo-data"]',
                          "-e", 'CUTOUT_SURVEYS={"demo": ["/srv/demo-data/s0038"], "hap": ["/srv/demo-data/s0011"]}')
    try:
        container.wait_healthy_http()
        yield container
    finally:
        container.remove()


def test_layers_above_the_base_fit_the_budget(image, docker_base):
    size = int(_docker("image", "inspect", "--format", "{{.Size}}", image).stdout)
    base = int(_docker("image", "inspect", "--format", "{{.Size}}", docker_base).stdout)
    history = _docker("history", "--no-trunc", "--format", "{{.Size}}\t{{.CreatedBy}}", image).stdout
    print(f"\nimage {size / 1e6:.1f} MB, base {base / 1e6:.1f} MB, above the base {(size - base) / 1e6:.1f} MB")
    assert 0 < size - base <= LAYER_BUDGET_BYTES, history
    # nothing of the build is left in it: no sources, no pip caches, no tesswcs plotting stack
    found = _docker("run", "--rm", "--entrypoint", "python", image, "-c",
                    "import importlib.util as u, os; print([m for m in ('matplotlib', 'pandas', 'astroquery') "
                    "if u.find_spec(m)], os.path.exists('/src'), os.path.exists('/root/.cache/pip'))").stdout
    assert found.strip() == "[] False False"


def test_serves_health_and_a_cutout_equal_to_the_engine(served, tmp_path):
    from astropy.coordinates import SkyCoord
    from astropy.io import fits

    from core.tpf.cut import CutoutFactory

    health = json.loads(served.get("/health")[2])
    assert health["status"] == "ok" and health["catalog"]["SPOC"] == [11, 38]
    status, ctype, body = served.get("/tesscut/api/v0.1/astrocut", {**POS, "x": 5, "y": 5, "units": "px",
                                                                    "sector": 38})
    assert status == 200 and ctype == "application/zip"
    with zipfile.ZipFile(io.BytesIO(body)) as zf:
        [name] = zf.namelist()
        with fits.open(io.BytesIO(zf.read(name))) as hdul:
            flux = hdul[1].data["FLUX"].copy()
    # the same cut of the same cube, outside the container
    _docker("cp", f"{served.name}:/srv/demo-data/tess-s0038-2-2-cube.fits", str(tmp_path / "cube.fits"))
    expected = CutoutFactory().cube_cut(str(tmp_path / "cube.fits"), SkyCoord(DEMO_RA, DEMO_DEC, unit="deg"), 5,
                                        memory_only=True)[1].data["FLUX"]
    assert flux.shape == (20, 5, 5)
    assert (flux == expected).all()


def test_every_route_answers_in_the_image(served):
    """Each route, with a valid request, answers 200 and the right kind of body: nothing it needs at
    run time is missing from the image (tesswcs's data for ffi_wcs, scipy for moving targets, ...)."""
    lc = json.loads(served.get("/tesscut/api/v0.1/lightcurve", {**POS, "sector": 38})[2])
    ephemeris = json.dumps({"time": [lc["time"][0], lc["time"][-1]], "ra": [DEMO_RA, DEMO_RA + 0.001],
                            "dec": [DEMO_DEC, DEMO_DEC]})
    cut = {**POS, "x": 5, "y": 5}
    checks = [
        ("/version", None, "application/json"),
        ("/metrics", None, "text/plain"),
        ("/", None, "text/html"),
        ("/docs", None, "text/html"),
        ("/tesscut/api/v0.1/sector", POS, "application/json"),
        ("/tesscut/api/v0.1/ffi_wcs", {"sector": 38, "camera": 2, "ccd": 2}, "application/json"),
        ("/tesscut/api/v0.1/ffi_wcs", {"sector": 5, "camera": 1, "ccd": 1}, "application/json"),  # tesswcs's
        ("/tesscut/api/v0.1/moving_target/sector", {"ephemeris": ephemeris}, "application/json"),
        ("/tesscut/api/v0.1/moving_target/astrocut", {"ephemeris": ephemeris, "x": 5, "sector": 38},
         "application/zip"),
        ("/tesscut/api/v0.1/fits_cut", {**cut, "images": FFI}, "application/fits"),
        ("/tesscut/api/v0.1/img_cut", {**cut, "images": FFI}, "image/png"),
        ("/tesscut/api/v0.1/combine", [*cut.items(), ("images", FFI), ("images", FFI_2)], "application/fits"),
        ("/zcut/api/v0.1/survey", POS, "application/json"),
        ("/zcut/api/v0.1/astrocut", cut, "application/zip"),
        ("/hapcut/api/v0.1/astrocut", cut, "application/zip"),
    ]
    failed = []
    for path, params, kind in checks:
        status, ctype, body = served.get(path, params)
        if status != 200 or not ctype.startswith(kind):
            failed.append((path, status, ctype, body[:300]))
    assert not failed, failed
    wcs = json.loads(served.get("/tesscut/api/v0.1/ffi_wcs", {"sector": 5, "camera": 1, "ccd": 1})[2])
    assert wcs["wcs"]["CTYPE1"] == "RA---TAN-SIP"
    assert [r["sector"] for r in json.loads(served.get("/tesscut/api/v0.1/moving_target/sector",
                                                       {"ephemeris": ephemeris})[2])["results"]] == ["0038"]


def test_batch_on_dask_and_demo_data_run_in_the_image(served):
    """The image's CLI: ``cutout batch`` (a Dask LocalCluster) and ``cutout demo-data``."""
    script = ("set -e; cd /srv/work; printf 'ra,dec,name\\n%s,%s,demo\\n' > targets.csv; "
              "cutout batch targets.csv --size 5 --out batch --workers 2 --cube-dir /srv/demo-data; "
              "cat batch/manifest.csv; cutout demo-data --out /srv/work/demo2 --frames 3 --size 32x32")
    result = served.exec("sh", "-c", script % (DEMO_RA, DEMO_DEC))
    assert result.returncode == 0, result.stdout + result.stderr
    rows = [line.split(",") for line in result.stdout.splitlines() if line.startswith("0,demo,")]
    assert sorted(row[4] for row in rows) == ["11", "38"] and all("ok" in row for row in rows), result.stdout
    assert "tess-s0038-2-2-cube.fits" in result.stdout


def test_healthcheck_turns_healthy(served):
    def healthy() -> bool:
        status = served.state("{{.State.Health.Status}}")
        assert status in ("starting", "healthy"), served.state("{{json .State.Health}}")
        return status == "healthy"

    # the image's start period is 120 s, its interval 10 s
    wait_until(healthy, timeout=300, interval=1, message=lambda: served.state("{{json .State.Health}}"))
    assert served.state("{{(index .State.Health.Log 0).ExitCode}}") in ("0", "1")  # probes ran


def test_runs_as_a_non_root_uid_that_cannot_write_its_code(served):
    assert served.state("{{.Config.User}}") == f"{IMAGE_UID}:0"
    probe = served.exec("python", "-c", "import os, app; print(os.getuid(), os.getgid(), "
                        "os.access(os.path.dirname(app.__file__), os.W_OK), os.access('/srv/work', os.W_OK))")
    assert probe.stdout.split() == [str(IMAGE_UID), "0", "False", "True"], probe.stderr


def test_an_arbitrary_uid_in_group_0_serves_and_stops_cleanly(image):
    """``docker run --user 12345:0``: a uid not in /etc/passwd writes the demo sectors to the image's
    folders (group 0, group-writable) and serves them; ``docker stop`` ends it with exit code 0."""
    container = Container(image, "--user", f"{ARBITRARY_UID}:0")
    try:
        health = container.wait_healthy_http()
        assert health["catalog"]["SPOC"] == [11, 38]
        status, ctype, _body = container.get("/tesscut/api/v0.1/astrocut", {**POS, "x": 5, "y": 5, "sector": 11})
        assert status == 200 and ctype == "application/zip"
        owners = container.exec("sh", "-c", "id -u; stat -c %u /srv/demo-data/tess-s0011-2-2-cube.fits "
                                "/srv/work/index/catalog.sqlite")
        assert owners.stdout.split() == [str(ARBITRARY_UID)] * 3, owners.stdout + owners.stderr
        assert container.stop() == 0, container.logs()[-3000:]  # SIGTERM handled: no SIGKILL (137)
    finally:
        container.remove()
