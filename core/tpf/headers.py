"""The headers of a target pixel file cut from a cube, prepared once per cube and per shape.

Follows astrocut 1.4.0 (``TessCubeCutout``) for the keywords, their order and comments, and
astrocut 0.11.1 for TICA cubes; departs where 1.4.0 is defective (see :mod:`core.tpf.cut`): the
per-column WCS keys (1CTYP5 ... 1CRV5P/2CRV5P) are written, WCS_MSEP/WCS_SIG carry the real
residuals, no stale DATASUM is copied, CREATOR/PROCVER name this package.

Per cube, :func:`template` formats the card images once (the cube's primary header as astrocut
updates it, the PIXELS extension's image keywords from the reference row, the cards the extensions
inherit); a cut of some frames only (a time window, a binning: :mod:`core.cubes.frames`) has its
own template, whose headers say what was done (:func:`_apply_frames`). Per cutout shape,
:func:`shape_headers` lays out the three header blocks, with every
per-cut value (the window's WCS fit, the requested position) at a fixed 20-byte value field: a
"slot" that a cut overwrites without formatting a header.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import numpy as np
from astropy.io import fits
from astropy.time import Time

import core
from core.cubes.cube import Cube
from core.cubes.frames import FrameSelection, cadence_columns
from core.fitsio.cards import card, card_images, header_block
from core.product import Product
from core.quiet import quiet

__all__ = ["CREATOR", "ShapeHeaders", "Template", "pixels_dtype", "shape_headers", "template"]

CREATOR = "tess-cutout-service"

# --------------------------------------------------------------------------------------------
# per-cube templates
# --------------------------------------------------------------------------------------------

# astrocut 1.4.0 TessCubeCutout._img_kwds (keyword -> comment): copied from the WCS row into PIXELS.
_IMG_KWDS = {
    "BACKAPP": "background is subtracted",
    "CDPP0_5": "RMS CDPP on 0.5-hr time scales",
    "CDPP1_0": "RMS CDPP on 1.0-hr time scales",
    "CDPP2_0": "RMS CDPP on 2.0-hr time scales",
    "CROWDSAP": "Ratio of target flux to total flux in op. ap.",
    "DEADAPP": "deadtime applied",
    "DEADC": "deadtime correction",
    "EXPOSURE": "[d] time on source",
    "FLFRCSAP": "Frac. of target flux w/in the op. aperture",
    "FRAMETIM": "[s] frame time [INT_TIME + READTIME]",
    "FXDOFF": "compression fixed offset",
    "GAINA": "[electrons/count] CCD output A gain",
    "GAINB": "[electrons/count] CCD output B gain",
    "GAINC": "[electrons/count] CCD output C gain",
    "GAIND": "[electrons/count] CCD output D gain",
    "INT_TIME": "[s] photon accumulation time per frame",
    "LIVETIME": "[d] TELAPSE multiplied by DEADC",
    "MEANBLCA": "[count] FSW mean black level CCD output A",
    "MEANBLCB": "[count] FSW mean black level CCD output B",
    "MEANBLCC": "[count] FSW mean black level CCD output C",
    "MEANBLCD": "[count] FSW mean black level CCD output D",
    "NREADOUT": "number of read per cadence",
    "NUM_FRM": "number of frames per time stamp",
    "READNOIA": "[electrons] read noise CCD output A",
    "READNOIB": "[electrons] read noise CCD output B",
    "READNOIC": "[electrons] read noise CCD output C",
    "READNOID": "[electrons] read noise CCD output D",
    "READTIME": "[s] readout time per frame",
    "TIERRELA": "[d] relative time error",
    "TIMEDEL": "[d] time resolution of data",
    "TIMEPIXR": "bin time beginning=0 middle=0.5 end=1",
    "TMOFST11": "(s) readout delay for camera 1 and ccd 1",
    "VIGNAPP": "vignetting or collimator correction applied",
}

_DELETE_WILDCARDS = (
    "SC_",
    "RMS",
    "A_",
    "AP_",
    "B_",
    "BP",
    "GAIN",
    "TESS_",
    "CD",
    "CT",
    "CRPIX",
    "CRVAL",
    "MJD",
)
_DELETE_KEYS = {
    "COMMENT", "FILTER", "TIME", "EXPTIME", "ACS_MODE", "DEC_TARG", "FLXWIN", "RA_TARG", "CCDNUM",
    "CAMNUM", "WCSGDF", "UNITS", "CADENCE", "SCIPIXS", "INT_TIME", "PIX_CAT", "REQUANT", "DIFF_HUF",
    "PRIM_HUF", "QUAL_BIT", "SPM", "STARTTJD", "ENDTJD", "CRM", "TJD_ZERO", "CRM_N", "ORBIT_ID", "MIDTJD",
}  # fmt: skip
_INHERIT_SKIP = {"COMMENT", "SIMPLE", "BITPIX", "EXTEND", "NEXTEND", "CHECKSUM", "DATASUM", ""}

# (name, TFORM letter or None for pixel columns, unit, TNULL, TDISP)
_SPOC_COLUMNS = [
    ("TIME", "D", "BJD - 2457000, days", None, "D14.7"),
    ("TIMECORR", "E", "d", None, "E14.7"),
    ("CADENCENO", "J", None, None, "I10"),
    ("RAW_CNTS", "nJ", "count", -1, "I8"),
    ("FLUX", "nE", "e-/s", None, "E14.7"),
    ("FLUX_ERR", "nE", "e-/s", None, "E14.7"),
    ("FLUX_BKG", "nE", "e-/s", None, "E14.7"),
    ("FLUX_BKG_ERR", "nE", "e-/s", None, "E14.7"),
    ("QUALITY", "J", None, None, "B16.16"),
    ("POS_CORR1", "E", "pixel", None, "E14.7"),
    ("POS_CORR2", "E", "pixel", None, "E14.7"),
    ("FFI_FILE", "38A", "pixel", None, None),
]
_NP = {"D": ">f8", "E": ">f4", "J": ">i4", "38A": "S38"}


def _columns(product: str) -> list[tuple[str, str, str | None, int | None, str | None]]:
    if product == Product.SPOC:
        return _SPOC_COLUMNS
    # TICA (astrocut 0.11.1): no TIMECORR, pixel units e-.
    return [
        (n, f, ("e-" if unit == "e-/s" else unit), null, disp)
        for n, f, unit, null, disp in _SPOC_COLUMNS
        if n != "TIMECORR"
    ]


def _delete_primary_keys(h: fits.Header) -> None:
    for key in list(h.keys()):
        if key in _DELETE_KEYS or any(key.startswith(w) for w in _DELETE_WILDCARDS):
            h.remove(key, ignore_missing=True, remove_all=True)


#: the target cards astrocut sets to blank values in a cutout's primary header
_TARGET_CARDS = {
    "OBJECT": ("", "string version of target ID"),
    "TCID": (0, "unique TESS target identifier"),
    "PXTABLE": (0, "pixel table ID"),
    "PMRA": (0.0, "[mas/yr] RA proper motion"),
    "PMDEC": (0.0, "[mas/yr] Dec proper motion"),
    "PMTOTAL": (0.0, "[mas/yr] Total proper motion"),
    "TESSMAG": (0.0, "[mag] TESS magnitude"),
    "TEFF": (0.0, "[K] Effective temperature"),
    "LOGG": (0.0, "[cm/s2] log10 surface gravity"),
    "MH": (0.0, "[log10([M/H])] Metallicity"),
    "RADIUS": (0.0, "[solar radii] Stellar radius"),
    "TICVER": (0, "TIC version"),
    "TICID": (None, "unique TESS target identifier"),
}

#: SPOC cards whose comments astrocut rewords (the values stay the cube's)
_SPOC_TIME_COMMENTS = (
    ("TSTART", "observation start time in TJD of first FFI"),
    ("TSTOP", "observation stop time in TJD of last FFI"),
    ("DATE-OBS", "TSTART as UTC calendar date of first FFI"),
    ("DATE-END", "TSTOP as UTC calendar date of last FFI"),
    ("FFIINDEX", "number of FFI cadence interval of first FFI"),
)


def _as_primary_of_extensions(h: fits.Header) -> None:
    """The cube's primary header made a data-less primary followed by extensions (no checksums)."""
    for key in ("CHECKSUM", "DATASUM"):
        h.remove(key, ignore_missing=True)
    h["NAXIS"] = 0
    for key in [k for k in h if re.fullmatch(r"NAXIS\d+", k)]:
        del h[key]
    if "EXTEND" not in h:
        h.insert("NAXIS", ("EXTEND", True), after=True)  # a primary followed by extensions
    h["EXTEND"] = True


