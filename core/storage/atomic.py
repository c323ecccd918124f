"""Files under temporary names: atomic outputs, pixel spools, cubes being built.

Every temporary file the engine makes is named by :func:`temporary_file`,
``{prefix}{pid}-{random}{suffix}``: the process id lets :func:`remove_stale_temporaries` tell the
files of processes that died (and can be removed) from those still being written.

An atomic output (:func:`atomic_output`) is written under such a name beside the target,
``.{name}.{pid}-{random}.part``, and renamed when complete: a reader never sees a partial file
under the final name, and the temporary file is removed on any error. Files are created with
mode ``0o666`` filtered by the process umask (``0644`` under the usual ``022``), as ``open()``
would create them; :func:`tempfile.mkstemp` would give ``0600``. Failures to create the directory
or the file (a path through a regular file, no permission, a full disk) raise
:class:`~core.errors.UnavailableError` naming the parameter that gave the path.

:func:`pwrite_all` writes a whole buffer at an offset of such a file (``os.pwrite`` may write less
than asked).
"""

from __future__ import annotations

import errno
import glob
import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from core.errors import CutoutError, UnavailableError

__all__ = [
    "atomic_output",
    "output_error",
    "pwrite_all",
    "remove_stale_temporaries",
    "temporary_file",
    "write_bytes_atomic",
]


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



def temporary_file(directory: str | os.PathLike, prefix: str, suffix: str = "", *, mode: int = 0o666) -> str:
    """Create an empty file ``{prefix}{pid}-{random}{suffix}`` in ``directory`` (``mode`` filtered
    by the umask; never an existing file) and return its path.

    The name carries this process's id so that :func:`remove_stale_temporaries` can tell it from
    the leftovers of a process that died. ``OSError`` when the file cannot be created.
    """
    stem = os.path.join(os.fspath(directory), f"{prefix}{os.getpid()}-")
    for _ in range(16):
        tmp = f"{stem}{secrets.token_hex(6)}{suffix}"
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), mode)
        except FileExistsError:  # pragma: no cover - 48 random bits
            continue
        os.close(fd)
        return tmp
    raise FileExistsError(errno.EEXIST, "no free temporary name", os.fspath(directory))  # pragma: no cover


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # pragma: no cover - another user's process
        return True
    return True


def remove_stale_temporaries(directory: str | os.PathLike, prefix: str, suffix: str = "", *,
                             any_owner: bool = False) -> int:
    """Remove the files :func:`temporary_file` named in ``directory`` with ``prefix`` and ``suffix``
    whose process no longer runs (with ``any_owner``, every such file, whatever its name holds
    after the prefix: for callers that know no other writer can be at work); return how many.

    Files of this process and of live ones are kept; files that cannot be removed are left.
    """
    directory = os.fspath(directory) or "."
    removed = 0
    for path in glob.glob(os.path.join(glob.escape(directory), f"{glob.escape(prefix)}*{glob.escape(suffix)}")):
        if not any_owner:
            owner = os.path.basename(path)[len(prefix):].split("-", 1)[0]
            if not owner.isdigit() or int(owner) == os.getpid() or _pid_alive(int(owner)):
                continue
        try:
            os.unlink(path)
            removed += 1
        except OSError:
            pass
    return removed


def pwrite_all(fd: int, data: Any, offset: int) -> None:
    """Write all of ``data`` (any C-contiguous buffer) at byte ``offset`` of ``fd``: ``os.pwrite``
    may write less than asked."""
    view = memoryview(data).cast("B")
    while len(view):
        written = os.pwrite(fd, view, offset)
        view = view[written:]
        offset += written


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
        tmp = temporary_file(directory, f".{os.path.basename(final)}.", ".part")
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
