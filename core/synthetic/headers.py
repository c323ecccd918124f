"""What synthetic TESS products say about themselves: their header cards and cadences.

Shared by :mod:`core.synthetic.ffis` (FFIs written whole) and :mod:`core.synthetic.archive`
(sparse cubes whose table rows are those FFIs' image headers): the WCS cards of a sector's
camera/CCD (tesswcs's solution), a SPOC FFI's primary and image headers, a TICA FFI's header,
a sector's default cadence and start time, and the spacecraft configuration id of SPOC names.
"""

from __future__ import annotations

import numpy as np
from astropy.io import fits
from astropy.time import Time
from erfa import ErfaWarning

from core.quiet import quiet
from core.tess_wcs import full_frame_wcs, pointings

__all__ = [
    "BTJD0",
    "DEMO_DEC",
    "DEMO_RA",
    "default_cadence_minutes",
    "sector_start_btjd",
    "sector_wcs_header",
    "spacecraft_config_id",
    "spoc_image_header",
    "spoc_primary_header",
    "tica_header",
]

#: A position on camera 2 / CCD 2 in sectors 11 and 38 (used by fixtures and demos, and as the
#: pointing of sectors tesswcs does not know).
DEMO_RA, DEMO_DEC = 217.42893801, -62.67949189

#: JD of BTJD 0 (TESS times are BJD - 2457000)
BTJD0 = 2457000.0

# Spacecraft configuration ids seen in real SPOC file names (others are interpolated).
_SCID = {1: 120, 2: 121, 3: 123, 4: 124, 5: 125, 6: 126, 7: 131, 8: 136, 9: 139, 10: 140, 11: 143,
         12: 144, 13: 146, 38: 209}


# ----------------------------------------------------------------------------------------------
# WCS


def sector_wcs_header(sector: int, camera: int, ccd: int, *, origin: tuple[int, int] = (0, 0),
                      fallback_center: tuple[float, float] | None = None) -> fits.Header:
    """WCS header cards (celestial TAN-SIP with a CD matrix, plus the physical RAWX/RAWY WCS 'P').

    Parameters
    ----------
    sector, camera, ccd : int
        Which solution (``tesswcs.WCS.from_sector`` numbers for archived sectors).
    origin : (y0, x0)
        0-based full-FFI pixel of the image's first pixel; CRPIX and the physical WCS are shifted.
    fallback_center : (ra, dec), optional
        Pointing used when tesswcs has no solution for the sector.
    """
    w = full_frame_wcs(sector, camera, ccd, fallback_center)
    y0, x0 = origin
    with quiet():
        full = w.to_header(relax=True)
    hdr = fits.Header()
    hdr["RADESYS"] = ("ICRS", "reference frame of celestial coordinates")
    hdr["EQUINOX"] = (2000.0, "equinox of celestial coordinate system")
    hdr["WCSAXES"] = (2, "number of World Coordinate System axes")
    hdr["CTYPE1"] = ("RA---TAN-SIP", "Gnomonic projection + SIP distortions")
    hdr["CTYPE2"] = ("DEC--TAN-SIP", "Gnomonic projection + SIP distortions")
    hdr["CRVAL1"] = (float(w.wcs.crval[0]), "RA at CRPIX1, CRPIX2")
    hdr["CRVAL2"] = (float(w.wcs.crval[1]), "DEC at CRPIX1, CRPIX2")
    hdr["CRPIX1"] = (float(w.wcs.crpix[0]) - x0, "X reference pixel")
    hdr["CRPIX2"] = (float(w.wcs.crpix[1]) - y0, "Y reference pixel")
    cd = w.wcs.cd if w.wcs.has_cd() else w.wcs.get_pc() * w.wcs.cdelt[:, None]
    for i in range(2):
        for j in range(2):
            hdr[f"CD{i + 1}_{j + 1}"] = (float(cd[i, j]), "Transformation matrix")
    for card in full.cards:
        if card.keyword[:2] in ("A_", "B_") or card.keyword[:3] in ("AP_", "BP_"):
            hdr[card.keyword] = (card.value, card.comment)
    hdr["WCSNAMEP"] = ("PHYSICAL", "name of world coordinate system alternate P")
    hdr["WCSAXESP"] = (2, "number of WCS physical axes")
    hdr["CTYPE1P"] = ("RAWX", "physical WCS axis 1 type CCD col")
    hdr["CUNIT1P"] = ("PIXEL", "physical WCS axis 1 unit")
    hdr["CRPIX1P"] = (1, "reference CCD column")
    hdr["CRVAL1P"] = (x0 + 1, "value at reference CCD column")
    hdr["CDELT1P"] = (1.0, "physical WCS axis 1 step")
    hdr["CTYPE2P"] = ("RAWY", "physical WCS axis 2 type CCD row")
    hdr["CUNIT2P"] = ("PIXEL", "physical WCS axis 2 units")
    hdr["CRPIX2P"] = (1, "reference CCD row")
    hdr["CRVAL2P"] = (y0 + 1, "value at reference CCD row")
    hdr["CDELT2P"] = (1.0, "physical WCS axis 2 step")
    return hdr



