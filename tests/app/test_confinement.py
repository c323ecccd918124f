"""Confinement over real HTTP: fits_cut / img_cut / combine read only under the image roots (or the
allowed s3:// prefixes) and write only under ``work_dir``, with generated names.

tests/app/test_images.py already checks five inputs on fits_cut; here every image route, GET and
POST, and the tricky forms: ``..`` after a real sub-folder, URL-encoded ``..%2f``, symlinks inside a
root that point out, FIFOs, s3:// prefix tricks, and SSRF. "Nothing opened" is proven without
monkeypatching:

- ``outside/secret.fits`` is a byte copy of ``root/img0.fits`` (which answers 200): had the server
  opened it, the request would have succeeded;
- ``outside/pipe.fits`` is a FIFO: a server that opened it would block in ``open`` (and the test
  sees a reader on the FIFO); none must appear;
- http(s) URLs and the S3 endpoint point at a canary TCP listener that counts connections; it must
  count none.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import socket
import threading
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest

from core.synthetic.ffis import DEMO_DEC, DEMO_RA
from tests.polling import wait_until

pytestmark = pytest.mark.timeout(60)

POS = {"ra": DEMO_RA, "dec": DEMO_DEC, "x": 5}
ROUTES = ["/fits_cut", "/img_cut", "/combine"]


class Canary:
    """A TCP listener that counts connections (and never answers)."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.hits = 0
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.hits += 1
            conn.close()


@pytest.fixture(scope="module")
def setup(tmp_path_factory, service_data):
    """A server with one image root and one allowed S3 prefix, and a tree to escape to."""
    import uvicorn

    from app.main import create_app
    from app.settings import Settings

    cubes, image_root, images = service_data
    base = tmp_path_factory.mktemp("confine")
    root, outside, work = base / "root", base / "outside", base / "work"
    for d in (root, outside, work, root / "sub"):
        d.mkdir()
    shutil.copy(image_root / images[0], root / "img0.fits")
    shutil.copy(image_root / images[0], outside / "secret.fits")  # would succeed if ever opened
    os.mkfifo(outside / "pipe.fits")
    os.symlink(outside / "secret.fits", root / "escape.fits")  # file symlink pointing out
    os.symlink(outside, root / "escdir")  # folder symlink pointing out
    os.symlink(outside / "pipe.fits", root / "pipe-link.fits")
    cube_dir = base / "cubes"
    cube_dir.mkdir()
    shutil.copy(cubes["spoc38"], cube_dir / "tess-s0038-2-2-cube.fits")
    canary = Canary()
    port = socket.socket()
    port.bind(("127.0.0.1", 0))
    free = port.getsockname()[1]
    port.close()
    settings = Settings(
        image_roots=[str(root), "s3://allowed/tess"], cube_dirs=[str(cube_dir)], work_dir=work, port=free,
        s3_endpoint_url=f"http://127.0.0.1:{canary.port}", s3_access_key_id="k", s3_secret_access_key="s",
        s3_connect_timeout_s=1, s3_read_timeout_s=1, s3_max_attempts=1, workers=2,
    )
    app = create_app(settings)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=free, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()

    def started() -> bool:
        assert thread.is_alive(), "server did not start"
        return server.started

    wait_until(started, message="server did not start")
    ns = type("Setup", (), {})()
    ns.url, ns.root, ns.outside, ns.work, ns.base, ns.canary = (
        f"http://127.0.0.1:{free}", root, outside, work, base, canary)
    ns.cube = cube_dir / "tess-s0038-2-2-cube.fits"
    try:
        yield ns
    finally:
        server.should_exit = True
        thread.join(10)


