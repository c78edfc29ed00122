"""Select subject: a salient-object model (ONNX) gives a soft map of the main subject.

The models are the U²-Net family and IS-Net (the DIS model of the same
authors), as rembg publishes them on its GitHub releases page
(:data:`CATALOGUE`), or any ONNX file of the same form that a user brings:
first input float (1, 3, S, S), first output (1, 1, S, S). A photo is
resized to S x S without keeping its aspect (as the models were trained),
normalised, run, and the first output is turned into a map in [0, 1]
(min-max stretched, or clipped when the model already outputs
probabilities) and resized back to the photo.

onnxruntime is imported only when a model is opened, so importing this
module costs nothing. Maps are cached by image content and model file
(:mod:`persam_studio.core.models.subject_cache`); the cache holds the S x S map,
and the resize to the photo's size (cheap) is redone on every call.
"""

from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Literal

import cv2
import numpy as np

from persam_studio.core.errors import CheckpointError, SubjectModelError
from persam_studio.core.types import image_key
from persam_studio.core.models.registry import ModelInfo, file_fingerprint

if TYPE_CHECKING:  # pragma: no cover
    from persam_studio.core.models.subject_cache import SubjectMapCache

log = logging.getLogger(__name__)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class SubjectSpec:
    """How to feed a subject model and read its answer.

    Attributes:
        size: S, the square input side in pixels; ``None`` = read it from the file.
        mean, std: per-channel RGB normalisation in [0, 1] units:
            ``x = (pixels / scale - mean) / std``.
        scale_by_max: ``scale`` is the resized image's maximum value (how
            U²-Net was trained) instead of 255.
        output: ``"minmax"`` stretches the first output to [0, 1] (U²-Net
            family, unknown files: their outputs are not calibrated);
            ``"clip"`` clips an output that is already a probability.
    """

    size: int | None = None
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    scale_by_max: bool = False
    output: Literal["minmax", "clip"] = "minmax"


U2NET_SPEC = SubjectSpec(320, IMAGENET_MEAN, IMAGENET_STD, scale_by_max=True)
ISNET_SPEC = SubjectSpec(1024, (0.5, 0.5, 0.5), (1.0, 1.0, 1.0), scale_by_max=True)
# IMG.LY's IS-Net builds (isnet-medium.onnx and friends) take RGB / 255 - 0.5 and end in a sigmoid.
IMGLY_ISNET_SPEC = SubjectSpec(1024, (0.5, 0.5, 0.5), (1.0, 1.0, 1.0), output="clip")


@dataclass(frozen=True)
class SubjectModelInfo:
    """A downloadable subject model: the file (for :func:`~persam_studio.core.models.download.download`) and its spec."""

    file: ModelInfo
    spec: SubjectSpec


_REMBG = "https://github.com/danielgatis/rembg/releases/download/v0.0.0/"


def _entry(name: str, md5: str, size: int, description: str, spec: SubjectSpec, rank: int) -> SubjectModelInfo:
    # rembg publishes MD5s only; sizes are approximate (display only, the MD5 is what is checked).
    return SubjectModelInfo(ModelInfo(name, f"{name}.onnx", f"{_REMBG}{name}.onnx", None, size, description,
                                      rank, md5=md5), spec)


# URLs, MD5s, input sizes and normalisation as rembg's sessions use them (rembg/sessions/*.py, 2025).
CATALOGUE: dict[str, SubjectModelInfo] = {
    "u2net": _entry("u2net", "60024c5c889badc19c04ad937298a77b", 176_000_000,
                    "U²-Net, general salient objects (320 px)", U2NET_SPEC, 2),
    "u2netp": _entry("u2netp", "8e83ca70e441ab06c318d82300c84806", 4_600_000,
                     "U²-Net small: fastest, coarser (320 px)", U2NET_SPEC, 0),
    "u2net_human_seg": _entry("u2net_human_seg", "c09ddc2e0104f800e3e1bb4652583d1f", 176_000_000,
                              "U²-Net trained on people (320 px)", U2NET_SPEC, 2),
    "silueta": _entry("silueta", "55e59e0d8062d2f5d013f4725ee84782", 43_000_000,
                      "U²-Net pruned to 43 MB, near u2net quality (320 px)", U2NET_SPEC, 1),
    "isnet-general-use": _entry("isnet-general-use", "fc16ebd8b0c10d971d3513d564d01e29", 179_000_000,
                                "IS-Net (DIS), finest edges (1024 px)", ISNET_SPEC, 3),
}

