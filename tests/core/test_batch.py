"""core.batch.cutouts (batch cutouts on Dask), core.batch.cube_builds (cubes on Dask) and app.cli_batch.

Runs on real Dask clusters on loopback: one module-wide LocalCluster of 2 worker processes
(passed as ``scheduler``), and one run making its own LocalCluster (``workers=2``). The cubes are
small synthetic ones (64x64 pixels, 10 frames); the catalog is a small adapter implementing the
protocol core.batch.cutouts plans with, over cube files (containment by ``Cube.contains_radec``).
"""

from __future__ import annotations

import argparse
import csv
import glob
import os
import shutil
from pathlib import Path

import pytest

from tests.catalogs import RecordingCatalog

pytestmark = pytest.mark.timeout(300)

SIZE = (5, 7)  # x then y


# --- fixtures ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cluster():
    """A LocalCluster of 2 worker processes (one thread each) for the module; yields its address."""
    from distributed import LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, memory_limit="1GiB",
                      host="127.0.0.1", dashboard_address=None,
                      scheduler_kwargs={"dashboard_address": "127.0.0.1:0"}) as lc:
        yield lc.scheduler_address


@pytest.fixture(scope="module")
def cubes(spoc_sector, spoc_sector_b, tmp_path_factory):
    """Two SPOC cubes around the same position: sectors 38 and 11 (camera 2, CCD 2)."""
    from core.building.factory import CubeFactory

    folder = tmp_path_factory.mktemp("batch_cubes")
    paths = []
    for sector in (spoc_sector, spoc_sector_b):
        path = folder / f"tess-s{sector.sector:04d}-2-2-cube.fits"
        CubeFactory().make_cube([str(f) for f in sector.ffi_files], str(path), verbose=False)
        paths.append(str(path))
    return paths


def _positions(cube_path):
    """Sky positions of pixels spread over a cube, one near its left edge (a padded cutout)."""
    from core.cubes.cache import open_cube

    wcs = open_cube(cube_path).wcs
    pixels = [(1.2, 30.0)] + [(10.0 + 7.3 * i, 12.0 + 5.1 * i) for i in range(6)] + [
        (50.0 - 4.1 * i, 14.0 + 4.3 * i) for i in range(10)]
    ra, dec = wcs.all_pix2world([p[0] for p in pixels], [p[1] for p in pixels], 0)
    return [(float(r), float(d)) for r, d in zip(ra, dec)]


@pytest.fixture(scope="module")
def targets_csv(cubes, tmp_path_factory):
    """20 rows: 17 on the cubes (one restricted to sector 38, some unnamed, one name with a
    space), one of them repeated, one off every cube, one bad row (RA not a number)."""
    path = tmp_path_factory.mktemp("batch_targets") / "targets.csv"
    rows = []
    for i, (ra, dec) in enumerate(_positions(cubes[0])):
        name = "" if i % 5 == 4 else (f"TIC {1000 + i}" if i == 3 else f"T{i:02d}")
        rows.append({"ra": repr(ra), "dec": repr(dec), "name": name, "sector": "38" if i == 6 else ""})
    rows.append(dict(rows[1]))  # the same target twice: one task, two rows
    rows.append({"ra": "10.0", "dec": "10.0", "name": "off", "sector": ""})
    rows.append({"ra": "abc", "dec": "-62.7", "name": "bad", "sector": ""})
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=["name", "ra", "dec", "sector"])
        writer.writeheader()
        writer.writerows(rows)
    assert len(rows) == 20
    return path


def _expected(targets_csv, catalog, out_dir):
    """What direct CutoutFactory().cube_cut calls write for every (target, cube) of the table,
    as {path where the batch puts it: bytes}. The table is read here with the csv module."""
    from core.batch.targets import target_dir_name
    from core.tpf.cut import CutoutFactory

    files = {}
    with open(targets_csv, newline="") as fh:
        rows = list(csv.DictReader(fh))
    for row in rows:
        try:
            ra, dec = float(row["ra"]), float(row["dec"])
        except ValueError:
            continue
        sectors = [int(row["sector"])] if row["sector"] else None
        folder = target_dir_name(row["name"], ra, dec)
        direct = out_dir.parent / (out_dir.name + "-direct") / folder
        for rec in catalog.containing(ra, dec, sectors=sectors):
            path = CutoutFactory().cube_cut(rec.uri, f"{ra} {dec}", list(SIZE), output_path=direct)
            files[out_dir / folder / os.path.basename(path)] = Path(path).read_bytes()
    return files


