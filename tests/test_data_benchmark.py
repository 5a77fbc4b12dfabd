"""The training-input benchmark: its A2D-like split is what the trainer reads, and the tool writes its table."""

import subprocess
import sys

import numpy as np
import pytest
import torch

import locater
from locater.bench.a2d_like import write_a2d_like_split
from locater.data.layout import LayoutSplit
from locater.engine.sampler import build_train_dataset


def test_a2d_like_split_is_a_training_split_of_the_converter_formats(tmp_path):
    written = write_a2d_like_split(tmp_path, num_videos=2, num_frames=6, frame_sizes=((40, 56), (40, 72)))
    split = LayoutSplit.open(written.split_dir)  # strict: every file where the A2D converter puts it
    assert len(split.samples) == written.num_expressions == 4
    assert {split.load_frame(s.video, "00001").shape for s in split.samples} == {(40, 56, 3), (40, 72, 3)}
    for sample in split.samples:
        assert sample.labels and all(
            split.load_mask(sample.video, sample.expression, f).any() for f in sample.labels
        )
    assert written.mean_png_bytes > 0
    cfg = locater.load_config(
        "configs/model/tiny.yaml",
        ["train.data.source=layout", f"train.data.split_dir={written.split_dir}", "train.clip_length=3"],
    )
    dataset = build_train_dataset(cfg)  # the trainer's dataset, with the configured augmentation
    assert len(dataset) == written.num_items
    item = dataset[0]
    assert item["frames"].shape == (3, 3, 64, 64) and item["global_frames"].shape == (3, 3, 64, 64)
    assert (
        item["mask_valid"].any() and item["frames"].dtype == torch.uint8 and item["frames"].float().std() > 0
    )


def test_a2d_like_split_refuses_impossible_sizes(tmp_path):
    with pytest.raises(ValueError, match="labels_per_video"):
        write_a2d_like_split(tmp_path, num_frames=2, labels_per_video=3)


@pytest.mark.slow
def test_data_benchmark_writes_rates_and_headroom(tmp_path):
    out = tmp_path / "benchmarks.md"
    command = [sys.executable, "tools/benchmark.py", "--data", "--config", "configs/model/tiny.yaml"]
    command += ["--videos", "2", "--frames-per-video", "6", "--frame-size", "40x56", "--clips", "3"]
    command += ["--batches", "2", "--workers", "1", "--threads", "1", "--out", str(out)]
    command += ["train.data.num_workers=3"]
    result = subprocess.run(command, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    text = out.read_text()
    assert "<!-- begin:data -->" in text and "## Training input pipeline" in text
    rows = {
        line.split("|")[1].strip(): [c.strip() for c in line.split("|")[2:-1]]
        for line in text.splitlines()
        if line.startswith("| ") and not line.startswith("| rate")
    }
    peak, assumed = (
        float(rows["consumed: one GPU, peak-bound"][0]),
        float(rows["consumed: one GPU at 40% of peak"][0]),
    )
    assert peak > 0 and np.isclose(assumed, 0.4 * peak, rtol=1e-2)
    for source in ("PNG frames", "decoded-frame cache"):
        assert float(rows[f"produced from {source}: one core, in process (one worker's work)"][0]) > 0
        worker = float(rows[f"produced from {source}: DataLoader, 1 worker"][0])
        node = rows[f"produced from {source} per GPU on a 16-core 8-GPU node (estimate)"]
        assert worker > 0 and np.isclose(float(node[0]), 2 * worker, rtol=1e-2)  # 2 cores a GPU, 3 workers
        assert np.isclose(float(node[2].strip("*x")), float(node[0]) / assumed, rtol=2e-2)
    assert "MiB of cache" in text
