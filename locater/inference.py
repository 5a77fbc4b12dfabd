"""Segment raw videos with Locater: :class:`VideoSegmenter` streams any video with constant memory.

A video file or a folder of frames is opened with random access: the ``N1`` global-memory frames (the centres of
``N1`` equal segments, see docs/architecture.md) are read first, then every frame is decoded, segmented for all sentences at
once (one vision pass per frame, shared by the sentences) and handed out with masks at its original size.
Only the model state (word features, a fixed-size global and local memory) and a few prefetched frames are held.
With ``live=True`` (or frames pushed one at a time into :meth:`VideoSegmenter.start_live`) the source may be a
stream whose end is unknown (a camera, a URL, a pipe, an iterator): the global memory then comes from the frames
seen so far (:mod:`locater.live`).

Example::

    segmenter = VideoSegmenter.from_checkpoint("locater.pth", device="cuda")
    for result in segmenter.segment("video.mp4", ["a man in red", "the white dog"]):
        result.masks  # S x H x W bool at the video's resolution
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

from locater.data.indices import global_frame_positions
from locater.engine.amp import autocast_for, native_bf16, resolve_amp
from locater.live import LiveMemory, LiveSettings
from locater.model.loading import load_model, resolve_device
from locater.model.locater import Locater, LocaterState
from locater.prefetch import Prefetcher
from locater.preprocess import logits_to_probabilities, preprocess_frames
from locater.tokenizer import tokenize
from locater.video_io import FrameFolderReader, VideoError, VideoFileReader, open_frames
from locater.video_stream import DEFAULT_READ_TIMEOUT, CaptureReader, describe_source, is_stream_source

logger = logging.getLogger(__name__)

FrameSourceLike = int | str | Path | VideoFileReader | FrameFolderReader | CaptureReader | Sequence | Iterable


class SegmentedFrame(NamedTuple):
    """One frame of :meth:`VideoSegmenter.segment`.

    Attributes:
        index: 0-based frame index.
        frame: ``H x W x 3`` uint8 RGB frame as read.
        masks: ``S x H x W`` bool CPU tensor, one mask per sentence, at the frame's size.
        probabilities: ``S x H x W`` float32 CPU tensor (sigmoid of the logits, resized bilinearly).
        global_frames: indices of the frames in the global memory when this frame was segmented (live mode: never
            after ``index``).
    """

    index: int
    frame: np.ndarray
    masks: torch.Tensor
    probabilities: torch.Tensor
    global_frames: tuple[int, ...] = ()


def global_frame_indices(num_frames: int, num_global_frames: int) -> list[int]:
    """0-based indices of the global-memory frames of a video of ``num_frames`` frames.

    The official rule (:func:`locater.data.indices.global_frame_numbers`); a video shorter than ``num_global_frames``
    frames repeats frames (``i * num_frames // num_global_frames``), with a warning.
    """
    if 0 < num_frames < num_global_frames:
        logger.warning(
            "%d frames to segment, fewer than the %d global-memory frames: repeating frames",
            num_frames,
            num_global_frames,
        )
    return global_frame_positions(num_frames, num_global_frames)


def _check_frame(frame: object, index: int) -> np.ndarray:
    array = frame.numpy() if isinstance(frame, torch.Tensor) else frame
    if not isinstance(array, np.ndarray) or array.ndim != 3 or array.shape[2] != 3 or array.dtype != np.uint8:
        description = (
            f"{array.dtype} array of shape {array.shape}"
            if isinstance(array, np.ndarray)
            else type(frame).__name__
        )
        raise ValueError(f"frame {index}: expected an H x W x 3 uint8 RGB array, got {description}")
    return array


class _FrameSource:
    """What the segmenter needs from a source: the frame count, the global frames, then a stream of all frames.

    Random-access sources (files, folders, sequences) read the global frames directly. A one-pass iterator of
    known length spools the frames up to the last global frame to a temporary folder on disk (RAM stays
    constant); one of unknown length takes its first ``N1`` frames as the global frames. Streams (a camera index,
    a URL, ``-``, a named pipe: :func:`locater.video_stream.is_stream_source`) are only read in the live mode,
    which never asks for global frames.
    """

    def __init__(
        self,
        source: FrameSourceLike,
        num_frames: int | None,
        max_frames: int | None,
        live: bool = False,
        read_timeout: float = DEFAULT_READ_TIMEOUT,
    ) -> None:
        self._spool: tempfile.TemporaryDirectory | None = None
        self._head: list[np.ndarray] = []
        self._reader = None
        self._sequence = None
        self._iterator: Iterator | None = None
        self._spooled = 0
        if is_stream_source(source) or isinstance(source, CaptureReader):
            name = source.name if isinstance(source, CaptureReader) else describe_source(source)
            if not live:
                raise VideoError(
                    f"{name} is a stream whose end is unknown: segment it in the live mode "
                    "(segment(..., live=True), tools/demo.py --live)"
                )
            self._reader = (
                source if isinstance(source, CaptureReader) else CaptureReader(source, read_timeout)
            )
        elif isinstance(source, (str, Path)):
            self._reader = open_frames(source)
        elif isinstance(source, (VideoFileReader, FrameFolderReader)):
            self._reader = source
        elif isinstance(source, (Sequence, np.ndarray, torch.Tensor)):
            self._sequence = source
        elif isinstance(source, Iterable):
            self._iterator = iter(source)
        else:
            raise TypeError(f"cannot read frames from a {type(source).__name__}")
        if self._reader is not None:
            known = self._reader.num_frames
        elif self._sequence is not None:
            known = len(self._sequence)
        else:
            known = num_frames
        if known is not None and num_frames is not None and self._iterator is None and num_frames != known:
            raise ValueError(f"num_frames={num_frames} but the source holds {known} frames")
        if max_frames is not None and max_frames <= 0:
            raise ValueError(f"max_frames must be positive, got {max_frames}")
        if known is not None and max_frames is not None:
            known = min(known, max_frames)
        if known is not None and known <= 0:
            raise ValueError("the video holds no frame")
        self.num_frames = known
        self.max_frames = max_frames
        self.global_indices: list[int] = []
        self.name = str(
            getattr(self._reader, "name", None) or getattr(self._reader, "path", type(source).__name__)
        )

    # random access --------------------------------------------------------------------------------------------
    def _read(self, index: int) -> np.ndarray:
        if self._reader is not None:
            return self._reader.read(index)
        return _check_frame(self._sequence[index], index)

    def global_frames(self, num_global_frames: int) -> list[np.ndarray]:
        """The ``num_global_frames`` global-memory frames (``H x W x 3`` uint8 RGB), read before streaming."""
        if num_global_frames <= 0:
            return []
        if self._iterator is None:
            self.global_indices = global_frame_indices(self.num_frames, num_global_frames)
            return [self._read(i) for i in self.global_indices]
        if self.num_frames is None:
            logger.warning(
                "frames come from an iterator of unknown length: the global memory is built from its first %d "
                "frames (pass num_frames for the official choice)",
                num_global_frames,
            )
            limit = num_global_frames if self.max_frames is None else min(num_global_frames, self.max_frames)
            self._head = [_check_frame(f, i) for i, f in enumerate(itertools.islice(self._iterator, limit))]
            if not self._head:
                raise ValueError("the frame iterator yields no frame")
            self.global_indices = global_frame_indices(len(self._head), num_global_frames)
            return [self._head[i] for i in self.global_indices]
        return self._spool_until_global(num_global_frames)

    def _spool_until_global(self, num_global_frames: int) -> list[np.ndarray]:
        indices = global_frame_indices(self.num_frames, num_global_frames)
        self._spool = tempfile.TemporaryDirectory(prefix="locater_frames_")
        kept: dict[int, np.ndarray] = {}
        for index in range(max(indices) + 1):
            frame = next(self._iterator, None)
            if frame is None:
                raise ValueError(
                    f"the frame iterator ended after {index} frames; num_frames is {self.num_frames}"
                )
            frame = _check_frame(frame, index)
            np.save(Path(self._spool.name) / f"{index}.npy", frame)
            if index in indices:
                kept[index] = frame
        self._spooled = max(indices) + 1
        self.global_indices = indices
        return [kept[i] for i in indices]

    # streaming ------------------------------------------------------------------------------------------------
    def stream(self) -> Iterator[np.ndarray]:
        """Every frame in order, one at a time (``H x W x 3`` uint8 RGB)."""
        if self._reader is not None:
            yield from self._reader.frames(
                0, self.num_frames if self.num_frames is not None else self.max_frames
            )
            return
        if self._sequence is not None:
            for index in range(self.num_frames):
                yield self._read(index)
            return
        index = 0
        if self._spool is not None:
            for index in range(self._spooled):
                path = Path(self._spool.name) / f"{index}.npy"
                frame = np.load(path)
                path.unlink()
                yield frame
            index = self._spooled
        for frame in self._head:
            yield frame
            index += 1
        self._head = []
        limit = self.num_frames if self.num_frames is not None else self.max_frames
        while limit is None or index < limit:
            frame = next(self._iterator, None)
            if frame is None:
                if self.num_frames is not None:
                    raise ValueError(
                        f"the frame iterator ended after {index} frames; num_frames is {self.num_frames}"
                    )
                return
            yield _check_frame(frame, index)
            index += 1

    def close(self) -> None:
        if self._spool is not None:
            self._spool.cleanup()
            self._spool = None
        if isinstance(self._reader, CaptureReader) and not self._reader.streamed:
            self._reader.close()  # opened but never read (a failure before the first frame); else frames() releases it


class VideoSegmenter:
    """Streams a video through Locater for one or more sentences and yields masks at the original resolution.

    Args:
        model: a :class:`Locater` (moved to ``device`` and put in eval mode).
        device: ``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or a ``torch.device``.
        amp: bfloat16 autocast: ``True`` / ``False`` (also ``"on"`` / ``"off"``), or ``"auto"``: on where the device
            computes bf16 natively (GPUs from Ampere on; CPUs with AVX512-BF16, AMX or Arm BF16), off elsewhere, where
            autocast emulates bf16 and is slower than float32 (:func:`locater.engine.amp.native_bf16`). ``self.amp``
            holds the decision.
        threshold: probability above which a pixel belongs to the mask (the official 0.5).
        prefetch: frames decoded and pre-processed ahead in a background thread.
    """

    def __init__(
        self,
        model: Locater,
        device: str | torch.device = "auto",
        amp: bool | str = False,
        threshold: float = 0.5,
        prefetch: int = 4,
    ) -> None:
        self.device = resolve_device(device)
        self.model = model.to(self.device).eval()
        self.amp = resolve_amp(amp, self.device)
        self.threshold = threshold
        self.prefetch = prefetch
        if amp == "auto":
            logger.info("amp auto: bfloat16 autocast %s on %s", "on" if self.amp else "off", self.device)
        elif self.amp and not native_bf16(self.device):
            logger.warning(
                "bfloat16 autocast on %s without native bf16 support is usually much slower than float32",
                self.device,
            )

    @classmethod
    def from_checkpoint(
        cls,
        checkpoint: str | Path,
        device: str | torch.device = "auto",
        overrides: Sequence[str] = (),
        *,
        trust_checkpoint: bool = False,
        **kwargs: object,
    ) -> VideoSegmenter:
        """A segmenter for an official checkpoint or one of ours (see :func:`locater.model.loading.load_model`;
        ``trust_checkpoint`` reads a file that needs full unpickling, which can run code: trusted files only)."""
        device = resolve_device(device)
        model = load_model(checkpoint, device, overrides, trust_checkpoint=trust_checkpoint)
        return cls(model, device=device, **kwargs)

    def _autocast(self) -> contextlib.AbstractContextManager:
        return autocast_for(self.device.type, self.amp)

    def start_live(
        self, sentences: str | Sequence[str], live_settings: LiveSettings | None = None
    ) -> FrameSession:
        """A live session fed one frame at a time (a webcam callback, a UI): ``session.push(rgb)`` segments the
        next frame in the causal live mode and returns its :class:`SegmentedFrame`; the same per-frame step as
        :meth:`segment` with ``live=True``. Memory stays constant however many frames are pushed.

        Example::

            session = segmenter.start_live(["the person waving"])
            for rgb in camera_frames:  # H x W x 3 uint8 RGB, any size
                result = session.push(rgb)
        """
        return FrameSession(self, LiveMemory(self.model, self._input_ids(sentences), settings=live_settings))

    def _input_ids(self, sentences: str | Sequence[str]) -> torch.Tensor:
        """``S x L`` ids of one sentence or several, on the device; empty or non-string sentences are refused."""
        sentences = [sentences] if isinstance(sentences, str) else list(sentences)
        if not sentences:
            raise ValueError("give at least one sentence")
        bad = [i for i, s in enumerate(sentences) if not isinstance(s, str) or not s.strip()]
        if bad:
            raise ValueError(f"sentences {bad} are empty or not strings: {[sentences[i] for i in bad]}")
        return tokenize(sentences).to(self.device)

    def _start(self, frames: _FrameSource, input_ids: torch.Tensor) -> LocaterState:
        """The standard mode's start: the global frames of the whole video, read first."""
        size = self.model.image_size
        num_global_frames = self.model.num_global_frames if self.model.global_memory is not None else 0
        chosen = frames.global_frames(num_global_frames)
        if chosen:
            global_frames = torch.stack([preprocess_frames(f, size) for f in chosen])[None]
        else:
            global_frames = torch.zeros(1, 0, 3, *size)
        with torch.inference_mode(), self._autocast():
            return self.model.start(global_frames.to(self.device), input_ids)

    def segment(
        self,
        source: FrameSourceLike,
        sentences: str | Sequence[str],
        num_frames: int | None = None,
        max_frames: int | None = None,
        *,
        live: bool = False,
        live_settings: LiveSettings | None = None,
        read_timeout: float = DEFAULT_READ_TIMEOUT,
    ) -> Iterator[SegmentedFrame]:
        """Segment every frame for every sentence, in order, one frame at a time.

        Args:
            source: a video file or frame folder (path or reader from :mod:`locater.video_io`), a sequence of
                ``H x W x 3`` uint8 RGB frames (list, ``T x H x W x 3`` array), or a one-pass iterator of them.
                With ``live``, also a stream: a camera index (int), a URL (``rtsp://``, ``http://``, ``https://``,
                ...), ``"-"`` (standard input) or a named pipe (read by :class:`locater.video_stream.CaptureReader`).
            sentences: one sentence or several, segmented in one pass.
            num_frames: length of a one-pass iterator. With it the global frames follow the official rule (the
                frames before the last global one are spooled to a temporary folder on disk); without it the
                first ``N1`` frames build the global memory. Must match the length of other sources if given.
            max_frames: treat the video as its first ``max_frames`` frames (global frames chosen among them); a
                stream stops after them.
            live: the causal mode (:mod:`locater.live`): the global memory is built from the frames seen so far and
                refreshed as the stream goes on, each frame is read only when its turn comes and its result is
                yielded before the next frame is needed (with ``prefetch`` 0 nothing is read ahead); memory stays
                constant however long the stream.
            live_settings: refresh interval and reservoir size of the live mode (default :class:`LiveSettings`).
            read_timeout: seconds a stream may take to open or to deliver a frame (0: no limit); longer raises
                :class:`~locater.video_io.VideoError`.

        Yields:
            :class:`SegmentedFrame` per frame: index, RGB frame, ``S x H x W`` masks and probabilities.
        """
        input_ids = self._input_ids(sentences)
        size = self.model.image_size
        frames = _FrameSource(source, num_frames, max_frames, live=live, read_timeout=read_timeout)
        prefetcher = None
        try:
            if live:
                session = FrameSession(self, LiveMemory(self.model, input_ids, settings=live_settings))
            else:
                session = FrameSession(self, self._start(frames, input_ids), tuple(frames.global_indices))
            logger.info(
                "segmenting %s (%s frames%s) for %d sentences",
                frames.name,
                frames.num_frames if frames.num_frames is not None else "unknown number of",
                ", live" if live else "",
                len(sentences),
            )
            prefetcher = Prefetcher(
                frames.stream(), lambda rgb: (rgb, preprocess_frames(rgb, size)), self.prefetch
            )
            for rgb, tensor in prefetcher:
                yield session.push(rgb, tensor)
        finally:
            if prefetcher is not None:
                prefetcher.close()
            frames.close()


class FrameSession:
    """Segments the frames of one video, pushed one at a time, in order: the per-frame step of
    :meth:`VideoSegmenter.segment` (both modes) and of :meth:`VideoSegmenter.start_live`.

    Args:
        segmenter: the model, device, autocast and threshold to use.
        start: the standard mode's initial :class:`LocaterState` (global memory built), or a :class:`LiveMemory`
            (the live mode: the state starts at the first frame).
        global_frames: the standard mode's global-frame indices (reported with each frame).
    """

    def __init__(
        self,
        segmenter: VideoSegmenter,
        start: LocaterState | LiveMemory,
        global_frames: tuple[int, ...] = (),
    ) -> None:
        self.segmenter = segmenter
        self.live = start if isinstance(start, LiveMemory) else None
        self.state: LocaterState | None = None if self.live is not None else start
        self._global_frames = global_frames
        self.frames_done = 0

    @property
    def global_frames(self) -> tuple[int, ...]:
        """Indices of the frames in the global memory now."""
        return tuple(self.live.global_frames) if self.live is not None else self._global_frames

    def push(self, frame: np.ndarray, tensor: torch.Tensor | None = None) -> SegmentedFrame:
        """Segment the next frame.

        Args:
            frame: ``H x W x 3`` uint8 RGB, any size.
            tensor: its ``3 x h x w`` pre-processed form at the model's size, when already computed (else here).

        Returns:
            The frame's :class:`SegmentedFrame` (masks at the frame's size).
        """
        segmenter = self.segmenter
        frame = _check_frame(frame, self.frames_done)
        if tensor is None:
            tensor = preprocess_frames(frame, segmenter.model.image_size)
        with torch.inference_mode():
            with segmenter._autocast():
                batch = tensor[None].to(segmenter.device, non_blocking=True)
                if self.live is None:
                    logits, self.state = segmenter.model.step(batch, self.state)
                else:
                    logits, self.state = self.live.step(batch, self.state)
            probabilities = logits_to_probabilities(logits.float(), frame.shape[:2])[:, 0]
            masks = probabilities > segmenter.threshold
        index = self.frames_done
        self.frames_done += 1
        return SegmentedFrame(index, frame, masks.cpu(), probabilities.cpu(), self.global_frames)
