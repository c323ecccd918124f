"""What every planner needs from the service, gathered once per request (no HTTP in it)."""

from __future__ import annotations

import math
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.catalog.snapshot import Catalog
from core.cutout_size import CutoutSize, Limits
from core.errors import CorruptFileError, CutoutError, ForbiddenError, NotFoundError

__all__ = ["TESS_MAX_PIXEL_DEG", "Context", "api_fields", "check_pixel_size", "safe_name"]

#: no TESS pixel is wider than this (21 arcsec nominal): an angular side is at least this many
#: pixels on any cube, which is enough to refuse an over-long side before a cube is opened
TESS_MAX_PIXEL_DEG = 22.0 / 3600.0


@dataclass
class Context:
    """A catalog snapshot, the limits and the sizes a planner works with.

    Attributes
    ----------
    catalog : the catalog snapshot of this request (later swaps do not affect it).
    limits : the window limits (side, pixels x frames).
    inline_tpf_bytes : TPFs up to this size are built in memory; bigger ones are streamed.
    band_bytes : piece size of a streamed TPF.
    work_dir : where temporary files (pixel spools, uploads) go.
    read_threads : threads reading one local cutout's rows.
    max_input_files : inputs allowed per image request.
    image_roots, image_s3_prefixes : where image inputs may come from.
    s3 : the engine's S3 configuration (or None).
    resolver : moving targets' ``obj_id -> ephemeris`` resolver.
    surveys : the Zcut/Hapcut survey registry and its index (:class:`app.surveys.SurveyService`).
    """

    catalog: Catalog
    limits: Limits
    inline_tpf_bytes: int
    band_bytes: int
    work_dir: Path
    read_threads: int = 4
    max_input_files: int = 16
    image_roots: list[str] = field(default_factory=list)
    image_s3_prefixes: list[str] = field(default_factory=list)
    s3: Any = None
    resolver: Any = None
    surveys: Any = None


def check_pixel_size(ctx: Context, size: CutoutSize, *, pixel_deg: float | None = TESS_MAX_PIXEL_DEG,
                     field_x: str = "x", field_y: str = "y") -> None:
    """Refuse (413, naming ``field_x``/``field_y``) a size that is over ``max_cutout_side`` on any
    image, before anything is read or allocated: a side in pixels as given; a side in degrees as
    the fewest pixels it can be (over pixels of ``pixel_deg``; None when images may have any pixel
    scale: then angular sides are checked per image, against the window as cut)."""
    side = ctx.limits.max_side
    if side is None:
        return
    fewest = []
    for value, unit in zip((size.x, size.y), size.units):
        if unit == "pix":
            fewest.append(round(value))
        elif pixel_deg is not None:
            fewest.append(math.floor(value / pixel_deg))
        else:
            fewest.append(0)
    ctx.limits.check(max(1, fewest[0]), max(1, fewest[1]), 1, field_x=field_x, field_y=field_y)


@contextmanager
def api_fields(names: Mapping[str, str | None], shown: Mapping[str, str] | None = None, *,
               files_field: str | None = None) -> Iterator[None]:
    """Engine errors raised inside the block name the API's parameters (``names`` maps the
    engine's ``field`` to the API's) and show the user's names for server paths (``shown`` maps a
    path to what the user called it). A missing, forbidden or corrupt file whose error names no
    parameter is attributed to ``files_field`` (the parameter that named the files)."""
    try:
        yield
    except CutoutError as exc:
        if exc.field in names:
            exc.field = names[exc.field]
        elif exc.field is None and files_field and isinstance(exc, (NotFoundError, ForbiddenError, CorruptFileError)):
            exc.field = files_field
        if shown:
            message = exc.message
            for path, name in sorted(shown.items(), key=lambda kv: -len(kv[0])):
                message = message.replace(path, name)
            exc.message = message
            exc.args = (message,)
        raise


_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


def safe_name(text: str, *, limit: int = 100, default: str = "file") -> str:
    """``text`` in the alphabet of file names we write (letters, digits, ``._-``; anything else
    ``_``), with no leading dots, at most ``limit`` characters: safe in a Content-Disposition header
    and as a zip member name whatever separator an extractor honours."""
    name = _UNSAFE.sub("_", text).lstrip(".")[:limit]
    return name or default
