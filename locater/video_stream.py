"""Sources whose end is unknown, read once in order, and an overlay file that can be watched while it grows.

:class:`CaptureReader` reads a camera (an index), a network stream (``rtsp://``, ``http://``, ``https://``, ...),
standard input (``-``: any stream FFmpeg probes, e.g. ``ffmpeg ... -f mjpeg -``) or a named pipe through
``cv2.VideoCapture``. Such a source cannot seek and has no frame count: it is only streamed, in the live mode
(:mod:`locater.live`). A source that cannot be opened, delivers no frame, or stops delivering frames for longer
than the read timeout raises :class:`~locater.video_io.VideoError` naming it; a stream its sender ends is simply
over.

:class:`MjpegStreamWriter` appends each frame to a raw MJPEG file (concatenated JPEG images) and flushes it at
once: players (ffplay, mpv, VLC) and OpenCV read the file while it grows, and a run stopped at any frame leaves a
playable file. The container formats that OpenCV writes (mp4, avi, mkv) are only readable once closed.
"""

from __future__ import annotations

import logging
import shutil
import stat
import time
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np

from locater.errors import OutputError
from locater.video_io import VideoError

logger = logging.getLogger(__name__)

STREAM_SCHEMES = ("rtsp://", "rtsps://", "rtmp://", "http://", "https://", "udp://", "tcp://", "srt://")
STDIN = "-"
DEFAULT_READ_TIMEOUT = 10.0  # seconds without a frame before a stream counts as stalled


def is_stream_source(source: object) -> bool:
    """Whether ``source`` is read as a stream: a camera index (int), a URL string, ``-`` (standard input), or a
    path to a named pipe or a character device (``/dev/video0``)."""
    if isinstance(source, bool):
        return False
    if isinstance(source, int):
        return True
    if isinstance(source, str) and (source == STDIN or source.lower().startswith(STREAM_SCHEMES)):
        return True
    if isinstance(source, (str, Path)):
        try:
            mode = Path(source).stat().st_mode
        except OSError:
            return False
        return stat.S_ISFIFO(mode) or stat.S_ISCHR(mode)
    return False


def stream_source_from_text(text: str) -> int | str:
    """A command-line source: digits that name no file are a camera index, anything else stays a string."""
    if text.isdigit() and not Path(text).exists():
        return int(text)
    return text


def describe_source(source: int | str | Path) -> str:
    """How messages name a source: ``camera 0``, ``standard input``, the URL or the path."""
    if isinstance(source, int):
        return f"camera {source}"
    if str(source) == STDIN:
        return "standard input"
    return str(source)


