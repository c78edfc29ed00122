"""A desktop app: icon, desktop entry, Help > About, tooltips (issue 12, item 6)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import QAbstractButton, QAbstractSlider, QComboBox, QLineEdit, QScrollBar, QToolBar

import persam_studio
from persam_studio.gui.backend import EngineInfo, ModelChoice

ROOT = Path(__file__).resolve().parents[2]


def _window(qtbot, settings, info: EngineInfo | None = None):
    from persam_studio.gui.main_window import MainWindow

    info = info or EngineInfo("vit_t", "cpu", "/models/mobile_sam.pt", "/cache/embeddings")
    window = MainWindow(settings, engine_factory=lambda choice: (None, info))
    qtbot.addWidget(window)
    with qtbot.waitSignal(window.model.engine_ready, timeout=20000):
        window.show()
    return window


def test_the_window_and_the_app_have_the_icon_at_every_size(qtbot, settings):
    from persam_studio.gui.app import create_application
    from persam_studio.gui.icon import ICON_SIZES

    window = _window(qtbot, settings)
    icon = window.windowIcon()
    assert not icon.isNull()
    assert {s.width() for s in icon.availableSizes()} >= set(ICON_SIZES)
    assert not create_application().windowIcon().isNull()
    # The taskbar's 16 px icon is drawn, not blank: some pixels are opaque.
    small = icon.pixmap(16, 16).toImage()
    assert any(small.pixelColor(x, 8).alpha() == 255 for x in range(16))


def test_about_shows_version_model_device_and_paths(qtbot, settings, album_dir):
    from persam_studio.gui.dialogs.about import AboutDialog

    window = _window(qtbot, settings)
    window.open_paths([album_dir])
    window.actions_.about.trigger()
    dialog = window.about_dialog
    assert isinstance(dialog, AboutDialog) and dialog.isVisible()
    assert not dialog.isModal()  # it never blocks the app (nor this test)
    text = dialog.text()
    for expected in (persam_studio.__version__, "vit_t", "cpu", "/models/mobile_sam.pt", "/cache/embeddings",
                     str(album_dir)):
        assert expected in text
    dialog.close()


def test_about_before_the_model_loads_says_what_settings_ask_for(tmp_path):
    from persam_studio.gui.dialogs.about import NOT_LOADED, about_info

    about = about_info(None, ModelChoice(device="cuda", cache_dir=str(tmp_path)), None)
    assert about.version == persam_studio.__version__
    assert NOT_LOADED in about.model_type and NOT_LOADED in about.checkpoint
    assert about.device == "cuda" and about.cache_dir == str(tmp_path) and about.album == "none open"


def test_every_toolbar_action_says_what_it_does_and_its_keys(qtbot, settings):
    window = _window(qtbot, settings)
    (toolbar,) = window.findChildren(QToolBar)
    actions = [a for a in toolbar.actions() if not a.isSeparator()]
    assert len(actions) >= 10
    for action in actions:
        tip, text = action.toolTip(), action.text().replace("&", "")
        assert tip and tip != text and not tip.startswith(text), text
        keys = action.shortcut().toString(QKeySequence.SequenceFormat.NativeText)
        if keys:
            assert keys in tip, (text, tip)
    # Menu-only actions are described too (a toolbar may show them later).
    for action in vars(window.actions_).values():
        if isinstance(action, QAction):
            assert action.toolTip() != action.text().replace("&", ""), action.text()


def test_every_control_of_the_side_panel_and_status_bar_has_a_tooltip(qtbot, settings):
    window = _window(qtbot, settings)
    controls = [w for parent in (window.side, window.status)
                for kind in (QAbstractButton, QAbstractSlider, QComboBox, QLineEdit)
                for w in parent.findChildren(kind) if not isinstance(w, QScrollBar)]  # a combo's popup
    assert len(controls) >= 9
    for control in controls:
        label = control.text() if hasattr(control, "text") else ""
        assert control.toolTip() and control.toolTip() != label, (type(control).__name__, label)
    assert window.actions_.keys(window.actions_.use_reference) in window.side.use_button.toolTip()


def test_the_desktop_entry_is_valid_and_launches_the_app():
    entry = (ROOT / "resources" / "persam-studio.desktop").read_text()
    assert "Exec=persam-studio %F" in entry and "Icon=persam-studio" in entry
    assert "Categories=Graphics;Photography;" in entry and "image/jpeg;" in entry
    validate = shutil.which("desktop-file-validate")
    if validate is None:
        pytest.skip("desktop-file-validate not installed (desktop-file-utils)")
    proc = subprocess.run([validate, str(ROOT / "resources" / "persam-studio.desktop")], capture_output=True, text=True)
    assert proc.returncode == 0 and not proc.stdout.strip(), proc.stdout


@pytest.mark.slow
def test_a_wheel_install_finds_the_icon(tmp_path):
    """Build the wheel from a copy of the sources, install it elsewhere, load the icon from there."""
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(ROOT / "persam_studio", src / "persam_studio", symlinks=True, ignore=ignore)
    shutil.copytree(ROOT / "resources", src / "resources", ignore=ignore)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", str(tmp_path / "dist"), str(src)],
                   check=True, capture_output=True)
    (wheel,) = (tmp_path / "dist").glob("*.whl")
    target = tmp_path / "site"
    subprocess.run([*pip, "install", "--no-deps", "--target", str(target), str(wheel)], check=True, capture_output=True)
    code = (
        "from PySide6.QtGui import QGuiApplication; app = QGuiApplication([]); "
        "from persam_studio.gui.icon import app_icon, resource_path; "
        "print(resource_path('persam-studio.desktop').is_file(), not app_icon().isNull(), resource_path())"
    )
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen", PYTHONPATH=str(target))
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    found, icon_ok, where = out.stdout.split()
    assert found == "True" and icon_ok == "True" and where.startswith(str(target))
