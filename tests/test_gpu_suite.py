"""The one-shot GPU suite: its plan, its time limits and its tables, and a CPU rehearsal in a tiny configuration."""

import subprocess
import sys
import time

import pytest
import torch

from locater.bench import BenchmarkTimeout, run_in_fresh_process, suite

TINY = ["--device", "cpu", "--config", "configs/model/tiny.yaml", "--train-config", "configs/model/tiny.yaml"]


def _args(*extra):
    return suite._parse(["gpu", *TINY, "--frames", "2", "--videos", "2", *extra])


def test_plan_on_the_cpu_says_what_cannot_run_and_compiles_last():
    measurements = suite.plan(_args())
    labels = [m.label for m in measurements]
    assert labels[-1] == "bf16 + torch.compile"  # the least predictable one last
    skips = {m.label: m.skip for m in measurements}
    assert skips["TF32"].startswith("skipped: TF32 is a mode of CUDA")
    assert skips["official code, float32"].startswith("not run: no --official-root")
    assert skips["float32"] == skips["bf16"] == skips["bf16 + torch.compile"] == ""
    train = [m for m in measurements if m.kind == "train"]
    assert [m.job["overrides"][-1] for m in train] == [
        "model.fusion.checkpoint=false",
        "model.fusion.checkpoint=true",
    ]
    assert all(m.job["amp"] == "bf16" for m in train)
    assert suite.plan(_args("--skip-compile"))[-1].skip == "skipped: --skip-compile"
    assert sum(m.budget_s for m in measurements) <= 8 * 60  # the suite's promise on one GPU


def test_run_stops_overruns_reports_failures_and_skips_what_no_longer_fits(monkeypatch):
    measurements = suite.plan(_args())
    clock = [0.0]
    seconds = {
        "float32": 100,
        "bf16": 100,
        "bf16, activation checkpointing off": 100,
        "bf16, activation checkpointing on": 120,
        "bf16 vs float32": 30,
    }
    limits = {}

    def fake_runner(function, job, what, timeout_s=None):
        limits[what] = timeout_s
        clock[0] += seconds[what.removeprefix("suite ")]
        if "checkpointing on" in what:
            raise BenchmarkTimeout(f"{what}: stopped")
        if "bf16 vs float32" in what:
            raise RuntimeError(f"{what} failed in its benchmark process:\nTraceback ...\nValueError: broken")
        return {}

    monkeypatch.setattr(suite, "run_in_fresh_process", fake_runner)
    monkeypatch.setattr(suite.time, "monotonic", lambda: clock[0])
    suite.run(measurements, budget_s=450)
    skips = {m.label: m.skip for m in measurements}
    assert skips["float32"] == skips["bf16"] == skips["bf16, activation checkpointing off"] == ""
    assert skips["bf16, activation checkpointing on"] == "stopped: over its time limit of 60 s"
    assert skips["bf16 vs float32"] == "failed: ValueError: broken"
    assert limits["suite bf16 vs float32"] == 30  # what was left of the 450 s, below its own 40
    assert skips["bf16 + torch.compile"] == "skipped: the suite's 450 s were spent"
    assert "suite bf16 + torch.compile" not in limits


def test_fresh_process_runner_stops_a_child_at_its_time_limit():
    tic = time.monotonic()
    with pytest.raises(BenchmarkTimeout, match="sleeping: stopped after its time limit of 2 s"):
        run_in_fresh_process(time.sleep, 60, "sleeping", timeout_s=2)
    assert time.monotonic() - tic < 30


def test_tables_are_well_formed_with_results_and_skips():
    args = _args()
    measurements = suite.plan(args)

    def stream(ms, frames=2):
        return {
            "median_s": ms / 1000,
            "start_s": 0.1,
            "warmup_s": 0.3,
            "frames_measured": frames,
            "peak_memory_mb": 123.0,
            "outputs": torch.full((frames, 1, 4, 4), ms),
        }

    for m in measurements:
        if m.kind == "latency" and not m.skip:
            m.result = {"single": stream(10.0 if m.label == "float32" else 5.0), "lockstep": stream(20.0)}
        elif m.kind == "train":
            m.result = {"seconds_per_step": 0.5, "samples_per_s": 4.0, "peak_memory_mb": 99.0}
        elif m.kind == "agreement":
            m.result = {
                "max_abs_logit": 0.01,
                "mean_abs_prob": 1e-4,
                "mask_agreement": 0.999,
                "mask_iou": 0.99,
                "finite": True,
            }
    text = suite.tables(measurements, args)
    lines = [line for line in text.splitlines() if line.startswith("|")]
    header_cells = None
    for line in lines:
        cells = line.split("|")[1:-1]
        if line.startswith("|---"):
            continue
        if header_cells is None or len(cells) != header_cells:
            header_cells = len(cells)  # a new table's header
        assert len(cells) == header_cells
    assert "| bf16 | 1 | 5.0 | 200.0 | 123 | 2 frames measured; 2.00x float32, max abs diff 5.0e+00 |" in text
    assert "| TF32 | 1 |  |  |  | skipped: TF32 is a mode of CUDA" in text
    assert "| official |  |  |  | not run: no --official-root" in text
    assert "| bf16, activation checkpointing on | 500 | 4.00 | 99 |" in text


@pytest.mark.slow
def test_suite_rehearsal_on_the_cpu_writes_its_section(tmp_path):
    out = tmp_path / "benchmarks.md"
    command = [
        sys.executable,
        "tools/benchmark.py",
        "--suite",
        "gpu",
        *TINY,
        "--frames",
        "2",
        "--videos",
        "2",
    ]
    command += ["--train-steps", "1", "--threads", "1", "--out", str(out)]
    result = subprocess.run(command, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    text = out.read_text()
    assert "<!-- begin:gpu-suite -->" in text and "## GPU suite (cpu)" in text
    rows = {line.split("|")[1].strip(): line for line in text.splitlines() if line.startswith("| ")}
    for label in ("float32", "bf16", "bf16 + torch.compile"):
        cells = [cell.strip() for cell in rows[label].split("|")[1:-1]]
        assert float(cells[2]) > 0 and float(cells[3]) > 0, rows[label]  # ms / step, frames/s
    assert "skipped: TF32" in rows["TF32"]
    assert "compilation in start and warm-up" in rows["bf16 + torch.compile"]
    for label in ("bf16, activation checkpointing off", "bf16, activation checkpointing on"):
        cells = [cell.strip() for cell in rows[label].split("|")[1:-1]]
        assert float(cells[1]) > 0 and float(cells[2]) > 0
    agreement = next(line for line in text.splitlines() if line.endswith("| finite |"))
    assert 0.9 <= float(agreement.split("|")[4]) <= 1.0  # mask IoU


def test_cpu_run_without_out_writes_nothing(tmp_path, monkeypatch):
    args = _args()
    monkeypatch.setattr(suite, "run", lambda measurements, budget_s: None)
    monkeypatch.setattr(suite, "_parse", lambda argv: args)
    monkeypatch.chdir(tmp_path)  # a stray write would land in ./docs
    assert "## GPU suite (cpu)" in suite.main(["gpu"])
    assert not (tmp_path / "docs").exists()
