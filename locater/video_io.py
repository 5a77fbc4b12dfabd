"""Video in and out with OpenCV: video files and folders of frames as RGB frames, overlay videos with a legend.

Readers give random access (``read(index)``, to fetch the global-memory frames first) and sequential streaming
(``frames()``), never holding more than one decoded frame. Every problem raises :class:`VideoError` naming the file.
"""

from __future__ import annotations

import colorsys
import logging
import math
import re
import shutil
from collections.abc import Iterator, Sequence
from pathlib import Path

import cv2
import numpy as np

from locater.data.frames import DataError, read_rgb
from locater.errors import LocaterError, OutputError

logger = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
# .webm holds VP8, which browsers play (the app's overlay); OpenCV's wheels have no H.264 encoder
VIDEO_FOURCC = {".mp4": "mp4v", ".avi": "MJPG", ".mkv": "mp4v", ".mov": "mp4v", ".webm": "VP80"}

# Distinct, saturated RGB colours for the first sentences (then evenly spaced hues).
PALETTE: tuple[tuple[int, int, int], ...] = (
    (230, 25, 75),
    (60, 180, 75),
    (0, 130, 200),
    (255, 225, 25),
    (245, 130, 48),
    (145, 30, 180),
    (70, 240, 240),
    (240, 50, 230),
    (210, 245, 60),
    (250, 190, 212),
)


class VideoError(LocaterError, ValueError):
    """A video file or frame folder cannot be read or written; the message names the file and the problem."""


