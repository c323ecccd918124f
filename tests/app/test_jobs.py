"""Async cutout jobs over HTTP (app.routers.jobs, app.jobs): UWS 1.1 on a real uvicorn server.

One module-wide server runs its jobs on the LocalCluster it starts itself (2 worker processes)
over the synthetic cubes of ``service_data`` (SPOC sectors 38 and 11 around the same position,
TICA 38). Job documents are read with pyvo's UWS parser (``pyvo.io.uws.parse_job``), the rest
with plain HTTP; pyvo's own UWS job client (``AsyncTAPJob``) drives one job.
"""

from __future__ import annotations

import csv
import io
import os
import time
import zipfile
from pathlib import Path

import httpx
import pytest

from tests.uws_client import job_info, manifest_rows, parse, pixel_positions, post_job, wait_for, wait_phase

pytestmark = pytest.mark.timeout(300)

SIZE = (6, 5)  # x then y, pixels


@pytest.fixture(scope="module")
def jobs_server(service_data, tmp_path_factory):
    """A server running jobs on its own LocalCluster (2 workers); yields (url of /api/v0.1/async, server)."""
    from app.main import create_app
    from app.settings import Settings
    from tests.conftest import LiveServer, _free_port, start_uvicorn, stop_uvicorn

    cubes, image_root, images = service_data
    settings = Settings(cube_dirs=[str(cubes["spoc38"].parent)], work_dir=tmp_path_factory.mktemp("jobs-work"),
                        port=_free_port(), workers=4, jobs_dask_workers=2, jobs_dask_memory_limit="1GiB",
                        jobs_max_targets=60, jobs_reap_s=0.3, jobs_checkpoint_s=0.2, jobs_max_wait_s=10)
    app = create_app(settings)
    server, thread = start_uvicorn(app, settings.host, settings.port)
    try:
        url = f"http://{settings.host}:{settings.port}"
        yield f"{url}/api/v0.1/async", LiveServer(url, settings, app, server, thread, cubes, image_root, images)
    finally:
        stop_uvicorn(server, thread)


def _targets(cube: Path) -> tuple[bytes, list[dict[str, str]]]:
    """20 rows: 18 spread over the cubes (some unnamed, one restricted to sector 38, one name with
    a space), one off every cube, one whose RA is not a number."""
    pixels = [(1.5, 30.0), *((4.0 + 3.1 * i, 3.0 + 3.3 * i) for i in range(17))]
    rows = []
    for i, (ra, dec) in enumerate(pixel_positions(str(cube), pixels)):
        name = "" if i % 6 == 5 else ("TIC 1003" if i == 3 else f"T{i:02d}")
        rows.append({"name": name, "ra": repr(ra), "dec": repr(dec), "sector": "38" if i == 7 else ""})
    rows.append({"name": "off", "ra": "10.0", "dec": "10.0", "sector": ""})
    rows.append({"name": "bad", "ra": "abc", "dec": "-62.7", "sector": ""})
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=["name", "ra", "dec", "sector"])
    writer.writeheader()
    writer.writerows(rows)
    assert len(rows) == 20
    return out.getvalue().encode(), rows


def _direct(rows: list[dict[str, str]], server, tmp_path: Path) -> dict[str, bytes]:
    """What direct CutoutFactory().cube_cut calls make for every (target, cube): {zip path: bytes}."""
    from core.batch.targets import target_dir_name
    from core.tpf.cut import CutoutFactory

    catalog = server.app.state.services.catalog.current
    files = {}
    for row in rows:
        try:
            ra, dec = float(row["ra"]) % 360.0, float(row["dec"])
        except ValueError:
            continue
        folder = target_dir_name(row["name"], ra, dec)
        for rec in catalog.containing(ra, dec, sectors=[int(row["sector"])] if row["sector"] else None):
            path = CutoutFactory().cube_cut(rec.uri, f"{ra!r} {dec!r}", list(SIZE), output_path=tmp_path / folder)
            files[f"{folder}/{os.path.basename(path)}"] = Path(path).read_bytes()
    return files


# ------------------------------------------------------------------------------------------
# a job of 20 targets
# ------------------------------------------------------------------------------------------


