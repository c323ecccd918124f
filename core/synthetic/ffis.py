"""Realistic synthetic TESS full-frame images (SPOC and TICA) for tests and benchmarks.

Real TESS data cannot be downloaded here, so this module writes FFIs that real TESS tools accept:
SPOC calibrated FFIs (primary HDU, ``CAMERA.CCD c.d cal`` image, ``CAMERA.CCD c.d uncert`` image)
and TICA FFIs (one primary HDU with the image), with the header keywords those products carry, the
real per-sector TAN-SIP WCS shipped with ``tesswcs``, Gaussian stars at the pixels the WCS maps
their sky positions to, one star with a box transit and a few frames flagged in DQUALITY/QUAL_BIT.

Layout follows the real products (as astrocut's ``CubeFactory`` and TICA readers expect them):
full frames are 2136 columns x 2078 rows, with 44 leading and 44 trailing virtual columns and 30
trailing virtual rows around the 2048 x 2048 science area. A small ``size`` cuts a window out of
that full frame, shifting CRPIX (the SIP terms are relative to CRPIX, so the WCS stays exact) and
the physical (RAWX/RAWY) WCS.

Example
-------
>>> s = write_sector(tmp, size=(64, 64), center=(DEMO_RA, DEMO_DEC), frames=10)  # doctest: +SKIP
>>> s.ffi_files[0].name  # doctest: +SKIP
'tess2021119...-s0038-2-2-0209-s_ffic.fits'
"""

from __future__ import annotations

import math
import os
import pathlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from astropy import units as u
from astropy.coordinates import get_body_barycentric
from astropy.io import fits
from astropy.time import Time
from astropy.wcs import WCS
from erfa import ErfaWarning
from scipy.special import erf

from core.errors import InvalidInputError, NoDataError
from core.product import Product
from core.quiet import quiet
from core.storage.atomic import atomic_output
from core.synthetic.headers import (
    BTJD0,
    DEMO_DEC,
    DEMO_RA,
    default_cadence_minutes,
    sector_start_btjd,
    sector_wcs_header,
    spacecraft_config_id,
    spoc_image_header,
    spoc_primary_header,
    tica_header,
)
from core.tess_wcs import FULL_SHAPE, full_frame_wcs

__all__ = [
    "DEMO_DEC",
    "DEMO_RA",
    "FULL_SHAPE",
    "Star",
    "SyntheticSector",
    "sector_wcs_header",
    "spoc_ffi_name",
    "tica_ffi_name",
    "write_sector",
]

_VIRTUAL_COLS_LEFT = 44
_SCIENCE = 2048  # science rows/columns
_PSF_SIGMA = 0.9  # pixels
_STAMP_RADIUS = 6  # pixels; the Gaussian is < 1e-9 of the flux beyond this
_SPEED_OF_LIGHT_AU_PER_DAY = 173.1446326846693

@dataclass
class Star:
    """One injected star: sky position (deg), 0-based pixel position in the written image, flux (e-/s)."""

    ra: float
    dec: float
    x: float
    y: float
    flux: float
    transit: bool = False


@dataclass
class SyntheticSector:
    """What :func:`write_sector` wrote, with the truth needed to check readers against it."""

    ffi_files: list[pathlib.Path]
    stars: list[Star]
    transit_star: Star
    transit_t0: float
    transit_duration: float
    transit_depth: float
    quality_frames: list[int]
    tstart: np.ndarray
    tstop: np.ndarray
    sector: int
    camera: int
    ccd: int
    product: str
    shape: tuple[int, int]
    origin: tuple[int, int] = field(default=(0, 0))  # (y0, x0) of the image in full-FFI pixels

    @property
    def in_transit(self) -> np.ndarray:
        """Boolean per frame: True when the frame's mid-time is inside the transit box."""
        mid = 0.5 * (self.tstart + self.tstop)
        return np.abs(mid - self.transit_t0) < 0.5 * self.transit_duration


# ----------------------------------------------------------------------------------------------
# Times and names


