"""What a cube build is made of: the products' FFI layouts, the FFIs' planes and frames, the
table's columns, an existing cube being updated, and the layout of the cube file to write.

Also the helpers that put FFI header values into the table's columns.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from astropy.io import fits

from core.fitsio.cards import padded
from core.product import Product

__all__ = [
    "COMMENTARY",
    "GB",
    "PRODUCTS",
    "BuildJob",
    "Column",
    "Frame",
    "Layout",
    "OldCube",
    "Placement",
    "Plane",
    "ProductSpec",
    "header_value",
    "is_plain_fits",
    "store",
]

GB = 1e9  # astrocut counts max_memory in units of 1e9 bytes


@dataclass(frozen=True)
class ProductSpec:
    name: str
    img_ext: int  # extension holding the header that goes into the table
    plane_exts: tuple[int, ...]  # extensions of the planes (flux, error)
    time_keyword: str
    last_file_keywords: tuple[str, ...]
    image_header_keywords: tuple[str, ...]
    template_requirements: dict[str, Any]


PRODUCTS = {
    Product.SPOC: ProductSpec(Product.SPOC, 1, (1, 2), "TSTART", ("DATE-END", "TSTOP"), ("CAMERA", "CCD"),
                           {"WCSAXES": 2}),
    Product.TICA: ProductSpec(Product.TICA, 0, (0,), "STARTTJD", ("ENDTJD",), ("CAMNUM", "CCDNUM"), {"NAXIS": 2}),
}


@dataclass
class Plane:
    ext: int
    offset: int | None  # byte offset of the pixels for direct reads; None: read through astropy


@dataclass
class Frame:
    path: str
    name: str
    start: float
    planes: list[Plane]
    sector: int | None
    ids: tuple  # camera, ccd


@dataclass
class Column:
    name: str
    kind: str  # "S", "J" or "D"
    width: int = 0
    comment: str = ""
    values: np.ndarray | None = None

    @property
    def dtype(self) -> np.dtype:
        if self.kind == "S":
            return np.dtype(f"S{max(self.width, 1)}")
        return np.dtype(np.int32 if self.kind == "J" else np.float64)

    @property
    def fits_format(self) -> str:
        return {"J": "J", "D": "D"}.get(self.kind, f"A{self.width}")

    def null(self) -> Any:
        return {"S": "", "J": 0, "D": np.nan}[self.kind]


@dataclass
class OldCube:
    """An existing cube being updated: what is kept of it."""

    path: str
    primary: fits.Header
    shape: tuple[int, int, int, int]  # ny, nx, frames, planes
    offset: int  # byte offset of its image data
    table_header: fits.Header
    columns: list[tuple[str, str]]  # (name, TFORM)
    values: dict[str, np.ndarray]
    names: list[str]  # FFI_FILE of each frame


@dataclass
class Placement:
    """Where each frame goes in the output's time order: the new FFIs' positions and, when
    updating, the old cube's frames' positions."""

    new_pos: np.ndarray
    old_pos: np.ndarray | None = None


@dataclass
class BuildJob:
    """One cube to write: its layout, the frames and where they go, and how."""

    layout: Layout
    placement: Placement
    frames: list[Frame]
    old: OldCube | None
    max_memory: float
    verbose: bool
    progress: Callable[[int, int], Any] | None
    label: str


@dataclass
class Layout:
    ny: int
    nx: int
    nframes: int
    nplanes: int
    primary: bytes = b""
    image_header: bytes = b""
    table: bytes = b""
    data_offset: int = 0
    stats: dict = field(default_factory=dict)

    @property
    def row_bytes(self) -> int:
        return self.nx * self.nframes * self.nplanes * 4

    @property
    def data_bytes(self) -> int:
        return self.ny * self.row_bytes

    @property
    def padded_data_bytes(self) -> int:
        return padded(self.data_bytes)

    @property
    def total_bytes(self) -> int:
        return self.data_offset + self.padded_data_bytes + len(self.table)


#: FITS commentary keywords: astropy answers them with all their cards, not one value
COMMENTARY = frozenset({"COMMENT", "HISTORY", ""})


def header_value(header: fits.Header, kwd: str, null: Any) -> Any:
    val = header.get(kwd, null)
    if kwd.strip().upper() in COMMENTARY and val is not null:
        val = str(val)
    return val


def store(col: Column, i: int, val: Any) -> None:
    """Store a header value in a column with numpy's casting, as astrocut's table does."""
    try:
        if col.kind == "S" and isinstance(val, str):
            val = val.encode("ascii", "replace")
        col.values[i] = val
    except (TypeError, ValueError, OverflowError):
        col.values[i] = col.null() if col.kind != "S" else b""


def is_plain_fits(path: str) -> bool:
    with open(path, "rb") as f:
        return f.read(9) == b"SIMPLE  ="
