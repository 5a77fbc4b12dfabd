"""Export the weights of a checkpoint (ours or official) to another format.

  python tools/export.py --checkpoint runs/a2d/checkpoints/best.pt --out locater_a2d.safetensors
  python tools/export.py --checkpoint CKPT --out locater_official.pth --format official
  python tools/export.py --checkpoint CKPT --out weights.pth --format state-dict [model.key=value ...]

Formats:

  safetensors  (default) our weight names and metadata {"format": "locater", "model_config": <the model section
               as JSON>}: tools/evaluate.py, tools/demo.py and load_model rebuild the model from the file alone,
               and reading it runs no code (tensors and strings only). --out must end in .safetensors.
  official     the official Locater naming (a plain state dict the official VLFTrans loads); refused for a model
               that uses a setting the official code does not have.
  state-dict   a plain state dict in our naming (stores no config: loading it may need the model.* overrides).

Model overrides (model.key=value) apply to checkpoints that store no config (plain or official state dicts).
The output is written whole or not at all. Exit codes: docs/exit-codes.md (2 bad input, 4 disk full or permission).
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from locater.checkpoint import CheckpointError, export_official, export_safetensors
from locater.cli.entry import DEBUG_HELP, add_trust_checkpoint_flag, command
from locater.files import save_torch_atomic
from locater.model.loading import load_model

FORMATS = ("safetensors", "official", "state-dict")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="tools/export.py",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        allow_abbrev=False,
    )
    parser.add_argument(
        "--checkpoint", type=Path, required=True, help="ours (training or exported) or official"
    )
    parser.add_argument("--out", type=Path, required=True, help="the file to write")
    parser.add_argument("--format", choices=FORMATS, default="safetensors", help="(default: safetensors)")
    add_trust_checkpoint_flag(parser)
    parser.add_argument("--debug", action="store_true", help=DEBUG_HELP)
    parser.add_argument(
        "overrides",
        nargs="*",
        metavar="model.key=value",
        help="model config entries (e.g. model.embed_dim=64)",
    )
    return parser.parse_intermixed_args(argv)


def export(
    checkpoint: str | Path,
    out: str | Path,
    fmt: str = "safetensors",
    overrides: list[str] | tuple[str, ...] = (),
    *,
    trust_checkpoint: bool = False,
) -> Path:
    """Load ``checkpoint`` (as :func:`locater.model.loading.load_model` does) and write its weights to ``out`` in
    ``fmt`` (one of :data:`FORMATS`); returns ``out``.

    Raises:
        CheckpointError: an unknown format, an output name the readers would take for another format, ``out``
            being the checkpoint itself, or a checkpoint that cannot be read or exported; the message names it.
    """
    checkpoint, out = Path(checkpoint), Path(out)
    if fmt not in FORMATS:
        raise CheckpointError(f"unknown export format {fmt!r}: expected one of {', '.join(FORMATS)}")
    if (out.suffix == ".safetensors") != (fmt == "safetensors"):  # the readers pick the format by the suffix
        wanted = "end in .safetensors" if fmt == "safetensors" else "not end in .safetensors"
        raise CheckpointError(f"{out}: a {fmt} export must {wanted} (files are read by their suffix)")
    if out.exists() and checkpoint.exists() and out.resolve() == checkpoint.resolve():
        raise CheckpointError(f"{out}: is the checkpoint being exported; choose another --out")
    model = load_model(checkpoint, "cpu", list(overrides), trust_checkpoint=trust_checkpoint)
    if fmt == "safetensors":
        return export_safetensors(model, out)
    if fmt == "official":
        return export_official(model, out)
    return save_torch_atomic({key: value.detach().cpu() for key, value in model.state_dict().items()}, out)


@command
def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    path = export(
        args.checkpoint, args.out, args.format, args.overrides, trust_checkpoint=args.trust_checkpoint
    )
    print(f"wrote {path} ({args.format})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
