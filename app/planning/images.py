"""Planning the image routes: ``fits_cut``, ``img_cut`` and ``combine`` (astrocut's functions).

Inputs are paths relative to a configured image root, or ``s3://`` URIs under an allowed prefix
(both checked with :func:`core.storage.confine.confine` before anything is opened), or uploaded files,
saved under the work directory with generated names and removed when the request ends. Errors name
the API's parameters (``images``, ``ra``, ``x``) and show the user's own names, never a server path.
"""

from __future__ import annotations

import io
import os
import re
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, BinaryIO

from app.params.requests import CombineParams, FitsCutParams, ImgCutParams
from app.planning.answers import Cost, CutoutStats, FileAnswer, Planner, ZipAnswer, ZipMember
from app.planning.context import Context, api_fields, check_pixel_size, safe_name
from core.cutout_size import CutoutSize
from core.errors import InvalidInputError, NoDataError, TooLargeError

__all__ = ["COMBINE", "FITS_CUT", "IMAGE_FIELDS", "IMG_CUT", "ImageInputs", "plan_combine", "plan_fits_cut",
           "plan_img_cut"]

#: the engine's parameter names -> the API's
IMAGE_FIELDS = {
    "coordinates": "ra", "cutout_size": "x", "cutout_size.y": "y", "input_files": "images", "img_arr": "images", "uri": "images",
    "path": "images", "fle_list": "images", "cube_file": "images", "cutout_fles": "images",
}  # fmt: skip


@dataclass
class Upload:
    """An uploaded file: the name the client gave and a readable binary file object."""

    filename: str | None
    file: BinaryIO


@dataclass
class ImageInputs:
    """A request's inputs: confined paths plus uploads saved under the work directory."""

    images: list[str]
    uploads: list[Upload] = field(default_factory=list)
    tmp: str | None = None
    shown: dict[str, str] = field(default_factory=dict)  # server path -> the user's name

    @classmethod
    def check(cls, ctx: Context, images: Sequence[str], uploads: Sequence[Upload] = ()) -> ImageInputs:
        """Count and presence checks (no file is touched)."""
        names = [i for i in images if i and i.strip()]
        if len(names) + len(uploads) > ctx.max_input_files:
            raise TooLargeError(f"at most {ctx.max_input_files} input files per request", field="images")
        if not names and not uploads:
            raise InvalidInputError("give at least one input image (images=... or uploaded files)", field="images")
        return cls(names, list(uploads))

    @property
    def count(self) -> int:
        return len(self.images) + len(self.uploads)

    def resolve(self, ctx: Context) -> list[str]:
        """Confine the paths, save the uploads; every input's path or URI (on a worker)."""
        from core.storage.confine import confine

        paths = []
        for image in self.images:
            real = confine(image, ctx.image_roots, ctx.image_s3_prefixes, field="images")
            self.shown[real] = image
            paths.append(real)
        if self.uploads:
            ctx.work_dir.mkdir(parents=True, exist_ok=True)
            self.tmp = tempfile.mkdtemp(prefix="upload-", dir=ctx.work_dir)
            for i, upload in enumerate(self.uploads):
                dest = os.path.join(self.tmp, f"{i:02d}_{safe_name(os.path.basename(upload.filename or ''), default=f'upload{i}.fits')}")
                upload.file.seek(0)
                with open(dest, "wb") as fh:
                    shutil.copyfileobj(upload.file, fh, 1024 * 1024)
                self.shown[dest] = upload.filename or f"upload {i}"
                paths.append(dest)
        if self.tmp:
            self.shown[self.tmp] = "upload"
        for root in ctx.image_roots:  # anything else under a root: shown relative to it
            self.shown.setdefault(os.path.realpath(root) + os.sep, "")
        return paths

    def cleanup(self) -> None:
        if self.tmp:
            shutil.rmtree(self.tmp, ignore_errors=True)
            self.tmp = None


def _label(ra: float, dec: float, size: CutoutSize) -> str:
    return f"{ra % 360.0:.7f}_{dec:.7f}_{size.label()}"


