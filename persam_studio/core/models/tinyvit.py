"""MobileSAM's image encoder (model type ``vit_t``): TinyViT-5M with a SAM neck.

Written from the published architecture (TinyViT, Wu et al. 2022; MobileSAM,
Zhang et al. 2023; facts in docs/mobilesam.md): a convolutional stem to 1/4
resolution, one stage of MBConv blocks, three stages of windowed-attention
blocks with learned per-offset attention biases and a depthwise "local" conv,
patch merging between stages, and SAM's neck to a (256, 64, 64) embedding.
Parameter names and shapes are those of the released ``mobile_sam.pt`` (its
``image_encoder.*`` entries), so that state dict loads with ``strict=True``.

Inference speed: every conv is followed by BatchNorm in the checkpoint. In
eval mode with autograd off, each conv+BN pair runs as one conv with the BN
folded into its weights and bias; the folded tensors are computed on first
use and recomputed whenever the weights or statistics change (loading a state
dict, ``.to(device)``), so nothing needs calling after loading and the state
dict always keeps the original, unfolded tensors. Tokens stay channels-last
(B, H, W, C) between stages so the linear layers, the windowing and the
depthwise convs need no transposes, and the projections skip window padding.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from segment_anything.modeling.common import LayerNorm2d
from torch import nn

from persam_studio.core.models.fast_vit import from_windows, to_windows


def _gelu(x: torch.Tensor) -> torch.Tensor:
    """Exact GELU; in place when autograd is off (saves a full-size allocation)."""
    if torch.is_grad_enabled():
        return F.gelu(x)
    return torch.ops.aten.gelu_(x)


class Conv2dBN(nn.Module):
    """Conv (no bias) then BatchNorm: the checkpoint's ``<name>.c`` and ``<name>.bn``."""

    def __init__(self, cin: int, cout: int, kernel: int = 1, stride: int = 1, padding: int = 0,
                 groups: int = 1) -> None:
        super().__init__()
        self.c = nn.Conv2d(cin, cout, kernel, stride, padding, groups=groups, bias=False)
        self.bn = nn.BatchNorm2d(cout)
        self._folded: tuple[tuple, torch.Tensor, torch.Tensor] | None = None

    def _state(self) -> tuple:
        # Identity and version of every tensor the fold depends on: in-place
        # loading bumps versions, assign-loading and .to() change identities.
        ts = (self.c.weight, self.bn.weight, self.bn.bias, self.bn.running_mean, self.bn.running_var)
        return tuple((t.data_ptr(), t._version, t.device, t.dtype) for t in ts) + (self.bn.eps,)

    def folded(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(weight, bias) of the equivalent single conv, BN statistics folded in."""
        key = self._state()
        if self._folded is None or self._folded[0] != key:
            with torch.no_grad():
                bn = self.bn
                scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
                weight = self.c.weight * scale.view(-1, 1, 1, 1)
                bias = bn.bias - bn.running_mean * scale
            self._folded = (key, weight, bias)
        return self._folded[1], self._folded[2]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training or torch.is_grad_enabled():
            return self.bn(self.c(x))
        weight, bias = self.folded()
        c = self.c
        if _pointwise(c) and x.is_contiguous(memory_format=torch.channels_last):
            return _pointwise_conv(x, weight, bias)
        return F.conv2d(x, weight, bias, c.stride, c.padding, c.dilation, c.groups)


def _pointwise(conv: nn.Conv2d) -> bool:
    return conv.kernel_size == (1, 1) and conv.stride == (1, 1) and conv.padding == (0, 0) and conv.groups == 1


def _pointwise_conv(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """A 1x1 conv of channels-last (B, C, H, W) as one matrix product over pixels.

    torch runs such convs through im2col plus a broadcast bias copy; on
    channels-last memory the pixels are already rows of a (B*H*W, C) matrix.
    Returns (B, C', H, W), channels-last.
    """
    return F.linear(x.permute(0, 2, 3, 1), weight.view(weight.shape[0], -1), bias).permute(0, 3, 1, 2)


class PatchEmbed(nn.Module):
    """Two stride-2 3x3 convs: (B, 3, H, W) -> (B, dim, H/4, W/4)."""

    def __init__(self, in_chans: int, dim: int) -> None:
        super().__init__()
        self.seq = nn.Sequential(Conv2dBN(in_chans, dim // 2, 3, 2, 1), nn.GELU(), Conv2dBN(dim // 2, dim, 3, 2, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.seq[2](_gelu(self.seq[0](x)))


class MBConv(nn.Module):
    """Inverted residual: 1x1 expand, 3x3 depthwise, 1x1 project, residual, GELU."""

    def __init__(self, dim: int, expand: float) -> None:
        super().__init__()
        hidden = int(dim * expand)
        self.conv1 = Conv2dBN(dim, hidden)
        self.conv2 = Conv2dBN(hidden, hidden, 3, 1, 1, groups=hidden)
        self.conv3 = Conv2dBN(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W)
        y = self.conv3(_gelu(self.conv2(_gelu(self.conv1(x)))))
        return _gelu(y.add_(x) if not torch.is_grad_enabled() else y + x)


class PatchMerging(nn.Module):
    """1x1 conv, strided 3x3 depthwise conv, 1x1 conv: (B, C, H, W) -> (B, C', H/s, W/s)."""

    def __init__(self, dim: int, out_dim: int, stride: int) -> None:
        super().__init__()
        self.conv1 = Conv2dBN(dim, out_dim)
        self.conv2 = Conv2dBN(out_dim, out_dim, 3, stride, 1, groups=out_dim)
        self.conv3 = Conv2dBN(out_dim, out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv3(_gelu(self.conv2(_gelu(self.conv1(x)))))


class ConvLayer(nn.Module):
    """Stage 0: MBConv blocks, then patch merging."""

    def __init__(self, dim: int, depth: int, out_dim: int, stride: int, expand: float) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(MBConv(dim, expand) for _ in range(depth))
        self.downsample = PatchMerging(dim, out_dim, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W) -> (B, C', H', W')
        for blk in self.blocks:
            x = blk(x)
        return self.downsample(x)


class Attention(nn.Module):
    """Multi-head self-attention in a window, with a learned bias per (|dy|, |dx|) offset."""

    def __init__(self, dim: int, heads: int, window: int) -> None:
        super().__init__()
        self.heads, self.head_dim, self.window = heads, dim // heads, window
        self.scale = self.head_dim**-0.5
        self.norm = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        # One bias per head and offset; offset (dy, dx) has index dy * window + dx.
        self.attention_biases = nn.Parameter(torch.zeros(heads, window * window))
        self._index: torch.Tensor | None = None

    def bias(self) -> torch.Tensor:
        """(heads, N, N) additive attention bias for N = window**2 tokens in row-major order."""
        ab = self.attention_biases
        if self._index is None or self._index.device != ab.device:
            # A normal tensor even when first built under inference_mode, so a
            # later forward with autograd on can still index with it.
            with torch.inference_mode(False):
                r = torch.arange(self.window, device=ab.device)
                dy = (r[:, None, None, None] - r[None, None, :, None]).abs()
                dx = (r[None, :, None, None] - r[None, None, None, :]).abs()
                self._index = (dy * self.window + dx).reshape(self.window**2, self.window**2)
        return ab[:, self._index]

    def attend(self, qkv: torch.Tensor) -> torch.Tensor:
        """(B', N, 3C) qkv of windows -> (B', N, C) attention output before ``proj``.

        The checkpoint's qkv channels are grouped per head: [q_h, k_h, v_h].
        """
        Bw, N, _ = qkv.shape
        q, k, v = qkv.view(Bw, N, self.heads, 3, self.head_dim).permute(3, 0, 2, 1, 4).unbind(0)
        mask = self.bias().to(q.dtype)[None]
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=self.scale)
        return out.transpose(1, 2).reshape(Bw, N, -1)


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(_gelu(self.fc1(self.norm(x))))


class TinyViTBlock(nn.Module):
    """Windowed attention (+residual), depthwise 3x3 local conv, MLP (+residual)."""

    def __init__(self, dim: int, heads: int, window: int, mlp_ratio: float, local_conv: int) -> None:
        super().__init__()
        self.window = window
        self.attn = Attention(dim, heads, window)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        self.local_conv = Conv2dBN(dim, dim, local_conv, 1, local_conv // 2, groups=dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, H, W, C) contiguous
        B, H, W, C = x.shape
        ws, attn = self.window, self.attn
        # The grid is zero-padded to whole windows *before* the attention's
        # LayerNorm, so a padded token's qkv is qkv(norm.bias); computing the
        # real tokens only and filling the padding with that vector is the same.
        qkv = attn.qkv(attn.norm(x))
        nH, nW = -(-H // ws), -(-W // ws)
        if (nH * ws, nW * ws) == (H, W):
            windows = qkv.view(B, nH, ws, nW, ws, 3 * C).permute(0, 1, 3, 2, 4, 5).contiguous()
        else:
            windows = qkv.new_empty(B, nH, nW, ws, ws, 3 * C)
            fill = attn.qkv.bias
            if attn.norm.bias is not None:
                fill = F.linear(attn.norm.bias, attn.qkv.weight, attn.qkv.bias)
            to_windows(qkv, windows, fill=fill)
        out = attn.attend(windows.view(B * nH * nW, ws * ws, 3 * C))
        y = out.new_empty(B, H, W, C)
        from_windows(out.view(B, nH, nW, ws, ws, C), y)
        x = x + attn.proj(y)
        # Depthwise conv on the channels-last view; its output stays channels-last.
        x = self.local_conv(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
        return x + self.mlp(x)


class BasicLayer(nn.Module):
    """Stages 1-3: TinyViT blocks, then patch merging (all but the last stage)."""

    def __init__(self, dim: int, depth: int, heads: int, window: int, mlp_ratio: float, local_conv: int,
                 out_dim: int | None, stride: int) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(
            TinyViTBlock(dim, heads, window, mlp_ratio, local_conv) for _ in range(depth)
        )
        self.downsample = PatchMerging(dim, out_dim, stride) if out_dim is not None else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, H, W, C) -> (B, H', W', C')
        for blk in self.blocks:
            x = blk(x)
        if self.downsample is not None:
            x = self.downsample(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
        return x


class TinyViT(nn.Module):
    """MobileSAM's image encoder: (B, 3, 1024, 1024) -> (B, 256, 64, 64).

    Defaults are MobileSAM's configuration (docs/mobilesam.md). ``norm_head``
    and ``head`` are TinyViT's classifier, unused here but present in the
    checkpoint (so strict loading needs them).
    """

    def __init__(self, img_size: int = 1024, in_chans: int = 3,
                 embed_dims: tuple[int, ...] = (64, 128, 160, 320), depths: tuple[int, ...] = (2, 2, 6, 2),
                 num_heads: tuple[int, ...] = (2, 4, 5, 10), window_sizes: tuple[int, ...] = (7, 7, 14, 7),
                 merge_strides: tuple[int, ...] = (2, 2, 1), mlp_ratio: float = 4.0,
                 mbconv_expand_ratio: float = 4.0, local_conv_size: int = 3, out_chans: int = 256,
                 num_classes: int = 1000) -> None:
        super().__init__()
        self.img_size = img_size  # Sam.preprocess pads to this
        self.patch_embed = PatchEmbed(in_chans, embed_dims[0])
        self.layers = nn.ModuleList([
            ConvLayer(embed_dims[0], depths[0], embed_dims[1], merge_strides[0], mbconv_expand_ratio)
        ])
        for i in range(1, len(embed_dims)):
            last = i == len(embed_dims) - 1
            self.layers.append(BasicLayer(
                embed_dims[i], depths[i], num_heads[i], window_sizes[i], mlp_ratio, local_conv_size,
                None if last else embed_dims[i + 1], 1 if last else merge_strides[i],
            ))
        self.norm_head = nn.LayerNorm(embed_dims[-1])
        self.head = nn.Linear(embed_dims[-1], num_classes)
        self.neck = nn.Sequential(
            nn.Conv2d(embed_dims[-1], out_chans, 1, bias=False),
            LayerNorm2d(out_chans),
            nn.Conv2d(out_chans, out_chans, 3, padding=1, bias=False),
            LayerNorm2d(out_chans),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: float (B, 3, img, img) normalised as ``Sam.preprocess`` makes it.

        Returns float (B, 256, img/16, img/16), contiguous.
        """
        x = self.patch_embed(x.contiguous(memory_format=torch.channels_last))
        x = self.layers[0](x).permute(0, 2, 3, 1)  # channels-last memory: a free view
        for layer in self.layers[1:]:
            x = layer(x.contiguous())
        x = x.contiguous().permute(0, 3, 1, 2)  # (B, C, H, W), channels-last
        if _pointwise(self.neck[0]):
            x = _pointwise_conv(x, self.neck[0].weight, self.neck[0].bias)
        else:
            x = self.neck[0](x)
        return self.neck[3](self.neck[2](self.neck[1](x))).contiguous()


def mobile_sam_encoder() -> TinyViT:
    """The encoder of a ``vit_t`` SAM (``sam_build`` builds it for model type ``vit_t``)."""
    return TinyViT()
