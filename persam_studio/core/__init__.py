"""The Qt-free core: the public Python API of PerSAM Studio.

Packages, each importing only those below it (import-linter checks it; see
docs/architecture.md)::

    jobs         batch run-report-resume loop of album commands
    personalize  PerSAM / PerSAM-F targets, propagation      edges  trimap, matting, compositing
    segment      Engine (encode once, decode per prompt), embedding cache
    models       registry, checkpoints, downloads, SAM build, fast encoders/decoder, subject models
    io           images, masks, atomic writes, album state, exports
    types        value types: Point, Box, Prompt, Embedding, MaskResult, REVIEW_THRESHOLD
    geometry, errors

The names below are importable from ``persam_studio.core`` directly; each is
loaded on first use, so ``import persam_studio.core`` stays cheap (no torch)
and the GUI may import it. Importing the package also registers
``segment_anything`` with its package ``__init__`` deferred to first use (see
:mod:`persam_studio.core.models.sam_package`): a command whose embeddings are
cached never needs torchvision.
"""

from __future__ import annotations

import importlib
from typing import Any

from persam_studio.core.models.sam_package import defer_package_init

defer_package_init()

#: public name -> module that defines it
_PUBLIC: dict[str, str] = {
    **dict.fromkeys(
        ["Point", "Box", "Prompt", "Embedding", "MaskResult", "REVIEW_THRESHOLD", "image_key"],
        "persam_studio.core.types"),
    **dict.fromkeys(
        ["PersamError", "ImageReadError", "MaskError", "CheckpointError", "DownloadError",
         "OutputError", "Cancelled"], "persam_studio.core.errors"),
    **dict.fromkeys(["load_image", "load_mask", "list_images", "LoadedImage"], "persam_studio.core.io.imageio"),
    **dict.fromkeys(["save_mask_png", "save_cutout_png", "save_image"], "persam_studio.core.io.export"),
    **dict.fromkeys(["Album", "ImageState"], "persam_studio.core.io.album"),
    **dict.fromkeys(
        ["KNOWN_MODELS", "load_model", "find_checkpoint", "require_checkpoint", "download",
         "default_device"], "persam_studio.core.models"),
    "Engine": "persam_studio.core.segment.engine",
    **dict.fromkeys(["EmbeddingCache", "default_cache_dir"], "persam_studio.core.segment.cache"),
    **dict.fromkeys(["Target", "PersamResult", "fit_target"], "persam_studio.core.personalize.persam"),
    **dict.fromkeys(["propagate", "PropagationItem"], "persam_studio.core.personalize.propagate"),
    **dict.fromkeys(["refine_alpha", "refine_matte", "MattingParams"], "persam_studio.core.edges.matting"),
    **dict.fromkeys(["composite", "cutout_rgba", "parse_colour"], "persam_studio.core.edges.composite"),
}

__all__ = sorted(_PUBLIC)


def __getattr__(name: str) -> Any:
    module = _PUBLIC.get(name)
    if module is None:
        raise AttributeError(f"module 'persam_studio.core' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_PUBLIC))
