"""The browser app: segment a video for sentences typed on a web page (Gradio; the ``app`` extra).

  python tools/app.py                                   # the quickstart's checkpoint, http://127.0.0.1:7860
  python tools/app.py --checkpoint locater_a2d.pth --device cuda --port 8080

Pick an example video (the synthetic benchmark's, generated on first use) or upload one (mp4, avi, webm, mkv, mov,
or a zip of frames), type one sentence per line, run: the page shows a progress bar, then the overlay video, a
zip of the masks (one folder per sentence) and the frames/s. A Webcam tab segments the browser's camera live.
Without --checkpoint the app uses runs/quickstart/full/tracking/checkpoints/last.pt when it exists; otherwise the
page says which command makes it. Serves on 127.0.0.1 unless --host says otherwise; nothing is fetched from the
network. docs/app.md.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import socket
import sys
import tempfile
from pathlib import Path

from locater.app.session import DEFAULT_MAX_FRAMES, QUICKSTART_CHECKPOINT, AppSession
from locater.cli.entry import DEBUG_HELP, add_trust_checkpoint_flag, command
from locater.errors import LocaterError, describe_os_error

DEFAULT_PORT = 7860


class MissingExtraError(LocaterError):
    """The app's optional dependencies are not installed."""


class AppPortError(LocaterError):
    """The address to serve on cannot be used."""


def default_examples_dir() -> Path:
    """``$XDG_CACHE_HOME/locater/app-examples`` (``~/.cache/locater/app-examples``)."""
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache) / "locater" / "app-examples"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__,
        formatter_class=lambda prog: argparse.RawDescriptionHelpFormatter(prog, max_help_position=32),
        allow_abbrev=False,
    )
    parser.add_argument(
        "--checkpoint",
        type=Path,
        default=None,
        help=f"official checkpoint or ours (default: {QUICKSTART_CHECKPOINT} when it exists)",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to serve on (default: 127.0.0.1)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port (default: {DEFAULT_PORT})")
    parser.add_argument(
        "--max-frames",
        type=int,
        default=DEFAULT_MAX_FRAMES,
        help=f"refuse videos of more frames (default: {DEFAULT_MAX_FRAMES})",
    )
    parser.add_argument(
        "--max-upload-mb", type=float, default=500.0, help="largest upload in MiB (default: 500)"
    )
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default: auto)")
    parser.add_argument(
        "--amp",
        nargs="?",
        const="on",
        default="auto",
        choices=("off", "on", "auto"),
        help="bfloat16 autocast, as tools/demo.py (default: auto: on where the device computes bf16 natively)",
    )
    parser.add_argument(
        "--threshold", type=float, default=0.5, help="mask probability threshold (default: 0.5)"
    )
    parser.add_argument("--alpha", type=float, default=0.5, help="opacity of the mask colours (default: 0.5)")
    parser.add_argument(
        "--examples-dir",
        type=Path,
        default=None,
        help="where the example videos are generated on first use (default: ~/.cache/locater/app-examples)",
    )
    parser.add_argument(
        "--work-dir",
        type=Path,
        default=None,
        help="where runs write their overlay and masks (default: a temporary folder removed at exit)",
    )
    parser.add_argument(
        "--keep-results", type=int, default=8, help="finished runs kept in --work-dir (default: 8)"
    )
    add_trust_checkpoint_flag(parser)
    parser.add_argument("--debug", action="store_true", help=DEBUG_HELP)
    parser.add_argument(
        "overrides", nargs="*", help="config overrides key=value (e.g. model.global_memory.num_frames=5)"
    )
    args = parser.parse_intermixed_args(argv)
    if args.max_frames < 1:
        parser.error("--max-frames must be positive")
    if not args.max_upload_mb > 0:
        parser.error("--max-upload-mb must be positive")
    if not 1 <= args.port <= 65535:
        parser.error(f"--port must lie in 1..65535, got {args.port}")
    if not 0.0 <= args.alpha <= 1.0:
        parser.error("--alpha must lie in [0, 1]")
    if not 0.0 < args.threshold < 1.0:
        parser.error(f"--threshold must lie in (0, 1) (a mask probability), got {args.threshold:g}")
    if args.keep_results < 1:
        parser.error("--keep-results must be positive")
    return args


def check_port(host: str, port: int) -> None:
    """Refuse a port another server holds (before the model loads) with the flag to change."""
    try:
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
            probe.bind((host, port))
    except OSError as error:
        raise AppPortError(
            f"--port {port} on --host {host}: {describe_os_error(error)}; another server holds it? choose another "
            "port with --port"
        ) from error


def import_ui():
    """:mod:`locater.app.ui`, or :class:`MissingExtraError` saying how to install Gradio."""
    try:
        from locater.app import ui
    except ModuleNotFoundError as error:
        if error.name != "gradio":
            raise
        raise MissingExtraError(
            "the app needs Gradio, in the app extra: pip install -e '.[app]' (from the repository root)"
        ) from error
    return ui


def make_session(args: argparse.Namespace, work_dir: Path) -> AppSession:
    """The :class:`AppSession` the flags describe (loads the checkpoint)."""
    return AppSession.from_checkpoint(
        args.checkpoint,
        work_dir,
        args.examples_dir or default_examples_dir(),
        device=args.device,
        amp=args.amp,
        threshold=args.threshold,
        overrides=args.overrides,
        trust_checkpoint=args.trust_checkpoint,
        max_frames=args.max_frames,
        alpha=args.alpha,
        keep_results=args.keep_results,
    )


@command
def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # Gradio's own start-up checks of the local server
    ui = import_ui()  # before the model loads: a missing extra or a busy port fails at once
    check_port(args.host, args.port)
    temporary = args.work_dir is None
    work_dir = Path(tempfile.mkdtemp(prefix="locater_app_")) if temporary else args.work_dir
    try:
        session = make_session(args, work_dir)
        print(session.describe(), flush=True)
        ui.launch(session, args.host, args.port, max_upload_mb=args.max_upload_mb)
    finally:
        if temporary:
            shutil.rmtree(work_dir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
