"""The ``cutout`` command line: every sub-command runs for real, errors are one clear line."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

from core.synthetic.ffis import DEMO_DEC, DEMO_RA

ROOT = Path(__file__).resolve().parents[2]


def run_cli(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Run ``cutout`` with this environment's ``CUTOUT_*`` variables replaced by ``env``."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("CUTOUT_")}
    return subprocess.run([sys.executable, "-m", "app", *args], cwd=cwd or ROOT, capture_output=True, check=False,
                          text=True, timeout=240, env={**clean, **(env or {})})


def _closed_port_url() -> str:
    """An http:// endpoint on loopback that nothing listens on (connections are refused)."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"


def _manifest(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def test_help_lists_every_subcommand():
    out = run_cli("--help")
    assert out.returncode == 0
    for name in ("serve", "demo-data", "make-cube", "cube-cut", "fits-cut", "img-cut"):
        assert name in out.stdout
    for name in ("serve", "demo-data", "make-cube", "cube-cut", "fits-cut", "img-cut"):
        sub = run_cli(name, "--help")
        assert sub.returncode == 0, sub.stderr
        assert "usage: cutout" in sub.stdout


def test_demo_data_then_cube_cut_fits_cut_img_cut(tmp_path):
    out = run_cli("demo-data", "--out", str(tmp_path / "demo"), "--frames", "4", "--size", "48x40",
                  "--sector", "38", "-q")
    assert out.returncode == 0, out.stderr
    cube = Path(out.stdout.strip().splitlines()[-1])
    assert cube.name == "tess-s0038-2-2-cube.fits" and cube.exists()
    with fits.open(cube) as hdul:
        assert hdul[1].data.shape == (48, 40, 4, 2)  # ROWSxCOLS -> (rows, cols, frames, 2)

    cut = run_cli("cube-cut", str(cube), "--ra", str(DEMO_RA), "--dec", str(DEMO_DEC), "--size", "7", "5",
                  "--output-dir", str(tmp_path))
    assert cut.returncode == 0, cut.stderr
    tpf = Path(cut.stdout.strip().splitlines()[-1])
    assert tpf.name.startswith("tess-s0038-2-2_217.428938_-62.679492_7x5") and tpf.exists()
    with fits.open(tpf) as hdul:
        assert hdul["PIXELS"].data["FLUX"].shape == (4, 5, 7)

    ffi = min((tmp_path / "demo" / "s0038").glob("*ffic.fits"))
    fc = run_cli("fits-cut", str(ffi), "--ra", str(DEMO_RA), "--dec", str(DEMO_DEC), "--size", "9",
                 "--output-dir", str(tmp_path / "fc"))
    assert fc.returncode == 0, fc.stderr
    with fits.open(fc.stdout.strip().splitlines()[-1]) as hdul:
        assert hdul[1].data.shape == (9, 9)
        assert np.isfinite(hdul[1].data).all()

    ic = run_cli("img-cut", str(ffi), "--ra", str(DEMO_RA), "--dec", str(DEMO_DEC), "--size", "9",
                 "--format", "png", "--output-dir", str(tmp_path / "ic"))
    assert ic.returncode == 0, ic.stderr
    png = Path(ic.stdout.strip().splitlines()[-1])
    assert png.suffix == ".png" and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("args, fragment", [
    (["cube-cut", "/nonexistent/tess-s0001-1-1-cube.fits", "--ra", "10", "--dec", "10"], "cutout: error"),
    (["demo-data", "--out", "x", "--size", "3x3"], "at least 8x8"),
    (["cube-cut", "x.fits", "--ra", "abc", "--dec", "1"], "invalid float value"),
])
def test_errors_are_one_line_and_nonzero(args, fragment):
    out = run_cli(*args)
    assert out.returncode != 0
    assert fragment in out.stderr
    assert "Traceback" not in out.stderr


def test_batch_reads_the_services_settings_and_flags_override_them(service_data, tmp_path):
    cube_dir = service_data[0]["spoc38"].parent
    targets = tmp_path / "targets.csv"
    targets.write_text(f"name,ra,dec\nstar,{DEMO_RA},{DEMO_DEC}\n")
    # the README's row, with the cubes set as for cutout serve
    out = run_cli("batch", str(targets), "--size", "5", "--out", str(tmp_path / "a"), "--workers", "1",
                  env={"CUTOUT_CUBE_DIRS": json.dumps([str(cube_dir)])})
    assert out.returncode == 0, out.stderr
    rows = _manifest(tmp_path / "a" / "manifest.csv")
    assert sorted((r["sector"], r["status"]) for r in rows) == [("11", "ok"), ("38", "ok")]
    # --cube-dir overrides CUTOUT_CUBE_DIRS (here a folder without cubes)
    empty = tmp_path / "empty"
    empty.mkdir()
    out = run_cli("batch", str(targets), "--size", "5", "--out", str(tmp_path / "b"), "--workers", "1",
                  "--cube-dir", str(cube_dir), env={"CUTOUT_CUBE_DIRS": str(empty)})
    assert out.returncode == 0, out.stderr
    assert len(_manifest(tmp_path / "b" / "manifest.csv")) == 2


def test_batch_without_cubes_stops_at_once_with_one_error(tmp_path):
    targets = tmp_path / "targets.csv"
    targets.write_text("ra,dec\n" + "".join(f"{DEMO_RA + i},{DEMO_DEC}\n" for i in range(5)))
    out = run_cli("batch", str(targets), "--size", "5", "--out", str(tmp_path / "out"))
    assert out.returncode != 0
    errors = [line for line in out.stderr.splitlines() if "error" in line.lower()]
    assert len(errors) == 1 and "--cube-dir" in errors[0] and "CUTOUT_CUBE_DIRS" in errors[0], out.stderr
    assert not (tmp_path / "out" / "manifest.csv").exists()  # no error row per target
    empty = tmp_path / "empty"
    empty.mkdir()
    out = run_cli("batch", str(targets), "--size", "5", "--out", str(tmp_path / "out"), "--cube-dir", str(empty))
    assert out.returncode != 0 and f"no cubes found in {empty}" in out.stderr


def test_index_reads_the_services_settings(service_data, tmp_path):
    cube_dir = service_data[0]["spoc38"].parent
    index = tmp_path / "catalog.sqlite"
    out = run_cli("index", env={"CUTOUT_CUBE_DIRS": str(cube_dir), "CUTOUT_INDEX": str(index)})
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith(f"{index}: 3 cubes")
    assert "skipped" in out.stderr and "tess-s0099-1-1-cube.fits" in out.stderr  # not a cube: said, not fatal


def test_index_exits_nonzero_naming_a_location_it_cannot_read(service_data, tmp_path):
    cube_dir = service_data[0]["spoc38"].parent
    index = tmp_path / "catalog.sqlite"
    env = {"CUTOUT_S3_ENDPOINT_URL": _closed_port_url(), "CUTOUT_S3_ANONYMOUS": "true",
           "CUTOUT_S3_MAX_ATTEMPTS": "1", "CUTOUT_S3_CONNECT_TIMEOUT_S": "1"}
    out = run_cli("index", str(cube_dir), "s3://stpubdata/tess/public/mast/", "--index", str(index), env=env)
    assert out.returncode == 1
    assert "cannot read s3://stpubdata/tess/public/mast/" in out.stderr, out.stderr
    assert out.stdout.startswith(f"{index}: 3 cubes")  # the readable folder was indexed
    assert "Traceback" not in out.stderr


@pytest.mark.parametrize("command", ["fits-cut", "img-cut"])
def test_image_commands_off_the_image_print_lines_for_people(tmp_path, spoc_sector, command):
    out = run_cli(command, str(spoc_sector.ffi_files[0]), "--ra", "10", "--dec", "10", "--size", "5",
                  "--output-dir", str(tmp_path))
    assert out.returncode != 0
    lines = out.stderr.strip().splitlines()
    assert lines[-1] == "cutout: error (coordinates): Cutout contains no data! (Check image footprint.)"
    # what was skipped, one line each; no Python source lines ("warnings.warn(...)", file:line)
    assert lines[:-1] and all(line.startswith("cutout: warning: ") for line in lines[:-1]), lines
    assert "does not overlap" in lines[0] and ".py:" not in out.stderr


def test_serve_workers_log_their_start_up(service_data, tmp_path):
    """Each process of ``cutout serve --workers 2`` logs the service's start-up lines (its settings,
    and that CUTOUT_SURVEYS enables Zcut/Hapcut surveys)."""
    import httpx

    from tests.polling import wait_until

    port = int(_closed_port_url().rsplit(":", 1)[1])
    clean = {k: v for k, v in os.environ.items() if not k.startswith("CUTOUT_")}
    env = {**clean, "CUTOUT_WORK_DIR": str(tmp_path / "work"), "PYTHONUNBUFFERED": "1"}
    log = tmp_path / "serve.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "app", "serve", "--port", str(port), "--workers", "2",
                                 "--cube-dir", str(service_data[0]["spoc38"].parent)], cwd=ROOT, env=env,
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        def logged() -> bool:
            assert proc.poll() is None, log.read_text()[-2000:]
            return log.read_text().count("CUTOUT_SURVEYS") >= 2

        def serves() -> bool:
            assert proc.poll() is None, log.read_text()[-2000:]
            try:
                return httpx.get(f"http://127.0.0.1:{port}/health", timeout=10).status_code == 200
            except httpx.TransportError:
                return False

        wait_until(logged, timeout=90, interval=0.1, message=lambda: log.read_text()[-2000:])
        assert log.read_text().count("INFO app: settings:") == 2
        wait_until(serves, timeout=90, interval=0.1, message=lambda: log.read_text()[-2000:])  # and then serves
    finally:
        proc.terminate()
        proc.wait(30)

def test_batch_takes_a_time_window_and_a_binning():
    from app.cli import build_parser

    args = build_parser().parse_args(["batch", "t.csv", "--size", "5", "--out", "o", "--time-min", "2333.25",
                                      "--time-max", "2334.5", "--frame-bin", "3"])
    assert (args.time_min, args.time_max, args.frame_bin) == (2333.25, 2334.5, 3)
    plain = build_parser().parse_args(["batch", "t.csv", "--size", "5", "--out", "o"])
    assert (plain.time_min, plain.time_max, plain.frame_bin) == (None, None, 1)
    with pytest.raises(SystemExit):
        build_parser().parse_args(["batch", "t.csv", "--size", "5", "--out", "o", "--frame-bin", "0"])
