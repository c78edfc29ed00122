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


def test_app_section_rows_compare_the_window_with_the_decoder():
    """``bench --only app``: rows from the child's numbers (seconds), targets on what the app adds."""
    from persam_studio.bench import SECTIONS
    from persam_studio.bench.app_bench import rows_of

    assert SECTIONS["app"] == "persam_studio.bench.app_bench"
    run = {"ours": {"p50": 0.100, "p95": 0.150}, "decoder": {"p50": 0.090, "p95": 0.120},
           "added": {"p50": 0.010, "p95": 0.030}, "points": [1, 1]}
    slow = {"ours": {"p50": 0.200, "p95": 0.250}, "decoder": {"p50": 0.150, "p95": 0.180},
            "added": {"p50": 0.050, "p95": 0.070}, "points": [1, 50]}
    data = {"display_size": [1440, 1920], "clicks": 50, "reset": run, "accumulate": slow,
            "many_points": {"points": [41, 50], "ours_p50": 0.130, "decoder_p50": 0.125}}
    rows = {r.name: r for r in rows_of(data)}
    assert rows["click to overlay p50, 1 point (12 MP, 1920x1440 display mask)"].baseline_value == 90.0
    added = [r for n, r in rows.items() if n.startswith("app adds")]
    assert [r.passed for r in added] == [True, False]  # 10 ms <= 20 ms; 50 ms is not
    growth = next(r for n, r in rows.items() if n.startswith("growth"))
    assert abs(growth.value - (30.0 - 35.0)) < 1e-9 and growth.passed


def test_bench_removes_the_scratch_folder_it_made_and_keeps_a_given_one(tmp_path, monkeypatch):
    """Each run wrote ~0.6 GB of checkpoints and photos to /tmp and left them there."""
    monkeypatch.setattr(bench.tempfile, "tempdir", str(tmp_path))
    with bench.BenchContext() as ctx:
        made = ctx.scratch
        (made / "startup").mkdir()
        (made / "startup" / "vit_b_random.pth").write_bytes(b"x" * 1000)
        assert made.parent == tmp_path
    assert not made.exists()

    given = tmp_path / "mine"
    given.mkdir()
    with bench.BenchContext(scratch=given) as ctx:
        (ctx.scratch / "kept.txt").write_text("kept")
    assert (given / "kept.txt").read_text() == "kept"
