"""Async jobs stopped midway: aborted while executing, and interrupted by a server restart.

To hold a job midway without timing, one cube (sector 38) is on S3 (moto) behind a fault proxy
and the other (sector 11) is local. The job's first rows ask for sector 11 only; its last row is
on both cubes. With the proxy silent, the task of that last row on the S3 cube hangs (its read
timeout is far beyond the test), so the job stays EXECUTING with every other row done: a state
the tests reach by polling the job's progress, whatever the machine's speed.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import httpx
import pytest

from tests.uws_client import job_info, manifest_rows, parse, pixel_positions, post_job, wait_for, wait_phase

pytestmark = pytest.mark.timeout(300)

ROWS = 7  # six on sector 11 only, the last one on sectors 11 and 38: 8 (target, cube) pairs


@pytest.fixture
def gated(make_server, s3_server, service_data, fault_proxy, tmp_path):
    """``make(work_dir) -> server`` (sector 11 local, sector 38 on S3 through ``proxy``), and the
    proxy and the target table."""
    cubes, _, _ = service_data
    local = tmp_path / "local"
    local.mkdir()
    shutil.copy(cubes["spoc11"], local / "tess-s0011-2-2-cube.fits")
    s3_server.upload(cubes["spoc38"], "jobs", "tess/tess-s0038-2-2-cube.fits")
    proxy = fault_proxy(s3_server.endpoint_url)

    def make(work_dir: Path):
        return make_server(cube_dirs=[str(local), "s3://jobs/tess"], work_dir=work_dir, s3_endpoint_url=proxy.endpoint_url,
                           s3_access_key_id="testing", s3_secret_access_key="testing", s3_region="us-east-1",
                           s3_read_timeout_s=120, s3_max_attempts=1, jobs_dask_workers=2,
                           jobs_dask_memory_limit="1GiB", jobs_checkpoint_s=0.1)

    pixels = [(8.0 + 7.0 * i, 10.0 + 6.0 * i) for i in range(ROWS)]
    positions = pixel_positions(str(cubes["spoc38"]), pixels)
    lines = ["name,ra,dec,sector"] + [f"S{i},{ra!r},{dec!r},{'' if i == ROWS - 1 else 11}"
                                      for i, (ra, dec) in enumerate(positions)]
    return make, proxy, ("\n".join(lines) + "\n").encode()


def _held(base: str, proxy, table: bytes) -> str:
    """Post the job with the S3 cube silent; return its URL once all but the S3 row are done."""
    proxy.mode = "silent"
    url = post_job(base, data={"x": "5", "PHASE": "RUN"}, files={"targets": ("t.csv", table)}).headers["location"]

    def held():
        job = parse(httpx.get(url, timeout=30).content)
        assert job.phase in ("QUEUED", "EXECUTING"), job.phase
        return job if job_info(job, "cutoutsDone") == ROWS else None

    job = wait_for(held, deadline_s=120, what="every row but the one on S3 done")
    assert job.phase == "EXECUTING" and job_info(job, "cutouts") == ROWS + 1
    return url


def test_abort_an_executing_job_keeps_what_it_made(gated, tmp_path):
    make, proxy, table = gated
    server = make(tmp_path / "work")
    base = f"{server.url}/api/v0.1/async"
    url = _held(base, proxy, table)
    assert httpx.post(f"{url}/phase", data={"PHASE": "ABORT"}).status_code == 303
    job = wait_phase(url, deadline_s=60)
    assert job.phase == "ABORTED" and "aborted on request" in job.errorsummary.message.content
    assert "aborted" in httpx.get(f"{url}/error").text
    # the results made before the abort stay: seven TPFs, and the manifest names the one not made
    tpfs = [r for r in job.results if r.mimetype == "application/fits"]
    assert len(tpfs) == ROWS
    rows = manifest_rows(httpx.get(f"{url}/results/manifest.csv").text)
    assert [r["status"] for r in rows].count("ok") == ROWS
    (missed,) = [r for r in rows if r["status"] == "error"]
    assert missed["sector"] == "38" and missed["error"].startswith("not run:")
    assert all(httpx.get(r.href).status_code == 200 for r in tpfs)


def test_restart_resumes_an_interrupted_job_without_redoing_its_outputs(gated, tmp_path):
    make, proxy, table = gated
    work = tmp_path / "work"
    first = make(work)
    url = _held(f"{first.url}/api/v0.1/async", proxy, table)
    job_id = url.rsplit("/", 1)[1]
    out = work / "jobs" / job_id / "out"
    done = {p: (p.stat().st_ino, p.stat().st_mtime_ns) for p in out.glob("*/*.fits")}
    assert len(done) == ROWS
    first.stop()  # the server goes away mid-job (its Dask cluster with it)
    record = json.loads((work / "jobs" / job_id / "job.json").read_bytes())
    assert record["phase"] == "EXECUTING" and record["progress"]["rows_done"] == ROWS

    proxy.mode = "pass"
    second = make(work)  # a new service on the same work dir
    base = f"{second.url}/api/v0.1/async"
    listed = httpx.get(base, timeout=30)
    assert job_id in listed.text  # it knows the job
    job = wait_phase(f"{base}/{job_id}", deadline_s=120)
    assert job.phase == "COMPLETED", job.errorsummary
    assert job_info(job, "cutoutsDone") == ROWS + 1 and job_info(job, "ok") + job_info(job, "skipped") == ROWS + 1
    rows = manifest_rows(httpx.get(f"{base}/{job_id}/results/manifest.csv").text)
    statuses = {(r["name"], r["sector"]): r["status"] for r in rows}
    assert statuses[(f"S{ROWS - 1}", "38")] == "ok"  # the one cut after the restart
    assert sorted(s for k, s in statuses.items() if k != (f"S{ROWS - 1}", "38")) == ["skipped"] * ROWS
    # the outputs made before the restart were not rewritten
    for path, stamp in done.items():
        assert (path.stat().st_ino, path.stat().st_mtime_ns) == stamp, path
    tpfs = [r for r in job.results if r.mimetype == "application/fits"]
    assert len(tpfs) == ROWS + 1
    assert not [p for p in out.rglob("*.part")]  # no partial file left under a final name or beside one
    assert os.path.getsize(out / rows[-1]["file"]) == int(rows[-1]["bytes"])


def test_servers_sharing_a_work_dir_share_jobs_and_one_runs_them(make_server, service_data, tmp_path):
    """Two services on one work dir (as ``cutout serve --workers 2`` runs): a job created through
    either is run by the one holding the runner lock and seen by both; when that one stops, the
    other takes the jobs over."""
    from core.synthetic.ffis import DEMO_DEC, DEMO_RA

    cubes, _, _ = service_data
    work = tmp_path / "shared"
    settings = {"cube_dirs": [str(cubes["spoc38"].parent)], "work_dir": work, "jobs_dask_workers": 1,
                "jobs_dask_memory_limit": "1GiB"}
    a = make_server(**settings)
    b = make_server(**settings)
    pos = {"POS": f"{DEMO_RA} {DEMO_DEC}", "PHASE": "RUN"}
    first = post_job(f"{a.url}/api/v0.1/async", data=pos).headers["location"]
    assert wait_phase(first).phase == "COMPLETED"
    assert a.app.state.services.jobs.runner.elected.is_set()
    second = post_job(f"{b.url}/api/v0.1/async", data=pos).headers["location"]
    job_id = second.rsplit("/", 1)[1]
    job = wait_phase(second)  # b's document, b's blocking poll; a's runner did the work
    assert job.phase == "COMPLETED" and job_info(job, "ok") == 2
    assert not b.app.state.services.jobs.runner.elected.is_set()
    assert parse(httpx.get(f"{a.url}/api/v0.1/async/{job_id}", timeout=30).content).phase == "COMPLETED"
    a.stop()  # b's runner takes over
    assert b.app.state.services.jobs.runner.elected.wait(60), "the runner lock was not taken over"
    third = post_job(f"{b.url}/api/v0.1/async", data=pos).headers["location"]
    assert wait_phase(third).phase == "COMPLETED"


def test_abort_requested_while_no_runner_keeps_the_finished_results(gated, tmp_path):
    """An abort recorded while the job waits to resume (the request came through another process,
    or the runner was down) ends it ABORTED with what its last manifest says it finished."""
    make, proxy, table = gated
    work = tmp_path / "work"
    first = make(work)
    url = _held(f"{first.url}/api/v0.1/async", proxy, table)
    job_id = url.rsplit("/", 1)[1]
    first.stop()
    record_path = work / "jobs" / job_id / "job.json"
    record = json.loads(record_path.read_bytes())
    record["abort_requested"] = True
    record_path.write_text(json.dumps(record))  # as another process's store.update would leave it
    proxy.mode = "pass"  # the new service lists the S3 cubes when it starts
    second = make(work)
    job = wait_phase(f"{second.url}/api/v0.1/async/{job_id}", deadline_s=60)
    assert job.phase == "ABORTED"
    assert len([r for r in job.results if r.mimetype == "application/fits"]) == ROWS
    rows = manifest_rows(httpx.get(f"{second.url}/api/v0.1/async/{job_id}/results/manifest.csv").text)
    assert [r["status"] for r in rows].count("ok") == ROWS
