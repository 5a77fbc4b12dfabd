"""The masks that pin our J&F to the DAVIS-2017 evaluation code (tests/test_jf_metrics.py).

Only numpy and integer formulas (no random numbers), so every numpy version draws the same pixels, and the
reference numbers recorded in the test can be recomputed by running the DAVIS code on :func:`jf_fixture`.
"""

from __future__ import annotations

import numpy as np


def ellipse(shape: tuple[int, int], cy: int, cx: int, ry: int, rx: int) -> np.ndarray:
    """``H x W`` bool: ``((y - cy) / ry)^2 + ((x - cx) / rx)^2 <= 1``, in integers."""
    y, x = np.ogrid[: shape[0], : shape[1]]
    return (y - cy) ** 2 * rx**2 + (x - cx) ** 2 * ry**2 <= (rx * ry) ** 2


def rect(shape: tuple[int, int], y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
    """``H x W`` bool, true on rows ``y0:y1`` and columns ``x0:x1``."""
    mask = np.zeros(shape, bool)
    mask[y0:y1, x0:x1] = True
    return mask


def ragged(shape: tuple[int, int], a: int, b: int, m: int, k: int) -> np.ndarray:
    """``H x W`` bool: ``(a x + b y) mod m < k``, a stripe pattern with jagged edges."""
    y, x = np.ogrid[: shape[0], : shape[1]]
    return (a * x + b * y) % m < k


def _object_small() -> list[tuple[np.ndarray, np.ndarray, np.ndarray | None]]:
    """60 x 90 (tolerance radius 1), 8 frames: (prediction, ground truth, void)."""
    s = (60, 90)
    empty = np.zeros(s, bool)
    gt = [ellipse(s, 30, 40 + 2 * t, 12, 18) for t in range(8)]
    return [
        (gt[0].copy(), gt[0], None),  # perfect
        (ellipse(s, 31, 43, 12, 18), gt[1], None),  # shifted by (1, 1)
        (ellipse(s, 30, 50, 12, 18), gt[2], None),  # shifted by 6 px
        (empty, empty, None),  # both empty
        (empty, gt[4], None),  # missed object
        (ellipse(s, 30, 48, 9, 14), gt[5], None),  # eroded
        (gt[6] | rect(s, 5, 6, 0, 90), gt[6], None),  # plus a 1-px line across the frame
        (ellipse(s, 30, 54, 12, 18) & ~ellipse(s, 30, 54, 5, 7), gt[7], None),  # with a hole
    ]


def _object_mid() -> list[tuple[np.ndarray, np.ndarray, np.ndarray | None]]:
    """150 x 200 (radius exactly 0.008 x 250 = 2), 7 frames, masks on the border, thin parts, void pixels."""
    s = (150, 200)
    empty = np.zeros(s, bool)
    band = rect(s, 70, 80, 0, 200)  # void band across the frame
    corner = rect(s, 0, 40, 0, 60)  # touches the top and left border
    far = rect(s, 110, 150, 150, 200)  # touches the bottom and right border
    thin_gt = rect(s, 20, 130, 99, 101) | rect(s, 74, 76, 30, 170)  # a 2-px cross
    return [
        (corner | ragged(s, 3, 5, 7, 3) & rect(s, 38, 46, 0, 60), corner, None),  # jagged overhang
        (far, rect(s, 112, 150, 153, 200), band),  # border object, near
        (thin_gt, thin_gt, band),  # perfect, but the void cuts the cross
        (rect(s, 21, 131, 100, 102), thin_gt, None),  # a 2-px line shifted by one
        (ellipse(s, 75, 100, 40, 60), empty, band),  # false alarm on an empty ground truth
        (np.ones(s, bool), ellipse(s, 75, 100, 40, 60), None),  # whole frame predicted: no boundary
        (rect(s, 60, 61, 80, 81), rect(s, 62, 63, 82, 83), None),  # single pixels two apart
    ]


def _object_large() -> list[tuple[np.ndarray, np.ndarray, np.ndarray | None]]:
    """480 x 854 (DAVIS 480p, radius 8), 6 frames: shifts around the tolerance, rings, stripes."""
    s = (480, 854)
    gt = ellipse(s, 240, 427, 150, 260)
    ring = ellipse(s, 240, 427, 150, 260) & ~ellipse(s, 240, 427, 100, 180)
    void = ellipse(s, 100, 200, 30, 40)
    return [
        (ellipse(s, 240, 435, 150, 260), gt, None),  # shifted by 8 px: contour within the tolerance
        (ellipse(s, 240, 436, 150, 260), gt, None),  # by 9 px: just beyond on the sides
        (ellipse(s, 246, 433, 148, 262), ring, void),  # a ring against a filled ellipse, void pixels
        (ring & ragged(s, 1, 1, 40, 30), ring, None),  # stripes cut out of the ring
        (ellipse(s, 250, 450, 110, 200), gt, None),  # shrunk and off centre
        (rect(s, 0, 480, 0, 427), rect(s, 0, 480, 0, 420), None),  # left half, touching three borders
    ]


def jf_fixture() -> list[tuple[str, str, str, str, np.ndarray, np.ndarray, np.ndarray | None]]:
    """``(split, video, expression, frame, prediction, ground truth, void)`` for every frame of three objects,
    each object's frames in time order (frame names sort in that order)."""
    frames = []
    for (split, video, expression), masks in (
        (("valid", "walk", "0"), _object_small()),
        (("valid", "walk", "1"), _object_mid()),
        (("valid", "skate", "0"), _object_large()),
    ):
        for index, (pred, gt, void) in enumerate(masks):
            frames.append((split, video, expression, f"{5 * index:05d}", pred, gt, void))
    return frames
