"""Access logging and Prometheus metrics: one structured log line per request, and the metrics
``/metrics`` serves (:mod:`app.routers.system`).

``install(app)`` adds :class:`AccessLogMiddleware` (a plain ASGI middleware: it wraps ``send`` and
counts body bytes as they leave, so streamed zips are never buffered) and the app's
:class:`Metrics` (``prometheus-client``, one registry per app) on ``app.state.metrics``.

One JSON line per request on the ``app.access`` logger, for example::

    {"ts": "2026-01-02T03:04:05.678+00:00", "event": "request", "method": "GET",
     "path": "/tesscut/api/v0.1/astrocut",
     "route": "/tesscut/api/v0.1/astrocut", "status": 200, "duration_ms": 41.7, "bytes": 66240,
     "request_id": "1f0c...", "client": "127.0.0.1", "cutout_size": "5x5", "frames": 10}

The request id is the app's (``scope['state']['request_id']``, set by
:class:`app.errors.RequestIdMiddleware`, or its ``X-Request-ID`` response header), else the
client's ``X-Request-ID``, else a new one. Handlers describe their cutout with
:func:`record_cutout` (``request.state.cutout_size`` / ``request.state.cutout_frames``).

Metrics (all prefixed ``cutout_``): requests by method/route/status, a duration histogram by
route, response bytes by route, requests in progress, cutouts and pixel-frames served, storage
reads (gets and bytes, all sources and S3 only, from :data:`core.storage.sources.GLOBAL_STATS` and
``GLOBAL_S3_STATS``), the worker pool (running, waiting = queue depth, timeouts, refusals) and
the number of hosted cubes. Routes are labelled by their template (``/tesscut/api/v0.1/astrocut``),
unmatched paths as ``<unmatched>``, so label cardinality stays bounded.
"""

from __future__ import annotations

import json
import logging
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from fastapi import FastAPI, Request
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from core.product import Product

__all__ = ["ACCESS_LOGGER", "METRICS_PATH", "AccessLogMiddleware", "Metrics", "install", "record_cutout"]

#: where the Prometheus text is served
METRICS_PATH = "/metrics"
#: the logger of the per-request lines
ACCESS_LOGGER = "app.access"

_DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
_UNMATCHED = "<unmatched>"


def record_cutout(request: Request, stats: Any) -> None:
    """Tell the access log and metrics what a request cut (a planner's
    :class:`~app.planning.answers.CutoutStats`; call from a handler).

    Sets ``request.state.cutout_size = "NXxNY"``, ``cutout_frames`` (all cutouts' frames) and
    ``cutout_count``; the metrics count the cutouts and their pixels x frames once the answer
    has gone out with a 2xx status.
    """
    request.state.cutout_size = f"{int(stats.nx)}x{int(stats.ny)}"
    request.state.cutout_nx = int(stats.nx)
    request.state.cutout_ny = int(stats.ny)
    request.state.cutout_frames = int(stats.frames)
    request.state.cutout_count = int(stats.count)


