"""Run the npm package ``s3rver`` as a real S3-protocol server on 127.0.0.1 (tests and benches).

moto's standalone server (:mod:`tests.s3server`) copies the whole object on every ranged GET, so
with a real-size cube it hides every latency effect. s3rver serves ranged GETs straight from a
file (``fs.createReadStream`` with start/end), and it keeps objects as plain files, so a sparse
130 GB cube can be *placed* into its store in milliseconds (:meth:`S3rverServer.place_file`)
instead of uploaded.

    install:  bash scripts/install_s3rver.sh      (npm; into .cache/s3rver/, ignored by git)

    with S3rverServer() as srv:
        uri = srv.place_file("tess-s0001-1-1-cube.fits", "tess", "s0001/tess-s0001-1-1-cube.fits")
        cube = open_cube(uri, s3=srv.config)

s3rver 3.7.1's store layout (lib/stores/filesystem.js), for bucket ``b`` and key ``dir/name``:
``DATA/b/dir/name._S3rver_object`` (the bytes), ``...object.md5`` (the hex MD5 that becomes the
ETag; computed by streaming the whole object when missing), ``DATA/b/dir/name._S3rver_metadata.json``
(Content-Type, Cache-Control..., ``x-amz-meta-*``). Size and Last-Modified come from ``stat``. A
bucket is a directory ``DATA/b``.

``python tests/s3rver.py`` measures the median latency of 64 KB ranged GETs on s3rver vs moto on
the same sparse cube (``--help``).
"""

from __future__ import annotations

import dataclasses
import errno
import hashlib
import json
import os
import pathlib
import re
import shutil
import subprocess
import tempfile
import time
from typing import Any, Self

from core.storage.s3 import S3Config

try:
    from tests.polling import wait_until
except ImportError:  # pragma: no cover - tests/ itself on sys.path
    from polling import wait_until

__all__ = ["S3rverServer", "S3rverUnavailable", "ensure_installed", "sparse_copy"]

ROOT = pathlib.Path(__file__).resolve().parent.parent
VERSION = "3.7.1"
_LISTENING = re.compile(r"S3rver listening on ([\d.]+):(\d+)")
_OBJECT = "._S3rver_object"
_METADATA = "._S3rver_metadata.json"
#: objects up to this size get their real MD5 as ETag; bigger (sparse) ones a fingerprint
_MD5_LIMIT = 64 * 1024 * 1024


class S3rverUnavailable(RuntimeError):
    """node/npm or the s3rver package is missing (tests skip with this message)."""


def install_dir() -> pathlib.Path:
    """Where scripts/install_s3rver.sh puts s3rver (``$S3RVER_HOME`` or ``.cache/s3rver``)."""
    return pathlib.Path(os.environ.get("S3RVER_HOME") or ROOT / ".cache" / "s3rver")


def ensure_installed() -> pathlib.Path:
    """Install s3rver if needed (quick when installed); return its ``bin/s3rver.js``.

    Raises
    ------
    S3rverUnavailable
        When ``node`` is not on PATH or the install fails (the message says why).
    """
    if shutil.which("node") is None:
        raise S3rverUnavailable("node is not installed (apt-get install nodejs npm)")
    script = install_dir() / "node_modules" / "s3rver" / "bin" / "s3rver.js"
    stamp = install_dir() / f".installed-{VERSION}"
    if not (script.is_file() and stamp.is_file()):
        proc = subprocess.run(["bash", str(ROOT / "scripts" / "install_s3rver.sh")], capture_output=True,
                              text=True, check=False, timeout=600)
        if proc.returncode != 0 or not script.is_file():
            raise S3rverUnavailable(f"s3rver@{VERSION} could not be installed: {proc.stderr.strip()[-500:]}")
    return script


