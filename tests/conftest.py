"""Shared pytest fixtures. Each area keeps its fixtures in its own delimited section."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

try:
    from tests.polling import wait_until
except ImportError:  # pragma: no cover - tests/ itself on sys.path
    from polling import wait_until

# --- synthetic data ---
# Small synthetic sectors written once per test session by core.synthetic.ffis.write_sector.
# spoc_sector and spoc_sector_b both contain (DEMO_RA, DEMO_DEC), at the centre of their 64x64 images.
# core.synthetic.ffis is imported inside each fixture so that sessions not using them start faster.
if TYPE_CHECKING:
    from core.synthetic.ffis import SyntheticSector


@pytest.fixture(scope="session")
def spoc_sector(tmp_path_factory: pytest.TempPathFactory) -> SyntheticSector:
    """SPOC sector 38, camera 2, CCD 2: 10 frames of 64x64 px centred on (DEMO_RA, DEMO_DEC), seed 1."""
    from core.synthetic.ffis import DEMO_DEC, DEMO_RA, write_sector

    return write_sector(tmp_path_factory.mktemp("spoc"), sector=38, camera=2, ccd=2, frames=10,
                        size=(64, 64), center=(DEMO_RA, DEMO_DEC), seed=1)


@pytest.fixture(scope="session")
def spoc_sector_b(tmp_path_factory: pytest.TempPathFactory) -> SyntheticSector:
    """SPOC sector 11, camera 2, CCD 2: the same position, so two sectors contain the target."""
    from core.synthetic.ffis import DEMO_DEC, DEMO_RA, write_sector

    return write_sector(tmp_path_factory.mktemp("spoc_b"), sector=11, camera=2, ccd=2, frames=10,
                        size=(64, 64), center=(DEMO_RA, DEMO_DEC), seed=1)


@pytest.fixture(scope="session")
def tica_sector(tmp_path_factory: pytest.TempPathFactory) -> SyntheticSector:
    """TICA sector 38, camera 2, CCD 2: 10 frames of 64x64 px centred on (DEMO_RA, DEMO_DEC), seed 1."""
    from core.synthetic.ffis import DEMO_DEC, DEMO_RA, write_sector

    return write_sector(tmp_path_factory.mktemp("tica"), product="TICA", sector=38, camera=2, ccd=2,
                        frames=10, size=(64, 64), center=(DEMO_RA, DEMO_DEC), seed=1)


# --- end synthetic data ---


# --- s3 ---
# A real moto S3 server (subprocess `python -m moto.server`, 127.0.0.1, free port) for the whole session.


@pytest.fixture(scope="session")
def s3_server():
    """A running moto S3 server: `.endpoint_url`, `.config` (S3Config, dummy creds, small timeouts),
    `.client` (boto3), `.upload(path, bucket, key) -> "s3://bucket/key"`, `.put_bytes(data, bucket, key)`,
    `.with_config(**changes) -> S3Config`."""
    try:
        from tests.s3server import MotoS3Server
    except ImportError:  # pragma: no cover - tests/ itself on sys.path
        from s3server import MotoS3Server
    from core.storage import s3 as storage

    server = MotoS3Server().start()
    try:
        yield server
    finally:
        server.stop()
        storage.clear_caches()


# --- end s3 ---


# --- service ---
# A real uvicorn server on 127.0.0.1 (in a thread) over cubes built from the synthetic sectors:
# SPOC sectors 38 and 11 and TICA 38 (cam 2, CCD 2, 64x64, 10 frames, centred on DEMO_RA/DEMO_DEC),
# plus FITS images under an image root.


class LiveServer:
    """A running service: ``.url`` (no trailing slash), ``.settings``, ``.app``, ``.cubes``
    (``{"spoc38": path, "spoc11": path, "tica38": path}``), ``.image_root`` and ``.images``
    (names relative to the root)."""

    def __init__(self, url, settings, app, server, thread, cubes, image_root, images):
        self.url, self.settings, self.app = url, settings, app
        self.server, self.thread = server, thread
        self.cubes, self.image_root, self.images = cubes, image_root, images


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_uvicorn(app, host: str, port: int):
    """Run ``app`` under a real uvicorn server in a daemon thread; return (server, thread) once it
    accepts connections. Stop with ``stop_uvicorn``."""
    import threading

    from app.server import build_server

    settings = app.state.services.settings
    server = build_server(app, settings, host=host, port=port, log_level="warning")
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()

    def up() -> bool:
        if not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        return server.started

    wait_until(up, message="uvicorn did not start")
    return server, thread


def stop_uvicorn(server, thread) -> None:
    server.should_exit = True
    thread.join(10)


@pytest.fixture(scope="session")
def service_data(tmp_path_factory, spoc_sector, spoc_sector_b, tica_sector):
    """Cube folder (MAST names) and image root for the service tests."""
    import shutil

    from core.building.factory import CubeFactory, TicaCubeFactory

    cube_dir = tmp_path_factory.mktemp("cubes")
    cubes = {
        "spoc38": cube_dir / "tess-s0038-2-2-cube.fits",
        "spoc11": cube_dir / "sub" / "tess-s0011-2-2-cube.fits",
        "tica38": cube_dir / "s0038-2-2-cube.fits",
    }
    cubes["spoc11"].parent.mkdir()
    CubeFactory().make_cube([str(f) for f in spoc_sector.ffi_files], str(cubes["spoc38"]), verbose=False)
    CubeFactory().make_cube([str(f) for f in spoc_sector_b.ffi_files], str(cubes["spoc11"]), verbose=False)
    TicaCubeFactory().make_cube([str(f) for f in tica_sector.ffi_files], str(cubes["tica38"]), verbose=False)
    (cube_dir / "tess-s0099-1-1-cube.fits").write_bytes(b"not a cube")  # logged and skipped
    image_root = tmp_path_factory.mktemp("images")
    images = []
    for i, ffi in enumerate(spoc_sector.ffi_files[:3]):
        name = f"img{i}.fits"
        shutil.copy(ffi, image_root / name)
        images.append(name)
    return cubes, image_root, images


@pytest.fixture(scope="session")
def live_server(service_data, tmp_path_factory):
    """A real uvicorn server on a free loopback port, stopped at the end of the session."""


    from app.main import create_app
    from app.settings import Settings

    cubes, image_root, images = service_data
    settings = Settings(
        cube_dirs=[str(cubes["spoc38"].parent)],
        image_roots=[str(image_root)],
        work_dir=tmp_path_factory.mktemp("work"),
        port=_free_port(),
        max_cutout_side=50,
        max_cutout_volume=20 * 20 * 10,
        max_upload_bytes=2_000_000,
        workers=2,
        queue_size=8,
        request_timeout_s=60,
    )
    app = create_app(settings)
    server, thread = start_uvicorn(app, settings.host, settings.port)
    try:
        yield LiveServer(f"http://{settings.host}:{settings.port}", settings, app, server, thread,
                         cubes, image_root, images)
    finally:
        stop_uvicorn(server, thread)


# --- end service ---


# --- cubes ---
# Cubes built once per session from the synthetic sectors (owner: cube/tpf).
# spoc_cube: our CubeFactory; astrocut_spoc_cube: astrocut 1.4.0's (the layout MAST publishes);
# tica_cube: our TicaCubeFactory. Names follow MAST's "tess-s0038-2-2-cube.fits".


@pytest.fixture(scope="session")
def spoc_cube(spoc_sector, tmp_path_factory: pytest.TempPathFactory) -> str:
    """Path of a SPOC cube (our CubeFactory) of `spoc_sector` (64x64 px, 10 frames)."""
    from core.building.factory import CubeFactory

    out = tmp_path_factory.mktemp("cube_ours") / "tess-s0038-2-2-cube.fits"
    CubeFactory().make_cube([str(f) for f in spoc_sector.ffi_files], str(out), verbose=False)
    return str(out)


@pytest.fixture(scope="session")
def astrocut_spoc_cube(spoc_sector, tmp_path_factory: pytest.TempPathFactory) -> str:
    """Path of a SPOC cube of `spoc_sector` built by astrocut 1.4.0's CubeFactory."""
    import warnings

    from astrocut import CubeFactory as AstrocutCubeFactory

    out = tmp_path_factory.mktemp("cube_astrocut") / "tess-s0038-2-2-cube.fits"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        AstrocutCubeFactory().make_cube([str(f) for f in spoc_sector.ffi_files], str(out), verbose=False)
    return str(out)