def _provenance_cards(cube: Cube) -> dict[str, tuple[Any, str]]:
    """Who made the file from what, where the target is (0 until cut), and the time system."""
    spoc = cube.product == Product.SPOC
    return {
        "CREATOR": (CREATOR, "software used to produce this file"),
        "PROCVER": (core.__version__, "software version"),
        "FFI_TYPE": (cube.product, "the FFI type used to make the cutouts"),
        "RA_OBJ": (0.0, "[deg] right ascension"),
        "DEC_OBJ": (0.0, "[deg] declination"),
        "TIMEREF": ("SOLARSYSTEM" if spoc else None, "barycentric correction applied to times"),
        "TASSIGN": ("SPACECRAFT" if spoc else None, "where time is assigned"),
        "TIMESYS": ("TDB", "time system is Barycentric Dynamical Time (TDB)"),
        "BJDREFI": (2457000, "integer part of BTJD reference date"),
        "BJDREFF": (0.00000000, "fraction of the day in BTJD reference date"),
        "TIMEUNIT": ("d", "time unit for TIME, TSTART, and TSTOP"),
    }


def _add_tica_cards(h: fits.Header, cube: Cube) -> None:
    """astrocut 0.11.1's additions to a TICA cutout's primary header (SPOC names for TICA values)."""
    h.update(
        {
            "EXTVER": ("1", "extension version number (not format version)"),
            "SIMDATA": (False, "file is based on simulated data"),
            "NEXTEND": ("2", "number of standard extensions"),
            "TSTART": (h.get("STARTTJD"), "observation start time in TJD of first FFI"),
            "TSTOP": (h.get("ENDTJD"), "observation stop time in TJD of last FFI"),
            "CAMERA": (h.get("CAMNUM", cube.camera), "Camera number"),
            "CCD": (h.get("CCDNUM", cube.ccd), "CCD chip number"),
            "ASTATE": (None, "archive state F indicates single orbit processing"),
            "CRMITEN": (h.get("CRM"), "spacecraft cosmic ray mitigation enabled"),
            "CRBLKSZ": (None, "[exposures] s/c cosmic ray mitigation block siz"),
            "FFIINDEX": (h.get("CADENCE"), "number of FFI cadence interval of first FFI"),
            "DATA_REL": (None, "data release version number"),
            "FILEVER": (None, "file format version"),
            "RADESYS": (None, "reference frame of celestial coordinates"),
            "SCCONFIG": (None, "spacecraft configuration ID"),
            "TIMVERSN": (None, "OGIP memo number for file format"),
        }
    )
    if h.get("TSTART") is not None and h.get("TSTOP") is not None:
        h["DATE-OBS"] = (
            Time(h["TSTART"] + 2457000, format="jd").iso,
            "TSTART as Julian Date of first FFI",
        )
        h["DATE-END"] = (Time(h["TSTOP"] + 2457000, format="jd").iso, "TSTOP as Julian Date of last FFI")


