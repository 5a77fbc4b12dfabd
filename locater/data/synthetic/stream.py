"""Training clips cut from synthetic videos generated on the fly: every sample is a fresh video.

A fixed set of a few hundred videos per kind gets memorised; drawing a new scene for every sample does not. The
video of a sample depends only on ``(seed, sample seed)`` (see :meth:`SyntheticClipStream.__getitem__`), so the
data order and content are reproducible and a resumed run sees exactly the clips an uninterrupted one would.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from locater.data.indices import random_global_frame_numbers
from locater.data.synthetic import KINDS, generate_video
from locater.data.synthetic.scenes import SyntheticVideo, crossing_frame
from locater.preprocess import resize_frames_uint8
from locater.tokenizer import tokenize


class SyntheticClipStream(Dataset):
    """Clips of ``T`` consecutive frames from freshly generated synthetic videos (every frame labelled).

    Args:
        samples_per_epoch: nominal length (the sampler's epoch); sample keys beyond it are fine.
        clip_length: ``T`` frames per clip.
        image_size: model input size ``S``.
        num_global_frames: ``N1`` frames for the global memory (one random frame per segment of the video).
        mix: proportions of NORM, MUL, SPAT, TEMP videos.
        render_size: side of the generated frames in pixels (the test splits' size).
        num_frames: ``(min, max)`` frames per generated video.
        start_share: share of clips that begin at the video's first frame, as evaluation does (the others begin
            anywhere). A model evaluated online meets the first frame of a video with an empty local memory;
            in TEMP videos that frame always comes before the twins cross.
        context_frame: a clip that does not begin at the video's first frame begins with a context frame
            (``context`` True): the trainer writes its true mask into the local memory and does not supervise it,
            so every supervised frame follows a remembered mask, as at test time after the first frame (a TEMP
            clip that begins after the twins crossed cannot tell them apart otherwise). One-frame clips have none.
        crossing_share: share of TEMP clips placed across the twins' crossing: the first frame at which they are
            no longer in their first order falls inside the clip, after its first frame (drawn before
            ``start_share``, which the other clips follow). Clips anywhere rarely straddle it.
        frame_stride: strides between a clip's frames, one drawn per clip (``[1]``: consecutive frames). A clip
            of stride ``s`` is the video at ``1/s`` of its frame rate: its objects move ``s`` times as far between
            frames (a curriculum on motion speed; the test videos are read at stride 1).
        seed: base seed.

    Items (see ``__getitem__``): ``frames`` ``T x 3 x S x S`` uint8, ``global_frames`` ``N1 x 3 x S x S`` uint8
    and ``masks`` ``T x 1 x S x S`` bool (normalised and made float on the training device), ``input_ids`` ``L``
    int64, ``mask_valid`` ``T`` bool, ``context`` ``T`` bool (the context frame, see ``context_frame``),
    ``sentence``, ``video``, ``expression``.
    """

    accepts_sample_keys = (
        True  # the training sampler's (index, sample_seed) keys draw a new video per position
    )

    def __init__(
        self,
        samples_per_epoch: int,
        clip_length: int,
        image_size: int,
        num_global_frames: int,
        mix: Sequence[float] = (1.0, 1.0, 1.0, 1.0),
        render_size: int = 64,
        num_frames: Sequence[int] = (12, 24),
        start_share: float = 0.0,
        context_frame: bool = False,
        crossing_share: float = 0.0,
        frame_stride: Sequence[int] = (1,),
        seed: int = 0,
    ) -> None:
        if samples_per_epoch < 1:
            raise ValueError(f"train.data.samples_per_epoch must be >= 1, got {samples_per_epoch}")
        weights = np.asarray(mix, dtype=np.float64)
        if weights.shape != (len(KINDS),) or (weights < 0).any() or weights.sum() <= 0:
            raise ValueError(
                f"train.data.synthetic_mix must be {len(KINDS)} weights for {KINDS}, got {list(mix)}"
            )
        strides = [int(s) for s in frame_stride]
        if not strides or min(strides) < 1:
            raise ValueError(
                f"train.data.synthetic_frame_stride must be a list of strides >= 1, got {frame_stride}"
            )
        span = max(strides) * (clip_length - 1) + 1  # frames a clip covers at the largest stride
        low, high = (int(n) for n in num_frames)
        if not max(span, num_global_frames, 1) <= low <= high:
            raise ValueError(
                f"train.data.synthetic_frames {list(num_frames)} must be [min, max] with "
                f"min >= the frames a clip covers ({clip_length} at stride {max(strides)}: {span}) and "
                f">= N1 ({num_global_frames})"
            )
        if not 0.0 <= float(start_share) <= 1.0:
            raise ValueError(f"train.data.synthetic_start_share must be in [0, 1], got {start_share}")
        if not 0.0 <= float(crossing_share) <= 1.0:
            raise ValueError(f"train.data.synthetic_crossing_share must be in [0, 1], got {crossing_share}")
        if crossing_share > 0 and clip_length < 2:
            raise ValueError("train.data.synthetic_crossing_share needs clips of at least 2 frames")
        self.samples_per_epoch = samples_per_epoch
        self.clip_length = clip_length
        self.image_size = image_size
        self.num_global_frames = num_global_frames
        self.probabilities = weights / weights.sum()
        self.render_size = render_size
        self.num_frames = (low, high)
        self.start_share = float(start_share)
        self.context_frame = bool(context_frame)
        self.crossing_share = float(crossing_share)
        self.frame_strides = strides
        self.seed = seed
        self._token_cache: dict[str, torch.Tensor] = {}

    def __len__(self) -> int:
        return self.samples_per_epoch

    def _tokens(self, sentence: str) -> torch.Tensor:
        if sentence not in self._token_cache:
            self._token_cache[sentence] = tokenize([sentence])[0]
        return self._token_cache[sentence]

    def _resize_masks(self, masks: np.ndarray) -> torch.Tensor:
        tensor = torch.from_numpy(masks.astype(bool))[:, None]  # T x 1 x H x W
        if tensor.shape[-1] != self.image_size or tensor.shape[-2] != self.image_size:
            size = (self.image_size, self.image_size)
            tensor = F.interpolate(tensor.float(), size=size, mode="bilinear", align_corners=True) > 0.5
        return tensor

    def _start_across_crossing(
        self, video: SyntheticVideo, rng: np.random.Generator, sample_seed: int, span: int
    ) -> int:
        """A start for a clip covering ``span`` frames whose first frame comes before the twins' crossing frame
        ``c`` and whose last frame does not."""
        crossing = crossing_frame(video.objects, video.expressions[0].target)
        if crossing is None or not 1 <= crossing < video.num_frames:
            raise RuntimeError(f"synthetic TEMP video of sample {sample_seed}: its twins never cross")
        low = max(0, crossing - span + 1)
        high = min(crossing - 1, video.num_frames - span)
        return int(rng.integers(low, high + 1))

    def __getitem__(self, key: int | tuple[int, int]) -> dict:
        """One clip.

        Args:
            key: a sample index, or ``(index, sample_seed)`` from the training sampler; the video is drawn from
                ``(seed, sample_seed)`` (``sample_seed = index`` for a plain index).
        """
        sample_seed = int(key[1]) if isinstance(key, (tuple, list)) else int(key)
        rng = np.random.default_rng([self.seed, sample_seed, 11])
        kind = KINDS[int(rng.choice(len(KINDS), p=self.probabilities))]
        length = int(rng.integers(self.num_frames[0], self.num_frames[1] + 1))
        video = generate_video(
            kind, [self.seed, sample_seed, 12], size=self.render_size, num_frames=length, all_labelled=True
        )
        # no extra draw when a share is 0 or there is one stride: streams as before
        if len(self.frame_strides) > 1:
            stride = self.frame_strides[int(rng.integers(len(self.frame_strides)))]
        else:
            stride = self.frame_strides[0]
        span = stride * (self.clip_length - 1) + 1
        start = int(rng.integers(0, length - span + 1))
        if kind == "TEMP" and self.crossing_share > 0 and rng.random() < self.crossing_share:
            start = self._start_across_crossing(video, rng, sample_seed, span)
        elif self.start_share > 0 and rng.random() < self.start_share:
            start = 0
        clip = slice(start, start + span, stride)
        global_numbers = random_global_frame_numbers(length, self.num_global_frames, rng)
        expression = video.expressions[int(rng.integers(len(video.expressions)))]  # SPAT, TEMP: either twin
        global_frames = (
            resize_frames_uint8(video.frames[[n - 1 for n in global_numbers]], self.image_size)
            if global_numbers
            else torch.zeros(0, 3, self.image_size, self.image_size, dtype=torch.uint8)
        )
        context = torch.zeros(self.clip_length, dtype=torch.bool)
        # a one-frame clip stays supervised
        context[0] = self.context_frame and start > 0 and self.clip_length > 1
        return {
            "frames": resize_frames_uint8(video.frames[clip], self.image_size),
            "global_frames": global_frames,
            "input_ids": self._tokens(expression.sentence),
            "masks": self._resize_masks(video.masks[expression.target, clip]),
            "mask_valid": torch.ones(self.clip_length, dtype=torch.bool),
            "context": context,
            "sentence": expression.sentence,
            "video": f"synthetic_{kind}_{sample_seed}",
            "expression": str(expression.target),
        }