class _ServiceCollector(Collector):
    """Reads storage counters and the app's worker pool / catalog at scrape time."""

    def __init__(self, app: FastAPI) -> None:
        self.app = app

    def collect(self) -> Iterator[Any]:
        from core.storage import sources as storage

        gets = CounterMetricFamily("cutout_storage_gets", "Reads from cube/image storage (pread or S3 GET).",
                                   labels=["source"])
        nbytes = CounterMetricFamily("cutout_storage_read_bytes", "Bytes read from cube/image storage.",
                                     labels=["source"])
        for source, stats in (("all", storage.GLOBAL_STATS), ("s3", getattr(storage, "GLOBAL_S3_STATS", None))):
            if stats is None:
                continue
            g, b = stats.snapshot()
            gets.add_metric([source], g)
            nbytes.add_metric([source], b)
        yield gets
        yield nbytes

        services = getattr(self.app.state, "services", None)
        pool = getattr(services, "pool", None)
        if pool is not None and hasattr(pool, "stats"):
            stats = pool.stats()
            for key, kind, help_text in (
                ("workers", "gauge", "Worker threads that may run engine calls at once."),
                ("queue_size", "gauge", "Requests allowed to wait for a worker."),
                ("running", "gauge", "Engine calls running now."),
                ("waiting", "gauge", "Engine calls waiting for a worker (queue depth)."),
                ("timeouts", "counter", "Engine calls that missed their deadline."),
                ("refused", "counter", "Requests refused because the queue was full (503)."),
            ):
                if key not in stats:
                    continue
                name = f"cutout_worker_{key}"
                family = (GaugeMetricFamily if kind == "gauge" else CounterMetricFamily)(name, help_text)
                family.add_metric([], stats[key])
                yield family
        catalog = getattr(services, "catalog", None)
        if catalog is not None and hasattr(catalog, "entries"):
            cubes = GaugeMetricFamily("cutout_catalog_cubes", "Hosted cubes.", labels=["product"])
            for product in Product:
                cubes.add_metric([product], len(catalog.entries(product)))
            yield cubes
            refreshes = CounterMetricFamily("cutout_catalog_refreshes", "Catalog snapshots published.")
            refreshes.add_metric([], getattr(catalog, "refreshes", 0))
            yield refreshes
        budget = getattr(services, "budget", None)
        if budget is not None:
            b = budget.stats()
            for key, kind, help_text in (
                ("memory_bytes", "gauge", "The memory budget of cutouts in flight."),
                ("memory_in_use", "gauge", "Memory taken by cutouts in flight (admitted)."),
                ("disk_bytes", "gauge", "The temporary-disk budget of cutouts in flight."),
                ("disk_in_use", "gauge", "Temporary disk taken by cutouts in flight (admitted)."),
                ("waiting", "gauge", "Requests waiting for budget."),
                ("admitted", "counter", "Requests admitted against the budget."),
                ("refused", "counter", "Requests refused for want of budget (503)."),
                ("too_large", "counter", "Requests larger than the whole budget (413)."),
            ):
                family = (GaugeMetricFamily if kind == "gauge" else CounterMetricFamily)(f"cutout_budget_{key}",
                                                                                          help_text)
                family.add_metric([], b[key])
                yield family
        from core.cubes.cache import default_cache

        cache = default_cache().stats()
        for key, help_text in (("cubes", "Opened cubes held."), ("bytes", "Bytes the opened cubes hold."),
                               ("max_bytes", "The byte bound of opened cubes.")):
            family = GaugeMetricFamily(f"cutout_cube_cache_{key}", help_text)
            family.add_metric([], cache[key])
            yield family


class Metrics:
    """The app's Prometheus metrics, in a registry of its own (several apps may live in one process)."""

    def __init__(self, app: FastAPI) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter("cutout_http_requests", "HTTP requests answered.",
                                ["method", "route", "status"], registry=r)
        self.duration = Histogram("cutout_http_request_duration_seconds",
                                  "Time from request to last response byte.", ["method", "route"],
                                  buckets=_DURATION_BUCKETS, registry=r)
        self.response_bytes = Counter("cutout_http_response_bytes", "Response body bytes sent.", ["route"],
                                      registry=r)
        self.in_progress = Gauge("cutout_http_requests_in_progress", "Requests being answered.", registry=r)
        self.cutouts = Counter("cutout_cutouts", "Requests that produced a cutout.", ["route"], registry=r)
        self.pixel_frames = Counter("cutout_cutout_pixel_frames", "Pixels x frames of the cutouts served.",
                                    ["route"], registry=r)
        r.register(_ServiceCollector(app))

    def render(self) -> bytes:
        """The Prometheus text exposition of every metric."""
        return generate_latest(self.registry)


def _route_of(scope: Scope) -> str:
    """The matched route's full template (``/tesscut/api/v0.1/astrocut``), or ``<unmatched>``.

    ``scope['route']`` holds the route as declared; with routers included under a prefix its
    path may lack the prefix (FastAPI >= 0.16x keeps the original route), so the prefix is taken
    from the request path: whatever precedes the route's own rendered path.
    """
    route = scope.get("route")
    template = getattr(route, "path_format", None) or getattr(route, "path", None)
    if template is None:
        if "endpoint" not in scope:
            return _UNMATCHED
        # A mount (static files) or a plain Starlette route: no route object in the scope.
        app_root = scope.get("app_root_path")
        root = scope.get("root_path", "")
        if app_root is not None and root != app_root and root.startswith(app_root):
            return root[len(app_root):] + "/{path}"
        return scope.get("path") or "/"  # plain routes here have no path parameters
    params = scope.get("path_params") or {}
    try:
        rendered = template.format(**params)
    except (KeyError, IndexError, ValueError):
        return template or "/"
    path = scope.get("path", "")
    if rendered and path.endswith(rendered):
        return path[: len(path) - len(rendered)] + template
    return template or "/"


