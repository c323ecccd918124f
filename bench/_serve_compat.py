"""``cutout serve`` with a shim for uvicorn's ``Multiprocess`` signature (a bench workaround).

``app.server.serve`` starts several processes with ``Multiprocess(config, target=server.run,
sockets=[sock])``; the pinned uvicorn (0.54) takes ``Multiprocess(config, sockets)`` and builds each
child's server itself, so ``cutout serve --workers N`` (and ``CUTOUT_PROCESSES=N``) exits with
``TypeError: ... unexpected keyword argument 'target'``. This launcher accepts and drops
``target`` when the installed uvicorn has no such parameter, then runs the ``cutout`` command line
unchanged: ``python bench/_serve_compat.py serve --workers 2 ...``. The benches use it only after
the real command failed that way, and say so.
"""

from __future__ import annotations

import inspect
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import uvicorn.supervisors
from uvicorn.supervisors.multiprocess import Multiprocess


class _Multiprocess(Multiprocess):
    """uvicorn's supervisor, also taking (and ignoring) the ``target`` older versions wanted."""

    def __init__(self, config: Any, target: Any = None, sockets: Any = None) -> None:
        super().__init__(config, sockets=sockets)


def needed() -> bool:
    """Whether the installed uvicorn's ``Multiprocess`` lacks the ``target`` parameter."""
    return "target" not in inspect.signature(Multiprocess.__init__).parameters


if needed():
    uvicorn.supervisors.Multiprocess = _Multiprocess  # type: ignore[misc]

if __name__ == "__main__":
    from app.cli import main

    sys.exit(main(sys.argv[1:]))