def sparse_copy(src: str | os.PathLike, dst: str | os.PathLike) -> None:
    """Copy a file keeping its holes: only the data extents (SEEK_DATA/SEEK_HOLE) are copied.

    A 130 GB sparse cube with 4 MB of headers and table copies in milliseconds, like
    ``cp --sparse=always``. ``dst`` is created or truncated.
    """
    fin = os.open(src, os.O_RDONLY)
    try:
        size = os.fstat(fin).st_size
        fout = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            off = 0
            while off < size:
                try:
                    data = os.lseek(fin, off, os.SEEK_DATA)
                except OSError as exc:
                    if exc.errno == errno.ENXIO:  # only a hole is left
                        break
                    raise
                end = os.lseek(fin, data, os.SEEK_HOLE)
                _copy_range(fin, fout, data, end - data)
                off = end
            os.ftruncate(fout, size)
        finally:
            os.close(fout)
    finally:
        os.close(fin)


def _copy_range(fin: int, fout: int, offset: int, n: int) -> None:
    done = 0
    while done < n:
        try:
            k = os.copy_file_range(fin, fout, n - done, offset + done, offset + done)
        except OSError:  # no in-kernel copy between these files: plain reads and writes
            chunk = os.pread(fin, min(n - done, 8 * 1024 * 1024), offset + done)
            k = os.pwrite(fout, chunk, offset + done) if chunk else 0
        if k <= 0:
            raise OSError(f"short copy at byte {offset + done}")
        done += k


def _fingerprint(path: str | os.PathLike) -> str:
    """ETag for a placed file: its MD5 up to 64 MiB; beyond, the MD5 of its size and data extents.

    Reading a sparse cube's holes would cost minutes; its data extents (headers and table) are
    what tells two cubes apart. S3's own multipart ETags are not content MD5s either.
    """
    size = os.path.getsize(path)
    h = hashlib.md5(usedforsecurity=False)
    fd = os.open(path, os.O_RDONLY)
    try:
        if size <= _MD5_LIMIT:
            off = 0
            while chunk := os.pread(fd, 8 * 1024 * 1024, off):
                h.update(chunk)
                off += len(chunk)
            return h.hexdigest()
        h.update(f"sparse:{size}:".encode())
        off = 0
        while off < size:
            try:
                data = os.lseek(fd, off, os.SEEK_DATA)
            except OSError as exc:
                if exc.errno == errno.ENXIO:
                    break
                raise
            end = os.lseek(fd, data, os.SEEK_HOLE)
            h.update(f"{data}:{end}:".encode())
            pos = data
            while pos < end:
                chunk = os.pread(fd, min(8 * 1024 * 1024, end - pos), pos)
                h.update(chunk)
                pos += len(chunk)
            off = end
        return h.hexdigest()
    finally:
        os.close(fd)


