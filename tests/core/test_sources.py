"""Tests of core.storage.sources (and core.storage.s3's client/HEAD handling) against local files and a real moto S3 server on loopback."""

from __future__ import annotations

import os
import random
import socketserver
import threading

import pytest

from core.errors import CorruptFileError, ForbiddenError, InvalidInputError, NotFoundError, UnavailableError
from core.storage import s3 as storage
from core.storage.s3 import S3Config
from core.storage.sources import GLOBAL_STATS, LocalSource, S3Source, open_source

try:
    from tests.s3server import MotoS3Server, free_port
except ImportError:  # pragma: no cover
    from s3server import MotoS3Server, free_port

from tests.core.conftest import BUCKET

# ---------------------------------------------------------------------------------------- local


def _ranges(size: int, n: int, seed: int, maxlen: int = 50_000) -> list[tuple[int, int]]:
    """n reproducible (offset, length) ranges inside a file of ``size`` bytes."""
    rnd = random.Random(seed)
    out = []
    for _ in range(n):
        ln = rnd.randint(0, maxlen)
        out.append((rnd.randint(0, size - ln), ln))
    return out


def test_local_read_range_and_identity(blob):
    path, data = blob
    with open_source(path) as src:
        assert isinstance(src, LocalSource)
        assert src.size == len(data)
        st = os.stat(path)
        assert src.identity == ("file", os.path.realpath(path), st.st_size, st.st_mtime_ns, st.st_dev, st.st_ino)
        assert src.read_range(1000, 77) == data[1000:1077]
        assert src.read_range(len(data) - 3, 3) == data[-3:]
        assert src.read_range(5, 0) == b""
        buf = bytearray(500)
        src.read_into(123, memoryview(buf))
        assert bytes(buf) == data[123:623]
        with pytest.raises(CorruptFileError):
            src.read_range(len(data) - 3, 4)
        with pytest.raises(InvalidInputError):
            src.read_range(-1, 4)


def test_local_read_rows_into(blob):
    path, data = blob
    with open_source(path) as src:
        before = src.stats.snapshot()
        buf = bytearray(4 * 300)
        src.read_rows_into(1000, 7000, 4, buf)
        assert bytes(buf) == b"".join(data[1000 + i * 7000 : 1300 + i * 7000] for i in range(4))
        gets, nbytes = src.stats.snapshot()
        assert (gets - before[0], nbytes - before[1]) == (4, 1200)
        # the last row past the end of the file, or a first row before its start: errors, not zeros
        with pytest.raises(CorruptFileError):
            src.read_rows_into(len(data) - 7200, 7000, 2, bytearray(600))
        with pytest.raises(InvalidInputError):
            src.read_rows_into(-5, 7000, 2, bytearray(600))
        with pytest.raises(ValueError):
            src.read_rows_into(0, 100, 3, bytearray(400))  # 3 rows do not divide 400 bytes


def test_local_coalesces_adjacent_only_by_default(blob):
    path, data = blob
    src = open_source(str(path))
    ranges = [(i * 100, 100) for i in range(10)] + [(5000, 10)]
    got = src.read_ranges(ranges)
    assert got == [data[o : o + n] for o, n in ranges]
    assert src.stats.snapshot() == (2, 1010)  # 10 adjacent ranges -> one read; the far one -> another


def test_local_missing_and_not_a_file(tmp_path):
    with pytest.raises(NotFoundError):
        open_source(tmp_path / "nope.fits")
    with pytest.raises(NotFoundError):
        open_source(str(tmp_path))
    with pytest.raises(InvalidInputError):
        open_source("http://example.org/cube.fits")


def test_stats_counted_globally(blob):
    g0 = GLOBAL_STATS.snapshot()
    src = open_source(blob[0])
    src.read_ranges([(0, 10), (100_000, 20)])
    assert src.stats.snapshot() == (2, 30)
    g1 = GLOBAL_STATS.snapshot()
    assert g1[0] - g0[0] >= 2 and g1[1] - g0[1] >= 30
    src.stats.reset()
    assert src.stats.snapshot() == (0, 0)


# ------------------------------------------------------------------------------------------- S3


def test_s3_and_local_return_identical_bytes(blob, blob_uri, s3_server):
    path, data = blob
    local = open_source(path)
    remote = open_source(blob_uri, s3=s3_server.config)
    assert isinstance(remote, S3Source)
    assert remote.size == local.size == len(data)
    assert remote.identity[:3] == ("s3", BUCKET, "tess/public/blob.bin") and remote.identity[3]
    ranges = _ranges(len(data), 40, seed=3)
    for off, ln in ranges[:10]:
        assert remote.read_range(off, ln) == local.read_range(off, ln) == data[off : off + ln]
    assert remote.read_ranges(ranges) == local.read_ranges(ranges) == [data[o : o + n] for o, n in ranges]


