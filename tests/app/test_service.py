"""Service plumbing: error shape, request ids, health/version, OpenAPI, HEAD, CORS, worker pool, streaming."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import anyio
import httpx
import pytest

from app.errors import STATUS_BY_ERROR, status_for
from app.settings import Settings
from app.streaming import zip_chunks
from app.workers import WorkerPool
from core import errors as E
from core.synthetic.ffis import DEMO_DEC, DEMO_RA
from tests.polling import async_wait_until, wait_until

ROOT = Path(__file__).resolve().parents[2]


def test_table_covers_every_engine_error():
    names = {cls.__name__ for cls in STATUS_BY_ERROR}
    errors = {n for n in E.__all__ if issubclass(getattr(E, n), E.CutoutError)}  # not the warnings
    assert names == errors - {"CutoutError"}
    assert status_for(E.MissingInputError("x")) == 404
    assert status_for(E.TooLargeError("x")) == 413
    assert status_for(E.CutoutTimeoutError("x")) == 504
    assert status_for(RuntimeError("x")) == 500


def test_settings_lists_from_env(monkeypatch):
    monkeypatch.setenv("CUTOUT_CUBE_DIRS", "/a, s3://b/c")
    monkeypatch.setenv("CUTOUT_IMAGE_ROOTS", '["/x"]')
    monkeypatch.setenv("CUTOUT_S3_SECRET_ACCESS_KEY", "hunter2")
    s = Settings()
    assert s.cube_dirs == ["/a", "s3://b/c"] and s.image_roots == ["/x"]
    assert "hunter2" not in json.dumps(s.masked())
    assert s.s3_config().secret_access_key == "hunter2"


def test_request_id_and_404_shape(live_server):
    r = httpx.get(live_server.url + "/nope", headers={"X-Request-ID": "abc-123"})
    assert r.status_code == 404 and r.headers["x-request-id"] == "abc-123"
    assert r.json()["error"]["request_id"] == "abc-123"
    r = httpx.delete(live_server.url + "/api/v0.1/sector")
    assert r.status_code == 405 and r.json()["error"]["code"] == "method_not_allowed"


def _strings(node):
    if isinstance(node, dict):
        for value in node.values():
            yield from _strings(value)
    elif isinstance(node, list):
        for value in node:
            yield from _strings(value)
    elif isinstance(node, str):
        yield node


def test_health_and_version(live_server):
    for path in ("/health", "/tesscut/api/v0.1/health"):
        r = httpx.get(live_server.url + path)
        body = r.json()
        assert body["status"] == "ok"
        assert body["catalog"]["SPOC"] == [11, 38] and body["catalog"]["TICA"] == [38]
        assert body["catalog"]["skipped"] == 1  # the broken tess-s0099-1-1-cube.fits
        # what an operator needs of the index, and no server path anywhere in the answer
        index = body["catalog"]["index"]
        assert index["storage"] == "local" and index["age_s"] >= 0 and index["built_at"].endswith("Z")
        assert body["catalog"]["locations"] == {"local": 1, "s3": 0} and body["catalog"]["cubes"] == 3
        assert not [v for v in _strings(body) if "/" in v], body
        assert str(live_server.settings.work_dir) not in r.text
    assert httpx.get(live_server.url + "/version").json()["api"] == "tesscut v0.1"


def _poll(url: str, proc, deadline_s: float = 90.0) -> httpx.Response:
    """GET ``url`` until it answers 200 (the server is up) or ``proc`` exits; the last answer."""

    def answer() -> httpx.Response | None:
        if proc.poll() is not None:
            raise AssertionError(f"the server did not answer {url} (exit status {proc.poll()})")
        try:
            r = httpx.get(url, timeout=5)
        except httpx.TransportError:
            return None
        return r if r.status_code == 200 else None

    return wait_until(answer, timeout=deadline_s, interval=0.1,
                      message=lambda: f"the server did not answer {url} (exit status {proc.poll()})")


def test_uvicorn_app_main_app_serves_the_environments_settings(service_data, tmp_path):
    import os
    import socket
    import subprocess

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    cubes = service_data[0]
    env = {**os.environ, "CUTOUT_CUBE_DIRS": json.dumps([str(cubes["spoc38"].parent)]),
           "CUTOUT_WORK_DIR": str(tmp_path / "work"), "CUTOUT_MAX_CUTOUT_SIDE": "12"}
    log = (tmp_path / "uvicorn.log").open("w")
    # what an operator types first: FastAPI's convention of a module-level app
    proc = subprocess.Popen([sys.executable, "-m", "uvicorn", "app.main:app", "--host", "127.0.0.1", "--port",
                             str(port)], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        health = _poll(f"http://127.0.0.1:{port}/health", proc).json()
        assert health["catalog"]["SPOC"] == [11, 38]  # the cubes CUTOUT_CUBE_DIRS names
        r = httpx.get(f"http://127.0.0.1:{port}/tesscut/api/v0.1/astrocut",
                      params={"ra": DEMO_RA, "dec": DEMO_DEC, "x": 13, "y": 5, "sector": 38}, timeout=30)
        assert r.status_code == 413 and r.json()["error"]["field"] == "x"  # CUTOUT_MAX_CUTOUT_SIDE
    finally:
        proc.terminate()
        proc.wait(30)
        log.close()


def test_importing_create_app_builds_nothing():
    import subprocess

    code = ("import app.main as m; assert '_app' not in vars(m); from app.main import create_app; "
            "assert '_app' not in vars(m); print('ok')")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120,
                         check=False)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr


def test_committed_openapi_is_current(live_server):
    sys.path.insert(0, str(ROOT / "scripts"))
    from export_openapi import openapi_text

    committed = (ROOT / "openapi" / "openapi.json").read_text()
    assert committed == openapi_text(), "run scripts/export_openapi.py"
    assert json.loads(committed) == json.loads(json.dumps(live_server.app.openapi()))


@pytest.mark.parametrize("path", ["/health", "/version", "/", "/api/v0.1/sector?ra=217.42893801&dec=-62.67949189",
                                  "/api/v0.1/astrocut?ra=217.42893801&dec=-62.67949189&x=5&sector=38"])
def test_head_answers_every_get_route(live_server, path):
    get = httpx.get(live_server.url + path, timeout=30)
    head = httpx.head(live_server.url + path, timeout=30)
    assert head.status_code == get.status_code == 200
    assert head.content == b"" and head.headers["content-type"] == get.headers["content-type"]


def test_cors_is_off_by_default_and_on_when_configured(live_server, make_server, service_data):
    cubes, _root, _images = service_data
    configured = make_server(cube_dirs=[str(cubes["spoc38"].parent)], cors_origins=["https://pages.example.org"])
    origin = {"Origin": "https://pages.example.org"}
    plain = httpx.get(live_server.url + "/health", headers=origin, timeout=10)
    assert "access-control-allow-origin" not in plain.headers
    allowed = httpx.get(configured.url + "/health", headers=origin, timeout=10)
    assert allowed.headers["access-control-allow-origin"] == "https://pages.example.org"
    other = httpx.get(configured.url + "/health", headers={"Origin": "https://evil.example"}, timeout=10)
    assert "access-control-allow-origin" not in other.headers


def test_pool_refuses_beyond_queue_and_times_out():
    import threading

    async def main():
        pool = WorkerPool(workers=1, queue_size=1, timeout_s=30)
        outcomes: list[str] = []
        gate = threading.Event()  # the calls run until the test lets them finish

        async def one():
            try:
                await pool.run(gate.wait, 30)
                outcomes.append("ok")
            except E.UnavailableError:
                outcomes.append("busy")

        async with anyio.create_task_group() as tg:
            tg.start_soon(one)  # runs
            await async_wait_until(lambda: pool.stats()["running"] == 1, message="the first call runs")
            tg.start_soon(one)  # waits for the worker
            await async_wait_until(lambda: pool.stats()["waiting"] == 1, message="the second call waits")
            tg.start_soon(one)  # the queue (1) is full: refused at once
            await async_wait_until(lambda: outcomes == ["busy"], message="the third call is refused")
            gate.set()
        assert sorted(outcomes) == ["busy", "ok", "ok"]
        stuck = threading.Event()
        with pytest.raises(E.CutoutTimeoutError):
            await pool.run(stuck.wait, 30, timeout_s=0.05)
        # the timed-out thread keeps its slot until it ends, then the pool works again
        assert pool.stats()["running"] == 1 and pool.stats()["timeouts"] == 1
        stuck.set()
        assert await pool.run(lambda: 7, timeout_s=30) == 7
        assert pool.stats()["running"] == 0

    anyio.run(main)


def test_zip_first_bytes_leave_before_later_members_are_made():
    """The zip streams as soon as its first member is made, while the later ones are still being
    made (several at once), and its members come out in order."""
    import io
    import threading
    import time
    import zipfile

    from app.planning.answers import ZipMember

    size = 3 * 1024 * 1024
    gates = [threading.Event() for _ in range(5)]
    running: set[int] = set()
    lock = threading.Lock()

    def maker(i):
        def make(cancel):
            with lock:
                running.add(i)
            assert gates[i].wait(30), f"member {i} was never released"
            return bytes([i]) * size
        return ZipMember(f"m{i}.bin", make, size, memory_bytes=size)

    async def main():
        pool = WorkerPool(workers=1, queue_size=0, timeout_s=60, member_threads=4, zip_concurrency=3,
                          zip_readahead_bytes=8 * size)
        stream = zip_chunks(pool, [maker(i) for i in reversed(range(5))])  # member 0 last
        gates[4].set()  # only the first member (m4) can be made
        with anyio.fail_after(30):
            first = await stream.__anext__()
        assert first[:4] == b"PK\x03\x04"
        deadline = time.monotonic() + 30
        while not {3, 2, 1} <= running and time.monotonic() < deadline:  # made ahead, 3 at once
            await anyio.sleep(0.01)
        with lock:
            assert {3, 2, 1} <= running and 0 not in running  # the last waits for a free maker
        for gate in gates:
            gate.set()
        data = first
        async for chunk in stream:
            data += chunk
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            assert zf.namelist() == [f"m{i}.bin" for i in reversed(range(5))]
            assert all(zf.read(f"m{i}.bin") == bytes([i]) * size for i in range(5))

    anyio.run(main)


def test_s3_settings_are_the_engines_one_definition(monkeypatch):
    """The service's S3 settings are the engine's S3Config, read from CUTOUT_S3_<FIELD>, and the
    flat s3_<field> keywords set the same fields in code."""
    import dataclasses

    from core.storage.s3 import S3Config

    monkeypatch.setenv("CUTOUT_S3_MAX_ATTEMPTS", "7")
    monkeypatch.setenv("CUTOUT_S3_ENDPOINT_URL", "http://127.0.0.1:9")
    assert Settings().s3 == dataclasses.replace(S3Config.from_env()) and Settings().s3.max_attempts == 7
    s = Settings(s3_read_timeout_s=3, s3_max_attempts=2)
    assert (s.s3.read_timeout_s, s.s3.max_attempts, s.s3.endpoint_url) == (3, 2, "http://127.0.0.1:9")
    assert s.uses_s3()
    with pytest.raises(ValueError):
        Settings(s3_no_such_field=1)
