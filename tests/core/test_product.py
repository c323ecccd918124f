"""core.product: the one place that knows SPOC from TICA."""

from __future__ import annotations

import pytest

from core.errors import InvalidInputError
from core.product import Product


@pytest.mark.parametrize("text", ["SPOC", "spoc", " Spoc ", Product.SPOC])
def test_names_are_read_case_insensitively(text):
    assert Product.parse(text) is Product.SPOC


def test_the_empty_name_is_the_default_only_when_asked():
    assert Product.parse("", empty_is_default=True) is Product.SPOC
    with pytest.raises(InvalidInputError) as err:
        Product.parse("")
    assert err.value.field == "product"


@pytest.mark.parametrize("bad", ["K2", "SPOC2", None, 3, "x" * 500])
def test_anything_else_names_the_field(bad):
    with pytest.raises(InvalidInputError) as err:
        Product.parse(bad, field="prod")
    assert err.value.field == "prod"
    assert len(str(err.value)) < 120


def test_names_and_columns():
    assert Product.SPOC == "SPOC" and f"{Product.TICA}" == "TICA"
    assert Product.SPOC.sector_name(38, 2, 2) == "tess-s0038-2-2"
    assert Product.TICA.cube_name(7, 1, 4) == "tica-s0007-1-4-cube.fits"
    assert Product.TICA.time_columns == ("STARTTJD", "ENDTJD")
    assert Product.SPOC.has_uncertainty and not Product.TICA.has_uncertainty
    assert Product.names() == ["SPOC", "TICA"]
