"""``report.csv`` of a batch: rows per item and part, rewritten atomically.

A part usually has one row; a part may have several (``propagate
--instances``: one row per instance found), which share the part's key
columns and differ in others.

The report is the batch's memory between runs: resume reads it back to know
which outputs belong to a finished item. It is rewritten whole, through
:mod:`persam_studio.core.io.atomic`, after every item, so a kill leaves the
previous complete report, never a half-written line.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Iterable, Mapping, Sequence

from persam_studio.core.errors import OutputError

#: A report row: column -> text (numbers already formatted by the command).
Row = dict[str, str]
#: The values of a report's key columns, e.g. ``(file,)`` or ``(file, target)``.
Key = tuple[str, ...]

REPORT_NAME = "report.csv"


class Report:
    """The CSV file of a batch and its columns.

    Args:
        path: the report file, usually ``OUTDIR/report.csv``.
        columns: all columns in file order; must include ``key``, ``status``
            and ``error``.
        key: the columns that identify a part (its rows share them).
    """

    def __init__(self, path: str | Path, columns: Sequence[str], key: Sequence[str] = ("file",)) -> None:
        missing = [c for c in (*key, "status", "error") if c not in columns]
        if missing:
            raise ValueError(f"report columns {list(columns)} lack {missing}")
        self.path = Path(path)
        self.columns = tuple(columns)
        self.key = tuple(key)

    def row(self, key: Key, **values: str) -> Row:
        """A full row: the key's values, ``values``, and "" in the other columns."""
        row = dict.fromkeys(self.columns, "")
        row.update(zip(self.key, key))
        row.update(values)
        return row

    def key_of(self, row: Mapping[str, str]) -> Key:
        return tuple(row.get(c) or "" for c in self.key)

    def check(self) -> None:
        """Refuse a report path that can never be written, before any work.

        Raises:
            OutputError: the path is a folder (or another non-file).
        """
        if self.path.exists() and not self.path.is_file():
            what = "a folder" if self.path.is_dir() else "not a regular file"
            raise OutputError(self.path, f"is {what}; the report must be a file")

    def read(self) -> dict[Key, list[Row]]:
        """Rows of an earlier run, grouped by key in file order; {} when there is none.

        A report that cannot be read or parsed counts as none: the batch then
        redoes the items it cannot vouch for, which is safe, and writes a
        fresh report.
        """
        try:
            with open(self.path, newline="", encoding="utf-8") as fh:
                reader = csv.DictReader(fh)
                if not reader.fieldnames or any(c not in reader.fieldnames for c in self.key):
                    return {}
                rows = [{c: r.get(c) or "" for c in self.columns} for r in reader]
        except (OSError, csv.Error, UnicodeDecodeError):
            return {}
        grouped: dict[Key, list[Row]] = {}
        for r in rows:
            grouped.setdefault(self.key_of(r), []).append(r)
        return grouped

    def write(self, rows: Iterable[Mapping[str, str]]) -> None:
        """Replace the report with ``rows`` (in that order), atomically.

        Raises:
            OutputError: the file cannot be written (read-only folder, full
                disk, the path became a folder).
        """
        from persam_studio.core.io.atomic import atomic_write_text

        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=self.columns, lineterminator="\n", extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
        try:
            atomic_write_text(self.path, buf.getvalue())
        except OSError as exc:
            raise OutputError(self.path, f"cannot write the report ({exc.strerror or exc})") from None
