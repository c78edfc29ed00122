"""Loading a SAM checkpoint: read, unwrap, identify, build on ``meta``, assign.

* :func:`load_model` memory-maps the file, checks it against the model its
  tensor shapes describe and builds SAM without random initialisation.
* :func:`infer_model_type` tells the model type from tensor shapes alone;
  :func:`checkpoint_type` from a file's name or a cheap look inside.

Every user-caused failure is a one-line :class:`CheckpointError` naming the
file; torch (and :mod:`.sam_build`) is imported only when a file is read.
"""

from __future__ import annotations

import pickle
import re
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

from persam_studio.core.errors import CheckpointError, PersamError
from persam_studio.core.models import registry

if TYPE_CHECKING:  # pragma: no cover
    from segment_anything.modeling import Sam


@dataclass(frozen=True, eq=False)
class LoadedModel:
    """A SAM model ready for inference (eval mode, weights frozen).

    ``model_key`` identifies type and checkpoint content for cache keys;
    ``fingerprint`` is :func:`~persam_studio.core.models.registry.file_fingerprint` of ``path``.
    """

    sam: Sam
    model_type: str
    model_key: str
    path: Path
    fingerprint: str



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
    from persam_studio.core.models.sam_build import SPECS

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
    from persam_studio.core.models import sam_build

    if model_type in sam_build.model_types():
        return
    known = ", ".join(dict.fromkeys([*registry.KNOWN_MODELS, *(t for t in sam_build.model_types() if t != "tiny")]))
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
    infers it. ``device`` None picks
    :func:`~persam_studio.core.models.registry.default_device`. The returned
    model is in eval mode with ``requires_grad`` off (it is never trained).

    Raises:
        CheckpointError: one line naming the file: missing, truncated, not a
            torch file, not SAM, a type that contradicts ``model_type``, or
            missing/unexpected keys.
        PersamError: an unavailable ``device``.
    """
    import torch

    from persam_studio.core.models import sam_build

    path = Path(path).expanduser()
    device = registry.resolve_device(device)
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
    fingerprint = registry.file_fingerprint(path)
    return LoadedModel(sam, inferred, registry.model_key(inferred, fingerprint), path, fingerprint)


def _fill_meta_buffers(sam: Sam, model_type: str) -> None:
    """Give values to tensors the state dict does not carry (non-persistent buffers).

    SAM's ``pixel_mean``/``pixel_std`` are made by a legacy constructor and are
    real already; an encoder may create others (e.g. attention-bias indices) on
    the meta device. Those are copied from a normally built model of the same
    type, which only happens for such encoders.
    """
    from persam_studio.core.models import sam_build

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


_type_memo: dict[tuple, str | None] = {}


def checkpoint_type(path: str | Path) -> str | None:
    """The model type of a checkpoint file, from its name or a cheap look inside.

    Known official file names answer at once; other zip-format files are
    memory-mapped and their tensor shapes read (no weights are loaded).
    Returns None when the type cannot be told cheaply.
    """
    path = Path(path)
    for info in registry.KNOWN_MODELS.values():
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
