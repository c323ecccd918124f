"""FITS header cards: formatting them fast, and reading them from raw bytes.

The engine writes and reads many headers on hot paths (a TPF per request, a table row per FFI),
where astropy's ``Card``/``Header`` machinery costs milliseconds. These functions follow the FITS
standard's fixed format with the same rules as astropy (values right-justified in columns 11-30,
strings quoted with doubled quotes, long comments truncated) for the plain cards the engine makes
and meets; anything unusual (commentary, CONTINUE, HIERARCH cards, complex values) is left to
astropy by returning None.
"""

from __future__ import annotations

import math
import re
from typing import Any

import numpy as np
from astropy.io import fits

from core.errors import CorruptFileError
from core.quiet import quiet

__all__ = [
    "BLOCK",
    "CARD",
    "TooFewHdus",
    "card",
    "card_images",
    "card_values",
    "find_end",
    "format_value",
    "header_block",
    "padded",
    "raw_hdus",
    "read_header",
    "structural_keys",
]

#: bytes of a FITS block and of a card
BLOCK = 2880
CARD = 80


def padded(n: int) -> int:
    """``n`` rounded up to whole FITS blocks."""
    return -(-n // BLOCK) * BLOCK


def _fmt_float(value: float) -> str:
    if not math.isfinite(value):
        raise ValueError("FITS header values must be finite")
    s = str(float(value)).replace("e", "E")
    if len(s) > 20:
        idx = s.find("E")
        s = s[:20] if idx < 0 else s[: 20 - (len(s) - idx)] + s[idx:]
    return s


def format_value(value: Any) -> str:
    """The 20-character value field of a card (astropy's fixed format); strings are padded to 8
    characters inside their quotes, and only longer strings exceed 20 characters."""
    if value is None:
        return ""
    if isinstance(value, str):
        if value == "":
            return "''"
        quoted = "'" + f"{value.replace(chr(39), chr(39) * 2):8}" + "'"
        return f"{quoted:20}"
    if isinstance(value, (bool, np.bool_)):
        return f"{'T' if value else 'F':>20}"
    if isinstance(value, (int, np.integer)):
        return f"{int(value):>20d}"
    return f"{_fmt_float(float(value)):>20}"


def _card_image(key: str, val: str, comment: str = "") -> str:
    text = f"{key:8}= {val} / {comment}" if comment else f"{key:8}= {val}"
    return f"{text[:80]:80}"


def card(key: str, value: Any, comment: str = "") -> str:
    """One 80-character FITS card image (value cards only; strings must fit on one card)."""
    val = format_value(value)
    if isinstance(value, str) and len(val.rstrip()) > 70:
        raise ValueError(f"value of {key} is too long for one card")
    return _card_image(key, val, comment)


def header_block(cards: list[str]) -> bytes:
    """Card images, then END, padded with blanks to whole FITS blocks, as ASCII bytes."""
    text = "".join(cards) + f"{'END':80}"
    pad = padded(len(text)) - len(text)
    return (text + " " * pad).encode("ascii")


def card_images(header: fits.Header) -> list[tuple[str, str]]:
    """(keyword, 80-char image) for each card of an astropy header (long strings become CONTINUE)."""
    out = []
    for c in header.cards:
        img = c.image
        for i in range(0, len(img), 80):
            out.append((c.keyword if i == 0 else "CONTINUE", img[i : i + 80]))
    return out


def find_end(buf: bytes) -> int:
    """Offset just past the END card in ``buf`` (card-aligned), or -1."""
    for pos in range(0, len(buf) - CARD + 1, CARD):
        if buf[pos : pos + 3] == b"END" and buf[pos + 3 : pos + CARD].strip(b" ") == b"":
            return pos + CARD
    return -1


def read_header(source: Any, offset: int, uri: str) -> tuple[fits.Header, int]:
    """Read the header starting at ``offset`` of a byte source; return it (an astropy Header) and its
    padded length in bytes. Raises CorruptFileError (field ``cube_file``) for a header with no END
    card or non-ASCII bytes."""
    chunk = 10 * BLOCK
    buf = b""
    while True:
        n = min(chunk, source.size - offset - len(buf))
        if n <= 0:
            raise CorruptFileError(f"{uri}: FITS header at byte {offset} has no END card", field="cube_file")
        part = source.read_range(offset + len(buf), n)
        if not part:
            raise CorruptFileError(f"{uri}: file ends inside a FITS header", field="cube_file")
        start = max(0, len(buf) - len(buf) % CARD)
        buf += part
        end = find_end(buf[start:])
        if end >= 0:
            end += start
            break
        chunk *= 4
    try:
        text = buf[: end - CARD].decode("ascii")
    except UnicodeDecodeError:
        raise CorruptFileError(f"{uri}: not a FITS file (non-ASCII header)", field="cube_file") from None
    with quiet():
        try:
            header = fits.Header.fromstring(text)
        except Exception as exc:  # noqa: BLE001 - astropy raises several types for malformed cards
            raise CorruptFileError(f"{uri}: unreadable FITS header ({exc})", field="cube_file") from None
    return header, padded(end)


class TooFewHdus(Exception):
    """A file has fewer HDUs (or shorter headers) than :func:`raw_hdus` was asked to read."""


_STRUCTURAL = {"XTENSION", "BITPIX", "NAXIS", "PCOUNT", "GCOUNT", "BSCALE", "BZERO", "ZIMAGE", "SECTOR"}


def structural_keys(text: bytes) -> dict[str, Any]:
    """The few keywords that locate and describe an HDU's data, parsed from raw header cards."""
    keys: dict[str, Any] = {}
    for j in range(0, len(text), 80):
        card = text[j:j + 80]
        kw = card[:8].rstrip().decode("ascii", "replace")
        if kw == "END":
            break
        if card[8:10] != b"= " or not (kw in _STRUCTURAL or kw.startswith("NAXIS")) or kw in keys:
            continue
        v = card[10:].decode("ascii", "replace")
        if v.lstrip().startswith("'"):
            keys[kw] = v.strip().split("'")[1].rstrip()
            continue
        v = v.split("/", 1)[0].strip()
        if v in ("T", "F"):
            keys[kw] = v == "T"
        else:
            try:
                keys[kw] = int(v)
            except ValueError:
                try:
                    keys[kw] = float(v.replace("D", "E"))
                except ValueError:
                    keys[kw] = v
    return keys


def raw_hdus(path: str, count: int) -> list[tuple[bytes, int, dict]] | None:
    """Header bytes, data offset and structural keys of the first ``count`` HDUs of a plain FITS file.

    Parsing whole headers with astropy costs tens of ms per FFI (three headers each), which would be
    a large share of a cube build; only the structure is needed from most of them, so it is read
    from the raw 80-byte cards here. Returns None when the file is not plain FITS (e.g. gzip).
    """
    out = []
    with open(path, "rb") as f:
        off = 0
        for _ in range(count):
            blocks = []
            while True:
                blk = f.read(BLOCK)
                if not blocks and not out and not blk.startswith(b"SIMPLE  ="):
                    return None
                if len(blk) < BLOCK:
                    raise TooFewHdus()
                blocks.append(blk)
                if any(blk[j:j + 8] == b"END     " for j in range(0, BLOCK, 80)):
                    break
            text = b"".join(blocks)
            keys = structural_keys(text)
            naxis = keys.get("NAXIS", 0)
            if not isinstance(naxis, int) or isinstance(keys.get("BITPIX"), (str, type(None))):
                raise TooFewHdus()
            size = 0
            if naxis:
                size = int(np.prod([keys.get(f"NAXIS{k}", 0) for k in range(1, naxis + 1)]))
                size = abs(int(keys["BITPIX"])) // 8 * keys.get("GCOUNT", 1) * (keys.get("PCOUNT", 0) + size)
            data_off = off + len(text)
            out.append((text, data_off, keys))
            off = data_off + padded(size)
            f.seek(off)
    return out


_INT = re.compile(r"[+-]?\d+$")


def card_values(text: bytes) -> dict[str, Any] | None:
    """Values of a header's cards (first occurrence of each keyword), parsed from the raw cards.

    astropy's card parsing costs about 10 ms per FFI header (mostly configuration look-ups per
    card), a large share of a cube build; this parses the plain cards FFIs use (strings, logicals,
    integers, reals, blanks) with astropy's rules (quotes doubled, trailing blanks stripped).
    Returns None for anything else (commentary, CONTINUE, HIERARCH, complex values), and the caller
    then uses astropy.
    """
    out: dict[str, Any] = {}
    for j in range(0, len(text), 80):
        card = text[j:j + 80].decode("ascii", "replace")
        kw = card[:8].rstrip()
        if kw == "END":
            return out
        if kw in ("COMMENT", "HISTORY", "", "CONTINUE", "HIERARCH") or card[8:10] != "= ":
            return None
        v = card[10:].lstrip()
        if v.startswith("'"):
            i, chars = 1, []
            while True:
                k = v.find("'", i)
                if k < 0:
                    return None
                chars.append(v[i:k])
                if v[k + 1:k + 2] == "'":
                    chars.append("'")
                    i = k + 2
                    continue
                break
            val: Any = "".join(chars).rstrip()
            if val.endswith("&"):
                return None  # maybe a long string continued on CONTINUE cards
        else:
            v = v.split("/", 1)[0].strip()
            if v == "":
                val = None
            elif v in ("T", "F"):
                val = v == "T"
            elif _INT.match(v):
                val = int(v)
            else:
                try:
                    val = float(v.replace("D", "E").replace("d", "e"))
                except ValueError:
                    return None
        if kw not in out:
            out[kw] = val
    return out
