"""Build SAM models from ``segment_anything``'s own classes.

The official builders in ``segment_anything.build_sam`` fix the encoder size
and always run the (slow) random initialisation before loading weights. Here
the same classes are built from a :class:`SamSpec`, optionally on the ``meta``
device so that loading a checkpoint costs no initialisation at all. Specs exist
for the official types and for small test-sized encoders; the prompt encoder
and mask decoder are always the official ones (256-channel 64x64 embedding).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Callable

import torch
from segment_anything.modeling import (
    ImageEncoderViT,
    MaskDecoder,
    PromptEncoder,
    Sam,
    TwoWayTransformer,
)

IMAGE_SIZE = 1024
EMBED_DIM = 256  # prompt embedding channels
EMBED_SIZE = 64  # embedding grid side


@dataclass(frozen=True)
class SamSpec:
    """Image-encoder hyper-parameters of one SAM model type."""

    name: str
    encoder_embed_dim: int
    encoder_depth: int
    encoder_num_heads: int
    encoder_global_attn_indexes: tuple[int, ...]
    window_size: int = 14


SPECS: dict[str, SamSpec] = {
    "vit_h": SamSpec("vit_h", 1280, 32, 16, (7, 15, 23, 31)),
    "vit_l": SamSpec("vit_l", 1024, 24, 16, (5, 11, 17, 23)),
    "vit_b": SamSpec("vit_b", 768, 12, 12, (2, 5, 8, 11)),
    # Test-sized ViT (windowed attention blocks, official neck), a fraction
    # of the compute: global attention over 64x64 tokens alone costs ~1 s on
    # two cores. Never offered to users.
    "tiny": SamSpec("tiny", 32, 2, 2, ()),
}

# Model types whose image encoder is not a ViT are registered by their module
# (see ``register_encoder``); e.g. MobileSAM's TinyViT as "vit_t".
_ENCODER_FACTORIES: dict[str, Callable[[], torch.nn.Module]] = {}


def register_encoder(model_type: str, factory: Callable[[], torch.nn.Module]) -> None:
    """Register an image-encoder factory for a non-ViT model type."""
    _ENCODER_FACTORIES[model_type] = factory


def _mobile_sam_encoder() -> torch.nn.Module:
    # MobileSAM's TinyViT lives in its own module, imported only when built.
    from persam_studio.core.models.tinyvit import mobile_sam_encoder

    return mobile_sam_encoder()


register_encoder("vit_t", _mobile_sam_encoder)


def model_types() -> list[str]:
    """All buildable model types (the ViT specs plus registered encoders)."""
    return list(SPECS) + [t for t in _ENCODER_FACTORIES if t not in SPECS]


def _vit_encoder(spec: SamSpec) -> ImageEncoderViT:
    return ImageEncoderViT(
        depth=spec.encoder_depth,
        embed_dim=spec.encoder_embed_dim,
        img_size=IMAGE_SIZE,
        mlp_ratio=4,
        norm_layer=partial(torch.nn.LayerNorm, eps=1e-6),
        num_heads=spec.encoder_num_heads,
        patch_size=16,
        qkv_bias=True,
        use_rel_pos=True,
        global_attn_indexes=spec.encoder_global_attn_indexes,
        window_size=spec.window_size,
        out_chans=EMBED_DIM,
    )


def build_sam(model_type: str, *, meta: bool = False) -> Sam:
    """Build an un-trained SAM of ``model_type`` in eval mode.

    With ``meta=True`` the parameters live on the ``meta`` device (no memory,
    no initialisation); load real weights with
    ``sam.load_state_dict(sd, strict=True, assign=True)``.
    With ``meta=False`` the weights are randomly initialised as the official
    builder does (seed with ``torch.manual_seed`` for reproducible tests).
    """
    if model_type in SPECS:
        factory: Callable[[], torch.nn.Module] = partial(_vit_encoder, SPECS[model_type])
    elif model_type in _ENCODER_FACTORIES:
        factory = _ENCODER_FACTORIES[model_type]
    else:
        raise ValueError(f"unknown model type {model_type!r}; known: {', '.join(model_types())}")
    # Only the image encoder (90-630 M parameters) is built on the meta
    # device. The prompt encoder and mask decoder (4 M) are built on the CPU
    # even for meta=True: their constructors draw random values
    # (torch.randn, nn.Embedding's normal_), which on the meta device go
    # through Python decompositions that import torch._dynamo and sympy
    # (0.8 s of every start-up), for values the checkpoint replaces anyway.
    # (Built in the official order, so random_sam's weights per seed stay.)
    with torch.device("meta") if meta else torch.device("cpu"):
        image_encoder = factory()
    with torch.device("cpu"):
        prompt_encoder = PromptEncoder(
            embed_dim=EMBED_DIM,
            image_embedding_size=(EMBED_SIZE, EMBED_SIZE),
            input_image_size=(IMAGE_SIZE, IMAGE_SIZE),
            mask_in_chans=16,
        )
        mask_decoder = MaskDecoder(
            num_multimask_outputs=3,
            transformer=TwoWayTransformer(depth=2, embedding_dim=EMBED_DIM, mlp_dim=2048, num_heads=8),
            transformer_dim=EMBED_DIM,
            iou_head_depth=3,
            iou_head_hidden_dim=256,
        )
        sam = Sam(
            image_encoder=image_encoder,
            prompt_encoder=prompt_encoder,
            mask_decoder=mask_decoder,
            pixel_mean=[123.675, 116.28, 103.53],
            pixel_std=[58.395, 57.12, 57.375],
        )
    return sam.eval()


def random_sam(model_type: str, seed: int = 0) -> Sam:
    """A SAM of ``model_type`` with reproducible random weights (tests, bench).

    Random weights cost the same compute as trained ones, so speed measured
    with them is real; the masks are meaningless.
    """
    torch.manual_seed(seed)
    sam = build_sam(model_type)
    # Relative-position tables are zero-initialised by SAM; give them values so
    # that tests of the attention paths exercise them.
    with torch.no_grad():
        for name, p in sam.image_encoder.named_parameters():
            if "rel_pos" in name:
                p.normal_(0.0, 0.02)
    return sam
