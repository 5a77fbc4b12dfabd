import json
import os
import subprocess
import sys

import cv2
import numpy as np
import pytest
import torch
from helpers_data import make_checkpoint, make_split

from locater.data.layout import LayoutSplit
from locater.engine.evaluator import evaluate_layout_split

TOOL = ["tools/evaluate.py"]


def _run(args, env=None):
    return subprocess.run([sys.executable, *TOOL, *args], capture_output=True, text=True, env=env)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("eval")
    return {"split": make_split(root), "ckpt": make_checkpoint(root / "tiny.pt"), "root": root}


@pytest.mark.slow
def test_config_form_writes_every_output(data, tmp_path):
    out = tmp_path / "out"
    result = _run(
        [
            "--config",
            "configs/model/tiny.yaml",
            "--checkpoint",
            str(data["ckpt"]),
            f"eval.split_dir={data['split']}",
            "--output-dir",
            str(out),
            "--save-masks",
            "--no-progress",
        ]
    )
    assert result.returncode == 0, result.stderr
    metrics = json.loads((out / "metrics.json").read_text())
    for key in (
        "overall_iou",
        "mean_iou",
        "precision@0.5",
        "precision@0.9",
        "precision_strict@0.5",
        "map_locater",
        "map_0.5:0.95",
        "coco_ap",
        "num_samples",
        "num_frames",
        "checkpoint",
        "dataset",
        "split",
    ):
        assert key in metrics
    assert metrics["num_samples"] == 6 and metrics["num_frames"] == 18
    assert len((out / "per_frame.csv").read_text().splitlines()) == 19
    assert (out / "config.yaml").is_file() and "Mean IoU" in (out / "metrics.md").read_text()
    masks = sorted((out / "masks").rglob("*.png"))
    assert len(masks) == 18 and masks[0].relative_to(out / "masks").parts[:2] == ("vid00", "0")
    assert "Mean IoU" in result.stdout


@pytest.mark.slow
def test_official_form_with_typo_and_missing_dataset(data, tmp_path):
    typo = _run(["--dataset", "A2D", "--testing-type", "NUL", "--snapshot", str(data["ckpt"])])
    assert typo.returncode == 2 and "did you mean MUL?" in typo.stderr
    no_type = _run(["--dataset", "A2D", "--snapshot", str(data["ckpt"])])
    assert no_type.returncode == 2 and "needs --testing-type" in no_type.stderr
    # --testing-type also reaches the config form (it used to be ignored there, typos included)
    config_typo = _run(
        ["--config", "configs/model/tiny.yaml", "--checkpoint", str(data["ckpt"]), "--testing-type", "NUL"]
    )
    assert config_typo.returncode == 2 and "did you mean MUL?" in config_typo.stderr
    missing = _run(
        [
            "--dataset",
            "A2D",
            "--testing-type",
            "NORM",
            "--snapshot",
            str(data["ckpt"]),
            "--data-root",
            str(tmp_path / "nowhere"),
            "--no-progress",
        ]
    )
    assert missing.returncode == 2 and "expected layout" in missing.stderr
    # the official form finds A2D_SUBSET/NORM under --data-root and the model config inside our checkpoint
    (data["root"] / "A2D_SUBSET").mkdir(exist_ok=True)
    target = data["root"] / "A2D_SUBSET" / "NORM"
    if not target.exists():
        target.symlink_to(data["split"])
    ok = _run(
        [
            "--dataset",
            "A2D",
            "--testing-type",
            "norm",
            "--snapshot",
            str(data["ckpt"]),
            "--data-root",
            str(data["root"]),
            "--output-dir",
            str(tmp_path / "o"),
            "--no-progress",
        ]
    )
    assert ok.returncode == 0, ok.stderr


