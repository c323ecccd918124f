"""core.cubes.frames (time windows, frame binning) through every reader: TPFs in memory and
streamed, light curves, reads of only the window's bytes, local and S3, and lightkurve on a binned
TPF."""

from __future__ import annotations

import io
import os
import warnings
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

from core.cubes.cache import open_cube
from core.cubes.frames import FrameSelection, TimeWindow, bin_pixels, cadence_columns
from core.cubes.lightcurve import aperture_lightcurve, square_mask
from core.cutout_size import CutoutSize
from core.errors import InvalidInputError, NoDataError
from core.synthetic.ffis import DEMO_DEC, DEMO_RA
from core.tpf.cut import CutoutFactory, cut_bytes, locate, tpf_bytes, tpf_filename
from core.tpf.stream import TpfStream

CENTRE = f"{DEMO_RA} {DEMO_DEC}"


def _times(cube_path):
    return np.asarray(open_cube(cube_path).time, dtype=float)


def _cut(cube_path, size=7, **window):
    return CutoutFactory().cube_cut(cube_path, CENTRE, size, memory_only=True, **window)


# -- the request and its resolution ------------------------------------------------------------


@pytest.mark.parametrize("kwargs,field", [
    ({"time_min": float("nan")}, "time_min"),
    ({"time_max": float("inf")}, "time_max"),
    ({"time_min": "soon"}, "time_min"),
    ({"time_min": True}, "time_min"),
    ({"time_min": 2.0, "time_max": 1.0}, "time_max"),
    ({"frame_bin": 0}, "frame_bin"),
    ({"frame_bin": -3}, "frame_bin"),
    ({"frame_bin": 2.5}, "frame_bin"),
    ({"frame_bin": True}, "frame_bin"),
])
def test_bad_windows_name_their_field(kwargs, field):
    with pytest.raises(InvalidInputError) as err:
        TimeWindow(**kwargs)
    assert err.value.field == field


def test_resolve_is_inclusive_and_contiguous():
    times = np.arange(10.0) + 100.0
    sel = TimeWindow(102.0, 106.0).resolve(times)
    assert (sel.start, sel.stop, sel.ncadences, sel.dropped) == (2, 7, 5, 0)
    assert TimeWindow(None, 101.5).resolve(times).stop == 2  # open start
    assert TimeWindow(107.5, None).resolve(times).start == 8  # open end
    assert TimeWindow().resolve(times).is_full
    assert TimeWindow(-1e9, 1e9).resolve(times).is_full  # a window holding every frame is "all"
    binned = TimeWindow(102.0, 108.0, frame_bin=3).resolve(times)
    assert (binned.ncadences, binned.used_stop, binned.dropped) == (2, 8, 1)  # 7 frames: 2 bins, 1 dropped
    with_nan = times.copy()
    with_nan[4] = np.nan  # a frame without a time inside the run is kept
    assert TimeWindow(102.0, 106.0).resolve(with_nan).count == 5


def test_resolve_refuses_empty_windows_and_oversized_bins():
    times = np.arange(10.0) + 100.0
    with pytest.raises(NoDataError) as err:
        TimeWindow(200.0, 300.0).resolve(times)
    assert err.value.field == "time_min"
    with pytest.raises(NoDataError):
        TimeWindow(102.2, 102.8).resolve(times)  # between two frames
    with pytest.raises(InvalidInputError) as err:
        TimeWindow(102.0, 104.0, frame_bin=4).resolve(times)
    assert err.value.field == "frame_bin"
    with pytest.raises(InvalidInputError):
        TimeWindow(frame_bin=11).resolve(times)
    assert TimeWindow(frame_bin=10).resolve(times).ncadences == 1


