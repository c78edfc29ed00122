"""Model registry, checkpoint discovery, loading, fingerprints and download.

* :data:`KNOWN_MODELS` lists the official checkpoints (SAM ViT-H/L/B from Meta,
  MobileSAM's ``vit_t``) with their download address and SHA-256.
* :func:`find_checkpoint` looks, in order, at ``--checkpoint``, the
  ``PERSAM_CHECKPOINT`` variable, the project's ``checkpoints/`` folders and the
  user data folder; with several files it prefers the fastest model on a CPU.
* :func:`load_model` memory-maps the file, checks it against the model its
  tensor shapes describe and builds SAM without random initialisation.
* :func:`download` streams to a ``.part`` file, resumes with HTTP ranges,
  verifies the SHA-256 and only then moves the file into place.

Every user-caused failure is a :class:`CheckpointError` or
:class:`DownloadError` with a one-line message naming the file. torch is
imported only by the functions that need it, so discovery and download are
usable (and ``--help`` is fast) without loading torch.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import pickle
import re
import socket
import threading
import urllib.error
import urllib.parse
import urllib.request
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping

from persam_studio.core.errors import Cancelled, CheckpointError, DownloadError, PersamError

if TYPE_CHECKING:  # pragma: no cover
    from segment_anything.modeling import Sam


@dataclass(frozen=True)
class ModelInfo:
    """An official checkpoint: where to get it and how to recognise it.

    ``sha256`` is the full hex digest of the file (None if unknown: a download
    is then not verified). ``size_bytes`` is for display. ``cpu_speed_rank``:
    lower is faster on a CPU.
    """

    name: str
    filename: str
    url: str
    sha256: str | None
    size_bytes: int
    description: str
    cpu_speed_rank: int


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
    "vit_t": ("persam_studio.core.tiny_vit", "persam_studio.core.mobile_sam", "persam_studio.core.mobilesam"),
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


# --------------------------------------------------------------------------- loading


@dataclass(frozen=True, eq=False)
class LoadedModel:
    """A SAM model ready for inference (eval mode, weights frozen).

    ``model_key`` identifies type and checkpoint content for cache keys;
    ``fingerprint`` is :func:`file_fingerprint` of ``path``.
    """

    sam: Sam
    model_type: str
    model_key: str
    path: Path
    fingerprint: str


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


def _read_checkpoint(path: Path) -> Any:
    """``torch.load`` a file as plain weights, memory-mapped when possible.

    A memory map makes loading cost almost nothing up front: pages of the
    file are read when the weights are first used.
    """
    import torch

    try:
        size = path.stat().st_size
        with open(path, "rb") as fh:
            head = fh.read(4)
    except FileNotFoundError:
        raise CheckpointError(path, "not found") from None
    except OSError as exc:
        raise CheckpointError(path, f"cannot read ({exc.strerror or exc})") from None
    if size == 0:
        raise CheckpointError(path, "empty file (interrupted download?)")
    is_zip = zipfile.is_zipfile(path)
    if head.startswith(b"PK") and not is_zip:
        # A zip whose end (the central directory) is missing: cut short.
        raise CheckpointError(path, "truncated or corrupt checkpoint")
    if not is_zip and not head.startswith(b"\x80"):  # legacy torch files are pickles
        raise CheckpointError(path, "not a PyTorch checkpoint file")
    try:
        with warnings.catch_warnings():  # torch's notes on odd files would only add noise to our one line
            warnings.simplefilter("ignore")
            try:
                return torch.load(path, map_location="cpu", weights_only=True, mmap=is_zip)
            except RuntimeError as exc:  # zip files too old for mmap
                if not is_zip or "mmap" not in str(exc):
                    raise
                return torch.load(path, map_location="cpu", weights_only=True)
    except MemoryError:
        raise CheckpointError(path, "not enough memory to load this checkpoint") from None
    except pickle.UnpicklingError:
        raise CheckpointError(path, "not a plain PyTorch state dict (unreadable, or holds Python objects)") from None
    except Exception:  # torch reports damage with many exception types
        raise CheckpointError(path, "truncated or corrupt checkpoint") from None


_PREFIXES = ("module.", "model.", "sam.")
_SAM_KEY = re.compile(r"(^|\.)(image_encoder|mask_decoder)\.")


def _unwrap_state_dict(obj: Any) -> dict[str, Any]:
    """The SAM state dict inside a loaded checkpoint.

    Accepts a plain state dict, training wrappers (``{"model": sd}``,
    ``{"state_dict": sd}``) and ``module.`` / ``model.`` / ``sam.`` key prefixes.
    """
    for _ in range(3):
        if not isinstance(obj, Mapping) or any(_SAM_KEY.search(str(k)) for k in obj):
            break
        inner = next((obj[k] for k in ("model", "state_dict", "model_state", "module") if isinstance(obj.get(k), Mapping)), None)
        if inner is None:
            break
        obj = inner
    if not isinstance(obj, Mapping):
        raise CheckpointError(None, f"not a SAM checkpoint (holds a {type(obj).__name__}, not a state dict)")
    sd = {str(k): v for k, v in obj.items()}
    stripped = True
    while stripped:
        stripped = False
        for prefix in _PREFIXES:
            if sd and all(k.startswith(prefix) for k in sd):
                sd = {k[len(prefix):]: v for k, v in sd.items()}
                stripped = True
    if not any(k.startswith(("image_encoder.", "mask_decoder.")) for k in sd):
        raise CheckpointError(None, "not a SAM checkpoint (no image_encoder/mask_decoder weights)")
    bad = [k for k, v in sd.items() if not hasattr(v, "shape")]
    if bad:
        raise CheckpointError(None, f"not a SAM checkpoint ({bad[0]!r} is not a tensor)")
    return sd


_BLOCK = re.compile(r"image_encoder\.blocks\.(\d+)\.")


def infer_model_type(state_dict: Mapping[str, Any]) -> str:
    """The model type whose image encoder has these tensor shapes.

    ``state_dict`` maps names to tensors (meta tensors do: only ``.shape`` is
    read); wrappers and prefixes are accepted as by :func:`load_model`.
    ViT encoders are told apart by the embedding width of
    ``image_encoder.patch_embed.proj.weight`` (C, 3, 16, 16) and the number of
    blocks, per ``sam_build.SPECS``; MobileSAM's TinyViT (``layers.*``,
    ``patch_embed.seq.*``) is ``"vit_t"``.

    Raises:
        CheckpointError (without a path): not SAM, or an unknown encoder.
    """
    from persam_studio.core.sam_build import SPECS

    sd = _unwrap_state_dict(state_dict)
    if any(k.startswith(("image_encoder.layers.", "image_encoder.patch_embed.seq.")) for k in sd):
        return "vit_t"
    proj = sd.get("image_encoder.patch_embed.proj.weight")
    if proj is None or len(proj.shape) != 4:
        raise CheckpointError(None, "unknown SAM image encoder (no image_encoder.patch_embed weights)")
    width = int(proj.shape[0])
    depth = len({m.group(1) for k in sd if (m := _BLOCK.match(k))})
    for name, spec in SPECS.items():
        if (spec.encoder_embed_dim, spec.encoder_depth) == (width, depth):
            return name
    raise CheckpointError(None, f"unknown SAM image encoder (width {width}, {depth} blocks)")


def _ensure_buildable(model_type: str, path: Path) -> None:
    from persam_studio.core import sam_build

    if model_type in sam_build.model_types():
        return
    import importlib

    for module in _ENCODER_MODULES.get(model_type, ()):
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name != module:
                raise
        if model_type in sam_build.model_types():
            return
    if model_type in _ENCODER_MODULES:
        raise CheckpointError(path, f"{model_type} checkpoints need an image encoder this build does not include")
    known = ", ".join(dict.fromkeys([*KNOWN_MODELS, *(t for t in sam_build.model_types() if t != "tiny")]))
    raise CheckpointError(path, f"unknown model type {model_type!r}; known: {known}")


def _check_fit(path: Path, model_type: str, sd: dict[str, Any], expected: Mapping[str, Any]) -> None:
    """One-line error when ``sd`` does not fit the model's own state dict."""
    missing = sorted(set(expected) - set(sd))
    unexpected = sorted(set(sd) - set(expected))
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing key(s), e.g. {missing[0]}")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected key(s), e.g. {unexpected[0]}")
    wrong = [k for k in expected if k in sd and tuple(sd[k].shape) != tuple(expected[k].shape)]
    if wrong:
        k = wrong[0]
        problems.append(f"{len(wrong)} tensor(s) of the wrong shape, e.g. {k} {tuple(sd[k].shape)} "
                        f"instead of {tuple(expected[k].shape)}")
    if problems:
        raise CheckpointError(path, f"does not fit the {model_type} model: " + "; ".join(problems))


