"""The model registry (a leaf): known checkpoints, folders, devices, fingerprints.

* :data:`KNOWN_MODELS` lists the official checkpoints (SAM ViT-H/L/B from Meta,
  MobileSAM's ``vit_t``) with their download address and SHA-256.
* :func:`checkpoint_dirs` / :func:`user_data_dir`: where checkpoints are looked
  for and downloaded to.
* :func:`file_fingerprint` / :func:`model_key` identify a checkpoint in cache keys.

Loading (:mod:`.checkpoints`), finding (:mod:`.discovery`) and downloading
(:mod:`.download`) import this module, never the other way round; the
package :mod:`persam_studio.core.models` re-exports the public names of all.
torch is imported only by the functions that need it, so discovery and
download are usable (and ``--help`` is fast) without loading torch.
"""

from __future__ import annotations

import hashlib
import os
import re
import threading
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from persam_studio.core.errors import CheckpointError, PersamError


@dataclass(frozen=True)
class ModelInfo:
    """An official checkpoint: where to get it and how to recognise it.

    ``sha256`` is the full hex digest of the file (None if unknown: a download
    is then not verified). ``md5`` is used instead where a publisher gives
    only that (rembg's subject models); SHA-256 wins when both are set.
    ``size_bytes`` is for display. ``cpu_speed_rank``: lower is faster on a CPU.
    """

    name: str
    filename: str
    url: str
    sha256: str | None
    size_bytes: int
    description: str
    cpu_speed_rank: int
    md5: str | None = None


_SAM_URL = "https://dl.fbaipublicfiles.com/segment_anything/"

# SHA-256 values as published alongside these files by several independent
# projects (e.g. micro-sam's model registry). The 6 hex digits in Meta's file
# names are the start of the file's MD5, not of its SHA-256.
KNOWN_MODELS: dict[str, ModelInfo] = {
    "vit_t": ModelInfo(
        "vit_t", "mobile_sam.pt",
        "https://github.com/ChaoningZhang/MobileSAM/raw/master/weights/mobile_sam.pt",
        "6dbb90523a35330fedd7f1d3dfc66f995213d81b29a5ca8108dbcdd4e37d6c2f", 40_728_226,
        "MobileSAM (TinyViT encoder): fastest on a CPU, slightly coarser masks", 0),
    "vit_b": ModelInfo(
        "vit_b", "sam_vit_b_01ec64.pth", _SAM_URL + "sam_vit_b_01ec64.pth",
        "ec2df62732614e57411cdcf32a23ffdf28910380d03139ee0f4fcbe91eb8c912", 375_042_383,
        "SAM ViT-B: good masks, the fastest official SAM", 1),
    "vit_l": ModelInfo(
        "vit_l", "sam_vit_l_0b3195.pth", _SAM_URL + "sam_vit_l_0b3195.pth",
        "3adcc4315b642a4d2101128f611684e8734c41232a17c648ed1693702a49a622", 1_249_524_607,
        "SAM ViT-L: better masks, slower than ViT-B", 2),
    "vit_h": ModelInfo(
        "vit_h", "sam_vit_h_4b8939.pth", _SAM_URL + "sam_vit_h_4b8939.pth",
        "a7bf3b02f3ebf1267aba913ff637d9a2d5c33d3173bb679e46d9f338c26f262e", 2_564_550_879,
        "SAM ViT-H: best masks, slowest (best with a GPU)", 3),
}

CHECKPOINT_SUFFIXES = (".pth", ".pt")

# --------------------------------------------------------------------------- discovery


def user_data_dir() -> Path:
    """Per-user data folder (``PERSAM_DATA_DIR``, else the platform's)."""
    env = os.environ.get("PERSAM_DATA_DIR")
    if env:
        return Path(env).expanduser()
    import platformdirs

    return Path(platformdirs.user_data_dir("persam-studio", appauthor=False))


def source_checkpoints_dir() -> Path | None:
    """``checkpoints/`` at the repository root when running from a source checkout."""
    import persam_studio

    folder = Path(persam_studio.__file__).resolve().parents[1] / "checkpoints"
    return folder if folder.is_dir() else None


