"""tests/s3rver.py (s3rver with sparse objects placed in its store) and tests/latency_proxy.py."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from core.cubes import cache as cube_mod
from core.storage import s3 as storage
from core.storage.sources import open_source
from core.synthetic.archive import place_in_s3rver, write_archive, write_sparse_cube
from core.tpf.cut import CutoutFactory

try:
    from tests.latency_proxy import LatencyProxy
    from tests.s3rver import S3rverServer, S3rverUnavailable, ensure_installed
except ImportError:  # pragma: no cover - tests/ itself on sys.path
    from latency_proxy import LatencyProxy
    from s3rver import S3rverServer, S3rverUnavailable, ensure_installed

try:
    from tests.polling import wait_until
except ImportError:  # pragma: no cover - tests/ itself on sys.path
    from polling import wait_until

MB = 1024 * 1024
KEY = "s0038/tess-s0038-2-2-cube.fits"


@pytest.fixture(scope="module")
def s3r(tmp_path_factory):
    try:
        ensure_installed()
    except S3rverUnavailable as exc:
        pytest.skip(f"s3rver unavailable: {exc}")
    server = S3rverServer(parent_dir=tmp_path_factory.mktemp("s3rver")).start()
    try:
        yield server
    finally:
        server.stop()
        storage.clear_caches()
        cube_mod.clear_cache()


@pytest.fixture(scope="module")
def placed(s3r, tmp_path_factory):
    """A real-size (3,705-frame, 131 GB apparent) sparse cube placed in the store."""
    path = write_sparse_cube(tmp_path_factory.mktemp("cube") / "tess-s0038-2-2-cube.fits", sector=38, camera=2,
                             ccd=2)
    uri = s3r.place_file(path, "tess", KEY)
    return path, uri


def test_place_file_serves_a_sparse_real_size_cube(s3r, placed):
    path, uri = placed
    assert uri == f"s3://tess/{KEY}"
    # copied keeping its holes, not 131 GB of zeros: the stored object takes about the disk blocks
    # of the sparse original
    obj = s3r.object_path("tess", KEY)
    assert obj.stat().st_size == path.stat().st_size and obj.stat().st_blocks * 512 < 6 * MB
    assert obj.stat().st_blocks <= 2 * path.stat().st_blocks
    head = s3r.client.head_object(Bucket="tess", Key=KEY)
    assert head["ContentLength"] == path.stat().st_size
    assert head["ContentType"] == "application/fits"
    listed = s3r.client.list_objects_v2(Bucket="tess", Prefix="s0038/")["Contents"]
    assert [(o["Key"], o["Size"]) for o in listed] == [(KEY, path.stat().st_size)]
    assert storage.list_s3("s3://tess/s0038", s3=s3r.config) == [uri]
    # ranged GETs through core.storage.sources: headers, the hole, the table at the end
    src = open_source(uri, s3=s3r.config)
    size = src.size
    with open(path, "rb") as fh:
        for off, n in ((0, 2880), (size // 2, 65536), (size - 70000, 70000)):
            fh.seek(off)
            assert src.read_range(off, n) == fh.read(n)
    src.close()
    # a 1-byte range (s3rver 3.7.1 served the whole object for bytes=0-0; the install patches it)
    one = s3r.client.get_object(Bucket="tess", Key=KEY, Range="bytes=0-0")
    assert one["ContentLength"] == 1 and one["Body"].read() == b"S"


def test_open_cube_and_cut_over_s3rver(s3r, placed):
    _path, uri = placed
    cube_mod.clear_cache()
    c = cube_mod.open_cube(uri, s3=s3r.config)
    assert (c.ny, c.nx, c.nframes, c.sector, c.camera, c.ccd) == (2078, 2136, 3705, 38, 2, 2)
    ra, dec = c.wcs.all_pix2world(1200.0, 800.0, 0)
    tpf = CutoutFactory().cube_cut(uri, f"{float(ra)} {float(dec)}", 6, memory_only=True, s3=s3r.config)
    assert tpf[1].data["FLUX"].shape == (3705, 6, 6) and not np.any(tpf[1].data["FLUX"])


def test_place_file_link_upload_and_put(s3r, tmp_path):
    small = tmp_path / "small.bin"
    small.write_bytes(os.urandom(100_000))
    uri = s3r.place_file(small, "linked", "a/b/small.bin", link=True)
    assert os.path.samefile(small, s3r.object_path("linked", "a/b/small.bin"))
    import hashlib

    head = s3r.client.head_object(Bucket="linked", Key="a/b/small.bin")
    assert head["ETag"].strip('"') == hashlib.md5(small.read_bytes()).hexdigest()  # real MD5 when small
    assert open_source(uri, s3=s3r.config).read_range(1000, 10) == small.read_bytes()[1000:1010]
    assert s3r.upload(small, "uploads", "x/small.bin") == "s3://uploads/x/small.bin"
    assert s3r.client.get_object(Bucket="uploads", Key="x/small.bin")["Body"].read() == small.read_bytes()
    s3r.put_bytes(b"hello", "uploads", "hello.txt")
    assert s3r.client.get_object(Bucket="uploads", Key="hello.txt")["Body"].read() == b"hello"
    with pytest.raises(ValueError):
        s3r.place_file(small, "uploads", "../escape")


def test_place_in_s3rver_an_archive(s3r, tmp_path):
    paths = write_archive(tmp_path, 3, frames=20)
    uris = place_in_s3rver(s3r, paths, "archive", "/spoc/")
    assert uris == [f"s3://archive/spoc/{p.name}" for p in paths]
    assert storage.list_s3("s3://archive/spoc", s3=s3r.config) == uris
    cube_mod.clear_cache()
    assert [cube_mod.open_cube(u, s3=s3r.config).ccd for u in uris] == [1, 2, 3]


def _read_ranges(cfg, uri: str, n: int, offsets: list[int]) -> list[bytes]:
    src = open_source(uri, s3=cfg)
    src.read_range(offsets[0], 65536)  # warm: connection made, HEAD cached
    out = [src.read_range(offsets[i % len(offsets)], 65536) for i in range(n)]
    src.close()
    return out


def test_proxy_adds_one_delay_per_request_and_is_concurrent(s3r, placed):
    _path, uri = placed
    rng = np.random.default_rng(1)
    size = open_source(uri, s3=s3r.config).size
    offsets = [int(v) for v in rng.integers(0, size - 65536, 40)]
    direct = _read_ranges(s3r.config, uri, 10, offsets)
    with LatencyProxy("127.0.0.1", s3r.port, delay_s=0.1) as proxy:
        cfg = s3r.with_config(endpoint_url=proxy.url, max_connections=40, read_timeout_s=120)
        before = proxy.chunks_delayed
        assert _read_ranges(cfg, uri, 10, offsets) == direct  # the same bytes, through the proxy
        requests = 1 + 1 + 10  # HEAD, warm-up GET, 10 GETs
        assert requests <= proxy.chunks_delayed - before <= 2 * requests  # ~one chunk per request
        # 30 ranged GETs at once on 30 threads, each its own connection: while the delay lasts
        # (made long here) all 30 wait in the proxy at once and none is answered; when it ends,
        # all are. A proxy that delayed requests one after another would never hold 30 at once.
        src = open_source(uri, s3=cfg)
        src.read_range(offsets[0], 1)  # the HEAD, before the requests are held
        proxy.delay_s = 3600.0
        with ThreadPoolExecutor(30) as pool:
            futures = [pool.submit(lambda off=off: len(src.read_range(off, 65536))) for off in offsets[:30]]
            try:
                wait_until(lambda: proxy.waiting == 30, timeout=60,
                           message=lambda: f"30 requests waiting in the proxy at once (now {proxy.waiting})")
                assert not any(f.done() for f in futures)  # held back: the delay is what they wait for
            finally:
                proxy.delay_s = 0.1  # the held requests go on
            sizes = [f.result(timeout=60) for f in futures]
        src.close()
        assert sizes == [65536] * 30
        assert proxy.max_waiting >= 30 and proxy.waiting == 0
        assert proxy.connections >= 30


def _reverse_server() -> tuple[socket.socket, threading.Thread]:
    """A TCP server that reads until EOF, then answers the reversed bytes and closes (one client)."""
    srv = socket.create_server(("127.0.0.1", 0))

    def run() -> None:
        conn, _ = srv.accept()
        with conn:
            data = bytearray()
            while chunk := conn.recv(1 << 16):
                data += chunk
            conn.sendall(bytes(reversed(data)))

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return srv, t


def test_proxy_forwards_half_close_and_large_payloads():
    srv, thread = _reverse_server()
    payload = os.urandom(5 * MB)  # > max_queued * chunk_size: exercises the bounded queue
    with LatencyProxy("127.0.0.1", srv.getsockname()[1], delay_s=0.02, max_queued=4) as proxy:
        with socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as c:
            c.sendall(payload)
            c.shutdown(socket.SHUT_WR)  # half-close: the reply must still arrive
            got = bytearray()
            while chunk := c.recv(1 << 16):
                got += chunk
        assert bytes(got) == payload[::-1]
    thread.join(5)
    srv.close()


def test_proxy_to_a_dead_target_closes_the_client():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = s.getsockname()[1]
    proxy = LatencyProxy("127.0.0.1", dead, delay_s=0.01)
    with proxy, socket.create_connection(("127.0.0.1", proxy.start()), timeout=5) as c:
        try:
            assert c.recv(10) == b""
        except ConnectionResetError:
            pass


def test_proxy_command_line(s3r, placed):
    _path, uri = placed
    here = os.path.dirname(os.path.abspath(__file__))
    proc = subprocess.Popen([sys.executable, os.path.join(here, "latency_proxy.py"), "--target",
                             f"127.0.0.1:{s3r.port}", "--delay-ms", "50", "--port", "0"],
                            stdout=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        assert "latency proxy 127.0.0.1:" in line, line
        port = int(line.split()[2].rsplit(":", 1)[1])
        cfg = s3r.with_config(endpoint_url=f"http://127.0.0.1:{port}")
        assert open_source(uri, s3=cfg).read_range(0, 6) == b"SIMPLE"
    finally:
        proc.terminate()
        assert proc.wait(5) == 0
        proc.stdout.close()
