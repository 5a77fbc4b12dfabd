"""The finite memories of Locater: one write rule shared by the global and the local memory.

Write rule (per frame of ``N`` tokens, memory capacity ``M`` tokens):
  * while a new frame fits whole, it is appended;
  * when a frame does not fit whole, the memory so far (or, if empty, the mean token of that frame) is padded up
    to ``M`` tokens with copies of its mean token, and that frame and every later one update it with the gated
    erase/add rule of :meth:`MemoryWriter.update`, followed by a LayerNorm.
The local memory first adds an encoding of the predicted mask to the frame features (the mask history): the
released encoding is a 3x3 convolution of the full-resolution mask resized bilinearly to the token grid, which
samples each patch near its centre (about 4 x 4 of its pixels); ``mask_encoding="patch"`` (not the released model)
instead projects every pixel of each patch, so a token also remembers which part of its patch was the object.

The local memory may instead keep a sliding window (``rule="window"``, not the released model): the newest
``M // N`` frames, verbatim and in order, so that the frames it reads at any point of a long video are the kind of
frames it read in training clips (under the gated rule a clip of ``M // N + 1`` frames never reads an updated
memory, but every later frame of a long video does).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from timm.layers import Mlp, trunc_normal_
from torch import nn

from locater.config import CHOICES

WRITE_RULES = CHOICES["model.local_memory.write"]  # the global memory has the same
MASK_ENCODINGS = CHOICES["model.local_memory.mask_encoding"]


class MemoryWriter(nn.Module):
    """Gated erase/add memory writer.

    Args:
        capacity: memory size ``M`` in tokens (> 0).
        dim: token width ``C``.
        num_heads: addressing heads ``H`` (``C`` divisible by ``H``).
        mlp_ratio: hidden width / ``C`` of the MLPs.
        candidate_norm: add a LayerNorm after the candidate MLP (the local memory does).
        rule: ``"gated"`` (the released write rule, module docstring) or ``"window"`` (keep the newest
            ``capacity // N`` frames whole; it has no update parameters).
    """

    def __init__(
        self,
        capacity: int,
        dim: int = 768,
        num_heads: int = 8,
        mlp_ratio: float = 4.0,
        candidate_norm: bool = False,
        rule: str = "gated",
    ) -> None:
        super().__init__()
        if capacity <= 0:
            raise ValueError(f"memory capacity must be positive, got {capacity}")
        if dim % num_heads:
            raise ValueError(f"memory width {dim} is not divisible by {num_heads} heads")
        if rule not in WRITE_RULES:
            raise ValueError(f"unknown memory write rule {rule!r}; expected one of {WRITE_RULES}")
        self.capacity = int(capacity)
        self.num_heads = num_heads
        self.rule = rule
        self.input_norm = nn.LayerNorm(dim)
        if rule == "gated":
            self._build_gated_update(dim, mlp_ratio, candidate_norm)
        self.apply(_init_linear_and_norm)

    def _build_gated_update(self, dim: int, mlp_ratio: float, candidate_norm: bool) -> None:
        hidden = int(dim * mlp_ratio)
        self.candidate_mlp = Mlp(2 * dim, hidden, dim)
        self.candidate_norm = nn.LayerNorm(dim) if candidate_norm else nn.Identity()
        self.address_query = nn.Linear(dim, dim)
        self.address_key = nn.Linear(dim, dim)
        self.retain_mlp = Mlp(dim, hidden, dim)
        self.add_mlp = Mlp(dim, hidden, dim)
        self.output_norm = nn.LayerNorm(dim)
        self.scale = (dim // self.num_heads) ** -0.5

    def candidate(self, tokens: torch.Tensor, memory: torch.Tensor) -> torch.Tensor:
        """``MLP([tokens ; mean(memory)])`` without materialising the concatenation.

        Args:
            tokens: ``B x N x C``; memory: ``B x M x C``.

        Returns:
            ``B x N x C`` candidate contents.
        """
        fc1 = self.candidate_mlp.fc1
        dim = tokens.shape[-1]
        hidden = F.linear(tokens, fc1.weight[:, :dim], fc1.bias)
        hidden = hidden + F.linear(memory.mean(dim=1, keepdim=True), fc1.weight[:, dim:])
        mlp = self.candidate_mlp
        hidden = mlp.drop1(mlp.act(hidden))
        out = mlp.drop2(mlp.fc2(mlp.norm(hidden)))
        return self.candidate_norm(out)

    def update(self, memory: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """One gated erase/add update (before the output LayerNorm).

        ``O = sigmoid(<Wq C, Wk M> / sqrt(d))`` per head (``B x H x N x M``);
        ``add = MLP(O^T C)`` summed over the frame's tokens; ``keep = mean_N(1 - O) * MLP(M)`` per head.

        Args:
            memory: ``B x M x C`` full memory.
            tokens: ``B x N x C`` normalised frame tokens.

        Returns:
            ``B x M x C`` ``add + keep``.
        """
        batch, size, dim = memory.shape
        num_tokens = tokens.shape[1]
        heads = self.num_heads
        head_dim = dim // heads
        candidate = self.candidate(tokens, memory)
        query = self.address_query(candidate).view(batch, num_tokens, heads, head_dim).transpose(1, 2)
        key = self.address_key(memory).view(batch, size, heads, head_dim).transpose(1, 2)
        address = torch.sigmoid(query @ key.transpose(-1, -2) * self.scale)  # B x H x N x M
        candidate_heads = candidate.view(batch, num_tokens, heads, head_dim).transpose(1, 2)
        added = (address.transpose(-1, -2) @ candidate_heads).transpose(1, 2).reshape(batch, size, dim)
        added = self.add_mlp(added)
        retained = self.retain_mlp(memory).view(batch, size, heads, head_dim).transpose(1, 2)
        # mean over N of (1 - O) * MLP(M): MLP(M) does not depend on N, so average the gate alone.
        keep_gate = 1.0 - address.mean(dim=2)  # B x H x M
        retained = (keep_gate.unsqueeze(-1) * retained).transpose(1, 2).reshape(batch, size, dim)
        return added + retained

    def write(self, memory: torch.Tensor | None, tokens: torch.Tensor) -> torch.Tensor:
        """Write one frame with the shared rule (module docstring).

        Args:
            memory: ``B x m x C`` current memory (``m <= M``), or ``None`` when empty.
            tokens: ``B x N x C`` frame tokens, already through :attr:`input_norm` (and the mask encoding).

        Returns:
            ``B x m' x C`` new memory.
        """
        num_tokens = tokens.shape[1]
        if self.rule == "window":
            return self._write_window(memory, tokens)
        if memory is None:
            if num_tokens <= self.capacity:
                return tokens
            memory = tokens.mean(dim=1, keepdim=True)
        elif memory.shape[1] < self.capacity and memory.shape[1] + num_tokens <= self.capacity:
            return torch.cat([memory, tokens], dim=1)
        if memory.shape[1] < self.capacity:
            padding = memory.mean(dim=1, keepdim=True).expand(-1, self.capacity - memory.shape[1], -1)
            memory = torch.cat([memory, padding], dim=1)
        return self.output_norm(self.update(memory, tokens))

    def _write_window(self, memory: torch.Tensor | None, tokens: torch.Tensor) -> torch.Tensor:
        """Append the frame and keep the newest ``capacity // N`` frames (oldest first)."""
        num_tokens = tokens.shape[1]
        frames = self.capacity // num_tokens
        if frames < 1:
            raise ValueError(
                f"a sliding-window memory of {self.capacity} tokens cannot hold one frame of {num_tokens} tokens"
            )
        memory = tokens if memory is None else torch.cat([memory, tokens], dim=1)
        return memory[:, -frames * num_tokens :]


class GlobalMemory(MemoryWriter):
    """Memory of the whole video, built once per (video, expression) from ``N1`` frames.

    With ``rule="window"`` (not the released model) it keeps every one of the ``N1`` frames verbatim, in order; its
    capacity must then hold them all.
    """

    def build(self, frame_tokens: torch.Tensor) -> torch.Tensor:
        """Args:
            frame_tokens: ``B x N1 x N x C`` fused features of the global frames (no CLS).

        Returns:
            ``B x M x C`` memory (or fewer tokens when all frames fit whole).
        """
        num_global_frames, num_tokens = frame_tokens.shape[1:3]
        if self.rule == "window" and num_global_frames * num_tokens > self.capacity:
            raise ValueError(
                f"a global memory kept as whole frames (write=window) of {self.capacity} tokens cannot hold its "
                f"{num_global_frames} frames of {num_tokens} tokens: set model.global_memory.size >= num_frames"
            )
        tokens = self.input_norm(frame_tokens)
        memory = None
        for index in range(tokens.shape[1]):
            memory = self.write(memory, tokens[:, index])
        return memory


class LocalMemory(MemoryWriter):
    """Memory of recent frames and of the model's own past masks.

    Args:
        mask_history: add the encoding of the written mask to the frame features.
        rule: ``"gated"`` (released) or ``"window"`` (the newest frames, verbatim).
        mask_encoding: ``"conv"`` (released: a 3x3 convolution, then a bilinear resize to the token grid) or
            ``"patch"`` (each ``patch_size x patch_size`` patch of the mask, flattened, through a linear layer).
        patch_size: pixels per token side (needed by ``mask_encoding="patch"``).
        (other arguments as :class:`MemoryWriter`; the candidate MLP is followed by a LayerNorm.)
    """

    def __init__(
        self,
        capacity: int,
        dim: int = 768,
        num_heads: int = 8,
        mlp_ratio: float = 4.0,
        mask_history: bool = True,
        rule: str = "gated",
        mask_encoding: str = "conv",
        patch_size: int | None = None,
    ) -> None:
        super().__init__(capacity, dim, num_heads, mlp_ratio, candidate_norm=True, rule=rule)
        if mask_encoding not in MASK_ENCODINGS:
            raise ValueError(f"unknown mask encoding {mask_encoding!r}; expected one of {MASK_ENCODINGS}")
        self.mask_history = mask_history
        self.mask_encoding = mask_encoding
        self.mask_encoder: nn.Module
        if mask_encoding == "patch":
            if not patch_size or patch_size < 1:
                raise ValueError(f"mask_encoding='patch' needs a positive patch_size, got {patch_size}")
            self.patch_size = int(patch_size)
            self.mask_encoder = nn.Linear(self.patch_size**2, dim)
        else:
            self.mask_encoder = nn.Conv2d(1, dim, kernel_size=3, padding=1)

    def encode_mask(self, mask: torch.Tensor, grid_size: tuple[int, int]) -> torch.Tensor:
        """The mask's encoding on the token grid (:attr:`mask_encoding`: :meth:`_encode_mask_conv` or
        :meth:`_encode_mask_patches`).

        Args:
            mask: ``B x 1 x H x W`` float mask (0/1).
            grid_size: ``(h, w)`` token grid.

        Returns:
            ``B x (h*w) x C`` mask encoding.
        """
        if self.mask_encoding == "patch":
            return self._encode_mask_patches(mask, grid_size)
        return self._encode_mask_conv(mask, grid_size)

    def _encode_mask_patches(self, mask: torch.Tensor, grid_size: tuple[int, int]) -> torch.Tensor:
        """Each ``p x p`` patch of the mask (row-major pixels) through one linear layer: ``B x (h*w) x C``."""
        batch, _, height, width = mask.shape
        grid_h, grid_w = grid_size
        p = self.patch_size
        if (height, width) != (grid_h * p, grid_w * p):
            raise ValueError(f"a {height}x{width} mask is not a {grid_h}x{grid_w} grid of {p}-pixel patches")
        patches = mask.view(batch, grid_h, p, grid_w, p).permute(0, 1, 3, 2, 4)
        return self.mask_encoder(patches.reshape(batch, grid_h * grid_w, p * p))

    def _encode_mask_conv(self, mask: torch.Tensor, grid_size: tuple[int, int]) -> torch.Tensor:
        """Conv3x3 on the full-resolution mask, then bilinear resize (align_corners=False) to the token grid.

        Both operations are linear, so the resize is applied to the 9 shifted copies of the mask first and the
        convolution weights combine the 9 small maps: the same result without the ``C x H x W`` tensor.

        Args:
            mask: ``B x 1 x H x W`` float mask (0/1).
            grid_size: ``(h, w)`` token grid.

        Returns:
            ``B x (h*w) x C`` mask encoding.
        """
        batch, _, height, width = mask.shape
        grid_h, grid_w = grid_size
        dtype = mask.dtype
        rows = _shifted_resize_matrix(height, grid_h, mask.device, dtype)  # 3 x h x (H+2)
        cols = _shifted_resize_matrix(width, grid_w, mask.device, dtype)  # 3 x w x (W+2)
        padded = F.pad(mask[:, 0], (1, 1, 1, 1))  # B x (H+2) x (W+2)
        # pooled[b, dy, dx, i, j] = sum_yx rows[dy, i, y] * padded[b, y, x] * cols[dx, j, x]
        pooled = torch.einsum("piy,byx->bpix", rows, padded)
        pooled = torch.einsum("bpix,qjx->bpqij", pooled, cols)  # B x 3 x 3 x h x w
        weight = self.mask_encoder.weight.to(dtype).view(-1, 9)  # C x 9 (dy-major, dx-minor)
        encoding = torch.einsum("bkn,ck->bnc", pooled.reshape(batch, 9, grid_h * grid_w), weight)
        return encoding + self.mask_encoder.bias.to(dtype)

    def prepare(
        self, features: torch.Tensor, mask: torch.Tensor | None, grid_size: tuple[int, int]
    ) -> torch.Tensor:
        """Frame tokens to write: ``LayerNorm(features + encode_mask(mask))``.

        Args:
            features: ``B x N x C`` frame features ``V_t``.
            mask: ``B x 1 x H x W`` binary mask to remember, or ``None`` (mask history disabled).
            grid_size: ``(h, w)`` with ``h * w = N``.

        Returns:
            ``B x N x C`` normalised tokens.
        """
        if self.mask_history and mask is not None:
            features = features + self.encode_mask(mask.to(features.dtype), grid_size)
        return self.input_norm(features)


def _shifted_resize_matrix(
    size: int, out_size: int, device: torch.device, dtype: torch.dtype
) -> torch.Tensor:
    """Bilinear (align_corners=False) 1-D resize ``size -> out_size`` as a matrix, for the 3 shifts of a 3x3 conv.

    Returns:
        ``3 x out_size x (size + 2)``: entry ``[d, i, y]`` is the weight of padded input ``y`` in output ``i`` for
        a kernel offset ``d``.
    """
    eye = torch.eye(size, device=device, dtype=torch.float64).unsqueeze(1)  # size x 1 x size
    resize = F.interpolate(eye, size=out_size, mode="linear", align_corners=False)[:, 0].T  # out x size
    shifted = torch.zeros(3, out_size, size + 2, device=device, dtype=torch.float64)
    for offset in range(3):
        shifted[offset, :, offset : offset + size] = resize
    return shifted.to(dtype)


def _init_linear_and_norm(module: nn.Module) -> None:
    if isinstance(module, nn.Linear):
        trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)
