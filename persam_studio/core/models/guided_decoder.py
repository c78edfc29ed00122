"""SAM's mask decoder with PerSAM's two hooks, without touching segment_anything.

PerSAM (Zhang et al., arXiv 2305.03048) changes two things inside SAM's mask
decoder for its first prediction on a test image:

* **Target-guided attention.** In the token-to-image cross-attention of every
  two-way block (not the final token-to-image attention, not the
  image-to-token attention), after the usual softmax, the guidance map ``g``
  (4096 values, one per embedding cell) is added to every row and the softmax
  is applied again.
* **Target-semantic prompting.** The target embedding ``e`` (256 values) is
  added to the query tokens (output tokens + prompt tokens) before each two-way
  block and to the queries of the final token-to-image attention. The
  reference code adds it in place to a tensor that is also the query
  positional encoding, so that positional encoding carries ``e`` once: every
  block and the final attention see ``query_pe = tokens + e``.

:func:`decode` runs the decoder forward *functionally*: it calls the
package's own submodules (attention projections, norms, MLPs, upscaling,
hypernetworks, IoU head) in the order ``MaskDecoder.forward`` does, and only
re-implements the two forwards that host a hook (the transformer and, when
``g`` is given, the two-way block and its token-to-image attention). No module
is patched, so concurrent callers cannot see each other's hooks. With no
``g`` and no ``e`` the result equals ``sam.mask_decoder(...)`` exactly (the
same operations in the same order; tests/core/test_guidance.py checks it).
"""

from __future__ import annotations

import math

import torch
from segment_anything.modeling.mask_decoder import MaskDecoder
from segment_anything.modeling.transformer import Attention, TwoWayAttentionBlock, TwoWayTransformer


def guided_attention(attn: Attention, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                     guidance: torch.Tensor | None) -> torch.Tensor:
    """``Attention.forward`` with target guidance after the softmax.

    Args:
        attn: a segment_anything ``Attention`` module (its weights are used).
        q, k, v: (B, N_q, C), (B, N_k, C), (B, N_k, C) as for ``attn``.
        guidance: broadcastable to the attention map (B, heads, N_q, N_k),
            e.g. (1, 1, 1, 4096); ``None`` gives the stock forward.

    Returns:
        (B, N_q, C) attention output.
    """
    if guidance is None:
        return attn(q=q, k=k, v=v)
    q = attn._separate_heads(attn.q_proj(q), attn.num_heads)
    k = attn._separate_heads(attn.k_proj(k), attn.num_heads)
    v = attn._separate_heads(attn.v_proj(v), attn.num_heads)
    _, _, _, c_per_head = q.shape
    logits = q @ k.permute(0, 1, 3, 2) / math.sqrt(c_per_head)
    weights = torch.softmax(logits, dim=-1)
    # PerSAM: the similarity map re-weights which cells each token looks at.
    weights = torch.softmax(weights + guidance, dim=-1)
    out = attn._recombine_heads(weights @ v)
    return attn.out_proj(out)


def token_self_attention(block: TwoWayAttentionBlock, queries: torch.Tensor,
                         query_pe: torch.Tensor) -> torch.Tensor:
    """The first step of ``TwoWayAttentionBlock.forward``: self-attention of the (B, N, C) tokens, then norm1."""
    if block.skip_first_layer_pe:
        queries = block.self_attn(q=queries, k=queries, v=queries)
    else:
        q = queries + query_pe
        queries = queries + block.self_attn(q=q, k=q, v=queries)
    return block.norm1(queries)


