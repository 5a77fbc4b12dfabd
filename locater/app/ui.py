"""The Gradio page of the browser app; the only module of the package that imports Gradio.

Two tabs over one :class:`~locater.app.session.AppSession`:

- **Video**: pick an example video or upload one (video file or zip of frames), type one sentence per line, run:
  a progress bar while the video streams through the segmenter, then the overlay video, the masks zip and the
  frames processed and frames/s;
- **Webcam**: the browser's camera streams frames to :class:`~locater.app.session.WebcamStream` (the causal live
  mode), which returns each frame with the masks drawn on it.

Every failure becomes a message on the page (the status line); the server keeps serving. The page needs no
network: no share link, no analytics or version check, the theme's fonts ship with Gradio.
"""

from __future__ import annotations

import logging
import os

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # read by Gradio at import: no telemetry requests

import gradio as gr  # noqa: E402
import numpy as np  # noqa: E402

from locater.app.examples import example_labels  # noqa: E402
from locater.app.session import VIDEO_SUFFIXES, AppSession, WebcamStream, parse_sentences  # noqa: E402
from locater.errors import LocaterError, describe_os_error  # noqa: E402

logger = logging.getLogger(__name__)

TITLE = "Locater: language-guided video segmentation"
MARKDOWN_SPECIAL = set("\\`*_{}[]()#+-.!|<>~")
WEBCAM_EVERY = 0.2  # seconds between webcam frames sent to the server
OVERLAY_HEIGHT = 400  # pixels: the overlay, the masks download and the status fit one screen


def escape_markdown(text: str) -> str:
    """``text`` shown literally by a Markdown component (file names hold ``_`` and ``*``)."""
    return "".join("\\" + c if c in MARKDOWN_SPECIAL else c for c in text)


def error_message(error: BaseException) -> str:
    """The page's text for a failure: a named error's own message, else a one-line description (the log
    holds the traceback)."""
    if isinstance(error, LocaterError | ValueError):
        return str(error).strip() or type(error).__name__
    if isinstance(error, OSError):
        return describe_os_error(error)
    logger.error("internal error", exc_info=error)
    first = str(error).strip().splitlines()[0] if str(error).strip() else ""
    return f"internal error: {type(error).__name__}: {first} (the server's log holds the traceback)"


def _error(error: BaseException) -> str:
    return f"**Error:** {escape_markdown(error_message(error))}"


def build_app(session: AppSession) -> gr.Blocks:
    """The page for ``session`` (not launched)."""

    def choose_example(label: str | None):
        if not label:
            return gr.update(), gr.update(), ""
        try:
            example = session.example(label)
        except Exception as error:  # any failure becomes a message on the page
            return gr.update(), gr.update(), _error(error)
        return str(example.path), "\n".join(example.sentences), f"Example {escape_markdown(example.label)}"

    def run(video: str | None, sentences: str, progress=gr.Progress()):  # noqa: B008 - Gradio's injection
        def report(done: int, total: int) -> None:
            progress((done, total), desc="segmenting", unit="frames")

        try:
            result = session.run(video, sentences, progress=report)
        except Exception as error:  # any failure becomes a message; the server goes on
            return _error(error), None, None
        return escape_markdown(result.describe()), str(result.overlay), str(result.masks_zip)

    def webcam_frame(frame: np.ndarray | None, sentences: str, stream: WebcamStream | None):
        if frame is None:
            return None, gr.update(), stream
        try:
            if stream is None or stream.sentences != tuple(parse_sentences(sentences)):
                stream = session.webcam(sentences)
            overlay, _ = stream.push(frame)
        except Exception as error:  # any failure becomes a message on the page
            return None, _error(error), None
        return overlay, escape_markdown(stream.describe()), stream

    with gr.Blocks(title="Locater", analytics_enabled=False, delete_cache=(3600, 3600)) as blocks:
        gr.Markdown(f"# {TITLE}")
        gr.Markdown(escape_markdown(session.describe()), elem_id="model-info")
        with gr.Tab("Video"):
            with gr.Row():
                with gr.Column():
                    example = gr.Dropdown(
                        choices=example_labels(),
                        value=None,
                        label="Example video (synthetic benchmark, generated on first use)",
                        elem_id="example",
                    )
                    video = gr.File(
                        label=f"Or upload a video ({', '.join(VIDEO_SUFFIXES)}) or a .zip of frames",
                        file_types=[*VIDEO_SUFFIXES, ".zip"],
                        type="filepath",
                        elem_id="video",
                    )
                    sentences = gr.Textbox(
                        label="Sentences, one per line (one colour each)",
                        lines=3,
                        placeholder="the man in red running on the left\nthe white dog",
                        elem_id="sentences",
                    )
                    button = gr.Button("Segment", variant="primary", elem_id="run")
                with gr.Column():
                    status = gr.Markdown("", elem_id="status")
                    overlay = gr.Video(
                        label="Overlay", elem_id="overlay", interactive=False, height=OVERLAY_HEIGHT
                    )
                    masks = gr.File(
                        label="Masks (zip: one folder per sentence)", elem_id="masks", interactive=False
                    )
            example.change(choose_example, [example], [video, sentences, status], concurrency_id="examples")
            button.click(run, [video, sentences], [status, overlay, masks], concurrency_id="model")
        with gr.Tab("Webcam"):
            gr.Markdown(
                "The browser's camera streams to the model in the live mode: the global memory is built from the "
                "frames seen so far. Change the sentences to start over."
            )
            cam_sentences = gr.Textbox(label="Sentences, one per line", lines=2, elem_id="webcam-sentences")
            with gr.Row():
                camera = gr.Image(sources=["webcam"], streaming=True, type="numpy", label="Webcam")
                segmented = gr.Image(label="Segmented", show_label=False, type="numpy", interactive=False)
            cam_status = gr.Markdown("", elem_id="webcam-status")
            stream_state = gr.State(None)
            camera.stream(
                webcam_frame,
                [camera, cam_sentences, stream_state],
                [segmented, cam_status, stream_state],
                stream_every=WEBCAM_EVERY,
                concurrency_id="model",
                show_progress="hidden",
            )
    blocks.queue(default_concurrency_limit=1)  # one model: requests wait their turn instead of competing
    return blocks


def launch(
    session: AppSession,
    host: str = "127.0.0.1",
    port: int | None = None,
    *,
    max_upload_mb: float = 500.0,
    block: bool = True,
    quiet: bool = False,
) -> tuple[gr.Blocks, str]:
    """Serve the page on ``host:port`` (``port`` ``None``: the first free one from 7860); returns the Blocks and
    the local URL. ``block=False`` returns at once (the server runs in a thread; ``blocks.close()`` stops it)."""
    blocks = build_app(session)
    allowed = [str(session.work_dir.resolve()), str(session.examples_dir.resolve())]
    _, url, _ = blocks.launch(
        server_name=host,
        server_port=port,
        share=False,
        prevent_thread_lock=not block,
        show_error=False,
        quiet=quiet,
        ssr_mode=False,
        mcp_server=False,
        enable_monitoring=False,
        allowed_paths=allowed,
        max_file_size=int(max_upload_mb * 2**20),
        footer_links=[],
    )
    return blocks, url