def _time_span_cards(h: fits.Header, spoc: bool) -> None:
    """TELAPSE from TSTART/TSTOP, and astrocut's comments on the cube's dates."""
    tstart, tstop = h.get("TSTART", 0), h.get("TSTOP", 0)
    try:
        telapse = float(tstop or 0) - float(tstart or 0)
    except (TypeError, ValueError):
        telapse = 0.0
    h["TELAPSE"] = (telapse, "[d] TSTOP - TSTART")
    if "DATE" in h:
        h["DATE"] = (h["DATE"], "FFI cube creation date")
    if spoc:
        for key, comment in _SPOC_TIME_COMMENTS:
            if key in h:
                h[key] = (h[key], comment)


def _primary_template(cube: Cube) -> fits.Header:
    """The cube's primary header updated as astrocut's ``_update_primary_header`` does (RA/Dec 0)."""
    h = cube.primary_header.copy()
    _as_primary_of_extensions(h)
    h.update(_provenance_cards(cube))
    spoc = cube.product == Product.SPOC
    if not spoc:
        _add_tica_cards(h, cube)
    _delete_primary_keys(h)
    _time_span_cards(h, spoc)
    h.update(_TARGET_CARDS)
    return h


@dataclass
class Template:
    """Card images prepared once per cube."""

    primary: list[str]  # card images; RA_OBJ/DEC_OBJ at ra_idx/dec_idx
    ra_idx: int
    dec_idx: int
    img_cards: list[str]  # PIXELS: EXTNAME, INHERIT, image keywords, WCS_FFI
    pixels_inherit: list[tuple[str, str]]  # (keyword, image) of primary cards to copy
    aperture_inherit: list[tuple[str, str]]
    columns: list[tuple[str, str, str | None, int | None, str | None]]

    @property
    def nbytes(self) -> int:
        """Bytes of card text held (what the cube cache counts)."""
        inherit = len(self.pixels_inherit) + len(self.aperture_inherit)
        return 80 * (len(self.primary) + len(self.img_cards) + inherit) + 2048


