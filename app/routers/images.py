"""Cutouts of FITS images: ``fits_cut``, ``img_cut`` and ``combine`` (astrocut's functions over HTTP).

Inputs are paths relative to a configured image root, or ``s3://`` URIs under an allowed prefix
(both checked with :func:`core.confine.confine` before anything is opened: anything else is 403),
or files uploaded in a multipart POST as ``files`` (at most ``max_upload_bytes`` per request).
At most ``max_input_files`` inputs per request.
"""

from __future__ import annotations

import io
import os
import re
import shutil
import tempfile
from collections.abc import Sequence
from typing import Annotated, Any

from astropy.coordinates import SkyCoord
from fastapi import APIRouter, Depends, File, Form, Query, UploadFile
from fastapi.responses import Response

from app.dependencies import Services, get_services
from app.params import ERROR_RESPONSES, CombineParams, FitsCutParams, ImgCutParams, _SizeMixin
from app.streaming import file_response, zip_response
from core.errors import InvalidInputError, NoDataError, TooLargeError

__all__ = ["router"]

router = APIRouter(tags=["images"], responses=ERROR_RESPONSES)
ServicesDep = Annotated[Services, Depends(get_services)]
Uploads = Annotated[list[UploadFile] | None, File(description="FITS files to cut (multipart).")]

_FITS_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "One FITS file, or a zip of FITS files (single_outfile=false with several inputs).",
        "content": {
            "application/fits": {"schema": {"type": "string", "format": "binary"}},
            "application/zip": {"schema": {"type": "string", "format": "binary"}},
        },
    }
}
_IMG_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "The image itself for one output (usable in <img>), else a zip of images.",
        "content": {
            "image/png": {"schema": {"type": "string", "format": "binary"}},
            "image/jpeg": {"schema": {"type": "string", "format": "binary"}},
            "application/zip": {"schema": {"type": "string", "format": "binary"}},
        },
    }
}


# ------------------------------------------------------------------------------------------
# inputs
# ------------------------------------------------------------------------------------------


def _roots(services: Services) -> tuple[list[str], list[str]]:
    roots = services.settings.image_roots
    return [r for r in roots if not r.lower().startswith("s3://")], [r for r in roots if r.lower().startswith("s3://")]


def _confined(services: Services, images: Sequence[str]) -> list[str]:
    from core.confine import confine

    local, s3 = _roots(services)
    return [confine(image, local, s3, field="images") for image in images]


def _safe_name(name: str | None, index: int) -> str:
    base = os.path.basename(name or "") or f"upload{index}.fits"
    return f"{index:02d}_" + re.sub(r"[^A-Za-z0-9._-]", "_", base)[:100]


class _Inputs:
    """Confined paths plus uploads saved under ``work_dir`` (removed by :meth:`cleanup`)."""

    def __init__(self, services: Services, images: Sequence[str], uploads: Sequence[UploadFile]) -> None:
        self.services = services
        self.images = [i for i in images if i and i.strip()]
        self.uploads = list(uploads or [])
        self.tmp: str | None = None
        limit = services.settings.max_input_files
        if len(self.images) + len(self.uploads) > limit:
            raise TooLargeError(f"at most {limit} input files per request", field="images")
        if not self.images and not self.uploads:
            raise InvalidInputError("give at least one input image (images=... or uploaded files)", field="images")

    def resolve(self) -> list[str]:
        """On a worker: confine the paths and save the uploads; return every input's path/URI."""
        paths = _confined(self.services, self.images)
        if self.uploads:
            work = self.services.settings.work_dir
            work.mkdir(parents=True, exist_ok=True)
            self.tmp = tempfile.mkdtemp(prefix="upload-", dir=work)
            for i, upload in enumerate(self.uploads):
                dest = os.path.join(self.tmp, _safe_name(upload.filename, i))
                upload.file.seek(0)
                with open(dest, "wb") as fh:
                    shutil.copyfileobj(upload.file, fh, 1024 * 1024)
                paths.append(dest)
        return paths

    def cleanup(self) -> None:
        if self.tmp:
            shutil.rmtree(self.tmp, ignore_errors=True)
            self.tmp = None


