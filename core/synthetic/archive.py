"""Sparse real-size TESS cubes with real, distinct footprints: an archive for scale tests.

A MAST cube is 2078 x 2136 px x ~3,705 frames x 2 planes of float32 (130+ GB). Here a cube is a
*sparse* file in exactly the layout :mod:`core.cubes.cube` reads and :class:`core.building.factory.CubeFactory`
writes: HDU 0 the primary header as CubeFactory makes it from the first FFI, HDU 1 the 4-D float32
image header, the data region a hole (``ftruncate``: it costs no disk and reads as zeros), and HDU 2
the real binary table, one row per frame, with the ~140 columns of a SPOC (or TICA) FFI image
header. A 3,705-frame cube costs ~4 MB of disk (its headers and table).

Every row carries the real TAN-SIP WCS of the cube's sector/camera/CCD (:func:`archive_wcs`), so
each cube has its real footprint on the sky, and realistic per-frame values: TSTART/TSTOP spread
over the sector's dates (tesswcs's pointings) with the mid-sector downlink gap, BARYCORR toward the
CCD centre, DATE-OBS/DATE-END/MJD-OBS/MJD-END, a few DQUALITY flags and SPOC (or TICA) FFI names.

:func:`write_archive` writes thousands of them quickly: the table of a sector is built once as a
numpy record array and only the columns that differ per camera/CCD are patched; each cube is then
two ``os.pwrite`` calls and an ``ftruncate``.

Example
-------
>>> paths = write_archive(tmp, 64)                       # doctest: +SKIP
>>> paths[0].name                                        # doctest: +SKIP
'tess-s0001-1-1-cube.fits'
"""

from __future__ import annotations

import functools
import math
import os
import pathlib
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from astropy import units as u
from astropy.coordinates import get_body_barycentric
from astropy.io import fits
from astropy.time import Time
from astropy.wcs import WCS
from erfa import ErfaWarning

from core.errors import InvalidInputError
from core.fitsio.cards import BLOCK, padded
from core.product import Product
from core.quiet import quiet
from core.storage.atomic import atomic_output, pwrite_all
from core.synthetic import headers
from core.tess_wcs import FULL_SHAPE, archived_tables, full_frame_wcs, pointings

__all__ = [
    "CUBES_PER_SECTOR",
    "archive_wcs",
    "cube_name",
    "cube_size",
    "place_in_s3rver",
    "write_archive",
    "write_sparse_cube",
]

#: cubes of one sector: cameras 1-4 x CCDs 1-4
CUBES_PER_SECTOR = 16

