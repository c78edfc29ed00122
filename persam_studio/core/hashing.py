"""Content hashes of decoded pixels, for cache keys; numpy only (no torch).

Both the SAM embedding cache (:mod:`persam_studio.core.engine`) and the
subject-map cache (:mod:`persam_studio.core.subject_cache`) key entries by
what the pixels are, not by file name, so they share this one function.
"""

from __future__ import annotations

import hashlib

import numpy as np


def image_key(pixels: np.ndarray) -> str:
    """Content hash of decoded pixels (any shape/dtype), 32 hex digits.

    Two files with the same oriented pixels share an embedding; a re-saved or
    re-rotated file does not.
    """
    pixels = np.ascontiguousarray(pixels)
    h = hashlib.blake2b(digest_size=16)
    h.update(f"{pixels.shape}|{pixels.dtype.str}|".encode())
    h.update(memoryview(pixels).cast("B"))
    return h.hexdigest()
