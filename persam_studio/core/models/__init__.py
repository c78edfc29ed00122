"""Models: the registry, checkpoints (find, load, download), SAM's build and fast paths.

Layers inside (each imports only those before it): :mod:`.registry` (known
checkpoints, folders, devices, fingerprints) -> :mod:`.download`,
:mod:`.checkpoints` (read and build; torch only when a file is read) ->
:mod:`.discovery` (which file to use). :mod:`.sam_build`, :mod:`.fast_vit`,
:mod:`.fast_decoder` and :mod:`.tinyvit` are the torch side, imported only
by callers that build or run a model. Importing this package loads no torch.
"""

from persam_studio.core.models.checkpoints import LoadedModel, checkpoint_type, infer_model_type, load_model
from persam_studio.core.models.discovery import find_checkpoint, found_checkpoints, require_checkpoint
from persam_studio.core.models.download import default_download_dir, download
from persam_studio.core.models.registry import (
    CHECKPOINT_SUFFIXES,
    KNOWN_MODELS,
    ModelInfo,
    checkpoint_dirs,
    default_device,
    file_fingerprint,
    model_key,
    module_fingerprint,
    resolve_device,
    source_checkpoints_dir,
    user_data_dir,
)

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
    "source_checkpoints_dir",
    "user_data_dir",
]