def _stem(path: str, shown: dict[str, str]) -> str:
    base = os.path.basename(shown.get(path, path) or path)
    return safe_name(re.sub(r"\.fits?(\.gz)?$", "", base, flags=re.IGNORECASE), default="cutout")


def _hdul_bytes(hdul: Any) -> bytes:
    buf = io.BytesIO()
    hdul.writeto(buf)
    return buf.getvalue()


#: bytes per window pixel per input cutting images holds at most: a float64 window and its output
CUT_PIXEL_BYTES = 2 * 8
#: and combining them: the windows, their stack, the weights, the NaN-free copy, the weighted sum
#: (measured: 16 windows of 1000 x 1000 took 496 MB)
COMBINE_PIXEL_BYTES = 7 * 8


def image_memory(ctx: Context, size: CutoutSize, inputs: int, pixel_bytes: int = CUT_PIXEL_BYTES) -> int:
    """What cutting ``inputs`` images takes in memory at most (``pixel_bytes`` per window pixel
    per input), from the size asked or, for angular sizes, the side limit."""
    side = ctx.limits.max_side or 4096
    px = size.whole_pixels() or (side, side)
    return pixel_bytes * min(px[0], side) * min(px[1], side) * max(1, inputs) + (8 << 20)


def _files_answer(files: list[tuple[str, bytes]], media: str, zip_name: str, stats: CutoutStats,
                  inline: bool = False) -> FileAnswer | ZipAnswer:
    if len(files) == 1:
        return FileAnswer(files[0][1], media, files[0][0], inline=inline, stats=stats)
    members = [ZipMember(name, (lambda cancel, d=data: d), len(data), memory_bytes=len(data)) for name, data in files]
    return ZipAnswer(zip_name, members, stats)


def _stats(cuts: Sequence[Any]) -> CutoutStats:
    ny, nx = cuts[0].data.shape[-2:] if cuts else (0, 0)
    return CutoutStats(int(nx), int(ny), 1, len(cuts))


def _inputs(ctx: Context, p: Any, files: Sequence[Any]) -> ImageInputs:
    return ImageInputs.check(ctx, p.image_names, [Upload(f.filename, f.file) for f in files])


def _image_cost(ctx: Context, p: Any, files: Sequence[Any] = ()) -> Cost:
    """What cutting the request's images holds: checked (count, presence, a pixel side over the
    limit) before anything is read; an angular side is checked per image, against the window as
    cut (images may have any pixel scale)."""
    inputs = _inputs(ctx, p, files)
    check_pixel_size(ctx, p.size, pixel_deg=None)
    return Cost(image_memory(ctx, p.size, inputs.count))


def _combine_cost(ctx: Context, p: Any, files: Sequence[Any] = ()) -> Cost:
    """As :func:`_image_cost`, for cutting the images and combining them (their stack and weights)."""
    inputs = _inputs(ctx, p, files)
    check_pixel_size(ctx, p.size, pixel_deg=None)
    return Cost(image_memory(ctx, p.size, inputs.count, COMBINE_PIXEL_BYTES))


def plan_fits_cut(ctx: Context, p: FitsCutParams, files: Sequence[Any] = ()) -> FileAnswer | ZipAnswer:
    """FITS cutouts of the inputs: one file, or a zip of one per input (``single_outfile=False``)."""
    from astropy.io import fits

    from core.images.cutouts import cut_images, primary_hdu

    inputs = _inputs(ctx, p, files)
    ra, dec, size, extension, single_outfile = p.ra, p.dec, p.size, p.extension_value, p.single_outfile
    label = _label(ra, dec, size)
    try:
        with api_fields(IMAGE_FIELDS, inputs.shown, files_field="images"):
            paths = inputs.resolve(ctx)
            result = cut_images(paths, f"{ra % 360.0!r} {dec!r}", size, extension=extension, s3=ctx.s3,
                                limits=ctx.limits)
            coord = result.coordinates
            cuts = list(result.cutouts())
            if single_outfile:
                hdul = fits.HDUList([primary_hdu(coord)] + [c.hdu for c in cuts])
                files = [(f"cutout_{label}_astrocut.fits", _hdul_bytes(hdul))]
            else:
                files = [(f"{_stem(name, inputs.shown)}_{label}_astrocut.fits",
                          _hdul_bytes(fits.HDUList([primary_hdu(coord)] + [c.hdu for c in file_cuts])))
                         for name, file_cuts in result.by_file.items()]
    finally:
        inputs.cleanup()
    return _files_answer(files, "application/fits", f"fits_cut_{label}.zip", _stats(cuts))