def checkpoint_dirs() -> list[Path]:
    """Folders searched for checkpoints, in order (duplicates removed)."""
    source = source_checkpoints_dir()
    folders = ([source] if source else []) + [Path.cwd() / "checkpoints", user_data_dir() / "checkpoints"]
    seen: set[str] = set()
    unique = []
    for folder in folders:
        key = os.path.normcase(os.path.abspath(folder))
        if key not in seen:
            seen.add(key)
            unique.append(folder)
    return unique


# --------------------------------------------------------------------------- devices


def default_device() -> str:
    """``"cuda"`` when a CUDA GPU is usable, else ``"cpu"``."""
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def resolve_device(device: str | None) -> str:
    """Check a device name (``cpu``, ``cuda``, ``cuda:1``, ``mps``); None means the default.

    Raises:
        PersamError: unknown device, or one this machine does not have.
    """
    if not device:
        return default_device()
    import torch

    try:
        kind = torch.device(device).type
    except (RuntimeError, ValueError):
        raise PersamError(None, f"unknown device {device!r}; use cpu or cuda") from None
    if kind == "cuda" and not torch.cuda.is_available():
        raise PersamError(None, f"--device {device} was given but CUDA is not available on this machine; use --device cpu")
    if kind == "mps" and not torch.backends.mps.is_available():
        raise PersamError(None, f"--device {device} was given but Apple MPS is not available; use --device cpu")
    return device



# --------------------------------------------------------------------------- fingerprints

_FP_CHUNK = 1 << 20
_FP_SAMPLES = 8
_fp_memo: dict[tuple, str] = {}
_fp_lock = threading.Lock()


def file_fingerprint(path: str | Path) -> str:
    """A fast content fingerprint of a checkpoint file: 32 hex digits.

    A change detector for cache keys, not a security hash: it reads the size,
    the first and last MiB and 8 evenly spaced MiB (about 10 MiB whatever the
    file size, so a 2.5 GB vit_h costs milliseconds), plus, for zip-format
    files (every torch.save since 1.6), the CRC-32 and size of every stored
    tensor from the zip directory, so a change to any tensor changes the
    fingerprint. Memoised per (path, size, mtime, inode).

    Raises:
        CheckpointError: the file cannot be read.
    """
    path = Path(path)
    try:
        st = path.stat()
        memo_key = (str(path.resolve()), st.st_size, st.st_mtime_ns, st.st_ino)
        with _fp_lock:
            if memo_key in _fp_memo:
                return _fp_memo[memo_key]
        h = hashlib.blake2b(digest_size=16, person=b"persam-ckpt-v1")
        size = st.st_size
        h.update(f"size={size};".encode())
        span = max(size - _FP_CHUNK, 0)
        offsets = sorted({0, span, *(span * i // (_FP_SAMPLES + 1) for i in range(1, _FP_SAMPLES + 1))})
        with open(path, "rb") as fh:
            for offset in offsets:
                fh.seek(offset)
                h.update(fh.read(_FP_CHUNK))
        if zipfile.is_zipfile(path):
            try:
                with zipfile.ZipFile(path) as zf:
                    for info in zf.infolist():
                        h.update(f"{info.filename}|{info.CRC}|{info.file_size};".encode())
            except zipfile.BadZipFile:
                pass
    except OSError as exc:
        raise CheckpointError(path, f"cannot read ({exc.strerror or exc})") from None
    digest = h.hexdigest()
    with _fp_lock:
        _fp_memo[memo_key] = digest
    return digest


def model_key(model_type: str, fingerprint: str) -> str:
    """``"<type>-<16 hex>"``: identifies a model in cache keys and file names."""
    safe_type = re.sub(r"[^A-Za-z0-9_.-]", "_", model_type)
    return f"{safe_type}-{fingerprint[:16]}"


def module_fingerprint(sam: Any) -> str:
    """Hash of every parameter and buffer of an in-memory model: 32 hex digits.

    For models that do not come from a file (random test and bench models).
    Reads all weights (about a second per GB).
    """
    import torch

    h = hashlib.blake2b(digest_size=16, person=b"persam-module-v1")
    for name, tensor in sorted(sam.state_dict().items()):
        if tensor.is_meta:
            raise ValueError(f"{name} is on the meta device; load weights before fingerprinting")
        flat = tensor.detach().to("cpu").contiguous().reshape(-1)
        h.update(f"{name}|{flat.dtype}|{tuple(tensor.shape)};".encode())
        h.update(flat.view(torch.uint8).numpy().tobytes() if flat.numel() else b"")
    return h.hexdigest()
