"""J&F evaluation (Ref-YouTube-VOS local validation, Ref-DAVIS17) on the evaluator's loop.

The model runs through :func:`locater.engine.evaluator.run_videos`, the loop of every other evaluation: per video,
all its expressions in one batch, frames in order, the same pre- and post-processing, the videos sharded over the
process group (balanced by frame count, each video on one rank) and the results gathered. Only the scoring
differs: each labelled frame of each expression gives a :class:`~locater.engine.metrics.JFRecord` (its binary mask
against its own object), and for Ref-DAVIS17 the per-set protocol of :mod:`locater.engine.davis_protocol` runs
beside it when asked. Every rank returns the same records, sorted.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from locater.engine import distributed
from locater.engine.davis_protocol import combine_by_argmax, match_objects, pair_scores
from locater.engine.evaluator import VideoPlan, run_plans, save_mask_png, shard_plans
from locater.engine.metrics import MASK_THRESHOLD, JFRecord, score_jf_frame
from locater.live import LiveSettings
from locater.model.locater import Locater
from locater.preprocess import logits_to_probabilities

UNSUPERVISED_EXPRESSION = (
    "object-{}"  # the expression field of an unsupervised-protocol record: the DAVIS object
)


@dataclass
class JFEvaluation:
    """What :func:`evaluate_jf` produced (the same on every rank).

    Attributes:
        records: one per (expression, labelled frame), ``split`` = the expression's group, sorted.
        unsupervised_records: the DAVIS unsupervised-task protocol: one per (sentence set, video,
            ``Annotations_unsupervised`` object, frame), ``expression`` = ``object-<k>``; empty unless asked.
        matching: per (sentence set, video, object): the expression paired with it (``None``: an empty one).
    """

    records: list[JFRecord]
    num_samples: int
    frames_processed: int
    vision_passes: int
    seconds: float
    unsupervised_records: list[JFRecord] = field(default_factory=list)
    matching: list[dict] = field(default_factory=list)


class _UnsupervisedScorer:
    """Collects the per-frame pair scores of each (video, sentence set) and pairs the objects at the end."""

    def __init__(self, split, group: Callable[[str, str], str]) -> None:
        self.split = split
        self.group = group
        self.scores: dict[tuple[str, str], list[tuple[str, np.ndarray, np.ndarray]]] = {}
        self.rows: dict[tuple[str, str], list[str]] = {}

    def add(self, plan: VideoPlan, frame: str, probabilities: np.ndarray) -> None:
        """``probabilities``: ``E x H x W`` of the video's expressions (``plan.samples`` order) at this frame."""
        truth = self.split.load_unsupervised_objects(plan.video, frame)
        sets: dict[str, list[int]] = {}
        for row, sample in enumerate(plan.samples):
            sets.setdefault(self.group(plan.video, sample.expression), []).append(row)
        for name, rows in sets.items():
            labels = combine_by_argmax(probabilities[rows])
            predicted = labels[None] == np.arange(1, len(rows) + 1)[:, None, None]
            j, f = pair_scores(predicted, truth)
            self.scores.setdefault((plan.video, name), []).append((frame, j, f))
            self.rows[(plan.video, name)] = [plan.samples[row].expression for row in rows]

    def finish(self) -> tuple[list[JFRecord], list[dict]]:
        records, matching = [], []
        for (video, name), frames in self.scores.items():
            j = np.stack([scores for _, scores, _ in frames])
            f = np.stack([scores for _, _, scores in frames])
            expressions = self.rows[(video, name)]
            for row, column in match_objects(j, f):
                obj = UNSUPERVISED_EXPRESSION.format(column + 1)
                matched = expressions[row] if row < len(expressions) else None
                matching.append({"set": name, "video": video, "object": column + 1, "expression": matched})
                for t, (frame, _, _) in enumerate(frames):
                    records.append(JFRecord(name, video, obj, frame, j[t, row, column], f[t, row, column]))
        return records, matching