def test_bin_pixels_is_a_nan_aware_mean_and_quadrature_error():
    rng = np.random.default_rng(3)
    block = rng.normal(100, 10, size=(3, 4, 9, 2)).astype(">f4")
    block[0, 0, 1, 0] = np.nan  # one frame's flux missing: that frame's error is not used
    block[1, 2, 3:6, 0] = np.nan  # a whole bin missing: NaN in both planes
    out = bin_pixels(block, 3)
    assert out.shape == (3, 4, 3, 2) and out.dtype == np.dtype(">f4")
    f = block[..., 0].astype(float).reshape(3, 4, 3, 3)
    e = block[..., 1].astype(float).reshape(3, 4, 3, 3)
    ok = np.isfinite(f)
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # the all-NaN bin's "mean of empty slice"
        mean = np.nanmean(np.where(ok, f, np.nan), axis=3)
        err = np.sqrt(np.where(ok, e * e, 0).sum(axis=3)) / ok.sum(axis=3)
    assert np.allclose(out[..., 0], mean, equal_nan=True, rtol=1e-6)
    assert np.allclose(out[..., 1], err, equal_nan=True, rtol=1e-6)
    assert np.isnan(out[1, 2, 1]).all()
    assert out[0, 0, 0, 0] == np.float32((f[0, 0, 0, 0] + f[0, 0, 0, 2]) / 2)
    assert bin_pixels(block, 1) is block


def test_cadence_columns(spoc_cube):
    cube = open_cube(spoc_cube)
    frames = cube.frames
    quality = frames.quality.copy()
    sel = TimeWindow(frame_bin=3).resolve(cube.time)
    cols = cadence_columns(frames, sel)
    assert np.allclose(cols.time, np.asarray(frames.time[:9], float).reshape(3, 3).mean(axis=1))
    assert (cols.quality == np.bitwise_or.reduce(quality[:9].reshape(3, 3), axis=1)).all()
    assert (cols.cadence == frames.cadence[0:9:3]).all() and (cols.ffi_file == frames.ffi_file[0:9:3]).all()
    assert (cols.start == frames.start[0:9:3]).all() and (cols.stop == frames.stop[2:9:3]).all()
    assert cadence_columns(frames, FrameSelection.all(cube.nframes)) is frames


# -- target pixel files --------------------------------------------------------------------------


@pytest.mark.parametrize("which", ["spoc", "tica"])
@pytest.mark.parametrize("size", [7, 64])
def test_a_window_holding_every_frame_gives_identical_bytes(which, size, spoc_cube, tica_cube):
    path = spoc_cube if which == "spoc" else tica_cube
    t = _times(path)
    plain = tpf_bytes(_cut(path, size))
    assert tpf_bytes(_cut(path, size, time_min=t[0] - 1, time_max=t[-1] + 1)) == plain
    assert tpf_bytes(_cut(path, size, time_min=float(t[0]), time_max=float(t[-1]), frame_bin=1)) == plain
    assert tpf_bytes(_cut(path, size, frame_bin=1)) == plain


@pytest.mark.parametrize("which", ["spoc", "tica"])
def test_window_keeps_those_frames_and_says_so(which, spoc_cube, tica_cube):
    path = spoc_cube if which == "spoc" else tica_cube
    t = _times(path)
    full = _cut(path, [9, 6])
    win = _cut(path, [9, 6], time_min=float(t[2]), time_max=float(t[6]))
    for col in ("FLUX", "FLUX_ERR", "TIME", "QUALITY", "CADENCENO"):
        assert np.array_equal(win[1].data[col], full[1].data[col][2:7], equal_nan=True), col
    assert list(win[1].data["FFI_FILE"]) == list(full[1].data["FFI_FILE"][2:7])
    assert np.array_equal(win[2].data, full[2].data)
    h = win[0].header
    assert (h["FRAMEBIN"], h["FRAMEIDX"], h["FRAMEUSE"], h["FRAMEDRP"]) == (1, 2, 5, 0)
    assert h["TSTART"] < t[2] < t[6] < h["TSTOP"] and h["TSTART"] > full[0].header["TSTART"]
    assert h["TELAPSE"] == pytest.approx(h["TSTOP"] - h["TSTART"])
    assert h["TWINMIN"] == float(t[2]) and h["TWINMAX"] == float(t[6])
    assert win[1].header["NAXIS2"] == 5 and win[1].header["TSTART"] == h["TSTART"]
    for key in ("FRAMEBIN", "TWINMIN"):
        assert key not in full[0].header