def guided_block(block: TwoWayAttentionBlock, queries: torch.Tensor, keys: torch.Tensor,
                 query_pe: torch.Tensor, key_pe: torch.Tensor,
                 guidance: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """``TwoWayAttentionBlock.forward`` with guidance in its token-to-image attention only."""
    if guidance is None:
        return block(queries=queries, keys=keys, query_pe=query_pe, key_pe=key_pe)
    queries = token_self_attention(block, queries, query_pe)

    q = queries + query_pe
    k = keys + key_pe
    queries = queries + guided_attention(block.cross_attn_token_to_image, q, k, keys, guidance)
    queries = block.norm2(queries)

    queries = block.norm3(queries + block.mlp(queries))

    q = queries + query_pe
    k = keys + key_pe
    keys = keys + block.cross_attn_image_to_token(q=k, k=q, v=queries)
    keys = block.norm4(keys)
    return queries, keys


def two_way_forward(transformer: TwoWayTransformer, image_embedding: torch.Tensor,
                    image_pe: torch.Tensor, point_embedding: torch.Tensor,
                    guidance: torch.Tensor | None = None,
                    target_embedding: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """``TwoWayTransformer.forward`` with PerSAM's hooks.

    Args:
        image_embedding, image_pe: (B, C, h, w).
        point_embedding: (B, N, C) query tokens (output + prompt tokens).
        guidance: broadcastable to (B, heads, N, h*w) or ``None``.
        target_embedding: broadcastable to (B, N, C), e.g. (1, 1, 256), or ``None``.

    Returns:
        queries (B, N, C) and keys (B, h*w, C), as the stock forward.
    """
    image_embedding = image_embedding.flatten(2).permute(0, 2, 1)
    image_pe = image_pe.flatten(2).permute(0, 2, 1)
    query_pe = point_embedding
    queries = point_embedding
    keys = image_embedding
    for i, layer in enumerate(transformer.layers):
        if target_embedding is not None:
            queries = queries + target_embedding
            if i == 0:
                # The reference adds e in place to the very tensor that is
                # also the query PE; only the first addition reaches it
                # (later ``queries`` are fresh tensors from the blocks).
                query_pe = queries
        queries, keys = guided_block(layer, queries, keys, query_pe, image_pe, guidance)
    q = queries + query_pe
    k = keys + image_pe
    if target_embedding is not None:
        q = q + target_embedding
    # The final token-to-image attention is never guided.
    queries = queries + transformer.final_attn_token_to_image(q=q, k=k, v=keys)
    queries = transformer.norm_final_attn(queries)
    return queries, keys


def decode(decoder: MaskDecoder, image_embeddings: torch.Tensor, image_pe: torch.Tensor,
           sparse_prompt_embeddings: torch.Tensor, dense_prompt_embeddings: torch.Tensor,
           multimask_output: bool, *, guidance: torch.Tensor | None = None,
           target_embedding: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """``MaskDecoder.forward`` with optional target guidance and target embedding.

    Args:
        decoder: ``sam.mask_decoder``.
        image_embeddings: (1, 256, 64, 64); image_pe: (1, 256, 64, 64).
        sparse_prompt_embeddings: (B, N, 256); dense_prompt_embeddings: (B, 256, 64, 64).
        multimask_output: masks 1..3 (True) or mask 0 (False), as the stock decoder.
        guidance: float (4096,) (or anything broadcastable to the attention
            map (B, heads, N_tokens, 4096)): PerSAM's ``g``.
        target_embedding: float (256,) (or broadcastable to (B, N, 256)): PerSAM's ``e``.

    Returns:
        low-res mask logits (B, C, 256, 256) and IoU predictions (B, C),
        C = 3 with multimask output, else 1.
    """
    if guidance is not None and guidance.dim() == 1:
        guidance = guidance.reshape(1, 1, 1, -1)
    if target_embedding is not None and target_embedding.dim() == 1:
        target_embedding = target_embedding.reshape(1, 1, -1)

    output_tokens = torch.cat([decoder.iou_token.weight, decoder.mask_tokens.weight], dim=0)
    output_tokens = output_tokens.unsqueeze(0).expand(sparse_prompt_embeddings.size(0), -1, -1)
    tokens = torch.cat((output_tokens, sparse_prompt_embeddings), dim=1)

    src = torch.repeat_interleave(image_embeddings, tokens.shape[0], dim=0)
    src = src + dense_prompt_embeddings
    pos_src = torch.repeat_interleave(image_pe, tokens.shape[0], dim=0)
    b, c, h, w = src.shape

    hs, src = two_way_forward(decoder.transformer, src, pos_src, tokens, guidance, target_embedding)
    iou_token_out = hs[:, 0, :]
    mask_tokens_out = hs[:, 1 : (1 + decoder.num_mask_tokens), :]

    src = src.transpose(1, 2).view(b, c, h, w)
    upscaled = decoder.output_upscaling(src)
    hyper_in = torch.stack(
        [decoder.output_hypernetworks_mlps[i](mask_tokens_out[:, i, :]) for i in range(decoder.num_mask_tokens)],
        dim=1,
    )
    b, c, h, w = upscaled.shape
    masks = (hyper_in @ upscaled.view(b, c, h * w)).view(b, -1, h, w)
    iou_pred = decoder.iou_prediction_head(iou_token_out)

    mask_slice = slice(1, None) if multimask_output else slice(0, 1)
    return masks[:, mask_slice, :, :], iou_pred[:, mask_slice]
