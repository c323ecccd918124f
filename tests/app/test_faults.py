"""Faults over real HTTP: S3 outages, latency and 5xx, broken cube files, clients that vanish,
unexpected exceptions. The service must answer clearly (one error shape), stay up, and leave no
worker thread behind.

S3 faults are injected by a TCP proxy (tests/conftest.py ``FaultProxy``) in front of a real moto
server; servers are real uvicorn instances (``make_server``) with small S3 timeouts.
"""

from __future__ import annotations

import io
import logging
import os
import shutil
import socket
import struct
import zipfile
from urllib.parse import urlsplit

import httpx
import pytest
from astropy.io import fits

from core.synthetic.ffis import DEMO_DEC, DEMO_RA

pytestmark = pytest.mark.timeout(60)

POS = {"ra": DEMO_RA, "dec": DEMO_DEC}
CUT = {**POS, "x": 6, "y": 6}
S3_FAST = {  # bounded S3 behaviour for every server here
    "s3_access_key_id": "testing",
    "s3_secret_access_key": "testing",
    "s3_region": "us-east-1",
    "s3_connect_timeout_s": 1,
    "s3_read_timeout_s": 0.5,
    "s3_max_attempts": 2,
}


def assert_error(r: httpx.Response, status: int, field: str | None = "unset") -> dict:
    """The one error shape, with the request id of the header."""
    assert r.status_code == status, r.text
    body = r.json()
    err = body["error"]
    assert err["status"] == status and err["code"] and err["message"]
    assert body["msg"] == err["message"]
    assert err["request_id"] == r.headers["x-request-id"]
    if field != "unset":
        assert err["field"] == field
    if status == 503:
        assert int(r.headers["retry-after"]) > 0
    return body


def astrocut(server, sector: int, **params) -> httpx.Response:
    return httpx.get(f"{server.url}/api/v0.1/astrocut", params={**CUT, "sector": sector, **params}, timeout=30)


def zip_members(r: httpx.Response) -> list[str]:
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/zip"
    with zipfile.ZipFile(io.BytesIO(r.content)) as zf:
        assert zf.testzip() is None
        return zf.namelist()


def copy_cube(src, dst_dir, sector: int):
    """A copy of a cube renamed and re-labelled as another sector (so one position has many cubes)."""
    dst = dst_dir / f"tess-s{sector:04d}-2-2-cube.fits"
    shutil.copy(src, dst)
    fits.setval(dst, "SECTOR", value=sector, ext=0)
    return dst


@pytest.fixture
def local11(service_data, tmp_path):
    """A cube folder holding only sector 11 (a local cube that must keep working)."""
    cubes, _, _ = service_data
    d = tmp_path / "local"
    d.mkdir()
    shutil.copy(cubes["spoc11"], d / "tess-s0011-2-2-cube.fits")
    return d


def s3_server_with_cube(make_server, endpoint_url, bucket_host, service_data, local_dir, **extra):
    """A service hosting sector 38 on S3 (through ``endpoint_url``) and sector 11 locally."""
    cubes, _, _ = service_data
    bucket_host.upload(cubes["spoc38"], "faults", "tess/tess-s0038-2-2-cube.fits")
    return make_server(cube_dirs=["s3://faults/tess", str(local_dir)], s3_endpoint_url=endpoint_url,
                       workers=2, queue_size=4, **{**S3_FAST, **extra})


# ------------------------------------------------------------------------------------------
# S3
# ------------------------------------------------------------------------------------------


def test_s3_endpoint_stopped_answers_503_and_the_rest_keeps_working(make_server, service_data, local11,
                                                                    no_leaked_threads):
    """Guards against: a dead S3 endpoint hanging the request, surfacing as a 500, or taking the
    local cubes and /health down with it."""
    try:
        from tests.s3server import MotoS3Server
    except ImportError:  # pragma: no cover
        from s3server import MotoS3Server

    moto = MotoS3Server().start()
    try:
        server = s3_server_with_cube(make_server, moto.endpoint_url, moto, service_data, local11)
        assert server.services.catalog.sectors("SPOC") == [11, 38]
        assert len(zip_members(astrocut(server, 38))) == 1  # served from S3 while it is up
    finally:
        moto.stop()
    body = assert_error(astrocut(server, 38), 503)
    assert "s3://faults/tess" in body["msg"]
    assert len(zip_members(astrocut(server, 11))) == 1  # the local cube still answers
    health = httpx.get(server.url + "/health", timeout=10)
    assert health.status_code == 200 and health.json()["status"] == "ok"
    no_leaked_threads(pool=server.services.pool)