def test_binned_tpf_columns_and_headers(spoc_cube):
    t = _times(spoc_cube)
    full = _cut(spoc_cube, 5)
    binned = _cut(spoc_cube, 5, frame_bin=4)  # 10 frames: 2 cadences, 2 dropped
    d, f = binned[1].data, full[1].data
    assert len(d) == 2
    flux = f["FLUX"][:8].astype(float).reshape(2, 4, 5, 5)
    err = f["FLUX_ERR"][:8].astype(float).reshape(2, 4, 5, 5)
    assert np.allclose(d["FLUX"], flux.mean(axis=1), rtol=1e-6)
    assert np.allclose(d["FLUX_ERR"], np.sqrt((err ** 2).sum(axis=1)) / 4, rtol=1e-6)
    assert np.allclose(d["TIME"], t[:8].reshape(2, 4).mean(axis=1), rtol=0, atol=1e-9)
    assert (d["QUALITY"] == np.bitwise_or.reduce(f["QUALITY"][:8].reshape(2, 4), axis=1)).all()
    assert (d["CADENCENO"] == f["CADENCENO"][[0, 4]]).all()
    h = binned[0].header
    assert (h["FRAMEBIN"], h["FRAMEUSE"], h["FRAMEDRP"]) == (4, 8, 2)
    assert h["TSTOP"] < full[0].header["TSTOP"]  # the dropped frames are not in the span


def test_binned_exposure_keywords_scale(spoc_cube, tmp_path):
    """Per-frame keywords of PIXELS (EXPOSURE, TIMEDEL, NUM_FRM...) are per cadence after binning."""
    cube = open_cube(spoc_cube)
    plain, binned = _cut(spoc_cube, 5), _cut(spoc_cube, 5, frame_bin=2)
    scaled = [k for k in ("EXPOSURE", "TIMEDEL", "LIVETIME", "NUM_FRM") if cube.wcs_header.get(k) is not None]
    assert scaled, "the synthetic FFIs carry per-frame exposure keywords"
    for key in scaled:
        assert binned[1].header[key] == pytest.approx(2 * plain[1].header[key])


@pytest.mark.parametrize("band_bytes", [1, 1 << 30], ids=["tiny-bands", "one-band"])
@pytest.mark.parametrize("window", [{"time_min": 2333.26, "time_max": 2333.30}, {"frame_bin": 3},
                                    {"time_min": 2333.262, "frame_bin": 2}])
def test_stream_equals_the_in_memory_cut(spoc_cube, tmp_path, window, band_bytes):
    from tests.core.test_tpf_stream import CASES, _geo

    cube = open_cube(spoc_cube)
    frames = TimeWindow(**window).resolve(cube.time)
    for case in CASES:
        geo = _geo(cube, *case)
        expected = bytes(cut_bytes(cube, geo, frames=frames).data)
        stream = TpfStream(cube, geo, work_dir=tmp_path, band_bytes=1 << 20, frames=frames)
        stream.band_bytes = band_bytes
        stream._tiles = stream._plan_tiles()
        assert b"".join(bytes(c) for c in stream.chunks()) == expected
        assert stream.spool_bytes == geo.inside.nx * geo.inside.ny * frames.ncadences * cube.nplanes * 4
        assert os.listdir(tmp_path) == []


def test_big_windowed_file_is_streamed_to_disk(spoc_cube, tmp_path, monkeypatch):
    """cube_cut writes a windowed TPF past the in-memory size through the stream, under a name
    that says which frames it holds."""
    from core.tpf import cut as tpf_mod

    t = _times(spoc_cube)
    expected = tpf_bytes(_cut(spoc_cube, 20, time_min=float(t[3]), frame_bin=2))
    monkeypatch.setattr(tpf_mod, "INLINE_TPF_BYTES", 1)
    path = CutoutFactory().cube_cut(spoc_cube, CENTRE, 20, output_path=tmp_path, time_min=float(t[3]), frame_bin=2)
    assert path.endswith("_20x20_f3-9_bin2_astrocut.fits")
    assert Path(path).read_bytes() == expected


