"""The Ref-DAVIS17 protocol of ReferFormer and the works that copy its evaluation (docs/evaluation.md).

ReferFormer's scripts write, for each of the four sentence sets (annotator 1 or 2, first-frame or full-video
sentences), one label map per frame holding every object of the video: each object's probability map is set to 0
where it is not above 0.5, a constant background of 0.1 is put in front, and the label is the arg-max. The DAVIS
toolkit's *unsupervised* task then scores those maps against ``Annotations_unsupervised``: it pairs predicted and
ground-truth objects by the Hungarian method on the mean of (J + F) / 2 over the frames, keeps every frame, and
averages J and F over the ground-truth objects. The published number is the mean over the four sets.

Here are the three steps of one (video, sentence set): :func:`combine_by_argmax` (per frame),
:func:`pair_scores` (per frame) and :func:`match_objects` (per video). The scores come from
:func:`~locater.engine.metrics.region_similarity` and :func:`~locater.engine.metrics.contour_accuracy`.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import linear_sum_assignment

from locater.engine.metrics import contour_accuracy, region_similarity

BACKGROUND_SCORE = 0.1  # below THRESHOLD: what makes the shortcut of combine_by_argmax exact
THRESHOLD = 0.5


def combine_by_argmax(probabilities: np.ndarray) -> np.ndarray:
    """One label map from ``N x H x W`` object probabilities: ``H x W`` int, 0 background, ``k`` the ``k``-th map.

    A probability not above 0.5 counts as 0 (our binary rule, ``> 0.5``), then the arg-max over a background of
    0.1 and the ``N`` maps picks the label; a tie goes to the lower index. Since a kept value is above 0.5 > 0.1,
    that is: the arg-max map where the largest probability is above 0.5, else background (computed so).
    """
    probabilities = np.asarray(probabilities, dtype=np.float32)
    if probabilities.ndim != 3 or len(probabilities) == 0:
        raise ValueError(f"expected N x H x W probabilities with N > 0, got shape {probabilities.shape}")
    best = probabilities.argmax(axis=0)
    return np.where(probabilities.max(axis=0) > THRESHOLD, best + 1, 0)


def pair_scores(predicted: np.ndarray, ground_truth: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """J and F of every (predicted object, ground-truth object) pair of one frame.

    Args:
        predicted: ``N x H x W`` bool masks.
        ground_truth: ``M x H x W`` bool masks.

    Returns:
        ``(J, F)``, each ``P x M`` with ``P = max(N, M)``: rows past ``N`` are empty predictions (the toolkit pads
        with empty masks when there are fewer predicted objects than ground-truth ones).
    """
    predicted, ground_truth = np.asarray(predicted, bool), np.asarray(ground_truth, bool)
    if predicted.ndim != 3 or ground_truth.ndim != 3 or predicted.shape[1:] != ground_truth.shape[1:]:
        raise ValueError(
            f"expected N x H x W and M x H x W masks of one size, got {predicted.shape} and {ground_truth.shape}"
        )
    count = max(len(predicted), len(ground_truth))
    empty = np.zeros(ground_truth.shape[1:], bool)
    j = np.zeros((count, len(ground_truth)))
    f = np.zeros((count, len(ground_truth)))
    for row in range(count):
        mask = predicted[row] if row < len(predicted) else empty
        for column, target in enumerate(ground_truth):
            j[row, column] = region_similarity(mask, target)
            f[row, column] = contour_accuracy(mask, target)
    return j, f


def match_objects(j: np.ndarray, f: np.ndarray) -> list[tuple[int, int]]:
    """The Hungarian pairing of one video: ``[(predicted row, ground-truth column), ...]`` by ground-truth column.

    Args:
        j, f: ``T x P x M`` per-frame scores of :func:`pair_scores` stacked over the video's frames.

    The pairing maximises the sum over pairs of the mean over frames of ``(J + F) / 2``
    (``scipy.optimize.linear_sum_assignment``, as the toolkit).
    """
    j, f = np.asarray(j, np.float64), np.asarray(f, np.float64)
    if j.ndim != 3 or j.shape != f.shape or j.shape[0] == 0:
        raise ValueError(f"expected two T x P x M arrays with T > 0, got {j.shape} and {f.shape}")
    scores = (j.mean(axis=0) + f.mean(axis=0)) / 2
    rows, columns = linear_sum_assignment(-scores)
    return sorted(zip(rows.tolist(), columns.tolist()), key=lambda pair: pair[1])
