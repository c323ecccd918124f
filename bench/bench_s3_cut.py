"""Bench: cutouts from a cube on S3 (moto on loopback) — our reader vs astrocut 1.4.0.

Starts moto's standalone server, builds a synthetic cube (core.synthetic.ffis + core.building.factory),
uploads it, and for 5x5, 30x30 and 100x100 cutouts prints GET requests, bytes sent by the server
and wall time for:

* ``ours raw``  : ``open_source(uri).read_ranges`` of the cutout's row runs (header already parsed)
* ``ours cold`` : ``core.tpf.cut.CutoutFactory().cube_cut(uri, ..., s3=cfg, memory_only=True)`` with
  empty cube and HEAD caches (HEAD, headers and table read and parsed; the S3 client is kept)
* ``ours warm`` : the same with the cube's headers cached (what a running service does)
* ``astrocut``  : astrocut 1.4.0 ``cube_cut(uri, ..., memory_only=True)`` (fsspec/s3fs, anon)

All clients talk to S3 through a small counting TCP proxy on loopback, so requests and bytes on
the wire are counted the same way for every reader.

Usage: ``python bench/bench_s3_cut.py [--quick] [--frames N] [--side N] [--reps N] [--threads N]``
"""

from __future__ import annotations

import argparse
import os
import re
import socket
import statistics
import sys
import tempfile
import threading
import time
import warnings

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from core.storage import s3 as storage
from tests.s3server import MotoS3Server

_REQ = re.compile(rb"(GET|HEAD|PUT|POST|DELETE) /[^ \r\n]* HTTP/1\.[01]\r\n")


def _shutdown(*socks: socket.socket) -> None:
    """Shut both directions of each socket, ignoring ones already closed."""
    for sock in socks:
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


