"""Mask decoder and auxiliary heads."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from locater.config import CHOICES

ACTIVATIONS = CHOICES["model.decoder_activation"]


class MaskDecoder(nn.Module):
    """Dot-product maps of the read features against the queries, concatenated after the features, then a chain
    of 3x3 convolutions with x2 bilinear upsamplings (no normalisation or activation in between).

    Args:
        dim: width ``C``.
        num_heads: heads ``H``; with ``Q = H`` queries this gives ``H * Q`` maps.
        num_upsamples: number of x2 upsamplings (``log2(patch_size)``: 4 for 16-pixel patches).
        width: hidden channels (0: ``(C + H*H) // 4``, the released 208).
        activation: ``"none"`` (the released decoder: a linear chain) or ``"relu"`` (a ReLU after every hidden
            convolution; same parameters, so the same checkpoint keys).
        image_skip: also feed the input frame, average-pooled to each upsampled scale, to every convolution after
            an upsampling (3 more input channels each; not the released decoder, whose masks come from the token
            grid alone). Then :meth:`forward` needs ``image``.
        refine: ``R > 0`` adds a per-pixel layer at the output resolution before the last convolution: a 1x1
            convolution of the upsampled features (and the frame, with ``image_skip``) to ``R`` channels and a ReLU
            (the last convolution then reads ``R`` channels). Without it the output is a linear function of the
            upsampled features and the frame's pixels; with it the mask can follow a non-linear test of each
            pixel (its colour) at full resolution. Not in the released decoder (0).
    """

    def __init__(
        self,
        dim: int = 768,
        num_heads: int = 8,
        num_upsamples: int = 4,
        width: int = 0,
        activation: str = "none",
        image_skip: bool = False,
        refine: int = 0,
    ) -> None:
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(f"decoder activation must be none or relu, got {activation!r}")
        self.activation = activation
        self.num_heads = num_heads
        self.feature_proj = nn.Linear(dim, dim)
        self.query_proj = nn.Linear(dim, dim)
        in_channels = dim + num_heads * num_heads
        width = width or in_channels // 4
        self.image_skip = bool(image_skip)
        skip = 3 if self.image_skip else 0
        if refine < 0:
            raise ValueError(f"decoder refine must be >= 0, got {refine}")
        if refine and num_upsamples < 1:
            raise ValueError("decoder refine needs at least one upsampling")
        channels = [in_channels] + [width] * num_upsamples + [1]
        inputs = channels[:-1]
        if refine:
            inputs[-1] = refine  # the last convolution reads the refined channels
        self.convs = nn.ModuleList(
            nn.Conv2d(c_in + (skip if index else 0), c_out, kernel_size=3, padding=1)
            for index, (c_in, c_out) in enumerate(zip(inputs, channels[1:]))
        )
        self.refine = nn.Conv2d(width + skip, refine, kernel_size=1) if refine else None
        self.scale = (dim // num_heads) ** -0.5

    def forward(
        self,
        features: torch.Tensor,
        queries: torch.Tensor,
        grid_size: tuple[int, int],
        image: torch.Tensor | None = None,
        image_index: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Args:
            features: ``B x N x C`` read features (``N = h * w``).
            queries: ``B x Q x C`` queries.
            grid_size: ``(h, w)``.
            image: ``V x 3 x (h * 2^u) x (w * 2^u)`` pre-processed frames (only with ``image_skip``).
            image_index: ``B`` int64, the frame of each row (default: row ``b`` reads frame ``b``; several
                expressions of one video share its frame, whose part of each convolution is computed once).

        Returns:
            ``B x 1 x (h * 2^u) x (w * 2^u)`` mask logits.
        """
        batch, num_tokens, dim = features.shape
        heads = self.num_heads
        head_dim = dim // heads
        f = (
            self.feature_proj(features).view(batch, num_tokens, heads, head_dim).transpose(1, 2)
        )  # B x H x N x D
        q = self.query_proj(queries).view(batch, -1, heads, head_dim).transpose(1, 2)  # B x H x Q x D
        maps = (q @ f.transpose(-1, -2)) * self.scale  # B x H x Q x N, channel order h * Q + q
        x = torch.cat([features.transpose(1, 2), maps.reshape(batch, -1, num_tokens)], dim=1)
        # channels-last: the same arithmetic, but PyTorch's CPU bilinear upsampling of channels-first maps is
        # about 15x slower (half of a step of the small synthetic model went there)
        x = x.reshape(batch, -1, *grid_size).contiguous(memory_format=torch.channels_last)
        if self.image_skip:
            if image is None:
                raise ValueError("this decoder has image_skip: pass the frame as image")
            image = image.contiguous(memory_format=torch.channels_last)
        x = self.convs[0](x)
        last = len(self.convs) - 1
        for index, conv in enumerate(self.convs[1:], start=1):
            if self.activation == "relu":
                x = F.relu(x)
            refining = index == last and self.refine is not None
            if refining:
                # the refinement's 1x1 convolution of the features (and its bias) commutes with the bilinear
                # upsampling (both linear; the interpolation weights sum to 1): applied before it, on a quarter of
                # the pixels
                width = x.shape[1]
                x = F.conv2d(x, self.refine.weight[:, :width], self.refine.bias)
            x = F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False)
            pooled = F.adaptive_avg_pool2d(image, x.shape[-2:]) if self.image_skip else None
            if refining:
                if pooled is not None:
                    frame_part = F.conv2d(pooled, self.refine.weight[:, width:])
                    x.add_(frame_part if image_index is None else frame_part[image_index])
                x = F.relu_(x)
            x = self._conv_with_frame(conv, x, pooled, image_index)
        return x.contiguous()

    @staticmethod
    def _conv_with_frame(
        conv: nn.Conv2d,
        x: torch.Tensor,
        pooled: torch.Tensor | None,
        image_index: torch.Tensor | None,
    ) -> torch.Tensor:
        """``conv([x ; pooled frame])`` (just ``conv(x)`` without a frame), as the sum of its two parts: no
        concatenation, and the frame's part once per frame rather than once per expression."""
        if pooled is None:
            return conv(x)
        width = x.shape[1]
        skip = F.conv2d(pooled, conv.weight[:, width:], None, padding=conv.padding)
        x = F.conv2d(x, conv.weight[:, :width], conv.bias, padding=conv.padding)
        return x + (skip if image_index is None else skip[image_index])


