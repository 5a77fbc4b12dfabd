"""Paired timing of ``step`` variants in one process: float32 or bf16 autocast, eager or ``torch.compile``.

On a shared machine the load changes from one minute to the next, so rows timed one after the other in separate
processes compare the load as much as the code. Here every variant streams the same frames with its own state, and
the variants take turns frame by frame: each frame's ratio to the eager float32 frame next to it is a paired
measurement, and its median is the speed-up reported. The compiled variants share weights with the eager ones (a
copy compiled in place by :func:`locater.bench.step.compile_modules`); their compilation happens in ``start`` and
the warm-up frames, timed separately.
"""

from __future__ import annotations

import copy
import statistics
import time

import torch

from locater.bench.precision import compare_logits
from locater.engine.amp import autocast_for
from locater.engine.train_logging import peak_memory_mb

VARIANTS = (  # name, bf16 autocast, compiled
    ("float32", False, False),
    ("bf16", True, False),
    ("float32 + torch.compile", False, True),
    ("bf16 + torch.compile", True, True),
)


def measure_paired(job: dict) -> dict:
    """Time every variant of :data:`VARIANTS` (``job["variants"]``: the names to run, default all) on ``job["frames"]``
    frames after ``job["warmup"]`` (at least 3: the local memory fills and the graphs are built), one sentence.

    ``job`` also holds ``size``, ``seed``, ``threads``.

    Returns:
        ``{name: {"median_s", "ratio" (median over frames of eager float32 time / this time), "first_s" (start
        and warm-up frames: the compilation for compiled variants), "max_abs_logit", "mask_iou" (against eager
        float32)}}`` and ``"peak_rss_mb"``.
    """
    import locater
    from locater.bench.step import SENTENCES, _frames, _seeded_model, compile_modules

    torch.set_num_threads(job["threads"])
    names = job.get("variants") or [name for name, _, _ in VARIANTS]
    if names[0] != "float32":
        raise ValueError("the paired variants must start with eager float32, the reference")
    warmup = max(job["warmup"], 3)
    total = warmup + job["frames"]
    size, seed = job["size"], job["seed"]
    eager = _seeded_model(size, seed)
    compiled = None
    frames = _frames(total, size, seed)
    ids = locater.tokenize(SENTENCES[:1])
    global_frames = frames[[0, total // 2, total - 1]][None]
    runs = {}
    for name, bf16, is_compiled in (v for v in VARIANTS if v[0] in names):
        if is_compiled and compiled is None:
            compiled = copy.deepcopy(eager)
            compile_modules(compiled)
        runs[name] = {
            "model": compiled if is_compiled else eager,
            "autocast": bf16,
            "state": None,
            "first_s": 0.0,
            "times": [],
            "outputs": [],
        }
    with torch.inference_mode():
        for run in runs.values():
            tic = time.perf_counter()
            with autocast_for("cpu", run["autocast"]):
                run["state"] = run["model"].start(global_frames, ids)
            run["first_s"] += time.perf_counter() - tic
        for t in range(total):
            for run in runs.values():
                tic = time.perf_counter()
                with autocast_for("cpu", run["autocast"]):
                    logits, run["state"] = run["model"].step(frames[t : t + 1], run["state"])
                elapsed = time.perf_counter() - tic
                if t < warmup:
                    run["first_s"] += elapsed
                else:
                    run["times"].append(elapsed)
                    run["outputs"].append(logits.float()[:, 0])
    reference = runs["float32"]
    reference_outputs = torch.stack(reference["outputs"])
    result: dict = {"peak_rss_mb": peak_memory_mb("cpu")}
    for name, run in runs.items():
        agreement = compare_logits(reference_outputs, torch.stack(run["outputs"]))
        result[name] = {
            "median_s": statistics.median(run["times"]),
            "ratio": statistics.median(r / t for r, t in zip(reference["times"], run["times"])),
            "first_s": run["first_s"],
            "max_abs_logit": agreement["max_abs_logit"],
            "mask_iou": agreement["mask_iou"],
        }
    return result