def _header(headers: Any, name: bytes) -> str | None:
    for key, value in headers or []:
        if key.lower() == name:
            text = value.decode("latin-1").strip()
            if 0 < len(text) <= 128 and text.isprintable():
                return text
            return None
    return None


class AccessLogMiddleware:
    """Log one JSON line per HTTP request and update :class:`Metrics`; bytes counted as they are sent."""

    def __init__(self, app: ASGIApp, metrics: Metrics, logger: logging.Logger | None = None) -> None:
        self.app = app
        self.metrics = metrics
        self.log = logger or logging.getLogger(ACCESS_LOGGER)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        info: dict[str, Any] = {"status": None, "bytes": 0, "response_rid": None, "complete": False}

        async def counting_send(message: Message) -> None:
            kind = message["type"]
            if kind == "http.response.start":
                info["status"] = int(message["status"])
                info["response_rid"] = _header(message.get("headers"), b"x-request-id")
            elif kind == "http.response.body":
                info["bytes"] += len(message.get("body", b""))
                if not message.get("more_body", False):
                    info["complete"] = True
            await send(message)

        self.metrics.in_progress.inc()
        error: str | None = None
        try:
            await self.app(scope, receive, counting_send)
        except BaseException as exc:  # logged and re-raised: the server's own handler answers
            error = type(exc).__name__
            raise
        finally:
            self.metrics.in_progress.dec()
            self._finish(scope, info, time.perf_counter() - start, error)

    def _finish(self, scope: Scope, info: dict[str, Any], elapsed: float, error: str | None) -> None:
        status = info["status"] if info["status"] is not None else 500
        route = _route_of(scope)
        method = scope.get("method", "")
        state = scope.get("state") or {}
        rid = (
            state.get("request_id")
            or info["response_rid"]
            or _header(scope.get("headers"), b"x-request-id")
            or uuid.uuid4().hex
        )
        m = self.metrics
        m.requests.labels(method, route, str(status)).inc()
        m.duration.labels(method, route).observe(elapsed)
        m.response_bytes.labels(route).inc(info["bytes"])
        record: dict[str, Any] = {
            "ts": datetime.now(UTC).isoformat(timespec="milliseconds"),
            "event": "request",
            "method": method,
            "path": scope.get("path", ""),
            "route": route,
            "status": status,
            "duration_ms": round(elapsed * 1000.0, 2),
            "bytes": info["bytes"],
            "request_id": rid,
        }
        client = scope.get("client")
        if client:
            record["client"] = client[0]
        size = state.get("cutout_size")
        if size is not None:
            record["cutout_size"] = size
        frames = state.get("cutout_frames")
        if frames is not None:
            record["frames"] = frames
        nx, ny = state.get("cutout_nx"), state.get("cutout_ny")
        if size is not None and 200 <= status < 300:
            m.cutouts.labels(route).inc(int(state.get("cutout_count") or 1))
            if nx and ny and frames:
                m.pixel_frames.labels(route).inc(int(nx) * int(ny) * int(frames))
        if error is not None:
            record["error"] = error
        elif info["status"] is not None and not info["complete"]:
            record["incomplete"] = True  # the client went away, or a stream was cut short
        level = logging.ERROR if error is not None or status >= 500 else logging.INFO
        self.log.log(level, json.dumps(record, separators=(",", ":")))


def _ensure_handler(logger: logging.Logger) -> None:
    """Give the access logger a plain stderr handler when nothing up its chain would print INFO."""
    if logger.hasHandlers():
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger.addHandler(handler)
    logger.propagate = False
    if logger.level == logging.NOTSET:
        logger.setLevel(logging.INFO)


def install(app: FastAPI) -> Metrics:
    """Add the access-log middleware and the metrics to ``app`` (idempotent); return the metrics.

    Call before the app starts (middleware cannot be added later). In :func:`app.main.create_app`
    it runs inside the request-id and body-limit middleware, so it sees their request id and
    their 413 answers.
    """
    existing = getattr(app.state, "metrics", None)
    if isinstance(existing, Metrics):
        return existing
    metrics = Metrics(app)
    app.state.metrics = metrics
    logger = logging.getLogger(ACCESS_LOGGER)
    _ensure_handler(logger)
    app.add_middleware(AccessLogMiddleware, metrics=metrics, logger=logger)
    return metrics
