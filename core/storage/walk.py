"""Walking a data folder without trusting what is in it.

A data folder is written by others (a mount, a sync job, an operator's links). :func:`walk_files`
lists the regular files under a root for the catalog and the image index, and holds whatever the
folder contains to three rules:

- a symbolic link is followed only when it leads to a place inside the root; one leading out is
  skipped (and logged), so a folder cannot make the service read elsewhere;
- a directory is entered once, whatever the paths leading to it (``again -> .``, two links to one
  folder): directories are known by ``(st_dev, st_ino)``, so a loop of links ends;
- only regular files are listed: a FIFO, a socket or a device named like a data file is skipped
  with a log line (opening a FIFO blocks until someone writes to it).

A file reached by two paths (a link beside its target) is listed once, under the first path met
in sorted order. Errors reading one directory or one entry skip that entry, never the walk.
"""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Callable, Iterator

__all__ = ["walk_files"]

log = logging.getLogger("core.storage.walk")


def _inside(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


def walk_files(root: str | os.PathLike, *, match: Callable[[str], bool] | None = None,
               skipped: list[tuple[str, str]] | None = None) -> Iterator[tuple[str, os.stat_result]]:
    """``(path, stat)`` of every regular file under ``root`` whose name ``match`` accepts (all
    when None), depth first in sorted order; see the module docstring for what is left out.

    Parameters
    ----------
    root : the folder to walk (itself may be a link: its real path bounds the walk).
    match : ``match(name) -> bool`` on a file's name; files it refuses are not even stat'ed.
    skipped : when given, ``(path, why)`` is appended for each entry left out that ``match``
        accepts (a link out of the root, a non-regular file, an unreadable entry).
    """
    top = os.fspath(root)
    real_root = os.path.realpath(top)

    def skip(path: str, why: str) -> None:
        log.warning("skipping %s: %s", path, why)
        if skipped is not None:
            skipped.append((path, why))

    try:
        st = os.stat(top)
    except OSError as exc:
        skip(top, exc.strerror or str(exc))
        return
    seen_dirs = {(st.st_dev, st.st_ino)}
    seen_files: set[tuple[int, int]] = set()
    stack = [top]
    while stack:
        folder = stack.pop()
        try:
            with os.scandir(folder) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError as exc:
            skip(folder, f"cannot list the folder: {exc.strerror or exc}")
            continue
        subdirs = []
        for entry in entries:
            wanted = match is None or match(entry.name)
            try:
                is_dir = entry.is_dir(follow_symlinks=True)
            except OSError:
                is_dir = False
            if not is_dir and not wanted:
                continue
            path = entry.path
            try:
                if entry.is_symlink() and not _inside(os.path.realpath(path), real_root):
                    if wanted or is_dir:
                        skip(path, "a link leading outside the data folder")
                    continue
                st = os.stat(path)
            except OSError as exc:
                if wanted:
                    skip(path, exc.strerror or str(exc))
                continue
            key = (st.st_dev, st.st_ino)
            if stat.S_ISDIR(st.st_mode):
                if key in seen_dirs:
                    log.debug("not entering %s again (a link to a folder already walked)", path)
                    continue
                seen_dirs.add(key)
                subdirs.append(path)
            elif not wanted:
                continue
            elif not stat.S_ISREG(st.st_mode):
                skip(path, "not a regular file")
            elif key not in seen_files:
                seen_files.add(key)
                yield path, st
        stack.extend(reversed(subdirs))
