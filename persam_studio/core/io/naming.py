"""Output file names derived from input photos, shared by every batch writer.

``propagate`` writes ``<stem>.png`` masks and ``export-dataset`` looks them up
(and names its label files) by the same rule, so the two must agree: it lives
here, once.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence


def output_names(paths: Sequence[Path]) -> list[str]:
    """Output stems for ``paths``, unique case-insensitively, in input order.

    A stem used once stays as it is (``cat.jpg`` -> ``cat``). A stem shared
    by several inputs gets the lower-case extension (``x.jpg`` -> ``x_jpg``,
    ``x.PNG`` -> ``x_png``), and ``_2``, ``_3``... while still taken (two
    ``x.jpg`` in different folders). Case-insensitive because macOS and
    Windows folders are: ``Cat.jpg`` and ``cat.png`` would be one file there.

    Args:
        paths: the inputs in the order the command processes them.

    Returns:
        One stem per path, no extension.
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