# ----------------------------------------------------------------------------------------------
# Times


def default_cadence_minutes(sector: int) -> float:
    """The FFI cadence of a sector in minutes: 30 before sector 27, 10 to 55, 200 s from 56."""
    if sector >= 56:
        return 200.0 / 60.0
    if sector >= 27:
        return 10.0
    return 30.0


def sector_start_btjd(sector: int) -> float:
    """A plausible first-cadence BTJD: the sector's start in tesswcs's pointings, else extrapolated."""
    p = pointings().get(sector)
    if p is not None and p["start"] > BTJD0:
        return p["start"] - BTJD0 + 0.75
    return 1325.29 + (sector - 1) * 27.4


def _iso_to_mjd(iso: str) -> float:
    """MJD of an ISO calendar string, read in its own scale (what wcslib's datfix computes)."""
    with quiet(ErfaWarning):
        return float(Time(iso.rstrip("Z"), format="isot", scale="utc").mjd)


def spacecraft_config_id(sector: int) -> int:
    """The spacecraft configuration id a SPOC FFI name of ``sector`` carries (real ones where
    known, others interpolated)."""
    if sector in _SCID:
        return _SCID[sector]
    known = sorted(_SCID)
    lo = max([s for s in known if s < sector], default=known[0])
    return _SCID[lo] + 2 * (sector - lo)


# ----------------------------------------------------------------------------------------------
# Headers


def spoc_primary_header(sector: int, camera: int, ccd: int, t0: float, t1: float, date_obs: str,
                        date_end: str, date: str, ffiindex: int) -> fits.Header:
    """A SPOC calibrated FFI's primary header (the keywords real ones carry) for one cadence:
    ``t0``/``t1`` its start and stop (BTJD), ``date_obs``/``date_end`` the same as UTC, ``date``
    the file's creation date, ``ffiindex`` its cadence number."""
    p = pointings().get(sector, {"ra": DEMO_RA, "dec": DEMO_DEC, "roll": 0.0})
    h = fits.Header()
    h["NEXTEND"] = (2, "number of standard extensions")
    h["EXTNAME"] = ("PRIMARY", "name of extension")
    h["EXTVER"] = (1, "extension version number (not format version)")
    h["SIMDATA"] = (False, "file is based on simulated data")
    h["ORIGIN"] = ("NASA/Ames", "institution responsible for creating this file")
    h["DATE"] = (date, "file creation date.")
    h["TSTART"] = (t0, "observation start time in TJD")
    h["TSTOP"] = (t1, "observation stop time in TJD")
    h["DATE-OBS"] = (date_obs, "TSTART as UTC calendar date")
    h["DATE-END"] = (date_end, "TSTOP as UTC calendar date")
    h["CREATOR"] = ("12345 FfiExporter", "pipeline job and program used to produce")
    h["PROCVER"] = ("spoc-5.0.40-20210505", "SW version")
    h["FILEVER"] = ("1.0", "file format version")
    h["TIMVERSN"] = ("OGIP/93-003", "OGIP memo number for file format")
    h["TELESCOP"] = ("TESS", "telescope")
    h["INSTRUME"] = ("TESS Photometer", "detector type")
    h["DATA_REL"] = (max(1, sector), "data release version number")
    h["SECTOR"] = (sector, "Observing sector")
    h["CAMERA"] = (camera, "Camera number")
    h["CCD"] = (ccd, "CCD chip number")
    h["PXTABLE"] = (129, "pixel table id")
    h["RADESYS"] = ("ICRS", "reference frame of celestial coordinates")
    h["RA_NOM"] = (p["ra"], "[deg] RA of camera boresight")
    h["DEC_NOM"] = (p["dec"], "[deg] DEC of camera boresight")
    h["ROLL_NOM"] = (p["roll"], "[deg] roll angle of camera")
    h["CRMITEN"] = (True, "spacecraft cosmic ray mitigation enabled")
    h["CRBLKSZ"] = (10, "[exposures] s/c cosmic ray mitigation block siz")
    h["CRSPOC"] = (False, "SPOC cosmic ray cleaning enabled")
    h["FFIINDEX"] = (ffiindex, "number of FFI cadence interval")
    return h


