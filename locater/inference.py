"""Segment raw videos with Locater: :class:`VideoSegmenter` streams any video with constant memory.

A video file or a folder of frames is opened with random access: the ``N1`` global-memory frames (the centres of
``N1`` equal segments, see docs/architecture.md) are read first, then every frame is decoded, segmented for all sentences at
once (one vision pass per frame, shared by the sentences) and handed out with masks at its original size.
Only the model state (word features, a fixed-size global and local memory) and a few prefetched frames are held.

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

from locater.data.indices import global_frame_numbers
from locater.engine.amp import autocast_for
from locater.model.loading import load_model, resolve_device
from locater.model.locater import Locater
from locater.prefetch import Prefetcher
from locater.preprocess import logits_to_probabilities, preprocess_frames
from locater.tokenizer import tokenize
from locater.video_io import FrameFolderReader, VideoFileReader, open_frames

logger = logging.getLogger(__name__)

FrameSourceLike = str | Path | VideoFileReader | FrameFolderReader | Sequence | Iterable


class SegmentedFrame(NamedTuple):
    """One frame of :meth:`VideoSegmenter.segment`.

    Attributes:
        index: 0-based frame index.
        frame: ``H x W x 3`` uint8 RGB frame as read.
        masks: ``S x H x W`` bool CPU tensor, one mask per sentence, at the frame's size.
        probabilities: ``S x H x W`` float32 CPU tensor (sigmoid of the logits, resized bilinearly).
    """

    index: int
    frame: np.ndarray
    masks: torch.Tensor
    probabilities: torch.Tensor


def global_frame_indices(num_frames: int, num_global_frames: int) -> list[int]:
    """0-based indices of the global-memory frames of a video of ``num_frames`` frames.

    The official rule (:func:`locater.data.indices.global_frame_numbers`); a video shorter than ``num_global_frames``
    frames repeats frames (``i * num_frames // num_global_frames``), with a warning.
    """
    if num_global_frames <= 0:
        return []
    if num_frames <= 0:
        raise ValueError(f"a video needs at least one frame, got {num_frames}")
    if num_frames < num_global_frames:
        logger.warning(
            "%d frames to segment, fewer than the %d global-memory frames: repeating frames",
            num_frames,
            num_global_frames,
        )
        return [i * num_frames // num_global_frames for i in range(num_global_frames)]
    return [number - 1 for number in global_frame_numbers(num_frames, num_global_frames)]


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
    constant); one of unknown length takes its first ``N1`` frames as the global frames.
    """

    def __init__(self, source: FrameSourceLike, num_frames: int | None, max_frames: int | None) -> None:
        self._spool: tempfile.TemporaryDirectory | None = None
        self._head: list[np.ndarray] = []
        self._reader = None
        self._sequence = None
        self._iterator: Iterator | None = None
        self._spooled = 0
        if isinstance(source, (str, Path)):
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
        self.name = str(getattr(self._reader, "path", type(source).__name__))

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
            return [self._read(i) for i in global_frame_indices(self.num_frames, num_global_frames)]
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
            return [self._head[i] for i in global_frame_indices(len(self._head), num_global_frames)]
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
        return [kept[i] for i in indices]

    # streaming ------------------------------------------------------------------------------------------------
    def stream(self) -> Iterator[np.ndarray]:
        """Every frame in order, one at a time (``H x W x 3`` uint8 RGB)."""
        if self._reader is not None:
            yield from self._reader.frames(0, self.num_frames)
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


class VideoSegmenter:
    """Streams a video through Locater for one or more sentences and yields masks at the original resolution.

    Args:
        model: a :class:`Locater` (moved to ``device`` and put in eval mode).
        device: ``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or a ``torch.device``.
        amp: bfloat16 autocast (a speed-up on GPUs; much slower on most CPUs).
        threshold: probability above which a pixel belongs to the mask (the official 0.5).
        prefetch: frames decoded and pre-processed ahead in a background thread.
    """

    def __init__(
        self,
        model: Locater,
        device: str | torch.device = "auto",
        amp: bool = False,
        threshold: float = 0.5,
        prefetch: int = 4,
    ) -> None:
        self.device = resolve_device(device)
        self.model = model.to(self.device).eval()
        self.amp = amp
        self.threshold = threshold
        self.prefetch = prefetch
        if amp and self.device.type == "cpu":
            logger.warning("bfloat16 autocast on the CPU is usually much slower than float32")

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

    def segment(
        self,
        source: FrameSourceLike,
        sentences: str | Sequence[str],
        num_frames: int | None = None,
        max_frames: int | None = None,
    ) -> Iterator[SegmentedFrame]:
        """Segment every frame for every sentence, in order, one frame at a time.

        Args:
            source: a video file or frame folder (path or reader from :mod:`locater.video_io`), a sequence of
                ``H x W x 3`` uint8 RGB frames (list, ``T x H x W x 3`` array), or a one-pass iterator of them.
            sentences: one sentence or several, segmented in one pass.
            num_frames: length of a one-pass iterator. With it the global frames follow the official rule (the
                frames before the last global one are spooled to a temporary folder on disk); without it the
                first ``N1`` frames build the global memory. Must match the length of other sources if given.
            max_frames: treat the video as its first ``max_frames`` frames (global frames chosen among them).

        Yields:
            :class:`SegmentedFrame` per frame: index, RGB frame, ``S x H x W`` masks and probabilities.
        """
        sentences = [sentences] if isinstance(sentences, str) else list(sentences)
        if not sentences:
            raise ValueError("give at least one sentence")
        bad = [i for i, s in enumerate(sentences) if not isinstance(s, str) or not s.strip()]
        if bad:
            raise ValueError(f"sentences {bad} are empty or not strings: {[sentences[i] for i in bad]}")
        input_ids = tokenize(sentences).to(self.device)
        size = self.model.image_size
        frames = _FrameSource(source, num_frames, max_frames)
        prefetcher = None
        try:
            num_global_frames = self.model.num_global_frames if self.model.global_memory is not None else 0
            chosen = frames.global_frames(num_global_frames)
            if chosen:
                global_frames = torch.stack([preprocess_frames(f, size) for f in chosen])[None]
            else:
                global_frames = torch.zeros(1, 0, 3, *size)
            with torch.inference_mode(), self._autocast():
                state = self.model.start(global_frames.to(self.device), input_ids)
            logger.info(
                "segmenting %s (%s frames) for %d sentences", frames.name, frames.num_frames, len(sentences)
            )
            prefetcher = Prefetcher(
                frames.stream(), lambda rgb: (rgb, preprocess_frames(rgb, size)), self.prefetch
            )
            for index, (rgb, tensor) in enumerate(prefetcher):
                with torch.inference_mode():
                    with self._autocast():
                        logits, state = self.model.step(
                            tensor[None].to(self.device, non_blocking=True), state
                        )
                    probabilities = logits_to_probabilities(logits.float(), rgb.shape[:2])[:, 0]
                    masks = probabilities > self.threshold
                yield SegmentedFrame(index, rgb, masks.cpu(), probabilities.cpu())
        finally:
            if prefetcher is not None:
                prefetcher.close()
            frames.close()