@pytest.fixture(scope="session")
def tica_cube(tica_sector, tmp_path_factory: pytest.TempPathFactory) -> str:
    """Path of a TICA cube (our TicaCubeFactory) of `tica_sector`."""
    from core.building.factory import TicaCubeFactory

    out = tmp_path_factory.mktemp("cube_tica") / "tica-s0038-2-2-cube.fits"
    TicaCubeFactory().make_cube([str(f) for f in tica_sector.ffi_files], str(out), verbose=False)
    return str(out)


# --- end cubes ---


# --- faults ---
# Helpers for the fault/limit/confinement/shutdown tests (tests/app/test_faults.py, test_limits.py,
# test_confinement.py, test_shutdown.py): extra in-process uvicorn servers with their own settings,
# a TCP proxy that injects S3 faults (latency, HTTP 500s, silence, outage), and a check that no
# thread is left running engine code.


class FaultProxy:
    """A threaded TCP proxy on 127.0.0.1 in front of ``upstream`` (host, port).

    ``mode`` (changeable at any time) applies to each chunk a client sends:
    ``"pass"`` forwards it; ``"delay"`` sleeps ``delay_s`` first; ``"error"`` answers an HTTP 500
    (S3 ``InternalError`` XML) itself; ``"silent"`` swallows it and never answers.
    ``requests`` counts HTTP requests seen (chunks starting with a method); ``close()`` stops it.
    """

    def __init__(self, upstream: tuple[str, int]) -> None:
        import socket
        import threading

        self.upstream = upstream
        self.mode = "pass"
        self.delay_s = 0.0
        self.requests = 0
        self._lock = threading.Lock()
        self._socks: list = []
        self._listener = socket.socket()
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(64)
        self.port = self._listener.getsockname()[1]
        self.endpoint_url = f"http://127.0.0.1:{self.port}"
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        import threading

        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            with self._lock:
                self._socks.append(client)
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _pump(self, src, dst) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.close()
                except OSError:
                    pass

    def _serve(self, client) -> None:
        import socket
        import threading
        import time

        upstream = None
        try:
            while True:
                data = client.recv(65536)
                if not data:
                    break
                if data.split(b" ", 1)[0] in (b"GET", b"HEAD", b"PUT", b"POST", b"DELETE"):
                    with self._lock:
                        self.requests += 1
                mode = self.mode
                if mode == "silent":
                    continue
                if mode == "error":
                    body = b"" if data.startswith(b"HEAD") else (
                        b"<?xml version='1.0'?><Error><Code>InternalError</Code>"
                        b"<Message>injected</Message></Error>")
                    client.sendall(b"HTTP/1.1 500 Internal Server Error\r\nContent-Type: application/xml\r\n"
                                   b"Content-Length: %d\r\n\r\n%s" % (len(body) if body else 120, body))
                    continue
                if mode == "delay":
                    time.sleep(self.delay_s)
                if upstream is None:
                    upstream = socket.create_connection(self.upstream, timeout=5)
                    upstream.settimeout(None)
                    with self._lock:
                        self._socks.append(upstream)
                    threading.Thread(target=self._pump, args=(upstream, client), daemon=True).start()
                upstream.sendall(data)
        except OSError:
            pass
        finally:
            for s in (client, upstream):
                if s is not None:
                    try:
                        s.close()
                    except OSError:
                        pass

    def close(self) -> None:
        """Stop listening and cut every connection (the endpoint is gone: connection refused)."""
        import socket

        self._closed = True
        try:
            self._listener.close()
        except OSError:
            pass
        with self._lock:
            socks, self._socks = self._socks, []
        for s in socks:
            try:
                s.shutdown(socket.SHUT_RDWR)
                s.close()
            except OSError:
                pass


