"""The service in its own process, driven as an attacker and a careless operator would.

- Every route with its largest and most hostile allowed parameters, several at a time: the
  server's resident memory (summed over its process tree, from /proc) grows by at most its budget
  (plus the cube cache and a fixed allowance for the interpreter), and ``/health`` answers
  throughout (each poll within a liveness deadline of several seconds, generous for a busy
  machine). The async job routes are left out: their work runs on Dask workers with their own
  memory limit (``jobs_dask_memory_limit``), not under this budget.
- An image truncated and restored in a loop by another process while it is cut: the server
  survives (images are read with ``pread``, never memory-mapped), each request answers cleanly.
- ``cutout serve --workers 2``: both processes see one budget (what one holds, the other counts).

The cube is a real-size sparse one (2078 x 2136 px, 3,705 frames, its data a hole: reads cost no
disk); the images are 4096 x 4096 float32.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pytest

from tests.polling import wait_until

ROOT = Path(__file__).resolve().parents[2]
MiB = 1024 * 1024
pytestmark = [pytest.mark.slow, pytest.mark.timeout(600),
              pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc, POSIX signals")]

#: every /health poll must answer within this (the server is busy on purpose; CI may be too)
LIVENESS_S = 10.0
#: the test server's budget and its other bounded memory
BUDGET = 384 * MiB
CUBE_CACHE = 32 * MiB
#: what the interpreter itself may add under load (thread stacks, allocator arenas, imports)
ALLOWANCE = 192 * MiB
#: pixel-frames per TPF: 73 x 73 px of the cube's 3,705 frames is the largest window allowed
MAX_VOLUME = 20_000_000
IMAGE_SIDE = 4096


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _write_image(path: Path, ra: float, dec: float) -> int:
    """A 4096 x 4096 float32 image around (ra, dec), 1 arcsec pixels; the offset of its data."""
    from astropy.io import fits
    from astropy.wcs import WCS

    wcs = WCS(naxis=2)
    wcs.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    wcs.wcs.crval = [ra, dec]
    wcs.wcs.crpix = [IMAGE_SIDE / 2 + 0.5, IMAGE_SIDE / 2 + 0.5]
    wcs.wcs.cdelt = [-1 / 3600, 1 / 3600]
    data = (np.arange(IMAGE_SIDE * IMAGE_SIDE, dtype=np.float32) % 997 + 1).reshape(IMAGE_SIDE, IMAGE_SIDE)
    hdu = fits.PrimaryHDU(data=data, header=wcs.to_header())
    hdu.header["EXTNAME"] = "SCI"
    hdu.writeto(path, overwrite=True)
    return len(hdu.header.tostring())


@pytest.fixture(scope="module")
def hostile_data(tmp_path_factory):
    from core.cubes.cache import open_cube
    from core.synthetic.archive import write_sparse_cube

    root = tmp_path_factory.mktemp("hostile")
    cubes = root / "cubes"
    cube = write_sparse_cube(cubes / "tess-s0038-2-2-cube.fits", sector=38, camera=2, ccd=2, frames=3705)
    c = open_cube(str(cube))
    ra, dec = (float(v) for v in c.wcs.all_pix2world(1068.3, 1024.6, 0))
    times = [float(c.time[0]), float(c.time[-1])]
    images = root / "images"
    images.mkdir()
    _write_image(images / "big0.fits", ra, dec)
    for i in range(1, 16):
        os.link(images / "big0.fits", images / f"big{i}.fits")
    return {"cubes": cubes, "images": images, "ra": ra, "dec": dec, "times": times, "root": root}


class Server:
    """``python -m app serve`` in its own process, with settings from the environment."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        full = {**os.environ, "CUTOUT_HOST": "127.0.0.1", "CUTOUT_PORT": str(self.port), "CUTOUT_LOG_LEVEL": "warning",
                **env}
        self.log = open(log, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen([sys.executable, "-m", "app", "serve"], cwd=ROOT, env=full, stdout=self.log,
                                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)

        def up() -> bool:
            assert self.proc.poll() is None, f"the server exited: {log.read_text(errors='replace')[-2000:]}"
            try:
                return httpx.get(self.url + "/health", timeout=5).status_code == 200
            except httpx.TransportError:
                return False

        wait_until(up, timeout=120, interval=0.2, message="the server started")

    def rss(self) -> int:
        """Resident bytes of the server and every process under it."""
        total, todo = 0, [self.proc.pid]
        while todo:
            pid = todo.pop()
            try:
                for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1]) * 1024
                for task in Path(f"/proc/{pid}/task").iterdir():
                    todo += [int(c) for c in (task / "children").read_text().split()]
            except (OSError, ValueError):
                continue
        return total

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.log.close()


