"""One request, one slow client or one careless value must not take the service down: each finding
of the third probe, over a real uvicorn server on 127.0.0.1.

- deadlines for every phase of a connection: a body trickled a byte at a time is cut off and new
  clients are served; a client reading at ~200 B/s gives back its worker, memory, disk and budget;
  the "too many connections" answer is well formed;
- the budget is fair: a small request is not queued behind a large one, a disconnected waiter
  leaves the queue at once, at most ``max_requests_per_client`` requests per client (429);
- every route refuses sizes, JSON numbers and lists beyond its bounds with a 4xx naming the field,
  and keeps its "no data" messages short;
- the documented ephemeris fits a form.

No test asserts time: conditions are polled with generous deadlines.
"""

from __future__ import annotations

import json
import os
import socket
import threading

import httpx
import pytest

from core.synthetic.ffis import DEMO_DEC, DEMO_RA
from tests.api_calls import read_until_closed
from tests.polling import wait_until

pytestmark = pytest.mark.timeout(300)

MiB = 1024 * 1024
POS = {"ra": DEMO_RA, "dec": DEMO_DEC}
API = "/api/v0.1"


def _connect(url: str, rcvbuf: int | None = None) -> socket.socket:
    host, port = url.split("//")[1].split(":")
    sock = socket.socket()
    if rcvbuf:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.connect((host, int(port)))
    return sock


def _closed(sock: socket.socket) -> bool:
    """Whether the server closed ``sock`` (whatever it sent before)."""
    sock.setblocking(False)
    try:
        while True:
            data = sock.recv(65536)
            if not data:
                return True
    except BlockingIOError:
        return False
    except OSError:
        return True


def _health(url: str) -> int:
    try:
        return httpx.get(url + "/health", timeout=10).status_code
    except httpx.HTTPError:
        return 0


@pytest.fixture(scope="module")
def sparse_cube(tmp_path_factory):
    """A real-size sparse cube (2078 x 2136 px, 3,705 frames; its data a hole, so reads cost no disk)
    and a position on it."""
    from core.cubes.cache import open_cube
    from core.synthetic.archive import write_sparse_cube

    folder = tmp_path_factory.mktemp("sparse")
    cube = write_sparse_cube(folder / "tess-s0038-2-2-cube.fits", sector=38, camera=2, ccd=2, frames=3705)
    ra, dec = (float(v) for v in open_cube(str(cube)).wcs.all_pix2world(1068.3, 1024.6, 0))
    return folder, ra, dec


def _spools(work) -> list[str]:
    return [p for p in os.listdir(work) if p.startswith("tpf-spool-")]


# -- deadlines -----------------------------------------------------------------------------------------


def test_a_trickled_body_is_cut_off_and_new_clients_are_served(make_server, service_data):
    cubes, _root, _images = service_data
    server = make_server(cube_dirs=[str(cubes["spoc38"].parent)], max_connections=12, body_timeout_s=2,
                         body_min_rate=500, header_timeout_s=10)
    head = (f"POST {API}/astrocut HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\n"
            "Content-Length: 100000\r\n\r\n").encode()
    socks = []
    for _ in range(16):  # more than the connection cap: the last ones are refused at once
        sock = _connect(server.url)
        sock.sendall(head)
        socks.append(sock)
    stop = threading.Event()

    def trickle() -> None:  # one byte a second on every connection, for longer than the test waits
        for _ in range(120):
            for sock in socks:
                try:
                    sock.send(b"a")
                except OSError:
                    pass
            if stop.wait(1.0):
                return

    threading.Thread(target=trickle, daemon=True).start()
    try:
        wait_until(lambda: all(_closed(s) for s in socks), message="every trickling connection closed", timeout=60)
        assert wait_until(lambda: _health(server.url) == 200, message="a new client served", timeout=30)
    finally:
        stop.set()
        for sock in socks:
            sock.close()


