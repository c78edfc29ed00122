"""Checks on prompts given as numbers (the command line): one rule for points and boxes.

A prompt the model cannot use sensibly is refused with a reason instead of
giving a meaningless mask: coordinates must be finite; a point must lie in
the image; a box must have positive width and height and overlap the image
(part of it may lie outside: SAM handles that). The number of points is
capped at :data:`MAX_POINTS`, because the decoder's memory grows with the
square of the prompt tokens (20,000 points needed 24 GB). No torch here.
"""

from __future__ import annotations

import math
from typing import Sequence

#: Most points one prompt may hold.
MAX_POINTS = 256


def point_problem(x: float, y: float, size: tuple[int, int]) -> str | None:
    """Why the point (x, y) cannot be used on an image of ``size`` (H, W), or None."""
    h, w = size
    if not (math.isfinite(x) and math.isfinite(y)):
        return f"point {x:g},{y:g} is not a finite position"
    if not (0 <= x < w and 0 <= y < h):
        return f"point {x:g},{y:g} is outside the {w}x{h} image"
    return None


def box_problem(box: Sequence[float], size: tuple[int, int]) -> str | None:
    """Why the box (x0, y0, x1, y1) cannot be used on an image of ``size`` (H, W), or None."""
    h, w = size
    x0, y0, x1, y1 = (float(v) for v in box)
    text = f"{x0:g},{y0:g},{x1:g},{y1:g}"
    if not all(math.isfinite(v) for v in (x0, y0, x1, y1)):
        return f"box {text} is not finite"
    if not (x0 < x1 and y0 < y1):
        return f"box {text} needs X0 < X1 and Y0 < Y1"
    if x1 <= 0 or y1 <= 0 or x0 >= w or y0 >= h:
        return f"box {text} does not overlap the {w}x{h} image"
    return None


def prompt_problem(
    points: Sequence[tuple[float, float]], box: Sequence[float] | None, size: tuple[int, int]
) -> str | None:
    """The first reason the prompt cannot be used on an image of ``size`` (H, W), or None."""
    if len(points) > MAX_POINTS:
        return f"{len(points)} points given; at most {MAX_POINTS} per prompt"
    for x, y in points:
        problem = point_problem(x, y, size)
        if problem:
            return problem
    return None if box is None else box_problem(box, size)
