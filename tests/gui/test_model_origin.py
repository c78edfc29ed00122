"""Which model is used and why: flags, PERSAM_CHECKPOINT, Settings; errors on top; PerSAM-F progress."""

from __future__ import annotations


import pytest

from persam_studio.gui.backend import EngineInfo, ModelChoice
from persam_studio.gui.launch import LaunchOptions, effective_choice, parse_app_args
from tests.gui.conftest import wait_idle
from tests.gui.test_app import _window_without_model, no_checkpoints  # noqa: F401  (fixture)
from tests.gui.test_canvas_prompts import click


def test_app_arguments_take_checkpoint_and_model_before_or_after_the_folder():
    assert parse_app_args(["--checkpoint", "a.pth", "--model", "vit_t", "album"]) == LaunchOptions(
        ("album",), "a.pth", "vit_t")
    assert parse_app_args(["album", "--checkpoint", "a.pth"]) == LaunchOptions(("album",), "a.pth", "")
    assert parse_app_args(["x.jpg", "y.jpg"]) == LaunchOptions(("x.jpg", "y.jpg"))
    assert parse_app_args([]) == LaunchOptions()
    with pytest.raises(SystemExit) as usage:
        parse_app_args(["--bogus"])
    assert usage.value.code == 2


def test_run_app_refuses_a_usage_error_without_opening_a_window(capsys):
    from persam_studio.gui.app import run_app

    assert run_app(["--model"]) == 2
    assert "--model" in capsys.readouterr().err


def test_flag_wins_over_environment_over_settings():
    setting = ModelChoice(checkpoint="/s.pth", model_type="vit_b", device="cpu")
    env = {"PERSAM_CHECKPOINT": "/e.pth"}
    choice, origin = effective_choice(setting, LaunchOptions((), "/f.pth", "vit_t"), env)
    assert (choice.checkpoint, choice.model_type, choice.device) == ("/f.pth", "vit_t", "cpu")
    assert (origin.checkpoint, origin.model_type, origin.overridden) == ("--checkpoint", "--model", "/s.pth")
    choice, origin = effective_choice(setting, LaunchOptions(), env)
    assert (choice.checkpoint, origin.checkpoint, origin.model_type) == ("/e.pth", "PERSAM_CHECKPOINT", "Settings")
    choice, origin = effective_choice(setting, LaunchOptions(), {})
    assert (choice.checkpoint, origin.checkpoint, origin.overridden) == ("/s.pth", "Settings", "")
    choice, origin = effective_choice(ModelChoice(), LaunchOptions(), {})
    assert (choice.checkpoint, origin.checkpoint, origin.model_type) == ("", "found", "from the checkpoint")


@pytest.mark.parametrize("source", ["flag", "env", "setting"])
def test_status_bar_shows_the_model_and_where_it_came_from(qtbot, settings, make_engine, monkeypatch, tmp_path,
                                                           source):
    from persam_studio.gui.main_window import MainWindow

    settings.model_choice = ModelChoice(checkpoint=str(tmp_path / "from-settings.pth"))
    monkeypatch.setenv("PERSAM_CHECKPOINT", str(tmp_path / "from-env.pth")) if source != "setting" else None
    launch = LaunchOptions(checkpoint=str(tmp_path / "from-flag.pth")) if source == "flag" else LaunchOptions()
    engine, asked = make_engine(), []

    def factory(choice):
        asked.append(choice)
        return engine, EngineInfo("vit_b", "cpu", choice.checkpoint)

    window = MainWindow(settings, engine_factory=factory, launch=launch)
    qtbot.addWidget(window)
    with qtbot.waitSignal(window.model.engine_ready, timeout=20000):
        window.show()
    name, origin = {"flag": ("from-flag.pth", "--checkpoint"), "env": ("from-env.pth", "PERSAM_CHECKPOINT"),
                    "setting": ("from-settings.pth", "Settings")}[source]
    assert asked[-1].checkpoint == str(tmp_path / name)
    assert window.status.model_label.text() == f"vit_b (cpu) · {name} · {origin}"
    tip = window.status.model_label.toolTip()
    assert str(tmp_path / name) in tip
    assert ("from-settings.pth (Settings)" in tip) == (source != "setting")  # said when Settings lost


def test_a_file_chosen_while_persam_checkpoint_is_set_is_not_silently_ignored(qtbot, settings, make_engine,
                                                                             monkeypatch, tmp_path):
    from persam_studio.gui.main_window import MainWindow

    monkeypatch.setenv("PERSAM_CHECKPOINT", str(tmp_path / "env.pth"))
    engine = make_engine()
    window = MainWindow(settings, engine_factory=lambda c: (engine, EngineInfo("vit_b", "cpu", c.checkpoint)))
    qtbot.addWidget(window)
    with qtbot.waitSignal(window.model.engine_ready, timeout=20000):
        window.show()
    window._use_checkpoint(str(tmp_path / "chosen.pth"))
    assert "PERSAM_CHECKPOINT is set and wins" in window.error_box.text()
    qtbot.waitUntil(lambda: not window.model_lane.busy, timeout=20000)
    assert window.status.model_label.text().endswith("env.pth · PERSAM_CHECKPOINT")


def test_error_box_of_a_broken_checkpoint_is_on_top_of_the_model_dialog(qtbot, settings, no_checkpoints, tmp_path):  # noqa: F811
    window = _window_without_model(qtbot, settings)
    bad = tmp_path / "broken.pth"
    bad.write_bytes(b"not a checkpoint")
    with qtbot.waitSignal(window.model.load_failed, timeout=20000):
        window.model_dialog.file_chosen.emit(str(bad))
    box = window.error_box
    assert box.isVisible() and "broken.pth" in box.text()
    assert box.parent() is window.model_dialog  # a child window stays above its parent


def _with_a_reference(make_window, album_dir, qtbot):
    window = make_window()
    window.open_paths([album_dir])
    wait_idle(qtbot, window)
    click(qtbot, window, 250, 140)
    with qtbot.waitSignal(window.albums.references_changed, timeout=20000):
        window.side.use_button.click()
    return window


def test_persam_f_fitting_shows_its_own_progress(make_window, album_dir, qtbot):
    window = _with_a_reference(make_window, album_dir, qtbot)
    fitting, labels = [], []
    window.jobs.fit_progressed.connect(lambda label, d, t: (fitting.append((d, t)),
                                                            labels.append(window.status.job_label.text())))
    with qtbot.waitSignal(window.jobs.finished, timeout=120000):
        window.side.set_method("persam_f")
        window.side.propagate_button.click()
    assert fitting and fitting[-1] == (1000, 1000)  # PerSAM-F's 1000 steps, to the end
    assert all(t == 1000 for _, t in fitting) and fitting == sorted(fitting)
    assert labels[-1] == "Propagating: fitting PerSAM-F"
    assert window.status.job_label.text() == "Propagating"  # back to the photos once they come
    window.albums.saver.flush()


def test_persam_fits_nothing_and_reports_no_fitting(make_window, album_dir, qtbot):
    window = _with_a_reference(make_window, album_dir, qtbot)
    fitting = []
    window.jobs.fit_progressed.connect(lambda *a: fitting.append(a))
    window.side.set_method("persam")  # PerSAM-F is the default
    with qtbot.waitSignal(window.jobs.finished, timeout=120000):
        window.side.propagate_button.click()
    assert fitting == []
    window.albums.saver.flush()


