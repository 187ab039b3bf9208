#!/usr/bin/env python3
"""Regenerates the small numpy fixtures read by tests/io (run once, commit the output).

    /usr/bin/python3 tests/io/data/make_fixtures.py

The values are simple formulas of the index so the C++ tests can recompute them.
"""
import os

import numpy as np

here = os.path.dirname(os.path.abspath(__file__))


def path(name):
    return os.path.join(here, name)


# savez: stored members, ZIP64 extra fields in the local headers (numpy forces zip64).
X = (np.arange(12, dtype=np.float64).reshape(4, 3) + 0.5) / 4  # X[i, j] = (3i + j + 0.5) / 4
y = np.array([0, 1, 2, 1], dtype=np.int64)
ids = np.array([10, 11, 12, 13], dtype=np.int64)
np.savez(path("savez.npz"), X=X, y=y, ids=ids)

# savez_compressed: deflated members; float32 X, float targets y [n, 2], int32 ids.
np.savez_compressed(path("savez_compressed.npz"), X=X.astype(np.float32),
                    y=np.arange(8, dtype=np.float64).reshape(4, 2) * 0.25,
                    ids=np.array([5, 6, 7, 8], dtype=np.int32))

# A member big enough (256 KiB) that its compressed stream spans several read chunks.
big = np.arange(32768, dtype=np.float64) % 1000
np.savez_compressed(path("big_compressed.npz"), big=big)

# Fortran order: a[i, j, k] = 100 i + 10 j + k stored column-major.
a = np.fromfunction(lambda i, j, k: 100 * i + 10 * j + k, (2, 3, 4), dtype=np.int32)
np.save(path("fortran.npy"), np.asfortranarray(a))

np.save(path("bigendian.npy"), np.arange(3, dtype=">f8"))

for version in [(2, 0), (3, 0)]:
    with open(path("v%d.npy" % version[0]), "wb") as f:
        np.lib.format.write_array(f, np.arange(5, dtype=np.int16) - 2, version=version)

# Half precision corner cases: subnormals, the largest finite, infinities, NaN.
half = np.array([0.0, -0.0, 1.0, -2.5, 65504.0, 2.0**-24, 2.0**-14, 3 * 2.0**-24, np.inf,
                 -np.inf, np.nan], dtype=np.float16)
np.save(path("f16.npy"), half)
np.save(path("bool.npy"), np.array([True, False, True]))
