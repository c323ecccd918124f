"""The catalog a configuration names: cube locations and an optional persistent index."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from core.catalog.index import CatalogIndex
from core.catalog.scan import scan
from core.catalog.snapshot import Catalog, CubeRecord, infos_getter
from core.errors import UnavailableError
from core.storage.locations import read_list
from core.storage.s3 import S3Config

__all__ = ["default_catalog", "open_catalog"]



def open_catalog(*, cube_dirs: Sequence[str] = (), index: str | os.PathLike | None = None, s3: Any = None,
                 refresh: bool = True) -> Catalog:
    """A catalog of the cubes under ``cube_dirs`` (local folders, ``s3://`` prefixes), through the
    catalog index at ``index`` when given (built or refreshed there when ``refresh``), else read
    from the files directly."""
    if index is not None:
        idx = CatalogIndex(index, s3=s3)
        if refresh and cube_dirs:
            idx.update(cube_dirs)
        return idx.catalog()
    infos, skipped = scan(cube_dirs, s3=s3)
    return Catalog([CubeRecord.from_info(i) for i in infos], s3=s3, skipped=skipped,
                   load_info=infos_getter(infos))


_default: Catalog | None = None


def default_catalog() -> Catalog:
    """The catalog named by the environment (``CUTOUT_CUBE_DIRS``, ``CUTOUT_INDEX``), made once.

    Raises
    ------
    UnavailableError
        Neither variable is set (field ``catalog``): no cubes are hosted here.
    """
    global _default
    if _default is None:
        dirs = read_list(os.environ.get("CUTOUT_CUBE_DIRS", ""))
        index = os.environ.get("CUTOUT_INDEX") or None
        if not dirs and index is None:
            raise UnavailableError("no hosted cubes are configured: set CUTOUT_CUBE_DIRS or CUTOUT_INDEX, "
                                   "or pass catalog=", field="catalog")
        _default = open_catalog(cube_dirs=dirs, index=index, s3=S3Config.from_env())
    return _default