def _atomic_text(path: pathlib.Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


class S3rverServer:
    """s3rver (``node .../s3rver.js``) on a free loopback port with its own temporary data directory.

    Parameters
    ----------
    bucket : str
        Created at start (``--configure-bucket``); more with :meth:`ensure_bucket`.
    data_dir : path, optional
        The store; default a new temporary directory (removed by :meth:`stop`). Put it on the
        same filesystem as files you will :meth:`place_file` with ``link=True``.
    parent_dir : path, optional
        Where the temporary data directory is made (default the system's temp dir).

    Attributes
    ----------
    endpoint_url : str
    config : S3Config
        Credentials S3RVER/S3RVER, signed, small timeouts, pointing at this server.
    client : boto3 S3 client for setup.
    data_dir : pathlib.Path
    """

    ACCESS_KEY = "S3RVER"
    SECRET_KEY = "S3RVER"

    def __init__(self, bucket: str = "tess", *, data_dir: str | os.PathLike | None = None,
                 parent_dir: str | os.PathLike | None = None, startup_timeout: float = 30.0) -> None:
        self.bucket = bucket
        self._own_dir = data_dir is None
        self._parent = parent_dir
        self.data_dir = pathlib.Path(data_dir) if data_dir is not None else pathlib.Path()
        self.startup_timeout = startup_timeout
        self.proc: subprocess.Popen | None = None
        self.port = 0
        self.endpoint_url = ""
        self._client: Any = None
        self._log: pathlib.Path | None = None
        self.proc_returncode: int | None = None

    # -- process ---------------------------------------------------------------------------
    def start(self) -> Self:
        """Start s3rver and wait until it listens (it binds port 0; the port is read from its log).

        Raises
        ------
        S3rverUnavailable
            node or the package is missing. RuntimeError: it exited or did not start in time.
        """
        if self.proc is not None:
            return self
        script = ensure_installed()
        if self._own_dir:
            self.data_dir = pathlib.Path(tempfile.mkdtemp(prefix="s3rver-", dir=self._parent))
        self.data_dir.mkdir(parents=True, exist_ok=True)
        store = self.data_dir / "store"
        store.mkdir(exist_ok=True)
        self._log = self.data_dir / "s3rver.log"
        # s3rver 3.7.1 makes ListObjectsV2 continuation tokens with single DES, which node's
        # OpenSSL 3 refuses: every truncated listing (over 1000 keys) would fail with InternalError
        env = dict(os.environ)
        legacy = "--openssl-legacy-provider"
        if legacy not in env.get("NODE_OPTIONS", ""):
            env["NODE_OPTIONS"] = f"{env.get('NODE_OPTIONS', '')} {legacy}".strip()
        with open(self._log, "wb") as log:
            # the log is a file, not a pipe: nothing can block s3rver on a full pipe later
            self.proc = subprocess.Popen(
                ["node", str(script), "-d", str(store), "-a", "127.0.0.1", "-p", "0", "--silent",
                 "--no-vhost-buckets", "--configure-bucket", self.bucket],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env,
            )
        def listening() -> re.Match | None:
            m = _LISTENING.search(self._log.read_text(errors="replace"))
            if m is None and self.proc.poll() is not None:
                text = self._log.read_text(errors="replace")[-2000:]
                code = self.proc.returncode
                self.stop()
                raise RuntimeError(f"s3rver exited with code {code}: {text}")
            return m

        try:
            m = wait_until(listening, timeout=self.startup_timeout, interval=0.05, message="s3rver listens")
        except AssertionError:
            self.stop()
            raise RuntimeError("s3rver did not start in time") from None
        self.port = int(m.group(2))
        self.endpoint_url = f"http://127.0.0.1:{self.port}"
        self._client = None
        return self

    def stop(self) -> None:
        """Stop the server and remove its temporary data directory (idempotent)."""
        proc, self.proc = self.proc, None
        if proc is not None:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=5)
            self.proc_returncode = proc.returncode
        if self._own_dir and self.data_dir != pathlib.Path() and self.data_dir.exists():
            shutil.rmtree(self.data_dir, ignore_errors=True)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- clients ---------------------------------------------------------------------------
    @property
    def config(self) -> S3Config:
        """An :class:`S3Config` for this server (signed S3RVER/S3RVER, small timeouts)."""
        return S3Config(endpoint_url=self.endpoint_url, region="us-east-1", anonymous=False,
                        access_key_id=self.ACCESS_KEY, secret_access_key=self.SECRET_KEY,
                        connect_timeout_s=2, read_timeout_s=10, max_attempts=2)

    def with_config(self, **changes: Any) -> S3Config:
        """A copy of :attr:`config` with some fields changed (e.g. a proxy's ``endpoint_url``)."""
        return dataclasses.replace(self.config, **changes)

    @property
    def client(self) -> Any:
        """A boto3 S3 client (path-style addressing) for setup."""
        if self._client is None:
            import boto3
            from botocore.config import Config

            self._client = boto3.session.Session().client(
                "s3", endpoint_url=self.endpoint_url, region_name="us-east-1",
                aws_access_key_id=self.ACCESS_KEY, aws_secret_access_key=self.SECRET_KEY,
                config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 2, "mode": "standard"}),
            )
        return self._client

    def ensure_bucket(self, bucket: str) -> None:
        """Create ``bucket`` if it does not exist (through the API)."""
        if not (self.data_dir / "store" / bucket).is_dir():
            self.client.create_bucket(Bucket=bucket)

    def upload(self, path: str | os.PathLike, bucket: str, key: str) -> str:
        """Upload a local file through the API; return ``s3://bucket/key`` (use :meth:`place_file`
        for big sparse files: an upload sends every byte)."""
        self.ensure_bucket(bucket)
        self.client.upload_file(os.fspath(path), bucket, key)
        return f"s3://{bucket}/{key}"

    def put_bytes(self, data: bytes, bucket: str, key: str) -> str:
        """PUT ``data`` as an object; return its URI."""
        self.ensure_bucket(bucket)
        self.client.put_object(Bucket=bucket, Key=key, Body=data)
        return f"s3://{bucket}/{key}"

    # -- placing files into the store -------------------------------------------------------
    def object_path(self, bucket: str, key: str) -> pathlib.Path:
        """The file s3rver serves ``bucket/key`` from (``DATA/store/bucket/dir/name._S3rver_object``)."""
        parts = key.split("/")
        if not key or key.startswith("/") or any(p in ("", ".", "..") for p in parts):
            raise ValueError(f"unsupported key for placing: {key!r}")
        if not bucket or "/" in bucket or bucket in (".", ".."):
            raise ValueError(f"bad bucket name: {bucket!r}")
        return self.data_dir.joinpath("store", bucket, *parts[:-1], parts[-1] + _OBJECT)

    def place_file(self, path: str | os.PathLike, bucket: str, key: str, *, link: bool = False,
                   content_type: str = "application/fits", etag: str | None = None) -> str:
        """Put a local file into the store as ``bucket/key`` without sending it; return its URI.

        The file is copied keeping its holes (:func:`sparse_copy`; a 130 GB sparse cube takes a
        few ms), or hard-linked with ``link=True`` (same filesystem; then never PUT to that key:
        s3rver would rewrite the linked file in place). The ETag file and the metadata are
        written before the object appears, so s3rver never hashes a huge file itself. HEAD, GET,
        ranged GET and list_objects_v2 then see it like an uploaded object; the bucket is
        created if missing.

        Parameters
        ----------
        etag : str, optional
            Hex ETag to report; default the file's MD5 (up to 64 MiB) or a fingerprint of its
            size and data extents (:func:`_fingerprint`).
        """
        obj = self.object_path(bucket, key)
        obj.parent.mkdir(parents=True, exist_ok=True)
        tag = etag if etag is not None else _fingerprint(path)
        if not re.fullmatch(r"[0-9A-Za-z-]+", tag):
            raise ValueError(f"etag must be hex digits (and '-'), got {tag!r}")
        _atomic_text(obj.with_name(obj.name + ".md5"), tag)
        meta = obj.with_name(obj.name[: -len(_OBJECT)] + _METADATA)
        _atomic_text(meta, json.dumps({"content-type": content_type}, indent=2))
        # a temporary name without the object suffix: listings skip it until the rename
        tmp = obj.with_name(f".{obj.name}.{os.getpid()}.placing")
        try:
            if link:
                os.link(path, tmp)
            else:
                sparse_copy(path, tmp)
            os.replace(tmp, obj)
        finally:
            if os.path.lexists(tmp):
                os.unlink(tmp)
        return f"s3://{bucket}/{key}"


