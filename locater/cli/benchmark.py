"""Benchmarks: each prints a table and updates its section of docs/benchmarks.md.

  python tools/benchmark.py --step     [options]   streaming step latency at 320 px (ours vs official)
  python tools/benchmark.py --eval     [options]   evaluator vs a re-creation of the official evaluation loop
  python tools/benchmark.py --scaling  [options]   streaming vs attend-over-all-frames on 16..1024 frames
  python tools/benchmark.py --train    [options]   training samples/s and peak memory
  python tools/benchmark.py --precision [options]  float32 on the device vs the CPU, bf16/fp16 autocast, AMP training
  python tools/benchmark.py --data     [options]   training input pipeline: clips/s produced vs clips/s a GPU consumes
  python tools/benchmark.py --suite gpu [options]  one-shot GPU suite: latency per precision, official vs ours,
                                                   training with/without checkpointing, bf16 agreement (< 8 min)

Options after the mode flag go to that benchmark: `python tools/benchmark.py --step --help`.
"""

from __future__ import annotations

import importlib
import sys

from locater.cli.entry import command

MODES = {
    "--step": "locater.bench.step",
    "--eval": "locater.bench.evaluation",
    "--scaling": "locater.bench.scaling",
    "--train": "locater.bench.training",
    "--precision": "locater.bench.precision",
    "--data": "locater.bench.data",
    "--suite": "locater.bench.suite",
}


@command
def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in MODES:
        print(__doc__)
        return 0 if not argv or argv[0] in ("-h", "--help") else 2
    module = importlib.import_module(MODES[argv[0]])
    module.main(argv[1:])
    return 0


if __name__ == "__main__":
    sys.exit(main())