@torch.inference_mode()
def evaluate_jf(
    model: Locater,
    split,
    device: torch.device,
    *,
    group: Callable[[str, str], str],
    unsupervised: bool = False,
    amp: bool | str = False,
    save_masks_dir: Path | None = None,
    progress: bool = True,
    max_videos: int | None = None,
    prefetch: int = 4,
    videos_per_batch: int = 1,
    live: LiveSettings | None = None,
) -> JFEvaluation:
    """Run ``model`` over a split with masks and score every labelled frame with J and F.

    Args:
        split: a reader with ``videos()``, ``global_frames``, ``load_frame`` and ``load_mask``
            (:class:`~locater.data.ytvos.YTVOSSplit`, :class:`~locater.data.ref_davis.RefDAVIS`); with
            ``unsupervised`` also ``load_unsupervised_objects`` (Ref-DAVIS17 opened with ``unsupervised=True``).
        group: ``(video, expression) -> name``: the ``split`` field of the records (Ref-DAVIS17: the sentence set).
        unsupervised: also run the DAVIS unsupervised-task protocol (:mod:`locater.engine.davis_protocol`).
        save_masks_dir: write ``<video>/<expression>/<frame>.png`` (0/255) there.
        videos_per_batch: videos in lockstep (see :func:`locater.engine.evaluator.evaluate_layout_split`).
        live: build the global memory from the frames seen so far (:mod:`locater.live`), as on a stream.

    Masks are the binary rule of every evaluation here: sigmoid, bilinear resize (``align_corners=True``) to the
    annotation's size, ``> 0.5``.
    """
    start_time = time.perf_counter()
    plans, mine = shard_plans(split, max_videos, truncate=True, videos_per_batch=videos_per_batch)
    model.eval()
    labels = {(p.video, s.expression): set(s.labels) for p in mine for s in p.samples}
    records: list[JFRecord] = []
    extra = _UnsupervisedScorer(split, group) if unsupervised else None
    ids_source = getattr(split, "meta_file", None) or split.root

    def score(plan: VideoPlan, frame: str, logits: torch.Tensor) -> None:
        targets = {
            row: split.load_mask(plan.video, sample.expression, frame)
            for row, sample in enumerate(plan.samples)
            if frame in labels[(plan.video, sample.expression)]
        }
        sizes = {target.shape for target in targets.values()}
        if extra is not None and not targets:
            raise ValueError(f"{plan.video}/{frame}: the unsupervised protocol needs every frame labelled")
        if len(sizes) > 1:
            raise ValueError(f"{plan.video}/{frame}: the expressions' masks differ in size: {sorted(sizes)}")
        if not targets:
            return
        probabilities = logits_to_probabilities(logits.float(), sizes.pop())[:, 0].cpu().numpy()
        for row, target in targets.items():
            expression = plan.samples[row].expression
            mask = probabilities[row] > MASK_THRESHOLD
            records.append(
                score_jf_frame(mask, target, group(plan.video, expression), plan.video, expression, frame)
            )
            if save_masks_dir is not None:
                save_mask_png(save_masks_dir, plan.video, expression, frame, mask, ids_source)
        if extra is not None:
            extra.add(plan, frame, probabilities)

    frames_done, vision_passes = run_plans(
        model,
        split,
        mine,
        device,
        score,
        amp=amp,
        prefetch=prefetch,
        videos_per_batch=videos_per_batch,
        live=live,
        progress=progress,
    )
    unsupervised_records, matching = extra.finish() if extra is not None else ([], [])
    gathered = distributed.all_gather_objects(
        (records, unsupervised_records, matching, frames_done, vision_passes)
    )
    return JFEvaluation(
        records=sorted((r for part in gathered for r in part[0]), key=lambda r: r.key),
        unsupervised_records=sorted((r for part in gathered for r in part[1]), key=lambda r: r.key),
        matching=sorted(
            (m for part in gathered for m in part[2]), key=lambda m: (m["set"], m["video"], m["object"])
        ),
        num_samples=sum(len(p.samples) for p in plans),
        frames_processed=sum(part[3] for part in gathered),
        vision_passes=sum(part[4] for part in gathered),
        seconds=time.perf_counter() - start_time,
    )