# ------------------------------------------------------------------------------------------------
# Measurement: ranged GET latency on s3rver vs moto (python tests/s3rver.py --help)


def ranged_get_ms(config: S3Config, uri: str, *, n: int = 50, length: int = 64 * 1024,
                  seed: int = 0) -> list[float]:
    """Latencies (ms) of ``n`` sequential ranged GETs of ``length`` bytes at random offsets of ``uri``,
    through :mod:`core.storage.sources` (one warm-up read first)."""
    import random

    from core.storage.sources import open_source

    src = open_source(uri, s3=config)
    rng = random.Random(seed)
    src.read_range(0, length)
    out = []
    for _ in range(n):
        off = rng.randrange(0, max(1, src.size - length))
        t0 = time.perf_counter()
        data = src.read_range(off, length)
        out.append((time.perf_counter() - t0) * 1e3)
        assert len(data) == length
    src.close()
    return out


def _bench(argv: list[str] | None = None) -> None:  # pragma: no cover - a measurement entry point
    import argparse
    import statistics
    import sys
    import threading
    from concurrent.futures import ThreadPoolExecutor

    sys.path.insert(0, str(ROOT))
    from core.storage import s3 as storage
    from core.storage.sources import open_source
    from core.synthetic.archive import write_sparse_cube
    from tests.latency_proxy import LatencyProxy
    from tests.s3server import MotoS3Server

    ap = argparse.ArgumentParser(description="64 KB ranged-GET latency: s3rver vs moto, and through LatencyProxy.")
    ap.add_argument("--frames", type=int, default=3705, help="frames of the big sparse cube (s3rver only)")
    ap.add_argument("--moto-frames", type=int, default=10,
                    help="frames of the cube both servers get (moto holds it whole: 10 frames = 355 MB)")
    ap.add_argument("-n", type=int, default=30, help="sequential GETs per measurement")
    ap.add_argument("--delay-ms", type=float, default=50.0, help="the proxy's delay")
    ap.add_argument("--concurrent", type=int, default=30, help="GETs issued at once through the proxy")
    args = ap.parse_args(argv)
    rows: list[tuple[str, str, float, str]] = []

    def med(cfg: S3Config, uri: str) -> float:
        return statistics.median(ranged_get_ms(cfg, uri, n=args.n))

    with tempfile.TemporaryDirectory(prefix="bench-s3rver-") as tmp:
        big = write_sparse_cube(pathlib.Path(tmp) / "big" / "tess-s0038-2-2-cube.fits", sector=38, camera=2,
                                ccd=2, frames=args.frames)
        small = write_sparse_cube(pathlib.Path(tmp) / "small" / "tess-s0038-2-2-cube.fits", sector=38,
                                  camera=2, ccd=2, frames=args.moto_frames)
        gb = {p: f"{os.path.getsize(p) / 1e9:.2f} GB" for p in (big, small)}
        with S3rverServer(parent_dir=tmp) as s3r:
            uris = {}
            for p in (big, small):
                t0 = time.perf_counter()
                uris[p] = s3r.place_file(p, "tess", f"{p.parent.name}/{p.name}")
                note = f"placed in {(time.perf_counter() - t0) * 1e3:.1f} ms"
                rows.append(("s3rver", gb[p], med(s3r.config, uris[p]), note))
            with LatencyProxy("127.0.0.1", s3r.port, delay_s=args.delay_ms / 1e3) as proxy:
                cfg = s3r.with_config(endpoint_url=proxy.url, max_connections=max(32, args.concurrent))
                rows.append((f"s3rver+{args.delay_ms:g}ms", gb[big], med(cfg, uris[big]), "sequential, via proxy"))
                src = open_source(uris[big], s3=cfg)
                offs = [(i * 7919 * 65536) % (src.size - 65536) for i in range(args.concurrent)]
                gate = threading.Barrier(args.concurrent)

                def concurrent(source: Any) -> float:
                    with ThreadPoolExecutor(args.concurrent) as pool:
                        list(pool.map(lambda o: source.read_range(o, 1), offs))  # warm the pool
                        t0 = time.perf_counter()
                        list(pool.map(lambda o: get(source, o), offs))
                        return (time.perf_counter() - t0) * 1e3

                def get(source: Any, off: int) -> None:
                    gate.wait()
                    source.read_range(off, 65536)

                for label, source in ((f"s3rver+{args.delay_ms:g}ms", src),
                                      ("s3rver", open_source(uris[big], s3=s3r.with_config(
                                          max_connections=max(32, args.concurrent))))):
                    rows.append((label, gb[big], concurrent(source),
                                 f"wall time of {args.concurrent} concurrent GETs (threads)"))
                    source.close()
        storage.clear_caches()
        with MotoS3Server() as moto:
            t0 = time.perf_counter()
            uri = moto.upload(small, "tess", "small.fits")
            up = time.perf_counter() - t0
            rows.append(("moto", gb[small], med(moto.config, uri), f"uploaded in {up:.1f} s"))
        storage.clear_caches()
    print(f"{'server':>14} {'object':>10} {'ms':>9}  (64 KB ranged GETs via core.storage.sources; median of {args.n})")
    for name, size, ms, note in rows:
        print(f"{name:>14} {size:>10} {ms:9.2f}  {note}")


if __name__ == "__main__":  # pragma: no cover
    _bench()