def _timing_cards(h: fits.Header, cadence_s: float, t0: float, t1: float, date_obs: str,
                  date_end: str) -> None:
    telapse = t1 - t0
    deadc = 0.792
    num_frm = int(np.rint(cadence_s / 2.0))
    h["TIMEREF"] = ("SOLARSYSTEM", "barycentric correction applied to times")
    h["TASSIGN"] = ("SPACECRAFT", "where time is assigned")
    h["TIMESYS"] = ("TDB", "time system is Barycentric Dynamical Time (TDB)")
    h["BJDREFI"] = (2457000, "integer part of BTJD reference date")
    h["BJDREFF"] = (0.0, "fraction of the day in BTJD reference date")
    h["TIMEUNIT"] = ("d", "time unit for TIME, TSTART and TSTOP")
    h["TELAPSE"] = (telapse, "[d] TSTOP - TSTART")
    h["LIVETIME"] = (telapse * deadc, "[d] TELAPSE multiplied by DEADC")
    h["TSTART"] = (t0, "observation start time in BTJD")
    h["TSTOP"] = (t1, "observation stop time in BTJD")
    h["DATE-OBS"] = (date_obs, "TSTART as UTC calendar date")
    h["DATE-END"] = (date_end, "TSTOP as UTC calendar date")
    # MJD-OBS/MJD-END restate DATE-OBS/DATE-END (same calendar, same scale) so that wcslib's
    # 'datfix' has nothing to add: astropy's WCS() then reads the header without FITSFixedWarning.
    h["MJD-OBS"] = (_iso_to_mjd(date_obs), "DATE-OBS as MJD")
    h["MJD-END"] = (_iso_to_mjd(date_end), "DATE-END as MJD")
    h["DEADC"] = (deadc, "deadtime correction")
    h["TIMEPIXR"] = (0.5, "bin time beginning=0 middle=0.5 end=1")
    h["TIERRELA"] = (1.16e-05, "[d] relative time error")
    h["INT_TIME"] = (1.98, "[s] photon accumulation time per frame")
    h["READTIME"] = (0.02, "[s] readout time per frame")
    h["FRAMETIM"] = (2.0, "[s] frame time (INT_TIME + READTIME)")
    h["NUM_FRM"] = (num_frm, "number of frames per time stamp")
    h["TIMEDEL"] = (cadence_s / 86400.0, "[d] time resolution of data")


