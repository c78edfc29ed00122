"""The GUI thread never waits on the model: no event-loop stall while vit_b encodes."""

from __future__ import annotations

import time

import numpy as np
import pytest
from PIL import Image
from PySide6.QtCore import QTimer

from tests.gui.conftest import wait_idle

TICK_MS = 10
MAX_STALL_S = 0.100


@pytest.mark.slow
def test_no_event_loop_stall_while_a_vit_b_encodes(qtbot, settings, tmp_path, rgb_image):
    from persam_studio.core.segment.engine import Engine
    from persam_studio.core.models.sam_build import random_sam
    from persam_studio.gui.backend import EngineInfo
    from persam_studio.gui.main_window import MainWindow

    engine = Engine(random_sam("vit_b", seed=0), "vit_b-random")  # no cache: it must really encode
    folder = tmp_path / "album"
    folder.mkdir()
    big = np.asarray(Image.fromarray(rgb_image).resize((1600, 1200)))
    Image.fromarray(big).save(folder / "photo.jpg", quality=90)

    window = MainWindow(settings, engine_factory=lambda choice: (engine, EngineInfo("vit_b", "cpu", "random")))
    qtbot.addWidget(window)
    with qtbot.waitSignal(window.model.engine_ready, timeout=60000):
        window.show()

    ticks: list[float] = []
    timer = QTimer()
    timer.setInterval(TICK_MS)
    timer.timeout.connect(lambda: ticks.append(time.perf_counter()))
    timer.start()
    with qtbot.waitSignal(window.images.image_opened, timeout=60000):
        window.open_paths([folder])
    t_open = time.perf_counter()
    with qtbot.waitSignal(window.images.embedding_ready, timeout=300000):
        pass
    t_done = time.perf_counter()
    timer.stop()
    wait_idle(qtbot, window, timeout=300000)

    during = [t for t in ticks if t_open <= t <= t_done]
    gaps = np.diff(during)
    encode_s = t_done - t_open
    assert engine.encode_count == 1 and encode_s > 0.5, "the encoder did not really run"
    assert len(during) > encode_s / (TICK_MS / 1000) / 4, "the timer hardly ticked"
    worst = np.argsort(gaps)[-3:][::-1]
    print(f"\nvit_b encode {encode_s:.2f} s, {len(during)} ticks, max gap {gaps.max() * 1000:.0f} ms, "
          f"p99 {np.percentile(gaps, 99) * 1000:.0f} ms; worst at "
          + ", ".join(f"+{during[i] - t_open:.2f} s ({gaps[i] * 1000:.0f} ms)" for i in worst))
    assert gaps.max() < MAX_STALL_S, f"event loop stalled {gaps.max() * 1000:.0f} ms while encoding"