@pytest.mark.slow
def test_synthetic_dataset_all_runs_the_four_kinds_in_one_call(data, tmp_path):
    root = tmp_path / "synthetic"
    root.mkdir()
    for kind in ("NORM", "MUL", "SPAT"):
        (root / kind).symlink_to(data["split"])
    args = ["--config", "configs/model/tiny.yaml", "--checkpoint", str(data["ckpt"]), "eval.dataset=SYN"]
    args += ["eval.testing_type=ALL", f"eval.data_root={root}", "--output-dir", str(tmp_path / "out")]
    missing = _run([*args, "--no-progress"])
    assert (
        missing.returncode == 2
        and str(root / "TEMP") in missing.stderr
        and "expected layout" in missing.stderr
    )
    assert not (tmp_path / "out").exists()  # every folder is looked up before the first evaluation
    (root / "TEMP").symlink_to(data["split"])
    result = _run([*args, "--no-progress"])
    assert result.returncode == 0, result.stderr
    summary = json.loads((tmp_path / "out/metrics.json").read_text())
    assert sorted(summary) == ["SYN-MUL", "SYN-NORM", "SYN-SPAT", "SYN-TEMP"]
    for kind in ("norm", "mul", "spat", "temp"):
        metrics = json.loads((tmp_path / "out" / kind / "metrics.json").read_text())
        assert metrics["split"] == kind.upper() and metrics["num_frames"] == 18
        assert metrics["mean_iou"] == summary["SYN-NORM"]["mean_iou"]  # the same split four times


@pytest.mark.slow
def test_checkpoint_of_another_architecture_is_rejected(data, tmp_path):
    other = make_checkpoint(tmp_path / "k3.pt", ["model.fusion.num_stages=3"])
    result = _run(
        [
            "--config",
            "configs/model/tiny.yaml",
            "--checkpoint",
            str(other),
            f"eval.split_dir={data['split']}",
            "--output-dir",
            str(tmp_path / "o"),
            "--no-progress",
        ]
    )
    assert result.returncode == 2 and "unexpected keys" in result.stderr and "fusion.2." in result.stderr
    assert "k3.pt does not fit the model" in result.stderr


def test_truncation_leaves_scored_outputs_unchanged(data):
    import locater

    payload = torch.load(data["ckpt"])
    model = locater.build_model(payload["config"])
    model.load_state_dict(payload["model"])
    split = LayoutSplit.open(data["split"])
    full = evaluate_layout_split(model, split, torch.device("cpu"), truncate=False, progress=False)
    short = evaluate_layout_split(model, split, torch.device("cpu"), truncate=True, progress=False)
    assert short.frames_processed < full.frames_processed
    assert [(r.key, r.intersection, r.union) for r in short.records] == [
        (r.key, r.intersection, r.union) for r in full.records
    ]
    assert short.metrics == full.metrics


def test_videos_in_lockstep_give_the_same_frames_and_masks(data):
    import locater

    payload = torch.load(data["ckpt"])
    model = locater.build_model(payload["config"])
    model.load_state_dict(payload["model"])
    split = LayoutSplit.open(data["split"])
    one = evaluate_layout_split(model, split, torch.device("cpu"), progress=False)
    three = evaluate_layout_split(model, split, torch.device("cpu"), progress=False, videos_per_batch=3)
    assert three.frames_processed == one.frames_processed and three.vision_passes == one.vision_passes
    assert [r.key for r in three.records] == [r.key for r in one.records]
    # the same model on the same frames; only float rounding of larger batches may move a border pixel
    for a, b in zip(one.records, three.records):
        assert abs(a.intersection - b.intersection) <= 2 and abs(a.union - b.union) <= 2
    assert abs(three.metrics["mean_iou"] - one.metrics["mean_iou"]) < 1e-2
    with pytest.raises(ValueError, match="videos_per_batch"):
        evaluate_layout_split(model, split, torch.device("cpu"), progress=False, videos_per_batch=0)


