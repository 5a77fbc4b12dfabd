"""The browser app's work, without a browser: input checks, one segmenter run into files, webcam frames.

:class:`AppSession` holds one :class:`~locater.inference.VideoSegmenter` (or the reason there is none: no
checkpoint) and does what the page asks:

- :meth:`AppSession.run`: check the sentences (:func:`parse_sentences`) and the video (:func:`open_upload`: a
  video file or a zip of frames, at most ``max_frames`` frames), then stream it through the segmenter once
  (:func:`segment_to_files`) into ``overlay.webm`` (one colour per sentence, with a legend) and ``masks.zip``
  (``sentence_<k>/<frame>.png`` and ``sentences.json``; docs/app.md#the-masks-zip), with the frame count
  and the frames/s;
- :meth:`AppSession.webcam`: a :class:`WebcamStream` that segments frames pushed one at a time (a webcam's
  callback) through :meth:`VideoSegmenter.start_live`, the causal live mode.

Every refusal is a :class:`~locater.errors.LocaterError` (:class:`AppInputError`, :class:`NoCheckpointError` or
:class:`~locater.video_io.VideoError`) whose one-line message the page shows as it is. Nothing here imports Gradio.
"""

from __future__ import annotations

import contextlib
import json
import logging
import shutil
import tempfile
import time
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np

from locater.app.examples import Example, ensure_example
from locater.data.frames import encode_png
from locater.errors import LocaterError
from locater.files import atomic_output
from locater.inference import SegmentedFrame, VideoSegmenter
from locater.live import LiveSettings
from locater.paths import safe_component
from locater.video_io import (
    IMAGE_EXTENSIONS,
    FrameReader,
    OverlayVideoWriter,
    VideoError,
    mask_colors,
    open_frames,
    overlay_with_legend,
)

logger = logging.getLogger(__name__)

VIDEO_SUFFIXES = (".mp4", ".avi", ".webm", ".mkv", ".mov")
DEFAULT_MAX_FRAMES = 2000  # 80 s at 25 frames/s
MAX_SENTENCES = 10  # one colour of the palette each; every sentence adds a fusion pass per frame
MAX_ZIP_BYTES = 4 << 30  # uncompressed frames of one zip (a zip bomb stops here)
DEFAULT_FPS = 25.0  # overlay frame rate of a frame zip (it stores none)
QUICKSTART_CHECKPOINT = Path("runs/quickstart/full/tracking/checkpoints/last.pt")
QUICKSTART_COMMAND = "bash scripts/quickstart.sh"
MASKS_INDEX = "sentences.json"
MASKS_FORMAT = "locater-app-masks-1"


class AppInputError(LocaterError, ValueError):
    """What the page was given cannot be segmented (no sentence, no video, too many frames ...)."""


class NoCheckpointError(LocaterError):
    """The app was started without a checkpoint and the quickstart's is not there."""


def missing_checkpoint_message(default: Path = QUICKSTART_CHECKPOINT) -> str:
    """What the page says when there is no checkpoint: the exact command that makes one."""
    return (
        f"no checkpoint: the app looked for the quickstart's {default} (relative to the folder it was started "
        f"in) and found none. Make it with `{QUICKSTART_COMMAND}` (about 15 minutes on a CPU, no download), or "
        "start the app with `--checkpoint PATH` (one of ours or an official Locater checkpoint)"
    )


def parse_sentences(text: str | None) -> list[str]:
    """The sentences typed on the page, one per line (blank lines before the first and after the last ignored).

    Raises:
        AppInputError: no sentence, a blank line between sentences, or more than :data:`MAX_SENTENCES`.
    """
    lines = (text or "").strip().splitlines()
    if not lines:
        raise AppInputError("type a sentence describing the object to segment (one sentence per line)")
    blank = [number for number, line in enumerate(lines, start=1) if not line.strip()]
    if blank:
        raise AppInputError(
            f"sentence line {blank[0]} is empty: type one sentence per line, without blank lines between them"
        )
    if len(lines) > MAX_SENTENCES:
        raise AppInputError(f"{len(lines)} sentences: the app segments at most {MAX_SENTENCES} at once")
    return [line.strip() for line in lines]


