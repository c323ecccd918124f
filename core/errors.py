"""Exception types raised by the cutout engine.

Every error the engine raises on purpose derives from :class:`CutoutError`. The service maps each
class to one HTTP status in a single table (``app/errors.py``); nothing else in the engine knows
about HTTP. Each error may name the input ``field`` it is about, so that a client sees which
parameter was wrong.
"""

from __future__ import annotations


class CutoutError(Exception):
    """Base class of every deliberate engine error.

    Parameters
    ----------
    message : str
        A short, complete sentence for a person.
    field : str, optional
        The name of the input (parameter) the error is about, e.g. ``"cutout_size"``.
    """

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field

    def __str__(self) -> str:  # pragma: no cover - trivial
        return self.message


class InvalidInputError(CutoutError, ValueError):
    """A parameter has an invalid value (bad coordinates, size < 1, unknown unit or product...)."""


class NotFoundError(CutoutError, FileNotFoundError):
    """A file, object or cube that was asked for does not exist."""


class MissingInputError(NotFoundError, InvalidInputError):
    """A file named as an input does not exist. Both a :class:`NotFoundError` (the engine's
    family, HTTP 404) and an :class:`InvalidInputError` (what astrocut raises for a missing cube
    in ``update_cube``, so code written for astrocut catches it)."""


class NoDataError(CutoutError):
    """The request is valid but there is no data for it (position off every CCD/image)."""


class ForbiddenError(CutoutError, PermissionError):
    """An input lies outside the configured data roots, or uses a forbidden scheme."""


class TooLargeError(CutoutError):
    """A request exceeds a configured limit (cutout side, pixels x frames, file count, body size)."""


class CorruptFileError(CutoutError):
    """A file exists but is not what it should be (not a cube, truncated, unreadable FITS)."""


class UnavailableError(CutoutError):
    """A backend (S3 endpoint, name resolver) cannot be reached right now; retrying may help."""


class QuotaError(CutoutError):
    """A per-client or server-wide quota is used up for now (too many jobs in flight); trying
    again after ``retry_after_s`` seconds may succeed. The message names the limit."""

    def __init__(self, message: str, *, retry_after_s: int, field: str | None = None) -> None:
        super().__init__(message, field=field)
        self.retry_after_s = max(1, int(retry_after_s))


class NotSupportedError(CutoutError):
    """The request is well formed but this server cannot do what it asks, ever (e.g. resolve an
    object name with no resolver configured): a permanent condition, not worth retrying."""


class CutoutTimeoutError(CutoutError, TimeoutError):
    """An operation took longer than its allowed time."""


class InputWarning(UserWarning):
    """An input was ignored or adjusted and the call went on (astrocut's ``InputWarning``): e.g. a
    cutout size with more than two elements, of which the first two are used."""


class DataWarning(UserWarning):
    """An input (file, extension, frame) was skipped or has no usable data (astrocut's
    ``DataWarning``)."""


__all__ = [
    "CorruptFileError",
    "CutoutError",
    "CutoutTimeoutError",
    "DataWarning",
    "ForbiddenError",
    "InputWarning",
    "InvalidInputError",
    "MissingInputError",
    "NoDataError",
    "NotFoundError",
    "NotSupportedError",
    "QuotaError",
    "TooLargeError",
    "UnavailableError",
]
