"""The async jobs' parts, in-process: the creation form's parsing (app.jobs.params), the served
manifest and results (app.jobs.results), the store on disk (app.jobs.store) and the UWS
documents (app.jobs.uws, read back with pyvo)."""

from __future__ import annotations

import asyncio
import io
import threading
import time
from types import SimpleNamespace

import pytest

from app.jobs.params import Upload, count_targets, parse_create, parse_timestamp, parse_wait
from app.jobs.results import estimate_results, manifest_bytes, result_files
from app.jobs.store import Changes, JobRecord, JobStore, Phase
from core.batch.manifest import ManifestRow
from core.batch.targets import formula_safe, read_targets
from core.errors import InvalidInputError, NotFoundError, TooLargeError

# ------------------------------------------------------------------------------------------
# params
# ------------------------------------------------------------------------------------------


def test_creation_form_names_are_case_insensitive_and_values_normalised():
    request = parse_create([("pos", "1 2"), ("Pos", "3,4"), ("X", "7"), ("UNITS", "px"), ("Sector", "[38, 11]"),
                            ("sector", "38"), ("product", "tica"), ("runId", " mine "), ("phase", "RUN")],
                           max_targets=10, max_side=100)
    assert request.params == {"x": 7, "y": 7, "units": "px", "sectors": [38, 11], "product": "TICA"}
    assert request.run and request.run_id == "mine" and request.source == "POS" and request.targets == 2
    assert request.table == b"ra,dec\n1,2\n3,4\n"
    arcmin = parse_create([("x", "2"), ("y", "1.5"), ("units", "m")], max_targets=10, max_side=100)
    assert arcmin.params["units"] == "arcmin" and (arcmin.params["x"], arcmin.params["y"]) == (2.0, 1.5)
    # an update over current parameters: a new x alone makes a square; y alone keeps x
    current = {"x": 2, "y": 3, "units": "px"}
    assert parse_create([("x", "4")], max_targets=1, max_side=9, current=current).params["y"] == 4
    assert parse_create([("y", "5")], max_targets=1, max_side=9, current=current).params["x"] == 2
    assert parse_create([], max_targets=1, max_side=9, current=current).params["y"] == 3


@pytest.mark.parametrize(("items", "error", "field"), [
    ([("x", "1e400")], InvalidInputError, "x"),
    ([("x", "-1")], InvalidInputError, "x"),
    ([("x", "101")], TooLargeError, "x"),
    ([("x", "0.6"), ("units", "deg")], TooLargeError, "x"),  # about 103 TESS pixels
    ([("units", "px"), ("units", "px")], InvalidInputError, "units"),
    ([("sector", "0")], InvalidInputError, "sector"),
    ([("sector", ",".join(str(i) for i in range(1, 300)))], InvalidInputError, "sector"),
    ([("x", Upload("f", b"1"))], InvalidInputError, "x"),
    ([("POS", "1 2")] * 11, TooLargeError, "POS"),
    ([("RUNID", "a\x07b")], InvalidInputError, "RUNID"),
    ([("QUERY", "SELECT")], InvalidInputError, "QUERY"),
])
def test_creation_form_values_are_bounded(items, error, field):
    with pytest.raises(error) as err:
        parse_create(items, max_targets=10, max_side=100)
    assert err.value.field == field


def test_target_rows_are_counted_as_the_batch_reads_them(tmp_path):
    table = b"\xef\xbb\xbf# comment\nName, RA ,Dec\n\nA,1,2\n  # another\nB,x,3\nC,5\n\"D, quoted\",6,7\n"
    assert count_targets(table, 10) == 4
    path = tmp_path / "t.csv"
    path.write_bytes(table)
    assert len(read_targets(str(path))) == 4  # the engine reads the same rows
    with pytest.raises(TooLargeError) as err:
        count_targets(table, 3)
    assert err.value.field == "targets" and "jobs_max_targets" in err.value.message
    for bad, field in [(b"ra,decl\n1,2\n", "dec"), (b"\xff\xfe", "targets"), (b"", "ra")]:
        with pytest.raises(InvalidInputError) as err:
            count_targets(bad, 10)
        assert err.value.field == field