def fifo_has_reader(path) -> bool:
    """Whether some process holds the FIFO open for reading (a writer's non-blocking open succeeds)."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
    except OSError as exc:
        assert exc.errno == errno.ENXIO
        return False
    os.close(fd)
    return True


def escapes(s) -> list[str]:
    out = s.outside
    return [
        "../outside/secret.fits",  # plain ..
        "sub/../../outside/secret.fits",  # .. after a real sub-folder
        "./sub/../../outside/secret.fits",
        str(out / "secret.fits"),  # absolute, outside
        f"{s.root}/../outside/secret.fits",  # absolute, starts inside the root
        "escape.fits",  # a symlink inside the root pointing out
        "escdir/secret.fits",  # through a folder symlink
        f"file://{out / 'secret.fits'}",
        f"FILE:{out / 'secret.fits'}",
        "../outside/pipe.fits",
        "pipe-link.fits",
        str(out / "pipe.fits"),
        f"http://127.0.0.1:{s.canary.port}/secret.fits",  # SSRF
        f"https://127.0.0.1:{s.canary.port}/secret.fits",
        f"ftp://127.0.0.1:{s.canary.port}/secret.fits",
        "s3://other-bucket/tess/secret.fits",  # S3 outside the allowed prefix
        "s3://allowed/tessx/secret.fits",  # prefix must match whole segments
        "s3://allowed/tess/../private/secret.fits",
        "s3://allowed/tess/./../private/secret.fits",
        "s3:/allowed/tess/secret.fits",
        "C:\\Windows\\win.ini",
        "secret.fits\x00.png",
    ]


def test_control_the_same_bytes_inside_the_root_are_served(setup):
    """The escape targets are good FITS: a 403 below is confinement, not a bad file."""
    assert (setup.root / "img0.fits").read_bytes() == (setup.outside / "secret.fits").read_bytes()
    for route in ROUTES:
        r = httpx.get(f"{setup.url}/api/v0.1{route}", params={**POS, "images": "img0.fits"}, timeout=30)
        assert r.status_code == 200, r.text


@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize("method", ["GET", "POST"])
def test_escapes_are_403_and_nothing_is_opened(setup, route, method):
    """Guards against: reading any file outside the image roots (.., symlinks, absolute paths,
    schemes) and server-side requests to user-given URLs (SSRF)."""
    hits = setup.canary.hits
    for image in escapes(setup):
        params = {**POS, "images": [image, "img0.fits"]}  # a good input alongside does not help
        url = f"{setup.url}/api/v0.1{route}"
        r = httpx.get(url, params=params, timeout=10) if method == "GET" else httpx.post(url, data=params, timeout=10)
        assert r.status_code == 403, (image, r.status_code, r.text)
        body = r.json()
        assert body["error"]["field"] == "images" and body["error"]["code"] == "forbidden"
        assert str(setup.outside) not in body["msg"] or image.startswith(("/", "file", "FILE"))
    assert not fifo_has_reader(setup.outside / "pipe.fits")
    assert setup.canary.hits == hits  # no connection to the URL hosts or the S3 endpoint


@pytest.mark.parametrize("route", ROUTES)
def test_url_encoded_traversal_is_403(setup, route):
    """Guards against: ``..%2f`` (decoded once by the server into ``../``) slipping past a check
    done on the raw query, and a double-encoded ``..%252f`` being decoded again into a path."""
    base = f"{setup.url}/api/v0.1{route}?ra={DEMO_RA}&dec={DEMO_DEC}&x=5&images="
    for raw in ("..%2foutside%2fsecret.fits", "%2e%2e%2Foutside%2Fsecret.fits",
                quote(str(setup.outside / "secret.fits"), safe=""), "escdir%2Fsecret.fits"):
        r = httpx.get(base + raw, timeout=10)
        assert r.status_code == 403, (raw, r.text)
    # double-encoded: the server decodes once and looks for a file literally named so, in the root
    r = httpx.get(base + "..%252foutside%252fsecret.fits", timeout=10)
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found", r.text
    assert not fifo_has_reader(setup.outside / "pipe.fits")


def _tree(path) -> set[str]:
    return {os.path.relpath(os.path.join(d, f), path) for d, _dirs, files in os.walk(path) for f in files}


def test_uploads_are_written_only_under_work_dir_with_generated_names(setup):
    """Guards against: an upload's client-chosen file name writing outside work_dir
    (``../../x``, absolute paths) and temporary copies left behind."""
    data = (setup.root / "img0.fits").read_bytes()
    before = _tree(setup.base)
    hostile = [f"../../../{setup.base.name}/evil1.fits", str(setup.base / "evil2.fits"),
               "..\\..\\evil3.fits", "../outside/secret.fits", "escdir/evil4.fits"]
    for route in ROUTES:
        files = [("files", (name, data)) for name in hostile]
        r = httpx.post(f"{setup.url}/api/v0.1{route}", data=POS, files=files, timeout=30)
        assert r.status_code == 200, r.text
    assert _tree(setup.base) == before  # nothing new anywhere, work_dir included (temp removed)
    assert (setup.outside / "secret.fits").read_bytes() == data
    assert [p.name for p in setup.work.iterdir()] == ["index"]  # only the catalog index stays there


def test_moving_target_temp_files_stay_in_work_dir(setup):
    """Guards against: the object name (client input) steering where the intermediate TPFs are
    written, and those files outliving the request."""
    import numpy as np

    from core.cubes.cache import open_cube

    cube = open_cube(str(setup.cube))
    t = np.asarray(cube.time, dtype=float)
    ra = DEMO_RA + np.linspace(-3, 3, 6) * 21 / 3600 / np.cos(np.radians(DEMO_DEC))  # a ~6 px drift
    eph = {"time": np.linspace(t.min(), t.max(), 6).tolist(), "ra": ra.tolist(), "dec": [DEMO_DEC] * 6}
    before = _tree(setup.base)
    for obj_id in (f"../../../{setup.base.name}/escaped", "/tmp/abs-escaped", "..", "a/../../b", "y" * 100):
        r = httpx.get(f"{setup.url}/api/v0.1/moving_target/astrocut",
                      params={"ephemeris": json.dumps(eph), "obj_id": obj_id, "x": 5}, timeout=30)
        assert r.status_code == 200 and r.headers["content-type"] == "application/zip", r.text
        assert "/" not in r.headers["content-disposition"].split("filename=")[1]
    # names that cannot be file names are refused up front (were 500s: ENAMETOOLONG, NUL byte)
    for obj_id in ("x" * 300, "bad\x00name"):
        r = httpx.get(f"{setup.url}/api/v0.1/moving_target/astrocut",
                      params={"ephemeris": json.dumps(eph), "obj_id": obj_id, "x": 5}, timeout=30)
        assert r.status_code == 400 and r.json()["error"]["field"] == "obj_id", r.text
    assert _tree(setup.base) == before
    assert [p.name for p in setup.work.iterdir()] == ["index"]  # only the catalog index stays there
    assert not any(p.name.startswith("abs-escaped") for p in Path("/tmp").iterdir())