class CaptureReader:
    """Frames of a camera, URL, standard input or named pipe as ``H x W x 3`` uint8 RGB, read once, in order.

    The source is opened here, so a bad one fails before any work. ``num_frames`` is ``None`` (unknown) and there
    is no random access.

    Args:
        source: camera index, URL, ``-`` or a path (a pipe, or a file to read sequentially).
        timeout: seconds to wait for the source to open and for each frame (FFmpeg sources; a camera uses its
            driver's timeout); a longer wait for a frame raises :class:`VideoError`. 0 waits for ever.
    """

    num_frames: int | None = None

    def __init__(self, source: int | str | Path, timeout: float = DEFAULT_READ_TIMEOUT) -> None:
        if timeout < 0:
            raise ValueError(f"the read timeout must be >= 0 seconds (0: none), got {timeout}")
        self.source = source
        self.name = describe_source(source)
        self.timeout = float(timeout)
        self._capture: cv2.VideoCapture | None = self._open()
        fps = self._capture.get(cv2.CAP_PROP_FPS)
        self.fps: float | None = float(fps) if fps and np.isfinite(fps) and 0 < fps < 1000 else None
        self._streamed = False

    def _open(self) -> cv2.VideoCapture:
        if isinstance(self.source, int):
            if self.source < 0:
                raise VideoError(f"{self.name}: a camera index must be >= 0")
            capture = cv2.VideoCapture(self.source)
            what = "no such device, or it is in use"
        else:
            target = "pipe:0" if str(self.source) == STDIN else str(self.source)
            params = []
            if self.timeout > 0:
                milliseconds = int(self.timeout * 1000)
                params = [
                    cv2.CAP_PROP_OPEN_TIMEOUT_MSEC,
                    milliseconds,
                    cv2.CAP_PROP_READ_TIMEOUT_MSEC,
                    milliseconds,
                ]
            capture = cv2.VideoCapture(target, cv2.CAP_FFMPEG, params)
            what = (
                "nothing answers there, it sends no video FFmpeg can decode"
                + (f", or it sent no header within {self.timeout:g} s" if self.timeout > 0 else "")
                + " (see FFmpeg's message above)"
            )
        if not capture.isOpened():
            capture.release()
            raise VideoError(f"{self.name}: OpenCV cannot open this stream: {what}")
        return capture

    @property
    def streamed(self) -> bool:
        """Whether :meth:`frames` was called (the stream is then read, or being read)."""
        return self._streamed

    def frames(self, start: int = 0, stop: int | None = None) -> Iterator[np.ndarray]:
        """The frames in order, from the first (``start`` must be 0: a stream cannot seek) until the stream ends or
        ``stop`` frames were read; the source is released at the end. A stream is read once."""
        if start != 0:
            raise VideoError(f"{self.name}: a stream cannot seek to frame {start}")
        if self._streamed or self._capture is None:
            raise VideoError(f"{self.name}: the stream was already read (a stream is read once)")
        self._streamed = True
        capture = self._capture
        index = 0
        try:
            while stop is None or index < stop:
                tick = time.monotonic()
                ok, bgr = capture.read()
                if not ok or bgr is None:
                    self._ended(index, time.monotonic() - tick)
                    return
                yield cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
                index += 1
        finally:
            self.close()

    def _ended(self, frames_read: int, waited: float) -> None:
        """The source gave no frame: raise if it delivered none at all or stalled, else log the end."""
        stalled = self.timeout > 0 and waited >= 0.9 * self.timeout
        if frames_read == 0:
            reason = (
                f"no frame within {waited:.1f} s" if stalled else "the stream ended before its first frame"
            )
            raise VideoError(f"{self.name}: opened, but delivered no frame ({reason})")
        if stalled:
            raise VideoError(
                f"{self.name}: stopped delivering frames: none for {waited:.1f} s after frame {frames_read} "
                f"(read timeout {self.timeout:g} s)"
            )
        logger.info("%s: the stream ended after %d frames", self.name, frames_read)

    def close(self) -> None:
        """Release the source (nothing to do when already released)."""
        if self._capture is not None:
            self._capture.release()
            self._capture = None

    def __enter__(self) -> CaptureReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class MjpegStreamWriter:
    """Appends ``H x W x 3`` uint8 RGB frames to a raw MJPEG file, one JPEG each, flushed after every frame.

    Before each frame it checks that the folder has room for it; a full disk raises
    :class:`~locater.errors.OutputError` and leaves the frames written so far (a valid, shorter stream).

    Args:
        path: output file (``.mjpeg`` or ``.mjpg`` tells players the format); its folder is created.
        quality: JPEG quality, 1..100.
    """

    def __init__(self, path: str | Path, quality: int = 90) -> None:
        self.path = Path(path)
        if not 1 <= quality <= 100:
            raise ValueError(f"JPEG quality must lie in 1..100, got {quality}")
        self.quality = int(quality)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(self.path, "wb")  # noqa: SIM115 - kept open across frames, closed in close()
        self.frames_written = 0
        self.frame_size: tuple[int, int] | None = None

    def write(self, frame: np.ndarray) -> None:
        """Append one frame (every frame must have the first one's size) and flush it to the file."""
        if self._file.closed:
            raise VideoError(f"{self.path}: the MJPEG writer is closed")
        if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
            raise VideoError(
                f"{self.path}: frame {self.frames_written} is {frame.dtype} {frame.shape}, expected uint8 H x W x 3"
            )
        if self.frame_size is None:
            self.frame_size = frame.shape[:2]
        elif frame.shape[:2] != self.frame_size:
            raise VideoError(
                f"{self.path}: frame {self.frames_written} is {frame.shape[1]}x{frame.shape[0]}, the first was "
                f"{self.frame_size[1]}x{self.frame_size[0]}"
            )
        ok, encoded = cv2.imencode(
            ".jpg",
            cv2.cvtColor(np.ascontiguousarray(frame), cv2.COLOR_RGB2BGR),
            [cv2.IMWRITE_JPEG_QUALITY, self.quality],
        )
        if not ok:
            raise VideoError(f"{self.path}: OpenCV cannot encode frame {self.frames_written} as JPEG")
        data = encoded.tobytes()
        free = shutil.disk_usage(self.path.parent).free
        if free < len(data):
            raise OutputError(
                f"cannot write {self.path}: no space left on device (ENOSPC) at frame {self.frames_written}: "
                f"{free} bytes free, the frame needs {len(data)}; the {self.frames_written} frames before it are kept"
            )
        self._file.write(data)
        self._file.flush()
        self.frames_written += 1

    def close(self) -> None:
        """Close the file (nothing to do when already closed)."""
        if not self._file.closed:
            self._file.close()

    def __enter__(self) -> MjpegStreamWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
