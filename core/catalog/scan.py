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
from core.storage.walk import walk_files

__all__ = ["CUBE_NAME", "list_cubes", "read_many", "scan", "under", "within_locations"]

log = logging.getLogger("core.catalog")

#: MAST cube file names: ``tess-s0038-2-2-cube.fits`` (SPOC), ``[tica-]s0038-2-2-cube.fits`` (TICA)
CUBE_NAME = re.compile(r"^(?:(tess|tica)-)?s(\d{4})-(\d)-(\d)-cube\.fits$", re.IGNORECASE)


# --------------------------------------------------------------------------------------------------
# listing cube files
# --------------------------------------------------------------------------------------------------


def list_cubes(locations: Sequence[str], *, s3: S3Config | None = None,
               unreadable: list[tuple[str, str]] | None = None) -> dict[str, tuple]:
    """Every cube file (MAST names) under ``locations``: ``{uri: identity}``. Local folders are
    walked (links followed inside the folder only, each folder once, regular files only:
    :func:`core.storage.walk.walk_files`); ``s3://`` prefixes listed. A location that cannot be read is logged,
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
        # links inside the folder are followed, never out of it nor twice into one folder; only
        # regular files are listed (core.storage.walk)
        for path, st in walk_files(root, match=lambda name: bool(CUBE_NAME.match(name))):
            found[path] = ("file", os.path.realpath(path), st.st_size, st.st_mtime_ns, st.st_dev, st.st_ino)
    return found


def under(uri: str, location: str) -> bool:
    """Whether ``uri`` was listed under ``location`` (a folder or an ``s3://`` prefix)."""
    prefix = location.rstrip("/")
    return uri == prefix or uri.startswith(prefix + "/")


def within_locations(uri: str, locations: Sequence[str]) -> bool:
    """Whether ``uri`` (a path or ``s3://`` URI read from an index) names a file inside one of
    ``locations``, as configured or, for a folder, its real path; ``..`` segments are resolved
    first, so a path cannot climb out of the folder it names."""
    if is_s3_uri(uri):
        if any(part in (".", "..") for part in uri[5:].split("/")):
            return False
        return any(is_s3_uri(loc) and under(uri, loc) for loc in locations)
    if not os.path.isabs(uri):
        return False
    path = os.path.normpath(uri)
    for loc in locations:
        if is_s3_uri(loc):
            continue
        for root in {os.path.normpath(os.path.abspath(loc)), os.path.realpath(loc)}:
            if path.startswith(root.rstrip(os.sep) + os.sep):
                return True
    return False


def _read_info(uri: str, s3: S3Config | None) -> CubeInfo | tuple[str, str]:
    """The cube's info, or ``(uri, why)``: a file that is not a readable cube, whatever is wrong
    with it (a header value no number holds raises OverflowError), is skipped, never fatal."""
    try:
        with open_source(uri, s3=s3) as source:
            return read_cube_info(source, uri)
    except CutoutError as exc:
        return uri, exc.message
    except Exception as exc:  # noqa: BLE001 - one bad file must not stop the index
        return uri, f"{type(exc).__name__}: {exc}"[:500]


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
