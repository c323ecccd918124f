"""Planning Zcut and Hapcut (MAST's deep-field and HAP image cutout services); no HTTP here.

Images are found in the survey index (:class:`core.images.index.ImageIndex`, built at start-up),
never by opening files per request; each image chosen is confined to its own survey's locations
(:func:`core.storage.confine.confine`) before it is opened, and cut by the engine
(:func:`core.images.cutouts.cut_images`, :func:`core.images.render.img_cut`).

What MAST answers, and so what these planners make (astroquery reads every answer as a zip):

- Zcut FITS: one file per survey, ``<survey>_<ra:.6f>_<dec:.6f>_<x>pix-x-<y>pix_astrocut.fits``,
  holding astrocut's PRIMARY and one ``CUTOUT`` HDU per survey image at the position (the
  first of its image HDUs there), i.e. ``fits_cut(survey_images, single_outfile=True,
  cutout_prefix=survey)``, as in the zips MAST serves (e.g. ``candels_gn_30mas_189.492060_
  62.206150_100.0pix-x-100.0pix_astrocut.fits`` with one CUTOUT per filter).
- Zcut JPEG/PNG: one image per survey image, ``<image stem>_<ra:.6f>_<dec:.6f>_<x>pix-x-<y>pix
  _astrocut.<fmt>``, rendered by :func:`core.images.render.img_cut`.
- Hapcut: one FITS per image of the ``hap`` survey (``fits_cut(..., single_outfile=False)``), with
  every image HDU at the position cut (SCI and WHT in a HAP file, as MAST's HAPcut cuts both),
  named as drizzlepac's ``make_the_cut`` names MAST's cutouts
  (``hst_cutout_skycell-p1882x12y06-ra351d3478-decn28d4978_uvis_f275w.fits``) when the input has
  a HAP MVM name, else ``<stem>_<ra:.6f>_<dec:.6f>_<x>pix-x-<y>pix_astrocut.fits``.

Departures from MAST, on purpose: ``x`` is the width and ``y`` the height on Hapcut too (MAST's
HAPcut swaps them: astroquery's ``size=[2, 3]``, documented as (ny, nx), comes back 3 rows by 2
columns); Hapcut keeps astrocut's PRIMARY and ``CUTOUT`` extension names (drizzlepac copies the
input's primary header and renames the extensions ``SCI_CUTOUT_<cell>_<detector>_<filter>``);
and drizzlepac's name takes the declination's fraction of ``dec % 1`` (wrong when negative) and
reads digits from the float's binary value, where this takes them from ``abs(dec)`` written in
decimal, as its documented examples show.
"""

from __future__ import annotations

import io
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from app.params.surveys import HapcutParams, SurveyListParams, ZcutParams
from app.params.values import first_values
from app.planning.answers import Cost, CutoutStats, NoData, Planner, ZipAnswer, ZipMember, lookup_cost
from app.planning.context import Context, api_fields, check_pixel_size, safe_name
from core.cutout_size import CutoutSize
from core.errors import InvalidInputError, NoDataError, NotFoundError
from core.images.index import ImageIndex, file_stem

__all__ = [
    "HAPCUT",
    "HAP_NO_DATA",
    "SURVEY_NAMES",
    "ZCUT_FIELDS",
    "ZCUT_FITS",
    "ZCUT_IMAGES",
    "Selection",
    "SurveyImage",
    "hap_cutout_name",
    "plan_hapcut",
    "plan_survey_names",
    "plan_zcut_fits",
    "plan_zcut_images",
    "select",
    "size_label",
]

#: the engine's parameter names -> the Zcut/Hapcut API's
ZCUT_FIELDS = {
    "coordinates": "ra", "cutout_size": "x", "cutout_size.y": "y", "input_files": "survey", "uri": "survey",
    "path": "survey", "extension": "survey", "img_arr": "survey", "stretch": "stretch", "img_format": "format",
    "minmax_percent": "minmax_percent", "minmax_value": "minmax_value",
}  # fmt: skip

