"""Propagation's choices in the app: method (PerSAM-F by default), exact fit, instances; model quality in view."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np

from persam_studio.core.personalize import propagate as propagate_mod, targets as targets_mod
from persam_studio.core.personalize.methods import DEFAULT_MODE
from tests.gui.conftest import wait_idle
from tests.gui.test_album_flow import _use_as_reference
from tests.gui.test_canvas_prompts import click


def _spy(monkeypatch, module, name: str, seen: list, **force):
    """Record each call's keyword arguments, then call the real function (with ``force`` applied)."""
    real = getattr(module, name)

    def spy(*args, **kwargs):
        seen.append(dict(kwargs))
        return real(*args, **{**kwargs, **force})

    monkeypatch.setattr(module, name, spy)


def test_new_album_defaults_to_persam_f_and_persam_is_selectable(make_window, album_dir, qtbot):
    window = make_window()
    window.open_paths([album_dir])
    wait_idle(qtbot, window)
    side = window.side
    assert DEFAULT_MODE == "persam_f" and side.method.currentData() == "persam_f"
    assert side.method.currentText().startswith("PerSAM-F")
    assert side.exact.isEnabled() and not side.exact.isChecked()
    assert side.instances.currentText() == "1" and side.instances.itemText(side.instances.count() - 1) == "All"
    assert side.instances.count() == 33
    side.set_method("persam")
    assert side.method.currentText() == "PerSAM (training-free)"
    assert not side.exact.isEnabled()  # exact fit is PerSAM-F's
    side.exact.setChecked(True)
    assert side.propagate_options().exact is False


def test_exact_fit_and_instances_reach_the_core(make_window, album_dir, qtbot, monkeypatch):
    fits, runs = [], []
    _spy(monkeypatch, targets_mod, "fit_targets", fits, exact=False)  # checked, then run fast
    _spy(monkeypatch, propagate_mod, "propagate", runs)
    window = make_window()
    window.open_paths([album_dir])
    wait_idle(qtbot, window)
    click(qtbot, window, 250, 140)
    _use_as_reference(window, qtbot)
    window.side.exact.setChecked(True)
    window.side.instances.setCurrentIndex(window.side.instances.findText("All"))
    with qtbot.waitSignal(window.jobs.finished, timeout=120000) as finished:
        window.side.propagate_button.click()
    assert finished.args[1].startswith("done"), finished.args
    assert fits[-1]["finetune"] is True and fits[-1]["exact"] is True
    assert runs[-1]["instances"] is None and 0 < runs[-1]["instance_fraction"] <= 1
    assert window.albums.album.method == "persam_f"

    window.side.set_method("persam")
    window.side.instances.setCurrentIndex(window.side.instances.findText("3"))
    with qtbot.waitSignal(window.jobs.finished, timeout=120000):
        window.actions_.propagate.trigger()
    assert fits[-1]["finetune"] is False and fits[-1]["exact"] is False
    assert runs[-1]["instances"] == 3
    assert window.albums.album.method == "persam"

    # The album remembers the last propagation's choices.
    window.side.set_method("persam_f")
    window.side.exact.setChecked(True)
    window.side.instances.setCurrentIndex(window.side.instances.findText("All"))
    with qtbot.waitSignal(window.jobs.finished, timeout=120000):
        window.actions_.propagate.trigger()
    window.close()
    again = make_window()
    again.open_paths([album_dir])
    wait_idle(qtbot, again)
    options = again.side.propagate_options()
    assert (options.method, options.exact, options.instances) == ("persam_f", True, None)


class _Result(SimpleNamespace):
    def mask(self, size):
        m = np.zeros(size, bool)
        m[self.rows] = True
        return m


class _Instances(SimpleNamespace):
    def mask(self, size):
        out = np.zeros(size, bool)
        for r in self.instances:
            out |= r.mask(size)
        return out


def test_the_album_mask_is_the_union_of_the_instances():
    from persam_studio.gui.backend import _propagated

    size = (40, 60)
    low = [np.full((1, 256, 256), v, np.float32) for v in (-1.0, 2.0)]
    first = _Result(rows=slice(0, 10), low_res_logits=low[0], confidence=0.8, original_size=size)
    second = _Result(rows=slice(20, 30), low_res_logits=low[1], confidence=0.7, original_size=size)
    item = SimpleNamespace(path=Path("a.png"), index=0, total=1, results={"cat": first},
                           instances={"cat": _Instances(instances=(first, second))}, seconds=0.1)
    out = _propagated(item, display_cap=2048)
    mask = out.prediction.display_mask(0)
    assert mask[:10].all() and mask[20:30].all() and not mask[10:20].any()  # both cats, nothing between
    assert float(out.prediction.low_res_logits.max()) == 2.0  # saved logits cover every instance
    assert out.confidence == 0.8  # the photo's confidence is its strongest instance's


def test_model_dialog_shows_published_perseg_numbers(qtbot):
    from persam_studio.gui.dialogs.model_dialog import ModelDialog

    dialog = ModelDialog()
    qtbot.addWidget(dialog)
    items = {dialog.models.itemData(i): dialog.models.itemText(i) for i in range(dialog.models.count())}
    assert "PerSAM-F 87.2 %" in items["vit_b"] and "PerSAM-F 95.3 %" in items["vit_h"]
    dialog.models.setCurrentIndex(dialog.models.findData("vit_b"))
    assert "PerSAM-F 87.2 %" in dialog.quality.text() and "PerSAM 64.0 %" in dialog.quality.text()
    dialog.models.setCurrentIndex(dialog.models.findData("vit_t"))
    assert "none published" in dialog.quality.text()