# ------------------------------------------------------------------------------------------------------ readers
class VideoFileReader:
    """Frames of a video file that OpenCV decodes (mp4, avi, ...), as ``H x W x 3`` uint8 RGB.

    The frame count is checked by decoding: ``CAP_PROP_FRAME_COUNT`` is trusted only when its last frame decodes
    and the frame after it does not; otherwise one counting pass over the file gives the true number.

    Args:
        path: the video file.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise VideoError(f"video not found: {self.path}")
        capture = self._open()
        try:
            fps = capture.get(cv2.CAP_PROP_FPS)
            self.fps: float | None = float(fps) if fps and np.isfinite(fps) and fps > 0 else None
            self.num_frames = self._count_frames(capture)
        finally:
            capture.release()
        if self.num_frames == 0:
            raise VideoError(f"{self.path}: no frame could be decoded")
        # a fresh capture: after the count has grabbed past the end, OpenCV cannot seek back to frame 0 of a
        # one-frame file
        self.frame_size: tuple[int, int] = self.read(0).shape[:2]

    def _open(self) -> cv2.VideoCapture:
        capture = cv2.VideoCapture(str(self.path))
        if not capture.isOpened():
            capture.release()
            raise VideoError(f"{self.path}: OpenCV cannot open this file as a video")
        return capture

    @staticmethod
    def _frame_decodes(capture: cv2.VideoCapture, index: int) -> bool:
        capture.set(cv2.CAP_PROP_POS_FRAMES, index)
        return bool(capture.grab())

    def _count_frames(self, capture: cv2.VideoCapture) -> int:
        reported = int(capture.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        if (
            reported > 0
            and self._frame_decodes(capture, reported - 1)
            and not self._frame_decodes(capture, reported)
        ):
            return reported
        capture.set(cv2.CAP_PROP_POS_FRAMES, 0)
        counted = 0
        while capture.grab():
            counted += 1
        logger.warning(
            "%s: the container reports %d frames, %d decode; using %d", self.path, reported, counted, counted
        )
        return counted

    def _check_index(self, index: int) -> None:
        if not 0 <= index < self.num_frames:
            raise VideoError(
                f"{self.path}: frame {index} out of range (the video has {self.num_frames} frames)"
            )

    def _decode_at(self, capture: cv2.VideoCapture, index: int) -> np.ndarray:
        self._check_index(index)
        capture.set(cv2.CAP_PROP_POS_FRAMES, index)
        ok, bgr = capture.read()
        if not ok or bgr is None:
            raise VideoError(f"{self.path}: cannot decode frame {index}")
        return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)

    def read(self, index: int) -> np.ndarray:
        """Frame ``index`` (0-based) by seeking: ``H x W x 3`` uint8 RGB."""
        capture = self._open()
        try:
            return self._decode_at(capture, index)
        finally:
            capture.release()

    def frames(self, start: int = 0, stop: int | None = None) -> Iterator[np.ndarray]:
        """Decode frames ``start .. stop - 1`` in order (``stop`` defaults to the end), one at a time."""
        stop = self.num_frames if stop is None else min(stop, self.num_frames)
        if start >= stop:
            return
        self._check_index(start)
        capture = self._open()
        try:
            if start:
                capture.set(cv2.CAP_PROP_POS_FRAMES, start)
            for index in range(start, stop):
                ok, bgr = capture.read()
                if not ok or bgr is None:
                    raise VideoError(f"{self.path}: cannot decode frame {index} of {self.num_frames}")
                yield cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        finally:
            capture.release()

    def __len__(self) -> int:
        return self.num_frames


def _natural_key(name: str) -> list:
    """Sort key under which ``frame2.png`` comes before ``frame10.png``."""
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", name)]


class FrameFolderReader:
    """A folder of image files, one frame each, in natural name order (``2.png`` before ``10.png``).

    Files that are not images (by extension) and sub-folders are ignored with a warning; every frame must have
    the size of the first.

    Args:
        path: the folder.
    """

    fps: float | None = None

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if not self.path.is_dir():
            raise VideoError(f"frame folder not found: {self.path}")
        entries = sorted(self.path.iterdir(), key=lambda p: _natural_key(p.name))
        self.files = [p for p in entries if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS]
        ignored = [p.name for p in entries if p not in self.files and not p.name.startswith(".")]
        if ignored:
            logger.warning(
                "%s: ignoring %d entries that are not images: %s", self.path, len(ignored), ignored[:10]
            )
        if not self.files:
            raise VideoError(f"{self.path}: no image files ({', '.join(IMAGE_EXTENSIONS)})")
        self.num_frames = len(self.files)
        self.frame_size: tuple[int, int] = self._read_file(self.files[0]).shape[:2]

    @staticmethod
    def _read_file(path: Path) -> np.ndarray:
        try:
            return read_rgb(path)
        except DataError as error:
            raise VideoError(str(error)) from error

    def read(self, index: int) -> np.ndarray:
        """Frame ``index`` (0-based): ``H x W x 3`` uint8 RGB."""
        if not 0 <= index < self.num_frames:
            raise VideoError(
                f"{self.path}: frame {index} out of range (the folder has {self.num_frames} frames)"
            )
        frame = self._read_file(self.files[index])
        if frame.shape[:2] != self.frame_size:
            raise VideoError(
                f"{self.files[index]}: frame is {frame.shape[1]}x{frame.shape[0]}, the first frame "
                f"{self.files[0].name} is {self.frame_size[1]}x{self.frame_size[0]} (all frames must share one size)"
            )
        return frame

    def frames(self, start: int = 0, stop: int | None = None) -> Iterator[np.ndarray]:
        """Read frames ``start .. stop - 1`` in order, one at a time."""
        stop = self.num_frames if stop is None else min(stop, self.num_frames)
        for index in range(start, stop):
            yield self.read(index)

    def __len__(self) -> int:
        return self.num_frames


FrameReader = VideoFileReader | FrameFolderReader


def open_frames(path: str | Path) -> FrameReader:
    """A reader for a video file or a folder of frames."""
    path = Path(path)
    if path.is_dir():
        return FrameFolderReader(path)
    if path.is_file():
        return VideoFileReader(path)
    raise VideoError(f"video file or frame folder not found: {path}")


# ------------------------------------------------------------------------------------------------------ drawing
def mask_colors(count: int) -> list[tuple[int, int, int]]:
    """``count`` distinct RGB colours: :data:`PALETTE`, then evenly spaced hues."""
    colors = list(PALETTE[:count])
    extra = count - len(colors)
    for i in range(extra):
        r, g, b = colorsys.hsv_to_rgb((i / extra + 0.05) % 1.0, 0.85, 0.95)
        colors.append((int(r * 255), int(g * 255), int(b * 255)))
    return colors


def overlay_masks(
    frame: np.ndarray, masks: np.ndarray, colors: Sequence[tuple[int, int, int]], alpha: float = 0.5
) -> np.ndarray:
    """Blend each mask into the frame in its colour and outline it.

    Args:
        frame: ``H x W x 3`` uint8 RGB.
        masks: ``S x H x W`` bool, one per sentence (later masks are drawn over earlier ones).
        colors: ``S`` RGB colours.
        alpha: opacity of the fill.

    Returns:
        A new ``H x W x 3`` uint8 RGB frame.
    """
    if masks.ndim != 3 or masks.shape[1:] != frame.shape[:2]:
        raise ValueError(f"masks {masks.shape} do not match a frame of size {frame.shape[:2]}")
    if len(colors) < masks.shape[0]:
        raise ValueError(f"{masks.shape[0]} masks but {len(colors)} colours")
    out = frame.astype(np.float32)
    thickness = max(1, round(min(frame.shape[:2]) / 240))
    contours_per_mask = []
    for mask, color in zip(masks, colors):
        out[mask] = (1.0 - alpha) * out[mask] + alpha * np.asarray(color, np.float32)
        contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        contours_per_mask.append(contours)
    out = np.ascontiguousarray(out.round().clip(0, 255).astype(np.uint8))
    for contours, color in zip(contours_per_mask, colors):
        cv2.drawContours(out, contours, -1, tuple(int(c) for c in color), thickness)
    return out


def overlay_with_legend(
    frame: np.ndarray,
    masks: np.ndarray,
    sentences: Sequence[str],
    colors: Sequence[tuple[int, int, int]],
    alpha: float = 0.5,
) -> np.ndarray:
    """:func:`overlay_masks`, then :func:`draw_legend` of the sentences: what the demo, the app and the webcam
    show. Returns a new ``H x W x 3`` uint8 RGB frame."""
    return draw_legend(overlay_masks(frame, masks, colors, alpha), sentences, colors)


def _fit_text(text: str, max_width: int, scale: float, thickness: int) -> str:
    """``text`` in ASCII (OpenCV's fonts have no other glyphs), cut with '...' to fit ``max_width`` pixels."""
    text = text.encode("ascii", "replace").decode("ascii")

    def width(s: str) -> int:
        return cv2.getTextSize(s, cv2.FONT_HERSHEY_SIMPLEX, scale, thickness)[0][0]

    if width(text) <= max_width:
        return text
    while text and width(text + "...") > max_width:
        text = text[:-1]
    return text + "..."


def draw_legend(
    frame: np.ndarray, sentences: Sequence[str], colors: Sequence[tuple[int, int, int]]
) -> np.ndarray:
    """Draw a legend (colour swatch + sentence per row) in the top-left corner, in place.

    Args:
        frame: ``H x W x 3`` uint8 RGB (modified and returned).
        sentences: one line each; cut with '...' where they do not fit the frame's width.
        colors: RGB colour of each sentence.
    """
    height, width = frame.shape[:2]
    scale = float(np.clip(min(height, width) / 900.0, 0.3, 1.2))
    thickness = 1 if scale < 0.8 else 2
    line = cv2.getTextSize("Ag", cv2.FONT_HERSHEY_SIMPLEX, scale, thickness)[0][1]
    pad, row = max(2, line // 3), int(line * 1.9)
    swatch = line
    texts = [_fit_text(s, width - 4 * pad - swatch, scale, thickness) for s in sentences]
    text_width = max(cv2.getTextSize(t, cv2.FONT_HERSHEY_SIMPLEX, scale, thickness)[0][0] for t in texts)
    box_w = min(width, 3 * pad + swatch + text_width + pad)
    box_h = min(height, pad + row * len(texts))
    region = frame[:box_h, :box_w]
    region[:] = (region.astype(np.float32) * 0.4).astype(np.uint8)
    for i, (text, color) in enumerate(zip(texts, colors)):
        top = pad + i * row
        baseline = top + (row + line) // 2
        cv2.rectangle(
            frame, (pad, baseline - swatch), (pad + swatch, baseline), tuple(int(c) for c in color), -1
        )
        cv2.putText(
            frame,
            text,
            (2 * pad + swatch, baseline),
            cv2.FONT_HERSHEY_SIMPLEX,
            scale,
            (255, 255, 255),
            thickness,
            cv2.LINE_AA,
        )
    return frame


# ------------------------------------------------------------------------------------------------------ writers
class OverlayVideoWriter:
    """Writes ``H x W x 3`` uint8 RGB frames to a video file (mp4v for .mp4/.mkv/.mov, MJPG for .avi, VP8 for
    .webm, which browsers play).

    The encoders store 4:2:0 video, which needs even sizes: an odd height or width loses its last row or column
    (``video_size``); masks written elsewhere keep the exact size.

    OpenCV drops a frame it cannot write with a warning only (a full disk leaves a short, often unplayable file),
    so :meth:`write` first checks that the folder has room for one raw frame, and :meth:`close` opens the finished
    file and checks it holds every frame written (one look at the container's frame count, a counting pass only
    where the container has none). Either failure raises :class:`~locater.errors.OutputError` naming the file and
    deletes it. Leaving a ``with`` block on an exception only releases the writer.

    Args:
        path: output file; its parent folder is created.
        fps: frame rate.
        frame_size: ``(height, width)`` of every frame.
    """

    def __init__(self, path: str | Path, fps: float, frame_size: tuple[int, int]) -> None:
        self.path = Path(path)
        suffix = self.path.suffix.lower()
        if suffix not in VIDEO_FOURCC:
            raise VideoError(
                f"{self.path}: unsupported video extension (use one of {', '.join(VIDEO_FOURCC)})"
            )
        if not fps > 0:
            raise VideoError(f"{self.path}: frame rate must be positive, got {fps}")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.frame_size = tuple(frame_size)
        height, width = self.frame_size[0] // 2 * 2, self.frame_size[1] // 2 * 2
        if height == 0 or width == 0:
            raise VideoError(
                f"{self.path}: frames of {self.frame_size[1]}x{self.frame_size[0]} are too small"
            )
        if (height, width) != self.frame_size:
            logger.info(
                "%s: cropping %s frames to the even size %dx%d", self.path, self.frame_size, width, height
            )
        self.video_size = (height, width)
        self.writer = cv2.VideoWriter(
            str(self.path), cv2.VideoWriter_fourcc(*VIDEO_FOURCC[suffix]), float(fps), (width, height)
        )
        if not self.writer.isOpened():
            raise VideoError(
                f"{self.path}: OpenCV cannot open a video writer ({VIDEO_FOURCC[suffix]}, {width}x{height})"
            )
        self.frames_written = 0
        self.released = False

    def write(self, frame: np.ndarray) -> None:
        """Append one ``H x W x 3`` uint8 RGB frame of the writer's size.

        Raises:
            VideoError: the frame has another size or type, or the writer is closed.
            OutputError: the folder has no room for one more raw frame (the writer is released and the partial
                file deleted).
        """
        if self.released:
            raise VideoError(f"{self.path}: the video writer is closed")
        if frame.shape != (*self.frame_size, 3) or frame.dtype != np.uint8:
            raise VideoError(
                f"{self.path}: frame {self.frames_written} is {frame.dtype} {frame.shape}, "
                f"expected uint8 {(*self.frame_size, 3)}"
            )
        height, width = self.video_size
        needed = height * width * 3  # an encoded frame is smaller: room for this one is room enough
        free = shutil.disk_usage(self.path.parent).free
        if free < needed:
            self._discard()
            raise OutputError(
                f"cannot write {self.path}: no space left on device (ENOSPC) at frame {self.frames_written}: "
                f"{free} bytes free, a frame may need {needed}; the partial video was deleted"
            )
        self.writer.write(cv2.cvtColor(np.ascontiguousarray(frame[:height, :width]), cv2.COLOR_RGB2BGR))
        self.frames_written += 1

    def _discard(self) -> None:
        self.writer.release()
        self.released = True
        self.path.unlink(missing_ok=True)

    def frames_in_file(self) -> int:
        """The frames the written file holds: the container's count, else (0 or unknown) a counting pass;
        0 when OpenCV cannot open it."""
        capture = cv2.VideoCapture(str(self.path))
        try:
            if not capture.isOpened():
                return 0
            reported = capture.get(cv2.CAP_PROP_FRAME_COUNT)
            if reported and math.isfinite(reported) and reported > 0:
                return int(reported)
            counted = 0
            while capture.grab():
                counted += 1
            return counted
        finally:
            capture.release()

    def close(self) -> None:
        """Finish the file and check that it holds every frame written (nothing to do when already closed).

        Raises:
            OutputError: the file holds another number of frames, or cannot be opened: frames were dropped
                (a full disk, a failing encoder); the broken file is deleted.
        """
        if self.released:
            return
        self.writer.release()
        self.released = True
        if self.frames_written == 0:
            return
        found = self.frames_in_file()
        if found != self.frames_written:
            self.path.unlink(missing_ok=True)
            raise OutputError(
                f"cannot write {self.path}: the file holds {found} frames, {self.frames_written} were written "
                "(frames dropped by the encoder or the disk; is the disk full?); the broken video was deleted"
            )

    def __enter__(self) -> OverlayVideoWriter:
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        if exc_type is None:
            self.close()
        elif not self.released:  # the failure in the block is the one to report: no check on top of it
            self.writer.release()
            self.released = True