def _duration(num_frames: int, fps: float | None) -> str:
    if not fps:
        return ""
    seconds = round(num_frames / fps)
    return f" ({seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d} at {fps:g} frames/s)"


def check_frame_count(reader: FrameReader, name: str, max_frames: int) -> None:
    """Refuse a video of more than ``max_frames`` frames (``AppInputError`` naming both numbers)."""
    if reader.num_frames > max_frames:
        raise AppInputError(
            f"{name}: {reader.num_frames} frames{_duration(reader.num_frames, reader.fps)}; this app segments at "
            f"most {max_frames} frames (--max-frames): upload a shorter video, or start the app with a larger "
            "--max-frames"
        )


def _renamed(error: VideoError, path: Path, name: str) -> VideoError:
    """``error`` with the upload's temporary path replaced by the name the user gave the file."""
    return VideoError(str(error).replace(str(path), name))


def _frames_from_zip(path: Path, folder: Path, name: str, max_frames: int) -> Path:
    """Extract the image files of a zip of frames into ``folder`` (created); returns it.

    The images must sit in one folder of the archive (any depth); entries that are not images (by extension),
    ``__MACOSX/`` and hidden files are left out with a warning in the log.
    """
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as error:
        raise AppInputError(f"{name}: not a zip archive ({error})") from error
    with archive:
        members = [m for m in archive.infolist() if not m.is_dir()]
        images, ignored = [], []
        for member in members:
            parts = PurePosixPath(member.filename).parts
            hidden = any(part.startswith(".") or part == "__MACOSX" for part in parts)
            is_image = PurePosixPath(member.filename).suffix.lower() in IMAGE_EXTENSIONS
            (images if is_image and not hidden else ignored).append(member)
        if ignored:
            logger.warning(
                "%s: ignoring %d entries that are not frames: %s",
                name,
                len(ignored),
                [m.filename for m in ignored[:10]],
            )
        if not images:
            raise AppInputError(f"{name}: the zip holds no image files ({', '.join(IMAGE_EXTENSIONS)})")
        parents = sorted({str(PurePosixPath(m.filename).parent) for m in images})
        if len(parents) > 1:
            raise AppInputError(
                f"{name}: frames in several folders of the zip ({', '.join(parents[:5])}); zip the frames of one "
                "video"
            )
        if len(images) > max_frames:
            raise AppInputError(
                f"{name}: {len(images)} frames; this app segments at most {max_frames} frames (--max-frames): "
                "upload a shorter video, or start the app with a larger --max-frames"
            )
        total = sum(m.file_size for m in images)
        if total > MAX_ZIP_BYTES:
            raise AppInputError(
                f"{name}: the frames take {total / 2**30:.1f} GiB unpacked, more than {MAX_ZIP_BYTES / 2**30:g} GiB"
            )
        folder.mkdir(parents=True, exist_ok=True)
        for member in images:
            target = folder / safe_component(PurePosixPath(member.filename).name, "frame name", name)
            with archive.open(member) as source, open(target, "wb") as out:
                shutil.copyfileobj(source, out)
    return folder


def open_upload(
    path: str | Path, work_dir: str | Path, max_frames: int, name: str | None = None
) -> FrameReader:
    """A reader for an uploaded video file or zip of frames, checked.

    Args:
        path: the uploaded file (``.mp4``, ``.avi``, ``.webm``, ``.mkv``, ``.mov`` or ``.zip``).
        work_dir: where a zip's frames are extracted (``work_dir/frames``).
        max_frames: the most frames accepted.
        name: the file's name as the user knows it, for the messages (default: ``path``'s name).

    Raises:
        AppInputError: another kind of file, a broken zip, more than ``max_frames`` frames.
        VideoError: a file OpenCV cannot open or decode, a video with no frame, frames of different sizes.
    """
    path = Path(path)
    name = name or path.name
    suffix = path.suffix.lower()
    if suffix == ".zip":
        folder = Path(work_dir) / "frames"
        _frames_from_zip(path, folder, name, max_frames)
        try:
            reader = open_frames(folder)
        except VideoError as error:
            raise _renamed(error, folder, name) from error
    elif suffix in VIDEO_SUFFIXES:
        try:
            reader = open_frames(path)
        except VideoError as error:
            raise _renamed(error, path, name) from error
    else:
        raise AppInputError(
            f"{name}: not a video; upload a video file ({', '.join(VIDEO_SUFFIXES)}) or a .zip of frames"
        )
    check_frame_count(reader, name, max_frames)
    return reader