# Specs of files recognised by name: the catalogue, plus IMG.LY's IS-Net builds.
KNOWN_FILES: dict[str, SubjectSpec] = {
    **{info.file.filename: info.spec for info in CATALOGUE.values()},
    **{f"isnet{v}.onnx": IMGLY_ISNET_SPEC for v in ("", "-medium", "-small", "_fp16", "_quint8")},
}


#: Names the default subject model: a file, or a :data:`CATALOGUE` name.
SUBJECT_MODEL_ENV = "PERSAM_SUBJECT_MODEL"

# Known files looked for in the model folders when no model is named, best
# edges first; the people-only model last, as it misses other subjects.
SEARCH_ORDER: tuple[str, ...] = (
    "isnet-general-use.onnx", "isnet.onnx", "isnet_fp16.onnx", "isnet-medium.onnx", "isnet_quint8.onnx",
    "isnet-small.onnx", "u2net.onnx", "silueta.onnx", "u2netp.onnx", "u2net_human_seg.onnx",
)


def default_spec(size: int) -> SubjectSpec:
    """The spec for an unknown file whose input side is ``size``.

    rembg's two "custom model" sessions set the convention for such files:
    1024 px models are IS-Net-like (mean 0.5, std 1), smaller ones
    U²-Net-like (ImageNet mean/std); both min-max stretch the output.
    """
    if size >= 1024:
        return SubjectSpec(size, (0.5, 0.5, 0.5), (1.0, 1.0, 1.0))
    return SubjectSpec(size)


def download_subject_model(
    name: str,
    dest_dir: str | Path | None = None,
    progress: Callable[[int, int], None] | None = None,
    should_cancel: Callable[[], bool] | None = None,
) -> Path:
    """Download catalogue model ``name`` (resumable, MD5-verified) and return its path.

    Raises:
        DownloadError: unknown name, offline, interrupted, checksum mismatch.
    """
    from persam_studio.core.models.download import download
    from persam_studio.core.errors import DownloadError

    if name not in CATALOGUE:
        raise DownloadError(None, f"unknown subject model {name!r}; known: {', '.join(CATALOGUE)}")
    return download(CATALOGUE[name].file, dest_dir, progress, should_cancel)


def find_subject_model(choice: str | Path | None = None) -> Path:
    """The subject model file to open.

    Order: ``choice`` (``--subject-model``), then ``$PERSAM_SUBJECT_MODEL``,
    each a file or a :data:`CATALOGUE` name (an existing file wins over a
    name); then the first file of :data:`SEARCH_ORDER` found in the model
    folders (:func:`~persam_studio.core.models.registry.checkpoint_dirs`,
    where ``persam-studio download NAME`` saves). The file is not opened
    here: :class:`SubjectModel` checks it.

    Raises:
        SubjectModelError: one line: a name whose file is not downloaded
            (says how to get it), a path that does not exist, or no model
            named and none found.
    """
    from persam_studio.core.models.registry import checkpoint_dirs

    folders = checkpoint_dirs()
    for value, origin in ((choice, ""), (os.environ.get(SUBJECT_MODEL_ENV), f" (set in {SUBJECT_MODEL_ENV})")):
        if not value:
            continue
        path = Path(value).expanduser()
        if path.exists():
            return path
        name = str(value)
        if name in CATALOGUE:
            found = _first_file(folders, [CATALOGUE[name].file.filename])
            if found is None:
                raise SubjectModelError(None, f"subject model {name!r}{origin} is not downloaded yet; "
                                              f"run 'persam-studio download {name}'")
            return found
        if path.suffix or len(path.parts) > 1:
            raise SubjectModelError(path, f"file not found{origin}")
        raise SubjectModelError(None, f"{name!r}{origin} is neither a file nor a subject model name "
                                      f"({', '.join(CATALOGUE)})")
    found = _first_file(folders, SEARCH_ORDER)
    if found is None:
        raise SubjectModelError(None, "no subject model found; run 'persam-studio download u2netp' (5 MB, fast) "
                                      "or 'persam-studio download isnet-general-use' (179 MB, finest edges), "
                                      "or pass --subject-model FILE.onnx")
    return found


