"""The parameters of async jobs: a job's creation form, and the UWS query and form values.

A job is created from a form (``application/x-www-form-urlencoded`` or ``multipart/form-data``,
as DALI asks of POST endpoints). Parameter names are matched without regard to case (DALI 1.1),
values as written. The target table is either ``targets`` (a CSV upload with ``ra,dec`` and
optional ``name``, ``sector`` columns: the table ``cutout batch`` reads) or repeated
``POS=ra dec`` values; the cutout parameters are those of ``/astrocut`` (``x``, ``y``,
``units``, ``sector``, ``product``); ``RUNID`` is kept as the UWS runId; ``PHASE=RUN`` starts the
job at once. Unknown parameters, and a single-valued parameter given twice, are refused (DALI).

Every value is bounded here, before any per-row work: the table's rows are counted in one
streaming pass (the upload itself is bounded by ``max_upload_bytes``) and refused beyond
``jobs_max_targets``; rows with bad values are kept as they are, to become manifest error rows.
These functions do the parsing on the worker thread they are called on; nothing here touches
HTTP.
"""

from __future__ import annotations

import csv
import io
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from core.errors import InvalidInputError, TooLargeError
from core.product import Product

__all__ = [
    "CREATE_FIELDS",
    "JobRequest",
    "count_targets",
    "parse_create",
    "parse_int",
    "parse_phases",
    "parse_timestamp",
    "parse_wait",
    "pos_table",
    "table_bytes_limit",
]

#: parameters a job's creation form (and its parameter updates) may carry, by upper-cased name
CREATE_FIELDS = ("TARGETS", "POS", "X", "Y", "UNITS", "SECTOR", "PRODUCT", "TIME_MIN", "TIME_MAX", "FRAME_BIN",
                 "RUNID", "PHASE")
#: how errors name each parameter (as the documentation writes it)
_SHOWN = {"TARGETS": "targets", "POS": "POS", "X": "x", "Y": "y", "UNITS": "units", "SECTOR": "sector",
          "PRODUCT": "product", "TIME_MIN": "time_min", "TIME_MAX": "time_max", "FRAME_BIN": "frame_bin",
          "RUNID": "RUNID", "PHASE": "PHASE"}
#: parameters that may be given more than once
_MULTI = {"POS", "SECTOR"}
#: the API's size units -> :mod:`core.batch.cutouts`' names
_UNITS = {"px": "px", "pix": "px", "pixel": "px", "pixels": "px",
          "d": "deg", "deg": "deg", "degree": "deg", "degrees": "deg",
          "m": "arcmin", "arcmin": "arcmin", "s": "arcsec", "arcsec": "arcsec"}
_DEGREES = {"deg": 1.0, "arcmin": 1 / 60, "arcsec": 1 / 3600}
#: TESS pixel scale used to bound angular sizes at parse time (the window is checked exactly later)
_TESS_PIXEL_DEG = 21.0 / 3600.0
_MAX_SECTORS = 200
_MAX_RUNID = 200
_MAX_VALUE = 200  # characters of any single-line value (a number, a unit, a POS)
_INT = re.compile(r"^[+-]?[0-9]{1,12}$")
_SPLIT = re.compile(r"[\s,]+")


@dataclass
class JobRequest:
    """A parsed creation form (or parameter update).

    Attributes
    ----------
    params : dict
        Cutout parameters given (normalised): ``x``, ``y`` (numbers), ``units`` (``px``, ``deg``,
        ``arcmin``, ``arcsec``), ``sectors`` (list of int), ``product``.
    table : bytes or None
        The target table as a CSV (the upload as sent, or made from ``POS``), None if not given.
    targets : int
        Its data rows.
    source : str or None
        ``"targets"`` (an upload) or ``"POS"``.
    run_id : str or None
        ``RUNID``.
    run : bool
        ``PHASE=RUN`` was given.
    """

    params: dict[str, Any] = field(default_factory=dict)
    table: bytes | None = None
    targets: int = 0
    source: str | None = None
    upload_name: str | None = None
    run_id: str | None = None
    run: bool = False