def test_window_reads_only_its_frames(spoc_cube):
    """A window is one range per pixel: the bytes read are the window's pixels' frames."""
    cube = open_cube(spoc_cube)
    sel = TimeWindow(2333.26, 2333.28).resolve(cube.time)
    geo = locate(cube, CENTRE, CutoutSize(6, 6), frames=sel)
    before = cube.source.stats.snapshot()
    cut_bytes(cube, geo, frames=sel)
    gets, nbytes = (a - b for a, b in zip(cube.source.stats.snapshot(), before))
    assert nbytes == 36 * sel.count * cube.nplanes * 4
    assert gets == 36


def test_window_on_no_frame_and_bad_bin(spoc_cube):
    with pytest.raises(NoDataError) as err:
        _cut(spoc_cube, time_min=1000.0, time_max=1001.0)
    assert err.value.field == "time_min"
    with pytest.raises(InvalidInputError) as err:
        _cut(spoc_cube, frame_bin=11)
    assert err.value.field == "frame_bin"
    with pytest.raises(InvalidInputError) as err:
        _cut(spoc_cube, time_min=5.0, time_max=4.0)
    assert err.value.field == "time_max"


def test_volume_limit_counts_the_frames_read(spoc_cube):
    """A window lets a wider cutout through the pixels x frames limit."""
    from core.errors import TooLargeError

    t = _times(spoc_cube)
    factory = CutoutFactory(max_volume=10 * 10 * 5)
    with pytest.raises(TooLargeError):
        factory.cube_cut(spoc_cube, CENTRE, 10, memory_only=True)
    tpf = factory.cube_cut(spoc_cube, CENTRE, 10, memory_only=True, time_min=float(t[0]), time_max=float(t[4]))
    assert tpf[1].header["NAXIS2"] == 5


def test_tpf_filename_names_the_frames():
    sel = FrameSelection(3, 10, 2, 10)
    assert tpf_filename("tess-s0038-2-2-cube.fits", 1, 2, 5, 5, sel) == (
        "tess-s0038-2-2_1.000000_2.000000_5x5_f3-9_bin2_astrocut.fits")
    assert tpf_filename("tess-s0038-2-2-cube.fits", 1, 2, 5, 5, FrameSelection.all(10)) == (
        "tess-s0038-2-2_1.000000_2.000000_5x5_astrocut.fits")


def test_s3_window_matches_local_either_way(s3_server, spoc_cube):
    """Over S3 the window is read as per-pixel ranges or as whole row spans, whichever the cost
    model prefers; both give the local pixels."""
    import dataclasses

    from core.cubes.cube import Cube
    from core.cubes.info import read_cube_info
    from core.storage.sources import S3Source

    uri = s3_server.upload(spoc_cube, "cubes", "tess-s0038-2-2-window.fits")
    local = open_cube(spoc_cube)
    expected = local.read_block_be(20, 30, 25, 33, frames=(2, 7))
    assert np.array_equal(expected, local.read_block_be(20, 30, 25, 33)[:, :, 2:7])
    # slow requests and a fast link favour rows; fast requests and a slow link favour pixels
    for latency, bandwidth, plan in ((10.0, 1e6, "rows"), (1e-6, 1e-3, "pixels")):
        config = dataclasses.replace(s3_server.config, latency_s=latency, bandwidth_mb_s=bandwidth,
                                     max_connections=4)
        source = S3Source(uri, config)
        # pixels as far apart as a 12,000-frame cube's (over 64 KiB): no coalescing
        source.default_coalesce_gap = 0
        remote = Cube(read_cube_info(source), source)
        assert remote.window_plan(20, 30, 25, 33, 2, 7) == plan
        before = source.stats.snapshot()[0]
        got = remote.read_block_be(20, 30, 25, 33, frames=(2, 7))
        assert np.array_equal(got, expected), plan
        assert source.stats.snapshot()[0] - before == (10 if plan == "rows" else 80)


