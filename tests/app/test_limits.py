"""Limits over real HTTP: cutout side, pixels x frames, input files, request body, per-request
deadline (504) and a full queue (503 + Retry-After). Each answer names the limit.

The session ``live_server`` has max_cutout_side=50, max_cutout_volume=4000, max_upload_bytes=2 MB,
max_input_files=16 (the default). Slow requests come from an S3 cube behind the latency proxy
(tests/conftest.py ``FaultProxy``).
"""

from __future__ import annotations

import io
import json
import socket
import threading
from urllib.parse import urlsplit

import httpx
import pytest

from app.settings import Settings
from core.synthetic.ffis import DEMO_DEC, DEMO_RA
from tests.api_calls import assert_error
from tests.polling import wait_until

pytestmark = pytest.mark.timeout(60)

POS = {"ra": DEMO_RA, "dec": DEMO_DEC}


def api(server, path: str) -> str:
    return f"{server.url}/api/v0.1{path}"


# ------------------------------------------------------------------------------------------
# defaults
# ------------------------------------------------------------------------------------------


def test_default_limits_are_sane(live_server):
    """Guards against: defaults that either refuse ordinary TESScut requests or let one request
    take the server down (documented in app/settings.py's docstring)."""
    s = Settings(_env_file=None)
    # a cutout side: bigger than anything TESScut users ask for, at most one FFI (2136 columns)
    assert 100 <= s.max_cutout_side <= 2136
    # pixels x frames: a 100x100 cutout of a 200-s cadence sector (~11,900 frames) must pass ...
    assert s.max_cutout_volume >= 100 * 100 * 11_900
    # ... while the TPF it allows stays a few GB: measure this engine's bytes per pixel-frame
    r = httpx.get(api(live_server, "/astrocut"), params={**POS, "x": 20, "y": 20, "sector": 38}, timeout=30)
    import zipfile

    with zipfile.ZipFile(io.BytesIO(r.content)) as zf:
        from astropy.io import fits

        with fits.open(io.BytesIO(zf.read(zf.infolist()[0]))) as hdul:
            row_bytes = hdul[1].header["NAXIS1"]  # one frame's table row: the bulk of a big TPF
    per_pixel_frame = row_bytes / (20 * 20)
    # ... and it is streamed through a pixel spool: the TPF stays a size a client can take (~10 GB),
    # its spool (8 bytes per pixel-frame) a few GB of the disk budget
    assert s.max_cutout_volume * per_pixel_frame < 12e9
    assert s.max_cutout_volume * 8 < 5e9
    assert 1 <= s.max_input_files <= 100
    assert 1e6 <= s.max_upload_bytes <= 1e9
    assert 10 <= s.request_timeout_s <= 600
    assert s.workers >= 2 and 0 < s.queue_size <= 1000
    assert 0 < s.shutdown_grace_s <= 60  # inside the usual 30 s of a container stop... or near it


# ------------------------------------------------------------------------------------------
# sizes and counts
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path, params, field",
    [
        ("/astrocut", {"x": 5, "y": 51}, "y"),
        ("/astrocut", {"x": 0.5, "units": "d"}, "x"),  # ~86 px: angular sizes are limited too
        ("/astrocut", {"x": 300, "units": "arcmin"}, "x"),
        ("/fits_cut", {"x": 51, "images": "img0.fits"}, "x"),
        ("/img_cut", {"x": 5, "y": 51, "images": "img0.fits"}, "y"),
        ("/combine", {"x": 51, "images": "img0.fits"}, "x"),
    ],
)
def test_cutout_side_limit(live_server, path, params, field):
    """Guards against: a huge cutout side being accepted (memory, minutes of work)."""
    r = httpx.get(api(live_server, path), params={**POS, **params}, timeout=30)
    assert_error(r, 413, field, "50")


