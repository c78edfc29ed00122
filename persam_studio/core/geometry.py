"""SAM's input frame: where an image and its prompts land in the 1024-pixel model input.

SAM resizes every image so its long side is 1024 (``ResizeLongestSide``),
then pads it to 1024 x 1024. These helpers reproduce that mapping with numpy
alone, so neither the GUI's display code nor a process that only decodes
cached embeddings has to import torch or torchvision for it. Tests compare
them with ``segment_anything``'s own ``ResizeLongestSide``.

Mask post-processing (from the padded frame back to any size) lives here
too: :func:`upscale_logits` is SAM's own (torch, imported inside) and the
reference; :func:`logits_to_mask` is the OpenCV path for display masks.
"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np


def sam_input_size(original_size: tuple[int, int], long_side: int = 1024) -> tuple[int, int]:
    """(h, w) of an (H, W) image resized so its long side is ``long_side``.

    SAM's rule (``ResizeLongestSide.get_preprocess_shape``): scale both sides,
    round half up. One deviation: a side that would round to 0 pixels (an
    aspect ratio beyond 2048:1, e.g. 1 x 5000) is kept at 1 pixel; stock SAM
    fails on those images ("height and width must be > 0"). Every other
    size is SAM's exactly.
    """
    h, w = original_size
    scale = long_side * 1.0 / max(h, w)
    return max(1, int(h * scale + 0.5)), max(1, int(w * scale + 0.5))


def to_input_frame(xy: np.ndarray, original_size: tuple[int, int], long_side: int = 1024) -> np.ndarray:
    """Pixel coordinates of the oriented image -> the model's resized input frame.

    Args:
        xy: float (..., 2) X (column), Y (row) pairs in original pixels; a
            box XYXY is two such pairs.
        original_size: (H, W) of the oriented image.

    Returns:
        float64 (..., 2), as ``ResizeLongestSide.apply_coords``.
    """
    h, w = original_size
    new_h, new_w = sam_input_size(original_size, long_side)
    out = np.array(xy, dtype=float)
    out[..., 0] *= new_w / w
    out[..., 1] *= new_h / h
    return out


def upscale_logits(low_res: Any, input_size: tuple[int, int], size: tuple[int, int]) -> Any:
    """SAM's mask post-processing, from the 1/4-scale padded input frame to any size.

    Args:
        low_res: float (B, C, 256, 256) logits in the padded input frame, a
            numpy array or a torch tensor.
        input_size: (h, w) of the unpadded resized input.
        size: (height, width) wanted; at the original image size this is
            exactly ``Sam.postprocess_masks``.

    Returns:
        float32 (B, C, height, width) logits, of the same kind as ``low_res``
        (numpy in, numpy out).
    """
    # torch's bilinear resize is what SAM uses; imported here so that the
    # numpy-only users of this module (the GUI) never load torch for it.
    import torch
    import torch.nn.functional as F

    as_numpy = isinstance(low_res, np.ndarray)
    x = torch.from_numpy(np.ascontiguousarray(low_res, dtype=np.float32)) if as_numpy else low_res
    x = F.interpolate(x, (1024, 1024), mode="bilinear", align_corners=False)
    x = x[..., : input_size[0], : input_size[1]]
    x = F.interpolate(x, tuple(size), mode="bilinear", align_corners=False)
    return x.numpy() if as_numpy else x


def mask_box(mask: np.ndarray) -> np.ndarray:
    """XYXY box (float64 (4,)) of a non-empty bool (H, W) mask: min/max of its pixel coordinates.

    The box SAM is given around a mask (PerSAM's cascade, select subject):
    ``x1``/``y1`` are the last object column/row, as in the PerSAM reference code.
    """
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    return np.array([cols[0], rows[0], cols[-1], rows[-1]], dtype=np.float64)


def logits_to_mask(
    low_res: np.ndarray, original_size: tuple[int, int], size: tuple[int, int]
) -> np.ndarray:
    """SAM's mask post-processing with OpenCV, for display masks without torch.

    The app restores saved masks at display size on its GUI thread, where
    importing torch would stall the window; :func:`upscale_logits` stays the
    reference (exports, references) and this one agrees with it except on
    pixels whose logit is about 0 (tests/gui/test_editing.py checks it).

    Args:
        low_res: float (256, 256) logits in the padded 1024x1024 frame.
        original_size: (H, W) of the image.
        size: (h, w) wanted.

    Returns:
        bool (h, w). Bilinear resizing with pixel-centre alignment, as
        ``torch.nn.functional.interpolate(align_corners=False)``; the engine
        stays the reference (this may differ on pixels whose logit is ~0).
    """
    x = cv2.resize(np.asarray(low_res, np.float32), (1024, 1024), interpolation=cv2.INTER_LINEAR)
    ih, iw = sam_input_size(original_size)
    x = x[:ih, :iw]
    x = cv2.resize(np.ascontiguousarray(x), (size[1], size[0]), interpolation=cv2.INTER_LINEAR)
    return x > 0.0
