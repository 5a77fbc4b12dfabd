"""A small video and a tiny checkpoint with non-trivial masks, for the app's tests (session, browser)."""

import io
import zipfile
from pathlib import Path

import cv2
import numpy as np
import torch

import locater
from locater.app.examples import EXAMPLE_SEED
from locater.data.synthetic import generate_video
from locater.data.synthetic.files import video_seed
from locater.inference import VideoSegmenter

SENTENCES = ("the white diamond", "the yellow triangle")  # two of the video's objects
LOGIT_SCALE = 50.0


def synthetic_frames(num_frames: int = 6, size: int = 64, scale: int = 2) -> np.ndarray:
    """``T x S x S x 3`` uint8: the first frames of the benchmark's first NORM test video, enlarged ``scale``
    times (the legend stays legible)."""
    video = generate_video(
        "NORM", video_seed(EXAMPLE_SEED, "NORM", "NORM", 0), size, num_frames=max(num_frames, 4)
    )
    return np.repeat(np.repeat(video.frames[:num_frames], scale, axis=1), scale, axis=2)


def write_video(path: Path, frames: np.ndarray, fps: float = 8.0) -> Path:
    """``frames`` (``T x H x W x 3`` RGB) as an mp4."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, frames.shape[2:0:-1])
    for frame in frames:
        writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    writer.release()
    return path


def contrast_checkpoint(path: Path, video: Path, sentences=SENTENCES) -> Path:
    """A random tiny model (configs/model/tiny.yaml) saved as our checkpoint, with its last decoder convolution
    rescaled so that the masks of ``video`` are non-trivial and far from the threshold.

    Random weights put every probability within a few hundredths of 0.5, so the masks are empty or nearly so and
    a pixel's side of the threshold hangs on rounding. The last convolution outputs the logits: scaling it by
    :data:`LOGIT_SCALE` around the median logit of ``video`` spreads them, so about half of the pixels are on.
    """
    torch.manual_seed(0)
    cfg = locater.load_config("configs/model/tiny.yaml")
    model = locater.build_model(cfg).eval()
    probabilities = torch.cat(
        [
            r.probabilities.flatten()
            for r in VideoSegmenter(model, device="cpu").segment(video, list(sentences))
        ]
    )
    median = torch.logit(probabilities.double()).median().float()
    last = model.mask_decoder.convs[-1]
    with torch.no_grad():
        last.weight.mul_(LOGIT_SCALE)
        last.bias.sub_(median).mul_(LOGIT_SCALE)
    torch.save({"model": model.state_dict(), "config": cfg.to_dict()}, path)
    return path


def reference_masks(checkpoint: Path, video: Path, sentences=SENTENCES) -> np.ndarray:
    """``S x T x H x W`` bool: what :class:`VideoSegmenter` gives for ``video`` and ``sentences``."""
    segmenter = VideoSegmenter.from_checkpoint(checkpoint, device="cpu")
    masks = [r.masks.numpy() for r in segmenter.segment(video, list(sentences))]
    return np.stack(masks, axis=1)


def zip_masks(data: bytes) -> tuple[dict, np.ndarray]:
    """The index and the ``S x T x H x W`` bool masks of the app's masks zip (checks the PNGs are 0/255)."""
    import json

    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        index = json.loads(archive.read("sentences.json"))
        names = set(archive.namelist())
        expected = {"sentences.json"} | {
            f"{folder}/{frame:05d}.png"
            for folder in index["folders"]
            for frame in range(1, index["frames"] + 1)
        }
        assert names == expected, sorted(names ^ expected)
        masks = []
        for folder in index["folders"]:
            frames = []
            for frame in range(1, index["frames"] + 1):
                png = np.frombuffer(archive.read(f"{folder}/{frame:05d}.png"), np.uint8)
                image = cv2.imdecode(png, cv2.IMREAD_UNCHANGED)
                assert image.ndim == 2 and set(np.unique(image)) <= {0, 255}
                frames.append(image == 255)
            masks.append(np.stack(frames))
    return index, np.stack(masks)
