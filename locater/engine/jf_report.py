"""The J&F tables of Ref-YouTube-VOS local validation and Ref-DAVIS17 (docs/evaluation.md): summaries per group of
expressions and protocol, their averages, the markdown table and the output files.

A *protocol* is one way of scoring (every frame of each expression; the DAVIS toolkit's semi-supervised rule that
drops each object's first and last frame; the toolkit's unsupervised task of :mod:`locater.engine.davis_protocol`).
A *column* is one group of records (a Ref-DAVIS17 sentence set, or the one Ref-YouTube-VOS group) or an average of
groups: each J&F key of an average is the plain mean of the groups' values (the way peers average the four sets).
"""

from __future__ import annotations

from pathlib import Path

from locater.engine.metrics import (
    JF_KEYS,
    JFMetrics,
    JFRecord,
    write_jf_per_expression_csv,
    write_jf_per_expression_json,
    write_jf_per_frame_csv,
)
from locater.files import write_json_atomic

# Ref-DAVIS17: the averaged columns, each over the sentence sets it names
DAVIS_AVERAGES = {
    "annotator 1": ("annot1-first", "annot1-full"),
    "annotator 2": ("annot2-first", "annot2-full"),
    "first-frame": ("annot1-first", "annot2-first"),
    "full-video": ("annot1-full", "annot2-full"),
    "mean": ("annot1-first", "annot1-full", "annot2-first", "annot2-full"),
}

PROTOCOL_TITLES = {
    "referring": "every frame, each expression's mask against its own object",
    "semi_supervised_toolkit": "DAVIS toolkit, semi-supervised rule: each expression's first and last frame dropped",
    "unsupervised_toolkit": (
        "DAVIS toolkit, unsupervised task (ReferFormer and later tables): each set's masks combined by arg-max, "
        "objects of Annotations_unsupervised paired by the Hungarian method, every frame"
    ),
}


def summarise(
    records: list[JFRecord],
    groups: list[str],
    averages: dict[str, tuple[str, ...]] | None = None,
    skip_first_last: bool = False,
) -> dict[str, dict[str, float]]:
    """``{column: metrics}``: :meth:`JFMetrics.compute` of each group's records, then each average.

    Raises:
        ValueError: a group without records, or a record of a group not listed.
    """
    by_group: dict[str, list[JFRecord]] = {name: [] for name in groups}
    for record in records:
        if record.split not in by_group:
            raise ValueError(f"J&F record of group {record.split!r}, expected one of {groups}")
        by_group[record.split].append(record)
    columns = {}
    for name, group in by_group.items():
        if not group:
            raise ValueError(f"no J&F record in group {name!r}")
        columns[name] = JFMetrics(group).compute(skip_first_last)
    for name, members in (averages or {}).items():
        parts = [columns[member] for member in members]
        average = {key: sum(part[key] for part in parts) / len(parts) for key in JF_KEYS}
        average["num_objects"] = sum(part["num_objects"] for part in parts)
        average["num_frames"] = sum(part["num_frames"] for part in parts)
        columns[name] = average
    return columns


def jf_markdown(protocols: dict[str, dict[str, dict[str, float]]]) -> str:
    """One table per protocol: a row per J&F key, a column per group or average (values in %)."""
    blocks = []
    for protocol, columns in protocols.items():
        lines = [f"**{PROTOCOL_TITLES.get(protocol, protocol)}**", ""]
        lines.append("| metric | " + " | ".join(columns) + " |")
        lines.append("|---|" + "---:|" * len(columns))
        for key in JF_KEYS:
            lines.append(f"| {key} | " + " | ".join(f"{100 * m[key]:.2f}" for m in columns.values()) + " |")
        for key, label in (("num_objects", "objects"), ("num_frames", "scored frames")):
            lines.append(f"| {label} | " + " | ".join(str(int(m[key])) for m in columns.values()) + " |")
        blocks.append("\n".join(lines))
    note = "Values in %, except objects and frames; an average column is the mean of its groups' values."
    return "\n\n".join(blocks) + f"\n\n{note}\n"


def write_jf_outputs(
    folder: Path, records: list[JFRecord], unsupervised: list[JFRecord], matching: list
) -> None:
    """The per-frame and per-expression files of a J&F run (``metrics.json`` is written by the caller, last).

    ``jf_per_frame.csv`` (every record, full precision), ``per_expression.csv`` / ``.json`` (one row per group,
    video and expression: its frames, mean J, mean F, J&F) and, for the unsupervised protocol,
    ``unsupervised_per_frame.csv`` and ``unsupervised_matching.json``.
    """
    write_jf_per_frame_csv(records, folder / "jf_per_frame.csv")
    rows = JFMetrics(records).per_expression()
    write_jf_per_expression_csv(rows, folder / "per_expression.csv")
    write_jf_per_expression_json(rows, folder / "per_expression.json")
    if unsupervised:
        write_jf_per_frame_csv(unsupervised, folder / "unsupervised_per_frame.csv")
        write_json_atomic(folder / "unsupervised_matching.json", matching, indent=1)


JF_OUTPUTS = (
    "jf_per_frame.csv",
    "per_expression.csv",
    "per_expression.json",
    "unsupervised_per_frame.csv",
    "unsupervised_matching.json",
)