@pytest.fixture
def fault_proxy():
    """``fault_proxy(endpoint_url) -> FaultProxy`` in front of an HTTP endpoint; closed at teardown."""
    from urllib.parse import urlsplit

    made: list[FaultProxy] = []

    def make(endpoint_url: str) -> FaultProxy:
        parts = urlsplit(endpoint_url)
        proxy = FaultProxy((parts.hostname, parts.port))
        made.append(proxy)
        return proxy

    yield make
    for proxy in made:
        proxy.close()


class ExtraServer:
    """An in-process uvicorn server: ``.url``, ``.app``, ``.settings``, ``.services``, ``.server``."""

    def __init__(self, url, settings, app, server, thread):
        self.url, self.settings, self.app, self.server, self.thread = url, settings, app, server, thread
        self.services = app.state.services

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(15)


@pytest.fixture
def make_server(tmp_path_factory):
    """``make_server(**settings) -> ExtraServer``: a real uvicorn server on a free port with the given
    settings (``work_dir`` defaults to a fresh temp dir); stopped at teardown."""


    from app.main import create_app
    from app.settings import Settings

    made: list[ExtraServer] = []

    def make(*, install=None, **values) -> ExtraServer:
        values.setdefault("work_dir", tmp_path_factory.mktemp("work"))
        values.setdefault("port", _free_port())
        settings = Settings(**values)
        app = create_app(settings, install=install)
        server, thread = start_uvicorn(app, settings.host, settings.port)
        handle = ExtraServer(f"http://{settings.host}:{settings.port}", settings, app, server, thread)
        made.append(handle)
        return handle

    yield make
    for handle in made:
        handle.stop()


