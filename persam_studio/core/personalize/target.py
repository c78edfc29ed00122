"""PerSAM's value types: the :class:`Target` learnt from references and the
:class:`PersamResult` found on one image (plain data; no decoder here).

A leaf of the personalize package, so the prior, the fit, the instance search
and the cascade can all name these types without importing each other.
Coordinate frame: pixels of the oriented image, x = column, y = row.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np

from persam_studio.core.types import MaskResult

MODES = ("persam", "persam_f")


@dataclass(frozen=True, eq=False)
class Target:
    """What PerSAM knows about the object to find, from its reference(s).

    Attributes:
        name: user-visible name (used for output folders).
        mode: ``"persam"`` (training-free) or ``"persam_f"`` (fitted weights).
        embedding: float32 (256,) target embedding ``e`` (unnormalised).
        target: float32 (256,) ``t = e / |e|``, used for the location prior.
        weights: float32 (3,) PerSAM-F mask weights ``(1 - a - b, a, b)``,
            ``None`` for PerSAM.
        n_references: how many reference images were averaged.
        model_key: the model whose features ``e`` lives in ("" = unknown).
    """

    name: str
    mode: str
    embedding: np.ndarray
    target: np.ndarray
    weights: np.ndarray | None
    n_references: int = 1
    model_key: str = ""


@dataclass(frozen=True, eq=False)
class PersamResult:
    """The mask PerSAM found on one image, kept at 256x256 until asked for.

    Attributes:
        low_res_logits: float32 (1, 256, 256) logits in the padded input frame.
        iou: the decoder's predicted IoU of this mask (PerSAM-F's fused first
            step: the weighted sum of the three candidates' predictions).
        similarity_peak: the highest cosine similarity of the target to the
            image (in [-1, 1]): how strongly the object seems to be there.
        confidence: in [0, 1], ``sqrt(clip(iou, 0, 1) * clip(peak, 0, 1))``
            (0 for an empty mask): high only when the target is found *and*
            the decoder trusts its mask.
        point_coords: float (N, 2) XY prompts used (positive first; PerSAM
            also the negative point).
        point_labels: int (N,) 1 / 0.
        box: float (4,) XYXY box prompt of the last step, or ``None``.
        steps: which step produced the mask (1 = first prediction, 2 and 3 =
            cascaded refinements; a step that gives an empty mask is dropped).
        empty: the mask has no pixel at the original size.
        original_size, input_size: as :class:`~persam_studio.core.segment.engine.Embedding`.
        seconds: wall time of the decoder work for this image.
    """

    low_res_logits: np.ndarray
    iou: float
    similarity_peak: float
    confidence: float
    point_coords: np.ndarray
    point_labels: np.ndarray
    box: np.ndarray | None
    steps: int
    empty: bool
    original_size: tuple[int, int]
    input_size: tuple[int, int]
    target_name: str = ""
    seconds: float = 0.0

    @cached_property
    def mask_result(self) -> MaskResult:
        """This mask as the engine's :class:`MaskResult` (one candidate), for
        upsampling by the one shared path (memoised per size there)."""
        return MaskResult(self.low_res_logits, np.array([self.iou], np.float32),
                          self.original_size, self.input_size, self.seconds)

    def logits(self, size: tuple[int, int] | None = None) -> np.ndarray:
        """float32 (height, width) logits at ``size`` (default the original size)."""
        return self.mask_result.logits(0, size)

    def mask(self, size: tuple[int, int] | None = None) -> np.ndarray:
        """bool (height, width) mask at ``size`` (default the original size)."""
        return self.logits(size) > 0.0


def confidence(iou: float, similarity_peak: float, empty: bool = False) -> float:
    """The confidence of a result in [0, 1]: geometric mean of clipped IoU and peak."""
    if empty:
        return 0.0
    a = min(max(float(iou), 0.0), 1.0)
    b = min(max(float(similarity_peak), 0.0), 1.0)
    return float(np.sqrt(a * b))
