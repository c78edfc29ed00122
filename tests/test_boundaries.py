"""Architecture contracts: the core never imports Qt, the GUI never imports torch."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / "persam_studio"


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def _modules(sub: str) -> list[Path]:
    return sorted((PKG / sub).rglob("*.py"))


@pytest.mark.parametrize("path", _modules("core"), ids=lambda p: str(p.relative_to(PKG)))
def test_core_module_imports_no_qt(path):
    assert not _imports(path) & {"PySide6", "shiboken6", "PyQt5", "PyQt6"}


@pytest.mark.parametrize("path", _modules("gui"), ids=lambda p: str(p.relative_to(PKG)))
def test_gui_module_imports_no_torch(path):
    assert not _imports(path) & {"torch", "torchvision", "segment_anything"}


def test_core_works_with_qt_unimportable(tmp_path):
    """Import every core module in a process where PySide6 cannot be imported."""
    blocker = tmp_path / "PySide6"
    blocker.mkdir()
    (blocker / "__init__.py").write_text("raise ImportError('Qt is not allowed in persam_studio.core')\n")
    modules = [
        "persam_studio.core." + ".".join(p.relative_to(PKG / "core").with_suffix("").parts)
        for p in _modules("core")
        if p.name != "__init__.py"
    ]
    code = "import importlib, sys\nfor m in sys.argv[1:]:\n    importlib.import_module(m)\nprint('ok')\n"
    env_path = f"{tmp_path}"
    proc = subprocess.run(
        [sys.executable, "-c", code, *modules],
        capture_output=True, text=True, env={"PYTHONPATH": env_path, "PATH": "/usr/bin:/bin"},
    )
    assert proc.returncode == 0, proc.stderr[-2000:]


def _lint_imports(root: Path) -> subprocess.CompletedProcess:
    exe = Path(sys.executable).with_name("lint-imports")
    return subprocess.run(
        [str(exe), "--no-cache", str(root / "pyproject.toml")],
        cwd=root, capture_output=True, text=True, env={"PYTHONPATH": str(root), "PATH": "/usr/bin:/bin"},
    )


def test_import_contracts_hold():
    """pyproject.toml's import-linter contracts (layers, no Qt in core, no cycles) hold."""
    proc = _lint_imports(PKG.parent)
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert "0 broken" in proc.stdout


def test_import_contracts_catch_a_reintroduced_cycle(tmp_path):
    """The contracts are not vacuous: the old engine <-> cache circle breaks them."""
    import shutil

    shutil.copytree(PKG, tmp_path / "persam_studio", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(PKG.parent / "pyproject.toml", tmp_path / "pyproject.toml")
    cache = tmp_path / "persam_studio" / "core" / "segment" / "cache.py"
    cache.write_text(cache.read_text() + "\nfrom persam_studio.core.segment.engine import Engine  # noqa\n")
    proc = _lint_imports(tmp_path)
    assert proc.returncode != 0
    assert "No cycles are allowed in persam_studio.core.segment" in proc.stdout


def test_core_public_names_load_lazily_without_torch():
    """``persam_studio.core``'s public names all resolve; importing it loads no torch, and nothing loads Ray."""
    code = (
        "import sys, persam_studio.core as c\n"
        "assert 'torch' not in sys.modules, 'import persam_studio.core loaded torch'\n"
        "missing = [n for n in c.__all__ if getattr(c, n, None) is None]\n"
        "assert not missing, missing\n"
        # The cluster extra is optional: the runner and the commands import without Ray.
        "import persam_studio.core.jobs.ray_runner, persam_studio.cli\n"
        "persam_studio.cli.build_parser()\n"
        "assert 'ray' not in sys.modules, 'Ray was imported without --ray'\n"
        "print(len(c.__all__))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert int(proc.stdout) >= 30