def _first_file(folders: list[Path], names) -> Path | None:
    """The first of ``names`` that is a file in a folder, names first, then folders."""
    for name in names:
        for folder in folders:
            if (folder / name).is_file():
                return folder / name
    return None


def default_threads() -> int:
    """Intra-op threads: the CPUs this process may use, at most 8.

    Beyond 8 a 1024 px convolutional net gains little, and the GUI thread
    and the matting solver need a core too.
    """
    try:
        n = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        n = os.cpu_count() or 1
    return max(1, min(8, n))


class SubjectModel:
    """An opened subject model: ``predict(pixels)`` gives the subject's soft map.

    Args:
        path: the ONNX file. Its first input must be float (1, 3, S, S) and
            its first output (1, 1, S, S); symbolic dimensions are accepted.
        spec: how to feed it; default: :data:`KNOWN_FILES` by file name,
            else :func:`default_spec` of the input side.
        device: ``"cpu"``, or ``"cuda"`` / ``"cuda:N"`` to run on a GPU when
            onnxruntime has the CUDA provider (else the CPU, with a log line).
        threads: intra-op CPU threads; default :func:`default_threads`.
        cache: optional :class:`~persam_studio.core.models.subject_cache.SubjectMapCache`.

    Raises:
        SubjectModelError: the file is missing, unreadable, not ONNX, or not
            of the form above (one line: ``file: problem``).
    """

    def __init__(
        self,
        path: str | Path,
        spec: SubjectSpec | None = None,
        device: str = "cpu",
        threads: int | None = None,
        cache: SubjectMapCache | None = None,
    ) -> None:
        self.path = Path(path)
        self.cache = cache
        if not self.path.is_file():
            raise SubjectModelError(self.path, "file not found" if not self.path.exists() else "not a file")
        self.session = _open_session(self.path, device, threads or default_threads())
        inp, out = self.session.get_inputs()[0], self.session.get_outputs()[0]
        self._input_name, self._output_name = inp.name, out.name
        self._input_dtype = np.float16 if inp.type == "tensor(float16)" else np.float32
        if inp.type not in ("tensor(float)", "tensor(float16)"):
            raise SubjectModelError(self.path, f"first input {inp.name!r} is {inp.type}, expected float")
        size = _square_side(self.path, "input", inp.shape, 3, spec.size if spec else None)
        _square_side(self.path, "output", out.shape, 1, size)
        if spec is None:
            spec = KNOWN_FILES.get(self.path.name.lower()) or default_spec(size)
        if spec.size not in (None, size):
            raise SubjectModelError(self.path, f"input is {size} px but the spec says {spec.size}")
        self.spec = SubjectSpec(size, spec.mean, spec.std, spec.scale_by_max, spec.output)
        try:
            fingerprint = file_fingerprint(self.path)
        except CheckpointError as exc:
            raise SubjectModelError(self.path, exc.problem) from None
        spec_digest = hashlib.blake2b(repr(self.spec).encode(), digest_size=4).hexdigest()
        #: identifies model file and spec in cache keys; file-name safe
        self.model_key = f"subject-{fingerprint[:20]}{spec_digest}"

    @property
    def size(self) -> int:
        """S, the model's square input side in pixels."""
        return int(self.spec.size)  # type: ignore[arg-type]

    def predict(self, pixels: np.ndarray, key: str | None = None) -> np.ndarray:
        """Soft subject map of a photo: float32 (H, W) in [0, 1], 1 = subject.

        Args:
            pixels: uint8 (H, W, 3) RGB of the oriented photo.
            key: :func:`~persam_studio.core.types.image_key` of ``pixels``
                if the caller has it (only used with a cache).
        """
        small = self.predict_small(pixels, key)
        h, w = pixels.shape[:2]
        # Bilinear never overshoots, so the map stays in [0, 1] without a
        # clip pass over 12 MP; a smaller photo averages (INTER_AREA).
        interp = cv2.INTER_LINEAR if h * w >= small.size else cv2.INTER_AREA
        return cv2.resize(small, (w, h), interpolation=interp)

    def predict_small(self, pixels: np.ndarray, key: str | None = None) -> np.ndarray:
        """The map on the model's grid: float32 (S, S) in [0, 1] (the photo squeezed to S x S)."""
        pixels = _check_pixels(pixels)
        if self.cache is not None:
            cache_key = f"{self.model_key}-{key or image_key(pixels)}"
            hit = self.cache.get(cache_key)
            if hit is not None and hit.shape == (self.size, self.size):
                return hit
        try:
            raw = self.session.run([self._output_name], {self._input_name: self.prepare(pixels)})[0]
        except Exception as exc:  # noqa: BLE001 - onnxruntime's errors have no common public base
            raise SubjectModelError(self.path, f"inference failed: {_first_line(exc)}") from None
        small = self._finish(np.asarray(raw, dtype=np.float32).reshape(self.size, self.size))
        if self.cache is not None:
            self.cache.put(cache_key, small)
        return small

    def prepare(self, pixels: np.ndarray) -> np.ndarray:
        """The model input for ``pixels``: float32 (1, 3, S, S), normalised as the spec says.

        The resize runs on uint8 (area averaging when shrinking) and the
        normalisation writes straight into the input tensor: no float copy
        of a 12 MP photo is made.
        """
        s = self.size
        h, w = pixels.shape[:2]
        interp = cv2.INTER_AREA if h * w > s * s else cv2.INTER_LINEAR
        small = cv2.resize(pixels, (s, s), interpolation=interp)
        scale = max(float(small.max()), 1.0) if self.spec.scale_by_max else 255.0
        x = np.empty((1, 3, s, s), np.float32)
        for c in range(3):
            # (p / scale - mean) / std as one multiply and one subtract.
            np.multiply(small[:, :, c], np.float32(1.0 / (scale * self.spec.std[c])), out=x[0, c])
            x[0, c] -= np.float32(self.spec.mean[c] / self.spec.std[c])
        return x if self._input_dtype == np.float32 else x.astype(self._input_dtype)

    def _finish(self, y: np.ndarray) -> np.ndarray:
        """The model's first output as a map in [0, 1], float32 (S, S)."""
        if self.spec.output == "clip":
            return np.clip(y, 0.0, 1.0, out=y)
        lo, hi = float(y.min()), float(y.max())
        if not hi > lo:  # a flat answer: no subject found
            return np.zeros_like(y)
        y -= lo
        y *= 1.0 / (hi - lo)
        return y


