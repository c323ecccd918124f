"""Atomic output files: written under a temporary name beside the target, renamed when complete.

A reader never sees a partial file under the final name: the temporary file is removed on any
error. Files are created with mode ``0o666`` filtered by the process umask (``0644`` under the
usual ``022``), as ``open()`` would create them; :func:`tempfile.mkstemp` would give ``0600``.
Failures to create the directory or the file (a path through a regular file, no permission, a full
disk) raise :class:`~core.errors.UnavailableError` naming the parameter that gave the path.
"""

from __future__ import annotations

import errno
import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager

from core.errors import CutoutError, UnavailableError

__all__ = ["atomic_output", "output_error", "write_bytes_atomic"]


def output_error(exc: OSError, path: str | os.PathLike, field: str) -> UnavailableError:
    """The engine error for an OSError met while writing ``path`` (given by parameter ``field``)."""
    name = os.path.basename(os.fspath(path)) or os.fspath(path)
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return UnavailableError(f"Not enough disk space to write {name}; nothing was written.", field=field)
    if exc.errno in (errno.EEXIST, errno.ENOTDIR):  # makedirs met a file where a folder should be
        return UnavailableError(f"Cannot write {name}: a file stands where its folder should be "
                                f"({_in_the_way(os.fspath(path))} is not a folder).", field=field)
    reason = exc.strerror or str(exc) or type(exc).__name__
    return UnavailableError(f"Cannot write {name}: {reason}.", field=field)


def _in_the_way(path: str) -> str:
    """The nearest parent of ``path`` that exists but is not a folder (``path``'s parent if none)."""
    parent = os.path.dirname(os.path.abspath(path))
    probe = parent
    while probe and probe != os.path.dirname(probe):
        if os.path.lexists(probe):
            return probe if not os.path.isdir(probe) else parent
        probe = os.path.dirname(probe)
    return parent


def _create_temp(directory: str, base: str) -> str:
    """Create an empty temporary file beside the target (mode 0o666 & ~umask); return its path."""
    for _ in range(16):
        tmp = os.path.join(directory, f".{base}.{secrets.token_hex(6)}.part")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o666)
        except FileExistsError:  # pragma: no cover - 48 random bits
            continue
        os.close(fd)
        return tmp
    raise FileExistsError(errno.EEXIST, "no free temporary name", directory)  # pragma: no cover


@contextmanager
def atomic_output(path: str | os.PathLike, *, field: str = "output_path") -> Iterator[str]:
    """Yield a temporary name beside ``path``; rename it to ``path`` when the block succeeds.

    The parent directory is created if needed. Errors creating the directory or the temporary
    file, and ``OSError`` raised inside the block, become :class:`UnavailableError` naming
    ``field``; other exceptions pass through. The temporary file is always removed on failure.
    """
    final = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(final))
    try:
        os.makedirs(directory, exist_ok=True)
        tmp = _create_temp(directory, os.path.basename(final))
    except OSError as exc:
        raise output_error(exc, final, field) from None
    try:
        try:
            yield tmp
            os.replace(tmp, final)
        except OSError as exc:
            if isinstance(exc, CutoutError):  # NotFoundError and ForbiddenError are OSErrors too
                raise
            raise output_error(exc, final, field) from None
    finally:
        if os.path.lexists(tmp):
            os.unlink(tmp)


def write_bytes_atomic(data: bytes | memoryview, path: str | os.PathLike, *, field: str = "output_path") -> str:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_output`); return the path."""
    with atomic_output(path, field=field) as tmp, open(tmp, "wb") as fh:
        fh.write(data)
    return os.fspath(path)
