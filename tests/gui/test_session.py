"""When the model runs and which answers count (no Qt, no model)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from persam_studio.core.io.album import Stroke
from persam_studio.core.types import Point
from persam_studio.gui.editing import EditState, Prediction
from persam_studio.gui.session import ImageSession


def _pred(value: bool = True) -> Prediction:
    return Prediction.from_masks(np.zeros((1, 256, 256)), np.ones(1), np.full((1, 10, 10), value))


def _session() -> ImageSession:
    return ImageSession(Path("x.jpg"), (100, 100), (10, 10))


def test_clicks_before_the_embedding_become_one_request():
    s = _session()
    state = EditState()
    for x in (1, 2, 3):
        state = state.with_point(Point(x, x, 1))
        assert s.set_state(state) is None  # nothing to ask yet: no embedding
    request = s.set_embedding(object())
    assert request is not None and len(request.prompt.points) == 3
    assert s.set_embedding(object()) is None  # already asked


def test_stale_answers_are_dropped():
    s = _session()
    s.set_embedding(object())
    r1 = s.set_state(EditState().with_point(Point(1, 1, 1)))
    r2 = s.set_state(s.state.with_point(Point(2, 2, 0)))
    assert r2.id > r1.id
    assert not s.take_result(r1.id, _pred(False))  # the first click's answer came late
    assert s.state.pending
    assert s.take_result(r2.id, _pred(True))
    assert s.mask().all()


def test_undo_to_a_computed_state_needs_no_request():
    s = _session()
    s.set_embedding(object())
    one = EditState().with_point(Point(1, 1, 1))
    r = s.set_state(one)
    s.take_result(r.id, _pred(True))
    two = s.state.with_point(Point(5, 5, 0))
    assert s.set_state(two) is not None
    # Undo: the prompt-only state from the history resolves from memory.
    assert s.set_state(one) is None
    assert not s.state.pending and s.mask().all()


def test_a_non_pending_state_makes_answers_in_flight_stale():
    s = _session()
    s.set_embedding(object())
    r = s.set_state(EditState().with_point(Point(1, 1, 1)))
    s.set_state(EditState())  # Esc
    assert not s.take_result(r.id, _pred())
    assert s.mask() is None


def test_failed_request_can_be_asked_again():
    s = _session()
    s.set_embedding(object())
    state = EditState().with_point(Point(1, 1, 1))
    r = s.set_state(state)
    s.request_failed(r.id)
    assert s.set_state(state) is not None


def test_strokes_do_not_ask_the_model():
    s = _session()
    s.set_embedding(object())
    r = s.set_state(EditState().with_point(Point(1, 1, 1)))
    s.take_result(r.id, _pred(False))
    assert s.set_state(s.state.with_stroke(Stroke("add", 20, ((50.0, 50.0),)))) is None
    assert s.mask()[5, 5]


def test_the_mask_of_a_state_is_made_once_and_cannot_be_changed_by_its_users():
    s = _session()
    s.set_embedding(object())
    request = s.set_state(EditState().with_point(Point(5, 5, 1)))
    s.take_result(request.id, _pred(True))
    first = s.mask()
    assert s.mask() is first and first.all()  # saving, the canvas and the thumbnail share one
    with pytest.raises(ValueError):
        first[0, 0] = False  # read-only: a user that edits it would edit everyone's
    s.set_state(s.state.with_stroke(Stroke("erase", 2.0, ((50.0, 50.0),))))
    assert s.mask() is not first and not s.mask().all() and first.all()
