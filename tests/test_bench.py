"""The bench reads the same shared data as the tests (a moved module once made it fall back to synthetic photos silently)."""

from __future__ import annotations

import numpy as np
import pytest

from persam_studio import bench
from tests.conftest import SHARED


def test_bench_finds_shared_data_beside_the_repository(tmp_path):
    assert bench.SHARED.resolve() == SHARED.resolve()
    if not SHARED.is_dir():
        pytest.skip("../shared is absent")
    from persam_studio.core.io.imageio import load_image

    ctx = bench.BenchContext(scratch=tmp_path)
    truck = load_image(SHARED / "data" / "photos" / "truck.jpg").pixels
    assert np.array_equal(ctx.photo_pixels, truck), "fell back to the synthetic photo"
