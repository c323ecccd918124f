"""What routing and cutting need to know about a cube, read without its table or its pixels.

A TESS cube (astrocut/MAST layout) is HDU0 a primary header, HDU1 float32 big-endian data of numpy
shape (rows, cols, frames, planes), HDU2 a binary table with one row per FFI (~140 columns). To
route a request and cut a TPF one needs the headers, the shape, where the data and the table
start, where the few per-frame columns sit in a table row, the reference WCS (one table row) and
the time span (the first and the last rows). :func:`read_cube_info` reads exactly that, a few small
range reads (on S3 a few GETs and ~0.2 MB, against the whole ~4 MB table of a 3,705-frame cube),
into a :class:`CubeInfo`, which is also the row the catalog index keeps per cube.
"""

from __future__ import annotations

import json
import math
import os
import re
import zlib
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from astropy.io import fits
from astropy.wcs import WCS, FITSFixedWarning

from core.errors import CorruptFileError
from core.fitsio.cards import BLOCK, padded, read_header
from core.product import Product
from core.quiet import quiet

__all__ = [
    "REQUIRED_COLUMNS", "CubeInfo", "angular_distance", "column_values", "columns_dtype", "read_cube_info",
    "reference_row", "row_header", "row_pairs", "wcs_pairs",
]

# Table columns a cube needs, per product (astrocut 1.4.0 for SPOC, 0.11.1 for TICA).
REQUIRED_COLUMNS = {product: product.required_columns for product in Product}
#: per-frame columns a TPF uses (beyond the required ones), when present
OPTIONAL_COLUMNS = ("CADENCE",)

# Full-frame SPOC/TICA FFIs are 2136 x 2078; the science pixels are columns 44..2091, rows 0..2047.
FULL_FFI = (2078, 2136)
SCIENCE = (0, 2048, 44, 2092)  # y0, y1, x0, x1

_NAME_RE = re.compile(r"s(\d{4})-(\d)-(\d)")
_TFORM_RE = re.compile(r"^\s*(\d*)([LXBIJKAEDCMPQ])(.*)$")
_WIDTHS = {"L": 1, "B": 1, "I": 2, "J": 4, "K": 8, "A": 1, "E": 4, "D": 8, "C": 8, "M": 16, "P": 8, "Q": 16}
_NUMPY = {"L": "S1", "B": "u1", "I": ">i2", "J": ">i4", "K": ">i8", "E": ">f4", "D": ">f8"}