def plan_img_cut(ctx: Context, p: ImgCutParams, files: Sequence[Any] = ()) -> FileAnswer | ZipAnswer:
    """PNG/JPEG cutouts: one image answers with the image itself (usable in ``<img>``), more a zip."""
    from core.images.render import img_cut

    inputs = _inputs(ctx, p, files)
    ra, dec, size, img_format, colorize = p.ra, p.dec, p.size, p.img_format, p.colorize
    if colorize and inputs.count != 3:
        raise InvalidInputError(f"colorize combines exactly 3 images (R, G, B); got {inputs.count}", field="images")
    fmt = "jpg" if img_format in ("jpg", "jpeg") else "png"
    pil_format, media = ("JPEG", "image/jpeg") if fmt == "jpg" else ("PNG", "image/png")
    label = _label(ra, dec, size)
    try:
        with api_fields(IMAGE_FIELDS, inputs.shown, files_field="images"):
            paths = inputs.resolve(ctx)
            images = img_cut(paths, f"{ra % 360.0!r} {dec!r}", size, **p.render_options(), img_format=fmt,
                             colorize=colorize, memory_only=True, s3=ctx.s3, limits=ctx.limits)
    finally:
        inputs.cleanup()
    if not isinstance(images, list):
        images = [images]
    if not images:
        raise NoDataError("no input has data at the position", field="images")
    files = []
    for i, img in enumerate(images):
        buf = io.BytesIO()
        img.save(buf, format=pil_format)
        files.append((f"cutout_{label}_astrocut_{i}.{fmt}", buf.getvalue()))
    stats = CutoutStats(images[0].width, images[0].height, 1, len(images))
    return _files_answer(files, media, f"img_cut_{label}.zip", stats, inline=True)


def plan_combine(ctx: Context, p: CombineParams, files: Sequence[Any] = ()) -> FileAnswer:
    """Cut the same window from each image (or take uploaded cutouts) and combine them into one FITS."""
    from core.images.combine import CutoutsCombiner
    from core.images.cutouts import fits_cut

    inputs = _inputs(ctx, p, files)
    ra, dec, size = p.ra, p.dec, p.size
    if inputs.images and (ra is None or dec is None):
        raise InvalidInputError("ra and dec are needed to cut images before combining", field="ra")
    try:
        with api_fields(IMAGE_FIELDS, inputs.shown, files_field="images"):
            paths = inputs.resolve(ctx)
            images, uploaded = paths[: len(inputs.images)], paths[len(inputs.images):]
            cutouts: list[Any] = []
            if images:
                cutouts.extend(fits_cut(images, f"{ra % 360.0!r} {dec!r}", size, single_outfile=False,
                                        memory_only=True, s3=ctx.s3, limits=ctx.limits))
            cutouts.extend(uploaded)
            if not cutouts:
                raise NoDataError("no input has data at the position", field="images")
            combined = CutoutsCombiner(cutouts).combine(memory_only=True)
            data = _hdul_bytes(combined)
            shape = combined[1].data.shape if len(combined) > 1 and combined[1].data is not None else (0, 0)
    finally:
        inputs.cleanup()
    label = _label(ra, dec, size) if ra is not None else size.label()
    return FileAnswer(data, "application/fits", f"combined_{label}_astrocut.fits",
                      stats=CutoutStats(int(shape[-1]), int(shape[-2]), 1, len(cutouts)))


FITS_CUT = Planner(plan_fits_cut, _image_cost)
IMG_CUT = Planner(plan_img_cut, _image_cost)
COMBINE = Planner(plan_combine, _combine_cost)
