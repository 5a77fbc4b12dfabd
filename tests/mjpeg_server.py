"""A local MJPEG stream for tests: JPEG frames served as ``multipart/x-mixed-replace`` on 127.0.0.1 from a thread.

This is what IP cameras and ``ffmpeg -f mpjpeg`` serve; OpenCV's FFmpeg backend reads it from
``http://127.0.0.1:PORT/stream.mjpg``. Each frame carries its index in three grey 8 x 8 blocks in its top-left
corner (base-16 digits, 16 grey levels apart, so JPEG's error cannot change them): :func:`stamped_index` reads it
back, to check that frames arrive in order and none is dropped.
"""

from __future__ import annotations

import http.server
import threading
import time
from collections.abc import Callable

import cv2
import numpy as np

from locater.data.synthetic import generate_video

BOUNDARY = "locaterframe"
DIGITS = 3  # indices up to 16**3 - 1


def stamp_index(frame: np.ndarray, index: int) -> np.ndarray:
    """``frame`` (H x W x 3 uint8) with ``index`` written into its top-left corner (a copy)."""
    out = frame.copy()
    for digit in range(DIGITS):
        value = (index >> (4 * (DIGITS - 1 - digit))) & 15
        out[:8, 8 * digit : 8 * digit + 8] = 8 + 16 * value
    return out


def stamped_index(frame: np.ndarray) -> int:
    """The index :func:`stamp_index` wrote into ``frame``."""
    index = 0
    for digit in range(DIGITS):
        level = float(frame[2:6, 8 * digit + 2 : 8 * digit + 6].mean())
        index = index * 16 + int(round((level - 8) / 16))
    return index


def synthetic_scene(size: tuple[int, int] = (240, 320), seed: int = 0) -> Callable[[int], np.ndarray]:
    """``index -> H x W x 3`` uint8 RGB frame of a moving synthetic scene (a TEMP video of the benchmark, played
    forwards and backwards, scaled to ``size``), stamped with its index."""
    video = generate_video("TEMP", seed, size=64, num_frames=24)
    frames = [cv2.resize(f, (size[1], size[0]), interpolation=cv2.INTER_NEAREST) for f in video.frames]
    period = 2 * len(frames) - 2

    def frame(index: int) -> np.ndarray:
        position = index % period
        source = frames[position if position < len(frames) else period - position]
        return stamp_index(source, index)

    return frame


class MjpegServer:
    """Serves ``count`` frames of ``frame(index)`` to every client, then ends the response.

    Args:
        frame: ``index -> H x W x 3`` uint8 RGB.
        count: frames per client.
        stall_after: after this many frames, keep the connection open without sending anything (a stalled camera).
        fps: pace the frames (``None``: as fast as the client reads).
    """

    def __init__(
        self,
        frame: Callable[[int], np.ndarray],
        count: int,
        stall_after: int | None = None,
        fps: float | None = None,
    ) -> None:
        self.frame, self.count, self.stall_after, self.fps = frame, count, stall_after, fps
        self.frames_sent = 0
        self._stop = threading.Event()
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - the http.server hook
                self.send_response(200)
                self.send_header("Content-Type", f"multipart/x-mixed-replace; boundary={BOUNDARY}")
                self.end_headers()
                try:
                    server._send(self.wfile)
                except (BrokenPipeError, ConnectionResetError):  # the client stopped reading
                    pass

            def log_message(self, *args: object) -> None:
                pass

        self._httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    def _send(self, out) -> None:
        for index in range(self.count):
            if self.stall_after is not None and index >= self.stall_after:
                self._stop.wait(60)
                return
            ok, jpeg = cv2.imencode(".jpg", cv2.cvtColor(self.frame(index), cv2.COLOR_RGB2BGR))
            assert ok
            data = jpeg.tobytes()
            header = f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {len(data)}\r\n\r\n"
            out.write(header.encode() + data + b"\r\n")
            out.flush()
            self.frames_sent = index + 1
            if self.fps:
                time.sleep(1 / self.fps)
            if self._stop.is_set():
                return

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/stream.mjpg"

    def __enter__(self) -> MjpegServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._httpd.shutdown()
        self._httpd.server_close()


def mjpeg_bytes(frame: Callable[[int], np.ndarray], count: int) -> bytes:
    """``count`` frames as a raw MJPEG stream (concatenated JPEGs), what ``ffmpeg ... -f mjpeg -`` writes."""
    parts = []
    for index in range(count):
        ok, jpeg = cv2.imencode(".jpg", cv2.cvtColor(frame(index), cv2.COLOR_RGB2BGR))
        assert ok
        parts.append(jpeg.tobytes())
    return b"".join(parts)