def _env(data: dict, work: Path, **extra: str) -> dict[str, str]:
    images = str(data["images"])
    env = {
        "CUTOUT_CUBE_DIRS": str(data["cubes"]), "CUTOUT_IMAGE_ROOTS": images, "CUTOUT_WORK_DIR": str(work),
        "CUTOUT_SURVEYS": json.dumps({"deep": [images], "hap": [images]}),
        "CUTOUT_MEMORY_BUDGET_BYTES": str(BUDGET), "CUTOUT_DISK_BUDGET_BYTES": str(2 * 1024 * MiB),
        "CUTOUT_CUBE_CACHE_BYTES": str(CUBE_CACHE), "CUTOUT_MAX_CUTOUT_VOLUME": str(MAX_VOLUME),
        "CUTOUT_WORKERS": "4", "CUTOUT_QUEUE_SIZE": "64", "CUTOUT_REQUEST_TIMEOUT_S": "300",
        "CUTOUT_MAX_INPUT_FILES": "16",
    }
    env.update(extra)
    return env


def _hostile_requests(data: dict) -> list[tuple[str, str, dict]]:
    """(method, path, params) of every route with its largest and most hostile allowed values."""
    ra, dec = data["ra"], data["dec"]
    pos = {"ra": ra, "dec": dec}
    t0, t1 = data["times"]
    side = int((MAX_VOLUME / 3705) ** 0.5)  # the widest square TPF the volume limit allows: 73 px
    path = json.dumps({"time": [t0, t1], "ra": [ra - 0.05, ra + 0.05], "dec": [dec, dec + 0.05]})
    n = 20000  # the longest path the ephemeris' 1,000,000 characters hold, about
    long_path = json.dumps({"time": [round(float(t), 5) for t in np.linspace(t0, t1, n)],
                            "ra": [round(ra + 0.1 * i / n, 6) for i in range(n)], "dec": [round(dec, 6)] * n})
    assert len(long_path) <= 1_000_000
    mask = ",".join(["1" * side] * side)
    big = [f"big{i}.fits" for i in range(16)]  # the most inputs a request may name (links to one image)
    api = "/tesscut/api/v0.1"
    return [
        ("GET", f"{api}/astrocut", {**pos, "x": side, "y": side, "sector": 38}),
        ("GET", f"{api}/astrocut", {**pos, "x": 1000, "y": 1000}),  # over the volume: 413 before any read
        ("GET", f"{api}/astrocut", {**pos, "x": 180, "units": "d"}),
        ("POST", f"{api}/astrocut", {**pos, "x": 5, "sector": ",".join(str(s) for s in range(1, 501))}),
        ("POST", f"{api}/moving_target/astrocut", {"ephemeris": path, "x": side, "y": side}),
        ("POST", f"{api}/moving_target/astrocut", {"ephemeris": long_path, "x": side}),
        ("POST", f"{api}/moving_target/sector", {"ephemeris": long_path}),
        ("GET", f"{api}/sector", {**pos, "radius": "180d"}),
        ("GET", f"{api}/lightcurve", {**pos, "aperture": side}),
        ("POST", f"{api}/lightcurve", {**pos, "mask": mask, "format": "csv"}),
        ("GET", f"{api}/lightcurve", {**pos, "aperture": 40000}),
        ("GET", "/preview/cube.png", {**pos, "x": side, "y": side}),
        ("GET", "/preview/frames.png", {**pos, "x": side, "y": side, "frame": 3704}),
        ("GET", f"{api}/ffi_wcs", {"sector": 38, "camera": 2, "ccd": 2}),
        ("POST", f"{api}/fits_cut", {**pos, "images": big, "x": 1000, "y": 1000, "single_outfile": "false"}),
        ("POST", f"{api}/fits_cut", {**pos, "images": big, "x": 1000, "y": 1000}),
        ("POST", f"{api}/img_cut", {**pos, "images": big, "x": 1000, "y": 1000}),
        ("POST", f"{api}/img_cut", {**pos, "images": big[:3], "x": 1000, "colorize": "true"}),
        ("POST", f"{api}/combine", {**pos, "images": big, "x": 1000, "y": 1000}),  # more than the budget: 413
        ("POST", f"{api}/combine", {**pos, "images": big[:6], "x": 1000, "y": 1000}),
        ("GET", f"{api}/fits_cut", {**pos, "images": "big0.fits", "x": "1e308", "units": "d"}),
        ("GET", "/zcut/api/v0.1/astrocut", {**pos, "x": 1000, "y": 1000}),
        ("GET", "/zcut/api/v0.1/astrocut", {**pos, "x": 1000, "y": 1000, "format": "png"}),
        ("GET", "/zcut/api/v0.1/survey", {**pos, "radius": "180d"}),
        ("GET", "/hapcut/api/v0.1/astrocut", {**pos, "x": 1000, "y": 1000}),
        ("GET", "/soda/sync", {"ID": "tess-s0038-2-2", "POS": f"CIRCLE {ra} {dec} 0.2"}),
        ("GET", "/soda/sync", {"ID": "tess-s0038-2-2", "POS": f"CIRCLE {ra} {dec} 0.1"}),
    ]


def _call(url: str, method: str, path: str, params: dict) -> int:
    """Send one request, read (and drop) its whole answer; its status."""
    with httpx.Client(base_url=url, timeout=300) as client:
        kwargs = {"params": params} if method == "GET" else {"data": params}
        with client.stream(method, path, **kwargs) as r:
            for _ in r.iter_raw(1 << 20):
                pass
            return r.status_code


