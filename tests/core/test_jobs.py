"""core.jobs: names, report, resume after a kill, per-item errors, the distributed split."""

from __future__ import annotations

import csv
import errno
import os
import pickle
from pathlib import Path

import pytest

from persam_studio.core.errors import Cancelled, ImageReadError, OutputError
from persam_studio.core.io.atomic import atomic_path, atomic_write_bytes, temporary_of
from persam_studio.core.jobs import (
    Batch, Part, Report, item_error, output_names, plan, remove_stale_temporaries, run_each, run_item,
)

COLUMNS = ["file", "value", "status", "error"]


def _inputs(tmp_path: Path, names: list[str]) -> list[Path]:
    folder = tmp_path / "in"
    folder.mkdir(exist_ok=True)
    paths = []
    for n in names:
        (folder / n).write_text(n)
        paths.append(folder / n)
    return paths


def _batch(tmp_path: Path, names: list[str]) -> tuple[Batch, Path]:
    out = tmp_path / "out"
    items = plan(_inputs(tmp_path, names), lambda src, name: [Part((str(src),), (out / f"{name}.txt",))])
    return Batch(Report(out / "report.csv", COLUMNS), items), out


class Work:
    """A per-item function that writes OUTDIR/<name>.txt and counts calls; fails on request."""

    def __init__(self, fail: dict[str, BaseException] | None = None) -> None:
        self.calls: list[str] = []
        self.fail = fail or {}

    def __call__(self, item):
        self.calls.append(item.name)
        if item.name in self.fail:
            raise self.fail[item.name]
        out = item.parts[0].outputs[0]
        if not out.is_file():  # the contract: keep a file an earlier run wrote
            atomic_write_bytes(out, item.source.read_bytes().upper())
        return [{"file": str(item.source), "value": item.name.upper(), "status": "ok"}]


def _rows(out: Path) -> dict[str, dict[str, str]]:
    with open(out / "report.csv", newline="") as fh:
        return {Path(r["file"]).stem: r for r in csv.DictReader(fh)}


def test_output_names_are_unique_case_insensitively_and_stable():
    paths = [Path("a/x.jpg"), Path("b/X.png"), Path("c/x.jpg"), Path("y.JPG"), Path("x_jpg.png")]
    names = output_names(paths)
    assert names == ["x_jpg", "X_png", "x_jpg_2", "y", "x_jpg_3"]
    assert len({n.casefold() for n in names}) == len(names)
    assert output_names(paths) == names


def test_temporary_names_are_those_atomic_path_makes(tmp_path):
    dest = tmp_path / "cat.png"
    with atomic_path(dest) as tmp:
        assert temporary_of(tmp.name) == "cat.png"
        tmp.write_bytes(b"x")
    for other in ["cat.png", "notes.part", ".cat.png.part", ".cat.png.ABCDEFGH.part", "cat.png.abcd1234.part"]:
        assert temporary_of(other) is None


def test_stale_temporaries_of_our_outputs_only_are_removed(tmp_path):
    ours = tmp_path / ".a.png.k3x_9a2b.part"
    theirs = [tmp_path / ".b.png.k3x_9a2b.part", tmp_path / "notes.part", tmp_path / "a.png"]
    for p in [ours, *theirs]:
        p.write_bytes(b"")
    (tmp_path / ".a.png.zzzzzzzz.part").mkdir()  # not a file: not ours
    removed = remove_stale_temporaries([tmp_path / "a.png", tmp_path / "missing" / "c.png"])
    assert removed == [ours] and not ours.exists()
    assert all(p.exists() for p in theirs) and (tmp_path / ".a.png.zzzzzzzz.part").is_dir()


def test_batch_writes_files_and_report_and_skips_done_items(tmp_path):
    batch, out = _batch(tmp_path, ["a.txt", "b.txt"])
    work = Work()
    steps = list(batch.run(work))
    assert [(s.done, s.total) for s in steps] == [(0, 2), (1, 2), (2, 2)]
    assert work.calls == ["a", "b"] and (out / "a.txt").read_text() == "A.TXT"
    assert list(_rows(out)["a"]) == COLUMNS
    assert {k: (r["value"], r["status"]) for k, r in _rows(out).items()} == {"a": ("A", "ok"), "b": ("B", "ok")}

    again, _ = _batch(tmp_path, ["a.txt", "b.txt"])
    work2 = Work()
    assert [s.done for s in again.run(work2)] == [2] and work2.calls == []
    assert again.kept == 2 and again.counts() == {"skipped": 2}
    assert {k: (r["value"], r["status"]) for k, r in _rows(out).items()} == {"a": ("A", "skipped"), "b": ("B", "skipped")}