_APERTURE_KEYS = {
    "XTENSION", "BITPIX", "NAXIS", "NAXIS1", "NAXIS2", "PCOUNT", "GCOUNT", "EXTNAME", "WCSAXES",
    "CRPIX1", "CRPIX2", "PC1_1", "PC1_2", "PC2_1", "PC2_2", "CDELT1", "CDELT2", "CUNIT1", "CUNIT2",
    "CTYPE1", "CTYPE2", "CRVAL1", "CRVAL2", "LONPOLE", "LATPOLE", "MJDREF", "RADESYS", "NPIXMISS",
    "NPIXSAP", "WCS_MSEP", "WCS_SIG", "INHERIT",
}  # fmt: skip


#: per cube: at most this many templates of frame selections (time windows, binnings) kept
_FRAME_TEMPLATES_PER_CUBE = 32


def template(cube: Cube, frames: FrameSelection | None = None) -> Template:
    """The cube's card images, made once (kept in ``cube.memo``); those of a cut of the frames
    ``frames`` only (unless it is every frame, unbinned), kept per selection (bounded)."""
    if frames is None or frames.is_full:
        kind, key = "tpf", "template"
    else:
        kind, key = "tpf-frames-template", (frames.key, frames.time_min, frames.time_max)
        cube.memo.limit(kind, items=_FRAME_TEMPLATES_PER_CUBE)
    tpl = cube.memo.get(kind, key)
    if tpl is not None:
        return tpl
    # long comments are truncated to fit a card, as astrocut's headers are
    with quiet(fits.verify.VerifyWarning):
        tpl = _make_template(cube, None if kind == "tpf" else frames)
    return cube.memo.put(kind, key, tpl, tpl.nbytes)