def spoc_image_header(kind: str, camera: int, ccd: int, cadence_s: float, t0: float, t1: float,
                      date_obs: str, date_end: str, wcs_hdr: fits.Header, barycorr: float,
                      dquality: int) -> fits.Header:
    """A SPOC FFI's image header: ``kind`` ``"cal"`` (extension 1) or ``"uncert"`` (2), its
    timing cards, the WCS cards ``wcs_hdr`` (:func:`sector_wcs_header`), BARYCORR and DQUALITY."""
    h = fits.Header()
    h["INHERIT"] = (True, "inherit the primary header")
    h["EXTNAME"] = (f"CAMERA.CCD {camera}.{ccd} {kind}", "extension name")
    h["EXTVER"] = (1 if kind == "cal" else 2, "extension version number (not format version)")
    h["TELESCOP"] = ("TESS", "telescope")
    h["INSTRUME"] = ("TESS Photometer", "detector type")
    h["CAMERA"] = (camera, "Camera number")
    h["CCD"] = (ccd, "CCD chip number")
    _timing_cards(h, cadence_s, t0, t1, date_obs, date_end)
    h["BUNIT"] = ("electrons/s", "physical units of image data")
    h["BACKAPP"] = (False, "background is subtracted")
    h["DEADAPP"] = (True, "deadtime applied")
    h["VIGNAPP"] = (True, "vignetting or collimator correction applied")
    for ch, g, rn, bl in zip("ABCD", (5.22, 5.21, 5.21, 5.26), (9.45, 9.31, 9.30, 9.84),
                             (6534.5, 6522.1, 6581.9, 6558.3)):
        h[f"GAIN{ch}"] = (g, f"[electrons/count] CCD output {ch} gain")
    for ch, rn in zip("ABCD", (9.45, 9.31, 9.30, 9.84)):
        h[f"READNOI{ch}"] = (rn, f"[electrons] read noise CCD output {ch}")
    h["NREADOUT"] = (48, "number of read per cadence")
    h["FXDOFF"] = (209715, "compression fixed offset")
    for ch, bl in zip("ABCD", (6534.5, 6522.1, 6581.9, 6558.3)):
        h[f"MEANBLC{ch}"] = (bl, f"[count] FSW mean black level CCD output {ch}")
    h.extend(wcs_hdr.cards)
    h["BARYCORR"] = (float(barycorr), "[d] barycentric time correction")
    h["DQUALITY"] = (int(dquality), "data quality flags")
    h["IMAGTYPE"] = (kind, "FFI image type: raw, cal, uncert")
    return h


def tica_header(sector: int, camera: int, ccd: int, cadence_s: float, t0: float, t1: float,
                cadence_no: int, wcs_hdr: fits.Header, qual: int) -> fits.Header:
    """A TICA FFI's header (its only HDU): timing, the WCS cards ``wcs_hdr`` and QUAL_BIT
    ``qual``; ORBIT is 0, for the caller to set."""
    h = fits.Header()
    h["TICAVER"] = ("0.4.4", "TICA software version")
    h["CALIBRAT"] = (True, "calibrated image")
    h["TELESCOP"] = ("TESS", "telescope")
    h["INSTRUME"] = ("TESS Photometer", "detector type")
    h["SECTOR"] = (sector, "Observing sector")
    h["ORBIT"] = (0, "orbit number")  # overwritten by the caller
    h["CAMNUM"] = (camera, "Camera number")
    h["CCDNUM"] = (ccd, "CCD number")
    h["CADENCE"] = (cadence_no, "spacecraft cadence number")
    h["TJD_ZERO"] = (BTJD0, "JD zero point of TJD times")
    h["STARTTJD"] = (t0, "[d] start of exposure in TJD")
    h["MIDTJD"] = (0.5 * (t0 + t1), "[d] mid of exposure in TJD")
    h["ENDTJD"] = (t1, "[d] end of exposure in TJD")
    h["INT_TIME"] = (1.98, "[s] photon accumulation time per frame")
    h["EXPTIME"] = (cadence_s * 0.8 * 0.99, "[s] total exposure time (cosmic-ray mitigated)")
    h["NUM_FRM"] = (int(np.rint(cadence_s / 2.0)), "number of frames per cadence")
    h["QUAL_BIT"] = (int(qual), "quality bit flags")
    h["BUNIT"] = ("electrons/s", "physical units of image data")
    h.extend(wcs_hdr.cards)
    return h
