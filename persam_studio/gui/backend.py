"""Model-side work of the app, as plain functions run in the model lane.

No Qt here, and no torch import: the heavy core modules (engine, models,
cache, persam) are imported inside the functions, so the window opens before
torch has even loaded. Everything crossing back to the GUI is plain data:
numpy arrays and the dataclasses of :mod:`persam_studio.gui.editing`.
"""

from __future__ import annotations

import importlib.util
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterator, Sequence

import numpy as np

from persam_studio.core.io.album import Stroke
from persam_studio.core.io.album_masks import full_size_logits, full_size_mask
from persam_studio.core.geometry import logits_to_mask
from persam_studio.gui.editing import Prediction, display_size
from persam_studio.gui.session import PromptRequest

if TYPE_CHECKING:  # pragma: no cover (names only: no torch at run time)
    from persam_studio.core.io.imageio import LoadedImage
    from persam_studio.core.personalize.persam import PersamResult, Target
    from persam_studio.core.personalize.propagate import PropagationItem
    from persam_studio.core.segment.engine import Engine
    from persam_studio.core.types import Embedding, MaskResult

Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class ModelChoice:
    """What the user asked for in Settings; empty strings mean "automatic"."""

    checkpoint: str = ""
    model_type: str = ""
    device: str = ""
    cache_dir: str = ""


@dataclass(frozen=True)
class EngineInfo:
    """Shown in the status bar and in Help > About."""

    model_type: str
    device: str
    path: str  # the checkpoint file
    cache_dir: str = ""  # the embedding cache folder in use


def find_checkpoint(choice: ModelChoice) -> Path | None:
    """The checkpoint the app would load, or None (cheap: no torch)."""
    from persam_studio.core.models import find_checkpoint as _find

    return _find(choice.checkpoint or None, choice.model_type or None)


def open_engine(choice: ModelChoice) -> tuple[Engine, EngineInfo]:
    """Load the model and wrap it in an Engine with the embedding cache.

    Raises:
        CheckpointError: no checkpoint, or not a SAM checkpoint.
    """
    from persam_studio.core.segment.session import open_engine as _open

    engine = _open(choice.checkpoint, choice.model_type, choice.device, choice.cache_dir)
    cache_dir = engine.cache.directory if engine.cache is not None and engine.cache.directory else ""
    return engine, EngineInfo(engine.model_type, str(engine.device), str(engine.checkpoint), str(cache_dir))


def load_pixels(path: Path) -> LoadedImage:
    """Decode an image (EXIF-oriented RGB)."""
    from persam_studio.core.io.imageio import load_image

    return load_image(path)


def encode(engine: Engine, pixels: np.ndarray) -> Embedding:
    """The image's embedding (from the cache when there)."""
    return engine.encode(pixels)


def encode_file(engine: Engine, path: Path) -> tuple[Path, tuple[int, int]]:
    """Load and encode ``path`` so the cache holds it (encode ahead)."""
    loaded = load_pixels(path)
    engine.encode(loaded.pixels)
    return path, loaded.size


def predict(engine: Engine, embedding: Embedding, request: PromptRequest) -> Prediction:
    """Answer a canvas request: decoder + the display-size mask of the best candidate.

    The other candidates' masks are made if the user asks for them (Tab,
    :meth:`Prediction.display_mask`): the click's overlay does not wait for them.
    """
    t0 = time.perf_counter()
    result: MaskResult = engine.predict(embedding, request.prompt, multimask_output=request.multimask_output)
    best = int(np.argmax(result.iou_predictions))
    # OpenCV's bilinear resize: ~4x faster than the engine's torch path at display
    # size (5 vs 19 ms for 3 candidates at 1920x1440); pixels may differ only where
    # the logit is ~0 (4 in a million here). Full-size masks still come from the engine.
    mask = logits_to_mask(result.low_res_logits[best], result.original_size, request.display_size)
    return Prediction.from_masks(result.low_res_logits, result.iou_predictions, {best: mask},
                                 time.perf_counter() - t0, original_size=result.original_size)


# -- long jobs (generators: one step per item) ----------------------------------


@dataclass(frozen=True)
class Step:
    """Progress of a long job: ``done`` of ``total`` items, about ``path``."""

    done: int
    total: int
    path: Path | None = None
    error: str | None = None
    note: str = ""


