"""Shared fixtures: tiny random SAM models, shared data, isolated dirs."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
DATA = SHARED / "data"


def shared_data(*parts: str) -> Path:
    """Path under ../shared/data, or skip the test with a reason."""
    path = DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"shared data not available: {path}")
    return path


@pytest.fixture(autouse=True)
def _isolated_dirs(tmp_path_factory, monkeypatch):
    """Never touch the user's real cache, data or settings from a test."""
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("PERSAM_CACHE_DIR", str(home / "cache"))
    monkeypatch.setenv("PERSAM_DATA_DIR", str(home / "data"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / "config"))
    monkeypatch.delenv("PERSAM_CHECKPOINT", raising=False)


@pytest.fixture(scope="session")
def tiny_sam():
    """A test-sized SAM (tiny ViT encoder, official decoder), random weights."""
    from persam_studio.core.models.sam_build import random_sam

    return random_sam("tiny", seed=0)


@pytest.fixture(scope="session")
def tiny_ckpt(tmp_path_factory, tiny_sam) -> Path:
    """The tiny SAM saved as a checkpoint file, for the command line."""
    import torch

    path = tmp_path_factory.mktemp("ckpt") / "tiny_sam.pth"
    torch.save(tiny_sam.state_dict(), path)
    return path


@pytest.fixture()
def tiny_engine(tiny_sam):
    """An Engine over the tiny SAM with no cache."""
    from persam_studio.core.segment.engine import Engine

    return Engine(tiny_sam, model_key="tiny-test")


@pytest.fixture(scope="session")
def rgb_image() -> np.ndarray:
    """A 300x400 uint8 RGB test image with structure (a disc on a gradient)."""
    h, w = 300, 400
    yy, xx = np.mgrid[0:h, 0:w]
    img = np.zeros((h, w, 3), np.uint8)
    img[..., 0] = (xx * 255 // w).astype(np.uint8)
    img[..., 1] = (yy * 255 // h).astype(np.uint8)
    disc = (xx - 250) ** 2 + (yy - 140) ** 2 < 60**2
    img[disc] = (250, 40, 30)
    return img