def test_wait_and_timestamps():
    assert parse_wait(None, 60) is None
    assert parse_wait("-1", 60) == 60 and parse_wait("5", 60) == 5 and parse_wait("600", 60) == 60
    assert parse_wait("0", 60) == 0
    with pytest.raises(InvalidInputError):
        parse_wait("1.5", 60)
    assert parse_timestamp("AFTER", "2020-01-02") == parse_timestamp("AFTER", "2020-01-02T00:00:00.000Z")
    assert parse_timestamp("AFTER", "2020-01-02T01:00+01:00") == parse_timestamp("AFTER", "2020-01-02T00:00Z")
    with pytest.raises(InvalidInputError):
        parse_timestamp("AFTER", "2020-13-40")


# ------------------------------------------------------------------------------------------
# results
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("cell", "shown"), [
    ("=1+2", "'=1+2"), ("+SUM(A1)", "'+SUM(A1)"), ("-2+3", "'-2+3"), ("@cmd", "'@cmd"), ("\tx", "'\tx"),
    ("-62.5", "-62.5"), ("+3", "+3"), ("1e-5", "1e-5"), ("-.5", "-.5"), ("TIC 1", "TIC 1"), ("", ""), (None, ""),
])
def test_formula_safe(cell, shown):
    assert formula_safe(cell) == shown


def test_served_manifest_names_cube_files_and_scrubs_errors():
    rows = [ManifestRow(0, "=evil", "1.0", "2.0", 38, 2, 2, "/srv/cubes/tess-s0038-2-2-cube.fits", "5x5 px", "ok",
                        "evil/a.fits", 10),
            ManifestRow(0, "=evil", "1.0", "2.0", 11, 2, 2, "s3://b/p/tess-s0011-2-2-cube.fits", "5x5 px", "ok",
                        "evil/a.fits", 10),  # twin rows share a file
            ManifestRow(1, "x", "abc", "2", error="cannot read /srv/cubes/thing", status="error")]
    text = manifest_bytes(rows, lambda t: t.replace("/srv/cubes", "<cubes>")).decode()
    lines = text.splitlines()
    assert lines[0].startswith("index,name,ra,dec,sector,camera,ccd,cube,size,status,file,bytes,error")
    assert "tess-s0038-2-2-cube.fits" in lines[1] and "/srv" not in text and "s3://" not in text
    assert lines[1].split(",")[1] == "'=evil" and "<cubes>/thing" in lines[3]
    assert result_files(rows) == {"evil/a.fits": 10}


def test_estimate_counts_pairs_from_the_catalog():
    record = SimpleNamespace(nframes=100)

    class Catalog:
        def containing(self, ra, dec, radius_deg=0.0, *, product="SPOC", sectors=None):
            assert product == "SPOC"
            if sectors is not None and 11 not in sectors:
                return []
            return [record, record] if ra < 100 else []

    table = b"ra,dec,sector\n1,2,\n3,4,11\n5,6,38\n200,1,\nabc,1,\n"
    params = {"x": 10, "y": 10, "units": "px", "sectors": [], "product": "SPOC"}
    est = estimate_results(table, params, Catalog())
    assert est["targets"] == 5 and est["pairs"] == 4
    assert 4 * 100 * 10 * 10 * 4 * 4 < est["bytes"] < 4 * (100 * 10 * 10 * 4 * 6 + 100_000)


# ------------------------------------------------------------------------------------------
# store
# ------------------------------------------------------------------------------------------


def _record(job_id: str = "job_00000001") -> JobRecord:
    now = time.time()
    return JobRecord(job_id=job_id, owner="1.2.3.4", created=now, destruction=now + 60, execution_duration=10,
                     params={"x": 5}, progress={"rows_done": 0})