@pytest.mark.parametrize("route", ["/fits_cut", "/img_cut", "/combine"])
def test_angular_sizes_are_held_to_the_side_limit_on_image_routes(live_server, route):
    """Guards against: an angular size bypassing max_cutout_side on the image routes."""
    images = live_server.images[:2]
    r = httpx.get(api(live_server, route), params={**POS, "images": images, "x": 60, "units": "d"}, timeout=60)
    assert_error(r, 413, "x", "max_cutout_side", "50")
    # 0.5 arcmin = 30 arcsec: 2 pixels of 21": allowed
    ok = httpx.get(api(live_server, route), params={**POS, "images": images, "x": 0.5, "units": "m"}, timeout=60)
    assert ok.status_code == 200, ok.text[:300]


def test_cutout_volume_limit_names_the_limit(live_server):
    """Guards against: pixels x frames unchecked (a legal side, but too many pixel-frames)."""
    r = httpx.get(api(live_server, "/astrocut"), params={**POS, "x": 21, "y": 21}, timeout=30)
    assert_error(r, 413, "x", "4410", "4000")  # 21*21*10 frames
    eph = json.dumps({"time": [0, 1e9], "ra": [DEMO_RA, DEMO_RA], "dec": [DEMO_DEC, DEMO_DEC]})
    r = httpx.get(api(live_server, "/moving_target/astrocut"), params={"ephemeris": eph, "x": 1, "units": "d"},
                  timeout=30)
    assert r.status_code in (200, 413)  # no cube spans that path, or refused: never a 500


@pytest.mark.parametrize("path", ["/fits_cut", "/img_cut", "/combine"])
def test_input_file_limit_counts_paths_and_uploads(live_server, path):
    """Guards against: the per-request input count being bypassed by mixing paths and uploads."""
    data = (live_server.image_root / "img0.fits").read_bytes()
    r = httpx.post(api(live_server, path), data={**POS, "x": 5, "images": ["img0.fits"] * 16},
                   files=[("files", ("up.fits", data))], timeout=30)
    assert_error(r, 413, "images", "16")
    r = httpx.get(api(live_server, path), params={**POS, "x": 5, "images": ["img0.fits"] * 16}, timeout=30)
    assert r.status_code == 200, r.text  # 16 is allowed


# ------------------------------------------------------------------------------------------
# request body
# ------------------------------------------------------------------------------------------


def _raw(server) -> socket.socket:
    parts = urlsplit(server.url)
    return socket.create_connection((parts.hostname, parts.port), timeout=10)


def _read_response(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(65536)
        assert chunk, f"connection closed before a response: {buf!r}"
        buf += chunk
    head, _, body = buf.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.strip().lower(): v.strip() for k, v in (ln.split(":", 1) for ln in lines[1:])}
    length = int(headers.get("content-length", "0"))
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return status, headers, body


def test_huge_content_length_is_refused_before_the_body_is_read(live_server):
    """Guards against: reading (or waiting for) a 10 GB body before refusing it. The body is never
    sent: the 413 can only come back if the server refuses on the header alone."""
    with _raw(live_server) as sock:
        sock.sendall(
            b"POST /api/v0.1/fits_cut HTTP/1.1\r\nHost: t\r\nX-Request-ID: big-1\r\n"
            b"Content-Type: multipart/form-data; boundary=xyz\r\nContent-Length: 10000000000\r\n\r\n"
        )
        status, headers, body = _read_response(sock)
    assert status == 413
    err = json.loads(body)["error"]
    assert err["field"] == "body" and "2000000" in err["message"] and err["request_id"] == "big-1"
    assert headers["x-request-id"] == "big-1"
    assert headers["connection"] == "close"  # and the server stops reading that connection