def _utc_date(btjd: float, barycorr: float) -> str:
    """The spacecraft time of a BTJD (TDB) time, ``btjd - barycorr``, as a UTC calendar date with
    milliseconds and a ``Z``: how SPOC FFIs write DATE-OBS/DATE-END for TSTART/TSTOP."""
    with quiet():  # ERFA's "dubious year" for dates past its leap-second table
        t = Time(btjd - barycorr + 2457000.0, format="jd", scale="tdb").utc
        t.precision = 3
        return f"{t.isot}Z"


#: keywords of the PIXELS header that are per FFI frame and so scale with the binning
_PER_FRAME_KWDS = ("EXPOSURE", "TIMEDEL", "LIVETIME", "NUM_FRM")


def _apply_frames(h: fits.Header, cube: Cube, frames: FrameSelection) -> None:
    """Say in the primary header which frames were used: the window's TSTART/TSTOP (first and
    last frame used), DATE-OBS/DATE-END, TELAPSE, and the selection (FRAMEBIN ... TWINMAX)."""
    cols = cadence_columns(cube.frames, frames)
    if cols.start is not None and len(cols.start):
        tstart, tstop = float(cols.start[0]), float(cols.stop[-1])
        corr = cube.frames.timecorr  # SPOC's BARYCORR; TICA's times are not barycentric
        first, last = (0.0, 0.0) if corr is None else (float(corr[frames.start]), float(corr[frames.used_stop - 1]))
        for key, value in (("TSTART", tstart), ("TSTOP", tstop), ("DATE-OBS", _utc_date(tstart, first)),
                           ("DATE-END", _utc_date(tstop, last)), ("TELAPSE", tstop - tstart)):
            if key in h:
                h[key] = value
    h["FRAMEBIN"] = (frames.frame_bin, "FFI frames averaged into each cadence")
    h["FRAMEIDX"] = (frames.start, "0-based cube frame of the first cadence")
    h["FRAMEUSE"] = (frames.ncadences * frames.frame_bin, "cube frames used")
    h["FRAMEDRP"] = (frames.dropped, "frames of the window left out (partial last bin)")
    if frames.time_min is not None:
        h["TWINMIN"] = (frames.time_min, "[d] requested window start, BTJD (TDB)")
    if frames.time_max is not None:
        h["TWINMAX"] = (frames.time_max, "[d] requested window end, BTJD (TDB)")


def _make_template(cube: Cube, frames: FrameSelection | None = None) -> Template:
    prim = _primary_template(cube)
    if frames is not None:
        _apply_frames(prim, cube, frames)
    primary = [img for _, img in card_images(prim)]
    keys = [k for k, _ in card_images(prim)]
    ra_idx, dec_idx = keys.index("RA_OBJ"), keys.index("DEC_OBJ")

    img = fits.Header()
    img["EXTNAME"] = "PIXELS"
    img["INHERIT"] = True
    for key, comment in _IMG_KWDS.items():
        value = cube.wcs_header.get(key)
        if frames is not None and frames.frame_bin > 1 and key in _PER_FRAME_KWDS and isinstance(
                value, (int, float)) and not isinstance(value, bool):
            value = value * frames.frame_bin  # a cadence is frame_bin frames
        img[key] = (value, comment)
    img["WCS_FFI"] = (cube.wcs_header.get("FFI_FILE"), "FFI used for cutout WCS")
    img_cards = [im for _, im in card_images(img)]

    columns = _columns(cube.product)
    pixel_keys = {"XTENSION", "BITPIX", "NAXIS", "NAXIS1", "NAXIS2", "PCOUNT", "GCOUNT", "TFIELDS"}
    pixel_keys |= set(img.keys())
    pixel_keys |= {
        f"{p}{i}"
        for i in range(1, len(columns) + 1)
        for p in ("TTYPE", "TFORM", "TUNIT", "TNULL", "TDISP", "TDIM")
    }

    def inherit(present: set[str]) -> list[tuple[str, str]]:
        out, seen = [], set(present)
        for key, image in card_images(prim):
            if key in _INHERIT_SKIP or key == "CONTINUE" or key in seen:
                if key == "CONTINUE" and out and out[-1][0] != "CONTINUE" and out[-1][0] in seen:
                    out.append((key, image))
                continue
            seen.add(key)
            out.append((key, image))
        return out

    tpl = Template(
        primary=primary,
        ra_idx=ra_idx,
        dec_idx=dec_idx,
        img_cards=img_cards,
        pixels_inherit=inherit(pixel_keys),
        aperture_inherit=inherit(_APERTURE_KEYS),
        columns=columns,
    )
    return tpl


