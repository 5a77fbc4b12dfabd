"""Synthetic TEMP results split by the side of the crossing: what a model gets right before the twins cross (where
the first frame tells them apart) and after (where only a memory of the target does).

  python -m experiments.memory.temp_crossing --split datasets/synthetic/TEMP \
      --runs full=runs/memory_experiment/full/eval no_local_memory=runs/memory_experiment/no_local_memory/eval \
      [--out crossing.md]

Each ``VARIANT=DIR`` names an evaluation output holding ``temp/per_frame.csv`` (``tools/evaluate.py
eval.dataset=SYN eval.testing_type=ALL``) or ``TEMP/per_frame.csv``, or the folder of that file itself. A labelled
frame is "before" when the target and its twin are in the order they had in the first frame along the motion axis,
"after" otherwise; "both move" and "one still" are the two kinds of TEMP scene. Cells: mean IoU / precision@0.7 in
% over the group's frames (the metrics of :mod:`locater.engine.metrics`), and the number of frames. Precision at 0.7,
not 0.5: a mask over both twins scores an IoU of about 0.5 (at most 0.5 when neither hides the other), which
precision@0.5 counts as a hit.
"""

from __future__ import annotations

import argparse
import math
from collections import defaultdict
from pathlib import Path

from locater.data.synthetic import identical_twins, read_scenes
from locater.data.synthetic.files import objects_from_record
from locater.data.synthetic.render import SceneObject
from locater.data.synthetic.scenes import crossing_frame
from locater.engine.metrics import FrameRecord, SegmentationMetrics, read_per_frame_csv

PRECISION = "precision@0.7"
GROUPS = (
    ("all", "before"),
    ("all", "after"),
    ("both move", "before"),
    ("both move", "after"),
    ("one still", "before"),
    ("one still", "after"),
)


def twin_crossing(objects: list[SceneObject], target: int, where: str) -> tuple[str, float, int]:
    """Scene pattern of a TEMP target and its twin (``"both move"`` or ``"one still"``), the 0-based frame from
    which they are no longer in their first order along the motion axis
    (:func:`~locater.data.synthetic.scenes.crossing_frame`; ``inf`` if they never are), and the twin's index.

    Args:
        objects: the video's scene objects; target: index of the target among them; where: names it in errors.
    """
    twins = identical_twins(objects, target)
    if len(twins) != 1:
        raise ValueError(f"{where}: {len(twins)} twins, expected 1")
    motions = (objects[target].motion, objects[twins[0]].motion)
    crossing = crossing_frame(objects, target)
    pattern = "both move" if "still" not in motions else "one still"
    return pattern, math.inf if crossing is None else crossing, twins[0]


def frame_groups(scenes: dict) -> dict[tuple[str, str, int], tuple[str, str]]:
    """``(video, expression id, frame number) -> (pattern, side)`` for every labelled frame of a TEMP split.

    Args:
        scenes: :func:`read_scenes` of the split.
    """
    groups = {}
    for video_id, video in scenes["videos"].items():
        if video["kind"] != "TEMP":
            raise ValueError(f"{video_id}: a {video['kind']} video, expected TEMP")
        objects = objects_from_record(video, video_id)
        for expression in video["expressions"]:
            where = f"{video_id}/{expression['id']}"
            pattern, crossing, _ = twin_crossing(objects, expression["target"], where)
            for frame in expression["labels"]:
                side = "before" if frame - 1 < crossing else "after"
                groups[(video_id, expression["id"], int(frame))] = (pattern, side)
    return groups


def crossing_metrics(
    records: list[FrameRecord], groups: dict[tuple[str, str, int], tuple[str, str]]
) -> dict[tuple[str, str], dict[str, float]]:
    """Metrics of each ``(pattern, side)`` group of :data:`GROUPS` (pattern ``all`` for both patterns)."""
    split: dict[tuple[str, str], list[FrameRecord]] = defaultdict(list)
    for record in records:
        key = (record.video, record.expression, int(record.frame))
        if key not in groups:
            raise ValueError(f"{'/'.join(record.key)}: not a labelled frame of the split's scenes.json")
        pattern, side = groups[key]
        split[(pattern, side)].append(record)
        split[("all", side)].append(record)
    return {group: SegmentationMetrics(split[group]).compute() for group in GROUPS if split[group]}


def per_frame_file(folder: Path) -> Path:
    for candidate in (
        folder / "temp" / "per_frame.csv",
        folder / "TEMP" / "per_frame.csv",
        folder / "per_frame.csv",
    ):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(f"{folder}: no temp/per_frame.csv, TEMP/per_frame.csv or per_frame.csv")


def table(results: dict[str, dict[tuple[str, str], dict[str, float]]]) -> str:
    header = "| variant | " + " | ".join(f"{pattern}, {side}" for pattern, side in GROUPS) + " |"
    lines = [header, "|---" * (len(GROUPS) + 1) + "|"]
    for variant, groups in results.items():
        cells = []
        for group in GROUPS:
            m = groups.get(group)
            cells.append(
                ""
                if m is None
                else f"{100 * m['mean_iou']:.1f} / {100 * m[PRECISION]:.0f} ({m['num_frames']})"
            )
        lines.append(f"| {variant} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def report(title: str, results: dict[str, dict[tuple[str, str], dict[str, float]]], out: Path | None) -> None:
    """Print ``title`` and the :func:`table` of ``results``; also write them to ``out`` when given."""
    text = f"{title}\n\n{table(results)}\n"
    print(text)
    if out:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--split", required=True, type=Path, help="the synthetic TEMP split folder")
    parser.add_argument("--runs", nargs="+", required=True, metavar="VARIANT=DIR")
    parser.add_argument("--out", type=Path, help="also write the table to this markdown file")
    args = parser.parse_args(argv)
    groups = frame_groups(read_scenes(args.split))
    results = {}
    for run in args.runs:
        variant, sep, folder = run.partition("=")
        if not sep or not variant or not folder:
            parser.error(f"--runs takes VARIANT=DIR, got {run!r}")
        results[variant] = crossing_metrics(read_per_frame_csv(per_frame_file(Path(folder))), groups)
    report(f"TEMP by the side of the crossing: mean IoU / {PRECISION} in % (frames)", results, args.out)


if __name__ == "__main__":
    main()