def _open_session(path: Path, device: str, threads: int):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1  # one chain of convolutions: nothing to run side by side
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.log_severity_level = 3  # onnxruntime's warnings would go to the user's terminal
    providers: list = ["CPUExecutionProvider"]
    if device.startswith("cuda"):
        if "CUDAExecutionProvider" in ort.get_available_providers():
            index = int(device.partition(":")[2] or 0)
            providers = [("CUDAExecutionProvider", {"device_id": index}), "CPUExecutionProvider"]
        else:
            log.info("onnxruntime has no CUDA provider; running the subject model on the CPU")
    try:
        return ort.InferenceSession(str(path), opts, providers=providers)
    except Exception as exc:  # noqa: BLE001 - InvalidProtobuf, Fail, ... share no public base
        raise SubjectModelError(path, f"not a readable ONNX model ({_first_line(exc)})") from None


def _square_side(path: Path, what: str, shape: list | None, channels: int, size: int | None) -> int:
    """S from an ONNX (1, channels, S, S) shape whose dims may be symbolic (str/None/-1)."""
    dims = list(shape or [])

    def fixed(d) -> int | None:
        return d if isinstance(d, int) and d > 0 else None

    expected = f"(1, {channels}, S, S)"
    if len(dims) != 4 or fixed(dims[0]) not in (None, 1) or fixed(dims[1]) not in (None, channels):
        raise SubjectModelError(path, f"first {what} is shaped {dims}, expected {expected}")
    h, w = fixed(dims[2]), fixed(dims[3])
    if h is not None and w is not None and h != w:
        raise SubjectModelError(path, f"first {what} is {h} x {w}, expected a square {expected}")
    side = h or w or size
    if side is None:
        raise SubjectModelError(path, f"first {what} has no fixed size {dims}; give a SubjectSpec with size")
    if size is not None and side != size:
        raise SubjectModelError(path, f"first {what} is {side} px, the input {size} px")
    return side


def _check_pixels(pixels: np.ndarray) -> np.ndarray:
    pixels = np.asarray(pixels)
    if pixels.dtype != np.uint8 or pixels.ndim != 3 or pixels.shape[2] != 3 or 0 in pixels.shape:
        raise ValueError(f"pixels must be uint8 (H, W, 3) RGB, got {pixels.dtype} {pixels.shape}")
    return pixels


def _first_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 200 else text[:197] + "..."