def test_job_of_20_targets_matches_direct_cube_cuts(jobs_server, tmp_path):
    base, server = jobs_server
    table, rows = _targets(server.cubes["spoc38"])
    created = post_job(base, data={"x": str(SIZE[0]), "y": str(SIZE[1]), "PHASE": "RUN", "RUNID": "twenty"},
                       files={"targets": ("targets.csv", table, "text/csv")})
    job_url = created.headers["location"]
    assert job_url.startswith(base + "/")
    job = wait_phase(job_url)
    assert job.phase == "COMPLETED", job.errorsummary
    assert job.runid == "twenty" and job.ownerid == "127.0.0.1" and job.version == "1.1"
    assert job.starttime is not None and job.endtime is not None and job.destruction is not None
    params = {p.id_: p.content for p in job.parameters}
    assert params["x"] == "6" and params["y"] == "5" and params["units"] == "px" and params["product"] == "SPOC"

    expected = _direct(rows, server, tmp_path / "direct")
    assert len(expected) == 35  # 17 targets on both sectors, one restricted to sector 38
    # progress: every target and row done; the two bad rows are the errors
    assert job_info(job, "targets") == job_info(job, "targetsDone") == 20
    assert job_info(job, "cutouts") == job_info(job, "cutoutsDone") == 37
    assert job_info(job, "ok") == 35 and job_info(job, "errors") == 2
    assert job_info(job, "resultBytes") == sum(len(v) for v in expected.values())

    # one result per TPF, each at its own URL, byte-identical to a direct cube_cut
    by_id = {r.id_: r for r in job.results}
    tpfs = {k: r for k, r in by_id.items() if r.mimetype == "application/fits"}
    assert set(tpfs) == set(expected)
    with httpx.Client(timeout=30) as client:
        for key, ref in tpfs.items():
            response = client.get(ref.href)
            assert response.status_code == 200 and response.content == expected[key], key
            assert ref.size == len(expected[key])
        # the manifest: cutout batch's columns, one row per (target, cube), both bad rows named
        manifest = client.get(by_id["manifest"].href)
        assert manifest.status_code == 200 and manifest.headers["content-type"].startswith("text/csv")
        header = manifest.text.splitlines()[0].split(",")
        from core.batch.manifest import MANIFEST_COLUMNS

        assert tuple(header) == MANIFEST_COLUMNS
        listed = manifest_rows(manifest.text)
        assert len(listed) == 37
        errors = {r["name"]: r for r in listed if r["status"] == "error"}
        assert set(errors) == {"off", "bad"}
        assert "no hosted cube contains the position" in errors["off"]["error"]
        assert errors["bad"]["error"].startswith("InvalidInputError (ra)") and errors["bad"]["ra"] == "abc"
        assert all(r["cube"] in ("", "tess-s0038-2-2-cube.fits", "tess-s0011-2-2-cube.fits") for r in listed)
        assert [r["sector"] for r in listed if r["index"] == "7"] == ["38"]
        # the whole result as one zip: the manifest and every TPF under its target's folder
        archive = client.get(by_id["result"].href)
        assert archive.status_code == 200 and archive.headers["content-type"] == "application/zip"
        members = zipfile.ZipFile(io.BytesIO(archive.content))
        assert sorted(members.namelist()) == sorted(["manifest.csv", *expected])
        assert members.read("manifest.csv") == manifest.content
        assert all(members.read(k) == v for k, v in expected.items())
        assert any(k.startswith("TIC_1003/") for k in expected)
        # the same job under the TESScut prefix
        other = client.get(job_url.replace("/api/v0.1/", "/tesscut/api/v0.1/"))
        assert other.status_code == 200 and parse(other.content).phase == "COMPLETED"
        # the target table as given
        assert client.get(f"{job_url}/parameters/targets").content == table


