"""Image files in and out: RGB frames, PNG sizes, deterministic PNG bytes.

Every reader here raises :class:`DataError` naming the file and the problem; nothing is guessed.
"""

from __future__ import annotations

import struct
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from locater.errors import LocaterError, write_failure

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PNG_PARAMS = [cv2.IMWRITE_PNG_COMPRESSION, 3]  # fixed parameters: the same array gives the same bytes


class DataError(LocaterError, ValueError):
    """A data file is missing, unreadable or inconsistent; the message names the file and the problem."""


class UnsafePathError(DataError):
    """An id from a data file would make a path (or a zip member) leave its root; names the file and the id.

    Raised by :mod:`locater.paths`; defined here, next to :class:`DataError`, so that module imports nothing of
    ``locater.data`` (whose readers import it).
    """


def read_rgb(path: str | Path) -> np.ndarray:
    """Read an image with OpenCV as ``H x W x 3`` uint8 RGB (grey images are expanded, alpha dropped)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"frame file missing: {path}")
    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if image is None:
        raise DataError(f"{path}: cannot decode image (corrupt file?)")
    if image.dtype != np.uint8:
        raise DataError(f"{path}: expected an 8-bit image, got {image.dtype}")
    if image.ndim == 2:
        return np.repeat(image[:, :, None], 3, axis=2)
    if image.shape[2] == 4:
        image = image[:, :, :3]
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def image_size(path: str | Path) -> tuple[int, int]:
    """``(height, width)`` of an image from its header, the pixels not decoded (PNG read directly, other formats
    through Pillow)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"frame file missing: {path}")
    with path.open("rb") as handle:
        head = handle.read(24)
    if head[:8] == PNG_SIGNATURE:
        if head[12:16] != b"IHDR":
            raise DataError(f"{path}: PNG without an IHDR header (corrupt file?)")
        width, height = struct.unpack(">II", head[16:24])
        return int(height), int(width)
    try:
        with Image.open(path) as image:
            width, height = image.size
    except OSError as error:
        raise DataError(f"{path}: cannot read the image header ({error})") from error
    return int(height), int(width)


def check_mask_size(
    mask: np.ndarray,
    mask_path: Path,
    frame_path: Path,
    *,
    what: str = "annotation",
    context: str = "",
    error: type[DataError] = DataError,
) -> None:
    """Raise ``error`` naming ``mask_path`` and both sizes when the ``H x W`` ``mask`` is not its frame's size
    (read from the frame's header): a ground truth of another size would otherwise be resized and scored without
    complaint. ``context`` (e.g. the video, expression and frame) ends the message in brackets."""
    try:
        height, width = image_size(frame_path)
    except DataError as failure:
        raise error(str(failure)) from failure
    if tuple(mask.shape) != (height, width):
        raise error(
            f"{mask_path}: {what} is {mask.shape[0]} x {mask.shape[1]} (H x W), its frame {frame_path} is "
            f"{height} x {width}" + (f" ({context})" if context else "")
        )


def read_id_map(path: str | Path) -> np.ndarray:
    """``H x W`` uint8 object-id map of an annotation PNG: palette indices (mode P) or grey values (mode L).

    The id maps of DAVIS and YouTube-VOS are palette PNGs whose pixel values are object ids; an RGB image would
    be read as colours, so any other mode is an error naming the file.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"annotation file missing: {path}")
    try:
        with Image.open(path) as image:
            if image.mode not in ("P", "L"):
                raise DataError(f"{path}: expected a palette (P) or grey (L) PNG, got mode {image.mode}")
            return np.array(image)
    except OSError as error:
        raise DataError(f"{path}: cannot decode annotation ({error})") from error


def encode_png(image: np.ndarray) -> bytes:
    """PNG bytes of an ``H x W`` (grey) or ``H x W x 3`` (RGB) uint8 array, byte-deterministic."""
    if image.dtype != np.uint8 or image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] != 3):
        raise ValueError(f"expected an H x W or H x W x 3 uint8 image, got {image.dtype} {image.shape}")
    bgr = cv2.cvtColor(image, cv2.COLOR_RGB2BGR) if image.ndim == 3 else image
    ok, buffer = cv2.imencode(".png", np.ascontiguousarray(bgr), PNG_PARAMS)
    if not ok:
        raise ValueError(f"cannot encode an image of shape {image.shape} as PNG")
    return buffer.tobytes()


def write_png(path: str | Path, image: np.ndarray) -> Path:
    """Write :func:`encode_png` bytes to ``path`` (parent folders are created)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        data = encode_png(image)
    except ValueError as error:
        raise ValueError(f"{path}: {error}") from error
    try:
        path.write_bytes(data)
    except OSError as error:  # disk full, permission: name the file (a failed write() does not)
        raise write_failure(path, error) from error
    return path
