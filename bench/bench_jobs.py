"""Benchmark async jobs: one UWS job of N targets vs `cutout batch` on the same Dask workers, and vs
a client looping over /astrocut.

Usage: bench/bench_jobs.py [--quick] [--targets 1000] [--image 256x256] [--frames 100] [--cut 10]
                           [--workers 2] [--concurrency 8] [--repeat 3] [--keep]

Writes one synthetic SPOC sector (``--image`` ROWSxCOLS pixels, ``--frames`` FFIs) and its cube,
spreads ``--targets`` targets over it, and starts one Dask LocalCluster of ``--workers`` processes
(one thread each), in a process of its own, that every Dask figure below shares (warmed first:
engine imported on every worker, the cube opened there). Then, every figure for the same targets and cutouts:

- batch:    ``core.batch.cutouts.run_batch`` on that cluster (what ``cutout batch --scheduler``
            does), from this process: connecting, planning, tasks, manifest;
- job:      the service (``cutout serve``'s app in a subprocess, ``CUTOUT_DASK_SCHEDULER`` = that
            cluster) given the targets as one CSV: from the POST to the job document saying
            COMPLETED (a blocking poll), i.e. upload, planning, tasks, manifest and results list;
- /astrocut loop: a client sending one ``/astrocut`` request per target, ``--concurrency`` at a
            time (MAST allows 10 at once), each answered with a zip of one TPF, to the same
            service (its HTTP worker threads, not Dask).

Each is run ``--repeat`` times, alternated (batch first, then job first, ...), each into an empty
output folder (disk writeback on a
shared machine makes single runs vary by 2x). Prints the median targets/s of each and the median
of the job's time over the batch's (the target is 1.5x at most). ``--quick`` (CI smoke test): a
64x64 cube of 5 frames, 40 targets, 1 worker, one run.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import csv
import io
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
import zipfile
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

warnings.simplefilter("ignore")

BATCH, JOB, LOOP = "cutout batch (run_batch)", "one UWS job", "/astrocut loop"


#: a process holding a LocalCluster (the scheduler and its workers) until its stdin closes, so that
#: neither the batch's client nor the service shares a process (and a GIL) with the scheduler
_CLUSTER = """
import sys
from core.batch.cluster import dask_client
with dask_client(workers=int(sys.argv[1]), memory_limit="2GiB") as client:
    print(client.scheduler.address, flush=True)
    sys.stdin.read()
"""


@contextlib.contextmanager
def _cluster(workers: int) -> Iterator[str]:
    """A LocalCluster of ``workers`` processes in its own process; yields the scheduler's address."""
    root = str(Path(__file__).resolve().parent.parent)
    proc = subprocess.Popen([sys.executable, "-c", _CLUSTER, str(workers)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True, cwd=root, env={**os.environ, "PYTHONPATH": root})
    try:
        address = proc.stdout.readline().strip()
        if not address.startswith("tcp://"):
            raise RuntimeError(f"the Dask cluster did not start (exit {proc.poll()})")
        yield address
    finally:
        proc.stdin.close()
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()


def _csv(targets: list[dict]) -> bytes:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=["name", "ra", "dec"])
    writer.writeheader()
    writer.writerows({"name": t["name"], "ra": repr(t["ra"]), "dec": repr(t["dec"])} for t in targets)
    return out.getvalue().encode()


def _run_job(url: str, table: bytes, cut: int, delete: bool = False) -> tuple[float, int]:
    """POST one job with the table, block until it is over; (seconds, TPFs listed). ``delete``:
    destroy it afterwards (untimed)."""
    import httpx
    from pyvo.io.uws import parse_job

    base = f"{url}/api/v0.1/async"
    with httpx.Client(timeout=120) as client:
        t0 = time.perf_counter()
        created = client.post(base, data={"x": str(cut), "PHASE": "RUN"}, files={"targets": ("t.csv", table)})
        assert created.status_code == 303, created.text
        job_url = created.headers["location"]
        while True:
            job = parse_job(io.BytesIO(client.get(job_url, params={"WAIT": "60"}).content))
            if job.phase in ("COMPLETED", "ERROR", "ABORTED"):
                break
        dt = time.perf_counter() - t0
        assert job.phase == "COMPLETED", job.errorsummary
        if delete:
            client.delete(job_url)
        return dt, sum(1 for r in job.results if r.mimetype == "application/fits")


