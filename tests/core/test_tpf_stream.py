"""core.tpf.stream: a TPF produced in bounded pieces is byte-identical to the in-memory cut, its
spool is removed whatever happens, and cube_cut writes big files through it."""

from __future__ import annotations

import os

import numpy as np
import pytest

from core.cubes import cache as cube_mod
from core.cubes.cache import open_cube
from core.tpf import cut as tpf_mod
from core.tpf.cut import CutoutFactory, cut_bytes, locate
from core.tpf.stream import TpfStream, remove_stale_spools

# (x, y, size): inside, and partly off each edge (NaN padding), on a 64x64 test cube
CASES = [(31.81, 32.21, [9, 7]), (1.2, 2.6, 10), (62.3, 63.1, [12, 5]), (40.2, 20.7, 30), (20.0, 30.0, [64, 64])]


def _geo(cube, x, y, size):
    ra, dec = cube.wcs.all_pix2world(x, y, 0)
    return locate(cube, f"{float(ra)} {float(dec)}", size)


@pytest.mark.parametrize("product", ["SPOC", "TICA"])
@pytest.mark.parametrize("band_bytes", [1, 4096, 1 << 30], ids=["one-pixel-tiles", "small-bands", "one-band"])
def test_stream_equals_the_in_memory_cut(product, band_bytes, spoc_cube, tica_cube, tmp_path, monkeypatch):
    """Whatever the band size (tiles of one row-part, several rows, or all at once; table bands of
    one frame or all), the streamed bytes are the in-memory cut's, and the spool is gone after."""
    import core.tpf.stream as stream_mod

    monkeypatch.setattr(stream_mod.TpfStream, "__init__", _with_min_band(stream_mod.TpfStream.__init__))
    cube = open_cube(spoc_cube if product == "SPOC" else tica_cube)
    for case in CASES:
        geo = _geo(cube, *case)
        expected = bytes(cut_bytes(cube, geo).data)
        stream = TpfStream(cube, geo, work_dir=tmp_path, band_bytes=band_bytes)
        pieces = [bytes(chunk) for chunk in stream.chunks()]
        assert b"".join(pieces) == expected
        assert stream.nbytes == len(expected)
        assert max(len(p) for p in pieces) <= max(stream.band_bytes, len(expected) - stream.layout.nrows
                                                  * stream.layout.row_bytes, stream.layout.row_bytes)
        assert os.listdir(tmp_path) == []


def _with_min_band(init):
    """Let the tests use bands below the 1 MB floor (so a 64x64 cube needs many tiles)."""

    def patched(self, *args, band_bytes=None, **kwargs):
        init(self, *args, band_bytes=1 << 20, **kwargs)
        if band_bytes is not None:
            self.band_bytes = max(1, band_bytes)
            self._tiles = self._plan_tiles()

    return patched


def test_closing_early_removes_the_spool(spoc_cube, tmp_path):
    cube = open_cube(spoc_cube)
    stream = TpfStream(cube, _geo(cube, 31.8, 32.2, 20), work_dir=tmp_path)
    chunks = stream.chunks()
    next(chunks)  # the spool exists while pass 1 runs
    assert len(os.listdir(tmp_path)) == 1
    chunks.close()  # a client gone away
    assert os.listdir(tmp_path) == []


def test_a_cancelled_stream_stops_and_removes_the_spool(spoc_cube, tmp_path):
    import threading

    from core.tpf.stream import StreamCancelled

    cube = open_cube(spoc_cube)
    cancel = threading.Event()
    stream = TpfStream(cube, _geo(cube, 31.8, 32.2, 20), work_dir=tmp_path, cancel=cancel)
    chunks = stream.chunks()
    next(chunks)
    cancel.set()
    with pytest.raises(StreamCancelled):
        list(chunks)
    assert os.listdir(tmp_path) == []


def test_a_failed_read_removes_the_spool(spoc_cube, tmp_path, monkeypatch):
    cube = open_cube(spoc_cube)
    stream = TpfStream(cube, _geo(cube, 31.8, 32.2, 20), work_dir=tmp_path)

    def broken(*args, **kwargs):
        raise OSError("disk gone")

    monkeypatch.setattr(cube, "read_block_be", broken)
    with pytest.raises(Exception, match="disk gone|work_dir|Cannot"):
        list(stream.chunks())
    assert os.listdir(tmp_path) == []


def test_stale_spools_of_dead_processes_are_removed(tmp_path):
    dead = tmp_path / "tpf-spool-999999999-abc.bin"
    mine = tmp_path / f"tpf-spool-{os.getpid()}-abc.bin"
    other = tmp_path / "unrelated.bin"
    for p in (dead, mine, other):
        p.write_bytes(b"x")
    assert remove_stale_spools(tmp_path) == 1
    assert not dead.exists() and mine.exists() and other.exists()


def test_cube_cut_writes_big_files_in_bounded_pieces(spoc_cube, tmp_path, monkeypatch):
    """Above the inline size cube_cut writes through the stream: same file as the in-memory cut."""
    monkeypatch.setattr(tpf_mod, "INLINE_TPF_BYTES", 1000)
    calls = []
    real = TpfStream.chunks

    def spy(self):
        calls.append(self.nbytes)
        return real(self)

    monkeypatch.setattr(TpfStream, "chunks", spy)
    path = CutoutFactory().cube_cut(spoc_cube, "217.42893801 -62.67949189", 12, output_path=tmp_path)
    memory = CutoutFactory().cube_cut(spoc_cube, "217.42893801 -62.67949189", 12, memory_only=True)
    with open(path, "rb") as fh:
        assert fh.read() == bytes(memory.raw)
    assert calls and not [p for p in os.listdir(tmp_path) if p.endswith((".part", ".bin"))]
    np.testing.assert_array_equal(memory[1].data["FLUX"].shape, (10, 12, 12))
    cube_mod.clear_cache()