def test_every_route_at_its_limits_stays_within_the_budget_and_health_answers(hostile_data, tmp_path):
    server = Server(_env(hostile_data, tmp_path / "work"), tmp_path / "server.log")
    try:
        requests = _hostile_requests(hostile_data)
        for method, path, params in requests[:3] + requests[-3:]:  # warm up: imports, caches, the cube opened
            _call(server.url, method, path, params)
        baseline = server.rss()
        peak = [baseline]
        late: list[str] = []
        stop = threading.Event()

        def watch() -> None:
            while not stop.is_set():
                peak[0] = max(peak[0], server.rss())
                started = time.monotonic()
                try:
                    status = httpx.get(server.url + "/health", timeout=LIVENESS_S).status_code
                    if status != 200:
                        late.append(f"status {status}")
                except httpx.HTTPError as exc:
                    late.append(f"{type(exc).__name__} after {time.monotonic() - started:.1f} s")
                stop.wait(0.25)

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        statuses: dict[str, list[int]] = {}
        lock = threading.Lock()

        def run(batch: list[tuple[str, str, dict]]) -> None:
            for method, path, params in batch:
                status = _call(server.url, method, path, params)
                with lock:
                    statuses.setdefault(f"{method} {path}", []).append(status)

        threads = [threading.Thread(target=run, args=(requests[i::4],)) for i in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(500)
        stop.set()
        watcher.join(30)
        assert server.proc.poll() is None, "the server died"
        print(f"RSS baseline {baseline / MiB:.0f} MiB, peak {peak[0] / MiB:.0f} MiB, "
              f"growth {(peak[0] - baseline) / MiB:.0f} MiB (budget {BUDGET / MiB:.0f} MiB)")
        print(json.dumps(statuses))
        assert not late, f"/health did not answer within {LIVENESS_S:g} s: {late[:5]}"
        assert all(s < 500 or s in (503,) for codes in statuses.values() for s in codes), statuses
        assert peak[0] - baseline <= BUDGET + CUBE_CACHE + ALLOWANCE
    finally:
        server.stop()


def test_an_image_truncated_while_it_is_cut_fails_the_request_not_the_server(hostile_data, tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    image = images / "big.fits"
    head = _write_image(image, hostile_data["ra"], hostile_data["dec"])
    content = image.read_bytes()
    server = Server(_env({**hostile_data, "images": images}, tmp_path / "work", CUTOUT_SURVEYS="{}"),
                    tmp_path / "server.log")
    stop = threading.Event()

    def truncate_and_restore() -> None:
        while not stop.is_set():
            os.truncate(image, head)
            stop.wait(0.005)
            fd = os.open(image, os.O_WRONLY)
            try:
                os.pwrite(fd, content[head:], head)
            finally:
                os.close(fd)
            stop.wait(0.005)

    vandal = threading.Thread(target=truncate_and_restore, daemon=True)
    vandal.start()
    statuses = []
    try:
        params = {"ra": hostile_data["ra"], "dec": hostile_data["dec"], "images": "big.fits", "x": 1000, "y": 1000}
        for _ in range(30):
            try:
                statuses.append(_call(server.url, "GET", "/api/v0.1/fits_cut", params))
            except httpx.HTTPError as exc:
                statuses.append(type(exc).__name__)
            assert server.proc.poll() is None, f"the server died (exit {server.proc.returncode}) after {statuses}"
    finally:
        stop.set()
        vandal.join(10)
        alive = server.proc.poll() is None
        server.stop()
    assert alive
    assert all(isinstance(s, int) and (s == 200 or 400 <= s < 500) for s in statuses), statuses


def test_server_processes_share_one_budget(hostile_data, tmp_path):
    env = _env(hostile_data, tmp_path / "work", CUTOUT_SEND_TIMEOUT_S="300", CUTOUT_INLINE_TPF_BYTES=str(MiB),
               CUTOUT_PROCESSES="2")
    server = Server(env, tmp_path / "server.log")
    sock = socket.create_connection(("127.0.0.1", server.port))
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        ra, dec = hostile_data["ra"], hostile_data["dec"]
        sock.sendall(f"GET /api/v0.1/astrocut?ra={ra}&dec={dec}&x=40&y=40&sector=38 HTTP/1.1\r\nHost: x\r\n\r\n"
                     .encode())
        sock.recv(1)  # the answer has started: its TPF's share is held while the client does not read
        seen: dict[int, dict] = {}

        def both_answered() -> bool:
            health = httpx.get(server.url + "/health", timeout=LIVENESS_S).json()
            seen[health["process"]] = health["budget"]
            return len(seen) >= 2

        wait_until(both_answered, timeout=120, interval=0, message=lambda: f"one process only answered: {list(seen)}")
        for budget in seen.values():
            assert budget["memory_bytes"] == BUDGET  # the host's budget, not a share of it
            assert budget["memory_in_use"] > 0 and budget["disk_in_use"] > 0  # what either process holds
    finally:
        sock.close()
        server.stop()
