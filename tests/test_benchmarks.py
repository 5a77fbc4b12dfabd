"""The benchmark tools in their smallest form: they run, write their section and check what they claim."""

import json
import subprocess
import sys

import pytest


@pytest.mark.slow
def test_evaluation_benchmark_equal_metrics_and_fewer_vision_passes(tmp_path):
    out, payload = tmp_path / "benchmarks.md", tmp_path / "eval.json"
    command = [sys.executable, "tools/benchmark.py", "--eval", "--model-config", "configs/model/tiny.yaml"]
    command += [
        "--num-videos",
        "2",
        "--size",
        "32",
        "--repeats",
        "1",
        "--videos-per-batch",
        "2",
        "--out",
        str(out),
        "--json",
        str(payload),
    ]
    result = subprocess.run(command, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    data = json.loads(payload.read_text())
    official, single, lockstep = data["rows"]
    assert single[8] == "0.0e+00"  # one video at a time: the official loop's metrics exactly
    assert float(lockstep[8]) < 1e-3  # several videos in lockstep: the same up to float rounding
    assert official[5] == single[5] == lockstep[5]  # the same scored frames
    assert single[4] == lockstep[4] <= official[4]  # truncation after the last labelled frame
    assert set(data["speedups"]) == {official[0], single[0], lockstep[0]}
    text = out.read_text()
    assert "<!-- begin:evaluation -->" in text and "Evaluation loop" in text


def test_compare_logits_numbers():
    import torch

    from locater.bench.precision import compare_logits

    reference = torch.tensor([[2.0, -1.0], [0.5, -3.0]])
    other = torch.tensor([[1.5, 1.0], [-0.5, -3.0]])
    numbers = compare_logits(reference, other)
    assert numbers["max_abs_logit"] == 2.0
    assert numbers["mask_agreement"] == 0.5  # (0,1) and (1,0) change sides
    assert abs(numbers["mask_iou"] - 1 / 3) < 1e-9  # masks {(0,0),(1,0)} and {(0,0),(0,1)}
    expected = (reference.sigmoid() - other.sigmoid()).abs().mean().item()
    assert abs(numbers["mean_abs_prob"] - expected) < 1e-7
    assert compare_logits(-torch.ones(2, 2), -torch.ones(2, 2))["mask_iou"] == 1.0  # both empty


@pytest.mark.slow
def test_precision_benchmark_on_the_cpu(tmp_path):
    out = tmp_path / "benchmarks.md"
    command = [sys.executable, "tools/benchmark.py", "--precision", "--device", "cpu"]
    command += ["--config", "configs/model/tiny.yaml", "--train-config", "configs/model/tiny.yaml"]
    command += ["--frames", "2", "--steps", "6", "--out", str(out)]
    result = subprocess.run(command, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[
        -3000:
    ]  # it exits non-zero when a loss is not finite or not lower
    text = out.read_text()
    assert "<!-- begin:precision-cpu -->" in text
    rows = [line for line in text.splitlines() if line.startswith("| ")]
    bf16 = next(line for line in rows if "bf16 autocast, cpu" in line).split(" | ")
    assert 0.9 <= float(bf16[4]) <= 1.0  # bf16 keeps most pixels on the same side
    assert "float32, CPU" not in text  # no CPU-vs-device rows without a device
    trained = [line.split(" | ") for line in rows if line.startswith(("| none", "| bf16 |"))]
    assert [row[0] for row in trained] == ["| none", "| bf16"]
    assert all(row[3].strip(" |") == "yes" and float(row[2]) < float(row[1]) for row in trained)


def test_precision_benchmark_fails_on_non_finite_outputs_or_no_learning(monkeypatch):
    import pytest
    import torch

    from locater.bench import precision, training

    def fake_logits(config, device, amp="none", frames=4, seed=0, allow_tf32=False):
        logits = torch.zeros(frames, 2, 8, 8)
        return logits.fill_(float("nan")) if amp == "bf16" else logits

    monkeypatch.setattr(precision, "streaming_logits", fake_logits)
    monkeypatch.setattr(precision, "training_losses", lambda config, amp, device, steps, seed=0: [1.0, 0.5])
    arguments = ["--device", "cpu", "--frames", "2", "--steps", "2", "--no-write"]
    with pytest.raises(SystemExit, match="streaming bf16 autocast, cpu") as failure:
        precision.main(arguments)
    assert "training" not in str(failure.value)  # both training runs lowered their loss
    monkeypatch.setattr(precision, "streaming_logits", lambda *args, **kwargs: torch.zeros(2, 2, 8, 8))
    monkeypatch.setattr(precision, "training_losses", lambda config, amp, device, steps, seed=0: [1.0, 1.0])
    with pytest.raises(SystemExit, match="training with amp none, training with amp bf16"):
        precision.main(arguments)
    monkeypatch.setattr(precision, "training_losses", lambda config, amp, device, steps, seed=0: [1.0, 0.9])
    assert "| none | 1.0000 | 0.9000 | yes |" in precision.main(arguments)
    with pytest.raises(ValueError, match="fp16 needs a CUDA device"):
        training.training_step("configs/model/tiny.yaml", amp="fp16", device="cpu")


@pytest.mark.slow
def test_fresh_process_runner_returns_results_and_reports_errors_and_deaths():
    import os

    import pytest

    from locater.bench import run_in_fresh_process

    assert run_in_fresh_process(sorted, [3, 1, 2], "sorting") == [1, 2, 3]
    with pytest.raises(RuntimeError, match=r"(?s)parsing failed in its benchmark process.*ValueError"):
        run_in_fresh_process(int, "not a number", "parsing")
    # a child that dies without a result (as one killed for memory does): an error, not a wait forever
    with pytest.raises(
        RuntimeError, match="dying: the benchmark process died with exit code 3 and no result"
    ):
        run_in_fresh_process(os._exit, 3, "dying")


@pytest.mark.slow
def test_scaling_benchmark_keeps_locater_memory_fixed_and_grows_the_baseline(tmp_path):
    out, plot = tmp_path / "benchmarks.md", tmp_path / "scaling.png"
    command = [sys.executable, "tools/benchmark.py", "--scaling", "--lengths", "4", "12", "--size", "32"]
    command += ["--width", "64", "--threads", "1", "--out", str(out), "--plot", str(plot)]
    result = subprocess.run(command, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    assert plot.stat().st_size > 0
    rows = [line.split("|")[1:-1] for line in out.read_text().splitlines() if line.startswith("| ")][1:]
    tokens = {(cells[0].strip(), int(cells[1])): int(cells[5]) for cells in rows}
    # 32 px / 16 px patches = 4 tokens a frame: the released memory sizes hold 1.5 + 2 frames whatever the length
    assert tokens[("locater", 4)] == tokens[("locater", 12)] == 14
    # the baseline keeps every frame seen (and the global frames), so its memory grows with the video
    assert tokens[("all-frames baseline", 12)] - tokens[("all-frames baseline", 4)] == (12 - 4) * 4


@pytest.mark.slow
def test_training_benchmark_writes_its_section(tmp_path):
    out = tmp_path / "benchmarks.md"
    command = [sys.executable, "tools/benchmark.py", "--train", "--config", "configs/model/tiny.yaml"]
    command += ["--batch-size", "1", "--clip-length", "2", "--steps", "2", "--warmup", "1", "--threads", "1"]
    command += ["--out", str(out)]
    result = subprocess.run(command, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    row = next(line for line in out.read_text().splitlines() if line.startswith("| configs/model/tiny.yaml"))
    cells = [cell.strip() for cell in row.split("|")[1:-1]]
    assert cells[2:5] == ["cpu", "none", "1 x 2"]
    assert float(cells[5]) > 0 and float(cells[7]) > 0  # samples/s, ms / step


@pytest.mark.slow
def test_step_benchmark_writes_its_section(tmp_path):
    out = tmp_path / "benchmarks.md"
    command = [
        sys.executable,
        "tools/benchmark.py",
        "--step",
        "--size",
        "32",
        "--frames",
        "2",
        "--warmup",
        "1",
    ]
    command += ["--skip-bf16", "--threads", "1", "--out", str(out)]
    result = subprocess.run(command, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    rows = [
        [cell.strip() for cell in line.split("|")[1:-1]]
        for line in out.read_text().splitlines()
        if line.startswith("| ours")
    ]
    assert [row[:3] for row in rows] == [["ours", "float32", "1"], ["ours", "float32", "2"]]
    assert all(float(row[3]) > 0 and float(row[4]) > 0 for row in rows)  # ms / frame, frames/s


@pytest.mark.slow
def test_step_benchmark_compile_table_pairs_eager_and_compiled(tmp_path):
    out = tmp_path / "benchmarks.md"
    command = [sys.executable, "tools/benchmark.py", "--step", "--size", "32", "--frames", "2"]
    command += ["--warmup", "1", "--skip-bf16", "--compile", "--threads", "1"]
    command += ["--section", "fast-paths", "--out", str(out)]
    result = subprocess.run(command, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    text = out.read_text()
    assert "<!-- begin:fast-paths -->" in text and "<!-- begin:step -->" not in text  # its own section
    rows = {
        cells[0]: cells
        for cells in ([c.strip() for c in line.split("|")[1:-1]] for line in text.splitlines())
        if cells and cells[0] in ("float32", "float32 + torch.compile")
    }
    assert rows["float32"][2] == "1.00x" and float(rows["float32"][4]) == 0.0  # the reference against itself
    compiled = rows["float32 + torch.compile"]
    assert float(compiled[1]) > 0 and float(compiled[2].rstrip("x")) > 0
    assert float(compiled[4]) < 1e-4 and float(compiled[5]) > 0.99  # the same outputs as eager