def _barycorr_days(btjd: np.ndarray, ra: float, dec: float) -> np.ndarray:
    """Barycentric light-travel correction (days) toward (ra, dec), from the geocentre.

    The Earth's barycentric position (astropy's built-in ephemeris) projected on the line of sight;
    TESS is ~0.001 au from the Earth, which is below what these synthetic data need.
    """
    t = Time(np.asarray(btjd, dtype=float) + BTJD0, format="jd", scale="tdb")
    earth = get_body_barycentric("earth", t).xyz.to_value(u.au)  # (3, n)
    ra_r, dec_r = math.radians(ra), math.radians(dec)
    n = np.array([math.cos(dec_r) * math.cos(ra_r), math.cos(dec_r) * math.sin(ra_r), math.sin(dec_r)])
    return (n @ earth) / _SPEED_OF_LIGHT_AU_PER_DAY


def _utc_iso(btjd: np.ndarray, barycorr: np.ndarray) -> list[str]:
    """ISO UTC strings ('...Z', ms precision) of spacecraft times BTJD - BARYCORR (TDB -> UTC)."""
    with quiet(ErfaWarning):  # "dubious year": future sectors, no leap-second table
        t = Time(np.asarray(btjd) - np.asarray(barycorr) + BTJD0, format="jd", scale="tdb").utc
        t.precision = 3
        return [v + "Z" for v in np.atleast_1d(t.isot)]


def spoc_ffi_name(sector: int, camera: int, ccd: int, tstart: float) -> str:
    """SPOC FFI file name, ``tess{YYYYDDDHHMMSS}-s{sector:04d}-{camera}-{ccd}-{scid:04d}-s_ffic.fits``.

    The time stamp is the UTC of ``tstart`` (BTJD, converted without the barycentric correction);
    real SPOC names stamp a time near the end of the exposure, which no reader relies on.
    """
    with quiet(ErfaWarning):  # "dubious year" for future sectors
        stamp = Time(float(tstart) + BTJD0, format="jd", scale="tdb").utc.strftime("%Y%j%H%M%S")
    return f"tess{stamp}-s{sector:04d}-{camera}-{ccd}-{spacecraft_config_id(sector):04d}-s_ffic.fits"


def tica_ffi_name(sector: int, camera: int, ccd: int, cadence: int, orbit: int = 1) -> str:
    """TICA FFI file name, ``hlsp_tica_tess_ffi_s{sector:04d}-o{orbit}-{cadence:08d}-cam{camera}-ccd{ccd}_tess_v01_img.fits``."""
    return (f"hlsp_tica_tess_ffi_s{sector:04d}-o{orbit}-{cadence:08d}-cam{camera}-ccd{ccd}"
            "_tess_v01_img.fits")


# ----------------------------------------------------------------------------------------------
# Scene


def _psf_stamp(x: float, y: float, flux: float, ny: int, nx: int) -> tuple[slice, slice, np.ndarray] | None:
    """Pixel-integrated Gaussian of total ``flux`` centred at 0-based (x, y), clipped to the image."""
    ix, iy = int(np.rint(x)), int(np.rint(y))
    x0, x1 = max(ix - _STAMP_RADIUS, 0), min(ix + _STAMP_RADIUS + 1, nx)
    y0, y1 = max(iy - _STAMP_RADIUS, 0), min(iy + _STAMP_RADIUS + 1, ny)
    if x0 >= x1 or y0 >= y1:
        return None
    s = _PSF_SIGMA * math.sqrt(2.0)
    ex = np.arange(x0, x1 + 1) - 0.5 - x
    ey = np.arange(y0, y1 + 1) - 0.5 - y
    fx = 0.5 * np.diff(erf(ex / s))
    fy = 0.5 * np.diff(erf(ey / s))
    return slice(y0, y1), slice(x0, x1), (flux * np.outer(fy, fx)).astype(np.float32)


def _place_stars(rng: np.random.Generator, n: int, box: tuple[int, int, int, int],
                 taken: list[tuple[float, float]], min_sep: float = 7.0) -> list[tuple[float, float]]:
    """Up to ``n`` (x, y) positions in box (x0, x1, y0, y1), at least ``min_sep`` px from each other."""
    bx0, bx1, by0, by1 = box
    out: list[tuple[float, float]] = []
    if bx1 <= bx0 or by1 <= by0:
        return out
    pts = list(taken)
    for _ in range(200 * max(n, 1)):
        if len(out) >= n:
            break
        x = float(rng.uniform(bx0, bx1))
        y = float(rng.uniform(by0, by1))
        if all((x - px) ** 2 + (y - py) ** 2 >= min_sep**2 for px, py in pts):
            out.append((x, y))
            pts.append((x, y))
    return out


