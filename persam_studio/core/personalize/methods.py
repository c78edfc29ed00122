"""PerSAM's methods as plain data: defaults and published accuracy.

Torch-free on purpose: the app's model dialog and settings read these
without loading the model code (the GUI never imports torch), and the CLI's
flags take their defaults from here, so both front ends say the same thing.
"""

from __future__ import annotations

from dataclasses import dataclass

#: The method used when the user picks none: PerSAM-F (the fitted one). With
#: the fast fit it costs about a second per reference and is much more
#: accurate on the smaller models (see PERSEG_MIOU). "persam" is training-free.
DEFAULT_MODE = "persam_f"

#: Instance search (core/personalize/instances.py): a further instance is kept
#: while its similarity peak is at least this fraction of the first one's.
#: NOT tuned yet: with random weights the similarity map is nearly flat (the
#: second peak is 0.97-1.0 of the first both on two copies of a photo and on
#: single-object PerSeg photos), so it needs trained weights to tune; 0.85
#: keeps near-equal matches and drops clearly weaker look-alikes.
DEFAULT_INSTANCE_FRACTION = 0.85
#: The most instances ``--instances all`` looks for in one photo.
MAX_INSTANCES = 32


@dataclass(frozen=True)
class PublishedScore:
    """Published PerSeg mIoU (%) for one SAM size; ``None`` where none is published.

    Attributes:
        model_type: registry key (``vit_b``, ...).
        label: how papers name the model ("SAM-B").
        persam, persam_f: mIoU of training-free PerSAM and of PerSAM-F.
        source: where the numbers come from.
    """

    model_type: str
    label: str
    persam: float | None
    persam_f: float | None
    source: str


# Sources: SAM-H from Zhang et al., "Personalize Segment Anything Model with
# One Shot" (arXiv 2305.03048, table 1; PerSAM 89.3, PerSAM-F 95.3 mIoU);
# SAM-B from the comparison table in the P2SAM repository's README (PerSAM
# 64.0, PerSAM-F 87.2). No PerSeg numbers are published for SAM-L or
# MobileSAM (vit_t) with PerSAM that we could check: None, shown as "n/a".
PERSEG_MIOU: dict[str, PublishedScore] = {
    "vit_t": PublishedScore("vit_t", "MobileSAM", None, None, ""),
    "vit_b": PublishedScore("vit_b", "SAM-B", 64.0, 87.2, "P2SAM repository README"),
    "vit_l": PublishedScore("vit_l", "SAM-L", None, None, ""),
    "vit_h": PublishedScore("vit_h", "SAM-H", 89.3, 95.3, "Zhang et al. 2023, arXiv 2305.03048"),
}


def published_score(model_type: str) -> PublishedScore | None:
    """The published PerSeg numbers for a model type, or None for an unknown type."""
    return PERSEG_MIOU.get(model_type)