def test_a_job_takes_the_time_window_and_binning_of_astrocut(jobs_server, tmp_path):
    """time_min, time_max and frame_bin reach every cut: the job's TPFs equal direct cube_cuts with the
    same window, the job document lists them, and bad values are 400s naming the field."""
    from core.cubes.cache import open_cube
    from core.tpf.cut import CutoutFactory

    base, server = jobs_server
    cube = server.cubes["spoc38"]
    times = open_cube(str(cube)).time
    lo, hi = float(times[2]), float(times[7])
    (ra, dec), = pixel_positions(str(cube), [(10.0, 12.0)])
    table = f"name,ra,dec,sector\nw,{ra!r},{dec!r},38\n".encode()
    created = post_job(base, data={"x": "4", "time_min": repr(lo), "time_max": repr(hi), "frame_bin": "2",
                                   "PHASE": "RUN"}, files={"targets": ("t.csv", table, "text/csv")})
    job = wait_phase(created.headers["location"])
    assert job.phase == "COMPLETED", job.errorsummary
    params = {p.id_: p.content for p in job.parameters}
    assert (float(params["time_min"]), float(params["time_max"]), params["frame_bin"]) == (lo, hi, "2")
    tpfs = [r for r in job.results if r.mimetype == "application/fits"]
    assert len(tpfs) == 1
    direct = CutoutFactory().cube_cut(str(cube), f"{ra % 360.0!r} {dec!r}", [4, 4], output_path=tmp_path,
                                      time_min=lo, time_max=hi, frame_bin=2)
    assert httpx.get(tpfs[0].href, timeout=30).content == Path(direct).read_bytes()
    assert tpfs[0].id_.endswith(os.path.basename(direct))  # the name says which frames
    for data, field in (({"time_min": "x"}, "time_min"), ({"time_min": "3", "time_max": "2"}, "time_max"),
                        ({"frame_bin": "0"}, "frame_bin"), ({"frame_bin": "1.5"}, "frame_bin")):
        refused = post_job(base, data={"POS": f"{ra} {dec}", **data}, expect=400)
        assert refused.json()["error"]["field"] == field, data


def test_manifest_cells_are_safe_in_spreadsheets(jobs_server):
    base, _ = jobs_server
    table = b"name,ra,dec\n=HYPERLINK(\"x\"),1,2\n@SUM(A1),+3,-62.5\n-5+cmd,abc,-4\n"
    job_url = post_job(base, data={"PHASE": "RUN"}, files={"targets": ("t.csv", table)}).headers["location"]
    job = wait_phase(job_url)
    assert job.phase == "COMPLETED" and job_info(job, "errors") == 3  # every target fails: still COMPLETED
    text = httpx.get(f"{job_url}/results/manifest.csv").text
    rows = manifest_rows(text)
    assert [r["name"] for r in rows] == ["'=HYPERLINK(\"x\")", "'@SUM(A1)", "'-5+cmd"]
    assert rows[1]["ra"] == "3.0" and rows[1]["dec"] == "-62.5"  # plain numbers stay numbers
    assert all(r["status"] == "error" for r in rows)
    assert not [r for r in rows for cell in r.values() if cell and cell[0] in "=+-@" and not _number(cell)]


def _number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


# ------------------------------------------------------------------------------------------
# the UWS resources
# ------------------------------------------------------------------------------------------