@dataclass(frozen=True)
class RunResult:
    """What one run produced.

    Attributes:
        overlay: ``overlay.webm`` (VP8, plays in browsers): the video with one colour per sentence and a legend.
        masks_zip: ``masks.zip``: ``sentences.json`` and ``sentence_<k>/<frame>.png`` (0/255, 1-based frame
            numbers, 5 digits) per sentence ``k`` (docs/app.md#the-masks-zip).
        sentences: the sentences, in the order of the zip's ``sentence_<k>`` folders.
        colors: the RGB colour of each sentence.
        frames: frames segmented.
        frame_size: ``(height, width)`` of the video.
        seconds: wall time of the streaming pass (decoding, model, writing the outputs).
        device: where the model ran.
    """

    overlay: Path
    masks_zip: Path
    sentences: tuple[str, ...]
    colors: tuple[tuple[int, int, int], ...]
    frames: int
    frame_size: tuple[int, int]
    seconds: float
    device: str

    @property
    def frames_per_second(self) -> float:
        return self.frames / max(self.seconds, 1e-9)

    def describe(self) -> str:
        """One line for the page: frames processed, frames/s, size, sentences, device."""
        height, width = self.frame_size
        return (
            f"{self.frames} frames processed ({width}x{height}, {len(self.sentences)} sentences) in "
            f"{self.seconds:.1f} s: {self.frames_per_second:.2f} frames/s on {self.device}"
        )


ProgressCallback = Callable[[int, int], None]