# --------------------------------------------------------------------------------------------
# the cut
# --------------------------------------------------------------------------------------------


def pixels_dtype(columns: list, ny: int, nx: int) -> np.dtype:
    dtype = []
    for name, form, *_ in columns:
        if form.startswith("n"):
            dtype.append((name, ">" + ("i4" if form == "nJ" else "f4"), (ny, nx)))
        else:
            dtype.append((name, _NP[form]))
    return np.dtype(dtype)


# Per-column WCS keys (astrocut 0.11.1's set; 1.4.0 drops them): (key pattern, value, comment).
# A value in _CONST_VALUES is the same for every cut; any other names a per-cut slot.
_COLUMN_WCS = [
    ("WCAX{}", "2", "Number of WCS axes"),
    ("1CTYP{}", "ctype1", "right ascension coordinate type"),
    ("2CTYP{}", "ctype2", "declination coordinate type"),
    ("1CRPX{}", "crpix1", "[pixel] reference pixel along image axis 1"),
    ("2CRPX{}", "crpix2", "[pixel] reference pixel along image axis 2"),
    ("1CRVL{}", "crval1", "[deg] right ascension at reference pixel"),
    ("2CRVL{}", "crval2", "[deg] declination at reference pixel"),
    ("1CUNI{}", "deg", "physical unit in column dimension"),
    ("2CUNI{}", "deg", "physical unit in row dimension"),
    ("1CDLT{}", "one", "[deg] pixel scale in RA dimension"),
    ("2CDLT{}", "one", "[deg] pixel scale in DEC dimension"),
    ("11PC{}", "pc11", "Coordinate transformation matrix element"),
    ("12PC{}", "pc12", "Coordinate transformation matrix element"),
    ("21PC{}", "pc21", "Coordinate transformation matrix element"),
    ("22PC{}", "pc22", "Coordinate transformation matrix element"),
    ("WCSN{}P", "physical", "table column WCS name"),
    ("WCAX{}P", "2", "table column physical WCS dimensions"),
    ("1CTY{}P", "rawx", "table column physical WCS axis 1 type, CCD col"),
    ("2CTY{}P", "rawy", "table column physical WCS axis 2 type, CCD row"),
    ("1CUN{}P", "pixel", "table column physical WCS axis 1 unit"),
    ("2CUN{}P", "pixel", "table column physical WCS axis 2 unit"),
    ("1CRV{}P", "crv1p", "table column physical WCS ax 1 ref value"),
    ("2CRV{}P", "crv2p", "table column physical WCS ax 2 ref value"),
    ("1CDL{}P", "one", "table column physical WCS a1 step"),
    ("2CDL{}P", "one", "table column physical WCS a2 step"),
    ("1CRP{}P", "int1", "table column physical WCS a1 reference"),
    ("2CRP{}P", "int1", "table column physical WCS a2 reference"),
]
_CONST_VALUES = {
    "2": 2, "ctype1": "RA---TAN", "ctype2": "DEC--TAN", "deg": "deg", "one": 1.0, "physical": "PHYSICAL",
    "rawx": "RAWX", "rawy": "RAWY", "pixel": "PIXEL", "int1": 1,
}  # fmt: skip
#: per-cut values that are integers (all others are floats)
_INT_SLOTS = {"crv1p", "crv2p"}
_RA_COMMENT, _DEC_COMMENT = "[deg] right ascension", "[deg] declination"