def _science_box(origin: tuple[int, int], shape: tuple[int, int], margin: int) -> tuple[int, int, int, int]:
    """(x0, x1, y0, y1) in image pixels of the science area, shrunk by ``margin``."""
    y0, x0 = origin
    ny, nx = shape
    sx0 = max(_VIRTUAL_COLS_LEFT - x0, 0) + margin
    sx1 = min(_VIRTUAL_COLS_LEFT + _SCIENCE - x0, nx) - 1 - margin
    sy0 = max(-y0, 0) + margin
    sy1 = min(_SCIENCE - y0, ny) - 1 - margin
    return sx0, sx1, sy0, sy1


# ----------------------------------------------------------------------------------------------
# Writer


def _atomic_write(hdul: fits.HDUList, path: pathlib.Path) -> None:
    with atomic_output(path) as tmp:
        hdul.writeto(tmp, overwrite=True, checksum=True)


def _validate(sector: Any, camera: Any, ccd: Any, frames: Any, size: Any, product: Any, n_stars: Any,
              cadence_minutes: Any) -> tuple[int, int, int, int, tuple[int, int], str, int, float | None]:
    def _int(v: Any, name: str, lo: int, hi: int | None = None) -> int:
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
            raise InvalidInputError(f"{name} must be an integer, got {v!r}.", field=name)
        if v < lo or (hi is not None and v > hi):
            rng = f"{lo}..{hi}" if hi is not None else f">= {lo}"
            raise InvalidInputError(f"{name} must be {rng}, got {v}.", field=name)
        return int(v)

    sector = _int(sector, "sector", 1)
    camera = _int(camera, "camera", 1, 4)
    ccd = _int(ccd, "ccd", 1, 4)
    frames = _int(frames, "frames", 1)
    n_stars = _int(n_stars, "n_stars", 1)
    if isinstance(size, str):
        if size != "full":
            raise InvalidInputError(f"size must be 'full' or (ny, nx), got {size!r}.", field="size")
        shape = FULL_SHAPE
    else:
        try:
            ny, nx = size
        except (TypeError, ValueError):
            raise InvalidInputError(f"size must be 'full' or (ny, nx), got {size!r}.", field="size") from None
        ny = _int(ny, "size", 1, FULL_SHAPE[0])
        nx = _int(nx, "size", 1, FULL_SHAPE[1])
        shape = (ny, nx)
    product = Product.parse(product)
    cad: float | None = None
    if cadence_minutes is not None:
        try:
            cad = float(cadence_minutes)
        except (TypeError, ValueError):
            cad = float("nan")
        if not (cad > 0 and math.isfinite(cad)):
            raise InvalidInputError(f"cadence_minutes must be a positive number, got {cadence_minutes!r}.",
                                    field="cadence_minutes")
    return sector, camera, ccd, frames, shape, product.upper(), n_stars, cad


def _check_center(center: Any) -> tuple[float, float] | None:
    """``center`` as (ra in [0, 360), dec) degrees, or None."""
    if center is None:
        return None
    try:
        cra, cdec = (float(v) for v in center)
    except (TypeError, ValueError):
        raise InvalidInputError(f"center must be (ra, dec) in degrees, got {center!r}.",
                                field="center") from None
    if not (math.isfinite(cra) and math.isfinite(cdec) and -90 <= cdec <= 90):
        raise InvalidInputError(f"center must be (ra, dec) in degrees, got {center!r}.", field="center")
    return (cra % 360.0, cdec)


def _check_quality_frames(quality_frames: Any, frames: int) -> list[int] | None:
    """The flagged frames' indices, sorted and once each, or None (picked from the seed later)."""
    if quality_frames is None:
        return None
    qf = []
    for q in quality_frames:
        if isinstance(q, bool) or not isinstance(q, (int, np.integer)) or not 0 <= q < frames:
            raise InvalidInputError(f"quality_frames must hold frame indices 0..{frames - 1}, got {q!r}.",
                                    field="quality_frames")
        qf.append(int(q))
    return sorted(set(qf))