#: what MAST's Hapcut says when no HAP image holds the position (astroquery's tests match it)
HAP_NO_DATA = "Missing HAP files for input target. Cutout not performed."
#: what Zcut and Hapcut say on a server that hosts nothing for them: nowhere else to look
NO_SURVEYS = "This server hosts no surveys for Zcut (its CUTOUT_SURVEYS setting configures none)."
NO_HAP = "This server hosts no HAP images for Hapcut (its CUTOUT_SURVEYS setting has no survey named 'hap')."

Roots = tuple[list[str], list[str]]


@dataclass(frozen=True)
class SurveyImage:
    """One indexed file chosen for a request: its survey, real path or URI, the HDUs whose
    footprint holds the position, and the name errors show for it (``<survey>/<relative path>``)."""

    survey: str
    uri: str
    exts: tuple[int, ...]
    shown: str


@dataclass
class Selection:
    """The images a request will cut, found in the index (nothing opened yet)."""

    ra: float
    dec: float
    size: CutoutSize
    images: list[SurveyImage]
    roots: dict[str, Roots]
    on_missing: Callable[[str], None] | None = None

    @property
    def shown(self) -> dict[str, str]:
        """Each image's path -> the name errors show for it."""
        return {image.uri: image.shown for image in self.images}

    @property
    def count(self) -> int:
        return len(self.images)

    @property
    def coordinates(self) -> str:
        return f"{self.ra % 360.0!r} {self.dec!r}"


def _shown_name(survey: str, uri: str, roots: Roots) -> str:
    """An image's name relative to its survey's location (never a server path)."""
    local, prefixes = roots
    for prefix in prefixes:
        base = prefix.rstrip("/") + "/"
        if uri.startswith(base):
            return f"{survey}/{uri[len(base):]}"
    for root in local:
        real = os.path.realpath(root)
        if uri.startswith(real.rstrip(os.sep) + os.sep):
            return f"{survey}/{os.path.relpath(uri, real)}"
    return f"{survey}/{os.path.basename(uri)}"


def survey_names(index: ImageIndex, ra: float, dec: float, radius_deg: float,
                 exclude: Sequence[str] = ()) -> list[str]:
    """The surveys with an image whose footprint (grown by ``radius_deg``) holds the position, in
    registry order (Zcut's ``survey`` answer)."""
    names = dict.fromkeys(e.survey for e in index.containing(ra, dec, radius_deg) if e.survey not in exclude)
    return list(names)


def plan_survey_names(ctx: Context, p: SurveyListParams) -> dict[str, list[str]]:
    """Zcut's ``survey`` answer for the request (Hapcut's survey is not listed)."""
    from app.surveys import HAP_SURVEY

    return {"surveys": survey_names(ctx.surveys.current, p.ra, p.dec, p.radius_deg, (HAP_SURVEY,))}