class _Cards:
    """The card images of one header, and which of them carry a per-cut value ("slots").

    A slot card is formatted with a placeholder of the value's type: every number is written
    right-justified in the fixed 20-character value field (columns 11-30), so the cut only
    overwrites those 20 bytes.
    """

    def __init__(self) -> None:
        self.images: list[str] = []
        self.slots: list[tuple[str, int]] = []  # (value name, card index)

    def add(self, key: str, value: Any, comment: str = "") -> None:
        self.images.append(card(key, value, comment))

    def slot(self, key: str, name: str, comment: str = "") -> None:
        image = card(key, 0 if name in _INT_SLOTS else 0.0, comment)
        assert image[8:10] == "= ", key  # keys of at most 8 characters: the value is at [10:30]
        self.slots.append((name, len(self.images)))
        self.images.append(image)

    def inherit(self, pairs: list[tuple[str, str]]) -> None:
        for key, image in pairs:
            if key == "RA_OBJ":
                self.slot(key, "ra", _RA_COMMENT)
            elif key == "DEC_OBJ":
                self.slot(key, "dec", _DEC_COMMENT)
            else:
                self.images.append(image)

    def block(self) -> bytes:
        return header_block(self.images)


@dataclass
class ShapeHeaders:
    """The three header blocks of a TPF of one cutout shape, and where their slots are.

    ``slots`` lists, per block (primary, PIXELS, APERTURE), ``(value name, card index)``: the value
    field of card ``index`` (bytes 10-30 of the card) takes the named per-cut value.
    """

    blocks: tuple[bytes, bytes, bytes]
    slots: tuple[list[tuple[str, int]], list[tuple[str, int]], list[tuple[str, int]]]


def shape_headers(cube: Cube, tpl: Template, nx: int, ny: int, dtype: np.dtype,
                  nrows: int | None = None) -> ShapeHeaders:
    """Lay out the primary, PIXELS and APERTURE headers of an ``nx`` x ``ny`` TPF of ``cube`` with
    ``nrows`` cadences (default: every frame)."""
    prim = _primary_cards(tpl)
    pix = _pixels_cards(tpl, nx, ny, dtype, cube.nframes if nrows is None else nrows)
    ap = _aperture_cards(tpl, nx, ny)
    return ShapeHeaders((prim.block(), pix.block(), ap.block()), (prim.slots, pix.slots, ap.slots))


def _primary_cards(tpl: Template) -> _Cards:
    """The primary header: the template's cards, RA_OBJ and DEC_OBJ as slots."""
    prim = _Cards()
    for i, image in enumerate(tpl.primary):
        if i == tpl.ra_idx:
            prim.slot("RA_OBJ", "ra", _RA_COMMENT)
        elif i == tpl.dec_idx:
            prim.slot("DEC_OBJ", "dec", _DEC_COMMENT)
        else:
            prim.images.append(image)
    return prim