def test_s3_slow_is_bounded_then_recovers(make_server, s3_server, service_data, local11, fault_proxy,
                                          no_leaked_threads):
    """Guards against: an S3 endpoint that stops answering holding a request (and a worker) forever.
    The read timeout (0.5 s, 2 attempts) or the request deadline ends it with 503/504."""
    proxy = fault_proxy(s3_server.endpoint_url)
    server = s3_server_with_cube(make_server, proxy.endpoint_url, s3_server, service_data, local11,
                                 request_timeout_s=6)
    assert len(zip_members(astrocut(server, 38))) == 1
    proxy.mode, proxy.delay_s = "delay", 1.5  # every request waits 1.5 s > read timeout
    r = astrocut(server, 38)
    assert_error(r, r.status_code)
    assert r.status_code in (503, 504)
    assert len(zip_members(astrocut(server, 11))) == 1  # local work meanwhile is unaffected
    no_leaked_threads(15, pool=server.services.pool)
    proxy.mode = "silent"  # accepts and never answers at all
    r = astrocut(server, 38)
    assert r.status_code in (503, 504)
    assert_error(r, r.status_code)
    no_leaked_threads(15, pool=server.services.pool)
    proxy.mode = "pass"
    assert len(zip_members(astrocut(server, 38))) == 1  # back to normal


def test_s3_errors_answer_503_after_bounded_retries(make_server, s3_server, service_data, local11,
                                                     fault_proxy, no_leaked_threads):
    """Guards against: S3 500s reported as 500/422, retried without bound, or never retried."""
    proxy = fault_proxy(s3_server.endpoint_url)
    server = s3_server_with_cube(make_server, proxy.endpoint_url, s3_server, service_data, local11)
    before = proxy.requests
    assert len(zip_members(astrocut(server, 38))) == 1
    gets_per_cutout = proxy.requests - before
    assert gets_per_cutout >= 1
    proxy.mode = "error"
    before = proxy.requests
    body = assert_error(astrocut(server, 38), 503)
    assert "InternalError" in body["msg"] or "500" in body["msg"]
    attempts = proxy.requests - before
    max_attempts = server.settings.s3.max_attempts
    assert max_attempts <= attempts <= max_attempts * gets_per_cutout  # retried, but bounded
    no_leaked_threads(pool=server.services.pool)
    proxy.mode = "pass"
    assert len(zip_members(astrocut(server, 38))) == 1


# ------------------------------------------------------------------------------------------
# broken cube files
# ------------------------------------------------------------------------------------------