def select(index: ImageIndex, ra: float, dec: float, size: CutoutSize, *, surveys: Sequence[str],
           roots: Callable[[str], Roots], exclude: Sequence[str] = (), only: str | None = None,
           on_missing: Callable[[str], None] | None = None) -> Selection | NoData:
    """The indexed images holding (ra, dec) degrees, or why there are none.

    Parameters
    ----------
    index : the survey index snapshot of the request.
    surveys : the surveys asked for (empty: every hosted one but ``exclude``).
    roots : ``roots(survey) -> (local folders, s3 prefixes)``, what its images are confined to.
    exclude : surveys never served here (Zcut leaves ``hap`` to Hapcut).
    only : the one survey served here (Hapcut's ``hap``), overriding ``surveys``.
    on_missing : called with an indexed file's URI when a cut finds it gone.
    """
    hosted = [name for name in index.surveys() if name not in exclude]
    if only is not None:
        wanted = [only] if only in hosted else []
        if not wanted:
            return NoData(NO_HAP)
    elif not hosted:
        return NoData(NO_SURVEYS)
    elif surveys:
        wanted = [name for name in dict.fromkeys(surveys) if name in hosted]
        if not wanted:
            return NoData(f"Survey {first_values(dict.fromkeys(surveys))} is not hosted on this server; hosted "
                          f"surveys: {first_values(hosted, 20) or 'none'}.")
    else:
        wanted = hosted
    entries = index.containing(ra, dec, 0.0, surveys=wanted)
    if not entries:
        if only is not None:
            return NoData(HAP_NO_DATA)
        where = f" of survey {first_values(wanted)}" if surveys else " of the hosted surveys"
        return NoData(f"The position RA {ra % 360.0:.6f} Dec {dec:.6f} is on no image{where}.")
    grouped: dict[tuple[str, str], list[int]] = {}
    for entry in entries:
        grouped.setdefault((entry.survey, entry.uri), []).append(entry.ext)
    chosen_roots = {name: roots(name) for name in wanted}
    images = [SurveyImage(survey, uri, tuple(exts), _shown_name(survey, uri, chosen_roots[survey]))
              for (survey, uri), exts in grouped.items()]
    return Selection(ra, dec, size, images, chosen_roots, on_missing)


# ------------------------------------------------------------------------------------------
# names
# ------------------------------------------------------------------------------------------


def size_label(size: CutoutSize) -> str:
    """astrocut 0.x's size part of MAST's Zcut names: each side as an astropy Quantity prints,
    spaces dropped (``5.0pix-x-5.0pix``, ``0.001deg-x-0.002deg``), x first."""
    sides = [f"{float(v)}{'deg' if unit == 'deg' else 'pix'}" for v, unit in zip((size.x, size.y), size.units)]
    return f"{sides[0]}-x-{sides[1]}"


def _position_label(ra: float, dec: float) -> str:
    return f"{ra % 360.0:.6f}_{dec:.6f}"


def _degrees_parts(value: float) -> tuple[str, str]:
    """``abs(value)``'s whole degrees and up to four digits of its fraction, truncated, trailing
    zeros dropped (drizzlepac's form, read from the decimal value: ``84.9207`` gives ``9207``
    where drizzlepac's ``str(84.9207 % 1)`` gives ``9206``)."""
    whole, _, fraction = f"{abs(value):.10f}".partition(".")
    return whole, fraction[:4].rstrip("0") or "0"


def hap_cutout_name(input_name: str, ra: float, dec: float) -> str | None:
    """drizzlepac's ``make_the_cut`` name for a cutout of a HAP MVM file (None for other names):
    ``hst_skycell-p1882x12y06_wfc3_uvis_f275w_coarse-all_drz.fits`` at (351.347812, 28.497808)
    becomes ``hst_cutout_skycell-p1882x12y06-ra351d3478-decn28d4978_uvis_f275w_coarse.fits``; an
    exposure-level input (``..._coarse-all-ibp505mf_drz.fits``) adds ``-ibp505mf``."""
    tokens = os.path.basename(input_name).split("_")
    if len(tokens) < 7 or tokens[0].lower() != "hst" or not re.match(r"^skycell-p\w+$", tokens[1], re.IGNORECASE):
        return None
    skycell, detector, filt, label = tokens[1].split("-", 1)[1], tokens[3], tokens[4], tokens[5]
    (ra_whole, ra_fraction), (dec_whole, dec_fraction) = _degrees_parts(ra % 360.0), _degrees_parts(dec)
    ns = "s" if dec < 0 else "n"
    name = (f"hst_cutout_skycell-{skycell}-ra{ra_whole}d{ra_fraction}-dec{ns}{dec_whole}d{dec_fraction}"
            f"_{detector}_{filt}{'_coarse' if 'COARSE' in label.upper() else ''}")
    exposure = label.split("-")[-1]
    if exposure.upper() != "ALL":
        name += f"-{exposure}"
    return safe_name(name + ".fits", limit=200)


