"""The target table of a batch: untrusted rows read into :class:`Target` values.

:func:`read_targets` reads a CSV (columns ``ra,dec`` and optional ``name`` and ``sector``) or rows
given in Python; a bad row becomes a :class:`Target` whose ``error`` says why, never an exception.
:func:`formula_safe` and :func:`formula_text` write and read back CSV cells a spreadsheet must not
run as formulas; :func:`target_dir_name` is a target's output folder; :func:`describe_error` is the
one-line error text of manifests and reports.
"""

from __future__ import annotations

import csv
import math
import os
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from core.errors import CutoutError, InvalidInputError

__all__ = ["Target", "describe_error", "formula_safe", "formula_text", "read_targets", "target_dir_name"]

#: a CSV cell a spreadsheet would read as a formula
_FORMULA = re.compile(r"^[=+\-@\t\r]")
#: a plain number (safe as it is, so coordinates such as -62.68 keep their type)
_PLAIN_NUMBER = re.compile(r"^[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?$")
_UNSAFE = re.compile(r"[^A-Za-z0-9._+-]+")


@dataclass(frozen=True)
class Target:
    """One row of the target table.

    ``ra``/``dec`` are None when the row is bad; ``error`` then says why (a message naming the
    field) and ``raw_ra``/``raw_dec`` keep what the row held.
    """

    index: int
    name: str
    ra: float | None
    dec: float | None
    sector: int | None = None
    raw_ra: str = ""
    raw_dec: str = ""
    error: str = ""


def describe_error(exc: BaseException) -> str:
    """One line for a manifest or report: ``Type (field): message`` (the field when the
    :class:`~core.errors.CutoutError` names one)."""
    if isinstance(exc, CutoutError):
        where = f" ({exc.field})" if exc.field else ""
        return f"{type(exc).__name__}{where}: {exc.message}"
    return f"{type(exc).__name__}: {exc}"


def _text(value: Any) -> str:
    return "" if value is None else str(value).strip()


def formula_safe(value: Any) -> str:
    """A CSV cell's text as a spreadsheet may open it: prefixed with ``'`` when it would run as a
    formula (``=``, ``+``, ``-``, ``@``, a tab or a carriage return first; plain numbers such as
    -62.68 excepted) or already starts with ``'``, so that :func:`formula_text` gives it back."""
    text = "" if value is None else str(value)
    if text.startswith("'") or (_FORMULA.match(text) and not _PLAIN_NUMBER.match(text)):
        return "'" + text
    return text


def formula_text(cell: str) -> str:
    """The value :func:`formula_safe` wrote as ``cell``."""
    return cell.removeprefix("'")


def _ascii_number_text(text: str, fieldname: str) -> None:
    # float() also reads Arabic-Indic and other digits; the service's parameters take ASCII only
    if not text.isascii():
        raise InvalidInputError(f"{fieldname} {text[:40]!r} is not a number written with ASCII digits",
                                field=fieldname)


def _number(value: Any, fieldname: str) -> float:
    text = _text(value)
    if not text:
        raise InvalidInputError(f"the row has no {fieldname} value", field=fieldname)
    _ascii_number_text(text, fieldname)
    try:
        number = float(text)
    except ValueError:
        raise InvalidInputError(f"{fieldname} {text!r} is not a number", field=fieldname) from None
    if not math.isfinite(number):
        raise InvalidInputError(f"{fieldname} {text!r} is not a finite number", field=fieldname)
    return number


def _sector(value: Any) -> int | None:
    text = _text(value)
    if not text:
        return None
    _ascii_number_text(text, "sector")
    try:
        number = float(text)
    except ValueError:
        number = float("nan")
    if not (math.isfinite(number) and number == int(number) and number >= 1):
        raise InvalidInputError(f"sector {text!r} is not a sector number", field="sector")
    return int(number)


def _target(index: int, get: Callable[[str], Any]) -> Target:
    raw_ra, raw_dec = _text(get("ra")), _text(get("dec"))
    name = _text(get("name"))
    try:
        ra = _number(get("ra"), "ra")
        dec = _number(get("dec"), "dec")
        if not -90.0 <= dec <= 90.0:
            raise InvalidInputError(f"dec {dec} is outside [-90, 90] degrees", field="dec")
        sector = _sector(get("sector"))
    except InvalidInputError as exc:
        return Target(index, name, None, None, None, raw_ra, raw_dec, describe_error(exc))
    return Target(index, name, ra % 360.0, dec, sector, raw_ra, raw_dec)


def read_targets(source: str | os.PathLike | Iterable[Mapping[str, Any] | Sequence[Any]]) -> list[Target]:
    """Read a target table: a CSV file, or rows (mappings, or ``(ra, dec[, name[, sector]])``).

    Column names are matched without regard to case or surrounding spaces; other columns are
    ignored. A bad row (a value that is not a number, Dec outside [-90, 90], a missing value, a
    sector that is not a positive whole number) becomes a :class:`Target` with ``error`` set.

    Raises
    ------
    InvalidInputError
        The CSV has no ``ra`` or no ``dec`` column (``field`` names it), or ``source`` is
        neither a path nor rows.
    NotFoundError
        The CSV does not exist.
    """
    from core.errors import NotFoundError

    if isinstance(source, (str, os.PathLike)):
        path = os.fspath(source)
        if not os.path.isfile(path):
            raise NotFoundError(f"target table {path} does not exist", field="targets")
        with open(path, newline="", encoding="utf-8-sig") as fh:
            lines = (line for line in fh if line.strip() and not line.lstrip().startswith("#"))
            reader = csv.reader(lines)
            header = [h.strip().lower() for h in next(reader, [])]
            for column in ("ra", "dec"):
                if column not in header:
                    raise InvalidInputError(f"the target table {path} has no {column!r} column "
                                            f"(columns: {', '.join(header) or 'none'})", field=column)
            out = []
            while True:
                try:
                    cells = next(reader)
                except StopIteration:
                    return out
                except csv.Error as exc:  # one bad row (a cell over the csv module's limit): that row only
                    error = describe_error(InvalidInputError(f"row {reader.line_num}: {exc}", field="targets"))
                    out.append(Target(len(out), "", None, None, None, "", "", error))
                    continue
                values = dict(zip(header, cells))
                out.append(_target(len(out), values.get))
    if isinstance(source, (bytes, Mapping)) or not isinstance(source, Iterable):
        raise InvalidInputError("targets must be a CSV path or a list of rows", field="targets")
    out = []
    for i, row in enumerate(source):
        if isinstance(row, Mapping):
            values = {str(k).strip().lower(): v for k, v in row.items()}
        elif isinstance(row, Sequence) and not isinstance(row, (str, bytes)):
            values = dict(zip(("ra", "dec", "name", "sector"), row))
        else:
            values = {}
        out.append(_target(i, values.get))
    return out


def target_dir_name(name: str, ra: float, dec: float) -> str:
    """The output folder of a target: its name made safe for a file system, else ``{ra}_{dec}``
    (6 decimals, as the TPF names have them). Runs of other characters than letters, digits and
    ``._+-`` become ``_``; leading dots are dropped (no hidden folders, no ``..``)."""
    safe = _UNSAFE.sub("_", name.strip()).lstrip(".")[:120]
    return safe or f"{ra:.6f}_{dec:.6f}"