@dataclass(frozen=True)
class CubeInfo:
    """One cube, as far as routing and cutting need it (one row of the catalog index).

    ``identity`` changes whenever the content may have changed: ``("file", realpath, size,
    mtime_ns, st_dev, st_ino)`` or ``("s3", bucket, key, etag)``. ``columns`` maps each per-frame
    column to ``(byte offset in a row, TFORM, TZERO, TSCAL)``. ``primary_header`` is the cube's
    primary header text; ``wcs_values`` the reference table row as JSON ``[[name, value], ...]``
    (NaN values left out; JSON keeps every float exactly, a header card would round it to 20
    characters). ``footprint`` holds the ICRS corners of the science pixels, ``center`` and
    ``reach_deg`` a circle around them (grown by a margin for SIP curvature) for prefiltering.
    ``footprint_tol_deg`` bounds how far the science pixels' true outline (edges curved by the SIP
    distortion, half a pixel beyond the corner pixels' centres) strays from the straight-edged
    polygon of the corners in the tangent plane about ``center``: positions farther inside the
    polygon than this are on the pixels, farther outside are not (negative: unknown).
    """

    uri: str
    identity: tuple
    size: int
    product: str
    sector: int
    camera: int
    ccd: int
    ny: int
    nx: int
    nframes: int
    nplanes: int
    data_offset: int
    table_data_offset: int
    table_row_bytes: int
    columns: dict[str, tuple[int, str, float, float]]
    primary_header: str
    wcs_values: str
    wcs_row: int
    tstart: float
    tstop: float
    footprint: tuple[tuple[float, float], ...]
    center: tuple[float, float]
    reach_deg: float
    footprint_tol_deg: float = -1.0

    @property
    def table_bytes(self) -> int:
        """Bytes of the table's rows."""
        return self.table_row_bytes * self.nframes

    def wcs_header(self) -> fits.Header:
        """The reference table row as a header (a new object on every call)."""
        return row_header(json.loads(self.wcs_values))

    def celestial_header(self) -> fits.Header:
        """Only the reference row's primary WCS keywords, as a header: the same WCS as
        :meth:`wcs_header` gives, built in half the time (astropy parses every card it is given)."""
        return row_header(wcs_pairs(json.loads(self.wcs_values)))

    @property
    def science_box(self) -> tuple[int, int, int, int]:
        """(y0, y1, x0, x1) of the science pixels: TESS's for full-size FFIs, else the whole array."""
        return SCIENCE if (self.ny, self.nx) == FULL_FFI else (0, self.ny, 0, self.nx)

    # -- persistence (the catalog index) -------------------------------------------------------
    def to_record(self) -> dict[str, Any]:
        """A flat dict of JSON-able values and compressed header texts, for the index."""
        rec = asdict(self)
        rec["identity"] = json.dumps(list(self.identity))
        rec["columns"] = json.dumps(self.columns)
        rec["footprint"] = json.dumps(self.footprint)
        rec["center"] = json.dumps(self.center)
        rec["primary_header"] = zlib.compress(self.primary_header.encode("ascii"), 6)
        rec["wcs_values"] = zlib.compress(self.wcs_values.encode("ascii"), 6)
        return rec

    @classmethod
    def from_record(cls, rec: dict[str, Any]) -> CubeInfo:
        """The inverse of :meth:`to_record`."""
        values = dict(rec)
        values["identity"] = tuple(json.loads(values["identity"]))
        values["columns"] = {k: tuple(v) for k, v in json.loads(values["columns"]).items()}
        values["footprint"] = tuple(tuple(p) for p in json.loads(values["footprint"]))
        values["center"] = tuple(json.loads(values["center"]))
        for key in ("primary_header", "wcs_values"):
            blob = values[key]
            values[key] = zlib.decompress(blob).decode("ascii") if isinstance(blob, bytes) else blob
        return cls(**{f: values[f] for f in cls.__dataclass_fields__})


def _not_a_cube(uri: str, why: str) -> CorruptFileError:
    return CorruptFileError(f"{os.path.basename(str(uri))} is not a TESS cube ({why})", field="cube_file")


