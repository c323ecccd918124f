"""Combining cutouts of the same sky window (astrocut's ``CutoutsCombiner``).

Follows astrocut 1.4.0: inputs are cutout files or in-memory HDULists from ``fits_cut``; the HDUs at
the same position in every input are combined into one ImageHDU; headers are merged keeping cards
that agree and recording the ones that vary as ``Fnn_Kmm`` / ``Fnn_Vmm`` / ``Fnn_Cmm``; the default
image combiner is the mean of the inputs that have data at each pixel (weights built once from a
template, as astrocut). Departures: mismatched shapes or HDU counts raise InvalidInputError; a card
missing from some headers counts as varying instead of failing; an input whose primary HDU holds data
is handled (astrocut lost it); output files are written under a temporary name and renamed.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from astropy.coordinates import SkyCoord
from astropy.io import fits

from core.errors import CorruptFileError, InvalidInputError, NotFoundError
from core.images.cutouts import DataWarning, primary_hdu, write_atomic

_SKIP = ("S_REGION", "CHECKSUM", "DATASUM")
_MISSING = object()


def _as_data(item: Any) -> np.ndarray:
    return np.asarray(item.data if isinstance(item, (fits.ImageHDU, fits.PrimaryHDU, fits.CompImageHDU)) else item,
                      dtype=float)


def build_default_combine_function(
    template_hdu_arr: Sequence[Any], no_data_val: float = np.nan
) -> Callable[[Sequence[Any]], np.ndarray]:
    """A combiner giving, at each pixel, the mean of the images that have data there.

    As astrocut: the weights (1 / number of images with data, 0 where an image has none) come from
    ``template_hdu_arr`` (ImageHDUs or arrays); the returned function takes a list of ImageHDUs or
    arrays of the same shape, treats NaN as 0 in the weighted sum, and returns NaN where every image
    is NaN.

    Raises
    ------
    InvalidInputError
        Templates (or, later, images) of different shapes.
    """
    arrays = [_as_data(h) for h in template_hdu_arr]
    if not arrays:
        raise InvalidInputError("give at least one template image", field="template_hdu_arr")
    if len({a.shape for a in arrays}) != 1:
        raise InvalidInputError(f"template images differ in shape: {[a.shape for a in arrays]}",
                                field="template_hdu_arr")
    stack = np.stack(arrays)
    if no_data_val is None or (isinstance(no_data_val, float) and np.isnan(no_data_val)):
        has_data = ~np.isnan(stack)
    else:
        has_data = (stack != no_data_val) & ~np.isnan(stack)
    weights = has_data.astype(float)
    counts = weights.sum(axis=0)
    inverse = np.divide(1.0, counts, out=np.zeros_like(counts), where=counts != 0)
    weights *= inverse

    def combine_function(cutout_hdu_arr: Sequence[Any]) -> np.ndarray:
        imgs = np.stack([_as_data(h) for h in cutout_hdu_arr]) if len(cutout_hdu_arr) else None
        if imgs is None or imgs.shape != weights.shape:
            got = None if imgs is None else imgs.shape
            raise InvalidInputError(f"images of shape {got} do not match the templates {weights.shape}",
                                    field="fle_list")
        all_nan = np.isnan(imgs).all(axis=0)
        combined = np.sum(weights * np.nan_to_num(imgs, nan=0.0), axis=0)
        combined[all_nan] = np.nan
        return combined

    return combine_function


def _cards_equal(a: Any, b: Any) -> bool:
    try:
        return bool(a == b)
    except (TypeError, ValueError):  # pragma: no cover - exotic card values
        return False


def combine_headers(headers: Sequence[fits.Header], constant_only: bool = False) -> fits.Header:
    """Merge headers: cards equal in all are kept; varying ones become ``Fnn_Kmm/Vmm/Cmm`` (as astrocut)."""
    if len(headers) == 1:
        return headers[0]
    uniform: list[fits.Card] = []
    varying: list[tuple[str, Any, str]] = []
    n_var = 0
    first = headers[0]
    for kwd in first:
        if kwd in _SKIP or kwd in ("COMMENT", "HISTORY", ""):
            continue
        value = first[kwd]
        if all(_cards_equal(h.get(kwd, _MISSING), value) for h in headers[1:]):
            uniform.append(first.cards[kwd])
        elif not constant_only:
            n_var += 1
            for i, hdr in enumerate(headers):
                varying.append((f"F{i + 1:02}_K{n_var:02}", kwd, "Keyword"))
                varying.append((f"F{i + 1:02}_V{n_var:02}", hdr.get(kwd), "Value"))
                varying.append((f"F{i + 1:02}_C{n_var:02}", hdr.comments[kwd] if kwd in hdr else "", "Comment"))
    return fits.Header(uniform + varying)


class CutoutsCombiner:
    """Combine cutouts of one sky window into one (astrocut's ``CutoutsCombiner``).

    Parameters
    ----------
    fle_list : list of str or list of HDUList, optional
        Cutout files or in-memory HDULists (e.g. from ``fits_cut(..., memory_only=True)``).
    exts : list of int, optional
        HDUs to combine; default every HDU after an empty primary.
    img_combiner : callable, optional
        Function taking the list of HDUs at one position and returning the combined array; default
        the NaN-aware mean of :func:`build_default_combine_function`.
    """

    def __init__(
        self,
        fle_list: Sequence[Any] | None = None,
        exts: Sequence[int] | None = None,
        img_combiner: Callable[[Sequence[Any]], np.ndarray] | None = None,
        *,
        fits_list: Sequence[Any] | None = None,
    ) -> None:
        self.input_hdulists: list[list[Any]] | None = None  # [position][input]
        self.center_coord: SkyCoord | None = None
        self.combine_headers = combine_headers
        self.combine_images: Callable[[Sequence[Any]], np.ndarray] | None = None
        fle_list = fle_list if fle_list is not None else fits_list
        if fle_list:
            self.load(fle_list, exts)
        if img_combiner is not None:
            self.combine_images = img_combiner
        elif self.input_hdulists:
            self.build_img_combiner(build_default_combine_function, [self.input_hdulists[0], np.nan])

    def load(self, fle_list: Sequence[Any], exts: Sequence[int] | None = None) -> None:
        """Load the cutouts and select the HDUs to combine (all after an empty primary by default).

        Raises
        ------
        InvalidInputError
            Empty or mixed input, or inputs with different HDU counts or image shapes.
        NotFoundError, CorruptFileError
            A file is missing or not FITS.
        """
        if isinstance(fle_list, (str, os.PathLike, fits.HDUList)):
            fle_list = [fle_list]
        fle_list = list(fle_list)
        if not fle_list:
            raise InvalidInputError("give at least one cutout", field="fle_list")
        hdulists = []
        for item in fle_list:
            if isinstance(item, fits.HDUList):
                hdulists.append(item)
            elif isinstance(item, (str, os.PathLike)):
                from core.storage.range_file import open_fits

                try:  # read with pread, regular files only (never a memory map of a file others may change)
                    hdulists.append(open_fits(os.fspath(item)))
                except (NotFoundError, CorruptFileError) as exc:
                    exc.field = exc.field or "fle_list"
                    raise
            else:
                raise InvalidInputError("Unsupported input format: give file names or HDULists", field="fle_list")

        if exts is None:
            selected = [list(h[1:]) if h[0].data is None else list(h) for h in hdulists]
        else:
            try:
                selected = [[h[e] for e in exts] for h in hdulists]
            except (IndexError, KeyError, TypeError):
                raise InvalidInputError(f"extensions {exts!r} are not in every input", field="exts") from None
        counts = {len(s) for s in selected}
        if len(counts) != 1 or 0 in counts:
            raise InvalidInputError(f"inputs hold different numbers of cutouts: {[len(s) for s in selected]}",
                                    field="fle_list")
        positions = [list(group) for group in zip(*selected)]
        for group in positions:
            shapes = {np.shape(h.data) for h in group}
            if len(shapes) != 1:
                raise InvalidInputError(f"cutouts to combine differ in shape: {sorted(shapes)}", field="fle_list")
        self.input_hdulists = positions

        header = hdulists[0][0].header
        try:
            self.center_coord = SkyCoord(float(header["RA_OBJ"]), float(header["DEC_OBJ"]), unit="deg")
        except KeyError:
            warnings.warn("Could not find RA/Dec header keywords, center coord will be wrong.", DataWarning)
            self.center_coord = SkyCoord(0, 0, unit="deg")
        except (ValueError, TypeError):
            warnings.warn("Invalid RA/Dec values, center coord will be wrong.", DataWarning)
            self.center_coord = SkyCoord(0, 0, unit="deg")

    def build_img_combiner(self, function_builder: Callable[..., Callable], builder_args: Sequence[Any]) -> None:
        """Set the image combiner to ``function_builder(*builder_args)``."""
        self.combine_images = function_builder(*builder_args)

    def combine(self, output_file: str | os.PathLike = "./cutout.fits", memory_only: bool = False
                ) -> str | fits.HDUList:
        """Combine the loaded cutouts into one file (or HDUList when ``memory_only``).

        The result has astrocut's cutout primary HDU and one ImageHDU per combined position.
        """
        if not self.input_hdulists:
            raise InvalidInputError("load cutouts before combining", field="fle_list")
        if self.combine_images is None:
            self.build_img_combiner(build_default_combine_function, [self.input_hdulists[0], np.nan])
        hdus = []
        for group in self.input_hdulists:
            header = self.combine_headers([h.header for h in group])
            data = self.combine_images([h.data for h in group])  # arrays, as astrocut passes them
            hdus.append(fits.ImageHDU(data=np.asarray(data), header=header))
        hdulist = fits.HDUList([primary_hdu(self.center_coord)] + hdus)
        if memory_only:
            return hdulist
        return write_atomic(hdulist, output_file)


__all__ = ["CutoutsCombiner", "build_default_combine_function", "combine_headers"]
