"""Shared pytest settings: deterministic, small thread counts (CI has 2 cores); shared fixtures."""

import os
import shutil
import subprocess

import pytest
import torch


@pytest.fixture(autouse=True)
def _fixed_threads():
    previous = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(previous)


@pytest.fixture
def tiny_model():
    """A tiny random Locater (configs/model/tiny.yaml) in eval mode."""
    import locater

    torch.manual_seed(0)
    return locater.build_model("configs/model/tiny.yaml").eval()


@pytest.fixture
def tiny_disk(tmp_path):
    """A 1 MiB tmpfs (root and a mount-capable container only; skipped elsewhere)."""
    if getattr(os, "geteuid", lambda: -1)() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a tmpfs needs root")
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(disk)], capture_output=True, text=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        yield disk
    finally:
        unmounted = subprocess.run(["umount", str(disk)], capture_output=True, text=True)
        if unmounted.returncode != 0:  # a file still open there: detach it anyway, and say so
            subprocess.run(["umount", "-l", str(disk)], check=False)
            pytest.fail(f"the tmpfs was busy (a file left open?): {unmounted.stderr.strip()}")