def _size(p: _SizeMixin, max_side: int) -> list[Any]:
    qx, qy = p.size_quantities()
    if p.units in ("px", "pix", "pixel", "pixels"):
        for name, q in (("x", qx), ("y", qy)):
            if q.value > max_side:
                raise TooLargeError(f"cutout side of {q.value:g} pixels exceeds the limit of {max_side}", field=name)
    return [qx, qy]


def _hdul_bytes(hdul: Any) -> bytes:
    buf = io.BytesIO()
    hdul.writeto(buf)
    return buf.getvalue()


def _label(p: Any) -> str:
    return f"{p.ra:.7f}_{p.dec:.7f}_{p.size_label()}"


def _stem(path: str) -> str:
    base = os.path.basename(str(path))
    base = re.sub(r"^\d\d_", "", base) if "upload-" in str(path) else base
    return re.sub(r"\.fits?(\.gz)?$", "", base, flags=re.IGNORECASE)


# ------------------------------------------------------------------------------------------
# fits_cut
# ------------------------------------------------------------------------------------------


async def _fits_cut(services: Services, p: FitsCutParams, uploads: Sequence[UploadFile]) -> Response:
    inputs = _Inputs(services, p.images, uploads)
    size = _size(p, services.settings.max_cutout_side)

    def work() -> list[tuple[str, bytes]]:
        from core.image_cutouts import fits_cut

        try:
            paths = inputs.resolve()
            coord = SkyCoord(p.ra % 360, p.dec, unit="deg")
            hduls = fits_cut(
                paths, coord, size, extension=p.extension_value(), single_outfile=p.single_outfile,
                memory_only=True, s3=services.s3,
            )
            if not hduls:
                raise NoDataError("no input has data at the position", field="images")
            if p.single_outfile:
                return [(f"cutout_{_label(p)}_astrocut.fits", _hdul_bytes(hduls[0]))]
            out = []
            for hdul in hduls:
                orig = hdul[1].header.get("ORIG_FLE", "cutout") if len(hdul) > 1 else "cutout"
                out.append((f"{_stem(orig)}_{_label(p)}_astrocut.fits", _hdul_bytes(hdul)))
            return out
        finally:
            inputs.cleanup()

    files = await services.pool.run(work)
    if len(files) == 1:
        return file_response(files[0][1], "application/fits", files[0][0])
    return zip_response(services.pool, [(lambda f=f: f) for f in files], f"fits_cut_{_label(p)}.zip")


@router.get("/fits_cut", response_class=Response, responses=_FITS_RESPONSES)
async def fits_cut_get(p: Annotated[FitsCutParams, Query()], services: ServicesDep) -> Response:
    """FITS cutouts of images under the image roots (astrocut's fits_cut)."""
    return await _fits_cut(services, p, [])


@router.post("/fits_cut", response_class=Response, responses=_FITS_RESPONSES)
async def fits_cut_post(
    p: Annotated[FitsCutParams, Form()], services: ServicesDep, files: Uploads = None
) -> Response:
    """As GET, with a form body; images may also be uploaded as `files` (multipart)."""
    return await _fits_cut(services, p, files or [])


# ------------------------------------------------------------------------------------------
# img_cut
# ------------------------------------------------------------------------------------------