class AuxiliaryHead(nn.Module):
    """Training-only head on one fusion stage: Conv1x1, BatchNorm, ReLU, Conv1x1, bilinear upsampling."""

    def __init__(self, dim: int = 768, upsample: int = 16) -> None:
        super().__init__()
        self.conv_in = nn.Conv2d(dim, dim, kernel_size=1)
        self.norm = nn.BatchNorm2d(dim)
        self.conv_out = nn.Conv2d(dim, 1, kernel_size=1)
        self.upsample = upsample

    def forward(self, tokens: torch.Tensor, grid_size: tuple[int, int]) -> torch.Tensor:
        """Args:
            tokens: ``B x N x C`` stage output without CLS.
            grid_size: ``(h, w)``.

        Returns:
            ``B x 1 x (h * upsample) x (w * upsample)`` logits.
        """
        x = tokens.transpose(1, 2).reshape(tokens.shape[0], -1, *grid_size)
        x = self.conv_out(F.relu(self.norm(self.conv_in(x))))
        return F.interpolate(x, scale_factor=float(self.upsample), mode="bilinear", align_corners=False)


def num_upsamples_for(patch_size: int) -> int:
    """``log2(patch_size)``; the decoder needs a power-of-two patch size."""
    exponent = int(round(math.log2(patch_size))) if patch_size > 0 else -1
    if exponent < 1 or 2**exponent != patch_size:
        raise ValueError(f"patch_size must be a power of two >= 2, got {patch_size}")
    return exponent
