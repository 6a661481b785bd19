"""bench/cam_limits.py: the oracle CAM bound tightens on finer grids, the leak measure sees a shift."""

from __future__ import annotations

import numpy as np


def test_oracle_mass_rises_as_the_grid_gets_finer_and_distant_means_skip_the_tumour(bench_script) -> None:  # noqa: ANN001
    bench = bench_script("cam_limits")
    zz, yy, xx = np.mgrid[:32, :32, :32]
    brain = (zz - 16) ** 2 + (yy - 16) ** 2 + (xx - 16) ** 2 < 15**2
    seg = np.where((zz - 12) ** 2 + (yy - 14) ** 2 + (xx - 18) ** 2 < 4**2, 2, 0).astype(np.uint8)
    masses = [bench.oracle_mass(seg, brain, f) for f in (8, 4, 2)]
    assert masses[0] < masses[1] < masses[2] <= 1.0
    image = np.zeros((2, 32, 32, 32), np.float32)
    image[0][seg > 0] = 100.0  # a bright tumour moves nothing beyond the margin
    image[1][brain] = 1.0
    assert bench.distant_means(image, seg, brain, margin=2) == [0.0, 1.0]
