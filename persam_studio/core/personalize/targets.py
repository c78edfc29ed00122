"""Group references into named targets: one rule for the CLI and the app.

A *reference* is an image and the object's mask in it; a *target* is the
object PerSAM looks for, fitted from one or more references (few-shot). The
CLI gets references from ``--target NAME --ref IMAGE --ref-mask MASK``
options, the app from the album's references; both hand an ordered list of
``(name, image, mask)`` to :func:`group_references` and fit one
:class:`~persam_studio.core.personalize.persam.Target` per group with
:func:`fit_targets`.

Target names become folder names (``OUTDIR/<name>/``) and report values, so
they are checked here: letters, digits, space, ``_ . -``, starting with a
letter or digit, and two names may not differ only by case (they would be
one folder on macOS and Windows).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable, Collection, Generic, Iterable, Sequence, TypeVar

import numpy as np

from persam_studio.core.errors import Cancelled, TargetError
from persam_studio.core.personalize.persam import Target, fit_target
from persam_studio.core.segment.engine import Engine

#: The name of the single target of a command given no name.
DEFAULT_TARGET = "target"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 _.-]*$")

I = TypeVar("I")  # noqa: E741 - an image: a path, or loaded pixels
M = TypeVar("M")  # a mask: a path, or a bool (H, W) array


@dataclass(frozen=True)
class ReferenceGroup(Generic[I, M]):
    """The references of one target, in the order given.

    Attributes:
        name: the target's name.
        references: ``(image, mask)`` pairs, as the caller passed them
            (paths or arrays: grouping never loads anything).
    """

    name: str
    references: tuple[tuple[I, M], ...]


def check_target_name(name: str, reserved: Collection[str] = ()) -> str:
    """Return ``name`` if it can name a target, else raise.

    Args:
        reserved: names that would clash with the caller's other files
            (``report.csv`` beside the target folders); compared without case.

    Raises:
        TargetError: not a valid name, or a reserved one.
    """
    if not _NAME.match(name) or name.casefold() in {r.casefold() for r in reserved}:
        raise TargetError(None, f"target name {name!r}: use letters, digits, space, _ . - "
                                "(starting with a letter or digit)")
    return name


def group_references(
    references: Iterable[tuple[str, I, M]], *, reserved: Collection[str] = (), file_names: bool = True
) -> list[ReferenceGroup[I, M]]:
    """Group ``(name, image, mask)`` references by target name.

    References with the same name form one few-shot target; groups come in
    the order their names first appear, references in the order given.
    ``file_names=False`` skips the name rule (:func:`check_target_name`) for
    callers that never make files or folders from the names (the app, whose
    subjects are free text such as "Mia's dog"); empty names and names that
    differ only by case are refused either way.

    Raises:
        TargetError: no reference, an invalid or reserved name (see
            :func:`check_target_name`), or two names that differ only by case.
    """
    groups: dict[str, list[tuple[I, M]]] = {}
    folded: dict[str, str] = {}
    for name, image, mask in references:
        if name not in groups:
            if file_names:
                check_target_name(name, reserved)
            elif not name.strip():
                raise TargetError(None, "a target needs a name")
            other = folded.setdefault(name.casefold(), name)
            if other != name:
                raise TargetError(None, f"target names {other!r} and {name!r} differ only by case")
            groups[name] = []
        groups[name].append((image, mask))
    if not groups:
        raise TargetError(None, "no reference: give an image and the object's mask in it")
    return [ReferenceGroup(name, tuple(refs)) for name, refs in groups.items()]


def fit_targets(
    engine: Engine,
    groups: Sequence[ReferenceGroup[np.ndarray, np.ndarray]],
    *,
    finetune: bool,
    exact: bool = False,
    progress: Callable[[str, int, int], None] | None = None,
    should_cancel: Callable[[], bool] | None = None,
) -> list[Target]:
    """Encode every reference image and fit one :class:`Target` per group.

    Args:
        groups: from :func:`group_references`, each reference as (pixels
            uint8 (H, W, 3) RGB of the oriented image, mask bool (H, W)).
        finetune: PerSAM-F (fit the mask weights) instead of PerSAM.
        exact: PerSAM-F's full-size fit instead of the fast one (see
            :func:`~persam_studio.core.personalize.fit.fit`).
        progress: ``progress(target_name, step, steps)`` while a target is
            fitted (PerSAM-F), so a front end can show what it is doing.
        should_cancel: polled while encoding and fitting.

    Raises:
        MaskError: a mask is empty or not its image's size.
        Cancelled: ``should_cancel()`` returned True.
    """
    targets = []
    for group in groups:
        references = []
        for pixels, mask in group.references:
            if should_cancel is not None and should_cancel():
                raise Cancelled()
            references.append((engine.encode(pixels), mask))
        report = None if progress is None else (lambda d, t, n=group.name: progress(n, d, t))
        targets.append(fit_target(engine, references, finetune=finetune, exact=exact, name=group.name,
                                  progress=report, should_cancel=should_cancel))
    return targets