async def _img_cut(services: Services, p: ImgCutParams, uploads: Sequence[UploadFile]) -> Response:
    inputs = _Inputs(services, p.images, uploads)
    size = _size(p, services.settings.max_cutout_side)
    fmt = "jpg" if p.img_format in ("jpg", "jpeg") else "png"
    pil_format, media = ("JPEG", "image/jpeg") if fmt == "jpg" else ("PNG", "image/png")

    def work() -> list[tuple[str, bytes]]:
        from core.image import img_cut

        try:
            paths = inputs.resolve()
            coord = SkyCoord(p.ra % 360, p.dec, unit="deg")
            images = img_cut(
                paths, coord, size, stretch=p.stretch, minmax_percent=p.percent(), minmax_value=p.values(),
                invert=p.invert, img_format=fmt, colorize=p.colorize, memory_only=True, s3=services.s3,
            )
        finally:
            inputs.cleanup()
        if not isinstance(images, list):
            images = [images]
        out = []
        for i, img in enumerate(images):
            buf = io.BytesIO()
            img.save(buf, format=pil_format)
            out.append((f"cutout_{_label(p)}_astrocut_{i}.{fmt}", buf.getvalue()))
        if not out:
            raise NoDataError("no input has data at the position", field="images")
        return out

    files = await services.pool.run(work)
    if len(files) == 1:
        return file_response(files[0][1], media, files[0][0], inline=True)
    return zip_response(services.pool, [(lambda f=f: f) for f in files], f"img_cut_{_label(p)}.zip")


@router.get("/img_cut", response_class=Response, responses=_IMG_RESPONSES)
async def img_cut_get(p: Annotated[ImgCutParams, Query()], services: ServicesDep) -> Response:
    """PNG/JPEG cutouts (astrocut's img_cut); one output is the image itself, usable in `<img>`."""
    return await _img_cut(services, p, [])


@router.post("/img_cut", response_class=Response, responses=_IMG_RESPONSES)
async def img_cut_post(p: Annotated[ImgCutParams, Form()], services: ServicesDep, files: Uploads = None) -> Response:
    """As GET, with a form body; images may also be uploaded as `files` (multipart)."""
    return await _img_cut(services, p, files or [])


# ------------------------------------------------------------------------------------------
# combine
# ------------------------------------------------------------------------------------------


async def _combine(services: Services, p: CombineParams, uploads: Sequence[UploadFile]) -> Response:
    inputs = _Inputs(services, p.images, uploads)
    if inputs.images and (p.ra is None or p.dec is None):
        raise InvalidInputError("ra and dec are needed to cut images before combining", field="ra")
    size = _size(p, services.settings.max_cutout_side)

    def work() -> bytes:
        from core.combine import CutoutsCombiner
        from core.image_cutouts import fits_cut

        try:
            paths = inputs.resolve()
            images = paths[: len(inputs.images)]
            uploaded = paths[len(inputs.images):]
            cutouts: list[Any] = []
            if images:
                coord = SkyCoord(p.ra % 360, p.dec, unit="deg")  # type: ignore[operator]
                cutouts.extend(
                    fits_cut(images, coord, size, single_outfile=False, memory_only=True, s3=services.s3)
                )
            cutouts.extend(uploaded)
            if not cutouts:
                raise NoDataError("no input has data at the position", field="images")
            combined = CutoutsCombiner(cutouts).combine(memory_only=True)
            return _hdul_bytes(combined)
        finally:
            inputs.cleanup()

    data = await services.pool.run(work)
    label = _label(p) if p.ra is not None else p.size_label()
    return file_response(data, "application/fits", f"combined_{label}_astrocut.fits")


@router.get("/combine", response_class=Response, responses=_FITS_RESPONSES)
async def combine_get(p: Annotated[CombineParams, Query()], services: ServicesDep) -> Response:
    """Cut the same window from each image and combine the cutouts (NaN-aware mean) into one FITS."""
    return await _combine(services, p, [])


@router.post("/combine", response_class=Response, responses=_FITS_RESPONSES)
async def combine_post(p: Annotated[CombineParams, Form()], services: ServicesDep, files: Uploads = None) -> Response:
    """As GET; or upload cutout FITS files as `files` to combine them as they are."""
    return await _combine(services, p, files or [])
