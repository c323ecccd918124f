"""A job's results: the served manifest, the list of result files, the zip, the size estimate.

The batch engine's manifest (``out/manifest.csv``, :data:`core.batch.manifest.MANIFEST_COLUMNS`)
is the job's record of what was cut. When the job is over, :func:`finalize` writes what clients
get: ``manifest.csv`` with the same columns, where the ``cube`` column names the cube file (not
the server's path), error messages have the server's folders scrubbed, and every cell that a
spreadsheet would run as a formula (starting with ``=``, ``+``, ``-``, ``@``, a tab or a carriage
return, and not simply a number such as ``-62.68``) is prefixed with ``'``; and ``results.json``,
the target pixel files a client may fetch (``{relative path: bytes}``): nothing else under the
job's folder is ever served.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from app.planning.answers import ZipAnswer, ZipMember
from core.batch.manifest import MANIFEST_COLUMNS, ManifestRow
from core.batch.targets import formula_safe, formula_text, read_targets
from core.storage.atomic import write_bytes_atomic

__all__ = ["estimate_results", "finalize", "manifest_bytes", "read_manifest", "result_files",
           "zip_answer"]

#: members up to this size are read whole into the zip; bigger ones are streamed in pieces
_WHOLE_MEMBER = 4 * 1024 * 1024
_PIECE = 1024 * 1024
#: what a TPF costs besides its pixels: headers, the aperture, per-frame scalars (bytes)
_TPF_FIXED = 40_000
_TPF_ROW_FIXED = 32
#: image columns of a TPF row (RAW_CNTS, FLUX, FLUX_ERR, FLUX_BKG, FLUX_BKG_ERR), 4 bytes a pixel
_TPF_PLANES = 5
_TESS_PIXEL_DEG = 21.0 / 3600.0
_DEGREES = {"deg": 1.0, "arcmin": 1 / 60, "arcsec": 1 / 3600}


def manifest_bytes(rows: Iterable[ManifestRow], scrub: Callable[[str], str] = lambda t: t) -> bytes:
    """The manifest a client gets (see the module docstring)."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=MANIFEST_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        cells = row.as_csv()
        cells["cube"] = os.path.basename(str(cells["cube"]).rstrip("/")) if cells["cube"] else ""
        cells["error"] = scrub(str(cells["error"]))
        writer.writerow({k: formula_safe(v) for k, v in cells.items()})
    return out.getvalue().encode()


def read_manifest(path: str | os.PathLike) -> list[ManifestRow]:
    """The rows of a batch manifest (``out/manifest.csv``), or none when it is missing or unreadable."""
    def number(text: str) -> int | None:
        return int(text) if text.strip().lstrip("-").isdigit() else None

    try:
        with open(path, newline="", encoding="utf-8") as fh:
            cells = ({k: formula_text(v or "") for k, v in row.items() if k is not None} for row in csv.DictReader(fh))
            return [ManifestRow(index=number(r["index"]) or 0, name=r["name"], ra=r["ra"], dec=r["dec"],
                                sector=number(r["sector"]), camera=number(r["camera"]), ccd=number(r["ccd"]),
                                cube=r["cube"], size=r["size"], status=r["status"], file=r["file"],
                                bytes=number(r["bytes"]), error=r["error"]) for r in cells]
    except (OSError, KeyError, csv.Error):
        return []


def result_files(rows: Iterable[ManifestRow]) -> dict[str, int]:
    """``{file relative to out/: bytes}`` of every finished row (a file shared by twin rows once)."""
    files: dict[str, int] = {}
    for row in rows:
        if row.status in ("ok", "skipped") and row.file and row.bytes is not None:
            files[row.file] = int(row.bytes)
    return files


def finalize(job_dir: str | os.PathLike, rows: list[ManifestRow], scrub: Callable[[str], str]) -> dict[str, int]:
    """Write the served ``manifest.csv`` and ``results.json`` of a finished job; return the files."""
    files = result_files(rows)
    write_bytes_atomic(manifest_bytes(rows, scrub), os.path.join(job_dir, "manifest.csv"), field="manifest")
    write_bytes_atomic(json.dumps(files).encode(), os.path.join(job_dir, "results.json"), field="results")
    return files


def _file_member(name: str, path: str, nbytes: int) -> ZipMember:
    if nbytes <= _WHOLE_MEMBER:
        def whole(cancel: threading.Event) -> bytes:
            with open(path, "rb") as fh:
                return fh.read()

        return ZipMember(name, whole, nbytes=nbytes, memory_bytes=nbytes)

    def pieces(cancel: threading.Event) -> Iterator[memoryview]:
        with open(path, "rb") as fh:
            while not cancel.is_set():
                piece = fh.read(_PIECE)
                if not piece:
                    return
                yield memoryview(piece)

    return ZipMember(name, pieces, nbytes=nbytes, streamed=True, memory_bytes=_PIECE)


def zip_answer(job_dir: str | os.PathLike, job_id: str, files: dict[str, int]) -> ZipAnswer:
    """The whole result as one zip: ``manifest.csv``, then every TPF under its folder."""
    folder = os.fspath(job_dir)
    manifest = os.path.join(folder, "manifest.csv")
    members = [_file_member("manifest.csv", manifest, os.path.getsize(manifest))]
    out = os.path.join(folder, "out")
    for rel, nbytes in sorted(files.items()):
        members.append(_file_member(rel, os.path.join(out, rel), nbytes))
    return ZipAnswer(filename=f"{job_id}.zip", members=members)


def _tpf_estimate(nframes: int, nx: int, ny: int) -> int:
    return _TPF_FIXED + 4 * nx * ny + nframes * (_TPF_ROW_FIXED + _TPF_PLANES * 4 * nx * ny)


def _pixels(value: float, units: str) -> int:
    if units == "px":
        return int(value)
    return math.ceil(value * _DEGREES[units] / _TESS_PIXEL_DEG) + 1


def estimate_results(table: bytes, params: dict[str, Any], catalog: Any) -> dict[str, int]:
    """How many (target, cube) pairs a job has and about how many bytes their TPFs take, from the
    catalog alone (no cube is opened): ``{"targets", "pairs", "bytes"}``. The table was counted
    (:func:`app.jobs.params.count_targets`) before this allocates its rows."""
    text = table.decode("utf-8-sig")
    lines = (line for line in io.StringIO(text, newline="")
             if line.strip() and not line.lstrip().startswith("#"))
    reader = csv.reader(lines)
    header = [h.strip().lower() for h in next(reader, [])]
    targets = read_targets(dict(zip(header, cells)) for cells in reader)
    nx, ny = _pixels(params["x"], params["units"]), _pixels(params["y"], params["units"])
    wanted = set(params.get("sectors") or ())
    pairs = nbytes = 0
    for t in targets:
        if t.error:
            continue
        sectors = wanted or None
        if t.sector is not None:
            sectors = {t.sector} & wanted if wanted else {t.sector}
            if not sectors:
                continue
        for rec in catalog.containing(t.ra, t.dec, product=params["product"],
                                      sectors=sorted(sectors) if sectors else None):
            pairs += 1
            nbytes += _tpf_estimate(int(rec.nframes), nx, ny)
    return {"targets": len(targets), "pairs": pairs, "bytes": nbytes}