def segment_to_files(
    segmenter: VideoSegmenter,
    reader: FrameReader,
    sentences: Sequence[str],
    out_dir: str | Path,
    *,
    video_name: str,
    fps: float | None = None,
    alpha: float = 0.5,
    progress: ProgressCallback | None = None,
) -> RunResult:
    """Stream ``reader`` through ``segmenter`` once and write ``out_dir/overlay.webm`` and ``out_dir/masks.zip``.

    Args:
        segmenter: the model (one :meth:`VideoSegmenter.segment` pass for all sentences).
        reader: the video.
        sentences: one or more sentences.
        out_dir: the run's folder (created).
        video_name: the name recorded in the zip's ``sentences.json``.
        fps: overlay frame rate (default: the video's, 25 for frames).
        alpha: opacity of the mask colours.
        progress: called with ``(frames done, total)`` after each frame.

    Returns:
        The :class:`RunResult`. On a failure neither file is left behind.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    sentences = list(sentences)
    colors = mask_colors(len(sentences))
    folders = [f"sentence_{k}" for k in range(len(sentences))]
    overlay_path = out_dir / "overlay.webm"
    zip_path = out_dir / "masks.zip"
    total = reader.num_frames
    frames = 0
    start = time.perf_counter()
    try:
        with (
            OverlayVideoWriter(overlay_path, fps or reader.fps or DEFAULT_FPS, reader.frame_size) as writer,
            atomic_output(zip_path) as partial,
            zipfile.ZipFile(partial, "w", zipfile.ZIP_STORED) as archive,  # PNG is compressed already
            contextlib.closing(segmenter.segment(reader, sentences)) as results,
        ):
            for result in results:
                masks = result.masks.numpy()
                writer.write(overlay_with_legend(result.frame, masks, sentences, colors, alpha))
                for folder, mask in zip(folders, masks):
                    archive.writestr(
                        f"{folder}/{result.index + 1:05d}.png", encode_png(mask.astype(np.uint8) * 255)
                    )
                frames += 1
                if progress is not None:
                    progress(frames, total)
            index = {
                "format": MASKS_FORMAT,
                "video": video_name,
                "sentences": sentences,
                "folders": folders,
                "colors_rgb": [list(c) for c in colors],
                "frames": frames,
                "frame_size": list(reader.frame_size),
            }
            archive.writestr(MASKS_INDEX, json.dumps(index, indent=1))
        # leaving the block: the zip is renamed into place, then the writer checks the video holds every frame
    except BaseException:
        overlay_path.unlink(missing_ok=True)  # a truncated video or a zip without its index: neither is kept
        zip_path.unlink(missing_ok=True)
        raise
    return RunResult(
        overlay=overlay_path,
        masks_zip=zip_path,
        sentences=tuple(sentences),
        colors=tuple(colors),
        frames=frames,
        frame_size=tuple(reader.frame_size),
        seconds=time.perf_counter() - start,
        device=str(segmenter.device),
    )


class WebcamStream:
    """Webcam frames pushed one at a time through :meth:`VideoSegmenter.start_live` (the causal live mode).

    Memory stays constant however many frames are pushed. ``frames`` counts the frames segmented since the stream
    started, :attr:`frames_per_second` their rate (bounded by how often the browser sends one) and
    :attr:`seconds_per_frame` the time the model and the drawing take for one.
    """

    def __init__(
        self,
        segmenter: VideoSegmenter,
        sentences: Sequence[str],
        alpha: float = 0.5,
        live_settings: LiveSettings | None = None,
    ) -> None:
        self.sentences = tuple(sentences)
        self.colors = mask_colors(len(self.sentences))
        self.alpha = alpha
        self.session = segmenter.start_live(list(self.sentences), live_settings)
        self.device = str(segmenter.device)
        self.frames = 0
        self.busy_seconds = 0.0
        self.start = time.perf_counter()

    def push(self, rgb: np.ndarray) -> tuple[np.ndarray, SegmentedFrame]:
        """Segment the next frame.

        Args:
            rgb: ``H x W x 3`` uint8 RGB (any size; the size may change between frames).

        Returns:
            The overlay (``H x W x 3`` uint8 RGB, with the legend) and the frame's :class:`SegmentedFrame`
            (``S x H x W`` bool masks).
        """
        tick = time.perf_counter()
        if not rgb.flags.writeable:  # a UI's frame buffer may be read-only; torch wants to own a writable one
            rgb = rgb.copy()
        result = self.session.push(rgb)
        overlay = overlay_with_legend(
            result.frame, result.masks.numpy(), self.sentences, self.colors, self.alpha
        )
        self.frames += 1
        self.busy_seconds += time.perf_counter() - tick
        return overlay, result

    @property
    def frames_per_second(self) -> float:
        return self.frames / max(time.perf_counter() - self.start, 1e-9)

    @property
    def seconds_per_frame(self) -> float:
        return self.busy_seconds / max(self.frames, 1)

    def describe(self) -> str:
        """One line for the page: frames, frames/s, time per frame, device."""
        return (
            f"{self.frames} frames processed, {self.frames_per_second:.2f} frames/s "
            f"({1000 * self.seconds_per_frame:.0f} ms a frame on {self.device})"
        )


class AppSession:
    """The app's state: the segmenter (shared by every request; it holds no per-video state) and its limits.

    Args:
        segmenter: the model, or ``None`` when there is no checkpoint (every run then raises
            :class:`NoCheckpointError` with ``missing``).
        work_dir: where runs write their outputs (``run-*`` folders; the ``keep_results`` newest are kept).
        examples_dir: where the example videos are generated on first use.
        max_frames: the longest video accepted.
        alpha: opacity of the mask colours.
        keep_results: finished runs kept on disk (older ones are deleted when a new run starts).
        checkpoint: the checkpoint's path, for the page.
        missing: the message shown when ``segmenter`` is ``None``.
    """

    def __init__(
        self,
        segmenter: VideoSegmenter | None,
        work_dir: str | Path,
        examples_dir: str | Path,
        *,
        max_frames: int = DEFAULT_MAX_FRAMES,
        alpha: float = 0.5,
        keep_results: int = 8,
        checkpoint: str | Path | None = None,
        missing: str = "",
    ) -> None:
        if max_frames < 1:
            raise ValueError(f"max_frames must be positive, got {max_frames}")
        if keep_results < 1:
            raise ValueError(f"keep_results must be positive, got {keep_results}")
        self.segmenter = segmenter
        self.work_dir = Path(work_dir)
        self.examples_dir = Path(examples_dir)
        self.max_frames = max_frames
        self.alpha = alpha
        self.keep_results = keep_results
        self.checkpoint = None if checkpoint is None else Path(checkpoint)
        self.missing = missing or missing_checkpoint_message()

    @classmethod
    def from_checkpoint(
        cls,
        checkpoint: str | Path | None,
        work_dir: str | Path,
        examples_dir: str | Path,
        *,
        default_checkpoint: str | Path = QUICKSTART_CHECKPOINT,
        device: str = "auto",
        amp: bool | str = False,
        threshold: float = 0.5,
        overrides: Sequence[str] = (),
        trust_checkpoint: bool = False,
        **kwargs: object,
    ) -> AppSession:
        """Load ``checkpoint`` (ours or official; a missing file raises
        :class:`~locater.checkpoint.CheckpointError`), or with ``None`` the quickstart's checkpoint when it
        exists; otherwise a session without a model whose page says which command makes one."""
        path = Path(checkpoint) if checkpoint is not None else Path(default_checkpoint)
        if checkpoint is None and not path.is_file():
            logger.warning("%s", missing_checkpoint_message(path))
            return cls(None, work_dir, examples_dir, missing=missing_checkpoint_message(path), **kwargs)
        segmenter = VideoSegmenter.from_checkpoint(
            path,
            device=device,
            overrides=overrides,
            amp=amp,
            threshold=threshold,
            trust_checkpoint=trust_checkpoint,
        )
        return cls(segmenter, work_dir, examples_dir, checkpoint=path, **kwargs)

    @property
    def ready(self) -> bool:
        return self.segmenter is not None

    def describe(self) -> str:
        """One line about the model for the page."""
        if self.segmenter is None:
            return self.missing
        return f"checkpoint {self.checkpoint} on {self.segmenter.device}; videos of at most {self.max_frames} frames"

    def _segmenter(self) -> VideoSegmenter:
        if self.segmenter is None:
            raise NoCheckpointError(self.missing)
        return self.segmenter

    def example(self, label: str) -> Example:
        """The example video ``label`` (generated on first use) and its sentences."""
        return ensure_example(self.examples_dir, label)

    def _new_run_dir(self) -> Path:
        self.work_dir.mkdir(parents=True, exist_ok=True)
        runs = sorted(self.work_dir.glob("run-*"), key=lambda p: p.stat().st_mtime)
        for old in runs[: max(0, len(runs) - self.keep_results + 1)]:
            shutil.rmtree(old, ignore_errors=True)
        return Path(tempfile.mkdtemp(prefix="run-", dir=self.work_dir))

    def run(
        self,
        video: str | Path | None,
        sentences_text: str | None,
        progress: ProgressCallback | None = None,
        video_name: str | None = None,
    ) -> RunResult:
        """Segment an uploaded (or example) video for the sentences typed on the page.

        Args:
            video: the video file or zip of frames (``None``: nothing chosen).
            sentences_text: one sentence per line.
            progress: called with ``(frames done, total)``.
            video_name: the name the user knows the file by (default: its file name).

        Raises:
            NoCheckpointError, AppInputError, VideoError: with the message for the page.
        """
        segmenter = self._segmenter()
        sentences = parse_sentences(sentences_text)
        if video is None or not str(video).strip():
            raise AppInputError("choose an example video or upload a video (or a zip of frames) first")
        video = Path(video)
        name = video_name or video.name
        run_dir = self._new_run_dir()
        try:
            reader = open_upload(video, run_dir, self.max_frames, name)
            try:
                result = segment_to_files(
                    segmenter,
                    reader,
                    sentences,
                    run_dir,
                    video_name=name,
                    alpha=self.alpha,
                    progress=progress,
                )
            except (
                VideoError
            ) as error:  # a frame that does not decode part-way: named as the user knows the file
                raise _renamed(_renamed(error, run_dir / "frames", name), video, name) from error
        except BaseException:
            shutil.rmtree(run_dir, ignore_errors=True)
            raise
        shutil.rmtree(run_dir / "frames", ignore_errors=True)  # a zip's extracted frames
        logger.info("%s: %s", name, result.describe())
        return result

    def webcam(self, sentences_text: str | None, live_settings: LiveSettings | None = None) -> WebcamStream:
        """A :class:`WebcamStream` for the sentences typed on the page."""
        return WebcamStream(self._segmenter(), parse_sentences(sentences_text), self.alpha, live_settings)