def test_chunked_body_over_the_limit_is_cut_short(live_server):
    """Guards against: a chunked upload (no Content-Length) streaming past the limit into memory
    or disk."""
    chunk = b"\0" * 65536
    sent = 0
    with _raw(live_server) as sock:
        sock.sendall(
            b"POST /api/v0.1/fits_cut HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n"
            b"Content-Type: multipart/form-data; boundary=xyz\r\n\r\n"
        )
        part = b'--xyz\r\nContent-Disposition: form-data; name="files"; filename="a.fits"\r\n\r\n'
        sock.sendall(b"%x\r\n%s\r\n" % (len(part), part))
        try:
            while sent < 20_000_000:  # 10x the limit; the server answers (or hangs up) long before
                sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                sent += len(chunk)
        except (BrokenPipeError, ConnectionResetError):
            pass
        status, _headers, body = _read_response(sock)
    assert status == 413
    err = json.loads(body)["error"]
    assert err["field"] == "body" and "2000000" in err["message"]
    assert sent < 20_000_000
    assert httpx.get(live_server.url + "/health").status_code == 200


# ------------------------------------------------------------------------------------------
# slow clients and open connections
# ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def guarded_server(service_data, tmp_path_factory):
    """The service with a 1.5 s request-head deadline."""
    from app.main import create_app

    try:
        from tests.conftest import _free_port, start_uvicorn, stop_uvicorn
    except ImportError:  # pragma: no cover
        from conftest import _free_port, start_uvicorn, stop_uvicorn

    cubes, image_root, _ = service_data
    settings = Settings(cube_dirs=[str(cubes["spoc38"].parent)], image_roots=[str(image_root)],
                        work_dir=tmp_path_factory.mktemp("guarded"), port=_free_port(), header_timeout_s=1.5,
                        keep_alive_s=1.0)
    app = create_app(settings)
    server, thread = start_uvicorn(app, settings.host, settings.port)
    try:
        yield f"http://{settings.host}:{settings.port}"
    finally:
        stop_uvicorn(server, thread)


def _connect(url: str) -> socket.socket:
    parts = urlsplit(url)
    sock = socket.create_connection((parts.hostname, parts.port), timeout=10)
    sock.settimeout(10)
    return sock


def _closed(sock: socket.socket) -> bool:
    """Whether the server closes ``sock`` within the socket's timeout (it may answer first)."""
    try:
        return sock.recv(65536) == b"" or True
    except (ConnectionResetError, BrokenPipeError):
        return True
    except TimeoutError:
        return False


def _closed_now(sock: socket.socket) -> bool:
    """Whether the server has closed ``sock`` (or answered on it) already, without waiting."""
    try:
        sock.recv(65536, socket.MSG_DONTWAIT)
    except BlockingIOError:
        return False
    except OSError:  # reset
        return True
    return True


def test_idle_and_slowloris_connections_are_closed_and_health_answers(guarded_server):
    """Guards against: clients that connect and say nothing, or send a request head a byte now
    and then, holding connections for ever. The head deadline closes them although bytes keep
    coming (an idle timer, which each byte resets, would not), while /health answers throughout."""
    idle = _connect(guarded_server)  # connects and says nothing
    slow = [_connect(guarded_server) for _ in range(8)]
    for s in slow:
        s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n")  # a header, never finished
    trickling = set(slow)

    def trickle() -> bool:  # a byte to every open connection, each call (the polling interval apart)
        for s in list(trickling):
            if _closed_now(s):
                trickling.discard(s)
                continue
            try:
                s.sendall(b"X")
            except OSError:
                trickling.discard(s)
        assert httpx.get(guarded_server + "/health", timeout=5).status_code == 200
        return not trickling

    # every slow connection is closed by the server while it is still being fed
    wait_until(trickle, timeout=30, interval=0.3, message=lambda: f"{len(trickling)} slow connections still open")
    for s in [idle, *slow]:
        s.settimeout(5)
        assert _closed(s)
        s.close()
    assert httpx.get(guarded_server + "/health", timeout=5).status_code == 200