@dataclass
class _Geometry:
    """Where the image lies: its origin in the full frame, its WCS (cards and object), and the
    transit star's pixel and sky position."""

    origin: tuple[int, int]
    wcs_hdr: fits.Header
    wcs: WCS
    tx: float
    ty: float
    tra: float
    tdec: float


def _geometry(sector: int, camera: int, ccd: int, shape: tuple[int, int],
              center: tuple[float, float] | None) -> _Geometry:
    """The image's place on the CCD: a window of ``shape`` centred on ``center`` (default the
    CCD's centre, where the transit star goes); NoDataError when ``center`` is off the CCD."""
    full = full_frame_wcs(sector, camera, ccd, center)
    if center is not None:
        with quiet():
            fx, fy = (float(v) for v in full.all_world2pix([[center[0], center[1]]], 0, tolerance=1e-10,
                                                           quiet=True)[0])
        on_ccd = (math.isfinite(fx) and math.isfinite(fy) and -0.5 <= fx < FULL_SHAPE[1] - 0.5
                  and -0.5 <= fy < FULL_SHAPE[0] - 0.5)
        if not on_ccd:
            raise NoDataError(f"center {center} is not on sector {sector} camera {camera} CCD {ccd}.",
                              field="center")
    else:
        fx = _VIRTUAL_COLS_LEFT + _SCIENCE / 2.0
        fy = _SCIENCE / 2.0
    ny, nx = shape
    origin = (0, 0) if shape == FULL_SHAPE else (int(np.rint(fy)) - ny // 2, int(np.rint(fx)) - nx // 2)
    wcs_hdr = sector_wcs_header(sector, camera, ccd, origin=origin, fallback_center=center)
    with quiet():
        img_wcs = WCS(wcs_hdr)
    tx, ty = fx - origin[1], fy - origin[0]
    if center is None:
        center_radec = img_wcs.all_pix2world([[tx, ty]], 0)[0]
        tra, tdec = float(center_radec[0]), float(center_radec[1])
    else:
        tra, tdec = center
    return _Geometry(origin, wcs_hdr, img_wcs, tx, ty, tra, tdec)


def _stars(rng: np.random.Generator, geo: _Geometry, shape: tuple[int, int], n_stars: int) -> list[Star]:
    """The transit star at the window's centre, then up to ``n_stars - 1`` others in the science area."""
    box = _science_box(geo.origin, shape, margin=3)
    positions = _place_stars(rng, n_stars - 1, box, [(geo.tx, geo.ty)])
    fluxes = np.exp(rng.uniform(np.log(3e3), np.log(2e5), size=len(positions)))
    stars = [Star(ra=geo.tra, dec=geo.tdec, x=geo.tx, y=geo.ty, flux=5.0e4, transit=True)]
    if positions:
        world = geo.wcs.all_pix2world(np.asarray(positions), 0)
        for (x, y), (ra, dec), f in zip(positions, world, fluxes):
            stars.append(Star(ra=float(ra), dec=float(dec), x=x, y=y, flux=float(f)))
    return stars


@dataclass
class _Cadences:
    """Every frame's times (BTJD start/stop, UTC strings, barycentric correction), the transit and
    the quality flags."""

    cadence_s: float
    tstart: np.ndarray
    tstop: np.ndarray
    obs_iso: list[str]
    end_iso: list[str]
    barycorr: np.ndarray
    transit_t0: float
    transit_duration: float
    transit_depth: float
    in_transit: np.ndarray
    quality: list[int]
    qflags: np.ndarray


def _cadences(rng: np.random.Generator, sector: int, frames: int, cadence_minutes: float | None,
              ra: float, dec: float, quality: list[int] | None) -> _Cadences:
    """Consecutive cadences from the sector's start, a box transit of a seeded depth over the
    middle ~30% (or the last frame), BARYCORR toward (ra, dec), and 1-2 seeded flagged frames
    unless ``quality`` names them."""
    cadence_s = (cadence_minutes if cadence_minutes is not None else default_cadence_minutes(sector)) * 60.0
    cad_d = cadence_s / 86400.0
    tstart = sector_start_btjd(sector) + cad_d * np.arange(frames)
    tstop = tstart + cad_d
    mid = 0.5 * (tstart + tstop)
    span = tstop[-1] - tstart[0]
    depth = float(rng.uniform(0.01, 0.05))
    if frames >= 3:
        duration = max(0.3 * span, 1.01 * cad_d)
        t0 = float(mid[frames // 2])
    else:
        duration = 0.5 * cad_d
        t0 = float(mid[-1])
    barycorr = _barycorr_days(mid, ra, dec)
    if quality is None:
        n_q = 0 if frames < 2 else (1 if frames < 6 else 2)
        quality = sorted(int(i) for i in rng.choice(frames, size=n_q, replace=False))
    qflags = np.zeros(frames, dtype=int)
    for i in quality:
        qflags[i] = int(rng.choice([32, 128]))
    return _Cadences(cadence_s, tstart, tstop, _utc_iso(tstart, barycorr), _utc_iso(tstop, barycorr), barycorr,
                     t0, float(duration), depth, np.abs(mid - t0) < 0.5 * duration, quality, qflags)


@dataclass
class _Scene:
    """The static image (background and stars), the transit star's stamp, and the noise: a
    per-pixel sigma and a pool of unit deviates that frame ``i`` reads from ``offsets[i]``."""

    image: np.ndarray
    transit_stamp: tuple[slice, slice, np.ndarray] | None
    sigma: np.ndarray
    pool: np.ndarray
    offsets: np.ndarray


def _scene(rng: np.random.Generator, stars: list[Star], origin: tuple[int, int], shape: tuple[int, int],
           cadence_s: float, frames: int) -> _Scene:
    """A sloped background on the science pixels (virtual ones are 0), the stars, and the noise model."""
    ny, nx = shape
    yy = np.arange(ny, dtype=np.float32)[:, None] + origin[0]
    xx = np.arange(nx, dtype=np.float32)[None, :] + origin[1]
    bkg = (80.0 + 20.0 * (xx / FULL_SHAPE[1]) + 15.0 * (yy / FULL_SHAPE[0])).astype(np.float32)
    science = ((xx >= _VIRTUAL_COLS_LEFT) & (xx < _VIRTUAL_COLS_LEFT + _SCIENCE) & (yy < _SCIENCE))
    scene = np.where(science, bkg, np.float32(0.0)).astype(np.float32)
    stamps = []
    for s in stars:
        st = _psf_stamp(s.x, s.y, s.flux, ny, nx)
        if st is not None:
            scene[st[0], st[1]] += st[2]
            stamps.append(st)
    transit_stamp = stamps[0] if stamps and stars[0].transit else None
    exptime = cadence_s * 0.792
    read_e = 9.5
    # Per-pixel 1-sigma noise in e-/s: shot noise of the scene plus read noise of the co-adds.
    sigma = (np.sqrt(np.maximum(scene, 0.0) * exptime + read_e**2 * (cadence_s / 2.0)) / exptime)
    sigma = sigma.astype(np.float32)
    # One pool of unit normal deviates; frame i reads it at a seeded offset (cheap for full frames).
    npix = ny * nx
    stride = max(1, min(npix, 7919))
    pool = rng.standard_normal(npix + stride * frames, dtype=np.float32)
    offsets = rng.permutation(frames) * stride
    return _Scene(scene, transit_stamp, sigma, pool, offsets)


def _ffi(i: int, product: str, sector: int, camera: int, ccd: int, scene: _Scene, times: _Cadences,
         wcs_hdr: fits.Header, file_date: str) -> tuple[str, fits.HDUList]:
    """Frame ``i``'s file name and HDUList: the scene plus its noise, less the transit when in it."""
    ny, nx = scene.image.shape
    img = scene.image + scene.sigma * scene.pool[scene.offsets[i]:scene.offsets[i] + ny * nx].reshape(ny, nx)
    if times.in_transit[i] and scene.transit_stamp is not None:
        sy, sx, data = scene.transit_stamp
        img[sy, sx] -= times.transit_depth * data
    t0, t1 = float(times.tstart[i]), float(times.tstop[i])
    cadence_no = int(np.rint(times.tstart[i] * 86400.0 / times.cadence_s))
    if product == Product.SPOC:
        name = spoc_ffi_name(sector, camera, ccd, times.tstart[i])
        obs, end = times.obs_iso[i], times.end_iso[i]
        prim = fits.PrimaryHDU(header=spoc_primary_header(sector, camera, ccd, t0, t1, obs, end, file_date,
                                                          cadence_no))
        cal_h, unc_h = (spoc_image_header(kind, camera, ccd, times.cadence_s, t0, t1, obs, end, wcs_hdr,
                                          times.barycorr[i], times.qflags[i]) for kind in ("cal", "uncert"))
        return name, fits.HDUList([prim, fits.ImageHDU(img, header=cal_h), fits.ImageHDU(scene.sigma, header=unc_h)])
    frames = len(times.tstart)
    orbit = 1 if i < (frames + 1) // 2 else 2
    name = tica_ffi_name(sector, camera, ccd, cadence_no, orbit=orbit)
    h = tica_header(sector, camera, ccd, times.cadence_s, t0, t1, cadence_no, wcs_hdr, times.qflags[i])
    h["ORBIT"] = orbit
    return name, fits.HDUList([fits.PrimaryHDU(img, header=h)])


def write_sector(out_dir: str | os.PathLike, *, sector: int = 38, camera: int = 2, ccd: int = 2,
                 frames: int = 10, size: str | tuple[int, int] = "full", product: str = Product.SPOC,
                 center: tuple[float, float] | None = None, seed: int = 0, n_stars: int = 20,
                 quality_frames: list[int] | None = None,
                 cadence_minutes: float | None = None) -> SyntheticSector:
    """Write a synthetic sector of TESS FFIs (SPOC or TICA) and return what was injected.

    Parameters
    ----------
    out_dir : path
        Directory for the files (created if missing). Each file is written to a temporary name
        in it and renamed when complete.
    sector, camera, ccd : int
        Which detector; the WCS is tesswcs's archived solution for it (a plausible TAN-SIP
        fallback for sectors tesswcs has not archived).
    frames : int
        Number of consecutive FFIs (cadence 200 s from sector 56, 600 s for 27-55, 1800 s before,
        unless ``cadence_minutes`` is given).
    size : "full" or (ny, nx)
        "full" is the real 2078 x 2136 FFI (virtual columns/rows included); a pair cuts a window out
        of the full frame centred on ``center``.
    product : SPOC or TICA
    center : (ra, dec) in degrees, optional
        Sky position of the window centre and of the transit star. Default: the CCD centre.
    seed : int
        Everything (star positions, fluxes, noise, transit, flagged frames) derives from it.
    n_stars : int
        Number of stars, the transit star included.
    quality_frames : list of int, optional
        Frame indices with non-zero DQUALITY (SPOC) / QUAL_BIT (TICA). Default: 1-2 picked from seed.
    cadence_minutes : float, optional
        Override of the cadence.

    Returns
    -------
    SyntheticSector

    Raises
    ------
    InvalidInputError
        A parameter is out of range (``field`` names it).
    NoDataError
        ``center`` does not fall on the CCD.
    """
    sector, camera, ccd, frames, shape, product, n_stars, cad = _validate(
        sector, camera, ccd, frames, size, product, n_stars, cadence_minutes)
    center = _check_center(center)
    quality = _check_quality_frames(quality_frames, frames)
    rng = np.random.default_rng(seed)
    out = pathlib.Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    # the seeded draws, in this order: stars, the transit, flagged frames, noise
    geo = _geometry(sector, camera, ccd, shape, center)
    stars = _stars(rng, geo, shape, n_stars)
    times = _cadences(rng, sector, frames, cad, geo.tra, geo.tdec, quality)
    scene = _scene(rng, stars, geo.origin, shape, times.cadence_s, frames)
    files: list[pathlib.Path] = []
    file_date = times.obs_iso[-1][:10]
    for i in range(frames):
        name, hdul = _ffi(i, product, sector, camera, ccd, scene, times, geo.wcs_hdr, file_date)
        path = out / name
        _atomic_write(hdul, path)
        files.append(path)

    order = np.argsort(times.tstart)  # already in time order; kept explicit for readers of the code
    return SyntheticSector(
        ffi_files=[files[j] for j in order], stars=stars, transit_star=stars[0], transit_t0=times.transit_t0,
        transit_duration=times.transit_duration, transit_depth=times.transit_depth,
        quality_frames=list(times.quality), tstart=times.tstart, tstop=times.tstop, sector=sector, camera=camera,
        ccd=ccd, product=product, shape=shape, origin=geo.origin,
    )
