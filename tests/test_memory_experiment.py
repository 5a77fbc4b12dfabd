"""The memory experiment's analyses (TEMP by the side of the crossing, the memory oracle) and its recipe and
report in smoke mode."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

SPLITS = {"NORM", "MUL", "SPAT", "TEMP"}


def _env(**extra):
    # an active virtual environment: the scripts then skip their own set-up and use this interpreter
    venv = str(Path(sys.executable).parent.parent)
    path = str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", "")
    return dict(os.environ, VIRTUAL_ENV=venv, PATH=path, OMP_NUM_THREADS="2", **extra)


def test_temp_crossing_splits_temp_frames_by_the_side_of_the_crossing(tmp_path):
    from locater.data.synthetic import read_scenes, write_split

    split = write_split(tmp_path / "data", "TEMP", 3, seed=0, size=64)
    scenes = read_scenes(split)
    run = tmp_path / "eval" / "temp"
    run.mkdir(parents=True)
    rows = ["video,expression,frame,intersection,union,iou"]
    sides = []
    for video_id, video in scenes["videos"].items():
        for expression in video["expressions"]:
            target = video["objects"][expression["target"]]
            twin = next(
                o
                for i, o in enumerate(video["objects"])
                if i != expression["target"]
                and (o["shape"], o["colour"]) == (target["shape"], target["colour"])
            )
            axis = 0 if target["velocity"][0] != 0 or twin["velocity"][0] != 0 else 1
            for frame in expression["labels"]:
                ahead = [target["centres"][t][axis] > twin["centres"][t][axis] for t in (0, frame - 1)]
                before = ahead[0] == ahead[1]
                sides.append(before)
                # a model right before the crossing and wrong after it
                rows.append(f"{video_id},{expression['id']},{frame:05d},{10 if before else 0},10,0")
    assert any(sides) and not all(sides)  # labelled frames on both sides (frames 2 and T-1)
    (run / "per_frame.csv").write_text("\n".join(rows) + "\n")
    out = tmp_path / "crossing.md"

    def crossing(*extra: str) -> subprocess.CompletedProcess:
        command = [
            sys.executable,
            "-m",
            "experiments.memory.temp_crossing",
            "--split",
            str(split),
            "--runs",
            f"m={tmp_path / 'eval'}",
        ]
        return subprocess.run([*command, *extra], capture_output=True, text=True, env=_env())

    result = crossing("--out", str(out))
    assert result.returncode == 0, result.stderr[-3000:]
    row = next(line for line in out.read_text().splitlines() if line.startswith("| m |"))
    cells = [cell.strip() for cell in row.strip("|").split("|")][1:]
    assert cells[0] == f"100.0 / 100 ({sum(sides)})" and cells[1] == f"0.0 / 0 ({len(sides) - sum(sides)})"
    # a frame the split does not label is an error that names it
    (run / "per_frame.csv").write_text(
        rows[0] + "\n" + rows[1].replace(rows[1].split(",")[2], "00099") + "\n"
    )
    bad = crossing()
    assert bad.returncode != 0 and "00099" in bad.stderr and "not a labelled frame" in bad.stderr


@pytest.mark.slow
def test_memory_oracle_reads_each_expression_with_own_and_true_masks(tmp_path):
    import numpy as np
    import torch

    import locater
    from experiments.memory import memory_oracle
    from locater.data.synthetic import generate_video
    from locater.data.synthetic.scenes import crossing_frame
    from locater.preprocess import preprocess_frames

    oracle = vars(memory_oracle)
    video = generate_video("TEMP", [99, 0], size=64, all_labelled=True)
    expression = video.expressions[0]
    frames, input_ids = preprocess_frames(video.frames, 64), locater.tokenize([expression.sentence])
    truth = torch.from_numpy(video.masks[expression.target]).float()[:, None]
    tiny = "configs/model/tiny.yaml"
    logits = {}
    for history in (True, False):
        torch.manual_seed(0)
        cfg = locater.load_config(tiny, [f"model.local_memory.mask_history={history}"])
        model = locater.build_model(cfg).eval()
        logits[history] = [oracle["read_video"](model, frames, input_ids, m) for m in (None, truth)]
        assert len(logits[history][0]) == video.num_frames
    own, true = logits[True]
    torch.testing.assert_close(own[0], true[0])  # nothing remembered yet at the first frame
    assert not torch.allclose(own[1], true[1])  # then the remembered mask changes what the model reads
    for a, b in zip(*logits[False]):  # without mask history the written mask cannot matter
        torch.testing.assert_close(a, b)
    # the script: one row per way of writing the memory; before / after counts follow the crossing frame
    checkpoint = tmp_path / "model.pt"
    torch.save(model.state_dict(), checkpoint)
    out = tmp_path / "oracle.md"
    command = [sys.executable, "-m", "experiments.memory.memory_oracle", "--config", tiny]
    command += ["--checkpoint", str(checkpoint), "--videos", "1", "--out", str(out)]
    command += ["model.local_memory.mask_history=false"]
    result = subprocess.run(command, capture_output=True, text=True, env=_env())
    assert result.returncode == 0, result.stderr[-3000:]
    text = out.read_text()
    crossing_part, first_part = text.split("Whom it segments at the first frames")
    rows = [line for line in crossing_part.splitlines() if line.startswith(("| own masks", "| true masks"))]
    assert len(rows) == 2 and rows[0].split("|")[2:] == rows[1].split("|")[2:]  # no mask history: the same
    first_rows = [
        line for line in first_part.splitlines() if line.startswith(("| own masks", "| true masks"))
    ]
    assert len(first_rows) == 2 and first_rows[0].split("|")[2:] == first_rows[1].split("|")[2:]
    # target / twin IoU per bucket, recomputed from the logits of the untrained model (own masks, frame 1)
    untrained = locater.build_model(
        locater.load_config(tiny, ["model.local_memory.mask_history=false"])
    ).eval()
    locater.load_checkpoint(untrained, checkpoint)
    ious = {"target": [], "twin": []}
    for mine, theirs in (video.expressions, video.expressions[::-1]):  # the twins are each other's target
        ids = locater.tokenize([mine.sentence])
        predicted = (torch.sigmoid(oracle["read_video"](untrained, frames, ids, None)[0][0, 0]) > 0.5).numpy()
        for who, target in (("target", mine.target), ("twin", theirs.target)):
            mask = video.masks[target, 0].astype(bool)
            ious[who].append((predicted & mask).sum() / (predicted | mask).sum())
    cell = first_rows[0].split("|")[2].strip()
    assert cell == f"{100 * np.mean(ious['target']):.1f} / {100 * np.mean(ious['twin']):.1f}"
    crossing = crossing_frame(video.objects, expression.target)
    cells = [cell.strip() for cell in rows[0].strip("|").split("|")][1:]
    assert cells[0].endswith(f"({2 * crossing})") and cells[1].endswith(
        f"({2 * (video.num_frames - crossing)})"
    )


@pytest.mark.slow
def test_memory_experiment_recipe_and_report_smoke(tmp_path):
    """The shipped recipe with a few steps for two variants, then the results page: the table of both variants,
    TEMP by the side of the crossing for both, the oracle for the model with a local memory only."""
    data, run, docs = tmp_path / "synthetic", tmp_path / "run", tmp_path / "docs"
    make = [sys.executable, "tools/data/make_synthetic.py", "--out", str(data), "--size", "64"]
    subprocess.run(
        [*make, "--num-train", "0", "--num-test", "2"], check=True, capture_output=True, env=_env()
    )
    command = [sys.executable, "tools/run_recipe.py", "configs/synthetic/recipes/memory_experiment.yaml"]
    command += ["--output-dir", str(run), "--variants", "full,no_local_memory", f"eval.data_root={data}"]
    command += ["pretrain_vision.max_steps=2", "train.max_steps=2", "train.batch_size=2"]
    command += ["train.data.samples_per_epoch=4"]
    result = subprocess.run(command, capture_output=True, text=True, env=_env())
    assert result.returncode == 0, result.stderr[-3000:]
    for variant, size in (("full", 2.0), ("no_local_memory", 0.0)):
        for stage in ("appearance", "tracking", "rule", "own_masks"):
            saved = yaml.safe_load((run / variant / stage / "config.yaml").read_text())
            assert saved["model"]["local_memory"]["size"] == size, (variant, stage)
    report = [sys.executable, "-m", "experiments.memory.write_report", "--run", str(run), "--data", str(data)]
    result = subprocess.run(
        [*report, "--docs", str(docs), "--oracle-videos", "1"], capture_output=True, text=True, env=_env()
    )
    assert result.returncode == 0, result.stderr[-3000:]
    page = (docs / "memory_results.md").read_text()
    assert json.loads((docs / "memory_results.json").read_text()) == json.loads(
        (run / "results.json").read_text()
    )
    assert (docs / "memory_results.png").read_bytes() == (run / "results.png").read_bytes()
    assert page.count("| full |") == 2 and page.count("| no_local_memory |") == 2  # results and crossing
    assert "full:" in page and "no_local_memory:" not in page  # no oracle without a local memory
    assert "| own masks |" in page and "| true masks |" in page
    # an unfinished run is refused with the file it lacks
    (run / "no_local_memory" / "eval.done.json").unlink()
    result = subprocess.run([*report, "--docs", str(docs)], capture_output=True, text=True, env=_env())
    assert result.returncode == 2 and "no_local_memory/eval.done.json: missing" in result.stderr
