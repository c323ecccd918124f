"""Reading the values of request parameters: each function takes what a client sent and returns a
typed, bounded value or raises ``ValueError`` (which the request models turn into a 400 naming the
field).

Every function here is linear in its input and refuses long inputs before building anything of
their size, so parsing on the event loop stays cheap whatever a client sends.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable
from typing import Any

from core.cutout_size import PIXEL_UNITS, UNIT_DEGREES

__all__ = [
    "MAX_EPHEMERIS_CHARS",
    "MAX_LIST_ITEMS",
    "MAX_SECTORS",
    "TESS_PIXEL_ARCSEC",
    "check_mask",
    "first_values",
    "not_boolean",
    "parse_angle",
    "parse_ephemeris",
    "parse_extension",
    "parse_pair",
    "parse_sectors",
    "parse_survey_names",
    "size_unit",
    "split_values",
]

#: TESS plate scale used for ``px`` radii, as MAST's TESScut documents it
TESS_PIXEL_ARCSEC = 21.0
#: most values one list parameter may carry (repeated, comma-separated or both)
MAX_LIST_ITEMS = 1000
#: most sectors one request may name (TESS has observed fewer than 120)
MAX_SECTORS = 500
#: longest ``ephemeris`` accepted: about 20,000 path points, within a form field's 1 MiB cap
MAX_EPHEMERIS_CHARS = 1_000_000
#: longest light-curve mask accepted, characters (a 1000 x 1000 mask with its commas)
MAX_MASK_CHARS = 1_001_000

#: a radius's unit names: TESScut's angular units (degrees by default) and TESS pixels of 21 arcsec
_RADIUS_DEGREES: dict[str, float] = {
    "": 1.0, **UNIT_DEGREES, **dict.fromkeys(PIXEL_UNITS, TESS_PIXEL_ARCSEC / 3600.0)
}
_NUMBER_UNIT = re.compile(r"^\s*([-+]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][-+]?[0-9]+)?)\s*([A-Za-z]*)\s*$")
#: a whole number written with ASCII digits (``str.isdigit`` and ``int`` also take Arabic-Indic and
#: other digits, and ``int`` fails on 4,300 digits or more)
_ASCII_INT = re.compile(r"^\+?0*([0-9]{1,6})$")
_SEPARATORS = re.compile(r"[,\s]+")
#: largest radius searched, degrees
MAX_RADIUS_DEG = 180.0


def _short(text: Any, limit: int = 20) -> str:
    return repr(str(text)[:limit])


def split_values(values: Any, *, limit: int = MAX_LIST_ITEMS) -> list[str]:
    """Flatten the repeated (``a&a``), literal-list (``[a, b]``) and comma-separated (``a,b``) forms
    of a list parameter into its values, refusing more than ``limit`` of them."""
    if values is None:
        return []
    if isinstance(values, (str, int, float)):
        values = [values]
    out: list[str] = []
    for value in values:
        text = str(value).strip().strip("[]()")
        for part in _SEPARATORS.split(text):
            part = part.strip().strip("'\"")
            if part:
                out.append(part)
                if len(out) > limit:
                    raise ValueError(f"at most {limit} values")
    return out


def parse_sectors(values: Any) -> tuple[int, ...]:
    """Sector numbers, in the order given, each once (ASCII digits, at least 1)."""
    seen: dict[int, None] = {}
    for part in split_values(values, limit=MAX_SECTORS):
        m = _ASCII_INT.match(part)
        if not m or int(m.group(1)) < 1:
            raise ValueError(f"sector {_short(part)} is not a positive whole number (ASCII digits)")
        seen[int(m.group(1))] = None
    return tuple(seen)


def parse_angle(text: Any) -> float:
    """A TESScut radius in degrees: a number with an optional unit suffix (d default, m, s,
    px = 21 arcsec), at most 180 degrees."""
    m = _NUMBER_UNIT.match(str(text)[:100])
    if not m:
        raise ValueError(f"cannot read {_short(text, 40)} as an angle such as '0.1d', '3m', '30s' or '2px'")
    scale = _RADIUS_DEGREES.get(m.group(2).lower())
    if scale is None:
        raise ValueError(f"unknown unit {_short(m.group(2))}: use d, m, s or px")
    value = float(m.group(1))
    if not math.isfinite(value):
        raise ValueError("must be a finite number")
    if value < 0:
        raise ValueError("must not be negative")
    degrees = value * scale
    if degrees > MAX_RADIUS_DEG:
        raise ValueError(f"at most {MAX_RADIUS_DEG:g} degrees")
    return degrees


def not_boolean(value: Any) -> Any:
    """``value``, refused when it is a JSON true/false: pydantic's lax mode would read it as the
    number 1/0."""
    if isinstance(value, bool):
        raise ValueError("must be a number, not a boolean")  # noqa: TRY004 - pydantic wants ValueError
    return value


def size_unit(text: Any) -> str:
    """A TESScut ``units`` value, lower-cased, if it is one (px, d/deg, m/arcmin, s/arcsec)."""
    name = str(text).strip().lower()
    if name not in PIXEL_UNITS and name not in UNIT_DEGREES:
        raise ValueError(f"unknown unit {_short(text)}: use px, d (deg), m (arcmin) or s (arcsec)")
    return name


def parse_pair(values: Any, name: str) -> tuple[float, float] | None:
    """Two finite numbers from ``[a, b]``, ``(a, b)``, ``a,b`` or ``a b``; None when empty."""
    parts = split_values(values, limit=2) if values not in (None, "") else []
    if not parts:
        return None
    try:
        numbers = [float(p) for p in parts]
    except ValueError:
        raise ValueError(f"{name} must be two numbers such as [0.5, 99.5]") from None
    if len(numbers) != 2 or not all(math.isfinite(v) for v in numbers):
        raise ValueError(f"{name} must be two finite numbers such as [0.5, 99.5]")
    return numbers[0], numbers[1]


def parse_extension(value: Any) -> None | str | tuple[int, ...]:
    """``fits_cut``'s ``extension``: None, ``"all"``, or HDU indices (at most 100)."""
    if value is None or not str(value).strip():
        return None
    if str(value).strip().lower() == "all":
        return "all"
    parts = split_values(value, limit=100)
    indices = []
    for part in parts:
        m = _ASCII_INT.match(part)
        if not m:
            raise ValueError("an HDU index, comma-separated indices (at most 100), or 'all' (ASCII digits)")
        indices.append(int(m.group(1)))
    return tuple(indices)


