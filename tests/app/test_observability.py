"""Access log lines and /metrics (app.observability)."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import zipfile

import pytest
from fastapi.testclient import TestClient

from app import observability
from core.synthetic.ffis import DEMO_DEC, DEMO_RA

ASTROCUT = "/tesscut/api/v0.1/astrocut"


class _Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[dict] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(json.loads(record.getMessage()))


@pytest.fixture
def access_lines():
    """Parsed JSON lines of the ``app.access`` logger during one test."""
    logger = logging.getLogger(observability.ACCESS_LOGGER)
    handler = _Lines()
    logger.addHandler(handler)
    old = logger.level
    logger.setLevel(logging.INFO)
    try:
        yield handler.records
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old)


@pytest.fixture(scope="module")
def client(service_data, tmp_path_factory):
    """The real app (create_app, observability and the web page included), in-process."""
    from app.main import create_app
    from app.settings import Settings

    cubes, image_root, _images = service_data
    settings = Settings(cube_dirs=[str(cubes["spoc38"].parent)], image_roots=[str(image_root)],
                        work_dir=tmp_path_factory.mktemp("obs-work"), max_cutout_side=50,
                        max_cutout_volume=20 * 20 * 10, workers=2, queue_size=4)

    app = create_app(settings, install=observability.install)
    with TestClient(app) as c:
        yield c


def _metric(text: str, name: str, **labels: str) -> float:
    """The value of one sample of the Prometheus text (0 if absent)."""
    want = ",".join(f'{k}="{v}"' for k, v in labels.items())
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        key, _, value = line.rpartition(" ")
        if key == (f"{name}{{{want}}}" if labels else name):
            return float(value)
    return 0.0


def test_one_line_per_request_with_request_id_and_bytes(client, access_lines):
    params = {"ra": DEMO_RA, "dec": DEMO_DEC, "x": 5, "y": 5, "sector": 38}
    r = client.get(ASTROCUT, params=params, headers={"X-Request-ID": "abc-123"})
    assert r.status_code == 200 and r.headers["content-type"] == "application/zip"
    assert zipfile.ZipFile(io.BytesIO(r.content)).namelist()
    assert len(access_lines) == 1
    line = access_lines[0]
    assert line["method"] == "GET" and line["path"] == ASTROCUT and line["route"] == ASTROCUT
    assert line["status"] == 200
    assert line["bytes"] == len(r.content) > 0  # counted while streaming
    assert line["request_id"] == "abc-123" == r.headers["x-request-id"]
    assert line["duration_ms"] >= 0 and line["ts"].endswith("+00:00")


def test_request_id_generated_when_absent(client, access_lines):
    r = client.get("/health")
    assert r.status_code == 200
    (line,) = access_lines
    assert line["request_id"] == r.headers["x-request-id"] and len(line["request_id"]) >= 16
    assert line["bytes"] == len(r.content)


def test_errors_and_unmatched_paths(client, access_lines):
    r = client.get(ASTROCUT, params={"ra": DEMO_RA})  # dec missing
    assert r.status_code == 400
    r2 = client.get("/no/such/path/123")
    assert r2.status_code == 404
    assert client.get("/static/app.js").status_code == 200
    assert client.get("/static/missing.js").status_code == 404
    assert [(rec["status"], rec["route"]) for rec in access_lines] == [
        (400, ASTROCUT), (404, "<unmatched>"), (200, "/static/{path}"), (404, "/static/{path}")]
    assert access_lines[0]["bytes"] == len(r.content)


def test_cutout_size_and_frames_from_request_state(client, access_lines):
    r = client.get("/preview/cube.png", params={"ra": DEMO_RA, "dec": DEMO_DEC, "x": 7, "y": 5, "sector": 38})
    assert r.status_code == 200, r.text
    (line,) = access_lines
    assert line["cutout_size"] == "7x5" and line["frames"] == 10


def test_metrics_endpoint(client):
    before = client.get("/metrics").text
    params = {"ra": DEMO_RA, "dec": DEMO_DEC, "x": 4, "y": 3, "sector": 38}
    size = len(client.get(ASTROCUT, params=params).content)
    client.get("/preview/cube.png", params=params)
    r = client.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    text = r.text
    labels = {"method": "GET", "route": ASTROCUT, "status": "200"}
    assert _metric(text, "cutout_http_requests_total", **labels) == \
        _metric(before, "cutout_http_requests_total", **labels) + 1
    assert _metric(text, "cutout_http_response_bytes_total", route=ASTROCUT) - \
        _metric(before, "cutout_http_response_bytes_total", route=ASTROCUT) == size
    assert _metric(text, "cutout_http_request_duration_seconds_count", method="GET", route=ASTROCUT) >= 1
    assert 'cutout_http_request_duration_seconds_bucket{le="+Inf",method="GET"' in text
    # storage reads of the engine (local preads here: the 'all' source) went up
    assert _metric(text, "cutout_storage_gets_total", source="all") > \
        _metric(before, "cutout_storage_gets_total", source="all")
    assert _metric(text, "cutout_storage_read_bytes_total", source="all") > 0
    assert "cutout_storage_gets_total{source=\"s3\"}" in text
    # the worker pool and catalog
    assert _metric(text, "cutout_worker_workers") == 2
    assert _metric(text, "cutout_worker_waiting") == 0
    assert "cutout_worker_running" in text and "cutout_worker_refused_total" in text
    assert _metric(text, "cutout_catalog_cubes", product="SPOC") == 2
    assert _metric(text, "cutout_catalog_cubes", product="TICA") == 1
    # cutouts recorded by handlers: the preview's 4x3 px x 10 frames
    assert _metric(text, "cutout_cutout_pixel_frames_total", route="/preview/cube.png") >= 120


def test_api_cutouts_are_counted(live_server):
    """Cutouts of the API routes reach the metrics (as the page's do), over a real server."""
    import httpx

    def of_route(text: str, name: str, route: str) -> float:
        for line in text.splitlines():
            if line.startswith(name + "{") and f'route="{route}"' in line:
                return float(line.rsplit(" ", 1)[1])
        return 0.0

    route = "/api/v0.1/astrocut"
    params = {"ra": DEMO_RA, "dec": DEMO_DEC}
    before = httpx.get(live_server.url + "/metrics", timeout=10).text
    r = httpx.get(live_server.url + route, params={**params, "x": 5, "y": 4}, timeout=30)  # two sectors
    assert r.status_code == 200
    after = httpx.get(live_server.url + "/metrics", timeout=10).text
    assert of_route(after, "cutout_cutouts_total", route) - of_route(before, "cutout_cutouts_total", route) == 2
    frames = of_route(after, "cutout_cutout_pixel_frames_total", route) - of_route(
        before, "cutout_cutout_pixel_frames_total", route)
    assert frames == 5 * 4 * 20  # two cubes of 10 frames
    r = httpx.get(live_server.url + "/api/v0.1/fits_cut", params={**params, "images": "img0.fits", "x": 5}, timeout=30)
    assert r.status_code == 200
    assert of_route(httpx.get(live_server.url + "/metrics", timeout=10).text, "cutout_cutouts_total",
                    "/api/v0.1/fits_cut") >= 1


def test_install_is_idempotent(client):
    app = client.app
    assert observability.install(app) is app.state.metrics
    assert sum(1 for m in app.user_middleware if m.cls is observability.AccessLogMiddleware) == 1
    assert client.get("/metrics").status_code == 200


def test_streaming_bytes_are_counted_without_buffering():
    """Each body chunk reaches the server before the app makes the next one."""
    from fastapi import FastAPI

    events: list[str] = []

    async def streaming_app(scope, receive, send):
        scope.setdefault("state", {}).update(cutout_size="5x7", cutout_frames=3)
        await send({"type": "http.response.start", "status": 200, "headers": [(b"x-request-id", b"rid-9")]})
        for i in range(3):
            events.append(f"make {i}")
            await send({"type": "http.response.body", "body": b"x" * (10 + i), "more_body": i < 2})

    async def server_send(message):
        if message["type"] == "http.response.body":
            events.append(f"sent {len(message['body'])}")

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    metrics = observability.Metrics(FastAPI())
    records: list[logging.LogRecord] = []
    logger = logging.getLogger("test.access")
    logger.propagate = False
    handler = logging.Handler()
    handler.emit = records.append  # type: ignore[method-assign]
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    middleware = observability.AccessLogMiddleware(streaming_app, metrics, logger)
    scope = {"type": "http", "method": "GET", "path": "/stream", "headers": [], "client": ("10.0.0.1", 5)}
    asyncio.run(middleware(scope, receive, server_send))
    assert events == ["make 0", "sent 10", "make 1", "sent 11", "make 2", "sent 12"]
    (record,) = records
    line = json.loads(record.getMessage())
    assert line["bytes"] == 33 and line["request_id"] == "rid-9" and line["client"] == "10.0.0.1"
    assert line["cutout_size"] == "5x7" and line["frames"] == 3 and "incomplete" not in line


def test_failing_app_is_logged_as_an_error_and_reraised():
    from fastapi import FastAPI

    async def broken(scope, receive, send):
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"abc", "more_body": True})
        raise RuntimeError("stream broke")

    async def sink(message):
        return None

    records: list[logging.LogRecord] = []
    logger = logging.getLogger("test.access.err")
    logger.propagate = False
    handler = logging.Handler()
    handler.emit = records.append  # type: ignore[method-assign]
    logger.addHandler(handler)
    metrics = observability.Metrics(FastAPI())
    middleware = observability.AccessLogMiddleware(broken, metrics, logger)
    with pytest.raises(RuntimeError):
        asyncio.run(middleware({"type": "http", "method": "GET", "path": "/x", "headers": []}, None, sink))
    (record,) = records
    assert record.levelno == logging.ERROR
    line = json.loads(record.getMessage())
    assert line["error"] == "RuntimeError" and line["bytes"] == 3 and line["route"] == "<unmatched>"
