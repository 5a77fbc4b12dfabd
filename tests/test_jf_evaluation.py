"""J&F evaluation of Ref-DAVIS17 and the Ref-YouTube-VOS local validation split: scorer, protocols, command line,
outputs and 1 against 2 processes."""

import csv
import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest
import torch
from fake_refvos import make_fake_davis, make_fake_ytvos_train
from helpers_data import make_checkpoint

from locater.cli import evaluate
from locater.config import ConfigError, load_config
from locater.data.ref_davis import SENTENCE_SETS, RefDAVIS
from locater.data.ytvos import YTVOSSplit
from locater.engine import evaluator, jf_evaluation
from locater.engine.amp import native_bf16
from locater.engine.jf_report import DAVIS_AVERAGES, summarise
from locater.engine.metrics import JF_KEYS

SETS = [s.name for s in SENTENCE_SETS]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("jf")
    make_fake_davis(root / "davis")
    ytvos = make_fake_ytvos_train(root / "ytvos")
    return {"root": root, "davis": root / "davis", "ytvos": ytvos, "ckpt": make_checkpoint(root / "tiny.pt")}


def oracle(swap_objects: bool = False):
    """A stand-in for the model loop that returns the ground truth as logits (+10 inside, -10 outside), at the
    annotation's size; ``swap_objects`` gives each expression of a two-object video the other object's mask."""

    def run(model, split, plans, device, prefetch, on_frame, live=None):
        for plan in plans:
            for frame in plan.frames:
                rows = []
                for sample in plan.samples:
                    expression = sample.expression
                    if swap_objects and expression[-1] in "12" and expression.startswith("annot"):
                        other = expression[:-1] + ("2" if expression[-1] == "1" else "1")
                        if (plan.video, other) in split.object_ids:
                            expression = other
                    mask = torch.from_numpy(split.load_mask(plan.video, expression, frame))
                    rows.append(torch.where(mask, 10.0, -10.0)[None])
                on_frame(plan, frame, torch.stack(rows))
        return sum(len(plan.frames) for plan in plans), 0

    return run


def test_a_perfect_predictor_scores_one_in_every_protocol(data, monkeypatch):
    monkeypatch.setattr(evaluator, "run_videos", oracle())
    davis = RefDAVIS.open(data["davis"], "val", unsupervised=True)
    result = jf_evaluation.evaluate_jf(
        torch.nn.Identity(), davis, torch.device("cpu"), group=davis.group, unsupervised=True, progress=False
    )
    assert len(result.records) == 4 * (2 * 6 + 5) and result.num_samples == 12
    assert {r.split for r in result.records} == set(SETS)
    for records, skip in (
        (result.records, False),
        (result.records, True),
        (result.unsupervised_records, False),
    ):
        columns = summarise(records, SETS, DAVIS_AVERAGES, skip_first_last=skip)
        assert list(columns) == [*SETS, *DAVIS_AVERAGES]
        for metrics in columns.values():
            assert all(metrics[key] == 1.0 for key in ("J&F", "J-Mean", "F-Mean", "J-Recall", "F-Recall"))
            assert metrics["J-Decay"] == metrics["F-Decay"] == 0.0
    assert summarise(result.records, SETS, DAVIS_AVERAGES, True)["mean"]["num_frames"] == 4 * (2 * 4 + 3)
    # the unsupervised set numbers bike-packing's objects the other way round: the pairing undoes it
    pairs = {(m["set"], m["video"], m["object"]): m["expression"] for m in result.matching}
    assert pairs[("annot1-full", "bike-packing", 1)] == "annot1-full-2"
    assert pairs[("annot2-first", "blackswan", 1)] == "annot2-first-1"
    assert len(result.unsupervised_records) == 4 * (2 * 6 + 5)


def test_swapped_objects_fail_the_referring_protocol_but_not_the_paired_one(data, monkeypatch):
    monkeypatch.setattr(evaluator, "run_videos", oracle(swap_objects=True))
    davis = RefDAVIS.open(data["davis"], "val", unsupervised=True)
    result = jf_evaluation.evaluate_jf(
        torch.nn.Identity(), davis, torch.device("cpu"), group=davis.group, unsupervised=True, progress=False
    )
    referring = summarise(result.records, SETS, DAVIS_AVERAGES)
    # blackswan (one object) is perfect, bike-packing's two expressions point at the other object: J = 0
    assert referring["mean"]["J-Mean"] == pytest.approx(1 / 3) and referring["annot1-first"]["J&F"] < 0.5
    unsupervised = summarise(result.unsupervised_records, SETS, DAVIS_AVERAGES)
    assert unsupervised["mean"]["J&F"] == 1.0