def parse_survey_names(value: Any, *, max_chars: int = 100) -> tuple[str, ...]:
    """Survey names from ``a``, ``a,b`` or ``[a, b]``."""
    names = []
    for part in split_values(value, limit=100):
        if len(part) > max_chars or not part.isprintable():
            raise ValueError(f"a survey name of at most {max_chars} printable characters")
        names.append(part)
    return tuple(names)


def _nesting(text: str) -> int:
    """Deepest bracket nesting of a JSON text (strings skipped), without parsing it."""
    depth = deepest = 0
    in_string = escaped = False
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif ch in "]}":
            depth -= 1
    return deepest


def parse_ephemeris(value: Any) -> dict[str, list[Any]] | None:
    """A moving target's explicit path: JSON ``{"time": [...], "ra": [...], "dec": [...]}``, lists of
    one length (at least 2), times numbers (TJD) or strings (ISO), positions numbers; None when empty."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, dict):
        data: Any = value
    else:
        text = str(value)
        if len(text) > MAX_EPHEMERIS_CHARS:
            raise ValueError(f"at most {MAX_EPHEMERIS_CHARS} characters")
        if _nesting(text) > 2:  # json.loads recurses per bracket: '[' * 3000 would be a RecursionError
            raise ValueError('must be a flat object {"time": [...], "ra": [...], "dec": [...]}')
        try:
            data = json.loads(text)
        except (json.JSONDecodeError, RecursionError) as exc:
            raise ValueError(f"not valid JSON ({getattr(exc, 'msg', 'too deeply nested')})") from None
    if not isinstance(data, dict) or not all(k in data for k in ("time", "ra", "dec")):
        raise ValueError("must be an object with lists 'time', 'ra' and 'dec'")
    lengths = {len(data[k]) if isinstance(data[k], list) else -1 for k in ("time", "ra", "dec")}
    if -1 in lengths or len(lengths) != 1 or lengths == {0} or lengths == {1}:
        raise ValueError("'time', 'ra' and 'dec' must be lists of the same length (at least 2)")
    for key in ("time", "ra", "dec"):
        for v in data[key]:
            if isinstance(v, bool) or not isinstance(v, (int, float, str)):
                raise ValueError(f"'{key}' holds {type(v).__name__} values: give numbers (or ISO times)")  # noqa: TRY004
            if key != "time" and isinstance(v, str):
                raise ValueError(f"'{key}' must hold numbers (degrees)")
    return {k: list(data[k]) for k in ("time", "ra", "dec")}


def check_mask(value: Any, *, max_side: int) -> str | None:
    """A light-curve aperture written as rows of 0/1 (``010,111,010``), bounded before anything is
    built from it: at most ``max_side`` rows of at most ``max_side`` characters (the engine's
    :func:`core.cubes.lightcurve.parse_mask` reads it later); None when empty."""
    if value is None:
        return None
    text = str(value).strip()
    if not text:
        return None
    if len(text) > MAX_MASK_CHARS:
        raise ValueError(f"at most {MAX_MASK_CHARS} characters")
    first = text.find(",")
    width = len(text) if first < 0 else first
    if text.count(",") + 1 > max_side or width > max_side:
        raise ValueError(f"at most {max_side} rows of at most {max_side} pixels")
    return text


def first_values(values: Iterable[Any], count: int = 3) -> str:
    """``a, b, c and N more``: a bounded listing of names for messages."""
    items = [str(v)[:40] for v in values]
    shown = ", ".join(items[:count])
    return shown + (f" and {len(items) - count} more" if len(items) > count else "")
