"""A tiny training config for the training tests: the tiny model on fresh synthetic clips, a few steps."""

from pathlib import Path

import locater

TINY_TRAIN = [
    "train.data.source=synthetic",
    "train.max_steps=4",
    "train.data.samples_per_epoch=40",
    "train.data.synthetic_size=64",
    "train.data.synthetic_frames=[6, 8]",
    "train.data.num_workers=0",
    "train.clip_length=2",
    "train.batch_size=2",
    "train.optimizer.lr=1.0e-3",
    "train.schedule.warmup_steps=2",
    "train.log_every=5",
    "train.tensorboard=false",
    "train.checkpoint_every=1000",
    "validation.splits=[]",
    "validation.overlays=0",
]


def tiny_train_config(output_dir: Path, *overrides: str) -> locater.Config:
    """``configs/model/tiny.yaml`` + :data:`TINY_TRAIN` + ``overrides``, writing into ``output_dir``."""
    return locater.load_config(
        "configs/model/tiny.yaml", [*TINY_TRAIN, f"output_dir={output_dir}", *overrides]
    )
