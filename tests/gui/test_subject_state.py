"""A selected subject as edit state (no Qt): what the next click asks SAM for."""

from __future__ import annotations

import numpy as np

from persam_studio.core.segment.selection import subject_prompt
from persam_studio.core.types import Box, Point
from persam_studio.gui.editing import Bitmap, EditState, SubjectBase
from persam_studio.gui.session import ImageSession


def _subject() -> tuple[EditState, SubjectBase]:
    soft = np.zeros((60, 80), np.float32)
    soft[10:40, 20:50] = 1.0
    base = SubjectBase(subject_prompt(soft), 0.9)
    return EditState(bitmap=Bitmap(soft >= 0.5), subject=base), base


def test_a_click_on_a_subject_refines_its_prompt():
    state, base = _subject()
    assert not state.pending and state.base_mask((60, 80)).sum() == 30 * 30
    clicked = state.with_point(Point(70.0, 55.0, 1))  # outside the subject: its box grows
    assert clicked.pending and clicked.subject is base and not clicked.multimask
    prompt = clicked.prompt()
    assert prompt.mask_input is base.prompt.mask_input and prompt.points == (Point(70.0, 55.0, 1),)
    assert (prompt.box.x1, prompt.box.y1) == (70.0, 55.0) and (prompt.box.x0, prompt.box.y0) == (20.0, 10.0)
    boxed = state.with_box(Box(0.0, 0.0, 30.0, 30.0))
    assert boxed.prompt().box == Box(0.0, 0.0, 30.0, 30.0) and boxed.prompt().mask_input is not None
    assert EditState().with_point(Point(1.0, 1.0, 1)).prompt().mask_input is None  # no subject: as before


def test_requests_and_remembered_answers_are_per_subject():
    state, _ = _subject()
    other, _ = _subject()
    point = Point(30.0, 20.0, 0)
    a, b = state.with_point(point), other.with_point(point)
    assert a.prompt_key != b.prompt_key  # same click, another subject: another answer
    session = ImageSession(None, (60, 80), (60, 80))
    session.embedding = object()
    request = session.set_state(a)
    assert request.multimask_output is False and request.prompt.mask_input is not None
