"""The manifest of a batch: one row per (target, cube), written atomically and formula-safe, and
the reports that count rows by status.

:data:`MANIFEST_COLUMNS` are the manifest's columns (the service's job results read them too);
:class:`StatusCounts` is shared with :mod:`core.batch.cube_builds`.
"""

from __future__ import annotations

import csv
import dataclasses
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from core.batch.targets import formula_safe
from core.storage.atomic import atomic_output

__all__ = ["MANIFEST_COLUMNS", "BatchReport", "ManifestRow", "StatusCounts", "write_manifest"]

#: the manifest's columns, in order
MANIFEST_COLUMNS = ("index", "name", "ra", "dec", "sector", "camera", "ccd", "cube", "size", "status",
                    "file", "bytes", "error")


@dataclass
class ManifestRow:
    """One (target, cube) pair of a batch, as written to the manifest."""

    index: int
    name: str
    ra: str
    dec: str
    sector: int | None = None
    camera: int | None = None
    ccd: int | None = None
    cube: str = ""
    size: str = ""
    status: str = ""  # "ok" | "skipped" | "error"; "" while not finished
    file: str = ""
    bytes: int | None = None
    error: str = ""

    def as_csv(self) -> dict[str, Any]:
        """The row's cells (None as empty)."""
        return {k: ("" if v is None else v) for k, v in dataclasses.asdict(self).items()}


def write_manifest(path: str | os.PathLike, rows: Iterable[ManifestRow]) -> str:
    """Write ``rows`` as the manifest CSV at ``path``, atomically (temporary name, then rename);
    every cell :func:`core.batch.targets.formula_safe` (names come from the target table: a spreadsheet must not run
    them)."""
    with atomic_output(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=MANIFEST_COLUMNS)
        writer.writeheader()
        for row in rows:
            writer.writerow({k: formula_safe(v) for k, v in row.as_csv().items()})
    return os.fspath(path)


class StatusCounts:
    """``ok``, ``skipped`` and ``errors`` of a report whose items have a ``status``."""

    def _items(self) -> list[Any]:
        raise NotImplementedError

    def count(self, status: str) -> int:
        """Items of ``status``."""
        return sum(1 for item in self._items() if item.status == status)

    @property
    def ok(self) -> int:
        """Outputs written by this run."""
        return self.count("ok")

    @property
    def skipped(self) -> int:
        """Outputs already there whole."""
        return self.count("skipped")

    @property
    def errors(self) -> int:
        """Items that produced no output."""
        return self.count("error")


@dataclass
class BatchReport(StatusCounts):
    """What :func:`core.batch.cutouts.run_batch` did.

    Attributes
    ----------
    manifest : str
        Path of the manifest written.
    rows : list of ManifestRow
        One per (target, cube), plus one per bad or uncovered target, in table order.
    tasks : int
        Tasks run on the cluster (pairs not already recorded as done by the previous manifest).
    timings : dict
        Seconds spent planning, starting or reaching the cluster, running tasks, in all.
    interrupted : bool
        The run stopped early (the exception is re-raised; the report is then only on disk).
    """

    manifest: str
    rows: list[ManifestRow]
    tasks: int = 0
    timings: dict[str, float] = field(default_factory=dict)
    interrupted: bool = False

    def _items(self) -> list[Any]:
        return self.rows
