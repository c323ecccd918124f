"""PNG/JPEG cutouts of FITS images (astrocut's ``img_cut`` and ``normalize_img``).

Follows astrocut 1.4.0: the same cutouts as :func:`core.images.cutouts.fits_cut`, normalised by
interval -> clip to 0..1 -> stretch -> x255 -> NaN to 0 -> truncate to uint8 (-> 255 - v when
inverted), shown north up (rows flipped), mode L (RGB when colorized), metadata in PNG text chunks or
the JPEG/TIFF EXIF ImageDescription (JSON). Departures: ``colorize`` needs exactly three cutouts
(astrocut silently used the first three); one image is written per cutout (astrocut wrote only one per
input file); files are written under a temporary name and renamed; ``memory_only`` returns PIL images.
"""

from __future__ import annotations

import json
import logging
import os
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from astropy.visualization import (
    AsinhStretch,
    AsymmetricPercentileInterval,
    LinearStretch,
    LogStretch,
    ManualInterval,
    MinMaxInterval,
    SinhStretch,
    SqrtStretch,
)
from astropy.wcs.utils import proj_plane_pixel_scales
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from core.errors import InputWarning, InvalidInputError
from core.images.cutouts import (
    ORIGIN,
    ImageCut,
    cut_images,
    cutout_filename,
    input_stem,
    report_cuts,
    software_version,
)
from core.storage.atomic import atomic_output

log = logging.getLogger(__name__)

STRETCHES = {
    "asinh": AsinhStretch,
    "sinh": SinhStretch,
    "sqrt": SqrtStretch,
    "log": LogStretch,
    "linear": LinearStretch,
}
# suffix -> PIL format name; formats that hold mode L and RGB images
FORMATS = {".jpg": "JPEG", ".jpeg": "JPEG", ".png": "PNG", ".tif": "TIFF", ".tiff": "TIFF", ".bmp": "BMP",
           ".gif": "GIF"}
DEFAULT_PERCENT = (0.5, 99.5)


def _pair(value: Any, field: str) -> tuple[float, float]:
    try:
        lo, hi = (float(v) for v in value)
    except (TypeError, ValueError):
        raise InvalidInputError(f"{field} must be two numbers [low, high], not {value!r}", field=field) from None
    if not (np.isfinite(lo) and np.isfinite(hi)):
        raise InvalidInputError(f"{field} must be finite", field=field)
    return lo, hi


def parse_stretch(stretch: Any) -> str:
    if not isinstance(stretch, str) or stretch.lower() not in STRETCHES:
        raise InvalidInputError(f"Stretch {stretch!r} is not supported; use one of {list(STRETCHES)}",
                                field="stretch")
    return stretch.lower()


def normalize_img(
    img_arr: np.ndarray,
    stretch: str = "asinh",
    minmax_percent: Sequence[float] | None = None,
    minmax_value: Sequence[float] | None = None,
    invert: bool = False,
) -> np.ndarray:
    """Scale an image to 0..255 uint8 with an interval and a stretch (astrocut's ``normalize_img``).

    Order as astrocut: interval (``minmax_percent`` -> AsymmetricPercentileInterval, else
    ``minmax_value`` -> ManualInterval, else MinMaxInterval), clip to 0..1, stretch, x255, NaN -> 0,
    truncate to uint8, invert as ``255 - v``. The stretch name is case-insensitive (astrocut's
    standalone function was not). When both intervals are given, ``minmax_value`` is ignored with a
    warning.

    Raises
    ------
    InvalidInputError
        Empty or all-NaN array, unknown stretch, or an interval that is not two finite numbers,
        low below high (astrocut silently inverted ``[99, 1]``).
    """
    try:
        arr = np.asarray(img_arr, dtype=float)
    except (TypeError, ValueError):
        raise InvalidInputError("img_arr must be an array of numbers", field="img_arr") from None
    if arr.size == 0:
        raise InvalidInputError("Input image array is empty.", field="img_arr")
    if not np.isfinite(arr).any():
        raise InvalidInputError("Input image has no finite pixel (all NaN or infinite).", field="img_arr")
    stretch_obj = STRETCHES[parse_stretch(stretch)]()
    if minmax_percent is not None:
        lo, hi = _pair(minmax_percent, "minmax_percent")
        if not (0 <= lo <= 100 and 0 <= hi <= 100):
            raise InvalidInputError("minmax_percent must lie within 0..100", field="minmax_percent")
        if lo >= hi:
            raise InvalidInputError(f"minmax_percent must be [low, high] with low < high, not [{lo:g}, {hi:g}]",
                                    field="minmax_percent")
        interval = AsymmetricPercentileInterval(lo, hi)
        if minmax_value is not None:
            warnings.warn("Both minmax_percent and minmax_value are set, minmax_value will be ignored.",
                          InputWarning)
    elif minmax_value is not None:
        lo, hi = _pair(minmax_value, "minmax_value")
        if lo >= hi:
            raise InvalidInputError(f"minmax_value must be [low, high] with low < high, not [{lo:g}, {hi:g}]",
                                    field="minmax_value")
        interval = ManualInterval(lo, hi)
    else:
        interval = MinMaxInterval()
    with np.errstate(invalid="ignore", divide="ignore"):
        scaled = interval(arr, clip=True)
        scaled = stretch_obj(scaled, clip=True)
        np.multiply(255, scaled, out=scaled)
    out = np.nan_to_num(scaled, nan=0).astype(np.uint8)
    if invert:
        np.subtract(255, out, out=out)
    return out


