"""Finding and reading cube files: the MAST cube names, a walk of local folders and a listing of
``s3://`` prefixes, and each cube's :class:`~core.cubes.info.CubeInfo` read on a few threads."""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from core.cubes.info import CubeInfo, read_cube_info
from core.errors import CutoutError
from core.storage.s3 import ObjectInfo, S3Config, is_s3_uri, list_objects, parse_s3_uri, remember_head
from core.storage.sources import open_source

__all__ = ["CUBE_NAME", "list_cubes", "read_many", "scan", "under"]

log = logging.getLogger("core.catalog")

#: MAST cube file names: ``tess-s0038-2-2-cube.fits`` (SPOC), ``[tica-]s0038-2-2-cube.fits`` (TICA)
CUBE_NAME = re.compile(r"^(?:(tess|tica)-)?s(\d{4})-(\d)-(\d)-cube\.fits$", re.IGNORECASE)


# --------------------------------------------------------------------------------------------------
# listing cube files
# --------------------------------------------------------------------------------------------------


def _local_identity(path: str) -> tuple | None:
    real = os.path.realpath(path)
    try:
        st = os.stat(real)
    except OSError:
        return None
    return ("file", real, st.st_size, st.st_mtime_ns, st.st_dev, st.st_ino)


def list_cubes(locations: Sequence[str], *, s3: S3Config | None = None,
               unreadable: list[tuple[str, str]] | None = None) -> dict[str, tuple]:
    """Every cube file (MAST names) under ``locations``: ``{uri: identity}``. Local folders are
    walked (symlinks followed); ``s3://`` prefixes listed. A location that cannot be read is logged,
    skipped and, when ``unreadable`` is given, appended to it as ``(location, why)``."""
    found: dict[str, tuple] = {}
    problems = unreadable if unreadable is not None else []
    for location in locations:
        if is_s3_uri(location):
            try:
                objects: list[ObjectInfo] = list_objects(location, s3=s3)
            except CutoutError as exc:
                log.error("cannot list %s: %s", location, exc)
                problems.append((location, str(exc)))
                continue
            cfg = s3 or S3Config.from_env()
            for obj in objects:
                if CUBE_NAME.match(obj.uri.rsplit("/", 1)[-1]):
                    bucket, key = parse_s3_uri(obj.uri)
                    remember_head(cfg, bucket, key, obj.size, obj.etag)  # spares a HEAD when it is read
                    found[obj.uri] = ("s3", bucket, key, obj.etag)
            continue
        root = Path(location)
        if not root.is_dir():
            log.warning("cube folder %s does not exist", location)
            problems.append((location, "no such folder"))
            continue
        for dirpath, _dirs, files in os.walk(root, followlinks=True):
            for name in files:
                if CUBE_NAME.match(name):
                    path = os.path.join(dirpath, name)
                    identity = _local_identity(path)
                    if identity is not None:
                        found[path] = identity
    return found


def under(uri: str, location: str) -> bool:
    """Whether ``uri`` was listed under ``location`` (a folder or an ``s3://`` prefix)."""
    prefix = location.rstrip("/")
    return uri == prefix or uri.startswith(prefix + "/")


def _read_info(uri: str, s3: S3Config | None) -> CubeInfo | tuple[str, str]:
    try:
        with open_source(uri, s3=s3) as source:
            return read_cube_info(source, uri)
    except (CutoutError, OSError, ValueError, KeyError) as exc:
        return uri, str(exc)


def read_many(uris: Sequence[str], s3: S3Config | None, threads: int,
               progress: Callable[[int, int], Any] | None = None) -> tuple[list[CubeInfo], list[tuple[str, str]]]:
    infos: list[CubeInfo] = []
    failed: list[tuple[str, str]] = []
    if not uris:
        return infos, failed
    with ThreadPoolExecutor(max_workers=max(1, min(threads, len(uris)))) as pool:
        for done, result in enumerate(pool.map(lambda u: _read_info(u, s3), uris), start=1):
            if isinstance(result, CubeInfo):
                _check_name(result)
                infos.append(result)
            else:
                log.error("skipping cube %s: %s", *result)
                failed.append(result)
            if progress is not None:
                progress(done, len(uris))
    return infos, failed


def _check_name(info: CubeInfo) -> None:
    m = CUBE_NAME.match(info.uri.rsplit("/", 1)[-1])
    if m and (int(m.group(2)), int(m.group(3)), int(m.group(4))) != (info.sector, info.camera, info.ccd):
        log.warning("%s: name says s%s %s-%s, header says s%d %d-%d; using the header",
                    info.uri, m.group(2), m.group(3), m.group(4), info.sector, info.camera, info.ccd)


def scan(locations: Sequence[str], *, s3: S3Config | None = None, threads: int = 8
         ) -> tuple[list[CubeInfo], list[tuple[str, str]]]:
    """Read every cube under ``locations`` (no index): their infos, and the files that failed."""
    return read_many(sorted(list_cubes(locations, s3=s3)), s3, threads)
