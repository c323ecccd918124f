"""Lists of data locations as settings write them (``CUTOUT_CUBE_DIRS``, ``CUTOUT_IMAGE_ROOTS``...)."""

from __future__ import annotations

import json

from core.errors import InvalidInputError

__all__ = ["read_list"]


def read_list(text: str) -> list[str]:
    """A list setting as the environment writes it: JSON (``'["a", "b"]'``) or comma-separated
    (``a,b``); the one reading of ``CUTOUT_CUBE_DIRS``-like values (the service's settings use it too)."""
    text = text.strip()
    if not text:
        return []
    if text.startswith("["):
        value = json.loads(text)
        if not isinstance(value, list):
            raise InvalidInputError("a list setting in JSON must be a list of strings", field="settings")
        return [str(v) for v in value]
    return [part.strip() for part in text.split(",") if part.strip()]
