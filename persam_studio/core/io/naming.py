"""Output file names derived from input photos, shared by every batch writer.

``propagate`` writes ``<stem>.png`` masks and ``export-dataset`` looks them up
(and names its label files) by the same rule, so the two must agree: it lives
here, once.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence


def output_stems(paths: Sequence[Path]) -> list[str]:
    """File stems for ``paths``, unique (case-insensitively) and stable for a given list.

    A stem shared by several inputs (``a.jpg`` and ``a.png``, or two folders)
    gets the lower-case extension appended (``a_jpg``), then a counter if
    that still clashes (``a_jpg_2``), in input order.
    """
    stems = [p.stem for p in paths]
    counts: dict[str, int] = {}
    for s in stems:
        counts[s.casefold()] = counts.get(s.casefold(), 0) + 1
    out, used = [], set()
    for p, s in zip(paths, stems):
        name = s if counts[s.casefold()] == 1 else f"{s}_{p.suffix.lstrip('.').lower()}"
        base, k = name, 2
        while name.casefold() in used:
            name, k = f"{base}_{k}", k + 1
        used.add(name.casefold())
        out.append(name)
    return out