def prepare_steps(engine: Engine, paths: Sequence[Path]) -> Iterator[Step]:
    """Encode every image of the album (cached ones cost a decode)."""
    from persam_studio.core.errors import PersamError

    total = len(paths)
    for i, path in enumerate(paths):
        try:
            encode_file(engine, path)
            yield Step(i + 1, total, path)
        except PersamError as exc:
            yield Step(i + 1, total, path, error=str(exc))


@dataclass(frozen=True)
class ReferenceSpec:
    """A reference for propagation: an image and its full-size mask file."""

    name: str
    image: Path
    mask_file: Path


@dataclass(frozen=True)
class Propagated:
    """PerSAM's answer for one album image (union over targets).

    ``prediction`` holds one candidate: low-res logits (1, 256, 256) and
    the display mask; None on error. ``confidence`` is the lowest over
    targets (an image is only as sure as its weakest subject).
    """

    path: Path
    done: int
    total: int
    original_size: tuple[int, int] | None
    prediction: Prediction | None
    confidence: float
    error: str | None = None


@dataclass(frozen=True)
class PropagateOptions:
    """How to propagate (the side panel's choices).

    Attributes:
        method: ``"persam_f"`` (the default, :data:`~persam_studio.core.personalize.methods.DEFAULT_MODE`)
            or ``"persam"`` (training-free).
        exact: PerSAM-F's full-size (slow) fit instead of the fast one.
        instances: instances to look for per photo (1..32), or None for all;
            the photo's mask is their union.
    """

    method: str = "persam_f"
    exact: bool = False
    instances: int | None = 1


def fit_targets(
    engine: Engine,
    references: Sequence[ReferenceSpec],
    method: str,
    should_cancel: Callable[[], bool],
    progress: Progress | None = None,
    exact: bool = False,
) -> list[Target]:
    """One Target per reference name (references sharing a name are averaged).

    ``progress(done, total)`` follows PerSAM-F's fitting steps over every
    target (PerSAM fits nothing: it is not called). ``exact``: PerSAM-F's
    full-size fit (see :func:`~persam_studio.core.personalize.targets.fit_targets`).
    """
    from persam_studio.core.errors import MaskError
    from persam_studio.core.io.album import read_mask_png
    from persam_studio.core.personalize.targets import fit_targets as _fit, group_references

    loaded = []
    for ref in references:
        mask = read_mask_png(ref.mask_file)
        if mask is None:
            raise MaskError(ref.mask_file, "reference mask is missing or unreadable")
        loaded.append((ref.name, load_pixels(ref.image).pixels, mask))
    groups = group_references(loaded, file_names=False)
    order = {g.name: i for i, g in enumerate(groups)}

    def step(name: str, done: int, total: int) -> None:
        if progress is not None:
            progress(order[name] * total + done, len(groups) * total)

    return _fit(engine, groups, finetune=method == "persam_f", exact=exact, progress=step,
                should_cancel=should_cancel)


def propagate_steps(
    engine: Engine,
    references: Sequence[ReferenceSpec],
    paths: Sequence[Path],
    method: str,
    display_cap: int,
    should_cancel: Callable[[], bool],
    fit_progress: Progress | None = None,
    exact: bool = False,
    instances: int | None = 1,
) -> Iterator[Step | Propagated]:
    """Fit the targets, then segment every image; one item per image.

    ``fit_progress(step, steps)`` is called in the worker during PerSAM-F's
    fitting (one generator step that takes seconds). ``exact`` and
    ``instances`` are :class:`PropagateOptions`'.
    """
    from persam_studio.core.personalize.methods import DEFAULT_INSTANCE_FRACTION

    yield Step(0, len(paths), note="fitting")
    targets = fit_targets(engine, references, method, should_cancel, fit_progress, exact=exact)
    from persam_studio.core.personalize.propagate import propagate

    for item in propagate(engine, targets, list(paths), should_cancel=should_cancel, instances=instances,
                          instance_fraction=DEFAULT_INSTANCE_FRACTION):
        yield _propagated(item, display_cap)