def _pixels_cards(tpl: Template, nx: int, ny: int, dtype: np.dtype, nrows: int) -> _Cards:
    """The PIXELS table's header: ``nrows`` rows of ``dtype``, the columns (pixel columns of
    ``nx`` x ``ny``, with their per-cut WCS slots), the image cards and those inherited."""
    npix = nx * ny
    pix = _Cards()
    pix.add("XTENSION", "BINTABLE", "binary table extension")
    pix.add("BITPIX", 8, "array data type")
    pix.add("NAXIS", 2, "number of array dimensions")
    pix.add("NAXIS1", dtype.itemsize, "length of dimension 1")
    pix.add("NAXIS2", nrows, "length of dimension 2")
    pix.add("PCOUNT", 0, "number of group parameters")
    pix.add("GCOUNT", 1, "number of groups")
    pix.add("TFIELDS", len(tpl.columns), "number of table fields")
    for i, (name, form, unit, null, disp) in enumerate(tpl.columns, start=1):
        pixel = form.startswith("n")
        pix.add(f"TTYPE{i}", name, "column name")
        pix.add(f"TFORM{i}", f"{npix}{form[1]}" if pixel else form, "column format")
        if unit:
            pix.add(f"TUNIT{i}", unit, "unit")
        if null is not None:
            pix.add(f"TNULL{i}", null, "null value")
        if disp:
            pix.add(f"TDISP{i}", disp, "display format")
        if pixel:
            pix.add(f"TDIM{i}", f"({nx}, {ny})", "multi-dimensional array spec")
            # 1CRVnP/2CRVnP = 1-based FFI column/row of the cutout's pixel (0, 0), as in SPOC TPFs
            # (lightkurve reads them as ``tpf.column/row``).
            for pattern, value, comment in _COLUMN_WCS:
                if value in _CONST_VALUES:
                    pix.add(pattern.format(i), _CONST_VALUES[value], comment)
                else:
                    pix.slot(pattern.format(i), value, comment)
    pix.images.extend(tpl.img_cards)
    pix.inherit(tpl.pixels_inherit)
    return pix


def _aperture_cards(tpl: Template, nx: int, ny: int) -> _Cards:
    """The APERTURE image's header: the linear TAN WCS as astropy's ``WCS.to_header()`` writes it
    (PC matrix = CD, CDELT 1), its values as slots."""
    ap = _Cards()
    ap.add("XTENSION", "IMAGE", "Image extension")
    ap.add("BITPIX", 32, "array data type")
    ap.add("NAXIS", 2, "number of array dimensions")
    ap.add("NAXIS1", nx)
    ap.add("NAXIS2", ny)
    ap.add("PCOUNT", 0, "number of parameters")
    ap.add("GCOUNT", 1, "number of groups")
    ap.add("EXTNAME", "APERTURE")
    ap.add("WCSAXES", 2, "Number of coordinate axes")
    ap.slot("CRPIX1", "crpix1", "Pixel coordinate of reference point")
    ap.slot("CRPIX2", "crpix2", "Pixel coordinate of reference point")
    ap.slot("PC1_1", "pc11", "Coordinate transformation matrix element")
    ap.slot("PC1_2", "pc12", "Coordinate transformation matrix element")
    ap.slot("PC2_1", "pc21", "Coordinate transformation matrix element")
    ap.slot("PC2_2", "pc22", "Coordinate transformation matrix element")
    ap.add("CDELT1", 1.0, "[deg] Coordinate increment at reference point")
    ap.add("CDELT2", 1.0, "[deg] Coordinate increment at reference point")
    ap.add("CUNIT1", "deg", "Units of coordinate increment and value")
    ap.add("CUNIT2", "deg", "Units of coordinate increment and value")
    ap.add("CTYPE1", "RA---TAN", "Right ascension, gnomonic projection")
    ap.add("CTYPE2", "DEC--TAN", "Declination, gnomonic projection")
    ap.slot("CRVAL1", "crval1", "[deg] Coordinate value at reference point")
    ap.slot("CRVAL2", "crval2", "[deg] Coordinate value at reference point")
    ap.add("LONPOLE", 180.0, "[deg] Native longitude of celestial pole")
    ap.slot("LATPOLE", "crval2", "[deg] Native latitude of celestial pole")
    ap.add("MJDREF", 0.0, "[d] MJD of fiducial time")
    ap.add("RADESYS", "ICRS", "Equatorial coordinate system")
    ap.add("NPIXMISS", None, "Number of op. aperture pixels not collected")
    ap.add("NPIXSAP", None, "Number of pixels in optimal aperture")
    ap.slot("WCS_MSEP", "msep", "[deg] Max offset between cutout WCS and FFI WCS")
    ap.slot("WCS_SIG", "sig", "[deg] Error measurement of cutout WCS fit")
    ap.add("INHERIT", True)
    ap.inherit(tpl.aperture_inherit)
    return ap