def parse_format(img_format: Any) -> str:
    if not isinstance(img_format, str) or not img_format.strip():
        raise InvalidInputError(f"Image format {img_format!r} is not supported", field="img_format")
    fmt = img_format.strip().lower()
    fmt = fmt if fmt.startswith(".") else f".{fmt}"
    if fmt not in FORMATS:
        raise InvalidInputError(f"Image format {img_format!r} is not supported; use one of "
                                f"{sorted(s[1:] for s in FORMATS)}", field="img_format")
    return fmt


def image_metadata(cut: ImageCut, files: Sequence[str], coord: Any) -> dict[str, Any]:
    """The metadata astrocut attaches to an image cutout."""
    meta: dict[str, Any] = {}
    if len(files) == 1:
        meta["input_file"] = Path(files[0]).name
    else:
        meta["input_files"] = ", ".join(Path(f).name for f in files)
    meta["cutout_size_x_pix"] = int(cut.data.shape[1])
    meta["cutout_size_y_pix"] = int(cut.data.shape[0])
    meta["pixel_scale_arcsec_per_pix"] = float(proj_plane_pixel_scales(cut.wcs.celestial)[0] * 3600)
    meta["center_ra_deg"] = float(coord.ra.deg)
    meta["center_dec_deg"] = float(coord.dec.deg)
    meta["origin"] = ORIGIN
    meta["version"] = software_version()
    return meta


def _save_kwargs(img: Image.Image, suffix: str) -> dict[str, Any]:
    meta = img.info
    if not meta:
        return {}
    if suffix == ".png":
        info = PngInfo()
        for key, value in meta.items():
            info.add_text(key, str(value))
        return {"pnginfo": info}
    if suffix in (".jpg", ".jpeg", ".tif", ".tiff"):
        exif = img.getexif()
        exif[270] = json.dumps(meta)  # ImageDescription
        return {"exif": exif.tobytes()}
    return {}


def save_image(img: Image.Image, path: str | os.PathLike) -> str:
    """Write a PIL image with its metadata to a temporary name beside ``path``, then rename it."""
    suffix = Path(path).suffix.lower()
    with atomic_output(path, field="output_dir") as tmp:
        img.save(tmp, format=FORMATS[suffix], **_save_kwargs(img, suffix))
    return Path(path).as_posix()


def _colour_image(cuts: list[ImageCut], render: Callable[[ImageCut], np.ndarray], coord: Any) -> Image.Image:
    """Three cutouts of one shape as one RGB image (R, G, B in input order), with astrocut's metadata."""
    if len(cuts) != 3:
        raise InvalidInputError(
            f"Color cutouts require exactly 3 cutouts (R, G, B); got {len(cuts)} with data",
            field="input_files",
        )
    shapes = {c.data.shape for c in cuts}
    if len(shapes) != 1:
        raise InvalidInputError(f"Color cutouts must have one shape, got {sorted(shapes)}",
                                field="input_files")
    rgb = np.dstack([render(c) for c in cuts]).astype(np.uint8)
    img = Image.fromarray(rgb).transpose(Image.Transpose.FLIP_TOP_BOTTOM)
    img.info.update(image_metadata(cuts[0], [c.file for c in cuts], coord))
    return img


