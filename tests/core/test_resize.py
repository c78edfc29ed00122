"""The engine's resize equals segment_anything's ResizeLongestSide, byte for byte, without torchvision."""

from __future__ import annotations

import numpy as np
import pytest

from persam_studio.core.geometry import sam_input_size
from persam_studio.core.segment.resize import resize_longest_side

SIZES = [(300, 400), (1024, 1024), (1023, 1025), (1, 1), (2, 3), (7, 1500), (1500, 7), (599, 1),
         (1, 2048), (3, 4097), (1024, 768), (2000, 3000), (3001, 4003), (1080, 1920), (37, 1024),
         (1025, 1), (513, 1027), (64, 64), (999, 1001)]


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_same_pixels_as_resize_longest_side(size):
    from segment_anything.utils.transforms import ResizeLongestSide  # imports torchvision: tests only

    h, w = size
    image = np.random.default_rng(h * 7919 + w).integers(0, 256, (h, w, 3), dtype=np.uint8)
    expected = ResizeLongestSide(1024).apply_image(image)
    got = resize_longest_side(image)
    assert got.dtype == np.uint8 and got.shape == expected.shape
    assert np.array_equal(got, expected)


@pytest.mark.parametrize("size", [(1, 5000), (5000, 1), (2, 9000), (1, 2049)])
def test_beyond_2048_to_1_keeps_one_pixel(size):
    """Stock SAM fails here ("height and width must be > 0"); we keep a 1-pixel short side."""
    image = np.zeros((*size, 3), np.uint8)
    out = resize_longest_side(image)
    assert out.shape[:2] == sam_input_size(size) and min(out.shape[:2]) == 1 and max(out.shape[:2]) == 1024


def test_encode_path_imports_no_torchvision():
    import subprocess
    import sys

    code = ("import sys, numpy as np\n"
            "from persam_studio.core.models.sam_build import random_sam\n"
            "from persam_studio.core.segment.engine import Engine\n"
            "e = Engine(random_sam('tiny', seed=0), 'k')\n"
            "e.encode(np.zeros((40, 60, 3), np.uint8))\n"
            "print('torchvision' in sys.modules)\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "False"
