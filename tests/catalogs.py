"""A cube catalog for tests: :class:`core.catalog.snapshot.Catalog` over given files, recording calls."""

from __future__ import annotations

from core.catalog.snapshot import Catalog


class RecordingCatalog(Catalog):
    """A :class:`core.catalog.snapshot.Catalog` (make it with ``RecordingCatalog.from_files(paths)``) that
    records the arguments of every :meth:`containing` call in :attr:`calls`."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.calls: list[tuple] = []

    def containing(self, ra, dec, radius_deg=0.0, *, product="SPOC", sectors=None):
        self.calls.append((ra, dec, radius_deg, product, None if sectors is None else list(sectors)))
        return super().containing(ra, dec, radius_deg, product=product, sectors=sectors)