def test_store_changes_are_never_lost_between_threads(tmp_path):
    store = JobStore(tmp_path / "jobs")
    store.create(_record(), b"ra,dec\n")

    def bump() -> None:
        for _ in range(25):
            store.update("job_00000001", lambda r: r.progress.__setitem__("rows_done", r.progress["rows_done"] + 1))

    threads = [threading.Thread(target=bump) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert store.get("job_00000001").progress["rows_done"] == 200
    # a second store over the same folder (another process) sees the same record
    assert JobStore(tmp_path / "jobs").get("job_00000001").progress["rows_done"] == 200


def test_store_delete_and_orphans(tmp_path):
    store = JobStore(tmp_path / "jobs")
    assert store.list() == [] and not store.has_jobs()
    store.create(_record(), b"ra,dec\n")
    assert [r.job_id for r in store.list()] == ["job_00000001"] and store.has_jobs()
    assert store.get("../../etc") is None and store.get("job_00000002") is None
    with pytest.raises(NotFoundError):
        store.update("job_00000002", lambda r: None)
    assert store.delete("job_00000001") and not store.delete("job_00000001")
    assert store.list() == [] and not (tmp_path / "jobs" / "job_00000001").exists()
    orphan = tmp_path / "jobs" / "job_00000003" / "out" / "T"  # a task writing after the job went
    orphan.mkdir(parents=True)
    assert store.remove_orphans(grace_s=3600) == 0 and orphan.exists()
    assert store.remove_orphans(grace_s=-1) == 1 and not orphan.parent.parent.exists()


def test_changes_wake_an_async_waiter_from_another_thread():
    changes = Changes()

    async def wait() -> bool:
        with changes.subscribe("j") as event:
            assert changes.waiting() == 1
            threading.Timer(0.01, changes.notify, args=("j",)).start()
            await asyncio.wait_for(event.wait(), timeout=30)
            return event.is_set()

    assert asyncio.run(wait()) and changes.waiting() == 0


# ------------------------------------------------------------------------------------------
# UWS documents
# ------------------------------------------------------------------------------------------


def test_job_document_reads_back_with_pyvo():
    from pyvo.io.uws import parse_job

    from app.jobs.uws import ResultRef, job_document

    record = _record()
    record.phase, record.run_id, record.error = Phase.ABORTED, "r<1>", "stopped & gone"
    record.params = {"x": 5, "y": 4, "units": "px", "product": "SPOC", "sectors": [38], "source": "POS"}
    record.progress = {"targets": 3, "targets_done": 2, "rows": 4, "rows_done": 3, "ok": 2, "errors": 1, "bytes": 9}
    doc = job_document(record, results=[ResultRef("manifest", "http://h/m.csv", "text/csv", 12)],
                       targets_href="http://h/t")
    job = parse_job(io.BytesIO(doc))
    assert (job.jobid, job.phase, job.runid, job.ownerid, job.version) == (
        "job_00000001", "ABORTED", "r<1>", "1.2.3.4", "1.1")
    assert job.starttime is None and job.endtime is None and job.quote is None
    assert job.executionduration.sec == 10 and abs(job.destruction.unix - record.destruction) < 0.01
    assert [(r.id_, r.href, r.size, r.mimetype) for r in job.results] == [("manifest", "http://h/m.csv", 12, "text/csv")]
    assert job.errorsummary.message.content == "stopped & gone" and job.errorsummary.has_detail
    assert {p.id_: p.content for p in job.parameters}["targets"] == "http://h/t"
    assert int(job.jobinfo["cutoutsDone"].value) == 3 and int(job.jobinfo["resultBytes"].value) == 9


def test_read_manifest_reads_what_write_manifest_wrote(tmp_path):
    from app.jobs.results import read_manifest
    from core.batch.manifest import write_manifest

    rows = [ManifestRow(0, "a", "1.0", "2.0", 38, 2, 2, "c.fits", "5x5 px", "ok", "a/x.fits", 12),
            ManifestRow(1, "b", "abc", "2", status="error", error="InvalidInputError (ra): no")]
    write_manifest(tmp_path / "m.csv", rows)
    assert read_manifest(tmp_path / "m.csv") == rows
    assert read_manifest(tmp_path / "missing.csv") == []
