"""Bench: fits_cut 200x300 and img_cut PNG of a full-size (2136x2078) image, ours vs astrocut 1.4.0.

Usage: ``python bench/bench_fits_img.py [--quick]``. Prints the median of N runs for each and the
ratio astrocut / ours (> 1 means we are faster). Both write files to a temporary directory.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np
from astropy.io import fits
from astropy.wcs import WCS

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _timing import median_ms

from core.images.cutouts import fits_cut
from core.images.render import img_cut


def make_image(path: Path) -> None:
    ny, nx = 2078, 2136
    w = WCS(naxis=2)
    w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    w.wcs.crval, w.wcs.crpix, w.wcs.cdelt = [150.0, 2.0], [nx / 2, ny / 2], [-0.0058, 0.0058]
    data = np.random.default_rng(0).normal(100, 10, size=(ny, nx)).astype("f4")
    fits.HDUList([fits.PrimaryHDU(), fits.ImageHDU(data, w.to_header())]).writeto(path)



def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="fewer repetitions")
    args = parser.parse_args()
    n = 5 if args.quick else 30
    import astrocut

    warnings.simplefilter("ignore")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        image = tmp / "full.fits"
        make_image(image)
        coord, size = "150.1 2.1", [200, 300]
        cases = {
            "fits_cut 200x300": (
                lambda: fits_cut(str(image), coord, size, output_dir=tmp / "ours"),
                lambda: astrocut.fits_cut(str(image), coord, size, output_dir=tmp / "theirs"),
            ),
            "img_cut PNG 200x300": (
                lambda: img_cut(str(image), coord, size, img_format="png", output_dir=tmp / "ours"),
                lambda: astrocut.img_cut(str(image), coord, size, img_format="png", output_dir=tmp / "theirs"),
            ),
        }
        print(f"median of {n} runs (ms); ratio = astrocut / ours")
        for name, (ours, theirs) in cases.items():
            t_ours = median_ms(ours, n, warm=True)
            t_theirs = median_ms(theirs, n, warm=True)
            print(f"{name:22s} ours {t_ours:7.2f}  astrocut {t_theirs:7.2f}  ratio {t_theirs / t_ours:5.2f}")


if __name__ == "__main__":
    main()