def _unique(names: list[str]) -> list[str]:
    """The names, a repeated one numbered (``x.fits``, ``x_1.fits``): zip members must differ."""
    seen: dict[str, int] = {}
    out = []
    for name in names:
        if name in seen:
            seen[name] += 1
            stem, dot, ext = name.rpartition(".")
            name = f"{stem}_{seen[name]}.{ext}" if dot else f"{name}_{seen[name]}"
        else:
            seen[name] = 0
        out.append(name)
    return out


# ------------------------------------------------------------------------------------------
# cutting
# ------------------------------------------------------------------------------------------


def _open_path(ctx: Context, sel: Selection, image: SurveyImage) -> str:
    """The image's path, confined to its own survey's locations (the index found it there; this
    checks again, at the moment of opening)."""
    from core.storage.confine import confine

    local, prefixes = sel.roots[image.survey]
    return confine(image.uri, local, prefixes, field="survey")


def _attempt(sel: Selection, image: SurveyImage, cut: Callable[[], Any], empty: Any) -> Any:
    """``cut()``, or ``empty`` when the image has no data at the position or has changed since
    it was indexed (gone, or its HDUs renumbered): the others are still served."""
    try:
        return cut()
    except NoDataError:
        return empty
    except NotFoundError:
        if sel.on_missing is not None:
            sel.on_missing(image.uri)
        return empty
    except InvalidInputError as exc:
        if exc.field != "extension":
            raise
        if sel.on_missing is not None:
            sel.on_missing(image.uri)
        return empty


def _cuts(ctx: Context, sel: Selection, image: SurveyImage, exts: Sequence[int]) -> list[Any]:
    """The engine's cutouts (:class:`core.images.cutouts.ImageCut`) of ``exts`` of one image."""
    from core.images.cutouts import cut_images

    def cut() -> list[Any]:
        path = _open_path(ctx, sel, image)
        result = cut_images([path], sel.coordinates, sel.size, extension=list(exts), s3=ctx.s3, limits=ctx.limits)
        return result.by_file.get(path, [])

    return _attempt(sel, image, cut, [])


def _fits_bytes(coord: Any, hdus: Sequence[Any]) -> bytes:
    from astropy.io import fits

    from core.images.cutouts import primary_hdu
    from core.quiet import quiet

    buf = io.BytesIO()
    with quiet(fits.verify.VerifyWarning):  # a long ORIG_FLE truncates its card's comment: harmless
        fits.HDUList([primary_hdu(coord), *hdus]).writeto(buf)  # a small cutout, in memory: short
    return buf.getvalue()


def _zip(files: list[tuple[str, bytes]], zip_name: str, stats: CutoutStats) -> ZipAnswer:
    names = _unique([name for name, _ in files])
    members = [ZipMember(name, (lambda cancel, d=data: d), len(data), memory_bytes=len(data))
               for name, (_, data) in zip(names, files)]
    return ZipAnswer(zip_name, members, stats)


def _zip_name(service: str, sel: Selection) -> str:
    return safe_name(f"{service}_{_position_label(sel.ra, sel.dec)}_{sel.size.label()}.zip", limit=200)


def _no_cut_data(sel: Selection) -> NoData:
    return NoData(f"The cutout at RA {sel.ra % 360.0:.6f} Dec {sel.dec:.6f} has no valid pixels in any survey image.")


def plan_zcut_fits(ctx: Context, sel: Selection, options: ZcutParams | None = None) -> ZipAnswer | NoData:
    """Zcut's FITS answer: one file per survey with a CUTOUT HDU per image (module docstring)."""
    from core.geometry import parse_coordinates

    with api_fields(ZCUT_FIELDS, sel.shown):
        coord = parse_coordinates(sel.coordinates)
        by_survey: dict[str, list[Any]] = {}
        for image in sel.images:
            by_survey.setdefault(image.survey, []).extend(c.hdu for c in _cuts(ctx, sel, image, image.exts[:1]))
        label = f"{_position_label(sel.ra, sel.dec)}_{size_label(sel.size)}"
        files = [(safe_name(f"{survey}_{label}_astrocut.fits", limit=200), _fits_bytes(coord, hdus))
                 for survey, hdus in by_survey.items() if hdus]
    if not files:
        return _no_cut_data(sel)
    first = next(hdus for hdus in by_survey.values() if hdus)[0]
    ny, nx = first.data.shape[-2:]
    count = sum(len(h) for h in by_survey.values())
    return _zip(files, _zip_name("zcut", sel), CutoutStats(int(nx), int(ny), 1, count))


