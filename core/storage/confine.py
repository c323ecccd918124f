"""The path-confinement policy: which user-given paths and URIs the service may open.

:func:`confine` resolves a user-given path or ``s3://`` URI inside the configured data locations
before anything is opened, and refuses everything else (``..`` or symlinks leading out, absolute
paths elsewhere, other URI schemes, S3 keys outside the allowed prefixes) with
:class:`~core.errors.ForbiddenError`. Over-long names are refused with
:class:`~core.errors.InvalidInputError` before the file system sees them.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence

from core.errors import ForbiddenError, InvalidInputError
from core.storage.s3 import is_s3_uri, parse_s3_uri

__all__ = ["confine"]

_SCHEME_RE = re.compile(r"^([A-Za-z][A-Za-z0-9+.\-]*):")


#: longest path and path component accepted (the usual Linux limits, PATH_MAX and NAME_MAX)
MAX_PATH_BYTES = 4096
MAX_NAME_BYTES = 255


def _check_length(text: str, field: str) -> None:
    """Refuse names the file system would refuse (ENAMETOOLONG), before it is asked."""
    encoded = text.encode("utf-8", "surrogateescape")
    if len(encoded) > MAX_PATH_BYTES:
        raise InvalidInputError(f"Path is longer than {MAX_PATH_BYTES} bytes.", field=field)
    longest = max((len(part) for part in encoded.split(b"/")), default=0)
    if longest > MAX_NAME_BYTES:
        raise InvalidInputError(f"A path component is longer than {MAX_NAME_BYTES} bytes.", field=field)


def _within(path: str, root: str) -> bool:
    try:
        return os.path.commonpath([path, root]) == root
    except ValueError:
        return False


def confine(
    user_input: str | os.PathLike,
    roots: Sequence[str | os.PathLike],
    s3_prefixes: Sequence[str] = (),
    *,
    field: str = "path",
) -> str:
    """Resolve a user-given path or URI inside the allowed data locations, opening nothing.

    Parameters
    ----------
    user_input : str
        A local path (absolute, or relative to a root) or an ``s3://bucket/key`` URI.
    roots : sequence of str
        Allowed local directories. A relative input resolves against the first root under which
        it exists (else against the first root); it is refused if it leads out of any root.
    s3_prefixes : sequence of str
        Allowed ``s3://bucket/prefix`` locations; a prefix matches whole path segments
        (``s3://b/tess`` allows ``s3://b/tess/x`` but not ``s3://b/tessx``).
    field : str
        Name of the input, reported in the error.

    Returns
    -------
    str
        The real absolute path (symlinks resolved), or the normalized ``s3://`` URI.

    Raises
    ------
    ForbiddenError
        NUL bytes, ``..`` or symlinks leading out of every root, absolute paths outside the roots,
        ``file://``, ``http(s)://`` or any scheme other than ``s3://``, S3 URIs outside the prefixes.
    InvalidInputError
        Empty or non-string input.
    """
    if isinstance(user_input, os.PathLike):
        user_input = os.fspath(user_input)
    if not isinstance(user_input, str):
        raise InvalidInputError(
            f"Expected a path or s3:// URI, got {type(user_input).__name__}.", field=field
        )
    text = user_input.strip()
    if not text:
        raise InvalidInputError("Empty path.", field=field)
    if "\x00" in text:
        raise ForbiddenError("Path contains a NUL byte.", field=field)
    _check_length(text, field)

    m = _SCHEME_RE.match(text)
    if m and len(m.group(1)) > 1:  # one letter would be a Windows drive; we refuse those below anyway
        scheme = m.group(1).lower()
        if scheme != "s3" or not text[3:5] == "//":
            raise ForbiddenError(
                f"Scheme {scheme!r} is not allowed; use a data path or s3:// URI.", field=field
            )
        return _confine_s3(text, s3_prefixes, field)
    if m:
        raise ForbiddenError(f"Path {user_input!r} is not allowed.", field=field)

    real_roots = [os.path.realpath(os.fspath(r)) for r in roots]
    if not real_roots:
        raise ForbiddenError("Local paths are not allowed here.", field=field)
    if os.path.isabs(text):
        real = os.path.realpath(text)
        if any(_within(real, r) for r in real_roots):
            return real
        raise ForbiddenError(f"Path {user_input!r} is outside the allowed data directories.", field=field)
    first_inside: str | None = None
    for r in real_roots:
        real = os.path.realpath(os.path.join(r, text))
        if not _within(real, r):  # '..' or a symlink leads out: refuse outright
            raise ForbiddenError(
                f"Path {user_input!r} leads outside the allowed data directories.", field=field
            )
        if os.path.lexists(real):
            return real
        if first_inside is None:
            first_inside = real
    assert first_inside is not None
    return first_inside


def _confine_s3(text: str, prefixes: Sequence[str], field: str) -> str:
    try:
        bucket, key = parse_s3_uri("s3://" + text[5:], field=field)
    except InvalidInputError:
        raise ForbiddenError(f"Not an s3://bucket/key URI: {text!r}", field=field) from None
    segments = key.split("/")
    if any(s in ("..", ".") for s in segments) or "\\" in key:
        raise ForbiddenError(f"S3 key {key!r} contains '.' or '..' segments.", field=field)
    uri = f"s3://{bucket}/{key}"
    for p in prefixes:
        if not is_s3_uri(p):
            continue
        rest = p[5:]
        pb, _, pk = rest.partition("/")
        if pb != bucket:
            continue
        if not pk or pk.endswith("/") and key.startswith(pk) or key == pk or key.startswith(pk + "/"):
            return uri
    raise ForbiddenError(f"S3 location {uri} is outside the allowed prefixes.", field=field)