def test_ytvos_local_val_perfect_predictor(data, monkeypatch):
    monkeypatch.setattr(evaluator, "run_videos", oracle())
    fake = data["ytvos"]
    split = YTVOSSplit.open(fake.root, "train").subset(fake.local_val)
    result = jf_evaluation.evaluate_jf(
        torch.nn.Identity(), split, torch.device("cpu"), group=lambda v, e: "local_val", progress=False
    )
    columns = summarise(result.records, ["local_val"])
    assert columns["local_val"]["J&F"] == 1.0 and columns["local_val"]["num_objects"] == 2 * len(
        fake.local_val
    )


def _davis_args(data, out, *extra):
    return [
        "--config",
        "configs/model/tiny.yaml",
        "--checkpoint",
        str(data["ckpt"]),
        "eval.dataset=DAVIS17",
        f"eval.data_root={data['davis']}",
        "--output-dir",
        str(out),
        "--no-progress",
        *extra,
    ]


def test_davis17_command_writes_every_table_and_file(data, tmp_path, capsys):
    out = tmp_path / "davis"
    assert evaluate.main(_davis_args(data, out, "--save-masks")) == 0
    printed = capsys.readouterr().out
    assert "DAVIS toolkit, unsupervised task" in printed and "| annotator 1 |" in printed
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics) >= {"referring", "semi_supervised_toolkit", "unsupervised_toolkit", "checkpoint"}
    assert (metrics["dataset"], metrics["split"], metrics["world_size"]) == ("DAVIS17", "val", 1)
    assert metrics["precision"] == "float32"  # eval.amp is off by default
    assert metrics["num_samples"] == 12 and metrics["frames_processed"] == 11
    for protocol in ("referring", "semi_supervised_toolkit", "unsupervised_toolkit"):
        columns = metrics[protocol]
        assert list(columns) == [*SETS, *DAVIS_AVERAGES]
        for key in JF_KEYS:  # an average column is the plain mean of its sets
            assert columns["mean"][key] == pytest.approx(sum(columns[s][key] for s in SETS) / 4)
            assert columns["annotator 2"][key] == pytest.approx(
                (columns["annot2-first"][key] + columns["annot2-full"][key]) / 2
            )
    with (out / "per_expression.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 12 and rows[0]["split"] == "annot1-first" and rows[0]["video"] == "bike-packing"
    assert len(json.loads((out / "per_expression.json").read_text())) == 12
    assert len((out / "jf_per_frame.csv").read_text().splitlines()) == 1 + 4 * 17
    assert len((out / "unsupervised_per_frame.csv").read_text().splitlines()) == 1 + 4 * 17
    assert len(json.loads((out / "unsupervised_matching.json").read_text())) == 4 * 3
    assert len(list((out / "masks").rglob("*.png"))) == 4 * 17
    assert (out / "config.yaml").is_file() and "J-Recall" in (out / "metrics.md").read_text()
    # without the unsupervised annotations: the other two protocols only; --overwrite replaces the J&F files
    assert evaluate.main(_davis_args(data, out, "--overwrite", "eval.davis_unsupervised=false")) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert "unsupervised_toolkit" not in metrics and not (out / "unsupervised_per_frame.csv").exists()


def test_ytvos_local_val_command(data, tmp_path):
    out = tmp_path / "ytvos"
    args = ["--config", "configs/model/tiny.yaml", "--checkpoint", str(data["ckpt"]), "eval.dataset=YTVOS"]
    args += ["eval.ytvos_split=local_val", f"eval.data_root={data['ytvos'].root}", "--output-dir", str(out)]
    assert evaluate.main([*args, "--no-progress"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert list(metrics["referring"]) == ["local_val"] and metrics["split"] == "local_val"
    assert metrics["referring"]["local_val"]["num_objects"] == 2 * len(data["ytvos"].local_val)
    videos = {row["video"] for row in json.loads((out / "per_expression.json").read_text())}
    assert videos == set(data["ytvos"].local_val)  # the held-out videos, and only those


def test_live_mode_reaches_the_model_loop(data, tmp_path, monkeypatch):
    """``eval.live=true`` runs the J&F evaluation with the causal global memory, as the IoU evaluations do."""
    seen = []
    real = evaluator.run_videos

    def spy(*args):
        seen.append(args[6])
        return real(*args)

    monkeypatch.setattr(evaluator, "run_videos", spy)
    out = tmp_path / "live"
    args = ["--config", "configs/model/tiny.yaml", "--checkpoint", str(data["ckpt"]), "eval.dataset=YTVOS"]
    args += ["eval.ytvos_split=local_val", f"eval.data_root={data['ytvos'].root}", "--output-dir", str(out)]
    args += ["eval.live=true", "eval.live_refresh_every=7", "eval.amp=auto", "--no-progress"]
    assert evaluate.main(args) == 0
    assert seen and all(live is not None and live.refresh_every == 7 for live in seen)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["referring"]["local_val"]["num_objects"] > 0
    # what eval.amp=auto ran as on this machine is recorded
    assert metrics["precision"] == ("bf16 autocast" if native_bf16("cpu") else "float32")


def test_bad_davis_input_exits_2_and_leaves_no_folder(data, tmp_path, capsys):
    broken = tmp_path / "broken"
    make_fake_davis(broken)
    (broken / "DAVIS/Annotations/480p/blackswan/00002.png").unlink()
    args = _davis_args({**data, "davis": broken}, tmp_path / "out")
    assert evaluate.main(args) == 2
    assert "annotation file missing" in capsys.readouterr().err and not (tmp_path / "out").exists()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _run_two_ways(args: list[str], tmp_path) -> tuple[dict, dict]:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    single = subprocess.run(
        [sys.executable, "tools/evaluate.py", *args, "--output-dir", str(tmp_path / "one")],
        capture_output=True,
        text=True,
        env=env,
    )
    assert single.returncode == 0, single.stderr[-3000:]
    double = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_addr=127.0.0.1"]
        + [f"--master_port={_free_port()}"]
        + ["tools/evaluate.py", *args, "--output-dir", str(tmp_path / "two")],
        capture_output=True,
        text=True,
        env=env,
    )
    assert double.returncode == 0, double.stderr[-3000:]
    return tuple(json.loads((tmp_path / d / "metrics.json").read_text()) for d in ("one", "two"))


@pytest.mark.slow
@pytest.mark.parametrize("dataset", ["DAVIS17", "YTVOS"])
def test_one_and_two_processes_give_the_same_numbers(data, tmp_path, dataset):
    args = ["--config", "configs/model/tiny.yaml", "--checkpoint", str(data["ckpt"]), "--no-progress"]
    if dataset == "DAVIS17":
        args += ["eval.dataset=DAVIS17", f"eval.data_root={data['davis']}"]
    else:
        args += ["eval.dataset=YTVOS", "eval.ytvos_split=local_val", f"eval.data_root={data['ytvos'].root}"]
    one, two = _run_two_ways(args, tmp_path)
    assert (one.pop("world_size"), two.pop("world_size")) == (1, 2)
    for run in (one, two):
        run.pop("seconds")
    assert one == two
    names = ["jf_per_frame.csv", "per_expression.csv"]
    names += ["unsupervised_per_frame.csv", "unsupervised_matching.json"] if dataset == "DAVIS17" else []
    for name in names:
        assert (tmp_path / "one" / name).read_text() == (tmp_path / "two" / name).read_text()
    assert np.isfinite([one["referring"][c]["J&F"] for c in one["referring"]]).all()


def test_configs_and_keys():
    local = load_config("configs/ytvos/local_val.yaml")
    assert (local.eval.dataset, local.eval.ytvos_split) == ("YTVOS", "local_val")
    davis = load_config("configs/davis17/val.yaml")
    assert (davis.eval.dataset, davis.eval.davis_split, davis.eval.davis_unsupervised) == (
        "DAVIS17",
        "val",
        True,
    )
    assert (
        load_config("configs/ytvos/valid.yaml").eval.ytvos_split == "valid"
    )  # the submission stays the default
    with pytest.raises(ConfigError, match="eval.ytvos_split must be valid or local_val, got 'local'"):
        load_config(None, ["eval.ytvos_split=local"])
    assert load_config(None, ["eval.dataset=davis17"]).eval.dataset == "DAVIS17"