def test_connections_beyond_the_cap_are_refused(make_server, service_data):
    """Guards against: unbounded open connections (each costs memory and a file descriptor)."""
    cubes, _, _ = service_data
    # a head deadline far longer than the test: the held connections stay open however slow it runs
    capped = make_server(cube_dirs=[str(cubes["spoc38"].parent)], max_connections=20, header_timeout_s=120).url
    held = [_connect(capped) for _ in range(20)]
    try:
        extra = _connect(capped)
        extra.settimeout(5)
        answer = extra.recv(4096)
        assert answer.startswith(b"HTTP/1.1 503") and b"retry-after" in answer.lower()
        extra.close()
    finally:
        for s in held:
            s.close()

    def healthy() -> bool:  # the closed connections are given back: the server answers again
        try:
            return httpx.get(capped + "/health", timeout=5).status_code == 200
        except httpx.TransportError:
            return False

    wait_until(healthy, message="/health answers once the held connections are closed")
    assert httpx.get(capped + "/health", timeout=5).status_code == 200


# ------------------------------------------------------------------------------------------
# deadline and queue (slow S3 cube through the latency proxy)
# ------------------------------------------------------------------------------------------


@pytest.fixture
def slow_s3_server(make_server, s3_server, service_data, fault_proxy):
    """``make(**settings) -> (server, proxy)``: sector 38 hosted on S3 behind a fault proxy."""
    cubes, _, _ = service_data
    s3_server.upload(cubes["spoc38"], "limits", "tess/tess-s0038-2-2-cube.fits")

    def make(**values):
        proxy = fault_proxy(s3_server.endpoint_url)
        server = make_server(
            cube_dirs=["s3://limits/tess"], s3_endpoint_url=proxy.endpoint_url, s3_access_key_id="testing",
            s3_secret_access_key="testing", s3_region="us-east-1", s3_read_timeout_s=10, s3_max_attempts=1,
            **values,
        )
        return server, proxy

    return make


def test_request_timeout_answers_504_and_frees_the_worker(slow_s3_server, no_leaked_threads):
    """Guards against: a request outliving ``request_timeout_s`` (the client hangs), and the
    abandoned worker thread never being given back."""
    server, proxy = slow_s3_server(request_timeout_s=1, workers=1, queue_size=2)
    params = {**POS, "x": 5, "sector": 38}

    def served() -> bool:  # a cut within the 1 s deadline (asked again if a busy machine missed it)
        return httpx.get(api(server, "/astrocut"), params=params, timeout=30).status_code == 200

    wait_until(served, timeout=60, interval=0.1, message="a cut within the deadline")
    proxy.mode, proxy.delay_s = "delay", 2.5  # each S3 read now takes 2.5 s > the 1 s deadline
    r = httpx.get(api(server, "/astrocut"), params=params, timeout=30)
    assert_error(r, 504, None, "1 s")
    assert server.services.pool.stats()["timeouts"] >= 1
    # the abandoned thread finishes its read, then gives its slot back: nothing stays running
    no_leaked_threads(15, pool=server.services.pool)
    proxy.mode = "pass"
    # the one worker serves again (a slot never given back would answer 503/504 every time)
    wait_until(served, timeout=60, interval=0.1, message="a cut once the proxy passes again")


def test_full_queue_answers_503_with_retry_after(slow_s3_server, no_leaked_threads):
    """Guards against: unbounded queueing (every request accepted and waiting) under overload."""
    server, proxy = slow_s3_server(request_timeout_s=30, workers=1, queue_size=1)
    proxy.mode, proxy.delay_s = "delay", 1.0
    params = {**POS, "x": 5, "sector": 38}
    results: list[httpx.Response] = []
    lock = threading.Lock()

    def one():
        r = httpx.get(api(server, "/astrocut"), params=params, timeout=30)
        with lock:
            results.append(r)

    threads = [threading.Thread(target=one) for _ in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(40)
    statuses = sorted(r.status_code for r in results)
    assert len(results) == 5
    assert statuses.count(200) >= 2 and statuses.count(503) >= 1, statuses  # 1 running + 1 waiting
    assert set(statuses) <= {200, 503}
    for r in results:
        if r.status_code == 503:
            assert_error(r, 503, None, "busy")
            assert r.headers["retry-after"] == "5"
    assert server.services.pool.stats()["refused"] == statuses.count(503)
    no_leaked_threads(15, pool=server.services.pool)
