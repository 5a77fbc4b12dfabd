"""The newcomer's scripts in smoke mode (a few training steps, two test videos per split)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import yaml

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
    # stage 0 pre-trained the vision encoder; stages 1 and 2 start from it at a tenth of the learning rate
    assert (out / "full/vision/vit.pth").is_file() and "full/vision/vit.pth" in first
    assert (
        "vision_lr_scale: 0.1" in first and "vision_lr_scale: 0.1" in (out / "full/config.yaml").read_text()
    )
    assert "full/appearance/checkpoints/last.pt" in (out / "full/config.yaml").read_text()


def test_memory_experiment_smoke(tmp_path):
    """RECIPE=two_stage, the four variants at once (PARALLEL=1): each ablation in every stage; the report's tables
    and oracle rows; then one variant the sequential way, and the errors."""
    docs = tmp_path / "docs"
    env = _env(SMOKE="1", RECIPE="two_stage", OUT=str(tmp_path / "runs"), DATA=str(tmp_path / "synthetic"))
    env.update(DOCS=str(docs), PARALLEL="1")
    result = subprocess.run(["bash", "scripts/memory_experiment.sh"], capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    variants = ["full", "no_local_memory", "no_global_memory", "no_mask_history"]
    for variant in variants:  # each variant's own log, of its training and evaluation
        log = (tmp_path / "runs" / f"{variant}.log").read_text()
        assert f"runs/{variant}/appearance" in log and f"eval/{variant}" in log, log[-2000:]
    _check_results(json.loads((docs / "memory_experiment.json").read_text()), variants)
    report = (docs / "memory_experiment.md").read_text()
    assert "RECIPE=two_stage" in report and "RULE=" not in report and "OWN=" not in report
    assert "PARALLEL=1 bash scripts/memory_experiment.sh" in report and "4 variants trained at once" in report
    assert all(v in report for v in variants) and (docs / "memory_experiment.png").stat().st_size > 1000
    assert "TEMP by the side of the crossing" in report and "| no_mask_history |" in report
    for variant in variants:  # each ablation really trained its own model, in both stages of the curriculum
        first = (tmp_path / "runs" / variant / "appearance/config.yaml").read_text()
        config = (tmp_path / "runs" / variant / "config.yaml").read_text()
        assert ("size: 0.0" in config) == (variant in ("no_local_memory", "no_global_memory"))
        assert ("size: 0.0" in first) == (variant in ("no_local_memory", "no_global_memory"))
        assert "clip_length: 1" in first and f"{variant}/appearance/checkpoints/last.pt" in config
        # the experiment's departures from the quickstart: sine-cosine positions, SPAT and TEMP clips in stage 1
        # beginning at the video's first frame, half the clips of stage 2 there and the others with a context frame
        assert "pos_embed_init: sincos" in first and "pos_embed_init: sincos" in config
        assert "synthetic_mix:\n    - 1.0\n    - 1.0\n    - 1.0\n    - 1.0\n" in first
        assert "synthetic_start_share: 1.0" in first and "synthetic_context_frame: false" in first
        assert "synthetic_start_share: 0.5" in config and "synthetic_context_frame: true" in config
        # no rule or own-masks stage in this recipe: stage 2 is the last
        assert not (tmp_path / "runs" / variant / "tracking").exists()
    # own vs true masks in the local memory, for each variant that has one
    oracle = report[report.index("fresh videos with each model's own masks") :]
    assert [line.rstrip(":") for line in oracle.splitlines() if line.endswith(":")] == [
        "full",
        "no_global_memory",
        "no_mask_history",
    ]
    # two tables per variant: by the side of the crossing, and whom it segments at the first frames
    assert oracle.count("| own masks |") == 6 and oracle.count("| true masks |") == 6
    assert oracle.count("| memory | frame 1 | frame 2 | frame 3 | later frames |") == 3
    # a variant that fails at once: the script fails and shows the end of its log
    env.update(VARIANTS="full no_mask_history", MODEL_ARGS="model.local_memory.write=sideways")
    result = subprocess.run(["bash", "scripts/memory_experiment.sh"], capture_output=True, text=True, env=env)
    assert result.returncode == 1 and "variant full failed" in result.stderr and "sideways" in result.stderr
    assert "variant no_mask_history failed" in result.stderr
    # some of the variants, one after the other, with more model overrides
    env.pop("PARALLEL")
    env.update(VARIANTS="full", MODEL_ARGS="model.local_memory.write=window model.reader_positions=true")
    result = subprocess.run(["bash", "scripts/memory_experiment.sh"], capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    _check_results(json.loads((docs / "memory_experiment.json").read_text()), ["full"])
    report = (docs / "memory_experiment.md").read_text()
    assert "VARIANTS='full'" in report and "MODEL_ARGS='model.local_memory.write=window" in report
    config = (tmp_path / "runs/full/config.yaml").read_text()
    assert "write: window" in config and "reader_positions: true" in config
    env.update(VARIANTS="full no_memory")
    result = subprocess.run(["bash", "scripts/memory_experiment.sh"], capture_output=True, text=True, env=env)
    assert result.returncode == 2 and "unknown variant no_memory" in result.stderr
    env.update(VARIANTS="full", RECIPE="fast")
    result = subprocess.run(["bash", "scripts/memory_experiment.sh"], capture_output=True, text=True, env=env)
    assert result.returncode == 2 and "unknown RECIPE fast; expected staged or two_stage" in result.stderr


def test_memory_experiment_staged_recipe_smoke(tmp_path):
    """The default recipe (RECIPE=staged): appearance, tracking, rule and own-masks stages, each from the weights of
    the one before."""
    docs, runs = tmp_path / "docs", tmp_path / "runs"
    env = _env(SMOKE="1", VARIANTS="no_global_memory", OUT=str(runs), DOCS=str(docs))
    env.pop("RECIPE", None)  # the default
    env.update(DATA=str(tmp_path / "synthetic"))
    env.pop("RULE_ARGS", None)  # the recipe's default
    result = subprocess.run(["bash", "scripts/memory_experiment.sh"], capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    _check_results(json.loads((docs / "memory_experiment.json").read_text()), ["no_global_memory"])
    report = (docs / "memory_experiment.md").read_text()
    assert "RECIPE=staged" in report and "RULE=0.05" in report and "OWN=0.05" in report
    assert "model.global_memory.write=window model.global_memory.size=3.0" in report
    evaluated = yaml.safe_load((runs / "eval/no_global_memory/config.yaml").read_text())["model"]
    assert evaluated["global_memory"]["size"] == 0.0  # evaluated as trained
    assert "RULE_ARGS='model.global_memory.num_frames=3'" in report  # every setting in the report's command
    run = runs / "no_global_memory"
    stages = [run / "appearance", run / "tracking", run / "rule", run]
    configs = [(stage / "config.yaml").read_text() for stage in stages]
    for before, config in zip(stages[:-1], configs[1:]):
        assert f"{before}/checkpoints/last.pt" in config  # each stage from the weights of the one before
    for config in configs:  # the ablation and the model overrides of the recipe in every stage
        assert "size: 0.0" in config and "mask_encoding: patch" in config
        assert "write: window" in config and "reader_positions: true" in config
        assert "reader_locality: 1.0" in config
        # the recipe's global memory is read by place (write=window, 3 frames); the ablation's size=0 wins over it
        global_memory = yaml.safe_load(config)["model"]["global_memory"]
        assert global_memory["write"] == "window" and global_memory["size"] == 0.0
    appearance, tracking, rule, own = configs
    assert "clip_length: 1" in appearance and "synthetic_start_share: 1.0" in appearance
    assert "clip_length: 3" in tracking and "synthetic_crossing_share: 0.5" in tracking
    # the rule stage: one-frame SPAT and TEMP clips at the first frame
    assert "clip_length: 1" in rule and "synthetic_start_share: 1.0" in rule
    assert "synthetic_mix:\n    - 0.0\n    - 0.0\n    - 1.0\n    - 3.0\n" in rule
    assert (
        "num_frames: 3" in rule and "num_frames: 1" in appearance
    )  # RULE_ARGS after the stage's own settings
    # the own-masks stage: 4-frame clips, teacher forcing 0, more TEMP
    assert "clip_length: 4" in own and "teacher_forcing: 0.0" in own
    assert "synthetic_crossing_share: 0.6" in own and "synthetic_context_frame: true" in own
    assert "synthetic_mix:\n    - 1.0\n    - 1.0\n    - 2.0\n    - 3.0\n" in own


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


def test_overlay_gifs_outline_the_ground_truth_on_labelled_frames(tmp_path):
    """quickstart_report's GIFs: the prediction in magenta, the ground truth's outline in green where labelled."""
    import importlib.util

    import numpy as np
    from PIL import Image

    from locater.data.layout import LayoutSplit
    from locater.data.synthetic import write_split

    spec = importlib.util.spec_from_file_location("quickstart_report", "scripts/quickstart_report.py")
    report = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(report)
    square = np.zeros((6, 6), bool)
    square[1:5, 1:5] = True
    assert report.mask_outline(square).sum() == 12 and not report.mask_outline(square)[2:4, 2:4].any()

    split_dir = write_split(tmp_path, "NORM", 1, seed=0, size=64)
    sample = next(iter(LayoutSplit.open(split_dir).videos().values()))[0]
    predicted = tmp_path / "masks" / sample.video / sample.expression
    predicted.mkdir(parents=True)
    for frame in sample.frames:  # a full-frame prediction: every pixel tinted magenta
        Image.fromarray(np.full((64, 64), 255, np.uint8)).save(predicted / f"{frame}.png")
    (gif,) = report.overlay_gif(split_dir, tmp_path / "masks", tmp_path, 1)
    image = Image.open(gif)
    for index, frame in enumerate(sample.frames):
        image.seek(index)
        rgb = np.asarray(image.convert("RGB")).astype(int)
        green = (rgb[..., 1] > 200) & (rgb[..., 0] < 100) & (rgb[..., 2] < 100)
        assert green.any() == (frame in sample.labels), frame
        assert (rgb[..., 0] > rgb[..., 1])[~green].mean() > 0.9  # the magenta tint elsewhere


def test_train_two_stages_passes_model_overrides_to_stage_0_and_takes_the_first_mix(tmp_path):
    """A model.* override reshapes the encoder that stage 0 pre-trains (a one-block ViT here; before, stage 0 built
    the two-block encoder of the config and stage 1 could not load it); FIRST_MIX sets stage 1's share of kinds."""
    import torch

    out = tmp_path / "run"
    env = _env(VISION_MINUTES="0.05", VISION_STEPS="2", FIRST_MIX="[1.0,1.0,1.0,0.0]")
    args = ["bash", "scripts/train_two_stages.sh", str(out), "0.3", "0.1", "[1.0,1.0,1.0,1.0]"]
    args += [
        "model.vision.depth=1",
        "train.max_steps=2",
        "train.batch_size=2",
        "train.data.samples_per_epoch=4",
    ]
    result = subprocess.run(args, capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    blocks = {key.split(".")[1] for key in torch.load(out / "vision/vit.pth") if key.startswith("blocks.")}
    assert blocks == {"0"}
    first = (out / "appearance/config.yaml").read_text()
    assert "synthetic_mix:\n    - 1.0\n    - 1.0\n    - 1.0\n    - 0.0" in first and "depth: 1" in first
    assert "synthetic_mix:\n    - 1.0\n    - 1.0\n    - 1.0\n    - 1.0" in (out / "config.yaml").read_text()


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
            "experiments/memory/temp_crossing.py",
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


def test_memory_oracle_reads_each_expression_with_own_and_true_masks(tmp_path):
    import runpy

    import numpy as np
    import torch

    import locater
    from locater.data.synthetic import generate_video
    from locater.data.synthetic.scenes import crossing_frame
    from locater.preprocess import preprocess_frames

    oracle = runpy.run_path("experiments/memory/memory_oracle.py")
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
    command = [sys.executable, "experiments/memory/memory_oracle.py", "--config", tiny]
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


def _processes_mentioning(text):
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:  # ended meanwhile
                continue
            if text in command:
                found.append(command)
    return found


def test_memory_experiment_parallel_stops_every_variant_on_term(tmp_path):
    """TERM to a PARALLEL=1 run ends the training processes of every variant, not the script alone."""
    import signal
    import time

    out = tmp_path / "runs"
    env = _env(SMOKE="1", RECIPE="two_stage", OUT=str(out), DATA=str(tmp_path / "synthetic"), PARALLEL="1")
    env.update(DOCS=str(tmp_path / "docs"), VARIANTS="full no_mask_history")
    script = subprocess.Popen(["bash", "scripts/memory_experiment.sh"], env=env, stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while len(_processes_mentioning(f"{out}/")) < 2 and time.monotonic() < deadline:
        time.sleep(0.2)  # both variants have started (train_two_stages.sh OUT/VARIANT ..., then its stages)
    assert len(_processes_mentioning(f"{out}/")) >= 2
    script.send_signal(signal.SIGTERM)
    assert script.wait(timeout=60) == 130
    deadline = time.monotonic() + 30
    while _processes_mentioning(f"{out}/") and time.monotonic() < deadline:
        time.sleep(0.5)
    assert _processes_mentioning(f"{out}/") == []


def test_memory_experiment_resume_keeps_evaluated_variants_with_the_same_settings(tmp_path):
    docs, runs = tmp_path / "docs", tmp_path / "runs"
    env = _env(SMOKE="1", RECIPE="two_stage", VARIANTS="no_mask_history", OUT=str(runs), DOCS=str(docs))
    env.update(DATA=str(tmp_path / "synthetic"))
    result = subprocess.run(["bash", "scripts/memory_experiment.sh"], capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    checkpoint = runs / "no_mask_history/checkpoints/last.pt"
    trained_at = checkpoint.stat().st_mtime_ns
    wall = int((runs / "no_mask_history/wall_s").read_text())
    env.update(RESUME="1")
    result = subprocess.run(["bash", "scripts/memory_experiment.sh"], capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    assert checkpoint.stat().st_mtime_ns == trained_at  # not trained again
    report = (docs / "memory_experiment.md").read_text()
    assert (
        f"kept from an earlier one (RESUME=1): no_mask_history ({wall} s)" in report
        and "RESUME=1 bash" in report
    )
    # other model settings: refused, naming the difference
    env.update(MODEL_ARGS="model.reader_locality=0.5")
    result = subprocess.run(["bash", "scripts/memory_experiment.sh"], capture_output=True, text=True, env=env)
    assert result.returncode == 2
    assert (
        "made with other model settings" in result.stderr
        and "model.reader_locality: saved 0.0" in result.stderr
    )
    assert checkpoint.stat().st_mtime_ns == trained_at