def _one(name: str, values: Sequence[Any]) -> Any:
    if len(values) != 1:
        raise InvalidInputError(f"{name} is single-valued but was given {len(values)} times", field=name)
    return values[0]


def _text(name: str, value: Any, limit: int = _MAX_VALUE) -> str:
    if not isinstance(value, str):
        raise InvalidInputError(f"{name} must be a plain value, not a file", field=name)
    text = value.strip()
    if len(text) > limit:
        raise InvalidInputError(f"{name} is longer than {limit} characters", field=name)
    return text


def _positive(name: str, value: Any) -> float:
    text = _text(name, value)
    try:
        number = float(text)
    except ValueError:
        raise InvalidInputError(f"{name} {text[:40]!r} is not a number", field=name) from None
    if not (math.isfinite(number) and number > 0):
        raise InvalidInputError(f"{name} must be a positive number, got {text[:40]!r}", field=name)
    return number


def _sectors(values: Iterable[Any]) -> list[int]:
    out: list[int] = []
    for value in values:
        for part in _SPLIT.split(_text("sector", value, 2000).strip("[]() ")):
            part = part.strip("'\"")
            if not part:
                continue
            if not _INT.match(part) or int(part) < 1 or int(part) > 999_999:
                raise InvalidInputError(f"sector {part[:20]!r} is not a sector number", field="sector")
            if int(part) not in out:
                out.append(int(part))
            if len(out) > _MAX_SECTORS:
                raise InvalidInputError(f"at most {_MAX_SECTORS} sectors", field="sector")
    return out


def _size(given: dict[str, list[Any]], current: dict[str, Any], max_side: int) -> dict[str, Any]:
    """``x``, ``y`` and ``units``, over the current ones; bounded by ``max_side`` pixels."""
    units = current.get("units", "px")
    if "UNITS" in given:
        name = _text("units", _one("units", given["UNITS"])).lower()
        if name not in _UNITS:
            raise InvalidInputError(f"unknown unit {name[:20]!r}: use px, d (deg), m (arcmin) or s (arcsec)",
                                    field="units")
        units = _UNITS[name]
    x = _positive("x", given["X"][0]) if "X" in given else current.get("x", 5)
    if "Y" in given:
        y = _positive("y", given["Y"][0])
    else:  # a new x without y is a square, as /astrocut reads it
        y = x if "X" in given else current.get("y", x)
    for name, value in (("x", x), ("y", y)):
        if units == "px":
            if value != int(value):
                raise InvalidInputError(f"{name} in pixels must be a whole number, got {value:g}", field=name)
            pixels = value
        else:
            pixels = value * _DEGREES[units] / _TESS_PIXEL_DEG
        if pixels > max_side:
            raise TooLargeError(f"{name} of {value:g} {units} is more than the largest cutout side, "
                                f"{max_side} pixels (max_cutout_side)", field=name)
    if units == "px":
        x, y = int(x), int(y)
    return {"x": x, "y": y, "units": units}


def _time_window(given: dict[str, list[Any]], current: dict[str, Any]) -> dict[str, Any]:
    """``time_min``, ``time_max`` (BTJD) and ``frame_bin``, over the current ones, checked as
    /astrocut checks them (:class:`core.cubes.frames.TimeWindow`); empty values are unset."""
    from core.cubes.frames import TimeWindow

    out = {k: current[k] for k in ("time_min", "time_max", "frame_bin") if k in current}
    for key, name in (("TIME_MIN", "time_min"), ("TIME_MAX", "time_max")):
        if key in given:
            text = _text(name, given[key][0]).strip()
            try:
                out[name] = float(text) if text else None
            except ValueError:
                raise InvalidInputError(f"{name} {text[:40]!r} is not a number (BTJD)", field=name) from None
    if "FRAME_BIN" in given:
        text = _text("frame_bin", given["FRAME_BIN"][0]).strip()
        if text and not _INT.match(text):
            raise InvalidInputError(f"frame_bin {text[:40]!r} is not a whole number", field="frame_bin")
        out["frame_bin"] = int(text) if text else 1
    window = TimeWindow(out.get("time_min"), out.get("time_max"), out.get("frame_bin", 1))
    return {} if window.is_default else {"time_min": window.time_min, "time_max": window.time_max,
                                          "frame_bin": window.frame_bin}


