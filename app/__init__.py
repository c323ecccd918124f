"""The HTTP service over the cutout engine: a TESScut API v0.1 compatible FastAPI application.

``app.main.create_app(settings)`` builds the application; nothing here imports the heavy engine
modules at import time.
"""

from __future__ import annotations

__all__ = ["__version__"]

from core import __version__
