"""The TESS cube products this engine knows: SPOC and TICA, and everything that differs between them.

Every place that needs to know a product's name, its file-name prefix, its table's time and quality
columns, or whether it carries an uncertainty plane asks a :class:`Product`; a new cube product is
one more member here (and, where its FFIs differ, one more entry in the cube builder's table).

Examples
--------
>>> Product.parse("tica")
<Product.TICA: 'TICA'>
>>> Product.SPOC.sector_name(38, 2, 2)
'tess-s0038-2-2'
>>> Product.TICA.cube_name(38, 2, 2)
'tica-s0038-2-2-cube.fits'
"""

from __future__ import annotations

import enum
from typing import Any

from core.errors import InvalidInputError

__all__ = ["Product"]


class Product(enum.StrEnum):
    """A cube product. Compares equal to its name (``Product.SPOC == "SPOC"``)."""

    #: MAST's calibrated FFIs (flux and uncertainty planes; times from TSTART/TSTOP, BTJD)
    SPOC = "SPOC"
    #: the TESS Image CAlibrator's quick-look FFIs (one plane; times from STARTTJD/ENDTJD)
    TICA = "TICA"

    @classmethod
    def default(cls) -> Product:
        """The product TESScut uses when none is asked for."""
        return cls.SPOC

    @classmethod
    def parse(cls, value: Any, *, field: str = "product", empty_is_default: bool = False) -> Product:
        """Read a product name, case-insensitively.

        Parameters
        ----------
        value : str or Product
            The name.
        field : str
            The parameter name an error names.
        empty_is_default : bool
            Read ``""`` (what an HTML form sends for an unset field) as :meth:`default`.

        Raises
        ------
        InvalidInputError
            Not a product name (naming ``field``).
        """
        if isinstance(value, Product):
            return value
        if isinstance(value, str):
            text = value.strip().upper()
            if not text and empty_is_default:
                return cls.default()
            try:
                return cls(text)
            except ValueError:
                pass
        shown = value[:20] if isinstance(value, str) else type(value).__name__
        raise InvalidInputError(f"product must be one of {', '.join(cls.names())}, got {shown!r}", field=field)

    @classmethod
    def names(cls) -> list[str]:
        """Every product's name."""
        return [p.value for p in cls]

    @property
    def prefix(self) -> str:
        """The prefix of MAST's cube and sector names (``tess`` or ``tica``)."""
        return _PREFIX[self]

    def sector_name(self, sector: int, camera: int, ccd: int) -> str:
        """TESScut's ``sectorName``: ``tess-s0038-2-2`` or ``tica-s0038-2-2``."""
        return f"{self.prefix}-s{int(sector):04d}-{int(camera)}-{int(ccd)}"

    def cube_name(self, sector: int, camera: int, ccd: int) -> str:
        """MAST's cube file name: ``tess-s0038-2-2-cube.fits`` or ``tica-s0038-2-2-cube.fits``."""
        return self.sector_name(sector, camera, ccd) + "-cube.fits"

    @property
    def time_columns(self) -> tuple[str, str]:
        """The cube table's start and stop time columns (BTJD)."""
        return _TIME_COLUMNS[self]

    @property
    def required_columns(self) -> tuple[str, ...]:
        """The cube table columns a cube of this product must have."""
        return _REQUIRED_COLUMNS[self]

    @property
    def has_uncertainty(self) -> bool:
        """Whether its cubes carry a second (uncertainty) plane that TPFs copy to FLUX_ERR."""
        return self is Product.SPOC

    @property
    def has_timecorr(self) -> bool:
        """Whether its TPFs carry a TIMECORR column (the barycentric correction)."""
        return self is Product.SPOC

    @property
    def flux_unit(self) -> str:
        """The unit of its TPFs' FLUX column (astrocut 1.4.0 for SPOC, 0.11.1 for TICA)."""
        return "e-/s" if self is Product.SPOC else "e-"


_PREFIX = {Product.SPOC: "tess", Product.TICA: "tica"}
_TIME_COLUMNS = {Product.SPOC: ("TSTART", "TSTOP"), Product.TICA: ("STARTTJD", "ENDTJD")}
_REQUIRED_COLUMNS = {
    Product.SPOC: ("TSTART", "TSTOP", "BARYCORR", "DQUALITY", "FFI_FILE"),
    Product.TICA: ("STARTTJD", "ENDTJD", "QUAL_BIT", "FFI_FILE"),
}