def engine_threads() -> list[str]:
    """Names of threads (other than the caller's) currently executing code of ``core/`` or
    ``app/`` (a worker still cutting, a leaked reader); idle pool threads do not count."""
    import os
    import sys
    import threading

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    dirs = (os.path.join(root, "core") + os.sep, os.path.join(root, "app") + os.sep)
    me = threading.get_ident()
    names = {t.ident: t.name for t in threading.enumerate()}
    busy = []
    for ident, frame in sys._current_frames().items():
        if ident == me:
            continue
        f = frame
        while f is not None:
            if f.f_code.co_filename.startswith(dirs):
                # the catalog's refresh thread waiting for its next turn is idle, not engine work
                idle = f.f_code.co_name == "_run" and f is not frame and "threading" in frame.f_code.co_filename
                if not idle:
                    busy.append(names.get(ident, str(ident)))
                break
            f = f.f_back
    return busy


@pytest.fixture
def no_leaked_threads():
    """``no_leaked_threads(timeout=10, pool=None)``: wait until no thread runs engine code and, if
    given, the worker pool has no call running (fails otherwise)."""

    def check(timeout: float = 10.0, pool=None) -> None:
        def idle() -> bool:
            return not engine_threads() and not (pool.stats()["running"] if pool is not None else 0)

        wait_until(idle, timeout=timeout, interval=0.05, message=lambda: (
            f"threads still running engine code: {engine_threads()}; pool running: "
            f"{pool.stats()['running'] if pool is not None else 0}"))

    return check


# --- end faults ---