def test_resume_after_kill_redoes_row_of_unrecorded_file_and_removes_temporaries(tmp_path):
    batch, out = _batch(tmp_path, ["a.txt", "b.txt", "c.txt"])

    class Killed(BaseException):
        """Stands for SIGKILL: no except clause of the batch sees it."""

    def killed_after_b_file(item):
        Work()(item)
        if item.name == "b":  # b's file is written, its row never
            (out / ".c.txt.k3x_9a2b.part").write_bytes(b"half a file")
            raise Killed()
        return Work()(item)

    with pytest.raises(Killed):
        list(batch.run(killed_after_b_file))
    assert set(_rows(out)) == {"a"} and (out / "b.txt").is_file()
    b_before = (out / "b.txt").stat().st_mtime_ns

    rerun, _ = _batch(tmp_path, ["a.txt", "b.txt", "c.txt"])
    work = Work()
    list(rerun.run(work))
    assert work.calls == ["b", "c"]  # b for its row only
    assert (out / "b.txt").stat().st_mtime_ns == b_before
    assert rerun.kept == 2  # a and b: their files were left untouched
    assert {k: r["status"] for k, r in _rows(out).items()} == {"a": "skipped", "b": "ok", "c": "ok"}
    assert _rows(out)["b"]["value"] == "B"
    assert not list(out.glob("*.part")) and not list(out.glob(".*.part"))


def test_a_folder_named_like_an_output_is_not_done(tmp_path):
    batch, out = _batch(tmp_path, ["a.txt", "b.txt"])
    list(batch.run(Work()))
    (out / "b.txt").unlink()
    (out / "b.txt").mkdir()  # the row is there, the "file" is a folder

    rerun, _ = _batch(tmp_path, ["a.txt", "b.txt"])
    work = Work()
    list(rerun.run(work))
    assert work.calls == ["b"]
    row = _rows(out)["b"]
    assert row["status"] == "error" and "b.txt" in row["error"] and "\n" not in row["error"]
    assert rerun.errors() == [row["error"]] and _rows(out)["a"]["status"] == "skipped"


@pytest.mark.parametrize("exc", [
    ImageReadError("b.txt", "truncated or corrupt image data"),
    OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), "out/b.txt"),
    MemoryError(),
    ValueError("height and width must be > 0"),
])
def test_per_item_problems_are_error_rows_and_the_others_go_on(tmp_path, exc):
    batch, out = _batch(tmp_path, ["a.txt", "b.txt", "c.txt"])
    list(batch.run(Work(fail={"b": exc})))
    rows = _rows(out)
    assert [rows[k]["status"] for k in "abc"] == ["ok", "error", "ok"]
    assert (out / "a.txt").is_file() and (out / "c.txt").is_file() and not (out / "b.txt").exists()
    message = rows["b"]["error"]
    assert "b.txt" in message and "\n" not in message and batch.errors() == [message]
    expected = {ImageReadError: "corrupt", OSError: "No space left", MemoryError: "memory", ValueError: "> 0"}
    assert expected[type(exc)] in message


def test_a_bug_is_not_an_error_row(tmp_path):
    batch, out = _batch(tmp_path, ["a.txt", "b.txt"])
    with pytest.raises(TypeError):
        list(batch.run(Work(fail={"b": TypeError("bug")})))
    assert set(_rows(out)) == {"a"}  # what finished is recorded
    assert item_error(TypeError("bug"), Path("x")) is None


def test_report_that_is_a_folder_or_output_folder_that_is_a_file_fails_before_work(tmp_path):
    batch, out = _batch(tmp_path, ["a.txt"])
    (out / "report.csv").mkdir(parents=True)
    with pytest.raises(OutputError, match="report.csv: is a folder"):
        batch.check()
    work = Work()
    with pytest.raises(OutputError):
        list(batch.run(work))
    assert work.calls == [] and not (out / "a.txt").exists()

    (tmp_path / "file").write_text("")
    items = plan([tmp_path / "in" / "a.txt"], lambda s, n: [Part((str(s),), (tmp_path / "file" / "a.txt",))])
    with pytest.raises(OutputError, match="is a file, not a folder"):
        Batch(Report(tmp_path / "file" / "report.csv", COLUMNS), items).check()