def test_a_client_reading_at_200_bytes_a_second_gives_everything_back(make_server, sparse_cube):
    folder, ra, dec = sparse_cube
    server = make_server(cube_dirs=[str(folder)], inline_tpf_bytes=MiB, stream_band_bytes=4 * MiB,
                         send_timeout_s=2, request_timeout_s=120, workers=2)
    budget, pool = server.services.budget, server.services.pool
    sock = _connect(server.url, rcvbuf=4096)
    sock.sendall(f"GET {API}/astrocut?ra={ra}&dec={dec}&x=30&y=30&sector=38 HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    stop = threading.Event()
    got = []

    def read_slowly() -> None:  # ~200 B/s, for longer than the test waits
        sock.settimeout(1.0)
        while not stop.wait(0.5):
            try:
                data = sock.recv(100)
            except TimeoutError:
                continue
            except OSError:
                return
            if not data:
                return
            got.append(len(data))

    reader = threading.Thread(target=read_slowly, daemon=True)
    reader.start()
    try:
        wait_until(lambda: budget.stats()["disk_in_use"] > 0, message="the streamed TPF admitted (it holds a pixel spool)")
        # the client never catches up with a 67 MB answer: the send deadline ends the stream and
        # everything the request held is given back while the client is still "reading"
        wait_until(lambda: (budget.stats()["memory_in_use"], budget.stats()["disk_in_use"], pool.stats()["running"])
                   == (0, 0, 0) and not _spools(server.settings.work_dir), message="budget, worker and spool released",
                   timeout=90)
        assert reader.is_alive() or sum(got) < 67 * 10**6  # released while the client was still there
    finally:
        stop.set()
        sock.close()


def test_too_many_connections_is_a_well_formed_503(make_server):
    server = make_server(max_connections=2)
    held = [_connect(server.url) for _ in range(2)]
    try:
        sock = _connect(server.url)
        sock.settimeout(10)
        status_line, headers, body = read_until_closed(sock)
        assert status_line.startswith("HTTP/1.1 503")
        assert int(headers["content-length"]) == len(body)
        error = json.loads(body)["error"]
        assert error["status"] == 503 and error["code"] == "unavailable" and error["message"] and error["request_id"]
        assert "field" in error and int(headers["retry-after"]) > 0
    finally:
        for s in held:
            s.close()


# -- the budget ----------------------------------------------------------------------------------------


def test_disconnected_waiters_give_their_places_back_at_once(make_server, service_data):
    cubes, _root, _images = service_data
    server = make_server(cube_dirs=[str(cubes["spoc38"].parent)], memory_budget_bytes=64 * MiB,
                         budget_queue_size=8, request_timeout_s=120)
    budget = server.services.budget
    everything = budget.try_admit(64 * MiB)  # the budget is full: every cutout request waits
    assert everything is not None
    socks = []
    try:
        for _ in range(5):
            sock = _connect(server.url)
            sock.sendall(f"GET {API}/astrocut?ra={DEMO_RA}&dec={DEMO_DEC}&x=5 HTTP/1.1\r\nHost: x\r\n\r\n".encode())
            socks.append(sock)
        wait_until(lambda: budget.stats()["waiting"] == 5, message="five requests waiting for room")
        for sock in socks:
            sock.close()
        wait_until(lambda: budget.stats()["waiting"] == 0, message="the disconnected waiters gone from the queue", timeout=30)
        assert _health(server.url) == 200
    finally:
        everything.release()


def test_a_small_request_is_served_while_a_large_one_waits(make_server, service_data):
    cubes, _root, _images = service_data
    server = make_server(cube_dirs=[str(cubes["spoc38"].parent)], memory_budget_bytes=100 * MiB,
                         stream_band_bytes=32 * MiB, request_timeout_s=120)
    budget = server.services.budget
    held = budget.try_admit(60 * MiB)
    large: dict = {}

    def ask_large() -> None:  # a light curve holds two bands and its answer: more than the 40 MiB left
        large["r"] = httpx.get(f"{server.url}{API}/lightcurve", params={**POS, "aperture": 3}, timeout=150)

    thread = threading.Thread(target=ask_large, daemon=True)
    thread.start()
    try:
        wait_until(lambda: budget.stats()["waiting"] == 1, message="the large request waiting")
        small = httpx.get(f"{server.url}{API}/astrocut", params={**POS, "x": 5}, timeout=60)
        assert small.status_code == 200 and small.headers["content-type"] == "application/zip"
        assert thread.is_alive()  # the large one still waits: it was overtaken, not served first
    finally:
        held.release()
    thread.join(60)
    assert large["r"].status_code == 200


def test_at_most_k_requests_per_client_then_429(make_server, service_data):
    cubes, _root, _images = service_data
    server = make_server(cube_dirs=[str(cubes["spoc38"].parent)], memory_budget_bytes=64 * MiB,
                         max_requests_per_client=1, request_timeout_s=120)
    budget = server.services.budget
    everything = budget.try_admit(64 * MiB)
    sock = _connect(server.url)
    try:
        sock.sendall(f"GET {API}/astrocut?ra={DEMO_RA}&dec={DEMO_DEC}&x=5 HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        wait_until(lambda: budget.stats()["waiting"] == 1, message="the first request in flight")
        second = httpx.get(f"{server.url}{API}/astrocut", params={**POS, "x": 5}, timeout=30)
        assert second.status_code == 429 and int(second.headers["retry-after"]) > 0
        assert second.json()["error"]["code"] == "quota" and "max_requests_per_client" in second.json()["msg"]
        assert _health(server.url) == 200  # liveness never counts
    finally:
        everything.release()
        sock.close()
    wait_until(lambda: httpx.get(f"{server.url}{API}/astrocut", params={**POS, "x": 5}, timeout=30).status_code == 200,
               message="the client's slot given back when its request ended")


# -- values beyond the bounds ----------------------------------------------------------------------------


def test_a_body_without_files_is_held_to_the_form_limit(make_server, service_data):
    from app.pipeline import MAX_FORM_BODY_BYTES

    cubes, _root, _images = service_data
    server = make_server(cube_dirs=[str(cubes["spoc38"].parent)], max_upload_bytes=64 * MiB)
    junk = "a" * (MAX_FORM_BODY_BYTES + 1)
    r = httpx.post(f"{server.url}{API}/astrocut", data={**POS, "x": 5, "junk": junk}, timeout=60)
    assert r.status_code == 413 and r.json()["error"]["field"] == "body"  # not parsed on the event loop
    r = httpx.post(f"{server.url}/hapcut/api/v0.1/astrocut", content=json.dumps({**POS, "junk": junk}).encode(),
                   headers={"content-type": "application/json"}, timeout=60)
    assert r.status_code == 413 and r.json()["error"]["field"] == "body"
    upload = httpx.post(f"{server.url}{API}/fits_cut", data={**POS, "x": 5},
                        files={"files": ("a.fits", b"SIMPLE  =" + b" " * (MAX_FORM_BODY_BYTES + 1))}, timeout=60)
    assert upload.status_code != 413  # files may take max_upload_bytes

_SIZED = [
    ("/astrocut", {}), ("/moving_target/astrocut", {"ephemeris": json.dumps(
        {"time": [2333.2, 2333.3], "ra": [DEMO_RA, DEMO_RA + 0.01], "dec": [DEMO_DEC, DEMO_DEC]})}),
    ("/fits_cut", {"images": "img0.fits"}), ("/img_cut", {"images": "img0.fits"}),
    ("/combine", {"images": "img0.fits"}),
]


@pytest.mark.parametrize(("route", "extra"), _SIZED, ids=[r for r, _ in _SIZED])
@pytest.mark.parametrize("method", ["GET", "POST"])
def test_a_size_of_1e308_degrees_is_a_400_naming_x_on_every_route(live_server, route, extra, method):
    params = {**POS, **extra, "x": "1e308", "units": "d"}
    if method == "GET":
        r = httpx.get(f"{live_server.url}{API}{route}", params=params, timeout=60)
    else:
        r = httpx.post(f"{live_server.url}{API}{route}", data=params, timeout=60)
    assert r.status_code == 400, r.text[:300]
    assert r.json()["error"]["field"] == "x"


@pytest.mark.parametrize("prefix", ["/zcut/api/v0.1", "/hapcut/api/v0.1"])
def test_zcut_and_hapcut_refuse_1e308_degrees(live_server, prefix):
    r = httpx.get(f"{live_server.url}{prefix}/astrocut", params={**POS, "x": "1e308", "units": "d"}, timeout=60)
    assert r.status_code == 400 and r.json()["error"]["field"] == "x", r.text[:300]


@pytest.mark.parametrize("value", [b"NaN", b"Infinity", b"-Infinity"])
def test_nan_and_infinity_in_a_json_body_are_400s(live_server, value):
    r = httpx.post(f"{live_server.url}/hapcut/api/v0.1/astrocut", content=b'{"ra": ' + value + b', "dec": 28.5}',
                   headers={"content-type": "application/json"}, timeout=60)
    assert r.status_code == 400, r.text[:300]
    assert r.json()["error"]["field"] == "ra"


def test_the_light_curve_aperture_is_bounded_before_its_mask_is_built(live_server):
    r = httpx.get(f"{live_server.url}{API}/lightcurve", params={**POS, "aperture": 40000}, timeout=60)
    assert r.status_code == 413 and r.json()["error"]["field"] == "aperture"
    for value in ("1000000", "486054425233562874901692416"):
        r = httpx.get(f"{live_server.url}{API}/lightcurve", params={**POS, "aperture": value}, timeout=60)
        assert r.status_code == 400 and r.json()["error"]["field"] == "aperture"


def test_thirty_thousand_sectors_are_refused_while_health_answers(live_server):
    answer: dict = {}

    def post() -> None:
        answer["r"] = httpx.post(f"{live_server.url}{API}/astrocut",
                                 data={**POS, "sector": ",".join(str(i) for i in range(1, 30001))}, timeout=120)

    thread = threading.Thread(target=post)
    thread.start()
    while thread.is_alive():
        assert httpx.get(live_server.url + "/health", timeout=10).status_code == 200
    thread.join()
    assert answer["r"].status_code == 400 and answer["r"].json()["error"]["field"] == "sector"


def test_no_data_messages_name_a_few_then_count_the_rest(live_server):
    r = httpx.get(f"{live_server.url}{API}/astrocut",
                  params={**POS, "sector": ",".join(str(s) for s in range(100, 600))}, timeout=60)
    assert r.status_code == 200 and "and 497 more" in r.json()["msg"] and len(r.content) < 1000
    r = httpx.get(f"{live_server.url}/zcut/api/v0.1/astrocut",
                  params={**POS, "survey": ",".join(f"survey{i}" for i in range(100))}, timeout=60)
    assert r.status_code == 200 and len(r.content) < 1000


def test_the_documented_ephemeris_fits_a_form(live_server):
    from app.params.values import MAX_EPHEMERIS_CHARS

    n = int(0.97 * MAX_EPHEMERIS_CHARS / 39)  # about 39 characters a point
    eph = json.dumps({"time": [f"2021-05-{1 + i % 28:02d}T{i % 24:02d}:00:00.000" for i in range(n)],
                      "ra": [10.0] * n, "dec": [20.0] * n})
    assert len(eph) <= MAX_EPHEMERIS_CHARS
    assert len(httpx.QueryParams({"ephemeris": eph}).__str__()) > MiB  # more than a 1 MiB field once encoded
    r = httpx.post(f"{live_server.url}{API}/moving_target/sector", data={"ephemeris": eph}, timeout=120)
    assert r.status_code == 200 or r.json()["error"]["field"] == "ephemeris", r.text[:300]
    too_long = httpx.post(f"{live_server.url}{API}/moving_target/sector",
                          data={"ephemeris": eph + " " * (MAX_EPHEMERIS_CHARS - len(eph) + 1)}, timeout=120)
    assert too_long.status_code == 400 and too_long.json()["error"]["field"] == "ephemeris"