def _propagated(item: PropagationItem, display_cap: int) -> Propagated:
    results = _results_of(item)
    error = getattr(item, "error", None)
    if error is not None or not results:
        if error is None:
            failed = item.results.values() if isinstance(item.results, dict) else item.results
            error = "; ".join(r for r in failed if isinstance(r, str)) or "no result"
        return Propagated(Path(item.path), item.index + 1, item.total, None, None, 0.0, str(error))
    size = tuple(results[0].original_size)
    disp = display_size(size, display_cap)
    mask = np.zeros(disp, bool)
    low = None
    # Every instance of every target: the photo's mask is their union
    # (InstancesResult.mask), its saved logits the per-pixel maximum.
    found = [f for f in (getattr(item, "instances", None) or {}).values() if not isinstance(f, str)]
    for f in found:
        mask |= f.mask(disp)
    for r in [i for f in found for i in f.instances] or results:
        if not found:
            mask |= r.mask(disp)
        low = r.low_res_logits if low is None else np.maximum(low, r.low_res_logits)
    conf = min(float(r.confidence) for r in results)
    seconds = float(getattr(item, "seconds", 0.0))
    pred = Prediction.from_masks(np.asarray(low).reshape(1, 256, 256), np.array([conf]), mask[None], seconds)
    return Propagated(Path(item.path), item.index + 1, item.total, size, pred, conf)


def _results_of(item: PropagationItem) -> list[PersamResult]:
    """The PersamResults of an item; a target that failed (a message) makes it an error."""
    results = getattr(item, "results", None) or {}
    values = list(results.values()) if isinstance(results, dict) else list(results)
    if any(isinstance(r, str) for r in values):
        return []
    return [r for r in values if r is not None]


@dataclass(frozen=True)
class ExportItem:
    """One image to export: where it is and how to rebuild its full-size mask."""

    image: Path
    stem: str
    logits_file: Path | None
    bitmap_file: Path | None
    strokes: tuple[Stroke, ...]


def matting_available() -> bool:
    return importlib.util.find_spec("persam_studio.core.edges.matting") is not None


def export_steps(
    items: Sequence[ExportItem],
    folder: Path,
    masks: bool,
    cutouts: bool,
    refine: bool,
    protected: Sequence[Path],
    background: str = "",
    cutout_suffix: str = ".png",
    saved: Callable[[], object] | None = None,
) -> Iterator[Step]:
    """Write ``<stem>_mask.png`` and/or ``<stem>_cutout<suffix>`` per item into ``folder``.

    The items' masks are read from the album's files, which the app saves
    in the background: ``saved()`` (the saver's ``wait_idle``) is called
    first, here in the worker, so an export right after an edit exports it.

    ``protected`` are the album's images: never overwritten (an output that
    would land on one is an error for that item, the rest go on).
    ``background``: "" (transparent cutouts), a colour, ``blur`` or a picture
    file, as the CLI's ``--background`` (read once, here in the worker).
    """
    import os

    from persam_studio.core.edges.cutout import write_cutout
    from persam_studio.core.errors import OutputError, PersamError
    from persam_studio.core.io.album import read_mask_png
    from persam_studio.core.io.export import save_mask_png

    if saved is not None:
        saved()
    guard = {os.path.normcase(os.path.realpath(p)) for p in protected}
    total = len(items)
    new_background, words, read = None, "", []
    if background and cutouts:
        from persam_studio.core.edges.cutout import parse_background

        new_background, words = parse_background(background, read)  # a bad spec fails the job, in one line
    for i, item in enumerate(items):
        try:
            loaded = load_pixels(item.image)
            low = np.load(item.logits_file).astype(np.float32) if item.logits_file else None
            bitmap = read_mask_png(item.bitmap_file) if item.bitmap_file else None
            # Upsampled once; SAM's logits then guide the refined edge (as in
            # the CLI) when the mask is SAM's own: brushed masks have no
            # logits to agree with.
            full = full_size_logits(loaded.size, low) if low is not None else None
            mask = full_size_mask(loaded.size, None, bitmap if full is None else full > 0.0, item.strokes)
            logits = full if refine and not item.strokes else None
            outs = []
            if masks:
                outs.append(("mask", folder / f"{item.stem}_mask.png"))
            if cutouts:
                outs.append(("cutout", folder / f"{item.stem}_cutout{cutout_suffix}"))
            for _, out in outs:
                if os.path.normcase(os.path.realpath(out)) in guard:
                    raise OutputError(out, "is one of the album's images; not overwritten")
            for kind, out in outs:
                if kind == "mask":
                    save_mask_png(out, mask, inputs=(item.image,))
                else:
                    write_cutout(out, loaded.pixels, mask, logits, refine=refine and matting_available(),
                                 background=new_background, background_words=words, inputs=(item.image, *read))
            yield Step(i + 1, total, item.image)
        except (PersamError, OSError, ValueError) as exc:
            yield Step(i + 1, total, item.image, error=str(exc))
