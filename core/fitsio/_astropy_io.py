"""The engine's only uses of astropy.io.fits internals, each with a public-API fallback.

Both exist for in-memory TPFs (``cube_cut(..., memory_only=True)``), not for the service (which
sends TPF bytes and builds no HDUList):

- :func:`lazy_hdulist` makes an HDUList over a file object without reading anything. Public
  ``fits.open(..., lazy_load_hdus=True)`` parses the primary header up front (~0.5 ms, five times
  the rest of a 5x5 cut); ``HDUList(file=_File(...))`` defers even that.
- :func:`header_modified` tells whether an HDU's header was edited (astropy's ``_modified``
  flag), so an untouched TPF can be handed back as its original bytes.

If astropy ever changes these internals, the fallbacks keep the results correct: ``fits.open``
for the first, and "assume modified" (serialise again) for the second. Tests exercise both paths.
"""

from __future__ import annotations

from typing import Any

from astropy.io import fits

__all__ = ["header_modified", "lazy_hdulist"]

#: set to False (tests) to take the public-API paths
USE_INTERNALS = True


def lazy_hdulist(fileobj: Any, cls: type[fits.HDUList] = fits.HDUList) -> fits.HDUList:
    """An HDUList of class ``cls`` reading ``fileobj`` (a seekable binary file object) lazily."""
    if USE_INTERNALS:
        try:
            from astropy.io.fits.file import _File

            return cls(file=_File(fileobj, mode="readonly"))
        except (ImportError, TypeError, AttributeError):  # pragma: no cover - astropy changed
            pass
    hdul = fits.open(fileobj, mode="readonly", lazy_load_hdus=True, memmap=False)
    if cls is not fits.HDUList:
        hdul.__class__ = cls  # a subclass adding behaviour only, no state
    return hdul


def header_modified(hdu: Any) -> bool:
    """Whether ``hdu``'s header may differ from what was read (True when it cannot be told)."""
    if USE_INTERNALS:
        header = getattr(hdu, "_header", None)
        flag = getattr(header, "_modified", None)
        if isinstance(flag, bool):
            return flag
    return True