def test_unwritable_report_stops_the_batch_with_one_error(tmp_path, monkeypatch):
    import persam_studio.core.io.atomic as atomic

    def full(dest, text):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    batch, out = _batch(tmp_path, ["a.txt"])
    monkeypatch.setattr(atomic, "atomic_write_text", full)
    work = Work()
    with pytest.raises(OutputError, match="No space left on device") as info:
        list(batch.run(work))
    assert "\n" not in str(info.value) and work.calls == []


def test_read_only_output_folder(tmp_path):
    batch, out = _batch(tmp_path, ["a.txt"])
    out.mkdir()
    out.chmod(0o555)
    try:
        try:
            (out / "probe").write_text("")
        except PermissionError:
            pass
        else:
            pytest.skip("permissions are not enforced for this user (root)")
        with pytest.raises(OutputError, match="report.csv"):
            list(batch.run(Work()))
    finally:
        out.chmod(0o755)


def test_cancel_between_items_keeps_the_finished_rows(tmp_path):
    batch, out = _batch(tmp_path, ["a.txt", "b.txt"])
    work = Work()
    with pytest.raises(Cancelled):
        list(batch.run(work, should_cancel=lambda: len(work.calls) >= 1))
    assert work.calls == ["a"] and set(_rows(out)) == {"a"}


def test_distributed_split_records_outcomes_in_any_order(tmp_path):
    batch, out = _batch(tmp_path, ["a.txt", "b.txt", "c.txt"])
    # Rows of an input this run does not cover stay at the end of the report.
    Report(out / "report.csv", COLUMNS).write([{"file": "old.txt", "value": "1", "status": "ok", "error": ""}])
    pending = batch.start()
    outcomes = [pickle.loads(pickle.dumps(run_item(Work(fail={"b": MemoryError()}), item)))
                for item in reversed(pending)]  # as a worker would send them back
    for outcome in outcomes:
        batch.record(outcome)
    with open(out / "report.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [(Path(r["file"]).stem, r["status"]) for r in rows] == [
        ("a", "ok"), ("b", "error"), ("c", "ok"), ("old", "ok")]
    assert batch.finished == 3 and batch.counts() == {"ok": 2, "error": 1}


def test_run_each_without_a_report(tmp_path):
    items = plan(_inputs(tmp_path, ["a.txt", "b.txt", "c.txt"]))
    assert [item.parts for item in items][0] == (Part((str(items[0].source),)),)

    def work(item):
        if item.name == "b":
            raise ValueError("height and width must be > 0")
        return [{"status": "encoded"}]

    outcomes = list(run_each(items, work))
    assert [o.error is None for o in outcomes] == [True, False, True]
    assert outcomes[1].error == f"{items[1].source}: height and width must be > 0" and outcomes[1].rows == ()
    with pytest.raises(ZeroDivisionError):  # a bug surfaces
        list(run_each(items, lambda item: [{"status": str(1 / 0)}]))


def test_a_part_may_have_several_rows_and_resume_keeps_them_all(tmp_path):
    """propagate --instances: one row per instance, all kept on resume, in order."""

    def work(item):
        out = item.parts[0].outputs[0]
        if not out.is_file():
            atomic_write_bytes(out, b"mask")
        n = 2 if item.name == "a" else 1
        return [{"file": str(item.source), "value": f"{item.name}{i}", "status": "ok"} for i in range(n)]

    batch, out = _batch(tmp_path, ["a.txt", "b.txt"])
    list(batch.run(work))
    with open(out / "report.csv", newline="") as fh:
        first = [(Path(r["file"]).stem, r["value"], r["status"]) for r in csv.DictReader(fh)]
    assert first == [("a", "a0", "ok"), ("a", "a1", "ok"), ("b", "b0", "ok")]
    again, _ = _batch(tmp_path, ["a.txt", "b.txt"])
    list(again.run(work))
    with open(out / "report.csv", newline="") as fh:
        kept = [(Path(r["file"]).stem, r["value"], r["status"]) for r in csv.DictReader(fh)]
    assert kept == [("a", "a0", "skipped"), ("a", "a1", "skipped"), ("b", "b0", "skipped")]
    assert again.counts() == {"skipped": 3}