def test_pending_job_and_its_uws_resources(jobs_server):
    base, server = jobs_server
    from core.synthetic.ffis import DEMO_DEC, DEMO_RA

    pos = [f"{DEMO_RA} {DEMO_DEC}", f"{DEMO_RA + 0.002},{DEMO_DEC}"]
    created = post_job(base, data={"pos": pos, "X": "4", "units": "px", "sector": "38", "runid": "uws"})
    job_url = created.headers["location"]
    with httpx.Client(timeout=30) as c:
        job = parse(c.get(job_url).content)
        assert job.phase == "PENDING" and job.runid == "uws" and job.starttime is None
        assert c.get(f"{job_url}/phase").text == "PENDING"
        assert c.get(f"{job_url}/owner").text == "127.0.0.1"
        assert c.get(f"{job_url}/quote").text == ""
        assert c.get(f"{job_url}/error").status_code == 404  # no error: no error resource
        assert int(c.get(f"{job_url}/executionduration").text) == server.settings.jobs_max_execution_s
        # a blocking poll on a PENDING job asked to wait while EXECUTING answers at once: well
        # before its 30 s (a client that gives up after 20 s gets the answer)
        answer = c.get(job_url, params={"WAIT": "30", "PHASE": "EXECUTING"}, timeout=20)
        assert parse(answer.content).phase == "PENDING"
        # parameters: listed, and changed while PENDING (303 to the job)
        params = parse(c.get(job_url).content).parameters
        assert {(p.id_, p.content) for p in params} >= {("x", "4"), ("y", "4"), ("sector", "38")}
        changed = c.post(f"{job_url}/parameters", data={"y": "3"})
        assert changed.status_code == 303 and changed.headers["location"] == job_url
        assert {(p.id_, p.content) for p in parse(c.get(job_url).content).parameters} >= {("x", "4"), ("y", "3")}
        doc = c.get(f"{job_url}/parameters")
        assert doc.status_code == 200 and b"<uws:parameters" in doc.content
        # executionduration and destruction (UWS: the service may clamp)
        r = c.post(f"{job_url}/executionduration", data={"EXECUTIONDURATION": "600"})
        assert r.status_code == 303 and c.get(f"{job_url}/executionduration").text == "600"
        r = c.post(f"{job_url}/destruction", data={"DESTRUCTION": "2999-01-01T00:00:00Z"})
        assert r.status_code == 303
        # clamped to the job's creation + jobs_retention_s (the document's times are whole seconds)
        clamped = parse(c.get(job_url).content)
        assert clamped.destruction.unix <= clamped.creationtime.unix + server.settings.jobs_retention_s + 5
        # run it
        r = c.post(f"{job_url}/phase", data={"PHASE": "RUN"})
        assert r.status_code == 303 and r.headers["location"] == job_url
        job = wait_phase(job_url, client=c)
        assert job.phase == "COMPLETED" and job_info(job, "ok") == 2
        files = [r for r in job.results if r.mimetype == "application/fits"]
        assert all("_4x3_astrocut.fits" in r.href for r in files)
        # a finished job's parameters no longer change; it does not run again
        assert c.post(f"{job_url}/parameters", data={"x": "9"}).status_code == 400
        assert c.post(f"{job_url}/phase", data={"PHASE": "RUN"}).status_code == 400
        assert c.post(f"{job_url}/phase", data={"PHASE": "ABORT"}).status_code == 303  # no change
        assert c.get(f"{job_url}/phase").text == "COMPLETED"
        # blocking on a finished job answers at once
        assert parse(c.get(job_url, params={"WAIT": "-1"}).content).phase == "COMPLETED"


def test_job_list_filters(jobs_server):
    base, _ = jobs_server
    from pyvo.io.uws import parse_job_list

    with httpx.Client(timeout=30) as c:
        before = time.time()
        urls = [post_job(base, data={"POS": "10 10", "RUNID": f"list{i}"}, client=c).headers["location"]
                for i in range(3)]
        c.post(f"{urls[0]}/phase", data={"PHASE": "ABORT"})
        every = parse_job_list(io.BytesIO(c.get(base).content))
        mine = {j.jobid for j in every}
        assert {u.rsplit("/", 1)[1] for u in urls} <= mine
        pending = parse_job_list(io.BytesIO(c.get(base, params={"PHASE": "PENDING"}).content))
        assert all(j.phase == "PENDING" for j in pending) and urls[1].rsplit("/", 1)[1] in {j.jobid for j in pending}
        aborted = parse_job_list(io.BytesIO(c.get(base, params=[("PHASE", "ABORTED"), ("PHASE", "ERROR")]).content))
        assert urls[0].rsplit("/", 1)[1] in {j.jobid for j in aborted}
        last = parse_job_list(io.BytesIO(c.get(base, params={"LAST": "2"}).content))
        assert [j.runid for j in last] == ["list2", "list1"]  # the most recent, newest first
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(before - 1))
        after = parse_job_list(io.BytesIO(c.get(base, params={"AFTER": stamp, "PHASE": "PENDING"}).content))
        assert {j.runid for j in after} == {"list1", "list2"}
        for bad in ({"PHASE": "pending"}, {"LAST": "-1"}, {"AFTER": "yesterday"}, {"LAST": "x"}):
            assert c.get(base, params=bad).status_code == 400, bad
        # another client address sees none of these
        with httpx.Client(transport=httpx.HTTPTransport(local_address="127.0.0.9"), timeout=30) as other:
            assert parse_job_list(io.BytesIO(other.get(base).content)) == []
        for url in urls:
            assert c.delete(url).status_code == 303