def test_corrupt_and_truncated_cubes_are_skipped_at_index_time(make_server, service_data, tmp_path, caplog):
    """Guards against: one bad file in the cube folder failing start-up or being served."""
    cubes, _, _ = service_data
    d = tmp_path / "cubes"
    d.mkdir()
    shutil.copy(cubes["spoc38"], d / "tess-s0038-2-2-cube.fits")
    data = cubes["spoc38"].read_bytes()
    (d / "tess-s0011-2-2-cube.fits").write_bytes(data[: len(data) // 2])  # truncated
    garbage = bytearray(data)
    garbage[80:2000] = os.urandom(1920)  # garbage in the primary header
    (d / "tess-s0012-2-2-cube.fits").write_bytes(bytes(garbage))
    with caplog.at_level(logging.INFO, logger="app"):
        server = make_server(cube_dirs=[str(d)])
    skipped = {os.path.basename(uri): why for uri, why in server.services.catalog.skipped}
    assert set(skipped) == {"tess-s0011-2-2-cube.fits", "tess-s0012-2-2-cube.fits"}
    assert "truncated" in skipped["tess-s0011-2-2-cube.fits"]
    logged = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR and "skipping cube" in r.getMessage()]
    assert len(logged) == 2 and any("tess-s0012-2-2-cube.fits" in m for m in logged)
    health = httpx.get(server.url + "/health", timeout=10).json()
    assert health["catalog"]["SPOC"] == [38] and health["catalog"]["skipped"] == 2
    assert len(zip_members(astrocut(server, 38))) == 1


def test_cube_truncated_after_indexing_answers_422_and_service_keeps_answering(make_server, service_data,
                                                                               tmp_path, local11):
    """Guards against: a cube that shrinks under the server producing a 500, a garbage TPF, or a hang."""
    cubes, _, _ = service_data
    d = tmp_path / "cubes"
    d.mkdir()
    victim = d / "tess-s0038-2-2-cube.fits"
    shutil.copy(cubes["spoc38"], victim)
    server = make_server(cube_dirs=[str(d), str(local11)])
    assert len(zip_members(astrocut(server, 38))) == 1
    os.truncate(victim, 4 * 2880)  # headers only: the pixel rows are gone
    body = assert_error(astrocut(server, 38), 422)
    assert "tess-s0038-2-2-cube.fits" in body["msg"] and ("shrank" in body["msg"] or "truncated" in body["msg"])
    assert len(zip_members(astrocut(server, 11))) == 1
    assert httpx.get(server.url + "/health", timeout=10).json()["status"] == "ok"


# ------------------------------------------------------------------------------------------
# clients that go away
# ------------------------------------------------------------------------------------------


def test_client_disconnecting_mid_zip_leaks_nothing(make_server, service_data, tmp_path, no_leaked_threads):
    """Guards against: a client that closes a zip download half-way leaving a worker thread busy
    (or the pool slot taken) forever, or breaking the server."""
    cubes, _, _ = service_data
    d = tmp_path / "cubes"
    d.mkdir()
    sectors = [38, 39, 40, 41, 42, 43]
    for s in sectors:
        copy_cube(cubes["spoc38"], d, s)
    server = make_server(cube_dirs=[str(d)], workers=2, queue_size=4)
    params = {**POS, "x": 40, "y": 40}
    full = httpx.get(f"{server.url}/api/v0.1/astrocut", params=params, timeout=30)
    assert len(zip_members(full)) == len(sectors)
    assert len(full.content) > 1_000_000  # far more than the few bytes read below
    no_leaked_threads()

    host, port = urlsplit(server.url).hostname, urlsplit(server.url).port
    query = httpx.QueryParams(params)
    for _ in range(3):
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.connect((host, port))
        sock.sendall(f"GET /api/v0.1/astrocut?{query} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
        head = b""
        while b"PK\x03\x04" not in head:
            chunk = sock.recv(1024)
            assert chunk, "server closed before the zip started"
            head += chunk
        assert head.startswith(b"HTTP/1.1 200")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()  # abrupt: RST

    no_leaked_threads(15, pool=server.services.pool)  # threads gone and every slot given back
    assert httpx.get(server.url + "/health", timeout=10).status_code == 200
    assert len(zip_members(httpx.get(f"{server.url}/api/v0.1/astrocut", params=params, timeout=30))) == len(sectors)


# ------------------------------------------------------------------------------------------
# unexpected errors
# ------------------------------------------------------------------------------------------


def test_unexpected_exception_is_500_with_request_id_and_no_traceback(make_server, caplog):
    """Guards against: an unforeseen exception leaking its traceback or internals to the client,
    answering without the error shape, or not being logged."""

    def install(app):
        async def boom():
            raise RuntimeError("secret internal detail /etc/shadow")

        def boom_sync():  # on the worker pool too
            raise KeyError("another internal detail")

        async def boom_in_pool():
            return await app.state.services.pool.run(boom_sync)

        app.add_api_route("/boom", boom)
        app.add_api_route("/boom-pool", boom_in_pool)

    server = make_server(install=install)
    for path, leak in (("/boom", "secret internal detail"), ("/boom-pool", "another internal detail")):
        caplog.clear()
        with caplog.at_level(logging.ERROR):
            r = httpx.get(server.url + path, headers={"X-Request-ID": "req-500-test"}, timeout=10)
        body = assert_error(r, 500, None)
        assert body["error"]["code"] == "internal_error"
        assert body["error"]["request_id"] == "req-500-test" and "req-500-test" in body["msg"]
        assert leak not in r.text and "Traceback" not in r.text and "Error" not in body["msg"]
        logged = [rec for rec in caplog.records if rec.name == "app.errors"]
        assert logged and logged[0].exc_info is not None and "req-500-test" in logged[0].getMessage()
        assert leak in caplog.text  # the traceback went to the log
    assert httpx.get(server.url + "/health", timeout=10).status_code == 200


def test_every_error_status_has_the_one_shape(live_server):
    """Guards against: a status produced outside the error table (Starlette's default 404/405/422
    bodies, a plain-text 413) breaking clients that read ``error``/``msg``."""
    api = live_server.url + "/api/v0.1"
    cases = [
        (httpx.get(f"{api}/astrocut", params={"ra": "x", "dec": 1}), 400),
        (httpx.get(f"{api}/fits_cut", params={**POS, "images": "/etc/passwd"}), 403),
        (httpx.get(f"{live_server.url}/no/such/route"), 404),
        (httpx.put(f"{api}/astrocut"), 405),
        (httpx.get(f"{api}/astrocut", params={**POS, "x": 999}), 413),
        (httpx.post(f"{api}/fits_cut", data={**POS, "x": 5},
                    files=[("files", ("bad.fits", b"SIMPLE  =                    T" + b" " * 3000))]), None),
        (httpx.get(f"{api}/moving_target/sector", params={"obj_id": "Ceres"}), 422),  # no resolver: permanent
    ]
    for r, status in cases:
        assert_error(r, status or r.status_code)
        assert r.headers["content-type"].startswith("application/json")
