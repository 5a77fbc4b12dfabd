"""The newcomer's scripts in smoke mode (a few training steps, two test videos per split)."""

import json
import os
import subprocess
import sys
from pathlib import Path

SPLITS = {"NORM", "MUL", "SPAT", "TEMP"}


def _env(**extra):
    # an active virtual environment: the scripts then skip their own set-up and use this interpreter
    venv = str(Path(sys.executable).parent.parent)
    path = str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", "")
    return dict(os.environ, VIRTUAL_ENV=venv, PATH=path, OMP_NUM_THREADS="2", **extra)


def _check_results(results, variants):
    assert set(results) == set(variants)
    for variant in variants:
        assert set(results[variant]) == SPLITS
        for split in SPLITS:
            assert 0.0 <= results[variant][split]["mean_iou"] <= 1.0
            assert 0.0 <= results[variant][split]["overall_iou"] <= 1.0


def test_quickstart_smoke(tmp_path):
    out, data = tmp_path / "quickstart", tmp_path / "synthetic"
    env = _env(QUICKSTART_SMOKE="1", QUICKSTART_OUT=str(out), QUICKSTART_DATA=str(data))
    result = subprocess.run(["bash", "scripts/quickstart.sh"], capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    _check_results(json.loads((out / "results.json").read_text()), ["full"])
    table = (out / "results.md").read_text()
    assert all(split in table for split in SPLITS) and "NORM" in result.stdout
    assert sorted(p.suffix for p in out.glob("*.gif")) and (out / "full/checkpoints/last.pt").is_file()
    first = (out / "full/appearance/config.yaml").read_text()
    assert "clip_length: 1" in first and "num_frames: 1" in first  # one-frame clips, one-frame global memory
    assert "full/appearance/checkpoints/last.pt" in (out / "full/config.yaml").read_text()


def test_memory_experiment_smoke(tmp_path):
    docs = tmp_path / "docs"
    env = _env(SMOKE="1", OUT=str(tmp_path / "runs"), DATA=str(tmp_path / "synthetic"), DOCS=str(docs))
    result = subprocess.run(["bash", "scripts/memory_experiment.sh"], capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    variants = ["full", "no_local_memory", "no_global_memory", "no_mask_history"]
    _check_results(json.loads((docs / "memory_experiment.json").read_text()), variants)
    report = (docs / "memory_experiment.md").read_text()
    assert "SMOKE=1" not in report or "Command" in report
    assert all(v in report for v in variants) and (docs / "memory_experiment.png").stat().st_size > 1000
    for variant in variants:  # each ablation really trained its own model, in both stages of the curriculum
        first = (tmp_path / "runs" / variant / "appearance/config.yaml").read_text()
        config = (tmp_path / "runs" / variant / "config.yaml").read_text()
        assert ("size: 0.0" in config) == (variant in ("no_local_memory", "no_global_memory"))
        assert ("size: 0.0" in first) == (variant in ("no_local_memory", "no_global_memory"))
        assert "clip_length: 1" in first and f"{variant}/appearance/checkpoints/last.pt" in config


def test_ablate_grid_trains_evaluates_and_compares(tmp_path):
    from helpers_data import make_split

    split = make_split(tmp_path / "data", "VAL", num_videos=2, num_frames=5, size=32)
    grid = tmp_path / "grid.yaml"
    grid.write_text(
        "variants:\n  full: []\n  no_local_memory: [model.local_memory.size=0]\n"
        f"evaluate: [{{name: V, split_dir: {split}}}]\nmetrics: [mean_iou, overall_iou]\n"
    )
    sys.path.insert(0, str(Path(__file__).parent))
    from train_helpers import TINY_TRAIN

    command = [
        sys.executable,
        "scripts/ablate.py",
        "--config",
        "configs/model/tiny.yaml",
        "--grid",
        str(grid),
    ]
    command += ["--out", str(tmp_path / "ablate"), *TINY_TRAIN, "train.max_steps=2", "eval.coco_ap=false"]
    result = subprocess.run(command, capture_output=True, text=True, env=_env())
    assert result.returncode == 0, result.stderr[-3000:]
    rows = (tmp_path / "ablate/ablation.csv").read_text().splitlines()
    assert len(rows) == 3 and rows[1].startswith("full") and rows[2].startswith("no_local_memory")
    assert (tmp_path / "ablate/ablation.png").stat().st_size > 1000
    assert "mean_iou" in (tmp_path / "ablate/ablation.md").read_text().lower().replace(" ", "_")
