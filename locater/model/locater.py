"""The Locater model: composes the parts and exposes the streaming API ``start`` / ``step``.

Nothing per video lives in the module: :class:`LocaterState` carries the word features, both memories and the
frame counter, so many videos and expressions can run side by side. A batch may hold several expressions of the
same video (``video_index``): the vision encoder runs once per frame for all of them.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from locater.model.decoder import MaskDecoder
from locater.model.memory import GlobalMemory, LocalMemory
from locater.model.query import QueryGenerator
from locater.model.reader import MemoryReader
from locater.model.text import TextEncoder
from locater.model.vision import VisionEncoder


@dataclass
class LocaterState:
    """Per-(video, expression) streaming state.

    Attributes:
        words: ``B x L x C`` word features (the sentence is encoded once, in ``start``).
        global_memory: ``B x Mg x C`` global memory, or ``None`` when the model has none.
        local_memory: ``B x Ml x C`` local memory, or ``None`` before the first write (or when disabled).
        video_index: ``B`` int64: row of the frame batch that each expression reads.
        num_frames: frames processed so far.
    """

    words: torch.Tensor
    global_memory: torch.Tensor | None
    local_memory: torch.Tensor | None
    video_index: torch.Tensor
    num_frames: int = 0

    def detach(self) -> LocaterState:
        """A copy whose tensors are cut from the autograd graph (truncated backpropagation through time)."""

        def cut(x: torch.Tensor | None) -> torch.Tensor | None:
            return None if x is None else x.detach()

        return replace(
            self,
            words=self.words.detach(),
            global_memory=cut(self.global_memory),
            local_memory=cut(self.local_memory),
        )


@dataclass
class StepOutput:
    """What one frame produces.

    Attributes:
        logits: ``B x 1 x H x W`` main mask logits at input resolution.
        aux_logits: ``B x K x H x W`` auxiliary logits (one per fusion stage) or ``None``.
    """

    logits: torch.Tensor
    aux_logits: torch.Tensor | None


class Locater(nn.Module):
    """Local-global context aware Transformer for language-guided video segmentation.

    Args:
        vision_encoder: frame -> ``1 + N`` tokens.
        text_encoder: ids -> word features.
        fusion_stages: the ``K`` vision-language fusion stages.
        global_memory: global memory writer, or ``None`` to run without one.
        local_memory: local memory writer, or ``None`` (the current frame then stands in for it, as the
            official code does with a local memory of size 0).
        query_generator: adaptive queries.
        memory_reader: cross-attention from ``V_t`` to the memories.
        mask_decoder: read features + queries -> logits.
        aux_heads: one head per fusion stage, or ``None``.
        num_global_frames: ``N1``, frames used to build the global memory.
        checkpoint_fusion: activation checkpointing of the fusion stages while training.
        reader_positions: optional ``N x C`` position code of the token grid, added to the memory reader's queries
            and to the keys of the local memory's frames (the global memory's too when it keeps whole frames,
            ``rule="window"``; a gated global memory's tokens get none); needs a local memory that keeps whole
            frames in order (``rule="window"``) or none. Not the released model.
        reader_locality: ``sigma`` in tokens, or 0 for none: the memory reader (built with ``locality=True``)
            adds ``-d^2 / (2 sigma^2)`` per head (times a learned weight) to the logit of a query and a memory token
            ``d`` grid cells apart, for the memory tokens that have a cell (as ``reader_positions``; a gated global
            memory's tokens get 0). Same requirement on the local memory. Not the released model.
    """

    def __init__(
        self,
        vision_encoder: VisionEncoder,
        text_encoder: TextEncoder,
        fusion_stages: nn.ModuleList,
        global_memory: GlobalMemory | None,
        local_memory: LocalMemory | None,
        query_generator: QueryGenerator,
        memory_reader: MemoryReader,
        mask_decoder: MaskDecoder,
        aux_heads: nn.ModuleList | None = None,
        num_global_frames: int = 3,
        checkpoint_fusion: bool = False,
        reader_positions: torch.Tensor | None = None,
        reader_locality: float = 0.0,
    ) -> None:
        super().__init__()
        if reader_locality < 0:
            raise ValueError(f"model.reader_locality must be >= 0 (0: none), got {reader_locality}")
        needs_frames = reader_positions is not None or reader_locality > 0
        if needs_frames and local_memory is not None and local_memory.rule != "window":
            raise ValueError(
                "position codes or a locality bias in the memory read need a local memory that keeps whole frames "
                "in order (model.local_memory.write=window) or none"
            )
        if (reader_locality > 0) != (memory_reader.attention.locality is not None):
            raise ValueError(
                "reader_locality > 0 needs a memory reader built with locality=True, and only then"
            )
        self.vision_encoder = vision_encoder
        self.text_encoder = text_encoder
        self.fusion = fusion_stages
        self.global_memory = global_memory
        self.local_memory = local_memory
        self.query_generator = query_generator
        self.memory_reader = memory_reader
        self.mask_decoder = mask_decoder
        self.aux_heads = aux_heads
        self.num_global_frames = num_global_frames
        self.checkpoint_fusion = checkpoint_fusion
        self.grid_size: tuple[int, int] = vision_encoder.grid_size
        self.reader_positions: torch.Tensor | None
        self.register_buffer("reader_positions", reader_positions, persistent=False)
        self.locality_table: torch.Tensor | None
        self.register_buffer(
            "locality_table",
            _locality_table(self.grid_size, reader_locality) if reader_locality > 0 else None,
            persistent=False,
        )

    # ----------------------------------------------------------------------------------------------- helpers
    @property
    def image_size(self) -> tuple[int, int]:
        patch = self.vision_encoder.vit.patch_embed.patch_size
        return (self.grid_size[0] * patch[0], self.grid_size[1] * patch[1])

    def _resolve_video_index(
        self, num_videos: int, num_expressions: int, video_index: torch.Tensor | None
    ) -> torch.Tensor:
        device = self.text_encoder.embedding.weight.device
        if video_index is None:
            if num_videos == num_expressions:
                return torch.arange(num_expressions, device=device)
            if num_videos == 1:
                return torch.zeros(num_expressions, dtype=torch.long, device=device)
            raise ValueError(
                f"{num_videos} videos for {num_expressions} expressions: pass video_index to say which video each "
                "expression belongs to"
            )
        video_index = torch.as_tensor(video_index, dtype=torch.long, device=device)
        if video_index.shape != (num_expressions,):
            raise ValueError(
                f"video_index must have shape ({num_expressions},), got {tuple(video_index.shape)}"
            )
        if int(video_index.min()) < 0 or int(video_index.max()) >= num_videos:
            raise ValueError(f"video_index values must lie in [0, {num_videos}), got {video_index.tolist()}")
        return video_index

    def fuse(self, vision_tokens: torch.Tensor, words: torch.Tensor) -> list[torch.Tensor]:
        """Run the fusion stages.

        Args:
            vision_tokens: ``B x (1 + N) x C``; words: ``B x L x C``.

        Returns:
            ``K`` tensors ``B x (1 + N) x C``, one per stage (the last one is the frame feature source).
        """
        outputs = []
        tokens = vision_tokens
        for stage in self.fusion:
            if self.checkpoint_fusion and self.training and torch.is_grad_enabled():
                tokens = checkpoint(stage, tokens, words, use_reentrant=False)
            else:
                tokens = stage(tokens, words)
            outputs.append(tokens)
        return outputs

    # ------------------------------------------------------------------------------------------ streaming API
    def start(
        self, global_frames: torch.Tensor, input_ids: torch.Tensor, video_index: torch.Tensor | None = None
    ) -> LocaterState:
        """Encode the sentences and build the global memory.

        Args:
            global_frames: ``V x N1 x 3 x H x W`` pre-processed frames (``V`` videos; ``V = B`` or ``V = 1`` need no
                ``video_index``).
            input_ids: ``B x L`` int64 WordPiece ids (0-padded), one row per expression.
            video_index: optional ``B`` int64, the video (row of ``global_frames``) of each expression.

        Returns:
            The initial :class:`LocaterState`.
        """
        if global_frames.dim() != 5:
            raise ValueError(f"global_frames must be V x N1 x 3 x H x W, got {tuple(global_frames.shape)}")
        num_videos, num_global_frames = global_frames.shape[:2]
        tokens = None
        if self.global_memory is not None:
            tokens = self.vision_encoder(global_frames.flatten(0, 1))  # (V*N1) x (1+N) x C
            tokens = tokens.view(num_videos, num_global_frames, *tokens.shape[1:])
        return self._start(tokens, num_videos, input_ids, video_index)

    def start_encoded(
        self, global_tokens: torch.Tensor, input_ids: torch.Tensor, video_index: torch.Tensor | None = None
    ) -> LocaterState:
        """:meth:`start` from frames already through the vision encoder (what :meth:`encode_frames` returns; it
        does not depend on the sentence), so a caller that keeps encoded frames builds a global memory without
        encoding them again (the causal live mode, :mod:`locater.live`).

        Args:
            global_tokens: ``V x N1 x (1+N) x C`` vision-encoder tokens of the global frames.
            input_ids, video_index: as :meth:`start`.
        """
        if global_tokens.dim() != 4:
            raise ValueError(f"global_tokens must be V x N1 x (1+N) x C, got {tuple(global_tokens.shape)}")
        return self._start(global_tokens, global_tokens.shape[0], input_ids, video_index)

    def _start(
        self,
        global_tokens: torch.Tensor | None,
        num_videos: int,
        input_ids: torch.Tensor,
        video_index: torch.Tensor | None,
    ) -> LocaterState:
        words = self.text_encoder(input_ids)
        index = self._resolve_video_index(num_videos, input_ids.shape[0], video_index)
        global_memory = None
        if self.global_memory is not None:
            global_memory = self._build_global_memory(global_tokens, words, index)
        return LocaterState(words=words, global_memory=global_memory, local_memory=None, video_index=index)

    def _build_global_memory(
        self, global_tokens: torch.Tensor, words: torch.Tensor, video_index: torch.Tensor
    ) -> torch.Tensor:
        """Fuse each expression's global frames with its sentence and write them into the global memory.

        Args:
            global_tokens: ``V x N1 x (1+N) x C`` vision-encoder tokens; words: ``B x L x C``;
            video_index: ``B``, the video of each expression.

        Returns:
            ``B x Mg x C`` global memory.
        """
        num_global_frames = global_tokens.shape[1]
        tokens = global_tokens[video_index]  # B x N1 x (1+N) x C
        batch = tokens.shape[0]
        repeated_words = words.repeat_interleave(num_global_frames, dim=0)
        fused = self.fuse(tokens.flatten(0, 1), repeated_words)[-1][:, 1:]
        return self.global_memory.build(fused.view(batch, num_global_frames, *fused.shape[1:]))

    def encode_frames(self, frames: torch.Tensor) -> torch.Tensor:
        """The vision encoder alone: ``V x 3 x H x W`` pre-processed frames -> ``V x (1+N) x C`` tokens (the same
        for every sentence; :meth:`step` and :meth:`start_encoded` accept them)."""
        return self.vision_encoder(frames)

    def refresh_global_memory(self, state: LocaterState, global_tokens: torch.Tensor) -> LocaterState:
        """``state`` with its global memory rebuilt from other global frames; the words, the local memory and the
        frame count are kept (the causal live mode refreshes the global memory as a stream goes on).

        Args:
            global_tokens: ``V x N1' x (1+N) x C`` vision-encoder tokens of the new global frames, rows addressed
                by ``state.video_index``.
        """
        if self.global_memory is None:
            return state
        if global_tokens.dim() != 4:
            raise ValueError(f"global_tokens must be V x N1 x (1+N) x C, got {tuple(global_tokens.shape)}")
        memory = self._build_global_memory(global_tokens, state.words, state.video_index)
        return replace(state, global_memory=memory)

    def step(
        self,
        frame: torch.Tensor,
        state: LocaterState,
        memory_mask: torch.Tensor | None = None,
        memory_mask_select: torch.Tensor | None = None,
        vision_tokens: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, LocaterState]:
        """Segment one frame and write it into the local memory.

        Args:
            frame: ``V x 3 x H x W`` pre-processed frame of each video (rows addressed by ``state.video_index``).
            state: state from :meth:`start` or the previous :meth:`step`.
            memory_mask: optional ``B x 1 x H x W`` mask to remember instead of the prediction (teacher forcing).
            memory_mask_select: optional ``B`` bool: rows that use ``memory_mask`` (default: all rows).
            vision_tokens: optional ``V x (1+N) x C`` :meth:`encode_frames` of ``frame``, when the caller has it.

        Returns:
            ``B x 1 x H x W`` logits and the new state.
        """
        output, state = self.step_with_aux(
            frame, state, memory_mask, memory_mask_select, with_aux=False, vision_tokens=vision_tokens
        )
        return output.logits, state

    def _memory_cells(self, num_local_tokens: int, num_global_tokens: int) -> torch.Tensor:
        """The grid cell of each memory token read by the reader, ``-1`` where it has none.

        The local memory holds whole frames in order (checked at construction), so does the global memory with
        ``write="window"``; a gated global memory's tokens have no cell.

        Returns:
            ``M`` int64, ``M = num_local_tokens + num_global_tokens``.
        """
        num_cells = self.grid_size[0] * self.grid_size[1]
        device = self.text_encoder.embedding.weight.device

        def per_frame(num_tokens: int, name: str) -> torch.Tensor:
            frames, rest = divmod(num_tokens, num_cells)
            if rest:
                raise RuntimeError(f"{name} memory of {num_tokens} tokens is not whole frames of {num_cells}")
            return torch.arange(num_cells, device=device).repeat(frames)

        if self.global_memory is not None and self.global_memory.rule == "window":
            global_cells = per_frame(num_global_tokens, "global")
        else:
            global_cells = torch.full((num_global_tokens,), -1, dtype=torch.long, device=device)
        return torch.cat([per_frame(num_local_tokens, "local"), global_cells])

    def _read_context(
        self, features: torch.Tensor, local: torch.Tensor, memory: torch.Tensor
    ) -> tuple[torch.Tensor | None, torch.Tensor | None, torch.Tensor | None]:
        """What the memory reader takes besides the tokens: the position codes of its queries (``N x C``) and keys
        (``M x C``, zeros for a token without a cell; see :meth:`_memory_cells`), or ``None`` without
        ``reader_positions``; and the ``N x M`` locality bias (0 for a token without a cell), or ``None``."""
        if self.reader_positions is None and self.locality_table is None:
            return None, None, None
        cells = self._memory_cells(local.shape[1], memory.shape[1] - local.shape[1])
        has_cell = (cells >= 0).unsqueeze(0)
        index = cells.clamp(min=0)
        query_pos = memory_pos = bias = None
        if self.reader_positions is not None:
            codes = self.reader_positions.to(features.dtype)
            query_pos, memory_pos = codes, codes[index] * has_cell.T
        if self.locality_table is not None:
            bias = self.locality_table[:, index].to(features.dtype) * has_cell
        return query_pos, memory_pos, bias

    def step_with_aux(
        self,
        frame: torch.Tensor,
        state: LocaterState,
        memory_mask: torch.Tensor | None = None,
        memory_mask_select: torch.Tensor | None = None,
        with_aux: bool = True,
        vision_tokens: torch.Tensor | None = None,
    ) -> tuple[StepOutput, LocaterState]:
        """:meth:`step` that also returns the auxiliary logits (training); the one code path for both."""
        if frame.dim() != 4:
            raise ValueError(f"frame must be V x 3 x H x W, got {tuple(frame.shape)}")
        if vision_tokens is None:
            vision_tokens = self.vision_encoder(frame)
        elif vision_tokens.dim() != 3 or vision_tokens.shape[0] != frame.shape[0]:
            raise ValueError(
                f"vision_tokens must be V x (1+N) x C for {frame.shape[0]} frames, got {tuple(vision_tokens.shape)}"
            )
        vision = vision_tokens[state.video_index]  # B x (1+N) x C
        stage_outputs = self.fuse(vision, state.words)
        features = stage_outputs[-1][:, 1:]  # V_t: B x N x C
        local = state.local_memory if state.local_memory is not None else features
        frame_mean = features.mean(dim=1)
        if state.global_memory is not None:
            global_mean = state.global_memory.mean(dim=1)
            memory = torch.cat([local, state.global_memory], dim=1)
        else:
            global_mean = torch.zeros_like(frame_mean)
            memory = local
        queries = self.query_generator(state.words, frame_mean, local.mean(dim=1), global_mean)
        read = self.memory_reader(features, memory, *self._read_context(features, local, memory))
        image = frame if self.mask_decoder.image_skip else None
        logits = self.mask_decoder(read, queries, self.grid_size, image, state.video_index)

        local_memory = None
        if self.local_memory is not None:
            mask = None
            if self.local_memory.mask_history:
                mask = (torch.sigmoid(logits.detach()) > 0.5).to(features.dtype)
                if memory_mask is not None:
                    chosen = memory_mask.to(mask.dtype)
                    if memory_mask_select is not None:
                        select = memory_mask_select.view(-1, 1, 1, 1).to(torch.bool)
                        chosen = torch.where(select, chosen, mask)
                    mask = chosen
            tokens = self.local_memory.prepare(features, mask, self.grid_size)
            local_memory = self.local_memory.write(state.local_memory, tokens)

        aux = None
        if with_aux and self.aux_heads is not None:
            aux = torch.cat(
                [head(out[:, 1:], self.grid_size) for head, out in zip(self.aux_heads, stage_outputs)], dim=1
            )
        new_state = replace(state, local_memory=local_memory, num_frames=state.num_frames + 1)
        return StepOutput(logits=logits, aux_logits=aux), new_state

    def forward(self, *args, **kwargs):
        """:meth:`forward_clip` (what DDP wraps during training)."""
        return self.forward_clip(*args, **kwargs)

    def forward_clip(
        self,
        global_frames: torch.Tensor,
        input_ids: torch.Tensor,
        clip: torch.Tensor,
        memory_masks: torch.Tensor | None = None,
        memory_mask_select: torch.Tensor | None = None,
        with_aux: bool = True,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Training-time forward over a clip: ``start`` then ``step`` on every frame in order (backpropagation
        through the memory), the same code path as inference.

        Args:
            global_frames: ``B x N1 x 3 x H x W``.
            input_ids: ``B x L``.
            clip: ``B x T x 3 x H x W`` consecutive frames.
            memory_masks: optional ``B x T x 1 x H x W`` masks to write into the local memory (teacher forcing).
            memory_mask_select: optional ``B x T`` bool, where ``memory_masks`` replaces the prediction.
            with_aux: also return the auxiliary logits.

        Returns:
            ``B x T x 1 x H x W`` main logits and ``B x T x K x H x W`` auxiliary logits (or ``None``).
        """
        state = self.start(global_frames, input_ids)
        logits, aux = [], []
        for t in range(clip.shape[1]):
            output, state = self.step_with_aux(
                clip[:, t],
                state,
                None if memory_masks is None else memory_masks[:, t],
                None if memory_mask_select is None else memory_mask_select[:, t],
                with_aux=with_aux,
            )
            logits.append(output.logits)
            if output.aux_logits is not None:
                aux.append(output.aux_logits)
        return torch.stack(logits, dim=1), (torch.stack(aux, dim=1) if aux else None)


def _locality_table(grid_size: tuple[int, int], sigma: float) -> torch.Tensor:
    """``-d^2 / (2 sigma^2)`` between every two cells of the token grid (raster order), ``d`` in cells: ``N x N``."""
    rows, cols = torch.meshgrid(torch.arange(grid_size[0]), torch.arange(grid_size[1]), indexing="ij")
    cells = torch.stack([rows.flatten(), cols.flatten()], dim=1).double()
    return (-torch.cdist(cells, cells).pow(2) / (2 * sigma**2)).float()