def _grouped(items: Iterable[tuple[str, Any]]) -> dict[str, list[Any]]:
    given: dict[str, list[Any]] = {}
    for name, value in items:
        key = str(name).strip().upper()
        if key not in CREATE_FIELDS:
            raise InvalidInputError(f"unknown parameter {str(name)[:40]!r}; a job takes "
                                    f"{', '.join(_SHOWN.values())}", field=str(name)[:40])
        given.setdefault(key, []).append(value)
    for key, values in given.items():
        if key not in _MULTI:
            _one(_SHOWN[key], values)
    return given


def parse_create(items: Iterable[tuple[str, Any]], *, max_targets: int, max_side: int,
                 current: dict[str, Any] | None = None, allow_phase: bool = True) -> JobRequest:
    """Read a creation form (``items``: name, value pairs; an upload's value is its bytes wrapped
    in :class:`Upload`) over the ``current`` parameters of a job.

    Raises
    ------
    InvalidInputError
        An unknown or repeated parameter, a bad value, a target table that cannot be read
        (not UTF-8, no ``ra``/``dec`` column), both ``targets`` and ``POS``.
    TooLargeError
        More than ``max_targets`` targets, or a cutout side beyond ``max_side`` pixels.
    """
    given = _grouped(items)
    current = dict(current or {})
    request = JobRequest()
    request.params = {**_size(given, current, max_side),
                      "sectors": _sectors(given["SECTOR"]) if "SECTOR" in given else current.get("sectors", []),
                      "product": Product.parse(_text("product", given["PRODUCT"][0]), empty_is_default=True).value
                      if "PRODUCT" in given else current.get("product", Product.default().value),
                      **_time_window(given, current)}
    if "RUNID" in given:
        run_id = _text("RUNID", given["RUNID"][0], _MAX_RUNID)
        if not run_id.isprintable():
            raise InvalidInputError("RUNID must be printable text", field="RUNID")
        request.run_id = run_id or None
    if "PHASE" in given:
        phase = _text("PHASE", given["PHASE"][0])
        if phase != "RUN" or not allow_phase:
            raise InvalidInputError(f"PHASE={phase[:20]} is not allowed here (PHASE=RUN starts a new job)",
                                    field="PHASE")
        request.run = True
    if "TARGETS" in given and "POS" in given:
        raise InvalidInputError("give the targets as a table (targets) or as POS values, not both", field="POS")
    if "TARGETS" in given:
        upload = given["TARGETS"][0]
        data = upload.data if isinstance(upload, Upload) else _text("targets", upload, 1 << 30).encode()
        request.targets = count_targets(data, max_targets)
        request.table, request.source = data, "targets"
        request.upload_name = upload.filename if isinstance(upload, Upload) else None
    elif "POS" in given:
        request.table, request.targets = pos_table(given["POS"], max_targets)
        request.source = "POS"
    return request


@dataclass
class Upload:
    """An uploaded file's name and bytes (what the router hands :func:`parse_create`)."""

    filename: str | None
    data: bytes


def table_bytes_limit(max_targets: int) -> int:
    """The largest target table accepted: 1 KiB a row on average (at least 1 MiB)."""
    return max(1 << 20, max_targets * 1024)


def _table_lines(text: str) -> Iterable[str]:
    """The lines :func:`core.batch.targets.read_targets` reads: neither blank nor ``#`` comments."""
    return (line for line in io.StringIO(text, newline="") if line.strip() and not line.lstrip().startswith("#"))