def load_model(path: str | Path, model_type: str | None = None, device: str | None = None) -> LoadedModel:
    """Load a SAM checkpoint for inference.

    The file is memory-mapped (zip format) and the model is built on the
    ``meta`` device and given the checkpoint's tensors directly, so no random
    initialisation runs: start-up costs little more than reading the file.
    ``model_type`` (``--model``) is checked against the tensor shapes; None
    infers it. ``device`` None picks :func:`default_device`. The returned
    model is in eval mode with ``requires_grad`` off (it is never trained).

    Raises:
        CheckpointError: one line naming the file: missing, truncated, not a
            torch file, not SAM, a type that contradicts ``model_type``, or
            missing/unexpected keys.
        PersamError: an unavailable ``device``.
    """
    import torch

    from persam_studio.core import sam_build

    path = Path(path).expanduser()
    device = resolve_device(device)
    try:
        sd = _unwrap_state_dict(_read_checkpoint(path))
        inferred = infer_model_type(sd)
    except CheckpointError as exc:
        raise CheckpointError(path, exc.problem) from None
    if model_type and model_type != inferred:
        _ensure_buildable(model_type, path)  # an unknown --model gets its own message
        raise CheckpointError(path, f"checkpoint is {inferred} but --model {model_type} was given")
    _ensure_buildable(inferred, path)
    sam = sam_build.build_sam(inferred, meta=True)
    expected = sam.state_dict()
    _check_fit(path, inferred, sd, expected)
    # assign=True keeps the checkpoint's dtype; the model computes in its own.
    sd = {k: v.to(expected[k].dtype) if v.is_floating_point() and v.dtype != expected[k].dtype else v
          for k, v in sd.items()}
    try:
        sam.load_state_dict(sd, strict=True, assign=True)
    except RuntimeError as exc:
        raise CheckpointError(path, f"does not fit the {inferred} model ({str(exc).splitlines()[0]})") from None
    _fill_meta_buffers(sam, inferred)
    sam.requires_grad_(False)
    sam = sam.to(torch.device(device)).eval()
    fingerprint = file_fingerprint(path)
    return LoadedModel(sam, inferred, model_key(inferred, fingerprint), path, fingerprint)


