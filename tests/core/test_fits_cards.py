"""Tests of core.fitsio.cards: fast card formatting and raw-card parsing agree with astropy."""

from __future__ import annotations

import math

import numpy as np
import pytest
from astropy.io import fits

from core.fitsio.cards import card, card_values, format_value, header_block


def test_raw_card_values_match_astropy():
    h = fits.Header()
    h["S1"] = ("it's  ", "a comment / with slash")
    h["S2"] = ("  lead", "")
    h["S3"] = ""
    h["B1"], h["B2"] = True, False
    h["I1"], h["I2"] = -42, 2**40
    h["F1"], h["F2"], h["F3"] = 2333.2569444444443, -1.5e-12, 1e300
    h.append(fits.Card.fromstring("F4      =              1.5D+03 / fortran exponent"))
    h.append(fits.Card.fromstring("U1      =                      / undefined"))
    h["I1"] = -42
    h.append(("I1", 7))  # duplicate: the first value wins, as Header.get gives
    text = h.tostring().encode("ascii")
    parsed = fits.Header.fromstring(h.tostring())
    values = card_values(text)
    for key in ("S1", "S2", "S3", "B1", "B2", "I1", "I2", "F1", "F2", "F3", "F4"):
        assert values[key] == parsed.get(key) and type(values[key]) is type(parsed.get(key)), key
    assert values["U1"] is None
    h["COMMENT"] = "commentary cards go to astropy"
    assert card_values(h.tostring().encode("ascii")) is None


@pytest.mark.parametrize("value", ["TESS", "", "it's", "x" * 50, True, False, 0, -7, 2**40, 0.0, -1.5e-12,
                                   2333.2569444444443, 1e300, np.float32(0.1), np.int32(5)])
def test_formatted_cards_read_back_as_astropy_reads_them(value):
    image = card("KEY", value, "a comment")
    assert len(image) == 80
    parsed = fits.Card.fromstring(image)
    if isinstance(value, (float, np.floating)):
        assert math.isclose(parsed.value, float(value), rel_tol=1e-15)
    else:
        assert parsed.value == (value.item() if isinstance(value, np.generic) else value)
    assert parsed.comment == "a comment"
    assert len(format_value(1.0)) == 20


def test_header_block_is_whole_fits_blocks_ending_in_end():
    block = header_block([card("A", 1), card("B", "x")])
    assert len(block) % 2880 == 0
    h = fits.Header.fromstring(block.decode("ascii"))
    assert h["A"] == 1 and h["B"] == "x"


def test_non_finite_values_are_refused():
    with pytest.raises(ValueError):
        format_value(float("nan"))
