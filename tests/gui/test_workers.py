"""The lanes: one model thread, replaced queued jobs, priorities, steps, cancel."""

from __future__ import annotations

import threading

import pytest
from PySide6.QtCore import QThread

from persam_studio.gui.workers import HIGH, LOW, Lane


@pytest.fixture()
def lane(qtbot):
    lane = Lane("test", 1)
    yield lane
    lane.shutdown()


def _blocker(lane: Lane) -> threading.Event:
    """Occupy the lane's only thread until the returned event is set."""
    gate, started = threading.Event(), threading.Event()

    def block():
        started.set()
        gate.wait(10)

    lane.submit(block, priority=HIGH + 5)
    assert started.wait(10)
    return gate


def test_callbacks_run_on_the_gui_thread_with_results_and_errors(lane, qtbot):
    seen = {}

    def fail():
        raise ValueError("bad input")

    lane.submit(lambda: QThread.currentThread(), on_done=lambda t: seen.update(worker=t, cb=QThread.currentThread()))
    lane.submit(fail, on_error=lambda e: seen.update(error=e))
    qtbot.waitUntil(lambda: "error" in seen and "cb" in seen)
    assert seen["worker"] is not seen["cb"]
    assert seen["cb"] is QThread.currentThread()
    assert isinstance(seen["error"], ValueError)
    qtbot.waitUntil(lambda: not lane.busy)


def test_a_queued_job_in_a_slot_is_replaced_by_the_next(lane, qtbot):
    gate = _blocker(lane)
    ran, cancelled = [], []
    lane.submit(lambda: ran.append("first"), slot="prompt", on_cancelled=lambda: cancelled.append(1))
    lane.submit(lambda: ran.append("second"), slot="prompt")
    gate.set()
    qtbot.waitUntil(lambda: not lane.busy)
    assert ran == ["second"] and cancelled == [1]


def test_interactive_jobs_run_between_the_steps_of_a_long_job(lane, qtbot):
    order, gate = [], threading.Event()

    def steps():
        gate.wait(10)
        order.append("step1")
        yield 1
        order.append("step2")
        yield 2
        order.append("step3")
        yield 3

    done = []
    lane.start_long(steps(), on_done=lambda v: done.append(v))
    qtbot.waitUntil(lambda: lane.pool.activeThreadCount() == 1)
    lane.submit(lambda: order.append("click"), priority=HIGH)
    gate.set()
    qtbot.waitUntil(lambda: bool(done))
    assert order.index("click") < order.index("step2")


def test_cancel_stops_a_long_job_between_steps(lane, qtbot):
    gate, closed, items = threading.Event(), [], []

    def steps():
        try:
            for i in range(10):
                if i == 1:
                    gate.wait(10)
                yield i
        finally:
            closed.append(True)

    cancelled = []
    job = lane.start_long(steps(), on_items=items.extend, on_cancelled=lambda: cancelled.append(1))
    qtbot.waitUntil(lambda: lane.pool.activeThreadCount() == 1 and items == [0] or job.finished, timeout=5000)
    job.cancel()
    gate.set()
    qtbot.waitUntil(lambda: bool(cancelled))
    assert items == [0, 1] and closed == [True]
    assert not lane.busy


def test_items_arrive_in_order_and_in_few_batches(lane, qtbot):
    batches = []
    done = []
    lane.start_long(iter(range(200)), priority=LOW, on_items=lambda b: batches.append(list(b)), on_done=done.append)
    qtbot.waitUntil(lambda: bool(done))
    assert [x for b in batches for x in b] == list(range(200))
    assert len(batches) < 50  # not one GUI update per item


def test_progress_reports_are_throttled(lane, qtbot):
    reports = []

    def work(job):
        for i in range(1, 1001):
            job.report(i, 1000)
        return "ok"

    done = []
    lane.submit(work, with_job=True, on_progress=lambda d, t: reports.append(d), on_done=done.append)
    qtbot.waitUntil(lambda: bool(done))
    assert reports[-1] == 1000 and len(reports) < 20


def test_synchronous_lane_runs_inline(qtbot):
    lane = Lane("sync", 1, synchronous=True)
    out = []
    lane.submit(lambda: 41 + 1, on_done=out.append)
    assert out == [42] and not lane.busy


def test_shutdown_waits_for_the_running_job_and_drops_the_queue(qtbot):
    lane = Lane("closing", 1)
    gate = _blocker(lane)
    ran = []
    lane.submit(lambda: ran.append(1), priority=LOW)
    threading.Timer(0.05, gate.set).start()
    lane.shutdown()
    assert lane.pool.activeThreadCount() == 0 and ran == []
    lane.submit(lambda: ran.append(2))  # closed: ignored
    assert not lane.busy