def _fill_meta_buffers(sam: Sam, model_type: str) -> None:
    """Give values to tensors the state dict does not carry (non-persistent buffers).

    SAM's ``pixel_mean``/``pixel_std`` are made by a legacy constructor and are
    real already; an encoder may create others (e.g. attention-bias indices) on
    the meta device. Those are copied from a normally built model of the same
    type, which only happens for such encoders.
    """
    from persam_studio.core import sam_build

    left = [n for n, t in sam.named_buffers() if t.is_meta]
    left += [n for n, t in sam.named_parameters() if t.is_meta]  # strict loading makes this empty
    if not left:
        return
    reference = dict(sam_build.build_sam(model_type).named_buffers())
    for name in left:
        owner_name, _, attr = name.rpartition(".")
        owner = sam.get_submodule(owner_name)
        if name not in reference or attr not in owner._buffers:
            raise PersamError(None, f"internal error: {name} has no value after loading a {model_type} checkpoint")
        owner._buffers[attr] = reference[name]


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


# --------------------------------------------------------------------------- download

_CHUNK = 1 << 20
_MAX_ATTEMPTS = 5  # automatic resumes after a dropped connection that made progress
_USER_AGENT = "persam-studio-downloader/1"


class _Interrupted(Exception):
    """The transfer stopped early; the .part file holds what arrived."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def default_download_dir() -> Path:
    """``checkpoints/`` of a source checkout when writable, else the user data folder's."""
    source = _source_checkpoints_dir()
    if source is not None and os.access(source, os.W_OK):
        return source
    return user_data_dir() / "checkpoints"


