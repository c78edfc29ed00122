"""``persam-studio models`` and ``persam-studio download``, in process."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from persam_studio import cli
from persam_studio.core import models
from persam_studio.core.models import registry
from tests.core.test_models import PAYLOAD, closed_port_url, server  # noqa: F401  (fixture)


@pytest.fixture()
def no_repo_checkpoints(tmp_path, monkeypatch):
    """Search only tmp folders: never the developer's real checkpoints/."""
    monkeypatch.setattr(registry, "source_checkpoints_dir", lambda: None)
    monkeypatch.chdir(tmp_path)


def test_models_lists_names_folders_and_choice(no_repo_checkpoints, capsys):
    assert cli.main(["models"]) == 0
    out = capsys.readouterr().out
    for name, info in models.KNOWN_MODELS.items():
        assert name in out and info.filename in out
    assert str(models.user_data_dir() / "checkpoints") in out
    assert "would use: none; run 'persam-studio download vit_b'" in out


def test_models_shows_found_checkpoint(no_repo_checkpoints, capsys):
    folder = models.user_data_dir() / "checkpoints"
    folder.mkdir(parents=True)
    (folder / "sam_vit_l_0b3195.pth").write_bytes(b"w")
    assert cli.main(["models"]) == 0
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if line.startswith("vit_l"))
    assert row.endswith(str(folder / "sam_vit_l_0b3195.pth"))
    assert next(line for line in out.splitlines() if line.startswith("vit_b")).endswith("-")
    assert f"would use: {folder / 'sam_vit_l_0b3195.pth'} (vit_l)" in out


def test_models_with_missing_explicit_checkpoint_fails_cleanly(no_repo_checkpoints, tmp_path, capsys):
    assert cli.main(["models", "--checkpoint", str(tmp_path / "gone.pth")]) == 1
    err = capsys.readouterr().err
    assert err.strip() == f"error: {tmp_path / 'gone.pth'}: not found"


def test_download_offline_is_one_line_error(no_repo_checkpoints, tmp_path, monkeypatch, capsys):
    info = models.KNOWN_MODELS["vit_b"]
    monkeypatch.setitem(models.KNOWN_MODELS, "vit_b", replace(info, url=closed_port_url()))
    assert cli.main(["download", "vit_b", "--dest", str(tmp_path / "w")]) == 1
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "cannot reach 127.0.0.1" in lines[0]
    assert "Traceback" not in captured.err and captured.out == ""
    assert not (tmp_path / "w" / info.filename).exists()


def test_download_prints_the_path(no_repo_checkpoints, server, tmp_path, monkeypatch, capsys):  # noqa: F811
    info = replace(models.KNOWN_MODELS["vit_t"], url=server.info.url, sha256=server.info.sha256,
                   size_bytes=len(PAYLOAD))
    monkeypatch.setitem(models.KNOWN_MODELS, "vit_t", info)
    assert cli.main(["download", "vit_t", "--dest", str(tmp_path)]) == 0
    captured = capsys.readouterr()
    path = Path(captured.out.strip())
    assert path == tmp_path / "mobile_sam.pt" and path.read_bytes() == PAYLOAD
    assert "vit_t MB" in captured.err and "warning" not in captured.err  # the final progress line


def test_download_without_known_hash_warns(no_repo_checkpoints, server, tmp_path, monkeypatch, capsys):  # noqa: F811
    info = replace(models.KNOWN_MODELS["vit_t"], url=server.info.url, sha256=None)
    monkeypatch.setitem(models.KNOWN_MODELS, "vit_t", info)
    assert cli.main(["download", "vit_t", "--dest", str(tmp_path)]) == 0
    assert "not checksum-verified" in capsys.readouterr().err


def test_download_unknown_model_is_usage_error(capsys):
    with pytest.raises(SystemExit) as info:
        cli.main(["download", "vit_z"])
    assert info.value.code == 2


def test_download_a_subject_model_md5_checked_where_select_finds_it(no_repo_checkpoints, server, monkeypatch,
                                                                     capsys):  # noqa: F811
    import hashlib

    from persam_studio.core.models import subject

    monkeypatch.delenv(subject.SUBJECT_MODEL_ENV, raising=False)
    entry = subject.CATALOGUE["u2netp"]
    file = replace(entry.file, url=server.info.url, md5=hashlib.md5(PAYLOAD).hexdigest(), size_bytes=len(PAYLOAD))
    monkeypatch.setitem(subject.CATALOGUE, "u2netp", replace(entry, file=file))
    assert cli.main(["download", "u2netp"]) == 0
    captured = capsys.readouterr()
    path = Path(captured.out.strip())
    assert path.name == "u2netp.onnx" and path.read_bytes() == PAYLOAD and "warning" not in captured.err
    assert subject.find_subject_model("u2netp") == path == subject.find_subject_model()
    # A corrupted download is refused, and the file is not kept.
    monkeypatch.setitem(subject.CATALOGUE, "u2netp", replace(entry, file=replace(file, md5="0" * 32)))
    path.unlink()
    assert cli.main(["download", "u2netp"]) == 1
    assert "error: " in capsys.readouterr().err and not path.exists()


def test_models_lists_subject_models_and_which_select_would_use(no_repo_checkpoints, monkeypatch, capsys):
    from persam_studio.core.models.subject import CATALOGUE, SUBJECT_MODEL_ENV

    monkeypatch.delenv(SUBJECT_MODEL_ENV, raising=False)
    assert cli.main(["models"]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in CATALOGUE)
    assert "select would use: none (no subject model found; run 'persam-studio download u2netp'" in out
    folder = models.user_data_dir() / "checkpoints"
    folder.mkdir(parents=True)
    (folder / "silueta.onnx").write_bytes(b"w")
    (folder / "isnet-medium.onnx").write_bytes(b"w")
    assert cli.main(["models"]) == 0
    out = capsys.readouterr().out
    assert next(line for line in out.splitlines() if line.startswith("silueta")).endswith(str(folder / "silueta.onnx"))
    assert f"also found: {folder / 'isnet-medium.onnx'}" in out
    assert f"select would use: {folder / 'isnet-medium.onnx'}" in out  # IS-Net before U²-Net