def _table_columns(h2: fits.Header, uri: str) -> dict[str, tuple[int, str, float, float]]:
    """Every column's (offset in a row, TFORM, TZERO, TSCAL) from the table header."""
    out: dict[str, tuple[int, str, float, float]] = {}
    offset = 0
    for i in range(1, int(h2.get("TFIELDS", 0)) + 1):
        form = str(h2.get(f"TFORM{i}", "")).strip().upper()
        m = _TFORM_RE.match(form)
        if not m:
            raise CorruptFileError(f"{uri}: cube table column {i} has format {form!r}", field="cube_file")
        repeat = int(m.group(1) or 1)
        code = m.group(2)
        width = -(-repeat // 8) if code == "X" else repeat * _WIDTHS[code]
        name = str(h2.get(f"TTYPE{i}", f"COL{i}")).strip()
        out.setdefault(name, (offset, form, float(h2.get(f"TZERO{i}", 0.0)), float(h2.get(f"TSCAL{i}", 1.0))))
        offset += width
    if offset != int(h2.get("NAXIS1", -1)):
        raise CorruptFileError(f"{uri}: cube table rows are {h2.get('NAXIS1')} bytes, columns add up to {offset}",
                               field="cube_file")
    return out


def columns_dtype(columns: dict[str, tuple[int, str, float, float]], names: list[str], row_bytes: int) -> np.dtype:
    """A numpy structured dtype reading ``names`` out of raw table rows (big-endian, by offset).

    Raises ValueError for a column format numpy cannot view directly (bit arrays, complex,
    variable-length arrays).
    """
    formats, offsets = [], []
    for name in names:
        offset, form, _zero, _scale = columns[name]
        m = _TFORM_RE.match(form)
        repeat, code = int(m.group(1) or 1), m.group(2)
        if code == "A":
            fmt = f"S{repeat}"
        elif code in _NUMPY and repeat == 1:
            fmt = _NUMPY[code]
        elif code in _NUMPY:
            fmt = (_NUMPY[code], (repeat,))
        else:
            raise ValueError(f"column {name} has format {form}")
        formats.append(fmt)
        offsets.append(offset)
    return np.dtype({"names": names, "formats": formats, "offsets": offsets, "itemsize": row_bytes})


def column_values(raw: Any, info_columns: dict, names: list[str], row_bytes: int, nrows: int) -> dict[str, np.ndarray]:
    """The values of ``names`` in ``nrows`` raw rows, as astropy would give them (strings stripped
    of trailing blanks, logicals as bools, TZERO/TSCAL applied)."""
    dtype = columns_dtype(info_columns, names, row_bytes)
    rows = np.ndarray((nrows,), dtype=dtype, buffer=raw)
    out = {}
    for name in names:
        _offset, form, zero, scale = info_columns[name]
        values = rows[name]
        code = _TFORM_RE.match(form).group(2)
        if code == "A":
            values = np.char.rstrip(values.astype(values.dtype))
        elif code == "L":
            values = values == b"T"
        elif scale != 1.0 or zero != 0.0:
            values = values.astype(np.float64) * scale + zero
        else:
            values = values.astype(values.dtype.newbyteorder("="))
        out[name] = values
    return out


def reference_row(ctype2: np.ndarray) -> int | None:
    """astrocut's reference row: the middle one, else the next with a TAN-SIP WCS (wrapping)."""
    n = len(ctype2)
    mid = n // 2
    for i in list(range(mid, n)) + list(range(mid)):
        value = ctype2[i]
        text = value.decode("ascii", "replace") if isinstance(value, bytes) else str(value)
        if text.strip() == "DEC--TAN-SIP":
            return i
    return None


def row_pairs(values: dict[str, Any], names: list[str]) -> list[list[Any]]:
    """One table row as ``[[name, value], ...]`` of plain Python values, NaN values left out."""
    pairs = []
    for name in names:
        value = values[name]
        if isinstance(value, (bytes, np.bytes_)):
            value = value.decode("ascii", "replace")
        elif isinstance(value, np.ndarray):
            value = value.tolist()
        elif isinstance(value, np.generic):
            value = value.item()
        if isinstance(value, float) and math.isnan(value):
            continue
        pairs.append([name, value])
    return pairs


#: the keywords of a primary (unlettered) celestial WCS with SIP distortion
_WCS_KEY = re.compile(r"^(WCSAXES|WCSNAME|RADESYS|RADECSYS|EQUINOX|EPOCH|LONPOLE|LATPOLE|"
                      r"(CTYPE|CRVAL|CRPIX|CDELT|CUNIT|CROTA|CNAME)\d|(CD|PC)\d_\d|P[VS]\d_\d+|(A|B|AP|BP)_\w+)$")


def wcs_pairs(pairs: list[list[Any]]) -> list[list[Any]]:
    """The ``[[name, value], ...]`` of a table row that a primary celestial WCS reads."""
    return [p for p in pairs if _WCS_KEY.match(p[0])]


def row_header(pairs: list[list[Any]]) -> fits.Header:
    """A table row's ``[[name, value], ...]`` as a header, as astrocut builds the cutout WCS from it."""
    header = fits.Header()
    for name, value in pairs:
        header[name] = value
    return header


#: bytes read from a cube's start at once: its primary and image headers (a few blocks) come in one read
_HEAD_BYTES = 64 * 1024


class _Spans:
    """A byte source that keeps what it read: a later read inside a span already read costs no
    request. :func:`read_cube_info` reads a cube's headers through it, so that on S3 the primary
    and image headers come in one GET, the table header in another, and the three rows together."""

    def __init__(self, source: Any) -> None:
        self.source, self.size, self.uri = source, source.size, source.uri
        self._spans: list[tuple[int, bytes]] = []

    def _cached(self, offset: int, length: int) -> bytes | None:
        for start, data in self._spans:
            if start <= offset and offset + length <= start + len(data):
                return data[offset - start : offset - start + length]
        return None

    def read_range(self, offset: int, length: int) -> bytes:
        found = self._cached(offset, length)
        if found is None:
            found = self.source.read_range(offset, length)
            self._spans.append((offset, found))
        return found

    def read_ranges(self, ranges: list[tuple[int, int]]) -> list[bytes]:
        """The ranges, those not read yet in one :meth:`ByteSource.read_ranges` call (concurrent on S3)."""
        out = [self._cached(o, n) for o, n in ranges]
        missing = [i for i, part in enumerate(out) if part is None]
        for i, part in zip(missing, self.source.read_ranges([ranges[i] for i in missing])):
            out[i] = part
        return out  # type: ignore[return-value]


def read_cube_info(source: Any, uri: str | None = None) -> CubeInfo:
    """Read a cube's :class:`CubeInfo` from a :class:`core.storage.sources.ByteSource`.

    Reads the three headers, the first, last and reference rows of the table (all of the table
    only in the rare case where the middle row has no TAN-SIP WCS, or a needed column has a format
    numpy cannot view): on S3 three round trips, the cube's first 64 KiB (its primary and image
    headers), the table's header, and the three rows together.

    Raises
    ------
    CorruptFileError
        Not a FITS file, not a cube (a plain image, wrong HDU layout), truncated, or its table lacks
        the columns a TPF needs.
    """
    uri = str(uri or source.uri)
    if source.size < BLOCK:
        raise _not_a_cube(uri, f"only {source.size} bytes")
    source = _Spans(source)
    primary, (nplanes, nframes, nx, ny), data_offset = _image_part(source, uri)
    table = _table_part(source, uri, data_offset + padded(ny * nx * nframes * nplanes * 4), nframes)
    columns, product = table.columns, table.product
    names = list(columns)
    first, last, middle, ref = _reference_rows(source, uri, table)
    start_col, stop_col = Product(product).time_columns
    pairs = row_pairs(middle, names)
    with quiet(FITSFixedWarning):
        wcs = WCS(row_header(wcs_pairs(pairs)), relax=True)
    sector, camera, ccd = _ids(primary, uri)
    footprint, center, reach, tol = _footprint(wcs, ny, nx)
    per_frame = [c for c in (*REQUIRED_COLUMNS[product], *OPTIONAL_COLUMNS) if c in columns]
    identity = tuple(source.source.identity)
    return CubeInfo(
        uri=uri, identity=identity, size=int(source.size), product=product,
        sector=sector, camera=camera, ccd=ccd, ny=ny, nx=nx, nframes=nframes, nplanes=nplanes,
        data_offset=data_offset, table_data_offset=table.data_offset, table_row_bytes=table.row_bytes,
        columns={c: columns[c] for c in per_frame},
        primary_header=primary.tostring(), wcs_values=json.dumps(pairs), wcs_row=int(ref),
        tstart=_float(first.get(start_col)), tstop=_float(last.get(stop_col)),
        footprint=footprint, center=center, reach_deg=reach, footprint_tol_deg=tol,
    )  # fmt: skip


def _image_part(source: _Spans, uri: str) -> tuple[fits.Header, tuple[int, int, int, int], int]:
    """The primary header, the image's (planes, frames, columns, rows) and where its data start."""
    if not source.read_range(0, min(_HEAD_BYTES, source.size)).startswith(b"SIMPLE  ="):
        raise _not_a_cube(uri, "not a FITS file")
    primary, plen = read_header(source, 0, uri)
    if int(primary.get("NAXIS", 0) or 0) > 0:
        raise _not_a_cube(uri, "its primary HDU holds an image: a plain FITS image, not a cube")
    try:
        h1, h1len = read_header(source, plen, uri)
    except CorruptFileError:
        raise _not_a_cube(uri, "no image extension after the primary header") from None
    if h1.get("XTENSION", "").strip() != "IMAGE" or h1.get("NAXIS") != 4 or h1.get("BITPIX") != -32:
        raise _not_a_cube(uri, f"HDU 1 must be a 4-D float32 image, got XTENSION={h1.get('XTENSION')!r} "
                               f"NAXIS={h1.get('NAXIS')} BITPIX={h1.get('BITPIX')}")
    nplanes, nframes, nx, ny = (int(h1[f"NAXIS{i}"]) for i in (1, 2, 3, 4))
    if nplanes not in (1, 2) or min(nframes, nx, ny) < 1:
        raise _not_a_cube(uri, f"dims {nplanes}x{nframes}x{nx}x{ny}")
    if h1.get("BSCALE", 1) != 1 or h1.get("BZERO", 0) != 0:
        raise CorruptFileError(f"{uri}: scaled cube data is not supported", field="cube_file")
    data_offset = plen + h1len
    if source.size < data_offset + padded(ny * nx * nframes * nplanes * 4) + BLOCK:
        raise CorruptFileError(f"{uri}: truncated cube ({source.size} bytes, the data alone end at "
                               f"{data_offset + ny * nx * nframes * nplanes * 4})", field="cube_file")
    return primary, (nplanes, nframes, nx, ny), data_offset


@dataclass(frozen=True)
class _Table:
    """A cube's per-frame table: its header, columns, product and where its rows are."""

    header: fits.Header
    columns: dict[str, Any]
    product: str
    data_offset: int
    row_bytes: int
    nrows: int


def _table_part(source: _Spans, uri: str, offset: int, nframes: int) -> _Table:
    """The table after the image data (at ``offset``): one row a frame, the columns a product needs."""
    try:
        h2, h2len = read_header(source, offset, uri)
    except CorruptFileError:
        raise _not_a_cube(uri, "no table after the image data") from None
    if h2.get("XTENSION", "").strip() != "BINTABLE":
        raise _not_a_cube(uri, "HDU 2 is not a binary table")
    row_bytes, nrows = int(h2["NAXIS1"]), int(h2["NAXIS2"])
    if nrows != nframes:
        raise CorruptFileError(f"{uri}: cube table has {nrows} rows for {nframes} frames", field="cube_file")
    if source.size < offset + h2len + row_bytes * nrows:
        raise CorruptFileError(f"{uri}: truncated cube (table incomplete)", field="cube_file")
    columns = _table_columns(h2, uri)
    product = next((p for p in Product if all(c in columns for c in p.required_columns)), None)
    if product is None:
        missing = [c for c in Product.default().required_columns if c not in columns]
        raise CorruptFileError(f"{uri}: cube table lacks columns {missing}", field="cube_file")
    if "CTYPE2" not in columns:
        raise CorruptFileError(f"{uri}: cube table has no WCS (CTYPE2) column", field="cube_file")
    return _Table(h2, columns, product.value, offset + h2len, row_bytes, nrows)


def _reference_rows(source: _Spans, uri: str, table: _Table) -> tuple[dict, dict, dict, int]:
    """The first, last and reference rows (read together) and the reference row's index."""
    names = list(table.columns)

    def rows(indices: list[int]) -> list[dict[str, Any]]:
        out = []
        raws = source.read_ranges([(table.data_offset + i * table.row_bytes, table.row_bytes) for i in indices])
        for raw in raws:
            try:
                values = column_values(raw, table.columns, names, table.row_bytes, 1)
                out.append({k: v[0] for k, v in values.items()})
            except ValueError:  # an exotic column format: let astropy parse the row
                out.append(_astropy_row(table.header, raw))
        return out

    mid = table.nrows // 2
    first, last, middle = rows([0, table.nrows - 1, mid])
    ref = mid if _ctype2(middle) == "DEC--TAN-SIP" else None
    if ref is None:  # rare: scan the whole CTYPE2 column, as astrocut's rule asks
        whole = source.read_range(table.data_offset, table.row_bytes * table.nrows)
        ctype2 = column_values(whole, table.columns, ["CTYPE2"], table.row_bytes, table.nrows)["CTYPE2"]
        ref = reference_row(ctype2)
        if ref is None:
            raise CorruptFileError(f"{uri}: no FFI row holds a TAN-SIP WCS", field="cube_file")
        (middle,) = rows([ref])
    return first, last, middle, int(ref)


def _ctype2(row: dict[str, Any]) -> str:
    value = row.get("CTYPE2", "")
    return (value.decode("ascii", "replace") if isinstance(value, bytes) else str(value)).strip()


def _float(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return float("nan")


def _astropy_row(h2: fits.Header, raw: bytes) -> dict[str, Any]:
    header = h2.copy()
    header["NAXIS2"] = 1
    header["PCOUNT"] = 0
    with quiet():
        hdu = fits.BinTableHDU.fromstring(header.tostring().encode("ascii") + raw + bytes(-len(raw) % BLOCK))
        rec = hdu.data[0]
        return {name: rec[name] for name in hdu.columns.names}


def _ids(primary: fits.Header, uri: str) -> tuple[int, int, int]:
    m = _NAME_RE.search(os.path.basename(uri))
    sector = primary.get("SECTOR")
    camera = primary.get("CAMERA", primary.get("CAMNUM"))
    ccd = primary.get("CCD", primary.get("CCDNUM"))
    if m:
        sector = sector if sector is not None else int(m.group(1))
        camera = camera if camera is not None else int(m.group(2))
        ccd = ccd if ccd is not None else int(m.group(3))

    def as_int(v: Any) -> int:
        try:
            return int(v)
        except (TypeError, ValueError):
            return 0

    return as_int(sector), as_int(camera), as_int(ccd)


#: points per edge at which the outline's departure from the corners' polygon is measured
_EDGE_SAMPLES = 257


def _footprint(wcs: WCS, ny: int, nx: int
               ) -> tuple[tuple[tuple[float, float], ...], tuple[float, float], float, float]:
    """Corners of the science pixels, the centre of the array, a reach around it (degrees) and the
    tolerance of the corners' polygon (see :class:`CubeInfo`); the tolerance is -1 when the
    outline could not be measured."""
    from core.sky_polygon import distance_to_polygon, plane_polygon

    y0, y1, x0, x1 = SCIENCE if (ny, nx) == FULL_FFI else (0, ny, 0, nx)
    xs = np.array([x0, x1 - 1, x1 - 1, x0], dtype=float)
    ys = np.array([y0, y0, y1 - 1, y1 - 1], dtype=float)
    t = np.linspace(0.0, 1.0, _EDGE_SAMPLES)
    ex = np.concatenate([xs[i] + (xs[(i + 1) % 4] - xs[i]) * t for i in range(4)])
    ey = np.concatenate([ys[i] + (ys[(i + 1) % 4] - ys[i]) * t for i in range(4)])
    with quiet():
        ra, dec = wcs.all_pix2world(xs, ys, 0)
        cra, cdec = (float(v) for v in wcs.all_pix2world((nx - 1) / 2.0, (ny - 1) / 2.0, 0))
        era, edec = wcs.all_pix2world(ex, ey, 0)
    corners = tuple((float(r) % 360.0, float(d)) for r, d in zip(ra, dec))
    reach = max(angular_distance(cra, cdec, r, d) for r, d in corners) + 0.5  # margin for SIP curvature
    center = (cra % 360.0, cdec)
    tol = -1.0
    polygon = plane_polygon(center, corners)
    outline = plane_polygon(center, list(zip(era.tolist(), edec.tolist())))
    if polygon is not None and outline is not None and np.isfinite(era).all() and np.isfinite(edec).all():
        sag = max(distance_to_polygon(p, polygon) for p in outline)
        # the widest pixel along the outline (plane units), for the half pixel beyond the centres
        steps = np.hypot(*np.diff(np.array(outline), axis=0).T)
        lengths = (x1 - 1 - x0, y1 - 1 - y0, x1 - 1 - x0, y1 - 1 - y0)
        pixel = max(float(steps[k * _EDGE_SAMPLES:(k + 1) * _EDGE_SAMPLES - 1].sum()) / max(1, lengths[k])
                    for k in range(4))
        # twice the sag seen at the samples (the curve between them strays less) and a pixel
        tol = math.degrees(2.0 * sag + pixel) + 1e-6
    return corners, center, reach, tol


def angular_distance(ra1: float, dec1: float, ra2: float, dec2: float) -> float:
    """Great-circle distance in degrees (haversine, plain floats: no astropy objects)."""
    r1, d1, r2, d2 = (math.radians(v) for v in (ra1, dec1, ra2, dec2))
    hav = math.sin((d2 - d1) / 2) ** 2 + math.cos(d1) * math.cos(d2) * math.sin((r2 - r1) / 2) ** 2
    return math.degrees(2 * math.asin(min(1.0, math.sqrt(hav))))