def count_targets(data: bytes, max_targets: int) -> int:
    """Check a target table and count its rows in one pass, without keeping them.

    Raises
    ------
    InvalidInputError
        Not UTF-8, not CSV (a NUL byte, a field beyond the csv module's limit), no ``ra`` or no
        ``dec`` column (``field`` names it).
    TooLargeError
        More than ``max_targets`` rows (``jobs_max_targets``).
    """
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InvalidInputError(f"the target table is not UTF-8 text (byte {exc.start})", field="targets") from None
    if "\x00" in text:
        raise InvalidInputError("the target table holds NUL characters: it is not a text table", field="targets")
    reader = csv.reader(_table_lines(text))
    try:
        header = [h.strip().lower() for h in next(reader, [])]
        for column in ("ra", "dec"):
            if column not in header:
                raise InvalidInputError(f"the target table has no {column!r} column (columns: "
                                        f"{', '.join(h[:20] for h in header[:10]) or 'none'})", field=column)
        rows = 0
        for _ in reader:
            rows += 1
            if rows > max_targets:
                raise TooLargeError(f"the target table has more than {max_targets} rows, the most a job "
                                    f"takes (jobs_max_targets)", field="targets")
    except csv.Error as exc:
        raise InvalidInputError(f"the target table is not a CSV table: {exc}", field="targets") from None
    return rows


def pos_table(values: Sequence[Any], max_targets: int) -> tuple[bytes, int]:
    """A target table (CSV ``ra,dec``) from ``POS`` values ``"ra dec"`` (space or comma between).

    A value that is not two items is refused; items that are not numbers are kept as written,
    to become manifest error rows like a bad row of an uploaded table.
    """
    if len(values) > max_targets:
        raise TooLargeError(f"{len(values)} POS values: a job takes at most {max_targets} targets "
                            f"(jobs_max_targets)", field="POS")
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["ra", "dec"])
    for i, value in enumerate(values):
        parts = [p for p in _SPLIT.split(_text("POS", value)) if p]
        if len(parts) != 2:
            raise InvalidInputError(f"POS value {i + 1} ({str(value)[:40]!r}) is not 'ra dec' in degrees",
                                    field="POS")
        writer.writerow(parts)
    return out.getvalue().encode(), len(values)


# --------------------------------------------------------------------------------------------
# UWS values
# --------------------------------------------------------------------------------------------


def parse_int(name: str, value: str, *, low: int, high: int) -> int:
    """A whole number in [low, high] (ASCII digits); ``InvalidInputError`` naming ``name`` otherwise."""
    text = value.strip()
    if not _INT.match(text) or not low <= int(text) <= high:
        raise InvalidInputError(f"{name} must be a whole number from {low} to {high}, got {text[:20]!r}", field=name)
    return int(text)


def parse_wait(value: str | None, max_wait_s: float) -> float | None:
    """``WAIT``: seconds to block (a negative value asks for the longest the server allows),
    bounded by ``max_wait_s``; None when not given."""
    if value is None:
        return None
    seconds = parse_int("WAIT", value, low=-1_000_000_000, high=1_000_000_000)
    return max_wait_s if seconds < 0 else min(float(seconds), max_wait_s)


def parse_phases(values: Sequence[str], phases: Iterable[str]) -> set[str]:
    """``PHASE`` filter values: UWS phase names as written (upper case)."""
    allowed = set(phases)
    out = set()
    for value in values:
        text = value.strip()
        if text not in allowed:
            raise InvalidInputError(f"PHASE {text[:20]!r} is not a UWS phase ({', '.join(sorted(allowed))})",
                                    field="PHASE")
        out.add(text)
    return out


def parse_timestamp(name: str, value: str) -> float:
    """An ISO 8601 instant (``YYYY-MM-DD['T'hh:mm[:ss[.SSS]]][Z]``, UTC unless an offset is
    given), as Unix seconds."""
    text = value.strip()
    if not 4 <= len(text) <= 40:
        raise InvalidInputError(f"{name} must be an ISO 8601 time such as 2030-01-02T03:04:05Z", field=name)
    try:
        when = datetime.fromisoformat(text.replace("z", "Z"))
    except ValueError:
        raise InvalidInputError(f"{name} {text[:40]!r} is not an ISO 8601 time such as 2030-01-02T03:04:05Z",
                                field=name) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.timestamp()
