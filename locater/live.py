"""The causal global memory of the live mode: Locater on a stream whose end is unknown, with constant memory.

Locater's global memory normally holds ``N1`` frames taken across the whole video (the centres of ``N1`` equal
segments), so the standard mode must know the video before its first output. The live mode builds it from the
frames seen so far instead, and nothing else changes:

* **What it keeps.** A reservoir of at most ``reservoir`` frames, evenly spaced over the stream so far: frames
  whose index is a multiple of a stride ``s`` (1 at first). When it is full, every other kept frame is dropped
  and ``s`` doubles, so the kept frames always span the whole stream, ``s`` to ``2s`` frames apart, whatever its
  length, and which frames are kept depends on the frame count alone (no randomness). A frame is kept as the
  vision encoder's tokens (``(1+N) x C``, the same for every sentence), which :meth:`Locater.step` computes for
  that frame anyway: keeping it costs no vision pass, and a rebuild costs ``N1`` fusion passes per sentence
  and no vision pass.
* **When it rebuilds.** Before the frame that makes the count seen ``n``: at ``n = 1`` (the first frame, repeated
  ``N1`` times, is the whole video so far), at ``n = 2, 4, 8, ...`` below ``refresh_every`` (a short stream's
  global memory catches up quickly), then every ``refresh_every`` frames. It is rebuilt from ``N1`` frames of
  the reservoir chosen by the official rule (:func:`locater.data.indices.global_frame_positions`) over the kept
  frames, current frame included. While every frame is still kept (``n <= reservoir``) this is exactly the
  global memory the standard mode builds for the video cut after frame ``n``.
* **What it leaves alone.** The local memory, the mask history and the sentence features carry on across
  rebuilds: a rebuild replaces the global memory of the state and nothing else
  (:meth:`Locater.refresh_global_memory`).

Memory stays constant: ``reservoir`` encoded frames per video plus the model state. Frame ``t``'s output depends on
frames ``0..t`` only.

Example::

    live = LiveMemory(model, input_ids)  # one video, B sentences
    state = None
    for frame in frames:  # 1 x 3 x H x W pre-processed frames, as they arrive
        logits, state = live.step(frame, state)  # B x 1 x H x W
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch

from locater.data.indices import global_frame_positions
from locater.model.locater import Locater, LocaterState

logger = logging.getLogger(__name__)

DEFAULT_REFRESH_EVERY = 50
DEFAULT_RESERVOIR = 16


@dataclass(frozen=True)
class LiveSettings:
    """How the causal global memory follows a stream (config ``eval.live_refresh_every`` / ``eval.live_reservoir``,
    demo ``--live-refresh-every`` / ``--live-reservoir``).

    Attributes:
        refresh_every: rebuild the global memory every this many frames (after the doubling warm-up, see the module
            docstring); 50 is 2 s of a 25 frames/s camera, for about 1 + N1 / 50 fusion passes per frame.
        reservoir: frames kept to choose the global frames from (at least ``N1``); 16 keeps the chosen frames within
            ``1/8`` of the stream of the official segment centres.
    """

    refresh_every: int = DEFAULT_REFRESH_EVERY
    reservoir: int = DEFAULT_RESERVOIR

    def __post_init__(self) -> None:
        if (
            isinstance(self.refresh_every, bool)
            or not isinstance(self.refresh_every, int)
            or self.refresh_every < 1
        ):
            raise ValueError(f"live refresh_every must be a positive integer, got {self.refresh_every!r}")
        if isinstance(self.reservoir, bool) or not isinstance(self.reservoir, int) or self.reservoir < 1:
            raise ValueError(f"live reservoir must be a positive integer, got {self.reservoir!r}")


def refresh_due(frames_seen: int, refresh_every: int) -> bool:
    """Whether the global memory is (re)built before segmenting the frame that makes ``frames_seen`` (>= 1)."""
    if frames_seen < 1:
        raise ValueError(f"frames_seen must be >= 1, got {frames_seen}")
    if frames_seen < refresh_every:
        return frames_seen & (frames_seen - 1) == 0  # 1, 2, 4, 8, ...
    return frames_seen % refresh_every == 0


class FrameReservoir:
    """At most ``capacity`` encoded frames, evenly spaced over a stream (stride doubling, module docstring).

    The frames live in one buffer of ``capacity`` slots allocated at the first frame, so the memory it holds is the
    same from the first frame to the last. Every video of a batch sees the same frame indices (videos in lockstep),
    so one index list serves them all.

    Args:
        capacity: frames kept (>= 1).
    """

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError(f"the reservoir must hold at least one frame, got {capacity}")
        self.capacity = capacity
        self.stride = 1
        self.indices: list[int] = []  # frame index of each filled slot, in order
        self._buffer: torch.Tensor | None = None  # V x capacity x (1+N) x C

    def offer(self, index: int, tokens: torch.Tensor) -> bool:
        """Keep frame ``index`` (``V x (1+N) x C`` tokens, one row per video) when it falls on the stride; frames
        come in increasing index order. Returns whether it was kept."""
        if self.indices and index <= self.indices[-1]:
            raise ValueError(f"frames must come in order: frame {index} after frame {self.indices[-1]}")
        if index % self.stride:
            return False
        if len(self.indices) == self.capacity:  # full: keep every other frame, double the stride
            self.stride *= 2
            keep = [slot for slot, kept in enumerate(self.indices) if kept % self.stride == 0]
            self.indices = [self.indices[slot] for slot in keep]
            self._buffer[:, : len(keep)] = self._buffer[:, keep]
            if index % self.stride:
                return False
        if self._buffer is None:
            self._buffer = tokens.new_empty(tokens.shape[0], self.capacity, *tokens.shape[1:])
        self._buffer[:, len(self.indices)] = tokens
        self.indices.append(index)
        return True

    def choose(self, count: int) -> tuple[list[int], torch.Tensor]:
        """``count`` kept frames by the official rule over the kept ones: their indices and ``V x count x (1+N) x C``
        tokens."""
        if not self.indices:
            raise RuntimeError("the reservoir holds no frame yet")
        positions = global_frame_positions(len(self.indices), count)
        return [self.indices[p] for p in positions], self._buffer[:, positions]

    def select_videos(self, rows: torch.Tensor) -> None:
        """Keep the video rows ``rows`` (``V'`` int64) of every kept frame, in that order."""
        if self._buffer is not None:
            self._buffer = self._buffer[rows.to(self._buffer.device)]

    @property
    def nbytes(self) -> int:
        """Bytes held by the buffer (constant from the first frame on)."""
        return 0 if self._buffer is None else self._buffer.numel() * self._buffer.element_size()


class LiveMemory:
    """Runs :meth:`Locater.step` causally: the global memory comes from the frames seen so far (module docstring).

    One instance per stream (or per batch of videos in lockstep); the :class:`LocaterState` stays with the
    caller, as with :meth:`Locater.step`, so the caller may drop expression rows of finished videos (then call
    :meth:`select_videos`).

    Args:
        model: the model (a model without a global memory runs exactly as in the standard mode).
        input_ids: ``B x L`` WordPiece ids, one row per expression.
        video_index: optional ``B``: the video (row of the frame batch) of each expression, as :meth:`Locater.start`.
        settings: refresh interval and reservoir size.
    """

    def __init__(
        self,
        model: Locater,
        input_ids: torch.Tensor,
        video_index: torch.Tensor | None = None,
        settings: LiveSettings | None = None,
    ) -> None:
        self.model = model
        self.input_ids = input_ids
        self.video_index = video_index
        self.settings = settings or LiveSettings()
        self.num_global_frames = model.num_global_frames if model.global_memory is not None else 0
        if self.num_global_frames and self.settings.reservoir < self.num_global_frames:
            raise ValueError(
                f"the live reservoir ({self.settings.reservoir} frames) must hold at least the "
                f"{self.num_global_frames} global-memory frames"
            )
        self.reservoir = FrameReservoir(self.settings.reservoir)
        self.frames_seen = 0
        self.refreshes = 0
        self.global_frames: list[int] = []  # indices of the frames in the global memory now

    def step(self, frames: torch.Tensor, state: LocaterState | None) -> tuple[torch.Tensor, LocaterState]:
        """Segment the next frame of every video, after keeping it and, when due, rebuilding the global memory.

        Args:
            frames: ``V x 3 x H x W`` pre-processed frame of each video.
            state: ``None`` for the first frame, then the state this method returned.

        Returns:
            ``B x 1 x H x W`` logits and the new state.
        """
        index = self.frames_seen
        self.frames_seen += 1
        model = self.model
        if not self.num_global_frames:
            if state is None:
                empty = frames.new_zeros(frames.shape[0], 0, *frames.shape[1:])
                state = model.start(empty, self.input_ids, self.video_index)
            return model.step(frames, state)
        tokens = model.encode_frames(frames)  # V x (1+N) x C
        self.reservoir.offer(index, tokens)
        if state is None or refresh_due(self.frames_seen, self.settings.refresh_every):
            self.global_frames, global_tokens = self.reservoir.choose(self.num_global_frames)
            if state is None:
                state = model.start_encoded(global_tokens, self.input_ids, self.video_index)
            else:
                state = model.refresh_global_memory(state, global_tokens)
                self.refreshes += 1
            logger.debug("frame %d: global memory from frames %s", index, self.global_frames)
        return model.step(frames, state, vision_tokens=tokens)

    def select_videos(self, rows: torch.Tensor) -> None:
        """Keep the videos ``rows`` (``V'`` int64, in the new batch order) when others have ended."""
        self.reservoir.select_videos(rows)

    @property
    def nbytes(self) -> int:
        """Bytes this object holds besides the model state (the reservoir's tokens)."""
        return self.reservoir.nbytes