def download(
    model: str | ModelInfo,
    dest_dir: str | Path | None = None,
    progress: Callable[[int, int], None] | None = None,
    should_cancel: Callable[[], bool] | None = None,
    timeout: float = 30,
) -> Path:
    """Download a checkpoint into ``dest_dir`` and return its path.

    Streams to ``<dest>/.<filename>.part``; an interrupted transfer is resumed
    with an HTTP Range request (automatically, and on the next call). The
    SHA-256 is computed while streaming and the file is moved into place with
    ``os.replace`` only when it matches; with ``sha256=None`` it is not
    verified (the CLI says so). An existing verified file is returned as is.
    ``progress(done_bytes, total_bytes)`` is called after each MiB;
    ``should_cancel()`` is polled as often.

    Raises:
        DownloadError: unknown model, offline, HTTP error, interrupted, a
            checksum mismatch (the partial file is deleted) or a write error.
        Cancelled: ``should_cancel()`` returned True; the ``.part`` file is
            kept so that the next call resumes.
    """
    info = model if isinstance(model, ModelInfo) else KNOWN_MODELS.get(model)
    if info is None:
        raise DownloadError(None, f"unknown model {model!r}; known: {', '.join(KNOWN_MODELS)}")
    dest_dir = Path(dest_dir).expanduser() if dest_dir else default_download_dir()
    final = dest_dir / info.filename
    if final.is_file() and (info.sha256 is None or _sha256_of(final, should_cancel) == info.sha256):
        return final
    try:
        dest_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DownloadError(dest_dir, f"cannot create folder ({exc.strerror or exc})") from None
    part = dest_dir / f".{info.filename}.part"
    for attempt in range(1, _MAX_ATTEMPTS + 1):
        before = _size(part)
        try:
            digest = _fetch(info, part, progress, should_cancel, timeout)
            break
        except _Interrupted as exc:
            if attempt < _MAX_ATTEMPTS and _size(part) > before:
                continue  # the connection dropped after some progress: resume
            raise DownloadError(info.url, f"download interrupted at {_size(part) / 1e6:.1f} MB ({exc.reason}); "
                                "run it again to resume") from None
    if info.sha256 and digest != info.sha256:
        part.unlink(missing_ok=True)
        raise DownloadError(info.filename, f"checksum mismatch (expected SHA-256 {info.sha256[:12]}..., "
                            f"got {digest[:12]}...); the download was deleted, try again")
    try:
        os.replace(part, final)
        _fsync_dir(dest_dir)
    except OSError as exc:
        raise DownloadError(final, f"cannot move the download into place ({exc.strerror or exc})") from None
    return final


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _sha256_of(path: Path, should_cancel: Callable[[], bool] | None, h: Any = None) -> str:
    h = h or hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            if should_cancel and should_cancel():
                raise Cancelled()
            h.update(chunk)
    return h.hexdigest()


def _fetch(info: ModelInfo, part: Path, progress: Callable[[int, int], None] | None,
           should_cancel: Callable[[], bool] | None, timeout: float) -> str:
    """One HTTP request; appends to ``part`` and returns the SHA-256 of the whole part."""
    have = _size(part)
    hasher = hashlib.sha256()
    if have:
        _sha256_of(part, should_cancel, hasher)  # the hash must cover the bytes already there
    headers = {"User-Agent": _USER_AGENT, "Accept-Encoding": "identity"}
    if have:
        headers["Range"] = f"bytes={have}-"
    try:
        response = urllib.request.urlopen(urllib.request.Request(info.url, headers=headers), timeout=timeout)
    except urllib.error.HTTPError as exc:
        exc.close()
        if exc.code == 416 and have:  # nothing past our end: the part is stale; start over
            part.unlink(missing_ok=True)
            return _fetch(info, part, progress, should_cancel, timeout)
        raise DownloadError(info.url, f"HTTP error {exc.code} {exc.reason}") from None
    except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
        raise DownloadError(info.url, _unreachable(info.url, getattr(exc, "reason", exc), timeout)) from None
    with response:
        resumed = have > 0 and response.status == 206 and _range_start(response.headers.get("Content-Range")) == have
        if not resumed:  # a full body (server ignored Range) or a range we did not ask for
            have, hasher = 0, hashlib.sha256()
        length = response.headers.get("Content-Length")
        total = have + int(length) if length and length.isdigit() else info.size_bytes
        done = have
        if progress:
            progress(done, total)
        try:
            with open(part, "ab" if resumed else "wb") as fh:
                while True:
                    if should_cancel and should_cancel():
                        raise Cancelled()
                    try:
                        chunk = response.read(_CHUNK)
                    except (OSError, http.client.HTTPException) as exc:
                        raise _Interrupted(str(exc) or type(exc).__name__) from None
                    if not chunk:
                        break
                    fh.write(chunk)
                    hasher.update(chunk)
                    done += len(chunk)
                    if progress:
                        progress(done, total)
                fh.flush()
                os.fsync(fh.fileno())
        except OSError as exc:
            raise DownloadError(part, f"cannot write ({exc.strerror or exc})") from None
    if length and length.isdigit() and done < total:
        raise _Interrupted(f"connection closed after {done} of {total} bytes")
    return hasher.hexdigest()


def _range_start(content_range: str | None) -> int | None:
    match = re.match(r"bytes (\d+)-", content_range or "")
    return int(match.group(1)) if match else None


def _unreachable(url: str, reason: Any, timeout: float) -> str:
    host = urllib.parse.urlsplit(url).hostname or url
    if isinstance(reason, socket.gaierror):
        return f"cannot reach {host} (offline? the name does not resolve)"
    if isinstance(reason, (TimeoutError, socket.timeout)):
        return f"cannot reach {host}: no answer within {timeout:g} s (offline?)"
    if isinstance(reason, ConnectionRefusedError):
        return f"cannot reach {host}: connection refused"
    return f"cannot reach {host} (offline?): {reason}"


def _fsync_dir(path: Path) -> None:
    # Makes the rename durable; not supported everywhere (Windows).
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
