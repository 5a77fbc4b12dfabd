"""Benchmarks behind ``tools/benchmark.py``: each prints a table and writes it as a section of a markdown file.

Each section of ``docs/benchmarks.md`` sits between ``<!-- begin:NAME -->`` and ``<!-- end:NAME -->`` markers, so
every benchmark rewrites its own section and leaves the others alone.
"""

from __future__ import annotations

import multiprocessing as mp
import pickle
import platform
import queue
import re
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

BENCHMARKS_MD = Path("docs/benchmarks.md")
HEADER = "# Benchmarks\n\nWritten by `python tools/benchmark.py`; each section names its command, machine and date.\n"


def write_section(name: str, markdown: str, path: str | Path = BENCHMARKS_MD) -> Path:
    """Replace (or append) the section ``name`` of the benchmarks file with ``markdown``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = path.read_text() if path.is_file() else HEADER
    block = f"<!-- begin:{name} -->\n{markdown.rstrip()}\n<!-- end:{name} -->"
    pattern = re.compile(rf"<!-- begin:{re.escape(name)} -->.*?<!-- end:{re.escape(name)} -->", re.S)
    text = (
        pattern.sub(lambda _: block, text) if pattern.search(text) else text.rstrip() + "\n\n" + block + "\n"
    )
    path.write_text(text)
    return path


def machine_description() -> str:
    """CPU model, core count and torch version (and the GPU when one is used)."""
    cpu = platform.processor() or "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import os

    parts = [f"{cpu}, {os.cpu_count()} cores, torch {torch.__version__}, {torch.get_num_threads()} threads"]
    if torch.cuda.is_available():
        parts.append(torch.cuda.get_device_name(0))
    return "; ".join(parts)


def seeded_model(model_config: object, seed: int, perturb_vectors: bool = False) -> torch.nn.Module:
    """A model of ``model_config`` (anything ``locater.build_model`` takes) with seeded random weights, in eval mode.

    Built on the CPU, so the same seed gives the same weights whatever device it is moved to afterwards.
    ``perturb_vectors`` adds seeded noise to every 1-D parameter: the default init leaves LayerNorms at identity and
    biases at zero, which would leave paths of a comparison untested.
    """
    import locater

    torch.manual_seed(seed)
    model = locater.build_model(model_config).eval()
    if perturb_vectors:
        generator = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for param in model.parameters():
                if param.dim() == 1:
                    param.add_(0.05 * torch.randn(param.shape, generator=generator))
    return model


def _fresh_process_child(function: Callable[[Any], Any], job: Any, results: mp.Queue) -> None:
    try:
        # plain pickle copies tensors by value: the queue's own pickler would share them through file
        # descriptors that need this process alive when the parent reads them
        results.put(("result", pickle.dumps(function(job))))
    except BaseException:  # reported by the parent, with the child's traceback
        results.put(("error", traceback.format_exc()))


class BenchmarkTimeout(RuntimeError):
    """A benchmark process ran past its time limit and was stopped."""


def run_in_fresh_process(
    function: Callable[[Any], Any], job: Any, what: str, timeout_s: float | None = None
) -> Any:
    """``function(job)`` in a spawned process (a clean peak memory); its result, returned here.

    ``function`` must be importable (a module-level function). An error in the child, or a child that dies without
    a result (killed, out of memory), raises RuntimeError naming ``what``; the parent never waits forever. With
    ``timeout_s``, a child still running after that many seconds is killed and :class:`BenchmarkTimeout` raised.
    """
    context = mp.get_context("spawn")
    results = context.Queue()
    process = context.Process(target=_fresh_process_child, args=(function, job, results))
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    process.start()
    try:
        while True:
            try:
                kind, value = results.get(timeout=1.0)
                break
            except queue.Empty:
                if deadline is not None and time.monotonic() > deadline:
                    process.kill()
                    raise BenchmarkTimeout(
                        f"{what}: stopped after its time limit of {timeout_s:.0f} s"
                    ) from None
                if not process.is_alive():
                    try:  # a result put just before the exit
                        kind, value = results.get(timeout=1.0)
                        break
                    except queue.Empty:
                        raise RuntimeError(
                            f"{what}: the benchmark process died with exit code {process.exitcode} and no result"
                        ) from None
    finally:
        process.join(timeout=30)
        if process.is_alive():
            process.kill()
    if kind == "error":
        raise RuntimeError(f"{what} failed in its benchmark process:\n{value}")
    return pickle.loads(value)


def markdown_table(header: list[str], rows: list[list[object]]) -> str:
    """A GitHub markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)
