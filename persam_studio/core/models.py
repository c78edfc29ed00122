"""Model registry, checkpoint discovery, devices and fingerprints.

* :data:`KNOWN_MODELS` lists the official checkpoints (SAM ViT-H/L/B from Meta,
  MobileSAM's ``vit_t``) with their download address and SHA-256.
* :func:`find_checkpoint` looks, in order, at ``--checkpoint``, the
  ``PERSAM_CHECKPOINT`` variable, the project's ``checkpoints/`` folders and the
  user data folder; with several files it prefers the fastest model on a CPU.
* :func:`file_fingerprint` / :func:`model_key` identify a checkpoint in cache keys.

Loading (:func:`load_model`, :func:`infer_model_type`) lives in
:mod:`persam_studio.core.checkpoint_load` and downloading (:func:`download`) in
:mod:`persam_studio.core.download`; both are re-exported here, so
``from persam_studio.core.models import load_model, download`` keeps working.
Those modules read this module's registry and folder helpers at call time
(``models.KNOWN_MODELS``, ``models._source_checkpoints_dir``), so there is one
place to change or patch them.

Every user-caused failure is a :class:`CheckpointError` or
:class:`DownloadError` with a one-line message naming the file. torch is
imported only by the functions that need it, so discovery and download are
usable (and ``--help`` is fast) without loading torch.
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
_NO_CHECKPOINT_HINT = "run 'persam-studio download {t}' or pass --checkpoint PATH"

# Modules that register non-ViT encoders with sam_build.register_encoder when
# imported; tried in order the first time such a model type is needed.
_ENCODER_MODULES: dict[str, tuple[str, ...]] = {
    "vit_t": ("persam_studio.core.tinyvit", "persam_studio.core.tiny_vit",
              "persam_studio.core.mobile_sam", "persam_studio.core.mobilesam"),
}

# --------------------------------------------------------------------------- discovery


def user_data_dir() -> Path:
    """Per-user data folder (``PERSAM_DATA_DIR``, else the platform's)."""
    env = os.environ.get("PERSAM_DATA_DIR")
    if env:
        return Path(env).expanduser()
    import platformdirs

    return Path(platformdirs.user_data_dir("persam-studio", appauthor=False))


def _source_checkpoints_dir() -> Path | None:
    """``checkpoints/`` at the repository root when running from a source checkout."""
    import persam_studio

    folder = Path(persam_studio.__file__).resolve().parents[1] / "checkpoints"
    return folder if folder.is_dir() else None


def checkpoint_dirs() -> list[Path]:
    """Folders searched for checkpoints, in order (duplicates removed)."""
    source = _source_checkpoints_dir()
    folders = ([source] if source else []) + [Path.cwd() / "checkpoints", user_data_dir() / "checkpoints"]
    seen: set[str] = set()
    unique = []
    for folder in folders:
        key = os.path.normcase(os.path.abspath(folder))
        if key not in seen:
            seen.add(key)
            unique.append(folder)
    return unique


def _candidates(folder: Path) -> list[Path]:
    """Checkpoint files in ``folder``; hidden files (``.x.part``) are skipped."""
    try:
        entries = sorted(folder.iterdir())
    except OSError:
        return []
    return [p for p in entries
            if p.suffix.lower() in CHECKPOINT_SUFFIXES and not p.name.startswith(".") and p.is_file()]


_type_memo: dict[tuple, str | None] = {}


def checkpoint_type(path: str | Path) -> str | None:
    """The model type of a checkpoint file, from its name or a cheap look inside.

    Known official file names answer at once; other zip-format files are
    memory-mapped and their tensor shapes read (no weights are loaded).
    Returns None when the type cannot be told cheaply.
    """
    path = Path(path)
    for info in KNOWN_MODELS.values():
        if path.name == info.filename:
            return info.name
    try:
        st = path.stat()
    except OSError:
        return None
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _type_memo:
        from persam_studio.core.checkpoint_load import _read_checkpoint

        try:
            if not zipfile.is_zipfile(path):
                raise CheckpointError(path, "not a zip-format checkpoint")
            _type_memo[key] = infer_model_type(_read_checkpoint(path))
        except (CheckpointError, OSError):
            _type_memo[key] = None
    return _type_memo[key]


def _speed_rank(model_type: str | None) -> int:
    if model_type in KNOWN_MODELS:
        return KNOWN_MODELS[model_type].cpu_speed_rank
    return len(KNOWN_MODELS) + (0 if model_type else 1)


def _pick(files: list[Path], model_type: str | None) -> Path | None:
    """The file of ``model_type`` among ``files``, else the fastest on a CPU."""
    if not files:
        return None
    if model_type:
        known = KNOWN_MODELS.get(model_type)
        by_name = [f for f in files if known and f.name == known.filename]
        return (by_name or [f for f in files if checkpoint_type(f) == model_type] or [None])[0]
    # Unknown or unreadable files still count (last): loading one gives a clear error.
    return min(files, key=lambda f: (_speed_rank(checkpoint_type(f)), f.name))


def _explicit(path: str | Path, model_type: str | None, origin: str = "") -> Path:
    path = Path(path).expanduser()
    if path.is_dir():
        chosen = _pick(_candidates(path), model_type)
        if chosen is None:
            what = f"{model_type} checkpoint" if model_type else "checkpoint (.pth/.pt)"
            raise CheckpointError(path, f"no {what} in this folder{origin}")
        return chosen
    if not path.exists():
        raise CheckpointError(path, f"not found{origin}")
    return path


def find_checkpoint(explicit: str | Path | None = None, model_type: str | None = None) -> Path | None:
    """The checkpoint to use, or None when there is none.

    Order: ``explicit`` (``--checkpoint``, a file or a folder), the
    ``PERSAM_CHECKPOINT`` variable, then :func:`checkpoint_dirs`. Within a
    folder, the file of ``model_type`` (by known name, else by its shapes);
    with no ``model_type``, the fastest on a CPU (vit_t, vit_b, vit_l, vit_h).

    Raises:
        CheckpointError: ``explicit`` or ``PERSAM_CHECKPOINT`` names a missing path.
    """
    if explicit:
        return _explicit(explicit, model_type)
    env = os.environ.get("PERSAM_CHECKPOINT")
    if env:
        return _explicit(env, model_type, " (set in PERSAM_CHECKPOINT)")
    for folder in checkpoint_dirs():
        chosen = _pick(_candidates(folder), model_type)
        if chosen is not None:
            return chosen
    return None


def require_checkpoint(explicit: str | Path | None = None, model_type: str | None = None) -> Path:
    """Like :func:`find_checkpoint` but raises a one-line CheckpointError when none is found."""
    path = find_checkpoint(explicit, model_type)
    if path is None:
        what = f"{model_type} checkpoint" if model_type else "SAM checkpoint"
        raise CheckpointError(None, f"no {what} found; " + _NO_CHECKPOINT_HINT.format(t=model_type or "vit_b"))
    return path


def found_checkpoints() -> list[tuple[Path, str | None]]:
    """Every checkpoint file discoverable now, in search order, with its type if known."""
    files: list[Path] = []
    env = Path(os.environ["PERSAM_CHECKPOINT"]).expanduser() if os.environ.get("PERSAM_CHECKPOINT") else None
    if env is not None:
        files += _candidates(env) if env.is_dir() else [env] if env.is_file() else []
    for folder in checkpoint_dirs():
        files += _candidates(folder)
    seen: set[str] = set()
    found = []
    for f in files:
        key = os.path.normcase(os.path.abspath(f))
        if key not in seen:
            seen.add(key)
            found.append((f, checkpoint_type(f)))
    return found



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



# --------------------------------------------------------------------------- re-exports

# Imported last: these modules import this one lazily (inside their functions),
# so either side may be imported first without a cycle.
from persam_studio.core.checkpoint_load import (  # noqa: E402
    LoadedModel,
    infer_model_type,
    load_model,
)
from persam_studio.core.download import default_download_dir, download  # noqa: E402

__all__ = [
    "CHECKPOINT_SUFFIXES",
    "KNOWN_MODELS",
    "LoadedModel",
    "ModelInfo",
    "checkpoint_dirs",
    "checkpoint_type",
    "default_device",
    "default_download_dir",
    "download",
    "file_fingerprint",
    "find_checkpoint",
    "found_checkpoints",
    "infer_model_type",
    "load_model",
    "model_key",
    "module_fingerprint",
    "require_checkpoint",
    "resolve_device",
    "user_data_dir",
]