def test_s3_anonymous_requests_work(blob, blob_uri, s3_server):
    cfg = s3_server.with_config(anonymous=True, access_key_id=None, secret_access_key=None)
    assert cfg.is_anonymous()
    with pytest.raises(ForbiddenError):  # a private object refuses unsigned requests (403)
        open_source(blob_uri, s3=cfg)
    s3_server.client.put_object_acl(Bucket=BUCKET, Key="tess/public/blob.bin", ACL="public-read")
    storage.clear_caches()
    src = open_source(blob_uri, s3=cfg)
    assert src.read_range(10, 20) == blob[1][10:30]


def test_s3_coalescing_reduces_gets(blob, blob_uri, s3_server):
    data = blob[1]
    # 30 row runs of 2000 bytes, 3000 bytes apart (like a cutout's rows in a cube)
    ranges = [(10_000 + i * 5000, 2000) for i in range(30)]
    requested = sum(n for _, n in ranges)
    gaps = sum(ranges[i + 1][0] - (ranges[i][0] + ranges[i][1]) for i in range(len(ranges) - 1))

    src = open_source(blob_uri, s3=s3_server.config)
    got = src.read_ranges(ranges)  # default S3 gap: 64 KiB
    assert got == [data[o : o + n] for o, n in ranges]
    gets, nbytes = src.stats.snapshot()
    assert gets < len(ranges)
    assert gets == 1
    assert requested <= nbytes <= requested + gaps

    src.stats.reset()
    assert src.read_ranges(ranges, coalesce_gap=0) == got
    assert src.stats.snapshot() == (len(ranges), requested)

    src.stats.reset()  # a cap on merged size splits the read
    assert src.read_ranges(ranges, max_merged=20_000) == got
    gets, nbytes = src.stats.snapshot()
    assert 1 < gets < len(ranges) and nbytes <= requested + gaps


def test_s3_threads_same_result(blob, blob_uri, s3_server):
    data = blob[1]
    ranges = _ranges(len(data), 60, seed=9, maxlen=20_000)
    src = open_source(blob_uri, s3=s3_server.config)
    serial = src.read_ranges(ranges, coalesce_gap=0)
    parallel = src.read_ranges(ranges, threads=8, coalesce_gap=0)
    assert serial == parallel == [data[o : o + n] for o, n in ranges]
    # threads sharing one source and one client
    results = {}

    def work(i):
        results[i] = src.read_ranges(ranges[i::4], threads=2)

    ts = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(30)
    for i in range(4):
        assert results[i] == [data[o : o + n] for o, n in ranges[i::4]]


def test_s3_missing_key_and_bucket(s3_server, blob_uri):
    with pytest.raises(NotFoundError):
        open_source(f"s3://{BUCKET}/tess/public/no-such-cube.fits", s3=s3_server.config)
    with pytest.raises(NotFoundError):
        open_source("s3://no-such-bucket-xyz/cube.fits", s3=s3_server.config)
    with pytest.raises(InvalidInputError):
        open_source("s3://bucket-only", s3=s3_server.config)


def test_s3_head_cached_and_identity_changes(s3_server, monkeypatch):
    uri = s3_server.put_bytes(b"a" * 100, BUCKET, "tess/public/changing.bin")
    first = open_source(uri, s3=s3_server.config)
    s3_server.put_bytes(b"b" * 200, BUCKET, "tess/public/changing.bin")
    cached = open_source(uri, s3=s3_server.config)
    assert cached.identity == first.identity and cached.size == 100  # HEAD reused within the TTL
    # the stale source must not mix old metadata with new bytes (GET carries If-Match)
    with pytest.raises((UnavailableError, CorruptFileError)):
        cached.read_range(0, 10)
    monkeypatch.setattr(storage, "HEAD_TTL", 0.0)
    storage._heads.clear()
    fresh = open_source(uri, s3=s3_server.config)
    assert fresh.size == 200 and fresh.identity != first.identity
    assert fresh.read_range(0, 3) == b"bbb"


def test_s3_unreachable_endpoint_is_unavailable():
    port = free_port()  # nothing listens there
    cfg = S3Config(
        endpoint_url=f"http://127.0.0.1:{port}",
        anonymous=True,
        connect_timeout_s=0.5,
        read_timeout_s=0.5,
        max_attempts=2,
    )
    with pytest.raises(UnavailableError) as ei:
        open_source("s3://bucket/key.fits", s3=cfg)
    assert not isinstance(ei.value, NotFoundError)