def _outputs(out_dir):
    return {Path(p): Path(p).read_bytes() for p in glob.glob(str(out_dir / "*" / "*.fits"))}


def _manifest(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


@pytest.fixture(scope="module")
def first_run(targets_csv, cubes, cluster, tmp_path_factory):
    """One complete batch on the module cluster: (out_dir, report, expected files)."""
    from core.batch.cutouts import run_batch

    out = tmp_path_factory.mktemp("batch_first") / "out"
    catalog = RecordingCatalog.from_files(cubes)
    report = run_batch(targets_csv, size=SIZE, out_dir=out, catalog=catalog, scheduler=cluster)
    return out, report, _expected(targets_csv, catalog, out)


# --- target table --------------------------------------------------------------------------


def test_read_targets_turns_bad_rows_into_errors(tmp_path):
    from core.batch.targets import read_targets
    from core.errors import InvalidInputError

    path = tmp_path / "t.csv"
    path.write_text("# a comment line\nRA , Dec,Name,sector\n10,20,a,\nx,20,b,\n10,95,c,\n10\n"
                    "10,20,d,1.5\n370,-20,e,38\n\n")
    rows = read_targets(path)
    assert [r.error.split(":")[0] for r in rows] == [
        "", "InvalidInputError (ra)", "InvalidInputError (dec)", "InvalidInputError (dec)",
        "InvalidInputError (sector)", ""]
    assert "no dec value" in rows[3].error
    assert (rows[5].ra, rows[5].dec, rows[5].sector) == (10.0, -20.0, 38)
    assert read_targets([(1, 2, "n", 3), {"RA": 5, "dec": 6}])[1].ra == 5.0

    (tmp_path / "nodec.csv").write_text("ra,declination\n1,2\n")
    with pytest.raises(InvalidInputError) as err:
        read_targets(tmp_path / "nodec.csv")
    assert err.value.field == "dec"


def test_target_dir_name_is_safe():
    from core.batch.targets import target_dir_name

    assert target_dir_name("TIC 123/../x", 1, 2) == "TIC_123_.._x"
    assert target_dir_name("..", 1.5, -2.25) == "1.500000_-2.250000"
    assert target_dir_name("", 217.0, -62.5) == "217.000000_-62.500000"


# --- batches -------------------------------------------------------------------------------


def test_batch_matches_direct_cube_cuts(first_run, targets_csv):
    out, report, expected = first_run
    # every TPF is byte-identical to a direct cube_cut call, and there is nothing else
    assert len(expected) >= 25
    assert _outputs(out) == expected
    ok = [r for r in report.rows if r.status == "ok"]
    # the repeated target's rows share its files and its tasks
    assert len({r.file for r in ok}) == report.tasks == len(expected) < len(ok)
    assert report.errors == 2 and report.skipped == 0
    by_name = {r.name: r for r in report.rows if r.status == "error"}
    assert "no hosted cube contains the position" in by_name["off"].error
    assert by_name["bad"].error.startswith("InvalidInputError (ra)")
    restricted = [r for r in report.rows if r.index == 6]
    assert [r.sector for r in restricted] == [38]
    # the manifest on disk is the report, one row per (target, cube), files relative to out
    rows = _manifest(report.manifest)
    assert [(int(r["index"]), r["status"], r["file"]) for r in rows] == [
        (r.index, r.status, r.file) for r in report.rows]
    for r in rows:
        if r["status"] == "ok":
            assert (out / r["file"]).stat().st_size == int(r["bytes"])
    assert {r["sector"] for r in rows if r["status"] == "ok"} == {"11", "38"}
    assert any(r["file"].startswith("TIC_1003/") for r in rows)


def test_rerun_redoes_only_damaged_outputs(first_run, targets_csv, cubes, cluster, tmp_path):
    from core.batch.cutouts import run_batch

    src, first, expected = first_run
    out = tmp_path / "out"
    shutil.copytree(src, out)
    expected = {out / p.relative_to(src): data for p, data in expected.items()}
    files = sorted(p for p in expected if p.parent.name != "T01")  # not the repeated target's
    for p in files[:3]:
        p.unlink()
    stale = files[0].with_name(f".{files[0].name}.killed.part")  # what a killed writer leaves
    stale.write_bytes(b"partial")
    for p in files[3:5]:  # truncated: the right name, the wrong size
        p.write_bytes(expected[p][: len(expected[p]) // 2])
    catalog = RecordingCatalog.from_files(cubes)
    report = run_batch(targets_csv, size=SIZE, out_dir=out, catalog=catalog, scheduler=cluster, progress=False)
    # the manifest's records spare the intact outputs any task; the five damaged ones are redone
    assert report.tasks == 5 and report.ok == 5
    assert report.skipped == first.ok - 5 and report.errors == 2
    assert _outputs(out) == expected and not stale.exists()

    # without a manifest every pair is a task, and each task finds its whole file by name and size
    os.unlink(report.manifest)
    files[7].unlink()
    report = run_batch(targets_csv, size=SIZE, out_dir=out, catalog=catalog, scheduler=cluster, progress=False)
    assert report.tasks == len(expected) and report.ok == 1 and report.skipped == first.ok - 1
    assert _outputs(out) == expected


class Stop(Exception):
    pass


def test_interrupted_run_resumes(first_run, targets_csv, cubes, cluster, tmp_path):
    from core.batch.cutouts import run_batch

    src, first, expected = first_run
    out = tmp_path / "out"
    expected = {out / p.relative_to(src): data for p, data in expected.items()}
    catalog = RecordingCatalog.from_files(cubes)

    def stop_after_two(done, total):
        if done == 2:
            raise Stop

    # its own LocalCluster (2 workers), shut down by the interruption
    with pytest.raises(Stop):
        run_batch(targets_csv, size=SIZE, out_dir=out, catalog=catalog, workers=2, progress=stop_after_two,
                  memory_limit="1GiB")
    rows = _manifest(out / "manifest.csv")
    done = [r for r in rows if r["status"] == "ok"]
    assert len(done) >= 2 and len(rows) == first.ok + 2
    assert sum("interrupted" in r["error"] for r in rows) == len(rows) - len(done) - 2
    for r in done:
        assert (out / r["file"]).read_bytes() == expected[out / r["file"]]
    # whatever is on disk under a final name is whole (atomic writes)
    present = _outputs(out)
    assert all(present[p] == expected[p] for p in present)
    missing = set(expected) - set(present)
    assert missing, "the interruption came after every task had run"

    report = run_batch(targets_csv, size=SIZE, out_dir=out, catalog=catalog, scheduler=cluster, progress=False)
    redone = {out / r.file for r in report.rows if r.status == "ok"}  # the repeated target: 2 rows, 1 file
    assert redone == missing
    assert report.ok + report.skipped == first.ok and report.errors == 2
    assert _outputs(out) == expected


def test_batch_over_s3_cubes(cubes, cluster, s3_server, tmp_path):
    from core.batch.cutouts import run_batch
    from core.catalog.snapshot import Catalog
    from core.tpf.cut import CutoutFactory

    uris = [s3_server.upload(p, "batch", f"tess/{os.path.basename(p)}") for p in cubes]
    positions = _positions(cubes[0])[1:4]
    report = run_batch([(ra, dec, f"S{i}") for i, (ra, dec) in enumerate(positions)], size=SIZE,
                       out_dir=tmp_path / "out", catalog=Catalog.from_files(uris, s3=s3_server.config), scheduler=cluster,
                       s3=s3_server.config, progress=False)
    assert report.ok >= 3 and report.errors == 0
    for row in report.rows:
        assert row.cube.startswith("s3://batch/tess/")
        ra, dec = float(row.ra), float(row.dec)
        direct = CutoutFactory().cube_cut(row.cube, f"{ra} {dec}", list(SIZE), output_path=tmp_path / "direct",
                                          s3=s3_server.config)
        assert (tmp_path / "out" / row.file).read_bytes() == Path(direct).read_bytes()


def test_batch_with_a_time_window(targets_csv, cubes, cluster, tmp_path):
    """A window and a binning apply to every cut (files equal direct windowed cube_cut calls);
    cubes whose frames miss the window are not cut; a rerun with another window cuts again."""
    from core.batch.cutouts import run_batch
    from core.cubes.cache import open_cube
    from core.tpf.cut import CutoutFactory

    t = open_cube(cubes[0]).time  # sector 38; sector 11's frames are two years earlier
    window = {"time_min": float(t[2]), "time_max": float(t[8]), "frame_bin": 2}
    targets = [(ra, dec, f"w{i}") for i, (ra, dec) in enumerate(_positions(cubes[0])[1:4])]
    catalog = RecordingCatalog.from_files(cubes)
    out = tmp_path / "out"
    report = run_batch(targets, size=SIZE, out_dir=out, catalog=catalog, scheduler=cluster, **window)
    assert report.errors == 0 and report.ok == 3
    for row in report.rows:
        assert row.sector == 38 and row.file.endswith(f"_{SIZE[0]}x{SIZE[1]}_f2-8_bin2_astrocut.fits")
        assert "BTJD" in row.size and "bin 2" in row.size
        direct = CutoutFactory().cube_cut(row.cube, f"{float(row.ra)} {float(row.dec)}", list(SIZE),
                                          output_path=tmp_path / "direct", **window)
        assert (out / row.file).read_bytes() == Path(direct).read_bytes()
    again = run_batch(targets, size=SIZE, out_dir=out, catalog=catalog, scheduler=cluster, **window)
    assert again.skipped == 3 and again.tasks == 0
    other = run_batch(targets, size=SIZE, out_dir=out, catalog=catalog, scheduler=cluster, frame_bin=5)
    assert other.ok == 6 and other.skipped == 0  # both sectors, whole, binned by 5
    missed = run_batch(targets[:1], size=SIZE, out_dir=tmp_path / "none", catalog=catalog, scheduler=cluster,
                       time_min=1.0, time_max=2.0)
    assert missed.errors == 1 and "time window" in missed.rows[0].error


def test_batch_rejects_bad_options(cubes, tmp_path):
    from core.batch.cutouts import run_batch
    from core.errors import InvalidInputError

    catalog = RecordingCatalog.from_files(cubes)
    for kwargs, fieldname in [({"size": 0}, "size"), ({"size": 2.5}, "size"), ({"size": (1, 2, 3)}, "size"),
                              ({"size": 5, "units": "mm"}, "units"), ({"size": 5, "workers": 0}, "workers"),
                              ({"size": 5, "memory_limit": "lots"}, "memory_limit"),
                              ({"size": 5, "product": "K2"}, "product"),
                              ({"size": 5, "frame_bin": 0}, "frame_bin"),
                              ({"size": 5, "time_min": 3.0, "time_max": 2.0}, "time_max"),
                              ({"size": 5, "time_max": float("nan")}, "time_max")]:
        with pytest.raises(InvalidInputError) as err:
            run_batch([(1, 2)], out_dir=tmp_path, catalog=catalog, **kwargs)
        assert err.value.field == fieldname
    assert catalog.calls == []


def test_dask_client_settings(monkeypatch):
    from core.batch import cluster as dask_cluster
    from core.errors import UnavailableError
    from tests.s3server import free_port

    with dask_cluster.dask_client(workers=2, memory_limit="1GiB") as client:
        workers = client.scheduler_info()["workers"].values()
        assert [(w["nthreads"], w["memory_limit"]) for w in workers] == [(1, 2**30)] * 2
        assert client.run_on_scheduler(lambda dask_scheduler: dask_scheduler.WORKER_SATURATION) == 16.0
    monkeypatch.setattr(dask_cluster, "CONNECT_TIMEOUT", "1s")
    with pytest.raises(UnavailableError) as err, dask_cluster.dask_client(f"tcp://127.0.0.1:{free_port()}"):
        pass
    assert err.value.field == "scheduler"


# --- cubes ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ffi_dir(tmp_path_factory):
    """FFIs of two CCDs of sector 38, camera 2: CCD 2 under SPOC names, CCD 1 renamed to names
    that say nothing (grouped by their headers), and a FITS-named file that is not FITS."""
    from core.synthetic.ffis import write_sector

    root = tmp_path_factory.mktemp("ffis")
    write_sector(root / "ccd2", sector=38, camera=2, ccd=2, frames=6, size=(64, 64), seed=3)
    s1 = write_sector(root / "ccd1", sector=38, camera=2, ccd=1, frames=6, size=(64, 64), seed=4)
    for i, f in enumerate(s1.ffi_files):
        f.rename(f.with_name(f"frame_{i:03d}.fits"))
    (root / "notes.fits").write_text("not a FITS file")
    return root


def _cube_bytes(path):
    """A cube's bytes with the two build-time stamps of its primary header masked: the DATE card
    (the build date) and the time astropy writes into the DATASUM card's comment when the
    factory refreshes it (to the second, so two builds a second apart differ there only)."""
    import re

    data = Path(path).read_bytes()
    end = data.index(b"END" + b" " * 77) + 80
    head = re.sub(rb"(DATE    = ')\d{4}-\d\d-\d\d'", rb"\1YYYY-MM-DD'", data[:end])
    head = re.sub(rb"updated \d{4}-\d\d-\d\dT\d\d:\d\d:\d\d", b"updated YYYY-MM-DDTHH:MM:SS", head)
    assert len(head) == end
    return head + data[end:]


def test_make_cubes_matches_cube_factory_and_resumes(ffi_dir, cluster, tmp_path):
    from core.batch.cube_builds import make_cubes
    from core.building.factory import CubeFactory

    out = tmp_path / "cubes"
    report = make_cubes(ffi_dir, out, scheduler=cluster, max_memory=0.5)
    assert [(b.sector, b.camera, b.ccd, b.status, b.nffis) for b in report.builds] == [
        (38, 2, 1, "ok", 6), (38, 2, 2, "ok", 6)]
    assert [os.path.basename(p) for p, _ in report.ignored] == ["notes.fits"]
    for b, sub in zip(report.builds, ("ccd1", "ccd2")):
        assert os.path.basename(b.cube) == f"tess-s0038-2-{b.ccd}-cube.fits"
        ref = tmp_path / "ref" / os.path.basename(b.cube)
        CubeFactory().make_cube(sorted(glob.glob(str(ffi_dir / sub / "*.fits"))), str(ref), verbose=False)
        assert _cube_bytes(b.cube) == _cube_bytes(ref)

    again = make_cubes(ffi_dir, out, scheduler=cluster, max_memory=0.5)
    assert [b.status for b in again.builds] == ["skipped", "skipped"] and again.tasks == 0

    # a truncated cube is not complete: only it is rebuilt
    cube1 = Path(report.builds[0].cube)
    whole = _cube_bytes(cube1)
    cube1.write_bytes(cube1.read_bytes()[:-2880])
    third = make_cubes(ffi_dir, out, scheduler=cluster, max_memory=0.5)
    assert [b.status for b in third.builds] == ["ok", "skipped"]
    assert _cube_bytes(cube1) == whole


def test_make_cubes_tica(cluster, tmp_path):
    from core.batch.cube_builds import make_cubes
    from core.building.factory import CubeFactory
    from core.synthetic.ffis import write_sector

    sector = write_sector(tmp_path / "ffis", product="TICA", sector=38, camera=2, ccd=2, frames=4,
                          size=(64, 64), seed=5)
    files = sorted(str(f) for f in sector.ffi_files)
    os.rename(files[0], str(tmp_path / "ffis" / "first.fits"))  # grouped by its headers
    files = sorted([*files[1:], str(tmp_path / "ffis" / "first.fits")])
    report = make_cubes(tmp_path / "ffis", tmp_path / "cubes", scheduler=cluster, product="TICA", max_memory=0.5)
    assert [(os.path.basename(b.cube), b.status, b.nffis) for b in report.builds] == [
        ("tica-s0038-2-2-cube.fits", "ok", 4)]
    CubeFactory(product="TICA").make_cube(files, str(tmp_path / "ref.fits"), verbose=False)
    assert _cube_bytes(report.builds[0].cube) == _cube_bytes(tmp_path / "ref.fits")

    spoc = make_cubes(tmp_path / "ffis", tmp_path / "cubes", scheduler=cluster, product="SPOC")
    assert spoc.builds == [] and spoc.tasks == 0
    assert [reason for _, reason in spoc.ignored] == ["a TICA FFI (SPOC cubes are being built)"] * 4


# --- the command line ----------------------------------------------------------------------


def _parser():
    from app.cli_batch import add_commands

    parser = argparse.ArgumentParser(prog="cutout")
    add_commands(parser.add_subparsers(dest="command", required=True))
    return parser


def test_cli_batch_and_make_cubes(targets_csv, cubes, cluster, ffi_dir, tmp_path, monkeypatch, capsys):
    import astropy.units as u

    from core.batch.targets import read_targets
    from core.tpf.cut import CutoutFactory

    out = tmp_path / "out"
    cube_dir = os.path.dirname(cubes[0])
    args = _parser().parse_args(["batch", str(targets_csv), "--size", "1", "--units", "arcmin", "--sectors", "38",
                                 "--out", str(out), "--scheduler", cluster, "--cube-dir", cube_dir])
    assert args.func(args) == 1  # the off-cube and the bad rows are errors
    assert "2 errors" in capsys.readouterr().out
    rows = _manifest(out / "manifest.csv")
    assert {r["sector"] for r in rows if r["status"] == "ok"} == {"38"}
    t = next(t for t in read_targets(targets_csv) if t.name == "T01")
    direct = CutoutFactory().cube_cut(cubes[0], f"{t.ra} {t.dec}", [1.0, 1.0] * u.arcmin, output_path=tmp_path)
    assert (out / "T01" / os.path.basename(direct)).read_bytes() == Path(direct).read_bytes()

    args = _parser().parse_args(["make-cubes", str(ffi_dir), "--out", str(tmp_path / "cubes"), "--scheduler",
                                 cluster, "--max-memory", "0.5"])
    assert args.func(args) == 0
    printed = capsys.readouterr().out
    assert "2 built, 0 already complete, 0 errors; 1 files ignored" in printed

    with pytest.raises(SystemExit):
        _parser().parse_args(["batch", str(targets_csv), "--size", "3", "--out", "x", "--sectors", "a,b"])


def test_plan_batch_hands_limits_to_every_task(cubes, tmp_path):
    """plan_batch (what the service's job runner uses) plans as run_batch does, and the limits it is
    given bound each task's window: a cutout beyond them is an error row naming the limit."""
    from core.batch.cutouts import cut_target, plan_batch, record_result
    from core.errors import InvalidInputError

    catalog = RecordingCatalog.from_files(cubes)
    ra, dec = _positions(cubes[0])[3]
    rows = [(ra, dec, "A"), ("abc", dec, "bad")]
    plan = plan_batch(rows, size=6, out_dir=tmp_path / "big", catalog=catalog, limits={"max_side": 5})
    assert plan.targets == 2 and plan.bad == 1 and len(plan.tasks) == 2 and len(plan.rows) == 3
    assert plan.manifest == str(tmp_path / "big" / "manifest.csv")
    result = cut_target(*plan.tasks[0].args)
    assert result["status"] == "error" and result["error"].startswith("TooLargeError")
    assert record_result(plan.tasks[0], result, plan.out_dir) == "error"
    assert plan.tasks[0].rows[0].error == result["error"]
    plan = plan_batch(rows, size=5, out_dir=tmp_path / "fits", catalog=catalog, limits={"max_side": 5})
    result = cut_target(*plan.tasks[0].args)
    assert result["status"] == "ok" and os.path.getsize(result["path"]) == result["bytes"]
    with pytest.raises(InvalidInputError) as err:
        plan_batch(rows, size=5, out_dir=tmp_path, catalog=catalog, limits={"max_sides": 5})
    assert err.value.field == "limits"
