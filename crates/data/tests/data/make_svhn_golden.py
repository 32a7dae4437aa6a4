"""Writes the SVHN golden files with SciPy (an independent MAT v5 writer).

    python3 make_svhn_golden.py   # in crates/data/tests/data

Two images in the official layout: `X` uint8 [32, 32, 3, 2] and `y` [2, 1] with
labels 3 and 10 (10 = digit 0). Pixel (r, c, k, n) = (7r + 3c + 50k + 11n) mod 256, as
`svhn_pixel` in tests/common/mod.rs. One file compressed (as MATLAB writes), one not,
with `y` as double and uint8 respectively.
"""
import numpy as np
import scipy.io

r, c, k, n = np.meshgrid(np.arange(32), np.arange(32), np.arange(3), np.arange(2), indexing="ij")
X = ((7 * r + 3 * c + 50 * k + 11 * n) % 256).astype(np.uint8)
scipy.io.savemat("svhn_golden_compressed.mat", {"X": X, "y": np.array([[3.0], [10.0]])},
                 do_compression=True, format="5")
scipy.io.savemat("svhn_golden_plain.mat", {"X": X, "y": np.array([[3], [10]], np.uint8)},
                 do_compression=False, format="5")