async def _astrocut_loop(port: int, targets: list[dict], cut: int, concurrency: int) -> tuple[float, int]:
    """One /astrocut request per target, ``concurrency`` connections; (seconds, TPFs received)."""
    from _client import Conn

    todo = list(targets)
    got = 0

    async def worker() -> None:
        nonlocal got
        conn = Conn("127.0.0.1", port)
        try:
            while todo:
                t = todo.pop()
                r = await conn.get(f"/tesscut/api/v0.1/astrocut?ra={t['ra']!r}&dec={t['dec']!r}&x={cut}&y={cut}")
                assert r.status == 200, r.body[:300]
                got += sum(1 for n in zipfile.ZipFile(io.BytesIO(r.body)).namelist() if n.endswith(".fits"))
        finally:
            await conn.close()

    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return time.perf_counter() - t0, got


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="tiny sizes (CI smoke test)")
    ap.add_argument("--targets", type=int, default=None, help="targets (default 1000)")
    ap.add_argument("--image", default=None, help="cube ROWSxCOLS (default 256x256)")
    ap.add_argument("--frames", type=int, default=None, help="frames of the cube (default 100)")
    ap.add_argument("--cut", type=int, default=10, help="cutout side, pixels (default 10)")
    ap.add_argument("--workers", type=int, default=None, help="Dask worker processes (default 2)")
    ap.add_argument("--concurrency", type=int, default=8, help="/astrocut requests at once (default 8)")
    ap.add_argument("--repeat", type=int, default=None, help="alternated runs of each (default 3)")
    ap.add_argument("--keep", action="store_true", help="keep the data and outputs")
    args = ap.parse_args()
    n = args.targets or (40 if args.quick else 1000)
    image = tuple(int(v) for v in args.image.lower().split("x")) if args.image else (
        (64, 64) if args.quick else (256, 256))
    frames = args.frames or (5 if args.quick else 100)
    workers = args.workers or (1 if args.quick else 2)
    args.repeat = args.repeat or (1 if args.quick else 3)

    import logging

    logging.getLogger("distributed").setLevel(logging.ERROR)
    from _server import ServerProcess
    from bench_batch import OneCube, _make_cube, _targets

    from core.batch.cutouts import run_batch

    root = Path(tempfile.mkdtemp(prefix="bench-jobs-"))
    try:
        cube = _make_cube(root / "cubes", image, frames)
        targets = _targets(cube, n, margin=args.cut / 2)
        table = _csv(targets)
        print(f"{n} targets x 1 cube, {args.cut}x{args.cut} px cutouts; {workers} Dask worker(s); "
              f"CPUs: {os.cpu_count()}")
        env = {"CUTOUT_CUBE_DIRS": str(cube.parent), "CUTOUT_WORK_DIR": str(root / "work"),
               "CUTOUT_JOBS_MAX_TARGETS": str(max(n, 10)), "CUTOUT_LOG_LEVEL": "warning"}
        times: dict[str, list[float]] = {BATCH: [], JOB: [], LOOP: []}
        with _cluster(workers) as address, ServerProcess("ours", env={**env, "CUTOUT_DASK_SCHEDULER": address}) \
                as server:
            warm = _targets(cube, 4 * workers, margin=args.cut / 2, seed=99)
            run_batch(warm, size=args.cut, out_dir=root / "warm", catalog=OneCube(cube), scheduler=address,
                      progress=False)
            _run_job(server.url, _csv(warm), args.cut)  # the service's runner reaches the cluster
            for i in range(args.repeat):  # alternated (order too), each into an empty output folder
                for kind in ((BATCH, JOB) if i % 2 == 0 else (JOB, BATCH)):
                    if kind == BATCH:
                        t0 = time.perf_counter()
                        report = run_batch(targets, size=args.cut, out_dir=root / "batch", catalog=OneCube(cube),
                                           scheduler=address, progress=False)
                        times[BATCH].append(time.perf_counter() - t0)
                        assert report.ok == n, report.errors
                        shutil.rmtree(root / "batch")
                    else:
                        job_s, tpfs = _run_job(server.url, table, args.cut, delete=True)
                        assert tpfs == n, tpfs
                        times[JOB].append(job_s)
                loop_s, got = asyncio.run(_astrocut_loop(server.port, targets, args.cut, args.concurrency))
                assert got == n, got
                times[LOOP].append(loop_s)
                print(f"run {i + 1}: batch {times[BATCH][-1]:.2f} s, job {times[JOB][-1]:.2f} s, "
                      f"/astrocut loop {loop_s:.2f} s")
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
        else:
            print(f"kept {root}")

    print()
    medians = {name: statistics.median(values) for name, values in times.items()}
    ratios = [j / b for j, b in zip(times[JOB], times[BATCH])]
    print(f"{'median of ' + str(args.repeat) + ' runs':34} {'targets/s':>10} {'time vs batch':>14}")
    for name, seconds in medians.items():
        label = f"/astrocut loop, {args.concurrency} at once" if name == LOOP else name
        print(f"{label:34} {n / seconds:10.1f} {seconds / medians[BATCH]:13.2f}x")
    ratio = statistics.median(ratios)
    print(f"the job took {ratio:.2f}x the batch's time (median of the runs' ratios; target: 1.5x at most) "
          f"{'- within' if ratio <= 1.5 else '- OVER'} the target")
    print("Same Dask workers (warmed) for batch and job, runs alternated; the job's time runs from its POST "
          "(CSV upload) to the document saying COMPLETED; the /astrocut loop uses the service's HTTP worker "
          "threads, not Dask. Shared machine: noisy figures.")

if __name__ == "__main__":
    main()
