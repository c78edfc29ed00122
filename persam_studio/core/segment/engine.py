"""The segmentation engine: encode an image once, answer every prompt fast.

This is late fusion as in ``segment_anything.SamPredictor``, reorganised for
an interactive app:

* :meth:`Engine.encode` runs the image encoder (slow) once per image and model
  and returns an :class:`Embedding` (plain numpy). Embeddings are kept in the
  :class:`~persam_studio.core.segment.cache.EmbeddingCache` (memory and disk), keyed
  by the decoded pixels and the checkpoint fingerprint.
* :meth:`Engine.predict` runs only the prompt encoder and mask decoder and
  returns a :class:`MaskResult` holding the 256x256 low-res logits. Nothing is
  upsampled until a caller asks for a mask at a size: a click on a 12 MP photo
  asks for a display-size mask, export asks for full size, once.

The numerics are those of ``SamPredictor`` (same resize, normalisation,
padding, coordinate transform and mask post-processing), so the logits equal
the stock predictor's on the same weights; the tests check that.

Coordinate frame everywhere: pixels of the *oriented* image (EXIF rotation
applied), x = column, y = row, origin at the top-left corner.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from segment_anything.modeling import Sam

from persam_studio.core.geometry import to_input_frame
from persam_studio.core.models import fast_decoder, fast_vit
from persam_studio.core.models.guided_decoder import decode as guided_decode
from persam_studio.core.segment.prompts import MAX_POINTS
from persam_studio.core.segment.resize import resize_longest_side
from persam_studio.core.types import Embedding, MaskResult, Prompt, cache_key, image_key

if TYPE_CHECKING:  # pragma: no cover
    from persam_studio.core.segment.cache import EmbeddingCache


class Engine:
    """SAM behind a cache: ``encode`` once per image, ``predict`` per prompt.

    Args:
        sam: a ``segment_anything`` ``Sam`` in eval mode, on ``device``.
        model_key: string identifying model type and weights (see
            :func:`persam_studio.core.models.model_key`); part of cache keys.
        cache: an embedding cache, or ``None`` for no caching.
        fast: use the fast ViT encoder and mask decoder forwards when they
            apply (core/models/fast_vit.py, core/models/fast_decoder.py: same results within
            float rounding); ``False`` runs the stock forwards.
        model_type, checkpoint: what was loaded, for display (see
            :func:`persam_studio.core.segment.session.open_engine`).

    Thread safety: one model call at a time (an internal lock), so a GUI may
    call from a worker thread while another worker prepares the album.
    """

    def __init__(
        self,
        sam: Sam,
        model_key: str,
        cache: EmbeddingCache | None = None,
        *,
        fast: bool = True,
        model_type: str = "",
        checkpoint: Path | None = None,
    ) -> None:
        self.sam = sam.eval()
        self.model_key = model_key
        self.model_type = model_type or model_key.split("-", 1)[0]
        self.checkpoint = checkpoint  # the file the weights came from, if any
        self.cache = cache
        # The fast ViT forward (core/models/fast_vit.py) computes the same embedding
        # about twice as fast on a CPU. It is called directly rather than
        # patched into the module, so a stock SamPredictor sharing these
        # weights stays stock. Other encoders (TinyViT) run their own forward.
        self.fast = bool(fast) and fast_vit.supports(sam.image_encoder) and fast_vit.kernel_ok()
        self._fast_encode = fast_vit.fast_encode
        # The fast decoder forward halves the decoder's time per click and
        # prepares what is constant per image once (see its module).
        self._fast_decoder = (
            fast_decoder.FastDecoder(sam.mask_decoder, sam.prompt_encoder.no_mask_embed.weight)
            if fast and fast_decoder.supports(sam.mask_decoder)
            else None
        )
        self._transform = None
        self.encode_count = 0  # encoder runs in this process (tests, bench)
        self._lock = threading.RLock()
        self._dense_pe: torch.Tensor | None = None
        # (features array, its tensor, its decoder state): the array itself is
        # kept, not its id, which a later array could reuse once it is freed.
        self._features_memo: tuple[np.ndarray, torch.Tensor, object] | None = None

    @property
    def device(self) -> torch.device:
        return self.sam.device

    @property
    def transform(self):
        """segment_anything's ``ResizeLongestSide`` for the encoder's input size.

        Not used by the engine any more (:func:`.resize.resize_longest_side`
        gives the same pixels without torchvision); kept for callers and
        tests that compare with the stock transform. Imports torchvision.
        """
        if self._transform is None:
            from segment_anything.utils.transforms import ResizeLongestSide

            self._transform = ResizeLongestSide(self.sam.image_encoder.img_size)
        return self._transform

    # -- encoding -----------------------------------------------------------

    def cached(self, pixels_key: str, original_size: tuple[int, int] | None = None) -> Embedding | None:
        """The cached embedding for an image key, or ``None`` (no encoding).

        With ``original_size`` ((H, W) of the image), an entry whose sizes do
        not fit that image is a miss.
        """
        if self.cache is None:
            return None
        return self.cache.get(cache_key(pixels_key, self.model_key), original_size)

    def is_cached(self, pixels_key: str) -> bool:
        """Whether an embedding for this image key is cached (cheap: no loading)."""
        return self.cache is not None and self.cache.contains(cache_key(pixels_key, self.model_key))

    def encode(self, image: np.ndarray, key: str | None = None) -> Embedding:
        """Embedding of an RGB image, from the cache or from the encoder.

        Args:
            image: uint8 (H, W, 3) RGB, already EXIF-oriented.
            key: :func:`image_key` of ``image`` if the caller has it.

        Returns:
            The image's :class:`Embedding` (float32 features in memory).
        """
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"expected uint8 (H, W, 3) RGB, got {image.dtype} {image.shape}")
        key = key or image_key(image)
        hit = self.cached(key, (int(image.shape[0]), int(image.shape[1])))
        if hit is not None:
            return hit
        embedding = self._run_encoder(image, key)
        if self.cache is not None:
            disk_dtype = getattr(self.cache, "disk_dtype", None)
            if disk_dtype is not None and disk_dtype.itemsize < embedding.features.itemsize:
                # Use exactly what the disk keeps, so a click gives the same
                # mask whether its embedding was just computed or read back
                # in a later session.
                features = embedding.features.astype(disk_dtype).astype(np.float32)
                embedding = dataclasses.replace(embedding, features=features)
            self.cache.put(embedding)
        return embedding

    def preprocess(self, image: np.ndarray) -> tuple[torch.Tensor, tuple[int, int]]:
        """Resize (long side 1024, as SamPredictor), normalise and pad.

        Returns:
            float32 (1, 3, 1024, 1024) on the engine's device, and the
            (h, w) input size before padding.
        """
        resized = resize_longest_side(image, self.sam.image_encoder.img_size)
        x = torch.as_tensor(resized, device=self.device).permute(2, 0, 1).contiguous()[None]
        return self.sam.preprocess(x.float()), (int(resized.shape[0]), int(resized.shape[1]))

    def _run_encoder(self, image: np.ndarray, key: str) -> Embedding:
        with self._lock, torch.inference_mode():
            x, input_size = self.preprocess(image)
            if self.fast:
                features = self._fast_encode(self.sam.image_encoder, x)
            else:
                features = self.sam.image_encoder(x)
            self.encode_count += 1
        return Embedding(
            features=features[0].float().cpu().numpy(),
            original_size=(int(image.shape[0]), int(image.shape[1])),
            input_size=input_size,
            image_key=key,
            model_key=self.model_key,
        )

    # -- prompting ----------------------------------------------------------

    def features(self, embedding: Embedding) -> torch.Tensor:
        """The embedding as a float32 (1, 256, 64, 64) tensor on the device.

        The last one is memoised: a burst of clicks on one image converts once.
        """
        memo = self._features_memo
        if memo is not None and memo[0] is embedding.features:
            return memo[1]
        t = torch.from_numpy(np.ascontiguousarray(embedding.features)).float()
        t = t.to(self.device)[None]
        self._features_memo = (embedding.features, t, None)
        return t

    def _decoder_state(self, embedding: Embedding) -> object:
        """The fast decoder's per-image state (no mask prompt), memoised with the features."""
        features = self.features(embedding)
        memo = self._features_memo
        if memo[2] is None:
            memo = self._features_memo = (memo[0], memo[1], self._fast_decoder.prepare(features, self.dense_pe()))
        return memo[2]

    def dense_pe(self) -> torch.Tensor:
        """The prompt encoder's positional encoding (1, 256, 64, 64); constant per model."""
        if self._dense_pe is None:
            with torch.inference_mode():
                self._dense_pe = self.sam.prompt_encoder.get_dense_pe()
        return self._dense_pe

    def prompt_tensors(
        self,
        embedding: Embedding,
        point_coords: np.ndarray | None = None,
        point_labels: np.ndarray | None = None,
        box: np.ndarray | None = None,
        mask_input: np.ndarray | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Sparse and dense prompt embeddings, as ``SamPredictor`` builds them.

        Args: as :meth:`predict`.

        Returns:
            sparse (1, N, 256) and dense (1, 256, 64, 64) float32 tensors.
        """
        size = embedding.original_size
        points = None
        if point_coords is not None and len(point_coords) > MAX_POINTS:
            # The decoder's attention grows with the square of the prompt
            # tokens: 20,000 points took 24 GB.
            raise ValueError(f"{len(point_coords)} points; at most {MAX_POINTS} per prompt")
        if point_coords is not None and len(point_coords):
            if point_labels is None or len(point_labels) != len(point_coords):
                raise ValueError("point_labels must give one label per point")
            coords = to_input_frame(point_coords, size, self.sam.image_encoder.img_size)
            points = (
                torch.as_tensor(coords, dtype=torch.float, device=self.device)[None],
                torch.as_tensor(np.asarray(point_labels), dtype=torch.int, device=self.device)[None],
            )
        boxes = None
        if box is not None:
            b = to_input_frame(np.asarray(box, dtype=float).reshape(1, 2, 2), size,
                               self.sam.image_encoder.img_size).reshape(1, 4)
            boxes = torch.as_tensor(b, dtype=torch.float, device=self.device)
        masks = None
        if mask_input is not None:
            m = np.asarray(mask_input, dtype=np.float32).reshape(1, 1, 256, 256)
            masks = torch.as_tensor(m, device=self.device)
        return self.sam.prompt_encoder(points=points, boxes=boxes, masks=masks)

    def predict(
        self,
        embedding: Embedding,
        point_coords: np.ndarray | Prompt | None = None,
        point_labels: np.ndarray | None = None,
        box: np.ndarray | None = None,
        mask_input: np.ndarray | None = None,
        multimask_output: bool = True,
        *,
        guidance: np.ndarray | None = None,
        target_embedding: np.ndarray | None = None,
    ) -> MaskResult:
        """Masks for a prompt on an encoded image; decoder only, no upsampling.

        Args:
            embedding: from :meth:`encode`.
            point_coords: a :class:`~persam_studio.core.types.Prompt` (then
                ``point_labels``, ``box`` and ``mask_input`` stay None), or
                SAM's loose arguments: float (N, 2) XY in original-image
                pixels, or None.
            point_labels: int (N,) 1 = object, 0 = background.
            box: float (4,) XYXY in original-image pixels, or None.
            mask_input: float32 (1, 256, 256) low-res logits of an earlier
                result (:attr:`MaskResult.low_res_logits` ``[i:i+1]``).
            multimask_output: three candidates (True) or one.
            guidance: PerSAM's target-guided attention map ``g``, float32
                (4096,) (row-major 64x64 cells), or None.
            target_embedding: PerSAM's target embedding ``e``, float32 (256,), or None.

        Returns:
            A :class:`MaskResult`; ask it for masks at the size you need.
        """
        if isinstance(point_coords, Prompt):
            if point_labels is not None or box is not None or mask_input is not None:
                # Two prompts in one call would silently drop one of them.
                raise TypeError("give a Prompt or SAM's loose arguments, not both")
            prompt = point_coords
            point_coords, point_labels = prompt.point_coords, prompt.point_labels
            box, mask_input = prompt.box_array, prompt.mask_input
        t0 = time.perf_counter()
        with self._lock, torch.inference_mode():
            g = None if guidance is None else torch.as_tensor(
                np.asarray(guidance, dtype=np.float32).reshape(-1), device=self.device)
            e = None if target_embedding is None else torch.as_tensor(
                np.asarray(target_embedding, dtype=np.float32).reshape(-1), device=self.device)
            low_res, iou = self.decode(
                embedding, point_coords, point_labels, box, mask_input, multimask_output,
                guidance=g, target_embedding=e,
            )
        return MaskResult.from_decoder(low_res, iou, embedding, t0)

    def decode(
        self,
        embedding: Embedding,
        point_coords: np.ndarray | None = None,
        point_labels: np.ndarray | None = None,
        box: np.ndarray | None = None,
        mask_input: np.ndarray | None = None,
        multimask_output: bool = True,
        *,
        guidance: torch.Tensor | None = None,
        target_embedding: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The decoder call behind :meth:`predict`, with PerSAM's optional hooks.

        Call under ``torch.inference_mode()`` and the engine's lock.

        Args:
            embedding .. multimask_output: as :meth:`predict`.
            guidance: float (4096,) PerSAM's target-guided attention map, or None.
            target_embedding: float (256,) PerSAM's target embedding, or None.

        Returns:
            low-res logits (1, C, 256, 256) and IoU predictions (1, C) tensors.
        """
        sparse, dense = self.prompt_tensors(embedding, point_coords, point_labels, box, mask_input)
        if self._fast_decoder is not None:
            if mask_input is None:
                state = self._decoder_state(embedding)
            else:
                state = self._fast_decoder.prepare(self.features(embedding), self.dense_pe(), dense)
            return self._fast_decoder(
                state, sparse, multimask_output, guidance=guidance, target_embedding=target_embedding
            )
        if guidance is None and target_embedding is None:
            return self.sam.mask_decoder(
                image_embeddings=self.features(embedding),
                image_pe=self.dense_pe(),
                sparse_prompt_embeddings=sparse,
                dense_prompt_embeddings=dense,
                multimask_output=multimask_output,
            )
        return guided_decode(  # the exact reference path
            self.sam.mask_decoder, self.features(embedding), self.dense_pe(), sparse, dense,
            multimask_output, guidance=guidance, target_embedding=target_embedding,
        )