def _grey_image(cut: ImageCut, pixels: np.ndarray, coord: Any) -> Image.Image:
    """One rendered cutout as a greyscale image (north up), with astrocut's metadata."""
    img = Image.fromarray(pixels).transpose(Image.Transpose.FLIP_TOP_BOTTOM)
    img.info.update(image_metadata(cut, [cut.file], coord))
    return img


def img_cut(
    input_files: Any,
    coordinates: Any,
    cutout_size: Any,
    stretch: str = "asinh",
    minmax_percent: Sequence[float] | None = None,
    minmax_value: Sequence[float] | None = None,
    invert: bool = False,
    img_format: str = "jpg",
    colorize: bool = False,
    cutout_prefix: str = "cutout",
    output_dir: str | os.PathLike = ".",
    drop_after: str | None = None,
    verbose: bool = False,
    memory_only: bool = False,
    s3: Any = None,
    *,
    extension: Any = None,
    fill_value: float = np.nan,
    limit_rounding_method: str = "round",
    limits: Any = None,
) -> str | list[str] | Image.Image | list[Image.Image]:
    """Cut the same window from FITS images and render it as JPEG/PNG (astrocut's ``img_cut``).

    Default interval ``minmax_percent=[0.5, 99.5]``. Without ``colorize``, one greyscale (mode L)
    image per non-empty cutout, named ``<input stem>_<ra>_<dec>_<s0>-x-<s1>_astrocut_<i>.<fmt>``;
    with ``colorize``, exactly three cutouts become one RGB image (R, G, B in input order) named
    ``<cutout_prefix>_<ra>_<dec>_<s0>-x-<s1>_astrocut.<fmt>``. NaN pixels render black (0), or white
    when inverted. ``drop_after`` drops header cards from that keyword on before the WCS is read
    (astrocut 0.x). ``memory_only`` returns PIL images (one Image when colorized) instead of paths.

    Raises
    ------
    InvalidInputError
        Unknown stretch (``field="stretch"``) or format (``field="img_format"``), bad intervals,
        colorize without exactly three cutouts (``field="input_files"``), and the errors of fits_cut.
    NoDataError
        When no input has data at the position.
    """
    start = time.monotonic()
    stretch = parse_stretch(stretch)
    suffix = parse_format(img_format)
    if minmax_percent is None and minmax_value is None:
        minmax_percent = DEFAULT_PERCENT
    result = cut_images(
        input_files, coordinates, cutout_size, extension=extension, fill_value=fill_value,
        limit_rounding_method=limit_rounding_method, drop_after=drop_after, s3=s3, limits=limits,
    )
    coord = result.coordinates
    cuts = list(result.cutouts(include_empty=False))
    if verbose:
        report_cuts(result)

    def render(cut: ImageCut) -> np.ndarray:
        return normalize_img(cut.data, stretch, minmax_percent, minmax_value, invert)

    if colorize:
        img = _colour_image(cuts, render, coord)
        if memory_only:
            return img
        path = save_image(img, Path(output_dir, cutout_filename(cutout_prefix, coord, result.size, suffix)))
        if verbose:
            print(f"Cutout image: {path}", flush=True)
            print(f"Total time: {time.monotonic() - start:.2f} sec", flush=True)
        return path

    images = [_grey_image(cut, render(cut), coord) for cut in cuts]
    if memory_only:
        return images
    paths = []
    for i, (cut, img) in enumerate(zip(cuts, images)):
        name = cutout_filename(input_stem(cut.file), coord, result.size, f"_{i}{suffix}")
        paths.append(save_image(img, Path(output_dir, name)))
    if verbose:
        print(f"Cutout image(s): {paths}", flush=True)
        print(f"Total time: {time.monotonic() - start:.2f} sec", flush=True)
    return paths


__all__ = ["FORMATS", "STRETCHES", "img_cut", "normalize_img"]