# -- light curves and lightkurve ---------------------------------------------------------------


def _lk_read(raw: bytes, tmp_path, name: str):
    lk = pytest.importorskip("lightkurve")
    path = tmp_path / name
    path.write_bytes(raw)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return lk.read(str(path), quality_bitmask="none")


def test_lightkurve_reads_a_binned_tpf(spoc_cube, tmp_path):
    """lightkurve opens a binned TPF, and its light curve's flux is the mean of the unbinned light
    curve's over each bin (the sums of means equal the means of sums)."""
    k = 3
    plain = _lk_read(tpf_bytes(_cut(spoc_cube, 7)), tmp_path, "plain.fits")
    binned = _lk_read(tpf_bytes(_cut(spoc_cube, 7, frame_bin=k)), tmp_path, "binned.fits")
    assert binned.shape == (plain.shape[0] // k, 7, 7)
    lc_plain = plain.to_lightcurve(aperture_mask="all")
    lc_binned = binned.to_lightcurve(aperture_mask="all")
    n = len(lc_binned)
    expected = np.asarray(lc_plain.flux.value[: n * k], float).reshape(n, k).mean(axis=1)
    assert np.allclose(lc_binned.flux.value, expected, rtol=1e-6)
    assert np.allclose(lc_binned.time.value, lc_plain.time.value[: n * k].reshape(n, k).mean(axis=1), atol=1e-9)
    assert binned.sector == plain.sector and binned.column == plain.column and binned.row == plain.row


def test_sap_of_a_window_equals_lightkurve_on_the_binned_tpf(spoc_cube, tmp_path):
    """The light curve of a window and binning is lightkurve's SAP on that binned TPF, bit for bit."""
    cube = open_cube(spoc_cube)
    t = _times(spoc_cube)
    sel = TimeWindow(float(t[1]), None, frame_bin=2).resolve(cube.time)
    for band_bytes in (1, 1 << 20):
        lc = aperture_lightcurve(cube, DEMO_RA, DEMO_DEC, square_mask(3), frames=sel, band_bytes=band_bytes)
        geo = locate(cube, f"{DEMO_RA!r} {DEMO_DEC!r}", CutoutSize(3, 3), frames=sel)
        tpf = _lk_read(bytes(cut_bytes(cube, geo, frames=sel).data), tmp_path, f"sap{band_bytes}.fits")
        ref = tpf.to_lightcurve(aperture_mask="all")
        assert len(lc) == sel.ncadences == 4
        assert np.array_equal(ref.time.value, lc.time)
        assert np.array_equal(np.asarray(ref.flux.value, np.float32), lc.flux)
        assert np.array_equal(np.asarray(ref.flux_err.value, np.float32), lc.flux_err)
        assert np.array_equal(np.asarray(ref.quality), lc.quality)


def test_the_astrocut_class_takes_a_window(spoc_cube, tmp_path):
    from core.astrocut_api.tess_cube_cutout import TessCubeCutout

    t = _times(spoc_cube)
    cut = TessCubeCutout(spoc_cube, CENTRE, 5, time_min=float(t[4]), frame_bin=2)
    assert cut.cutouts[0].data.shape == (3, 5, 5)
    ceil = TessCubeCutout(spoc_cube, CENTRE, 5, time_min=float(t[4]), frame_bin=2, limit_rounding_method="ceil")
    assert ceil.cutouts[0].data.shape[0] == 3
    with pytest.raises(InvalidInputError) as err:
        TessCubeCutout(spoc_cube, CENTRE, 5, frame_bin=0)
    assert err.value.field == "frame_bin"
    with pytest.raises(NoDataError), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        TessCubeCutout(spoc_cube, CENTRE, 5, time_min=1.0, time_max=2.0)
    hdr = fits.getheader(io.BytesIO(tpf_bytes(cut.tpf_cutouts[0])))
    assert hdr["FRAMEBIN"] == 2
