"""The real TESS full-frame WCS per sector/camera/CCD, from the data files ``tesswcs`` ships.

``tesswcs.WCS.from_sector`` gives the fitted TAN-SIP solution of every camera/CCD of sectors 1-108,
but ``import tesswcs`` builds thousands of SkyCoord objects (10-40 s here). We read the same JSON
tables it ships (under a second, once per process) and assemble the WCS exactly as it does; the
synthetic data, the service's ``ffi_wcs`` route and the tests share this one loader.
"""

from __future__ import annotations

import bz2
import csv
import functools
import json
import math
import pathlib

import numpy as np
from astropy.wcs import WCS

from core.errors import NotFoundError

__all__ = ["FULL_SHAPE", "archived_tables", "archived_wcs", "full_frame_wcs", "pointings"]

#: (ny, nx) of a real SPOC/TICA FFI.
FULL_SHAPE = (2078, 2136)
#: Centre of the fallback WCS when a sector has neither an archived solution nor a pointing.
_DEFAULT_CENTER = (217.42893801, -62.67949189)


@functools.lru_cache(maxsize=1)
def archived_tables() -> tuple[dict, dict]:
    """The archived per-sector WCS table and SIP coefficients shipped in tesswcs's data files.

    Read directly rather than through ``import tesswcs``: importing tesswcs builds thousands of
    SkyCoord/Angle objects and takes ~12 s; reading the JSON takes ~0.6 s. The numbers and their
    assembly are exactly those of ``tesswcs.WCS.from_sector`` (checked in the tests).
    """
    from importlib.util import find_spec

    spec = find_spec("tesswcs")
    if spec is None or not spec.submodule_search_locations:
        return {}, {}
    data = pathlib.Path(next(iter(spec.submodule_search_locations))) / "data"
    try:
        with bz2.open(data / "TESS_wcs_data.json.bz2", "rt", encoding="utf-8") as f:
            wcs_data = json.load(f)
        with bz2.open(data / "TESS_wcs_sip.json.bz2", "rt", encoding="utf-8") as f:
            sip = json.load(f)
    except OSError:
        return {}, {}
    return wcs_data, sip


@functools.lru_cache(maxsize=1)
def pointings() -> dict[int, dict[str, float]]:
    """Sector -> {ra, dec, roll, start (JD), end (JD)} from tesswcs's pointings.csv (empty if absent)."""
    from importlib.util import find_spec

    spec = find_spec("tesswcs")
    out: dict[int, dict[str, float]] = {}
    if spec is None or not spec.submodule_search_locations:
        return out
    path = pathlib.Path(next(iter(spec.submodule_search_locations))) / "data" / "pointings.csv"
    try:
        with open(path, encoding="utf-8-sig") as f:
            for row in csv.DictReader(f):
                out[int(row["Sector"])] = {
                    "ra": float(row["RA"]), "dec": float(row["Dec"]), "roll": float(row["Roll"]),
                    "start": float(row["Start"]), "end": float(row["End"]),
                }
    except (OSError, KeyError, ValueError):
        return {}
    return out


def _sip_matrix(coeffs: list) -> np.ndarray:
    return np.asarray(coeffs, dtype=float)


def full_frame_wcs(sector: int, camera: int, ccd: int,
                   fallback_center: tuple[float, float] | None = None) -> WCS:
    """The full-FFI TAN-SIP WCS of a sector/camera/CCD (tesswcs's archived solution, else a fallback)."""
    from astropy.wcs import Sip

    wcs_data, sip = archived_tables()
    key = str(sector)
    w = WCS(naxis=2)
    w.pixel_shape = (FULL_SHAPE[1], FULL_SHAPE[0])
    w.wcs.ctype = ["RA---TAN-SIP", "DEC--TAN-SIP"]
    w.wcs.cunit = ["deg", "deg"]
    w.wcs.radesys = "ICRS"
    w.wcs.equinox = 2000.0
    if key in wcs_data and sip:
        entry = wcs_data[key][str(camera)][str(ccd)]
        w.wcs.crpix = entry["crpix0"]
        w.wcs.crval = entry["crval0"]
        w.wcs.cd = np.asarray(entry["cd"], dtype=float)
    else:
        # Plausible fallback: 21"/px, the camera/CCD orientation of an archived sector if any, and a
        # pointing at the requested centre (or the nominal pointing of the sector, or the demo field).
        w.wcs.crpix = [1045.0, 1001.0]
        if fallback_center is None:
            p = pointings().get(sector)
            fallback_center = (p["ra"], p["dec"]) if p else _DEFAULT_CENTER
        w.wcs.crval = list(fallback_center)
        scale = 21.0 / 3600.0
        if wcs_data:
            ref = wcs_data[max(wcs_data, key=int)][str(camera)][str(ccd)]
            cd = np.asarray(ref["cd"], dtype=float)
            cd *= scale / math.sqrt(abs(np.linalg.det(cd)))
        else:
            cd = np.array([[-scale, 0.0], [0.0, scale]])
        w.wcs.cd = cd
    if sip:
        mats = [_sip_matrix(sip[k][str(camera)][str(ccd)]) for k in ("a", "b", "ap", "bp")]
        w.sip = Sip(*mats, list(w.wcs.crpix))
    w.wcs.set()
    return w


def archived_wcs(sector: int, camera: int, ccd: int) -> WCS:
    """tesswcs's archived full-frame WCS of a sector/camera/CCD.

    Raises
    ------
    NotFoundError
        When tesswcs has no fitted solution for the sector (no fallback here: callers that serve a
        WCS to users must not invent one).
    """
    wcs_data, _sip = archived_tables()
    if str(int(sector)) not in wcs_data:
        raise NotFoundError(f"tesswcs has no archived WCS for sector {sector}", field="sector")
    return full_frame_wcs(int(sector), int(camera), int(ccd))