def test_delete_and_action_delete(jobs_server):
    base, server = jobs_server
    from core.synthetic.ffis import DEMO_DEC, DEMO_RA

    jobs_root = Path(server.settings.work_dir) / "jobs"
    with httpx.Client(timeout=30) as c:
        first = post_job(base, data={"POS": f"{DEMO_RA} {DEMO_DEC}", "PHASE": "RUN"}, client=c).headers["location"]
        assert wait_phase(first, client=c).phase == "COMPLETED"
        job_id = first.rsplit("/", 1)[1]
        assert (jobs_root / job_id / "out").is_dir()
        gone = c.delete(first)
        assert gone.status_code == 303 and gone.headers["location"] == base
        for url in (first, f"{first}/phase", f"{first}/results", f"{first}/results/manifest.csv"):
            assert c.get(url).status_code == 404
        assert not (jobs_root / job_id).exists()
        assert c.delete(first).status_code == 404
        second = post_job(base, data={"POS": "1 2"}, client=c).headers["location"]
        assert c.post(second, data={"ACTION": "KEEP"}).status_code == 400
        assert c.post(second, data={"x": "5"}).status_code == 400  # parameters go to /parameters
        gone = c.post(second, data={"ACTION": "DELETE"})
        assert gone.status_code == 303 and gone.headers["location"] == base
        assert c.get(second).status_code == 404


def test_expiry_removes_the_job_and_its_folder(jobs_server):
    base, server = jobs_server
    jobs_root = Path(server.settings.work_dir) / "jobs"
    with httpx.Client(timeout=30) as c:
        url = post_job(base, data={"POS": "10 10", "PHASE": "RUN"}, client=c).headers["location"]
        assert wait_phase(url, client=c).phase == "COMPLETED"
        job_id = url.rsplit("/", 1)[1]
        soon = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(time.time() + 1))
        assert c.post(f"{url}/destruction", data={"DESTRUCTION": soon}).status_code == 303
        assert (jobs_root / job_id).is_dir()
        wait_for(lambda: c.get(url).status_code == 404, what="the job's destruction")
        wait_for(lambda: not (jobs_root / job_id).exists(), what="the job's folder removed")


def test_pyvo_uws_client_runs_and_deletes_a_job(jobs_server):
    from pyvo.dal.tap import AsyncTAPJob

    from core.synthetic.ffis import DEMO_DEC, DEMO_RA

    base, _ = jobs_server
    url = post_job(base, data={"POS": f"{DEMO_RA} {DEMO_DEC}", "x": "3"}).headers["location"]
    job = AsyncTAPJob(url)
    assert job.phase == "PENDING" and job.uws_version == "1.1"
    job.run().wait(timeout=120)
    assert job.phase == "COMPLETED"
    assert job.result_uri.endswith("/results/result.zip")  # pyvo's "result" is the zip
    archive = zipfile.ZipFile(io.BytesIO(httpx.get(job.result_uri, timeout=30).content))
    assert len([n for n in archive.namelist() if n.endswith(".fits")]) == 2
    job.delete()
    assert httpx.get(url).status_code == 404


# ------------------------------------------------------------------------------------------
# failures
# ------------------------------------------------------------------------------------------


def test_internal_failure_is_phase_error_never_a_500(jobs_server):
    base, server = jobs_server
    with httpx.Client(timeout=30) as c:
        url = post_job(base, data={"POS": "1 2"}, client=c).headers["location"]
        job_id = url.rsplit("/", 1)[1]
        (Path(server.settings.work_dir) / "jobs" / job_id / "targets.csv").unlink()  # lost from disk
        assert c.post(f"{url}/phase", data={"PHASE": "RUN"}).status_code == 303
        job = wait_phase(url, client=c)
        assert job.phase == "ERROR" and job.errorsummary.type_ == "fatal"
        error = c.get(f"{url}/error")
        assert error.status_code == 200 and "could not be planned" in error.text
        assert str(server.settings.work_dir) not in error.text  # the server's folders are not shown
        for sub in ("", "/phase", "/results", "/parameters", "/owner", "/quote", "/destruction",
                    "/executionduration", "/results/manifest.csv", "/results/result.zip"):
            assert c.get(url + sub).status_code == 200, sub
        assert job.results == [] or {r.id_ for r in job.results} == {"result", "manifest"}


