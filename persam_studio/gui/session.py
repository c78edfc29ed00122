"""The image on the canvas: its edit state, embedding and model requests (no Qt).

:class:`ImageSession` decides *when* the model must run and drops answers
that arrive too late:

* every state change goes through :meth:`ImageSession.set_state`; a state
  whose prompts have no prediction yet becomes a :class:`PromptRequest` as
  soon as the embedding is there (clicks made while encoding just accumulate
  and are sent as one request when it arrives);
* each request carries an id; :meth:`take_result` accepts only the answer to
  the latest request, so a slow answer never overwrites a newer click;
* answers are remembered per prompt set (a small LRU), so undo and redo
  return to a computed mask without asking the model again.
"""

from __future__ import annotations

import itertools
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from persam_studio.core.types import Prompt
from persam_studio.gui.editing import EditState, Prediction

if TYPE_CHECKING:  # pragma: no cover
    from persam_studio.core.types import Embedding

_ids = itertools.count(1)


@dataclass(frozen=True)
class PromptRequest:
    """One decoder call for the canvas.

    Attributes:
        id: unique, increasing; answers to older ids are stale.
        prompt_key: identifies the prompt set (points, box, subject).
        prompt: the canvas's points and box, in original-image pixels, as
            the one value the engine takes (``Engine.predict(embedding, prompt)``).
        multimask_output: three candidates or one.
        display_size: (h, w) the masks are wanted at.
    """

    id: int
    prompt_key: tuple
    prompt: Prompt
    multimask_output: bool
    display_size: tuple[int, int]

    @staticmethod
    def for_state(state: EditState, display_size: tuple[int, int]) -> PromptRequest:
        return PromptRequest(
            id=next(_ids),
            prompt_key=state.prompt_key,
            prompt=state.prompt(),
            multimask_output=state.multimask,
            display_size=display_size,
        )


class ImageSession:
    """Edit state of one image plus what the model still owes it.

    Args:
        path: the image file.
        original_size: (H, W) of the oriented image.
        display_size: (h, w) of display masks.
        memo_size: answers kept for undo/redo.
    """

    def __init__(
        self,
        path: Path,
        original_size: tuple[int, int],
        display_size: tuple[int, int],
        memo_size: int = 32,
    ) -> None:
        self.path = path
        self.original_size = original_size
        self.display_size = display_size
        self.state = EditState()
        self.embedding: Embedding | None = None
        self.request: PromptRequest | None = None  # the latest one sent
        self._memo: OrderedDict[tuple, Prediction] = OrderedDict()
        self._memo_size = memo_size
        self._mask_of: EditState | None = None  # the state whose mask is cached (see mask())
        self._mask: np.ndarray | None = None

    @property
    def busy(self) -> bool:
        """True while the mask on screen is not the mask of the current prompts."""
        return self.state.pending

    def set_state(self, state: EditState) -> PromptRequest | None:
        """Make ``state`` current; return a request to send, if one is needed."""
        self.state = self._resolved(state)
        return self._request_if_needed()

    def set_embedding(self, embedding: Embedding) -> PromptRequest | None:
        """The image's embedding arrived; return the request for queued clicks."""
        self.embedding = embedding
        return self._request_if_needed()

    def take_result(self, request_id: int, prediction: Prediction) -> bool:
        """Apply the answer to request ``request_id``; False if it is stale."""
        if self.request is None or request_id != self.request.id:
            return False
        key = self.request.prompt_key
        self.request = None
        self._remember(key, prediction)
        if self.state.pending and self.state.prompt_key == key:
            self.state = self.state.with_prediction(prediction)
            return True
        return False

    def request_failed(self, request_id: int) -> None:
        """The model could not answer; a later state change may ask again."""
        if self.request is not None and self.request.id == request_id:
            self.request = None

    def mask(self) -> np.ndarray | None:
        """bool display-size mask of the current state, or None; read-only.

        Made once per state (states are immutable): showing an answer, saving
        it and tinting its thumbnail all ask for it, and unpacking a 1920x1440
        mask costs ~1 ms each time.
        """
        state = self.state
        if self._mask_of is not state:
            mask = state.mask(self.display_size, self.original_size)
            if mask is not None:
                mask = mask.view()
                mask.flags.writeable = False
            self._mask_of, self._mask = state, mask
        return self._mask

    # -- internals ------------------------------------------------------------

    def _resolved(self, state: EditState) -> EditState:
        if state.pending:
            hit = self._memo.get(state.prompt_key)
            if hit is not None:
                self._memo.move_to_end(state.prompt_key)
                return state.with_prediction(hit)
        elif state.prediction is not None and state.has_prompts:
            self._remember(state.prompt_key, state.prediction)
        return state

    def _request_if_needed(self) -> PromptRequest | None:
        if not self.state.pending or self.embedding is None:
            if not self.state.pending:
                self.request = None  # any answer in flight is now stale
            return None
        if self.request is not None and self.request.prompt_key == self.state.prompt_key:
            return None  # already asked
        self.request = PromptRequest.for_state(self.state, self.display_size)
        return self.request

    def _remember(self, key: tuple, prediction: Prediction) -> None:
        self._memo[key] = prediction
        self._memo.move_to_end(key)
        while len(self._memo) > self._memo_size:
            self._memo.popitem(last=False)