class CountingProxy:
    """A TCP proxy on 127.0.0.1 that counts HTTP request lines and response bytes."""

    def __init__(self, target_port: int) -> None:
        self.target = ("127.0.0.1", target_port)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(128)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.lock = threading.Lock()
        self.counts = {"GET": 0, "HEAD": 0, "other": 0, "down": 0}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def snapshot(self) -> dict[str, int]:
        with self.lock:
            return dict(self.counts)

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except (TimeoutError, OSError):
                continue
            try:
                up = socket.create_connection(self.target, timeout=5)
            except OSError:
                conn.close()
                continue
            up.settimeout(None)
            conn.settimeout(None)
            threading.Thread(target=self._pump_up, args=(conn, up), daemon=True).start()
            threading.Thread(target=self._pump_down, args=(up, conn), daemon=True).start()

    def _pump_up(self, src: socket.socket, dst: socket.socket) -> None:
        tail = b""
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                buf = tail + data
                for m in _REQ.finditer(buf):
                    if m.end() > len(tail):
                        key = m.group(1).decode()
                        with self.lock:
                            self.counts[key if key in ("GET", "HEAD") else "other"] += 1
                tail = buf[-64:]
                dst.sendall(data)
        except OSError:
            pass
        finally:
            _shutdown(src, dst)

    def _pump_down(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while True:
                data = src.recv(1 << 20)
                if not data:
                    break
                with self.lock:
                    self.counts["down"] += len(data)
                dst.sendall(data)
        except OSError:
            pass
        finally:
            _shutdown(src, dst)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self.sock.close()


def measure(proxy: CountingProxy, fn, reps: int, before=None) -> tuple[int, int, float, object]:
    """Run ``fn`` ``reps`` times; return (GET+HEAD requests, bytes down, median seconds) of one run."""
    times, reqs, down = [], [], []
    result = None
    for _ in range(reps):
        if before is not None:
            before()
        a = proxy.snapshot()
        t = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t)
        b = proxy.snapshot()
        reqs.append((b["GET"] - a["GET"], b["HEAD"] - a["HEAD"]))
        down.append(b["down"] - a["down"])
    return reqs[-1], down[-1], statistics.median(times), result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small cube, one repetition")
    ap.add_argument("--frames", type=int, default=None)
    ap.add_argument("--side", type=int, default=None, help="image side in pixels")
    ap.add_argument("--reps", type=int, default=None)
    ap.add_argument("--threads", type=int, default=8, help="threads for the multi-threaded runs")
    ap.add_argument("--no-astrocut", action="store_true")
    args = ap.parse_args()
    frames = args.frames or (20 if args.quick else 100)
    side = args.side or (256 if args.quick else 512)
    reps = args.reps or (1 if args.quick else 3)
    sizes = [s for s in (5, 30, 100) if s <= side]

    warnings.simplefilter("ignore")
    import numpy as np

    from core.building.factory import CubeFactory
    from core.cubes.cache import clear_cache, open_cube
    from core.synthetic.ffis import DEMO_DEC, DEMO_RA, write_sector
    from core.tpf.cut import CutoutFactory

    work = tempfile.mkdtemp(prefix="bench_s3_")
    t = time.perf_counter()
    sec = write_sector(
        os.path.join(work, "ffi"), frames=frames, size=(side, side), center=(DEMO_RA, DEMO_DEC)
    )
    cube_path = CubeFactory().make_cube(
        [str(f) for f in sec.ffi_files], cube_file=os.path.join(work, "cube.fits"), verbose=False
    )
    size = os.path.getsize(cube_path)
    print(
        f"cube: {side}x{side} px, {frames} frames, {size / 1e6:.1f} MB (built in {time.perf_counter() - t:.1f} s)"
    )

    with MotoS3Server() as srv:
        t = time.perf_counter()
        uri = srv.upload(cube_path, "stpubdata", "tess/public/mast/bench-cube.fits")
        srv.client.put_object_acl(
            Bucket="stpubdata", Key="tess/public/mast/bench-cube.fits", ACL="public-read"
        )
        print(f"uploaded to moto at {srv.endpoint_url} in {time.perf_counter() - t:.1f} s; {uri}")
        proxy = CountingProxy(srv.port)
        cfg = srv.with_config(
            endpoint_url=proxy.url,
            anonymous=True,
            access_key_id=None,
            secret_access_key=None,
            read_timeout_s=60,
            max_attempts=3,
        )
        os.environ["AWS_ENDPOINT_URL_S3"] = proxy.url
        os.environ["FSSPEC_S3_ENDPOINT_URL"] = proxy.url
        os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")

        coord = f"{DEMO_RA} {DEMO_DEC}"
        cube = open_cube(uri, s3=cfg)
        for n in sizes:
            y0 = cube.ny // 2 - n // 2
            x0 = cube.nx // 2 - n // 2
            ranges = cube.ranges(y0, y0 + n, x0, x0 + n)
            need = sum(ln for _, ln in ranges)
            src = cube.source

            def raw(threads: int = 1, src=src, ranges=ranges):
                return src.read_ranges(ranges, threads=threads)

            def cold_reset():
                clear_cache()  # cube headers/table
                storage.clear_caches(clients=False)  # HEAD results; a service keeps its client

            def ours(threads: int = 1, n=n):
                return CutoutFactory().cube_cut(uri, coord, n, s3=cfg, memory_only=True, threads=threads)

            res = {}
            res["ours raw 1t"] = measure(proxy, raw, reps)
            res[f"ours raw {args.threads}t"] = measure(proxy, lambda: raw(args.threads), reps)
            res["ours cold 1t"] = measure(proxy, ours, reps, before=cold_reset)
            ours(1)  # warm the caches
            res["ours warm 1t"] = measure(proxy, ours, reps)
            res[f"ours warm {args.threads}t"] = measure(proxy, lambda: ours(args.threads), reps)
            flux_ours = np.asarray(res["ours warm 1t"][3][1].data["FLUX"])
            if not args.no_astrocut:
                import astrocut

                def theirs(threads: int = 1, n=n):
                    return astrocut.cube_cut(uri, coord, n, memory_only=True, threads=threads)

                res["astrocut 1t"] = measure(proxy, theirs, reps)
                res[f"astrocut {args.threads}t"] = measure(proxy, lambda: theirs(args.threads), reps)
                flux_theirs = np.asarray(res["astrocut 1t"][3][1].data["FLUX"])
                same = flux_theirs.shape == flux_ours.shape and np.allclose(
                    flux_theirs, flux_ours, equal_nan=True
                )
            else:
                same = None
            _print_rows(n, need, res, same, reps, size, header=(n == sizes[0]))

        proxy.close()
    print(
        "\n'x needed' = bytes down / pixel bytes the cutout needs (rows x cols x frames x 8); "
        "'vs astrocut' = astrocut 1t time / ours. moto re-reads the object per GET, so its per-GET "
        "cost grows with the cube size: GET counts and bytes carry over to real S3, times less so."
    )


def _print_rows(n: int, need: int, res: dict, same: bool | None, reps: int, size: int, header: bool) -> None:
    if header:
        print(f"\nS3 cutouts (moto on loopback, counting proxy), median of {reps}; cube {size / 1e6:.1f} MB")
        print(
            f"{'cutout':>8} {'reader':<16} {'GET':>6} {'HEAD':>5} {'MB down':>9} {'x needed':>9} "
            f"{'ms':>9} {'vs astrocut':>11}"
        )
    ref = res.get("astrocut 1t")
    for name, ((gets, heads), down, secs, _) in res.items():
        ratio = f"{ref[2] / secs:8.1f}x" if ref and not name.startswith("astrocut") else ""
        print(
            f"{n:>4}x{n:<3} {name:<16} {gets:>6} {heads:>5} {down / 1e6:>9.3f} {down / need:>9.1f} "
            f"{secs * 1e3:>9.1f} {ratio:>11}",
            flush=True,
        )
    if same is not None:
        print(f"{'':>8} FLUX identical to astrocut: {same}", flush=True)


if __name__ == "__main__":
    main()
