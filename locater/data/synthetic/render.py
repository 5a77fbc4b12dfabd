"""Drawing synthetic scenes: coloured shapes on a textured background, and the visible pixels of each shape.

All arithmetic is float64 numpy without platform-dependent resampling, so the same scene gives the same bytes on
any machine.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SHAPES = ("circle", "square", "triangle", "star", "cross", "diamond")
COLOURS = {
    "red": (220, 40, 40),
    "green": (40, 180, 60),
    "blue": (40, 80, 230),
    "yellow": (235, 215, 40),
    "white": (245, 245, 245),
    "purple": (150, 50, 190),
    "orange": (245, 140, 30),
}
SIZES = ("small", "big")
RADIUS_FRACTION = {"small": 0.07, "big": 0.12}  # radius as a fraction of the frame side


def object_radius(size_word: str, frame_size: int) -> float:
    """Radius in pixels of a ``small`` or ``big`` object in frames of side ``frame_size``."""
    if size_word not in RADIUS_FRACTION:
        raise ValueError(f"object size must be one of {SIZES}, got {size_word!r}")
    return RADIUS_FRACTION[size_word] * frame_size


@dataclass
class SceneObject:
    """One object: appearance and a constant-velocity trajectory of its centre.

    Attributes:
        shape, colour, size: appearance (``size`` is ``small`` or ``big``).
        radius: half extent in pixels.
        start: ``(x, y)`` centre at frame 1 (pixels, x to the right, y down).
        velocity: ``(vx, vy)`` pixels per frame; ``(0, 0)`` for a still object.
    """

    shape: str
    colour: str
    size: str
    radius: float
    start: tuple[float, float]
    velocity: tuple[float, float]

    def centre(self, t: int) -> tuple[float, float]:
        """Centre ``(x, y)`` at 0-indexed frame ``t``."""
        return (self.start[0] + self.velocity[0] * t, self.start[1] + self.velocity[1] * t)

    @property
    def motion(self) -> str:
        """``still``, or the dominant direction of motion: ``left``, ``right``, ``up`` or ``down``."""
        vx, vy = self.velocity
        if vx == 0 and vy == 0:
            return "still"
        if abs(vx) >= abs(vy):
            return "right" if vx > 0 else "left"
        return "down" if vy > 0 else "up"

    @property
    def appearance(self) -> tuple[str, str, str]:
        return (self.shape, self.colour, self.size)


def shape_mask(shape: str, dx: np.ndarray, dy: np.ndarray, radius: float) -> np.ndarray:
    """Pixels inside ``shape`` given their offsets ``dx``, ``dy`` (``H x W`` float64) from its centre."""
    if shape == "circle":
        return dx * dx + dy * dy <= radius * radius
    if shape == "square":
        return (np.abs(dx) <= radius * 0.85) & (np.abs(dy) <= radius * 0.85)
    if shape == "diamond":
        return np.abs(dx) + np.abs(dy) <= radius
    if shape == "cross":
        arm = radius * 0.33
        return ((np.abs(dx) <= arm) & (np.abs(dy) <= radius)) | ((np.abs(dy) <= arm) & (np.abs(dx) <= radius))
    if shape == "triangle":  # pointing up
        return (dy <= radius * 0.8) & (dy >= -radius) & (np.abs(dx) <= (dy + radius) * 0.6)
    if shape == "star":  # five points, one up: the outline swings linearly between 0.45 and 1.0 of ``radius``
        turns = np.arctan2(dx, -dy) * (5 / (2 * np.pi)) % 1.0
        outline = radius * (0.45 + 0.55 * np.abs(2 * turns - 1))
        return dx * dx + dy * dy <= outline * outline
    raise ValueError(f"unknown shape {shape!r}; expected one of {SHAPES}")


def textured_background(rng: np.random.Generator, frame_size: int) -> np.ndarray:
    """``H x W x 3`` float64 background: a smooth colour field (bilinear over a random 4 x 4 grid) crossed by
    two sets of oriented stripes. No per-pixel noise, which keeps the PNG files small."""
    coarse = rng.uniform(40, 150, size=(4, 4, 3))
    grid = np.linspace(0.0, 3.0, frame_size)
    cell = np.minimum(np.floor(grid).astype(int), 2)
    frac = grid - cell
    rows = coarse[cell] * (1 - frac)[:, None, None] + coarse[cell + 1] * frac[:, None, None]  # H x 4 x 3
    field = rows[:, cell] * (1 - frac)[None, :, None] + rows[:, cell + 1] * frac[None, :, None]  # H x W x 3
    ys, xs = np.mgrid[0:frame_size, 0:frame_size].astype(np.float64)
    stripes = np.zeros((frame_size, frame_size))
    for amplitude in (12.0, 7.0):
        angle = rng.uniform(0, np.pi)
        period = rng.uniform(0.08, 0.2) * frame_size
        phase = rng.uniform(0, 2 * np.pi)
        along = xs * np.cos(angle) + ys * np.sin(angle)
        stripes += amplitude * np.sin(2 * np.pi * along / period + phase)
    return field + stripes[:, :, None]


def owner_map(objects: list[SceneObject], frame_size: int, num_frames: int) -> np.ndarray:
    """``T x H x W`` int16: the index of the object seen at each pixel, -1 for background. Objects are drawn in
    list order, so later ones occlude earlier ones."""
    owner = np.full((num_frames, frame_size, frame_size), -1, dtype=np.int16)
    pixel = np.arange(frame_size, dtype=np.float64)
    for index, obj in enumerate(objects):
        reach = obj.radius + 1
        for t in range(num_frames):
            cx, cy = obj.centre(t)
            x0, x1 = max(int(np.floor(cx - reach)), 0), min(int(np.ceil(cx + reach)) + 1, frame_size)
            y0, y1 = max(int(np.floor(cy - reach)), 0), min(int(np.ceil(cy + reach)) + 1, frame_size)
            if x0 >= x1 or y0 >= y1:
                continue  # entirely outside the frame
            dx = pixel[None, x0:x1] - cx
            dy = pixel[y0:y1, None] - cy
            inside = shape_mask(obj.shape, np.broadcast_to(dx, (y1 - y0, x1 - x0)), dy, obj.radius)
            owner[t, y0:y1, x0:x1][inside] = index
    return owner


def visible_masks(objects: list[SceneObject], frame_size: int, num_frames: int) -> np.ndarray:
    """``N x T x H x W`` bool: the pixels where each object is seen (occluded parts excluded)."""
    owner = owner_map(objects, frame_size, num_frames)
    return np.stack([owner == i for i in range(len(objects))])


def render(
    objects: list[SceneObject], frame_size: int, num_frames: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Frames ``T x H x W x 3`` uint8 (a static textured background drawn from ``rng``) and visible masks
    ``N x T x H x W`` bool."""
    owner = owner_map(objects, frame_size, num_frames)
    background = np.clip(textured_background(rng, frame_size), 0, 255).astype(np.uint8)
    palette = np.array([COLOURS[obj.colour] for obj in objects] + [(0, 0, 0)], dtype=np.uint8)
    frames = np.where((owner >= 0)[..., None], palette[owner], background[None])  # owner -1 -> last row
    masks = np.stack([owner == i for i in range(len(objects))])
    return np.ascontiguousarray(frames, dtype=np.uint8), masks
