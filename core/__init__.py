"""The cutout engine: TESS image cubes, target pixel files, FITS and image cutouts.

This package knows nothing of HTTP. Public names are imported lazily so that ``import core``
stays cheap (the CLI and the service start faster). No submodule is named like an exported
name, so ``from core import fits_cut`` always gives the function, whatever was imported before.
"""

from __future__ import annotations

import importlib
from importlib.metadata import PackageNotFoundError, version
from typing import Any

try:
    __version__ = version("tess-cutout-service")
except PackageNotFoundError:  # pragma: no cover - a source tree that was never installed
    __version__ = "0.0.0+unknown"

_EXPORTS = {
    "CubeFactory": "core.building.factory",
    "TicaCubeFactory": "core.building.factory",
    "CutoutFactory": "core.tpf.cut",
    "cube_cut": "core.tpf.cut",
    "CutoutSize": "core.cutout_size",
    "Limits": "core.cutout_size",
    "fits_cut": "core.images.cutouts",
    "img_cut": "core.images.render",
    "normalize_img": "core.images.render",
    "CutoutsCombiner": "core.images.combine",
    "build_default_combine_function": "core.images.combine",
    "path_to_footprints": "core.moving_target",
    "center_on_path": "core.moving_target",
    "TessCubeCutout": "core.astrocut_api.tess_cube_cutout",
    "FITSCutout": "core.astrocut_api.fits_cutout",
    "TessFootprintCutout": "core.astrocut_api.tess_footprint_cutout",
    "cube_cut_from_footprint": "core.astrocut_api.tess_footprint_cutout",
    "get_tess_sectors": "core.astrocut_api.tess_footprint_cutout",
}

__all__ = [
    "CubeFactory",
    "CutoutFactory",
    "CutoutSize",
    "CutoutsCombiner",
    "FITSCutout",
    "Limits",
    "TessCubeCutout",
    "TessFootprintCutout",
    "TicaCubeFactory",
    "__version__",
    "build_default_combine_function",
    "center_on_path",
    "cube_cut",
    "cube_cut_from_footprint",
    "fits_cut",
    "get_tess_sectors",
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
