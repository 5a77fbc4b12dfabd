"""The benchmark tools in their smallest form: they run, write their section and check what they claim."""

import json
import subprocess
import sys


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
