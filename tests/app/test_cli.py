"""The ``cutout`` command line: every sub-command runs for real, errors are one clear line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

from core.synthetic.ffis import DEMO_DEC, DEMO_RA

ROOT = Path(__file__).resolve().parents[2]


def run_cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "app", *args], cwd=cwd or ROOT, capture_output=True, check=False,
                          text=True, timeout=240)


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


def test_batch_takes_a_time_window_and_a_binning():
    from app.cli import build_parser

    args = build_parser().parse_args(["batch", "t.csv", "--size", "5", "--out", "o", "--time-min", "2333.25",
                                      "--time-max", "2334.5", "--frame-bin", "3"])
    assert (args.time_min, args.time_max, args.frame_bin) == (2333.25, 2334.5, 3)
    plain = build_parser().parse_args(["batch", "t.csv", "--size", "5", "--out", "o"])
    assert (plain.time_min, plain.time_max, plain.frame_bin) == (None, None, 1)
    with pytest.raises(SystemExit):
        build_parser().parse_args(["batch", "t.csv", "--size", "5", "--out", "o", "--frame-bin", "0"])
