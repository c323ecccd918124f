"""Every benchmark under bench/ runs in its --quick mode (a smoke test: no timing is asserted).

The figures themselves come from the full runs (see README "Performance"); this only guards the
scripts against rotting: each must run to the end and print our figure beside astrocut's.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BENCHES = sorted(p.name for p in (ROOT / "bench").glob("bench_*.py"))


def test_every_benchmark_is_covered():
    assert {"bench_cube_cut.py", "bench_make_cube.py", "bench_fits_img.py", "bench_s3_cut.py",
            "bench_scale.py", "bench_http_load.py", "bench_archive.py", "bench_memory.py",
            "bench_timewindow.py", "bench_jobs.py"} <= set(BENCHES)


@pytest.mark.timeout(600)
@pytest.mark.parametrize("script", BENCHES)
def test_quick_mode_runs(script, tmp_path):
    env = {**os.environ, "TMPDIR": str(tmp_path)}
    out = subprocess.run([sys.executable, str(ROOT / "bench" / script), "--quick"], cwd=tmp_path,
                         capture_output=True, text=True, timeout=580, env=env, check=False)
    assert out.returncode == 0, f"{script} failed:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}"
    text = out.stdout.lower()
    assert "astrocut" in text, f"{script} printed no astrocut comparison:\n{out.stdout[-2000:]}"
