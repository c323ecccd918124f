"""The cutout engine: TESS image cubes, target pixel files, FITS and image cutouts.

This package knows nothing of HTTP. Public names are imported lazily so that ``import core``
stays cheap (the CLI and the service start faster).
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "CubeFactory": "core.cube_factory",
    "TicaCubeFactory": "core.cube_factory",
    "CutoutFactory": "core.tpf",
    "fits_cut": "core.fits_cut",
    "img_cut": "core.image",
    "normalize_img": "core.image",
    "CutoutsCombiner": "core.combine",
    "build_default_combine_function": "core.combine",
    "path_to_footprints": "core.moving_target",
    "center_on_path": "core.moving_target",
}

__all__ = [
    "CubeFactory",
    "CutoutFactory",
    "CutoutsCombiner",
    "TicaCubeFactory",
    "__version__",
    "build_default_combine_function",
    "center_on_path",
    "fits_cut",
    "img_cut",
    "normalize_img",
    "path_to_footprints",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'core' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