# A tiny HTTP server that misbehaves on purpose (black hole, stall mid-body, status codes).
class _BadServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, mode: str):
        self.mode = mode
        self.stop = threading.Event()
        super().__init__(("127.0.0.1", 0), _BadHandler)
        self.thread = threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    @property
    def url(self):
        return f"http://127.0.0.1:{self.server_address[1]}"

    def close(self):
        self.stop.set()
        self.shutdown()
        self.server_close()


class _BadHandler(socketserver.StreamRequestHandler):
    def handle(self):
        srv: _BadServer = self.server  # type: ignore[assignment]
        while not srv.stop.is_set():
            line = self.rfile.readline()
            if not line:
                return
            method = line.split(b" ")[0]
            while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                pass
            if srv.mode == "blackhole":
                srv.stop.wait(30)
                return
            if srv.mode.startswith("status:"):
                code = srv.mode.split(":")[1]
                self.wfile.write(f"HTTP/1.1 {code} Nope\r\nContent-Length: 0\r\n\r\n".encode())
                continue
            if method == b"HEAD":
                self.wfile.write(b'HTTP/1.1 200 OK\r\nContent-Length: 100000\r\nETag: "abc"\r\n\r\n')
                continue
            # stall: send headers and part of the body, then go silent
            self.wfile.write(
                b"HTTP/1.1 206 Partial Content\r\nContent-Length: 100\r\n"
                b"Content-Range: bytes 0-99/100000\r\n\r\n" + b"x" * 40
            )
            self.wfile.flush()
            srv.stop.wait(30)
            return


def _cfg(url: str, attempts: int = 1) -> S3Config:
    return S3Config(
        endpoint_url=url, anonymous=True, connect_timeout_s=0.5, read_timeout_s=0.3, max_attempts=attempts
    )


@pytest.mark.timeout(30)
def test_s3_black_hole_endpoint_times_out():
    srv = _BadServer("blackhole")
    try:
        with pytest.raises(UnavailableError):
            open_source("s3://bucket/key.fits", s3=_cfg(srv.url))
    finally:
        srv.close()


@pytest.mark.timeout(30)
def test_s3_stall_mid_body_is_unavailable():
    srv = _BadServer("stall")
    try:
        src = open_source("s3://bucket/key.fits", s3=_cfg(srv.url))
        assert src.size == 100000 and src.identity == ("s3", "bucket", "key.fits", "abc")
        with pytest.raises(UnavailableError):
            src.read_range(0, 100)
    finally:
        srv.close()


@pytest.mark.timeout(30)
@pytest.mark.parametrize("status,exc", [(403, ForbiddenError), (503, UnavailableError), (404, NotFoundError)])
def test_s3_status_codes(status, exc):
    srv = _BadServer(f"status:{status}")
    try:
        with pytest.raises(exc):
            open_source("s3://bucket/key.fits", s3=_cfg(srv.url, attempts=2))  # retried, then refused
    finally:
        srv.close()


@pytest.mark.timeout(60)
def test_s3_server_dies_during_reads(blob):
    """Kill a private moto server while threads are reading: each ends with UnavailableError."""
    path, data = blob
    with MotoS3Server() as private:
        uri = private.upload(path, "private", "blob.bin")
        cfg = private.with_config(connect_timeout_s=0.5, read_timeout_s=1, max_attempts=2)
        src = open_source(uri, s3=cfg)
        ranges = _ranges(len(data), 20, seed=4, maxlen=100_000)
        outcome: dict[int, object] = {}
        started = threading.Barrier(3)

        def reader(i):
            started.wait()
            try:
                for _ in range(10_000):
                    assert src.read_ranges(ranges, threads=2, coalesce_gap=0) == [
                        data[o : o + n] for o, n in ranges
                    ]
                outcome[i] = "finished"
            except Exception as exc:  # noqa: BLE001
                outcome[i] = exc

        threads = [threading.Thread(target=reader, args=(i,), daemon=True) for i in range(2)]
        for t in threads:
            t.start()
        started.wait()
        threading.Event().wait(0.3)  # reads in flight
        private.stop()
        for t in threads:
            t.join(40)
        assert not any(t.is_alive() for t in threads), "a read hung after the server went away"
        assert all(isinstance(v, UnavailableError) for v in outcome.values()), outcome


