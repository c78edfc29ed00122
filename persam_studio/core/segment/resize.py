"""SAM's image resize (long side 1024) with PIL alone, without torchvision.

``segment_anything.utils.transforms.ResizeLongestSide.apply_image`` is
``np.array(torchvision.transforms.functional.resize(to_pil_image(image), (h, w)))``.
For a PIL image torchvision's ``resize`` calls ``PIL.Image.resize((w, h),
BILINEAR)`` (antialiasing is PIL's own, always on for bilinear), and
``to_pil_image`` of uint8 (H, W, 3) is ``Image.fromarray(image, "RGB")``. So
the same PIL call gives the same bytes, and the encode path no longer imports
torchvision, which cost about 3 s of every command's start-up (torchvision
imports ``torch._dynamo`` and sympy). ``tests/core/test_resize.py`` checks
byte equality with ``ResizeLongestSide`` on many sizes, odd aspect ratios
included.

The output size is :func:`persam_studio.core.geometry.sam_input_size`, which
keeps a short side of at least 1 pixel (stock SAM fails on images beyond
2048:1); for every other size it is SAM's.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from persam_studio.core.geometry import sam_input_size


def resize_longest_side(image: np.ndarray, long_side: int = 1024) -> np.ndarray:
    """uint8 (h, w, 3) RGB: ``image`` (uint8 (H, W, 3) RGB) resized as SAM does."""
    h, w = sam_input_size((int(image.shape[0]), int(image.shape[1])), long_side)
    pil = Image.fromarray(np.ascontiguousarray(image), "RGB")
    if pil.size == (w, h):
        return np.array(pil)  # torchvision returns the image itself: same pixels
    return np.array(pil.resize((w, h), Image.BILINEAR))