def plan_zcut_images(ctx: Context, sel: Selection, options: ZcutParams) -> ZipAnswer | NoData:
    """Zcut's JPEG/PNG answer: one image per survey image (:func:`core.images.render.img_cut` with its
    defaults: ``minmax_percent`` [0.5, 99.5] unless an interval is given)."""
    from core.images.render import img_cut

    fmt = options.output_format
    render = options.render_options()
    pil_format = "JPEG" if fmt == "jpg" else "PNG"
    label = f"{_position_label(sel.ra, sel.dec)}_{size_label(sel.size)}"
    files: list[tuple[str, bytes]] = []
    first: Any = None
    with api_fields(ZCUT_FIELDS, sel.shown):
        for image in sel.images:
            def cut(image: SurveyImage = image) -> list[Any]:
                path = _open_path(ctx, sel, image)
                return img_cut([path], sel.coordinates, sel.size, **render, img_format=fmt, memory_only=True,
                               s3=ctx.s3, limits=ctx.limits, extension=list(image.exts[:1]))

            for img in _attempt(sel, image, cut, []):
                buf = io.BytesIO()
                img.save(buf, format=pil_format)
                stem = safe_name(file_stem(image.uri), default="image")
                files.append((f"{stem}_{label}_astrocut.{fmt}", buf.getvalue()))
                if first is None:
                    first = img
    if not files:
        return _no_cut_data(sel)
    return _zip(files, _zip_name("zcut", sel), CutoutStats(first.width, first.height, 1, len(files)))


def plan_hapcut(ctx: Context, sel: Selection, options: HapcutParams | None = None) -> ZipAnswer | NoData:
    """Hapcut's answer: one FITS per HAP image, every image HDU at the position cut (module docstring)."""
    from core.geometry import parse_coordinates

    files: list[tuple[str, bytes]] = []
    shape: tuple[int, ...] | None = None
    count = 0
    with api_fields(ZCUT_FIELDS, sel.shown):
        coord = parse_coordinates(sel.coordinates)
        for image in sel.images:
            cuts = _cuts(ctx, sel, image, image.exts)
            if not cuts:
                continue
            name = hap_cutout_name(image.uri, sel.ra, sel.dec) or safe_name(
                f"{file_stem(image.uri)}_{_position_label(sel.ra, sel.dec)}_{size_label(sel.size)}_astrocut.fits",
                limit=200)
            files.append((name, _fits_bytes(coord, [c.hdu for c in cuts])))
            shape = shape or cuts[0].data.shape
            count += len(cuts)
    if not files or shape is None:
        return NoData(HAP_NO_DATA)
    return _zip(files, _zip_name("hapcut", sel), CutoutStats(int(shape[-1]), int(shape[-2]), 1, count))


def selection_cost(ctx: Context, sel: Selection, options: Any = None) -> Cost:
    """What cutting the selected images holds at most (each image's cutout, made whole); a size
    past the limits is refused first."""
    from app.planning.images import image_memory

    check_pixel_size(ctx, sel.size, pixel_deg=None)
    return Cost(image_memory(ctx, sel.size, sel.count))


SURVEY_NAMES = Planner(plan_survey_names, lookup_cost)
ZCUT_FITS = Planner(plan_zcut_fits, selection_cost)
ZCUT_IMAGES = Planner(plan_zcut_images, selection_cost)
HAPCUT = Planner(plan_hapcut, selection_cost)
