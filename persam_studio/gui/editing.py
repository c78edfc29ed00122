"""The mask being edited, as immutable data (no Qt, no torch).

An :class:`EditState` is everything that defines an image's current mask:
prompts (points, box), the model's answer for them (a :class:`Prediction`),
the chosen candidate, or a loaded :class:`Bitmap`, and brush strokes on top.
Every user action maps a state to a new state, so undo and redo are just
"go back to that state" (see :mod:`persam_studio.gui.session`).

Sizes: ``original_size`` is (H, W) of the oriented photo; ``display_size``
(h, w) is what the canvas shows masks at, capped (:func:`display_size`) so
that a click on a 50 MP photo never computes a 50 MP mask. Coordinates in
prompts and strokes are original-image pixels, x = column, y = row.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import cv2
import numpy as np

from persam_studio.core.io.album import Stroke
from persam_studio.core.types import Box, Point, Prompt
from persam_studio.core.io.album_masks import render_strokes  # noqa: F401  (re-exported for the GUI)
from persam_studio.core.geometry import logits_to_mask, sam_input_size
from persam_studio.core.segment.selection import add_click

#: Longest side of display masks by default; the canvas may pass its own.
DISPLAY_CAP = 2048


def display_size(original_size: tuple[int, int], cap: int = DISPLAY_CAP) -> tuple[int, int]:
    """(h, w) for display masks: ``original_size`` scaled so the long side <= cap."""
    h, w = original_size
    scale = min(1.0, cap / max(h, w))
    return max(1, int(round(h * scale))), max(1, int(round(w * scale)))


@dataclass(frozen=True, eq=False)
class Prediction:
    """Mask candidates from the model, kept small.

    Attributes:
        low_res_logits: float32 (C, 256, 256), SAM's low-res logits.
        iou_predictions: float32 (C,) predicted quality.
        display_size: (h, w) of the display masks.
        packed: uint8 (C, ceil(h*w/8)) bit-packed display masks (a state
            history of 100 clicks must not hold 100 full bool images).
        seconds: model time for this answer.
        original_size: (H, W) of the photo, when the display masks not made
            yet (``ready`` False) are to be made from the logits on demand.
        ready: bool (C,), which rows of ``packed`` hold a mask; the others
            are made by :meth:`display_mask` (a click's answer brings only
            the candidate it shows: the other two cost the worker ~3 ms).
    """

    low_res_logits: np.ndarray
    iou_predictions: np.ndarray
    display_size: tuple[int, int]
    packed: np.ndarray
    seconds: float = 0.0
    original_size: tuple[int, int] | None = None
    ready: np.ndarray | None = None

    @staticmethod
    def from_masks(
        low_res_logits: np.ndarray,
        iou_predictions: np.ndarray,
        masks: np.ndarray | dict[int, np.ndarray],
        seconds: float = 0.0,
        original_size: tuple[int, int] | None = None,
    ) -> Prediction:
        """Build from bool display masks: (C, h, w), or {candidate: (h, w)} for some
        candidates when ``original_size`` lets the others be made on demand."""
        low = np.asarray(low_res_logits, np.float32)
        c = low.shape[0]
        given = dict(enumerate(np.asarray(masks, bool))) if not isinstance(masks, dict) else masks
        h, w = next(iter(given.values())).shape
        if len(given) < c and original_size is None:
            raise ValueError("original_size is needed to make the missing candidates' masks")
        packed = np.zeros((c, (h * w + 7) // 8), np.uint8)
        ready = np.zeros(c, bool)
        for i, mask in given.items():
            packed[i] = np.packbits(np.asarray(mask, bool).reshape(-1))
            ready[i] = True
        prediction = Prediction(
            low_res_logits=low,
            iou_predictions=np.asarray(iou_predictions, np.float32).reshape(-1),
            display_size=(h, w),
            packed=packed,
            seconds=seconds,
            original_size=None if original_size is None else tuple(original_size),
            ready=ready,
        )
        if isinstance(masks, dict):
            # The unpacked masks serve the first display_mask call (showing the
            # answer) and are dropped then: a history keeps only the packed bits.
            object.__setattr__(prediction, "_fresh", {i: np.asarray(m, bool) for i, m in masks.items()})
        return prediction

    def __len__(self) -> int:
        return int(self.packed.shape[0])

    @property
    def best_index(self) -> int:
        return int(np.argmax(self.iou_predictions))

    def display_mask(self, index: int) -> np.ndarray:
        """bool (h, w) display mask of candidate ``index`` (made now if not yet; GUI thread)."""
        h, w = self.display_size
        fresh = self.__dict__.get("_fresh")
        if fresh and index in fresh:
            return fresh.pop(index)
        if self.ready is not None and not self.ready[index]:
            mask = logits_to_mask(self.low_res_logits[index], self.original_size, self.display_size)
            self.packed[index] = np.packbits(mask.reshape(-1))
            self.ready[index] = True
            return mask
        return np.unpackbits(self.packed[index], count=h * w).reshape(h, w).astype(bool)


@dataclass(frozen=True, eq=False)
class Bitmap:
    """A base mask given as pixels (a loaded mask file), bool (H, W) full size."""

    mask: np.ndarray

    def display_mask(self, size: tuple[int, int]) -> np.ndarray:
        if self.mask.shape == tuple(size):
            return self.mask
        m = cv2.resize(self.mask.astype(np.uint8) * 255, (size[1], size[0]), interpolation=cv2.INTER_AREA)
        return m > 127


@dataclass(frozen=True, eq=False)
class SubjectBase:
    """A selected subject (*Select subject*) that clicks refine rather than replace.

    Attributes:
        prompt: the subject as a SAM prompt (its box and its soft map as
            ``mask_input``; :func:`~persam_studio.core.segment.selection.subject_prompt`).
            A click is added to it (:func:`~persam_studio.core.segment.selection.add_click`),
            so SAM refines the subject.
        confidence: the subject model's edge confidence in [0, 1].
    """

    prompt: Prompt
    confidence: float = 0.0


@dataclass(frozen=True)
class EditState:
    """An image's mask as data; see the module docstring.

    A state with prompts but no prediction is *pending*: its mask is being
    computed. ``candidate`` None means the model's best candidate.
    ``confidence`` is set for a propagated mask. ``subject`` is set from
    *Select subject* on: the state's base is then the subject's ``bitmap``
    until a click, whose request starts from the subject's prompt (the
    answer is a single-candidate prediction); a box or Clear drops nothing
    but the box or everything, as usual.
    """

    points: tuple[Point, ...] = ()
    box: Box | None = None
    prediction: Prediction | None = None
    candidate: int | None = None
    bitmap: Bitmap | None = None
    strokes: tuple[Stroke, ...] = ()
    confidence: float | None = None
    subject: SubjectBase | None = None

    @property
    def has_prompts(self) -> bool:
        return bool(self.points) or self.box is not None

    @property
    def pending(self) -> bool:
        return self.has_prompts and self.prediction is None

    @property
    def prompt_key(self) -> tuple:
        return (self.points, self.box, self.subject)

    @property
    def candidate_index(self) -> int | None:
        if self.prediction is None:
            return None
        if self.candidate is None or self.candidate >= len(self.prediction):
            return self.prediction.best_index
        return self.candidate

    @property
    def is_empty(self) -> bool:
        return not self.has_prompts and self.prediction is None and self.bitmap is None and not self.strokes

    @property
    def multimask(self) -> bool:
        """Ask for 3 candidates only for an ambiguous, single prompt (as SAM advises)."""
        return self.subject is None and len(self.points) + (self.box is not None) == 1

    def prompt(self) -> Prompt:
        """The prompt to ask the model for this state's mask (original-image pixels).

        Without a subject: the points and the box. With one: the subject's
        prompt plus each click (a user's box replaces the subject's box).
        """
        if self.subject is None:
            return Prompt(points=self.points, box=self.box)
        prompt = self.subject.prompt
        if self.box is not None:
            prompt = replace(prompt, box=self.box)
        for point in self.points:
            prompt = add_click(prompt, point)
        return prompt

    # -- transitions (each returns a new state) ---------------------------

    def with_point(self, point: Point) -> EditState:
        return EditState(points=self.points + (point,), box=self.box, strokes=self.strokes, subject=self.subject)

    def with_box(self, box: Box) -> EditState:
        return EditState(points=self.points, box=box, strokes=self.strokes, subject=self.subject)

    def with_stroke(self, stroke: Stroke) -> EditState:
        return replace(self, strokes=self.strokes + (stroke,))

    def with_prediction(self, prediction: Prediction) -> EditState:
        return replace(self, prediction=prediction)

    def cycled(self) -> EditState:
        """The next multimask candidate (Tab); unchanged with one candidate."""
        if self.prediction is None or len(self.prediction) < 2:
            return self
        return replace(self, candidate=(self.candidate_index + 1) % len(self.prediction))

    def cleared(self) -> EditState:
        return EditState()

    # -- rendering ------------------------------------------------------------

    def base_mask(self, size: tuple[int, int]) -> np.ndarray | None:
        """The model's (or loaded) mask at display ``size``, before strokes."""
        if self.prediction is not None:
            mask = self.prediction.display_mask(self.candidate_index)
            if mask.shape != tuple(size):
                mask = cv2.resize(mask.astype(np.uint8), (size[1], size[0]), interpolation=cv2.INTER_NEAREST) > 0
            return mask
        if self.bitmap is not None:
            return self.bitmap.display_mask(size)
        return None

    def mask(self, size: tuple[int, int], original_size: tuple[int, int]) -> np.ndarray | None:
        """bool (h, w) mask at ``size`` with strokes applied, or None (no mask)."""
        base = self.base_mask(size)
        if not self.strokes:
            return base
        if base is None:
            base = np.zeros(size, bool)
        return render_strokes(base, self.strokes, original_size)
