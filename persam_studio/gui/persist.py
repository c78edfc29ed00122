"""Between an image's :class:`EditState` and its album record (no Qt).

:func:`store` writes what changed since the previous state (the base's
logits or bitmap only when the base changed; the display mask and the JSON
every time), so saving after each action stays cheap. :func:`restore`
rebuilds an editable state from the record without the model: the saved
low-res logits are post-processed with OpenCV (see
:func:`persam_studio.core.geometry.logits_to_mask`).
"""

from __future__ import annotations

import numpy as np

from functools import partial
from pathlib import Path
from typing import Callable

from persam_studio.core.io.album import Album, ImageRecord, ImageState
from persam_studio.core.geometry import logits_to_mask
from persam_studio.gui.editing import Bitmap, EditState, Prediction


def base_changed(old: EditState | None, new: EditState) -> bool:
    """True when ``new``'s base mask (before strokes) differs from ``old``'s."""
    if old is None:
        return True
    return (
        old.prediction is not new.prediction
        or old.candidate_index != new.candidate_index
        or old.bitmap is not new.bitmap
    )


def store(
    album: Album,
    record: ImageRecord,
    state: EditState,
    display_mask: np.ndarray | None,
    previous: EditState | None = None,
    image_state: ImageState | None = None,
) -> dict[Path, Callable[[], None]]:
    """Write ``state`` into ``record``; return the sidecar file writes it needs.

    Args:
        display_mask: bool (h, w), the mask as shown (with strokes), or None.
        previous: the state last stored for this image (None: unknown).
        image_state: the record's new :class:`ImageState`; default MASKED
            for a state with a mask, UNTOUCHED for an empty one.

    Returns:
        {file: write} for the mask files (each write raises OutputError when
        the sidecar cannot be written). The arrays they hold are never
        changed afterwards, so a worker may run them later; the album's JSON
        is not among them (the caller snapshots it with ``album.to_json()``).
    """
    writes: dict[Path, Callable[[], None]] = {}
    record.points = state.points
    record.box = state.box
    record.strokes = state.strokes
    record.confidence = state.confidence
    if base_changed(previous, state):
        if state.prediction is not None:
            i = state.candidate_index
            writes[album.mask_file(record, "logits")] = partial(
                album.save_logits, record, state.prediction.low_res_logits[i])
            record.base = "logits"
        elif state.bitmap is not None:
            writes[album.mask_file(record, "bitmap")] = partial(album.save_bitmap, record, state.bitmap.mask)
            record.base = "bitmap"
        else:
            record.base = "none"
    if image_state is None:
        image_state = ImageState.UNTOUCHED if state.is_empty else ImageState.MASKED
    record.state = image_state
    writes[album.mask_file(record, "display")] = partial(album.save_display_mask, record, display_mask)
    return writes


def restore(
    album: Album, record: ImageRecord, original_size: tuple[int, int], display_size: tuple[int, int]
) -> EditState:
    """The editable state saved for ``record`` (empty when nothing usable is saved)."""
    prediction = bitmap = None
    if record.base == "logits":
        logits = album.load_logits(record)
        if logits is not None:
            mask = logits_to_mask(logits, original_size, display_size)
            iou = np.array([record.confidence if record.confidence is not None else 1.0])
            prediction = Prediction.from_masks(logits[None], iou, mask[None])
    elif record.base == "bitmap":
        full = album.load_bitmap(record)
        if full is not None and full.shape == tuple(original_size):
            bitmap = Bitmap(full)
    if prediction is None and bitmap is None and record.base != "none":
        # The base file is gone: keep the prompts so the model recomputes it.
        return EditState(points=record.points, box=record.box, strokes=record.strokes)
    return EditState(
        points=record.points,
        box=record.box,
        prediction=prediction,
        bitmap=bitmap,
        strokes=record.strokes,
        confidence=record.confidence,
    )