@pytest.mark.slow
def test_two_processes_give_the_same_numbers(data, tmp_path):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    common = [
        "--config",
        "configs/model/tiny.yaml",
        "--checkpoint",
        str(data["ckpt"]),
        f"eval.split_dir={data['split']}",
        "--no-progress",
    ]
    single = _run([*common, "--output-dir", str(tmp_path / "one")], env=env)
    assert single.returncode == 0, single.stderr
    double = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nproc_per_node=2",
            "--master_port=29613",
            *TOOL,
            *common,
            "--output-dir",
            str(tmp_path / "two"),
        ],
        capture_output=True,
        text=True,
        env=env,
    )
    assert double.returncode == 0, double.stderr[-3000:]
    one, two = (json.loads((tmp_path / d / "metrics.json").read_text()) for d in ("one", "two"))
    assert two["world_size"] == 2 and one["world_size"] == 1
    for key in (
        "overall_iou",
        "mean_iou",
        "precision@0.5",
        "map_locater",
        "coco_ap",
        "num_frames",
        "num_samples",
    ):
        assert one[key] == two[key]
    assert (tmp_path / "one/per_frame.csv").read_text() == (tmp_path / "two/per_frame.csv").read_text()


@pytest.mark.slow
def test_ytvos_valid_writes_a_complete_submission_zip(data, tmp_path):
    import zipfile

    from test_ytvos import FRAMES, _fake_ytvos

    root = tmp_path / "ytvos"
    _fake_ytvos(root, "valid")
    out = tmp_path / "out"
    args = ["--config", "configs/model/tiny.yaml", "--checkpoint", str(data["ckpt"]), "eval.dataset=YTVOS"]
    result = _run([*args, f"eval.data_root={root}", "--output-dir", str(out), "--no-progress"])
    assert result.returncode == 0, result.stderr
    with zipfile.ZipFile(out / "submission.zip") as archive:
        names = sorted(archive.namelist())
        image = cv2.imdecode(np.frombuffer(archive.read(names[0]), np.uint8), cv2.IMREAD_UNCHANGED)
    expected = [f"Annotations/v0/{e}/{f}.png" for e in "01" for f in FRAMES]
    expected += [f"Annotations/v1/0/{f}.png" for f in FRAMES[:3]]
    assert names == sorted(expected)
    assert image.shape == (8, 10) and set(np.unique(image)) <= {0, 255}  # at the frame's resolution
    summary = json.loads((out / "submission.json").read_text())
    assert summary["num_masks"] == 15 and summary["num_samples"] == 3
    # a split that is not there: a clear error, no zip
    missing = _run([*args, f"eval.data_root={tmp_path / 'nope'}", "--output-dir", str(tmp_path / "o2")])
    assert missing.returncode == 2 and "JPEGImages" in missing.stderr
    assert not (tmp_path / "o2" / "submission.zip").exists()


@pytest.mark.slow
def test_default_output_folders_are_new_and_bad_settings_exit_2(data, tmp_path):
    """Without --output-dir every run gets its own folder under runs/eval/ (named after the split folder with
    eval.split_dir), even two started in the same second; bad settings end with exit code 2, not a traceback."""
    tool = os.path.abspath(TOOL[0])
    args = [sys.executable, tool, "--config", os.path.abspath("configs/model/tiny.yaml")]
    args += ["--checkpoint", str(data["ckpt"]), f"eval.split_dir={data['split']}", "--no-progress"]
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    for _ in range(2):
        result = subprocess.run(args, capture_output=True, text=True, cwd=tmp_path, env=env)
        assert result.returncode == 0, result.stderr
    folders = sorted((tmp_path / "runs" / "eval").iterdir())
    assert len(folders) == 2 and all(f.name.startswith(data["split"].name.lower() + "-") for f in folders)
    for folder in folders:
        metrics = json.loads((folder / "metrics.json").read_text())
        assert metrics["dataset"] is None and metrics["split"] == str(data["split"])
    for bad, message in (
        ("eval.max_videos=-1", "eval.max_videos must be >= 0"),
        ("model.embed_dim=96", "must equal model.embed_dim"),
    ):
        result = subprocess.run([*args, bad], capture_output=True, text=True, cwd=tmp_path, env=env)
        assert result.returncode == 2 and message in result.stderr and "Traceback" not in result.stderr
    assert len(list((tmp_path / "runs" / "eval").iterdir())) == 2  # failed runs leave no folder behind
