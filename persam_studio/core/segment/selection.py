"""Select subject: a subject model's soft map as a mask, its report numbers, and a SAM prompt.

The app's *Select subject* and the ``select`` command both start from
:meth:`~persam_studio.core.models.subject.SubjectModel.predict`: a float32
(H, W) map in [0, 1] over the oriented photo (1 = subject). From it:

* the mask is ``soft >= 0.5`` (:data:`SUBJECT_THRESHOLD`), shown and saved
  as is: the subject model's own edges, not SAM's;
* :func:`subject_stats` gives the report's coverage and confidence;
* :func:`subject_prompt` turns the same subject into a SAM
  :class:`~persam_studio.core.types.Prompt` (the mask's box, and the map as
  ``mask_input`` logits in SAM's padded 256 x 256 frame), so that a click
  refines it through :meth:`Engine.predict` like any other mask
  (:func:`add_click`).

Nothing here imports torch or runs SAM: the GUI calls it from its model
worker, the CLI from its batch loop.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import cv2
import numpy as np

from persam_studio.core.geometry import mask_box, sam_input_size
from persam_studio.core.types import Box, Point, Prompt

if TYPE_CHECKING:  # pragma: no cover
    from persam_studio.core.models.subject import SubjectModel

#: A pixel is the subject where the soft map is at least this.
SUBJECT_THRESHOLD = 0.5
#: |logit| bound of a mask_input made from a soft map. SAM's own low-res
#: logits run to about +-10..20 away from an edge; a map value of 0 or 1
#: would be an infinite logit, so certainty is capped here (s in [4.5e-5, 1 - 4.5e-5]).
LOGIT_LIMIT = 10.0
#: SAM's padded input side and its mask_input side (1/4 of it).
_INPUT_SIDE, _LOW_RES = 1024, 256
#: Confidence is measured within this fraction of the map's diagonal of the mask's edge.
_BAND = 0.01
#: Edge confidence below which a selection is flagged for review (report
#: status ``doubtful``). A heuristic from IS-Net on our shared photos: clean
#: subjects scored 0.82-0.95, a cat photo where the model also took a
#: cushion (IoU 0.69) 0.58; see docs/select-subject.md.
DOUBTFUL_BELOW = 0.7
#: Maps larger than this (long side) are shrunk before measuring: the model's
#: answer is at most 1024 px, so a 12 MP map holds no more detail.
_STATS_SIDE = 1024


@dataclass(frozen=True, eq=False)
class Selection:
    """The subject of one photo.

    Attributes:
        soft: float32 (H, W) in [0, 1], the subject model's map in the
            oriented photo's pixels (1 = subject).
        coverage: fraction of the photo that is subject (``mask.mean()``).
        confidence: mean certainty ``|2 soft - 1|`` near the mask's edge,
            in [0, 1] (see :func:`subject_stats`); 0 for an empty or full mask.
    """

    soft: np.ndarray
    coverage: float
    confidence: float

    @property
    def mask(self) -> np.ndarray:
        """bool (H, W): ``soft >= 0.5``."""
        return self.soft >= SUBJECT_THRESHOLD

    @property
    def empty(self) -> bool:
        return self.coverage == 0.0

    def is_doubtful(self, threshold: float = DOUBTFUL_BELOW) -> bool:
        """No subject found, or the model hesitated along the edge (confidence below ``threshold``)."""
        return self.empty or self.confidence < threshold

    def prompt(self) -> Prompt:
        """This subject as a SAM prompt (:func:`subject_prompt`)."""
        return subject_prompt(self.soft, self.soft.shape[:2])


def select_subject(model: SubjectModel, pixels: np.ndarray, key: str | None = None) -> Selection:
    """Run the subject model on a photo (or read its cache) and measure the result.

    Args:
        model: an opened subject model.
        pixels: uint8 (H, W, 3) RGB of the oriented photo.
        key: :func:`~persam_studio.core.types.image_key` of ``pixels`` when
            the caller has it (saves hashing the photo again for the cache).
    """
    soft = model.predict(pixels, key)
    coverage, confidence = subject_stats(soft)
    return Selection(soft, coverage, confidence)


def subject_stats(soft: np.ndarray) -> tuple[float, float]:
    """(coverage, confidence) of a soft map, both in [0, 1].

    coverage is the fraction of pixels with ``soft >= 0.5``. confidence is
    the mean of ``|2 soft - 1|`` over the pixels within 1 % of the map's
    diagonal (at least 2 pixels) of the mask's edge, on the map shrunk to
    at most 1024 px: 1 where the model switches from 0 to 1 in a pixel,
    near 0 where it hesitates along the whole outline. It is measured at the
    edge because away from it every model is certain (the background is 0
    almost everywhere), so a photo-wide mean would say little. A mask with
    no edge (empty, or the whole photo) has confidence 0.

    Args:
        soft: float32 (H, W) in [0, 1].
    """
    soft = np.asarray(soft, dtype=np.float32)
    coverage = float(np.count_nonzero(soft >= SUBJECT_THRESHOLD)) / max(soft.size, 1)
    if coverage in (0.0, 1.0):
        return coverage, 0.0
    h, w = soft.shape
    scale = min(1.0, _STATS_SIDE / max(h, w))
    small = soft if scale == 1.0 else cv2.resize(
        soft, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
    inside = (small >= SUBJECT_THRESHOLD).view(np.uint8)
    radius = max(2.0, _BAND * math.hypot(*small.shape))
    # Distance of each pixel to the nearest pixel of the other side: <= radius is the edge band.
    to_out = cv2.distanceTransform(inside, cv2.DIST_L2, 3)
    to_in = cv2.distanceTransform(1 - inside, cv2.DIST_L2, 3)
    band = np.where(inside.astype(bool), to_out, to_in) <= radius
    if not band.any():  # only possible on a 1-pixel map
        return coverage, 0.0
    return coverage, float(np.abs(2.0 * small[band] - 1.0).mean())


def subject_box(soft: np.ndarray, original_size: tuple[int, int] | None = None) -> Box | None:
    """XYXY box of ``soft >= 0.5`` in the oriented photo's pixels, or None when empty.

    Args:
        soft: float (h, w) in [0, 1] over the whole photo: at the photo's
            size, or any other (the model's S x S map, a display size).
        original_size: (H, W) of the photo; default ``soft``'s own size.

    Returns:
        The mask's bounding box as :func:`~persam_studio.core.geometry.mask_box`
        gives it (first and last object column/row); from a map of another
        size, its cells' outer edges scaled to the photo.
    """
    mask = np.asarray(soft) >= SUBJECT_THRESHOLD
    if not mask.any():
        return None
    x0, y0, x1, y1 = mask_box(mask)
    h, w = mask.shape
    big_h, big_w = original_size or (h, w)
    if (big_h, big_w) != (h, w):
        sx, sy = big_w / w, big_h / h
        # Cell c covers [c * s, (c + 1) * s) of the photo: first and last photo pixel inside.
        x0, y0 = x0 * sx, y0 * sy
        x1, y1 = min((x1 + 1) * sx, big_w) - 1, min((y1 + 1) * sy, big_h) - 1
    return Box(float(x0), float(y0), float(x1), float(y1))


def soft_to_mask_input(
    soft: np.ndarray, original_size: tuple[int, int] | None = None, limit: float = LOGIT_LIMIT
) -> np.ndarray:
    """A soft map as SAM's ``mask_input``: float32 (1, 256, 256) logits.

    The inverse of :func:`~persam_studio.core.geometry.upscale_logits`' frame
    mapping: the map is resized onto the photo's place in SAM's 1024 x 1024
    input (long side 1024, top-left, the padding is background), averaged
    down 4 x 4 to 256 x 256, and only then turned into logits
    ``log(s / (1 - s))`` with ``|logit| <= limit``. Averaging probabilities
    (not logits) keeps the 0.5 crossing, the mask's edge, where it was.

    Args:
        soft: float (h, w) in [0, 1] over the whole photo, any size.
        original_size: (H, W) of the photo; default ``soft``'s size. It fixes
            where the photo lies in SAM's frame (its aspect ratio).
        limit: the largest |logit|.
    """
    soft = np.asarray(soft, dtype=np.float32)
    h_in, w_in = sam_input_size(original_size or soft.shape[:2], _INPUT_SIDE)
    frame = np.zeros((_INPUT_SIDE, _INPUT_SIDE), np.float32)
    shrink = soft.shape[0] * soft.shape[1] > h_in * w_in
    frame[:h_in, :w_in] = cv2.resize(soft, (w_in, h_in), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
    low = cv2.resize(frame, (_LOW_RES, _LOW_RES), interpolation=cv2.INTER_AREA)  # exact 4 x 4 means
    eps = np.float32(1.0 / (1.0 + math.exp(limit)))
    np.clip(low, eps, 1.0 - eps, out=low)
    return np.log(low / (1.0 - low)).astype(np.float32)[None]


def subject_prompt(soft: np.ndarray, original_size: tuple[int, int] | None = None) -> Prompt:
    """The subject as a SAM prompt: its box and its map as ``mask_input``.

    ``Engine.predict(embedding, subject_prompt(soft, size))`` asks SAM for
    the subject; a click adds a point to this prompt (:func:`add_click`), so
    SAM refines the subject rather than starting over. An empty map gives an
    empty prompt (there is nothing to refine).

    Args:
        soft: float (h, w) in [0, 1] over the whole photo, any size.
        original_size: (H, W) of the oriented photo the embedding was made
            from; default ``soft``'s size.
    """
    size = original_size or soft.shape[:2]
    box = subject_box(soft, size)
    if box is None:
        return Prompt()
    return Prompt(box=box, mask_input=soft_to_mask_input(soft, size))


def add_click(prompt: Prompt, point: Point) -> Prompt:
    """``prompt`` plus one click, for :meth:`Engine.predict`.

    A box tells SAM the object lies inside it, so an object click outside
    the subject's box would be overruled: the box grows to include it.
    A background click never changes the box.
    """
    box = prompt.box
    if box is not None and point.label == 1 and not (box.x0 <= point.x <= box.x1 and box.y0 <= point.y <= box.y1):
        box = Box(min(box.x0, point.x), min(box.y0, point.y), max(box.x1, point.x), max(box.y1, point.y))
    return dataclasses.replace(prompt, points=(*prompt.points, point), box=box)