@pytest.mark.parametrize(("data", "files", "field"), [
    ({"POS": "1 2", "bogus": "1"}, None, "bogus"),
    ({"POS": "1 2", "x": "0"}, None, "x"),
    ({"POS": "1 2", "x": "2.5"}, None, "x"),
    ({"POS": "1 2", "x": "nan"}, None, "x"),
    ({"POS": "1 2", "units": "furlong"}, None, "units"),
    ({"POS": "1 2", "product": "K2"}, None, "product"),
    ({"POS": "1 2", "sector": "x9"}, None, "sector"),
    ({"POS": "1 2 3"}, None, "POS"),
    ({"POS": "1 2", "x": ["3", "4"]}, None, "x"),
    ({"POS": "1 2", "PHASE": "ABORT"}, None, "PHASE"),
    ({"PHASE": "RUN"}, None, "targets"),
    ({"POS": "1 2", "RUNID": "r" * 300}, None, "RUNID"),
    ({}, {"targets": ("t.csv", b"name,dec\nx,1\n")}, "ra"),
    ({}, {"targets": ("t.csv", "ra,dec\n1,2\n".encode("utf-16"))}, "targets"),
    ({}, {"targets": ("t.csv", b"ra,dec\n1\x00,2\n")}, "targets"),
    ({"POS": "1 2"}, {"targets": ("t.csv", b"ra,dec\n1,2\n")}, "POS"),
])
def test_bad_creation_forms_answer_400_naming_the_field(jobs_server, data, files, field):
    base, _ = jobs_server
    response = post_job(base, data=data, files=files, expect=400)
    assert response.json()["error"]["field"] == field


def test_bad_values_on_job_resources_answer_400_or_404(jobs_server):
    base, _ = jobs_server
    with httpx.Client(timeout=30) as c:
        url = post_job(base, data={"POS": "1 2"}, client=c).headers["location"]
        assert c.get(url, params={"WAIT": "soon"}).status_code == 400
        assert c.get(url, params={"WAIT": "1", "PHASE": "RUNNING"}).status_code == 400
        assert c.post(f"{url}/phase", data={"PHASE": "SUSPEND"}).status_code == 400
        assert c.post(f"{url}/phase", data={"PHASE": ["RUN", "RUN"]}).status_code == 400
        assert c.post(f"{url}/destruction", data={"DESTRUCTION": "tomorrow"}).status_code == 400
        assert c.post(f"{url}/executionduration", data={"EXECUTIONDURATION": "-5"}).status_code == 400
        for missing in (f"{base}/nosuchjob0001", f"{base}/../etc", f"{base}/a%2Fb", f"{url}/results/x/y.fits",
                        f"{url}/results/..%2F..%2Fjob.json/x"):
            assert c.get(missing).status_code == 404, missing
        assert c.delete(url).status_code == 303


def test_a_damaged_results_list_is_no_500(jobs_server):
    base, server = jobs_server
    from core.synthetic.ffis import DEMO_DEC, DEMO_RA

    with httpx.Client(timeout=30) as c:
        url = post_job(base, data={"POS": f"{DEMO_RA} {DEMO_DEC}", "PHASE": "RUN"}, client=c).headers["location"]
        job = wait_phase(url, client=c)
        tpf = next(r.href for r in job.results if r.mimetype == "application/fits")
        assert c.get(tpf).status_code == 200
        (Path(server.settings.work_dir) / "jobs" / url.rsplit("/", 1)[1] / "results.json").write_bytes(b"{oops")
        assert c.get(url).status_code == 200 and c.get(f"{url}/results").status_code == 200
        assert c.get(tpf).status_code == 404  # only what the results list names is served


def test_a_target_table_far_bigger_than_its_rows_need_is_refused_unread(jobs_server):
    base, _ = jobs_server
    table = b"ra,dec,note\n" + b"1,2," + b"x" * (1200 * 1024) + b"\n"  # one row, 1.2 MB
    error = post_job(base, files={"targets": ("t.csv", table)}, expect=413).json()["error"]
    assert error["field"] == "targets" and "jobs_max_targets" in error["message"]