_UNIX_EPOCH_BTJD = 2440587.5 - headers.BTJD0  # 1970-01-01T00:00 as BTJD (negative)
_MJD_UNIX_EPOCH = 40587.0
_MS_PER_DAY = 86_400_000
_C_AU_PER_DAY = 173.1446326846693
_ORBIT_GAP_DAYS = 1.0  # the mid-sector downlink
#: 0-based pixel of the science area's centre (as core.synthetic.ffis takes it for BARYCORR)
_CCD_CENTRE = (44 + 1024.0, 1024.0)
#: header keywords CubeFactory does not copy into the table header as comments
_TABLE_STRUCTURAL = ("XTENSION", "BITPIX", "NAXIS", "NAXIS1", "NAXIS2", "PCOUNT", "GCOUNT", "TFIELDS")
_CHECKSUM_ALPHABET = np.frombuffer(b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz", np.uint8)


def cube_name(sector: int, camera: int, ccd: int, product: str = Product.SPOC) -> str:
    """MAST's cube file name: ``tess-s0001-1-1-cube.fits`` (SPOC), ``tica-s0001-1-1-cube.fits`` (TICA)."""
    return Product.parse(product).cube_name(sector, camera, ccd)


def cube_size(frames: int, product: str = Product.SPOC) -> int:
    """Apparent size in bytes of a full-frame cube's data region (the hole) for ``frames`` frames."""
    planes = 1 if Product.parse(product) is Product.TICA else 2
    return padded(FULL_SHAPE[0] * FULL_SHAPE[1] * frames * planes * 4)


# ----------------------------------------------------------------------------------------------
# WCS


def _unit(ra: float, dec: float) -> np.ndarray:
    a, d = math.radians(ra), math.radians(dec)
    return np.array([math.cos(d) * math.cos(a), math.cos(d) * math.sin(a), math.sin(d)])


def _attitude(ra: float, dec: float, roll: float) -> np.ndarray:
    """Rotation from the spacecraft frame (x = boresight) to ICRS for a pointing (deg).

    Rz(ra) Ry(-dec) Rx(roll): with this convention, rotating sector A's archived CCD centres by
    ``att(B) att(A)^T`` lands within 0.012 deg (~2 px) of sector B's archived centres for every
    pair tried (1, 14, 42, 50, 60, 70, 90, 100, 108): the camera geometry is rigid.
    """
    a, d, r = (math.radians(v) for v in (ra, dec, roll))
    ca, sa, cd, sd, cr, sr = math.cos(a), math.sin(a), math.cos(d), math.sin(d), math.cos(r), math.sin(r)
    rz = np.array([[ca, -sa, 0.0], [sa, ca, 0.0], [0.0, 0.0, 1.0]])
    ry = np.array([[cd, 0.0, -sd], [0.0, 1.0, 0.0], [sd, 0.0, cd]])  # Ry(-dec)
    rx = np.array([[1.0, 0.0, 0.0], [0.0, cr, -sr], [0.0, sr, cr]])
    return rz @ ry @ rx


def _east_north(v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    ra = math.atan2(v[1], v[0])
    dec = math.asin(max(-1.0, min(1.0, v[2])))
    east = np.array([-math.sin(ra), math.cos(ra), 0.0])
    north = np.array([-math.sin(dec) * math.cos(ra), -math.sin(dec) * math.sin(ra), math.cos(dec)])
    return east, north


@functools.lru_cache(maxsize=64)
def _rotated_wcs(sector: int, camera: int, ccd: int, ref_sector: int | None = None) -> WCS | None:
    """An archived sector's WCS (default the latest) rigidly rotated onto ``sector``'s pointing.

    TAN is invariant under a rotation of the sphere: CRVAL rotates with the attitude change and the
    CD matrix turns by the change of the east/north basis at CRVAL; SIP (pixel space) is unchanged.
    None when the pointing or the archived tables are unknown.
    """
    wcs_data, _sip = archived_tables()
    target = pointings().get(sector)
    if not wcs_data or target is None:
        return None
    if ref_sector is None:
        ref_sector = max(map(int, wcs_data))
    ref = wcs_data[str(ref_sector)]
    m = _attitude(target["ra"], target["dec"], target["roll"]) @ _attitude(ref["ra"], ref["dec"], ref["roll"]).T
    w = full_frame_wcs(ref_sector, camera, ccd).deepcopy()
    v_ref = _unit(*w.wcs.crval)
    v_new = m @ v_ref
    e_ref, n_ref = _east_north(v_ref)
    e_new, n_new = _east_north(v_new)
    me, mn = m @ e_ref, m @ n_ref
    q = np.array([[me @ e_new, mn @ e_new], [me @ n_new, mn @ n_new]])
    cd = w.wcs.cd if w.wcs.has_cd() else w.wcs.get_pc() * w.wcs.cdelt[:, None]
    w.wcs.crval = [math.degrees(math.atan2(v_new[1], v_new[0])) % 360.0,
                   math.degrees(math.asin(max(-1.0, min(1.0, v_new[2]))))]
    w.wcs.cd = q @ cd
    w.wcs.set()
    return w


def archive_wcs(sector: int, camera: int, ccd: int) -> WCS:
    """The full-frame TAN-SIP WCS of a sector/camera/CCD used for the archive's cubes.

    Archived sectors: tesswcs's solution (:func:`core.tess_wcs.full_frame_wcs`). A sector with a
    pointing in tesswcs's ``pointings.csv`` but no archived solution (109-134 with tesswcs 1.x):
    the latest archived sector's solution rotated rigidly onto that pointing (what tesswcs's own
    prediction does, within ~2 px), so the 16 CCDs keep real, distinct footprints. Otherwise
    ``full_frame_wcs``'s fallback (all 16 CCDs then share one centre: a known limitation).
    """
    sector, camera, ccd = int(sector), int(camera), int(ccd)
    wcs_data, _sip = archived_tables()
    if str(sector) not in wcs_data:
        w = _rotated_wcs(sector, camera, ccd)
        if w is not None:
            return w.deepcopy()
    return full_frame_wcs(sector, camera, ccd)


@functools.lru_cache(maxsize=16)
def _wcs_cards(camera: int, ccd: int) -> fits.Header:
    """core.synthetic.headers's WCS cards (keywords, order, comments) for a camera/CCD, values to replace."""
    return headers.sector_wcs_header(1, camera, ccd)


def _wcs_header(w: WCS, camera: int, ccd: int) -> fits.Header:
    """The WCS cards of an FFI header (as :func:`core.synthetic.headers.sector_wcs_header`) for any WCS."""
    h = _wcs_cards(camera, ccd).copy()
    for name, value in _wcs_values(w).items():
        if name in h:
            h[name] = value
    return h


def _wcs_values(w: WCS) -> dict[str, float | int]:
    """The numeric WCS cards of one full-frame WCS (CRVAL, CRPIX, CD, SIP orders and terms)."""
    cd = w.wcs.cd if w.wcs.has_cd() else w.wcs.get_pc() * w.wcs.cdelt[:, None]
    out: dict[str, float | int] = {
        "CRVAL1": float(w.wcs.crval[0]), "CRVAL2": float(w.wcs.crval[1]),
        "CRPIX1": float(w.wcs.crpix[0]), "CRPIX2": float(w.wcs.crpix[1]),
    }
    for i in range(2):
        for j in range(2):
            out[f"CD{i + 1}_{j + 1}"] = float(cd[i, j])
    if w.sip is not None:
        for name, mat, order in (("A", w.sip.a, w.sip.a_order), ("B", w.sip.b, w.sip.b_order),
                                 ("AP", w.sip.ap, w.sip.ap_order), ("BP", w.sip.bp, w.sip.bp_order)):
            out[f"{name}_ORDER"] = int(order)
            for (i, j), v in np.ndenumerate(mat):
                out[f"{name}_{i}_{j}"] = float(v)
    return out


# ----------------------------------------------------------------------------------------------
# Times


def _unix_ms(btjd: np.ndarray) -> np.ndarray:
    """Integer milliseconds since 1970 of BTJD values already converted to the UTC scale."""
    return np.rint((np.asarray(btjd, dtype=float) - _UNIX_EPOCH_BTJD) * _MS_PER_DAY).astype(np.int64)


def _iso(ms: np.ndarray) -> np.ndarray:
    """'YYYY-MM-DDTHH:MM:SS.mmmZ' (SPOC's DATE-OBS form) of integer Unix milliseconds, as S24."""
    s = np.datetime_as_string(ms.astype("datetime64[ms]"), unit="ms")
    return np.char.add(s, "Z").astype("S24")


def _spoc_stamps(ms: np.ndarray) -> np.ndarray:
    """SPOC file-name time stamps ``YYYYDDDHHMMSS`` of integer Unix milliseconds (truncated to s)."""
    t = ms.astype("datetime64[ms]").astype("datetime64[s]")
    year = t.astype("datetime64[Y]")
    day = t.astype("datetime64[D]")
    doy = (day - year.astype("datetime64[D]")).astype(np.int64) + 1
    sod = (t - day).astype(np.int64)
    parts = (year.astype(np.int64) + 1970) * 10**9 + doy * 10**6 + (sod // 3600) * 10**4
    parts += (sod // 60 % 60) * 100 + sod % 60
    return parts.astype("S13")


@dataclass
class _Times:
    tstart: np.ndarray  # BTJD
    tstop: np.ndarray
    cadence_s: float
    utc_minus_tdb: float  # days, at mid-sector (constant over a sector since 2017: no leap second)
    earth_t: np.ndarray  # sample times (BTJD) of the Earth's barycentric position
    earth_xyz: np.ndarray  # (3, k) au


def _sector_times(sector: int, frames: int) -> _Times:
    """Frame times spread over the sector's dates, with the mid-sector downlink gap.

    The product's nominal cadence (30/10/3.33 min) when ``frames`` fit in the sector, else the
    cadence shrinks so that they do (e.g. 3,705 frames in a 30-min sector).
    """
    start = headers.sector_start_btjd(sector)
    p = pointings().get(sector)
    end = p["end"] - headers.BTJD0 - 0.25 if p is not None and p["end"] - headers.BTJD0 - 0.25 > start + 2 else start + 26.5
    gap = _ORBIT_GAP_DAYS if frames >= 2 else 0.0
    cad_d = min(headers.default_cadence_minutes(sector) / 1440.0, (end - start - gap) / frames)
    i = np.arange(frames)
    tstart = start + cad_d * i + np.where(i >= (frames + 1) // 2, gap, 0.0)
    tstop = tstart + cad_d
    mid = 0.5 * (float(tstart[0]) + float(tstop[-1]))
    with quiet(ErfaWarning):  # "dubious year" for future sectors
        t = Time(mid + headers.BTJD0, format="jd", scale="tdb")
        utc = t.utc
        offset = (utc.jd1 - t.jd1) + (utc.jd2 - t.jd2)
    # the Earth's barycentric position every 0.05 d, interpolated per frame (linear error < 0.1 ms)
    et = np.arange(float(tstart[0]) - 0.05, float(tstop[-1]) + 0.1, 0.05)
    xyz = get_body_barycentric("earth", Time(et + headers.BTJD0, format="jd", scale="tdb")).xyz.to_value(u.au)
    return _Times(tstart, tstop, cad_d * 86400.0, float(offset), et, np.asarray(xyz))


def _barycorr(times: _Times, ra: float, dec: float) -> np.ndarray:
    """Barycentric light-travel correction (days) toward (ra, dec) per frame (as core.synthetic.ffis)."""
    mid = 0.5 * (times.tstart + times.tstop)
    n = _unit(ra, dec)
    proj = n @ times.earth_xyz
    return np.interp(mid, times.earth_t, proj) / _C_AU_PER_DAY


# ----------------------------------------------------------------------------------------------
# The per-sector plan: columns, base table, names


@dataclass
class _Column:
    name: str
    kind: str  # "S", "J" or "D", CubeFactory's rule
    width: int
    comment: str

    @property
    def fits_format(self) -> str:
        return {"J": "J", "D": "D"}.get(self.kind, f"{self.width}A")

    @property
    def dtype(self) -> str:
        return {"J": ">i4", "D": ">f8"}.get(self.kind, f"S{max(self.width, 1)}")


def _columns(template: fits.Header, ffi_name: str) -> list[_Column]:
    """Table columns from a template FFI header by CubeFactory's rules, plus FFI_FILE."""
    cols, seen = [], set()
    for kwd, val, cmt in template.cards:
        if kwd in seen:
            continue
        seen.add(kwd)
        if isinstance(val, str):
            cols.append(_Column(kwd, "S", len(val), cmt))
        elif isinstance(val, (bool, int, np.integer)):
            cols.append(_Column(kwd, "J", 0, cmt))
        else:
            cols.append(_Column(kwd, "D", 0, cmt))
    cols.append(_Column("FFI_FILE", "S", len(ffi_name), ""))
    return cols


def _table_header(cols: list[_Column], frames: int) -> bytes:
    """The binary-table header as CubeFactory writes it (each card's comment as a keyword's value)."""
    return _table_header_cached(tuple((c.name, c.fits_format, c.comment) for c in cols), frames)


@functools.lru_cache(maxsize=8)
def _table_header_cached(cols: tuple[tuple[str, str, str], ...], frames: int) -> bytes:
    # one row, then NAXIS2: astropy would otherwise allocate and format the whole table (~0.25 s)
    hdu = fits.BinTableHDU.from_columns(fits.ColDefs([fits.Column(name=n, format=f) for n, f, _ in cols]),
                                        nrows=1)
    hdu.header["NAXIS2"] = frames
    with quiet():
        for name, _fmt, comment in cols:
            if name not in _TABLE_STRUCTURAL:
                hdu.header[name] = comment
    return hdu.header.tostring().encode("ascii")


def _set(rec: np.ndarray, col: _Column, value: object) -> None:
    """Assign a scalar or per-row value to a column (strings space-padded, as astropy writes)."""
    if col.kind == "S":
        if isinstance(value, np.ndarray) and value.dtype.kind == "S":
            vals = value
        elif isinstance(value, (str, bytes)):
            vals = np.array(value.encode("ascii") if isinstance(value, str) else value)
        else:
            vals = np.char.encode(np.asarray(value).astype(str), "ascii")
        rec[col.name] = np.char.ljust(vals.astype(f"S{max(col.width, 1)}"), col.width)
    elif isinstance(value, (bool, np.bool_)):
        rec[col.name] = int(value)
    else:
        rec[col.name] = value


@dataclass
class _Plan:
    """One sector's shared work: times, names, the base table and the headers' layout."""

    sector: int
    product: str
    frames: int
    times: _Times
    columns: list[_Column]
    base: np.ndarray  # record array, one row per frame, every per-sector value filled in
    table_header: bytes
    name_pos: tuple[int, int]  # byte offsets of the camera and CCD digits in FFI_FILE
    quality: np.ndarray
    cadence_no: np.ndarray
    orbit: np.ndarray
    seed: int

    @property
    def nplanes(self) -> int:
        return 1 if self.product == Product.TICA else 2


def _quality(rng: np.random.Generator, frames: int) -> np.ndarray:
    """Sparse DQUALITY flags: momentum dumps (32|1024) every ~3.1 d, ~0.5% scattered-light/other."""
    q = np.zeros(frames, dtype=np.int32)
    if frames >= 20:
        step = max(2, frames // 8)
        q[step // 2 :: step] |= 32 | 1024
        extra = rng.choice(frames, size=max(1, frames // 200), replace=False)
        q[extra] |= rng.choice(np.array([128, 2048, 4096], dtype=np.int32), size=extra.size)
    elif frames > 1:
        q[frames // 2] = 32
    return q


@functools.lru_cache(maxsize=4)
def _plan(sector: int, frames: int, product: str, seed: int = 0) -> _Plan:
    """Build (once per sector) everything that does not depend on the camera/CCD."""
    times = _sector_times(sector, frames)
    cad_s = times.cadence_s
    rng = np.random.default_rng([seed, sector, frames])
    quality = _quality(rng, frames)
    cadence_no = np.rint(times.tstart * 86400.0 / cad_s).astype(np.int64)
    orbit = np.where(np.arange(frames) >= (frames + 1) // 2, 2, 1)
    t0, t1 = float(times.tstart[0]), float(times.tstop[0])
    # The template FFI header (camera 1 / CCD 1), as the FFI file carries it: structural cards,
    # the product's cards, CHECKSUM/DATASUM (astropy's checksum=True).
    wcs_hdr = _wcs_header(archive_wcs(sector, 1, 1), 1, 1)
    if product == Product.SPOC:
        iso = "2000-01-01T00:00:00.000Z"
        body = headers.spoc_image_header("cal", 1, 1, cad_s, t0, t1, iso, iso, wcs_hdr, 0.0, 0)
        head = [("XTENSION", "IMAGE", "Image extension"), ("BITPIX", -32, "array data type"),
                ("NAXIS", 2, "number of array dimensions"), ("NAXIS1", FULL_SHAPE[1], ""),
                ("NAXIS2", FULL_SHAPE[0], ""), ("PCOUNT", 0, "number of parameters"),
                ("GCOUNT", 1, "number of groups")]
        name0 = f"tess{'0' * 13}-s{sector:04d}-1-1-{headers.spacecraft_config_id(sector):04d}-s_ffic.fits"
    else:
        body = headers.tica_header(sector, 1, 1, cad_s, t0, t1, int(cadence_no[0]), wcs_hdr, 0)
        body["ORBIT"] = 1
        head = [("SIMPLE", True, "conforms to FITS standard"), ("BITPIX", -32, "array data type"),
                ("NAXIS", 2, "number of array dimensions"), ("NAXIS1", FULL_SHAPE[1], ""),
                ("NAXIS2", FULL_SHAPE[0], "")]
        name0 = f"hlsp_tica_tess_ffi_s{sector:04d}-o1-{0:08d}-cam1-ccd1_tess_v01_img.fits"
    template = fits.Header(head)
    template.extend(body.cards)
    template["CHECKSUM"] = ("A" * 16, "HDU checksum")
    template["DATASUM"] = ("0" * 10, "data unit checksum")
    cols = _columns(template, name0)
    dtype = np.dtype([(c.name, c.dtype) for c in cols])
    base = np.zeros(frames, dtype=dtype)
    for c in cols:
        if c.name != "FFI_FILE":
            _set(base, c, template[c.name])
    # per-frame values that do not depend on the camera/CCD
    if product == Product.SPOC:
        per_frame = {"TSTART": times.tstart, "TSTOP": times.tstop, "DQUALITY": quality}
        stamps = _spoc_stamps(_unix_ms(times.tstart + times.utc_minus_tdb))
        names = np.char.add(np.char.add(b"tess", stamps), f"-s{sector:04d}-1-1-{headers.spacecraft_config_id(sector):04d}-s_ffic.fits".encode())
        pos = (24, 26)
    else:
        per_frame = {"STARTTJD": times.tstart, "ENDTJD": times.tstop,
                     "MIDTJD": 0.5 * (times.tstart + times.tstop), "QUAL_BIT": quality,
                     "CADENCE": cadence_no, "ORBIT": orbit}
        names = np.array([f"hlsp_tica_tess_ffi_s{sector:04d}-o{o}-{c:08d}-cam1-ccd1_tess_v01_img.fits"
                          for o, c in zip(orbit.tolist(), cadence_no.tolist())], dtype="S")
        pos = (40, 45)
    by_name = {c.name: c for c in cols}
    for name, values in per_frame.items():
        _set(base, by_name[name], values)
    width = by_name["FFI_FILE"].width
    if names.dtype.itemsize != width or {bytes(names[0])[p:p + 1] for p in pos} != {b"1"}:
        raise AssertionError(f"FFI names of sector {sector} do not have the expected layout: {names[0]!r}")
    base["FFI_FILE"] = names
    return _Plan(sector, product, frames, times, cols, base, _table_header(cols, frames), pos, quality,
                 cadence_no, orbit, seed)


# ----------------------------------------------------------------------------------------------
# One cube's bytes


def _primary_header(plan: _Plan, camera: int, ccd: int, w: WCS, date_obs: bytes,
                    date_end: bytes) -> fits.Header:
    """HDU 0 as CubeFactory builds it from the first FFI's primary header (and the last FFI's end)."""
    times = plan.times
    t0, t1_first, t1_last = float(times.tstart[0]), float(times.tstop[0]), float(times.tstop[-1])
    # deterministic DATE (the day after the sector ends) so rebuilt cubes have identical bytes
    with quiet(ErfaWarning):
        built = Time(t1_last + headers.BTJD0 + 1, format="jd", scale="tdb").utc.to_value("iso", subfmt="date")
    obs, end = date_obs.decode(), date_end.decode()
    if plan.product == Product.SPOC:
        prim = headers.spoc_primary_header(plan.sector, camera, ccd, t0, t1_first, obs, obs, built,
                                           int(plan.cadence_no[0]))
        h = fits.PrimaryHDU(header=prim).header
        h.remove("CHECKSUM", ignore_missing=True)
        h["ORIGIN"] = "STScI/MAST"
        h["DATE"] = str(built)
        h["CAMERA"] = (camera, "Camera number")
        h["CCD"] = (ccd, "CCD chip number")
        h["SECTOR"] = (plan.sector, "Observing sector")
        h["DATASUM"] = ("0", "data unit checksum")
        h["DATE-END"] = (end, "TSTOP as UTC calendar date")
        h["TSTOP"] = (t1_last, "observation stop time in BTJD")
    else:
        body = headers.tica_header(plan.sector, camera, ccd, times.cadence_s, t0, t1_first,
                                   int(plan.cadence_no[0]), _wcs_header(w, camera, ccd), 0)
        body["ORBIT"] = 1
        h = fits.PrimaryHDU(header=body).header
        h["DATASUM"] = ("0", "data unit checksum")
        h["ORIGIN"] = "STScI/MAST"
        h["DATE"] = str(built)
        h["CAMNUM"] = (camera, "Camera number")
        h["CCDNUM"] = (ccd, "CCD number")
        h["SECTOR"] = (plan.sector, "Observing sector")
        h["ENDTJD"] = (t1_last, "[d] end of exposure in TJD")
    h["EXTNAME"] = "PRIMARY"
    h.set("EXTEND", True, after="NAXIS")  # astropy adds it when CubeFactory writes the HDU
    if plan.product == Product.TICA:
        h["CAMERA"] = (camera, "Camera number")
        h["CCD"] = (ccd, "CCD chip number")
    return h


def _image_header(frames: int, nplanes: int) -> bytes:
    """HDU 1: only the mandatory cards of a 4-D float32 image (FITS dims planes, frames, nx, ny)."""
    h = fits.Header([("XTENSION", "IMAGE", "Image extension"), ("BITPIX", -32, "array data type"),
                     ("NAXIS", 4, "number of array dimensions"), ("NAXIS1", nplanes), ("NAXIS2", frames),
                     ("NAXIS3", FULL_SHAPE[1]), ("NAXIS4", FULL_SHAPE[0]),
                     ("PCOUNT", 0, "number of parameters"), ("GCOUNT", 1, "number of groups")])
    return h.tostring().encode("ascii")


def _random_strings(rng: np.random.Generator, n: int, width: int, digits: bool) -> np.ndarray:
    alphabet = _CHECKSUM_ALPHABET[:10] if digits else _CHECKSUM_ALPHABET
    idx = rng.integers(0, alphabet.size, size=(n, width))
    return alphabet[idx].view(f"S{width}").reshape(n)


@dataclass
class _CubeBytes:
    head: bytes  # primary + image headers (the data region starts right after)
    table: bytes  # table header + data (unpadded; the file's end pads it with zeros)
    table_offset: int
    size: int  # the file's total size


def _cube_bytes(plan: _Plan, camera: int, ccd: int) -> _CubeBytes:
    """The bytes of one cube: patch the camera/CCD-dependent columns of the sector's base table."""
    w = archive_wcs(plan.sector, camera, ccd)
    rec = plan.base.copy()
    by_name = {c.name: c for c in plan.columns}
    for name, value in _wcs_values(w).items():
        if name in by_name:
            rec[name] = value
        elif value != 0 and name[0] in "AB":  # a SIP term the template has no column for
            raise AssertionError(f"sector {plan.sector} camera {camera} CCD {ccd}: no column for {name}")
    frames = plan.frames
    rng = np.random.default_rng([plan.seed, plan.sector, camera, ccd])
    rec["CHECKSUM"] = _random_strings(rng, frames, by_name["CHECKSUM"].width, digits=False)
    rec["DATASUM"] = _random_strings(rng, frames, by_name["DATASUM"].width, digits=True)
    raw = rec.view(np.uint8).reshape(frames, rec.dtype.itemsize)  # the rows as bytes
    name_at = rec.dtype.fields["FFI_FILE"][1]
    raw[:, name_at + plan.name_pos[0]] = ord("0") + camera
    raw[:, name_at + plan.name_pos[1]] = ord("0") + ccd
    times = plan.times
    if plan.product == Product.SPOC:
        rec["CAMERA"], rec["CCD"] = camera, ccd
        _set(rec, by_name["EXTNAME"], f"CAMERA.CCD {camera}.{ccd} cal")
        with quiet():
            ra, dec = (float(v) for v in w.all_pix2world([_CCD_CENTRE], 0)[0])
        bc = _barycorr(times, ra, dec)
        rec["BARYCORR"] = bc
        obs_ms = _unix_ms(times.tstart - bc + times.utc_minus_tdb)
        end_ms = _unix_ms(times.tstop - bc + times.utc_minus_tdb)
        rec["DATE-OBS"], rec["DATE-END"] = _iso(obs_ms), _iso(end_ms)
        rec["MJD-OBS"] = obs_ms / _MS_PER_DAY + _MJD_UNIX_EPOCH
        rec["MJD-END"] = end_ms / _MS_PER_DAY + _MJD_UNIX_EPOCH
        date_obs, date_end = bytes(rec["DATE-OBS"][0]), bytes(rec["DATE-END"][-1])
    else:
        rec["CAMNUM"], rec["CCDNUM"] = camera, ccd
        date_obs = date_end = b""
    primary = _primary_header(plan, camera, ccd, w, date_obs, date_end).tostring().encode("ascii")
    head = primary + _image_header(frames, plan.nplanes)
    data_bytes = FULL_SHAPE[0] * FULL_SHAPE[1] * frames * plan.nplanes * 4
    t_off = len(head) + padded(data_bytes)
    table = plan.table_header + rec.tobytes()
    return _CubeBytes(head, table, t_off, t_off + padded(len(table)))


def _write(path: pathlib.Path, parts: _CubeBytes) -> None:
    """Write a cube atomically: temp name beside it, two pwrites, ftruncate for the hole, rename."""
    with atomic_output(path) as tmp:
        fd = os.open(tmp, os.O_WRONLY)
        try:
            pwrite_all(fd, parts.head, 0)
            pwrite_all(fd, parts.table, parts.table_offset)
            os.ftruncate(fd, parts.size)  # the data region stays a hole; the table's padding is zeros
        finally:
            os.close(fd)


def _check(sector: object, camera: object, ccd: object, frames: object, product: object) -> str:
    for name, v, lo, hi in (("sector", sector, 1, 9999), ("camera", camera, 1, 4), ("ccd", ccd, 1, 4),
                            ("frames", frames, 1, 10**6)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or not lo <= v <= hi:
            raise InvalidInputError(f"{name} must be an integer {lo}..{hi}, got {v!r}.", field=name)
    return Product.parse(product).value


def write_sparse_cube(path: str | os.PathLike, *, sector: int, camera: int, ccd: int, frames: int = 3705,
                      product: str = Product.SPOC, seed: int = 0) -> pathlib.Path:
    """Write one sparse full-size cube of a sector/camera/CCD.

    Parameters
    ----------
    path : path
        The cube file (parent created if missing); written to a temporary name and renamed.
    sector, camera, ccd : int
        Which detector: the table's WCS columns hold its real TAN-SIP WCS (:func:`archive_wcs`).
    frames : int
        Rows of the table (NAXIS2 of HDU 1): 3,705 is a 10-min sector, ~12,000 a 200-s one.
    product : SPOC or TICA
        SPOC: 2 planes and SPOC FFI columns; TICA: 1 plane and TICA columns.
    seed : int
        Seeds the DQUALITY flags and the CHECKSUM/DATASUM strings.

    Returns
    -------
    pathlib.Path
        ``path``. Its apparent size is the real cube's; its disk use is ~1.1 KB per frame.
    """
    product = _check(sector, camera, ccd, frames, product)
    out = pathlib.Path(path)
    _write(out, _cube_bytes(_plan(int(sector), int(frames), product, int(seed)), int(camera), int(ccd)))
    return out


def write_archive(out_dir: str | os.PathLike, n: int, *, frames: int = 3705, first_sector: int = 1,
                  product: str = Product.SPOC, seed: int = 0,
                  progress: Callable[[int, int], object] | None = None) -> list[pathlib.Path]:
    """Write ``n`` sparse cubes, 16 per sector (cameras 1-4 x CCDs 1-4), from ``first_sector`` on.

    Files are named as MAST names them (:func:`cube_name`) directly in ``out_dir``. A file already
    present with the expected size is kept (the call is resumable); anything else is rewritten.

    Parameters
    ----------
    out_dir : path
    n : int
        Number of cubes (the last sector may be partial: camera 1 CCD 1 first).
    frames, product, seed : as :func:`write_sparse_cube`.
    first_sector : int
    progress : callable, optional
        Called as ``progress(done, n)`` after each cube.

    Returns
    -------
    list of pathlib.Path
        Every cube's path, in (sector, camera, ccd) order, written or already present.
    """
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
        raise InvalidInputError(f"n must be a non-negative integer, got {n!r}.", field="n")
    product = _check(first_sector, 1, 1, frames, product)
    out = pathlib.Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths: list[pathlib.Path] = []
    for k in range(int(n)):
        sector = int(first_sector) + k // CUBES_PER_SECTOR
        camera, ccd = divmod(k % CUBES_PER_SECTOR, 4)
        camera, ccd = camera + 1, ccd + 1
        path = out / cube_name(sector, camera, ccd, product)
        if not _complete(path, frames, product):
            plan = _plan(sector, int(frames), product, int(seed))
            _write(path, _cube_bytes(plan, camera, ccd))
        paths.append(path)
        if progress is not None:
            progress(k + 1, int(n))
    return paths


def _complete(path: pathlib.Path, frames: int, product: str) -> bool:
    """Whether ``path`` is a cube of this many frames already (its size is checked, not its bytes)."""
    try:
        size = path.stat().st_size
    except OSError:
        return False
    # headers (< 30 KB) + data region + table (~1.1 KB a frame): a wrong frame count cannot match
    hole = cube_size(frames, product)
    return hole < size < hole + 64 * BLOCK + 2048 * frames


def place_in_s3rver(server: object, paths: list[pathlib.Path], bucket: str, prefix: str = "") -> list[str]:
    """Place sparse cubes in an :class:`tests.s3rver.S3rverServer`'s store (no upload); return their URIs.

    ``server`` is anything with ``place_file(path, bucket, key) -> uri``; keys are
    ``prefix + file name``.
    """
    place = server.place_file  # type: ignore[attr-defined]
    pre = prefix.strip("/") + "/" if prefix.strip("/") else ""
    return [place(p, bucket, pre + pathlib.Path(p).name) for p in paths]


def _main() -> None:  # pragma: no cover - a command-line convenience
    import argparse
    import subprocess

    ap = argparse.ArgumentParser(description="Write a sparse archive of real-size TESS cubes.")
    ap.add_argument("out_dir")
    ap.add_argument("n", type=int)
    ap.add_argument("--frames", type=int, default=3705)
    ap.add_argument("--first-sector", type=int, default=1)
    ap.add_argument("--product", default=Product.SPOC)
    args = ap.parse_args()
    t0 = time.perf_counter()
    paths = write_archive(args.out_dir, args.n, frames=args.frames, first_sector=args.first_sector,
                          product=args.product)
    dt = time.perf_counter() - t0
    du = subprocess.run(["du", "-sh", args.out_dir], check=False, capture_output=True, text=True).stdout.split()[0]
    apparent = sum(p.stat().st_size for p in paths)
    print(f"{len(paths)} cubes in {dt:.1f} s ({1e3 * dt / max(1, len(paths)):.1f} ms each); "
          f"disk {du}; apparent {apparent / 1e12:.2f} TB")


if __name__ == "__main__":  # pragma: no cover
    _main()
