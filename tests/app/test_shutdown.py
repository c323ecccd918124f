"""Graceful shutdown of ``python -m app serve`` (a real process, real settings from CUTOUT_* env vars).

On SIGTERM uvicorn stops accepting connections at once, lets in-flight requests finish for up to
``shutdown_grace_s`` (``CUTOUT_SHUTDOWN_GRACE_S``, passed by app/cli.py as uvicorn's
``timeout_graceful_shutdown``), then exits 0.

The in-flight request is an upload whose body the test itself sends in two halves around the
SIGTERM: the request cannot finish before the test lets it, so "the server waited" is certain.
"""

from __future__ import annotations

import io
import os
import shutil
import signal
import socket
import subprocess
import sys
import zipfile
from pathlib import Path

import httpx
import pytest
from astropy.io import fits

from core.synthetic.ffis import DEMO_DEC, DEMO_RA
from tests.api_calls import read_until_closed
from tests.polling import wait_until

pytestmark = pytest.mark.timeout(90)

ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def serve(service_data, tmp_path):
    """``serve(grace_s) -> (proc, port, image_bytes)``: the service in a subprocess; killed at teardown
    if still running."""
    cubes, image_root, images = service_data
    cube_dir = tmp_path / "cubes"
    cube_dir.mkdir()
    shutil.copy(cubes["spoc38"], cube_dir / "tess-s0038-2-2-cube.fits")
    shutil.copy(cubes["spoc11"], cube_dir / "tess-s0011-2-2-cube.fits")
    procs: list[subprocess.Popen] = []

    def start(grace_s: float):
        port = _free_port()
        env = {
            **os.environ,
            "CUTOUT_CUBE_DIRS": str(cube_dir),
            "CUTOUT_IMAGE_ROOTS": str(image_root),
            "CUTOUT_WORK_DIR": str(tmp_path / "work"),
            "CUTOUT_PORT": str(port),
            "CUTOUT_HOST": "127.0.0.1",
            "CUTOUT_SHUTDOWN_GRACE_S": str(grace_s),
            "CUTOUT_WORKERS": "2",
            "CUTOUT_LOG_LEVEL": "info",
        }
        proc = subprocess.Popen([sys.executable, "-m", "app", "serve"], cwd=ROOT, env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        procs.append(proc)

        def healthy() -> bool:
            assert proc.poll() is None, proc.stdout.read().decode(errors="replace")
            try:
                return httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200
            except httpx.TransportError:
                return False

        wait_until(healthy, timeout=60, interval=0.1, message="server did not start")
        return proc, port, (image_root / images[0]).read_bytes()

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


def _upload_request(port: int, data: bytes) -> tuple[bytes, bytes]:
    """(head, body) of a multipart fits_cut POST uploading ``data``."""
    req = httpx.Request("POST", f"http://127.0.0.1:{port}/api/v0.1/fits_cut",
                        data={"ra": str(DEMO_RA), "dec": str(DEMO_DEC), "x": "7"},
                        files=[("files", ("in.fits", data))])
    body = req.read()
    head = f"POST /api/v0.1/fits_cut HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
    head += f"Content-Type: {req.headers['content-type']}\r\nContent-Length: {len(body)}\r\n\r\n"
    return head.encode(), body


def _dechunk(data: bytes) -> bytes:
    out, pos = b"", 0
    while True:
        eol = data.index(b"\r\n", pos)
        n = int(data[pos:eol], 16)
        if n == 0:
            return out
        out += data[eol + 2: eol + 2 + n]
        pos = eol + 2 + n + 2


def _unread_by_server(sock: socket.socket) -> int | None:
    """Bytes sent on ``sock`` (a loopback connection) that the server process has not read yet: the
    receive queue of the server's end of the connection, from the kernel's table (/proc/net/tcp);
    None while the server's end is not in the table."""
    def hex_address(address: tuple[str, int]) -> str:
        packed = socket.inet_aton(address[0])
        return f"{int.from_bytes(packed, 'little'):08X}:{address[1]:04X}"

    server_end, client_end = hex_address(sock.getpeername()), hex_address(sock.getsockname())
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[1] == server_end and fields[2] == client_end:
            return int(fields[4].split(":")[1], 16)
    return None


def _server_has_read(sock: socket.socket) -> None:
    """Wait until the server has read everything sent on ``sock`` (so it has the request)."""
    wait_until(lambda: _unread_by_server(sock) == 0, message="the server reads what was sent")


def _refused(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return False
    except ConnectionRefusedError:
        return True


def test_sigterm_lets_in_flight_requests_finish_refuses_new_ones_and_exits_0(serve):
    """Guards against: SIGTERM cutting in-flight requests (a client gets a broken answer), the
    server accepting new work while stopping, and a non-zero exit (a restart loop)."""
    proc, port, data = serve(grace_s=20)
    # a zip download started before the signal, read slowly
    dl = socket.socket()
    dl.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    dl.connect(("127.0.0.1", port))
    dl.sendall(f"GET /api/v0.1/astrocut?ra={DEMO_RA}&dec={DEMO_DEC}&x=30&y=30 HTTP/1.1\r\n"
               f"Host: x\r\nConnection: close\r\n\r\n".encode())
    first = dl.recv(1024)
    assert first.startswith(b"HTTP/1.1 200")
    # an upload whose body is only half sent
    head, body = _upload_request(port, data)
    up = socket.create_connection(("127.0.0.1", port), timeout=30)
    up.sendall(head + body[: len(body) // 2])
    _server_has_read(up)  # the server has the request and is reading its body

    proc.send_signal(signal.SIGTERM)
    # new connections are refused (the listener is closed) ...
    wait_until(lambda: _refused(port), interval=0.05, message="connections refused after SIGTERM")
    # ... while the process waits for the in-flight requests: it is still there, and answers the
    # upload in full once the rest of its body is sent
    assert proc.poll() is None

    up.sendall(body[len(body) // 2:])
    status_line, _, answer = read_until_closed(up)
    status = int(status_line.split()[1])
    up.close()
    assert status == 200
    with fits.open(io.BytesIO(answer)) as hdul:
        assert hdul[1].data.shape == (7, 7)

    rest = first
    while True:
        chunk = dl.recv(65536)
        if not chunk:
            break
        rest += chunk
    dl.close()
    zhead, _, zbody = rest.partition(b"\r\n\r\n")
    raw = _dechunk(zbody) if b"transfer-encoding: chunked" in zhead.lower() else zbody
    with zipfile.ZipFile(io.BytesIO(raw)) as zf:
        assert zf.testzip() is None and len(zf.namelist()) == 2  # sectors 11 and 38, complete

    assert proc.wait(timeout=20) == 0


def test_grace_period_bounds_the_wait(serve):
    """Guards against: a stuck client keeping a stopping server alive forever (a deploy that
    never finishes). With shutdown_grace_s=1 the process exits 0 soon after SIGTERM."""
    proc, port, data = serve(grace_s=1)
    head, body = _upload_request(port, data)
    stuck = socket.create_connection(("127.0.0.1", port), timeout=30)
    stuck.sendall(head + body[:100])  # and never the rest
    _server_has_read(stuck)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=15) == 0  # bounded by the grace period, not by the client
    out = proc.stdout.read().decode(errors="replace")
    assert "graceful shutdown exceeded" in out or "Cancel" in out, out[-2000:]
    stuck.close()
