"""Value types shared by every layer: plain data, no torch, no Qt (a leaf module).

* :class:`Point`, :class:`Box`, :class:`Prompt`: what the user asked, in pixels
  of the oriented image (EXIF rotation applied; x = column, y = row, origin
  top-left). One :class:`Prompt` travels from the canvas (or the command line)
  to :meth:`persam_studio.core.segment.engine.Engine.predict`.
* :class:`Embedding`: the image encoder's output for one image.
* :class:`MaskResult`: the decoder's low-res logits, upsampled on request.
* :data:`REVIEW_THRESHOLD`: PerSAM's confidence below which a propagated mask
  is flagged for review (the GUI and the CLI import it from here).

torch is imported only inside :class:`MaskResult`'s upsampling methods
(through :func:`~persam_studio.core.geometry.upscale_logits`), so importing
this module is cheap and safe for the GUI.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from persam_studio.core.geometry import upscale_logits

if TYPE_CHECKING:  # pragma: no cover
    import torch

#: Confidence (0-1) below which PerSAM's mask of a photo is flagged for review.
REVIEW_THRESHOLD = 0.6


@dataclass(frozen=True)
class Point:
    """A click: ``label`` 1 = object, 0 = background."""

    x: float
    y: float
    label: int


@dataclass(frozen=True)
class Box:
    """A box prompt, XYXY, always with x0 <= x1 and y0 <= y1."""

    x0: float
    y0: float
    x1: float
    y1: float

    @staticmethod
    def from_corners(ax: float, ay: float, bx: float, by: float) -> Box:
        return Box(min(ax, bx), min(ay, by), max(ax, bx), max(ay, by))

    def as_array(self) -> np.ndarray:
        """float (4,) XYXY, SAM's ``box`` argument."""
        return np.array([self.x0, self.y0, self.x1, self.y1], dtype=float)


@dataclass(frozen=True, eq=False)
class Prompt:
    """Everything SAM is asked on one image: points, a box, an earlier mask.

    Attributes:
        points: clicks in oriented-image pixels (label 1 object, 0 background).
        box: a box in oriented-image pixels, or None.
        mask_input: float32 (1, 256, 256) low-res logits of an earlier
            result (:attr:`MaskResult.low_res_logits` ``[i:i+1]``), or None.
    """

    points: tuple[Point, ...] = ()
    box: Box | None = None
    mask_input: np.ndarray | None = None

    @property
    def point_coords(self) -> np.ndarray | None:
        """float64 (N, 2) XY pixels, or None without points (SAM's ``point_coords``)."""
        if not self.points:
            return None
        return np.array([(p.x, p.y) for p in self.points], dtype=float)

    @property
    def point_labels(self) -> np.ndarray | None:
        """int64 (N,) 1 = object, 0 = background, or None (SAM's ``point_labels``)."""
        if not self.points:
            return None
        return np.array([p.label for p in self.points], dtype=np.int64)

    @property
    def box_array(self) -> np.ndarray | None:
        """float64 (4,) XYXY pixels, or None (SAM's ``box``)."""
        return None if self.box is None else self.box.as_array()

    def is_empty(self) -> bool:
        return not self.points and self.box is None and self.mask_input is None


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


@dataclass(frozen=True, eq=False)
class Embedding:
    """The image encoder's output for one image, as plain data.

    Attributes:
        features: float32 or float16 array (256, 64, 64): SAM's image
            embedding of the resized, padded image (CHW).
        original_size: (H, W) of the oriented image in pixels.
        input_size: (h, w) of the image resized so its long side is 1024,
            before padding to 1024x1024.
        image_key: :func:`image_key` of the oriented RGB pixels.
        model_key: identifies the model (type and checkpoint fingerprint).
    """

    features: np.ndarray
    original_size: tuple[int, int]
    input_size: tuple[int, int]
    image_key: str
    model_key: str

    @property
    def cache_key(self) -> str:
        return cache_key(self.image_key, self.model_key)

    @property
    def nbytes(self) -> int:
        return int(self.features.nbytes)


def cache_key(image_key: str, model_key: str) -> str:
    """The cache key of an (image, model) pair; file-name safe."""
    return f"{model_key}-{image_key}"


@dataclass(frozen=True, eq=False)
class MaskResult:
    """Masks predicted for one prompt on one image.

    Attributes:
        low_res_logits: float32 (C, 256, 256) mask logits in the padded
            1024x1024 input frame at 1/4 scale; pass one as ``mask_input``
            (shape (1, 256, 256)) to refine it with further prompts.
        iou_predictions: float32 (C,) the model's quality estimate per mask.
        original_size: (H, W) of the oriented image.
        input_size: (h, w) of the resized, unpadded model input.
        seconds: wall time of the decoder call.

    C is 3 for multimask output, else 1.
    """

    low_res_logits: np.ndarray
    iou_predictions: np.ndarray
    original_size: tuple[int, int]
    input_size: tuple[int, int]
    seconds: float = 0.0
    _memo: dict = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_decoder(
        cls, low_res: torch.Tensor, iou: torch.Tensor, embedding: Embedding, started: float
    ) -> MaskResult:
        """Wrap the decoder's (1, C, 256, 256) logits and (1, C) IoU for ``embedding``.

        ``started`` is the ``time.perf_counter()`` of the call's start.
        """
        return cls(
            low_res_logits=low_res[0].float().cpu().numpy(),
            iou_predictions=iou[0].float().cpu().numpy(),
            original_size=embedding.original_size,
            input_size=embedding.input_size,
            seconds=time.perf_counter() - started,
        )

    @property
    def best_index(self) -> int:
        """Index of the candidate with the highest predicted IoU."""
        return int(np.argmax(self.iou_predictions))

    def __len__(self) -> int:
        return int(self.low_res_logits.shape[0])

    def logits(self, index: int | None = None, size: tuple[int, int] | None = None) -> np.ndarray:
        """Mask logits of candidate ``index`` (default best) at ``size``.

        Args:
            index: candidate index, ``None`` for :attr:`best_index`.
            size: (height, width) of the output, default ``original_size``.
                A display-size request never touches full resolution.

        Returns:
            float32 (height, width) logits; > 0 is object. At the original
            size they equal ``SamPredictor.predict(return_logits=True)``.
        """
        if index is None:
            index = self.best_index
        size = tuple(self.original_size if size is None else size)
        key = (index, size)
        out = self._memo.get(key)
        if out is None:
            out = upscale_logits(self.low_res_logits[None, index : index + 1], self.input_size, size)[0, 0]
            # Keep only the last few sizes: a full-size float map of a 50 MP
            # photo is 200 MB.
            if len(self._memo) >= 4:
                self._memo.pop(next(iter(self._memo)))
            self._memo[key] = out
        return out

    def mask(self, index: int | None = None, size: tuple[int, int] | None = None) -> np.ndarray:
        """Binary mask (bool, (height, width)) of candidate ``index`` at ``size``."""
        return self.logits(index, size) > 0.0

    def masks(self, size: tuple[int, int] | None = None) -> np.ndarray:
        """All candidates' binary masks, bool (C, height, width), in one pass.

        For a GUI that lets the user cycle the candidates: one batched
        upsampling costs much less than C separate ones.
        """
        size = tuple(self.original_size if size is None else size)
        return upscale_logits(self.low_res_logits[None], self.input_size, size)[0] > 0.0
