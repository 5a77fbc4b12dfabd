"""Produce (or check) reference outputs of the OFFICIAL Locater code for the parity test, and time it.

The official code is not part of this repository: point ``--official-root`` at a checkout of leonnnop/Locater
(tested at commit 5da6daa). For every configuration below, the official ``VLFTrans`` gets deterministic weights
(:func:`locater.testing.seeded_official_state_dict`), a deterministic video (:func:`locater.testing.seeded_video`,
pre-processed as the official evaluation) and fixed token ids, and runs the official inference loop
(``_reset_memory``, ``_prep_global_mem``, then ``net(vis, lang)`` per frame). The per-frame logits are saved
to ``<out>/<name>.pt``; ``tests/test_official_parity.py`` runs our model on the same inputs and compares.

    python tests/dev/official_parity.py --official-root /path/to/Locater --out tests/data/official_parity
    python tests/dev/official_parity.py --official-root /path/to/Locater --check    # ours vs official, full res
    python tests/dev/official_parity.py --official-root /path/to/Locater --timing   # official speed (320 px)
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import NamedTuple

import torch
import torch.nn.functional as F

import locater
from locater.bench.step import load_official_class
from locater.data.indices import global_frame_numbers
from locater.preprocess import preprocess_frames
from locater.testing import seeded_official_state_dict, seeded_video

OFFICIAL_COMMIT = "5da6daa"
SENTENCES = ["the man in red is running on the left", "a small dog jumping over the fence on the right"]


class ParityConfig(NamedTuple):
    arguments: dict  # VLFTrans keyword arguments
    num_global_frames: int  # number of global frames
    num_frames: int
    num_expressions: int
    stride: int  # spatial stride of the stored logits
    seed: int  # weights and video; chosen so that the predicted masks are neither empty nor full


CONFIGS = {
    "default_320": ParityConfig(dict(img_dim=320, K=3, vision_depth=6, fuse_depth=2, post_depth=2, global_mem_size=1.5, local_mem_size=2), 3, 6, 1, 4, 0),
    "small_64_k2": ParityConfig(dict(img_dim=64, K=2, vision_depth=2, fuse_depth=1, post_depth=1, global_mem_size=1.5, local_mem_size=2), 3, 8, 1, 1, 0),
    "pad_96_k1": ParityConfig(dict(img_dim=96, K=1, vision_depth=1, fuse_depth=2, post_depth=1, global_mem_size=0.5, local_mem_size=1.5), 2, 7, 1, 1, 0),
    "whole_48_batch2": ParityConfig(dict(img_dim=48, K=1, vision_depth=1, fuse_depth=1, post_depth=1, global_mem_size=3, local_mem_size=2.5), 4, 6, 2, 1, 0),
}  # fmt: skip


def global_frames(frames: torch.Tensor, num_global_frames: int) -> torch.Tensor:
    """``T x 3 x H x W`` -> ``1 x N1 x 3 x H x W`` at the official rule."""
    return frames[[n - 1 for n in global_frame_numbers(len(frames), num_global_frames)]][None]


def official_outputs(
    vlftrans, arguments: dict, state: dict, frames: torch.Tensor, ids: torch.Tensor, num_global_frames: int
) -> torch.Tensor:
    """Run the official loop; returns ``T x B x H x W`` logits (expressions run one after the other)."""
    net = vlftrans(**arguments).eval()
    mismatched = set(net.state_dict()) ^ set(state)
    if mismatched:
        raise RuntimeError(f"official model keys differ from the generated ones: {sorted(mismatched)[:5]}")
    net.load_state_dict(state)
    per_expression = []
    with torch.no_grad():
        for row in range(ids.shape[0]):
            lang = {"input_ids": ids[row : row + 1]}
            net._reset_memory()
            net._prep_global_mem(global_frames(frames, num_global_frames), lang)
            per_expression.append(
                torch.stack([net(vis=f[None, None], lang=lang)[0][-1][0, 0] for f in frames])
            )
    return torch.stack(per_expression, dim=1)


def our_outputs(state: dict, frames: torch.Tensor, ids: torch.Tensor, config: ParityConfig) -> torch.Tensor:
    """Our model on the same inputs; ``T x B x H x W`` logits."""
    model = locater.from_official(
        state,
        global_mem_size=config.arguments["global_mem_size"],
        local_mem_size=config.arguments["local_mem_size"],
        N1=config.num_global_frames,
    )
    outputs = []
    with torch.inference_mode():
        memory = model.start(global_frames(frames, config.num_global_frames), ids)
        for frame in frames:
            logits, memory = model.step(frame[None], memory)
            outputs.append(logits[:, 0])
    return torch.stack(outputs)


def make_reference(vlftrans, name: str, config: ParityConfig, out: Path | None) -> None:
    """Run one configuration with the official code; save it to ``out`` or, without ``out``, compare ours."""
    arguments = config.arguments
    shapes = {k: tuple(v.shape) for k, v in vlftrans(**arguments).state_dict().items()}
    state = seeded_official_state_dict(shapes, config.seed)
    frames = preprocess_frames(
        seeded_video(config.num_frames, arguments["img_dim"], config.seed), arguments["img_dim"]
    )
    ids = locater.tokenize(SENTENCES[: config.num_expressions])
    tic = time.perf_counter()
    reference = official_outputs(vlftrans, arguments, state, frames, ids, config.num_global_frames)
    positive = (reference > 0).float().mean(dim=(-1, -2)).T
    print(f"{name}: logits {tuple(reference.shape)}, official run {time.perf_counter() - tic:.1f} s")
    for row, fractions in enumerate(positive.tolist()):
        print(f"  expression {row}: positive fraction per frame {[round(f, 3) for f in fractions]}")
    if out is None:
        ours = our_outputs(state, frames, ids, config)
        print(f"  max abs difference ours vs official: {(ours - reference).abs().max().item():.3e}")
        return
    out.mkdir(parents=True, exist_ok=True)
    stride = config.stride
    torch.save(
        {
            "official_commit": OFFICIAL_COMMIT,
            "arguments": arguments,
            "N1": config.num_global_frames,
            "num_frames": config.num_frames,
            "seed": config.seed,
            "sentences": SENTENCES[: config.num_expressions],
            "input_ids": ids,
            "shapes": shapes,
            "stride": stride,
            "logits": reference[..., ::stride, ::stride].contiguous(),
            "positive_pixels": (reference > 0).sum(dim=(-1, -2)),
        },
        out / f"{name}.pt",
    )


class _Stopwatch:
    """Accumulates wall time of module forwards (via hooks) or of wrapped functions, per frame."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self._started = 0.0

    def start(self, *_) -> None:
        self._started = time.perf_counter()

    def stop(self, *_) -> None:
        self.seconds += time.perf_counter() - self._started

    def wrap(self, function):
        def timed(*args, **kwargs):
            self.start()
            result = function(*args, **kwargs)
            self.stop()
            return result

        return timed

    def take(self) -> float:
        seconds, self.seconds = self.seconds, 0.0
        return seconds


def time_official(vlftrans, warmup: int, measured: int, seed: int) -> None:
    """Median per-frame latency of the official loop at the default 320 px configuration, float32.

    One and two expressions (the official loop runs each expression as its own pass over the video, so a
    frame costs the sum of its passes). Within the loop, hooks time the local-memory writer, its ``mask_enc``
    convolution and every ``update_function`` call; the bilinear resize of ``mask_enc``'s output is timed
    alone on a tensor of the same shape.
    """
    config = CONFIGS["default_320"]
    memencode = sys.modules.get("network.MemEncode")
    if memencode is None:
        raise RuntimeError("the official network.MemEncode module was not imported with VLFTrans")
    net = vlftrans(**config.arguments).eval()
    net.load_state_dict(seeded_official_state_dict({k: v.shape for k, v in net.state_dict().items()}, seed))
    size = config.arguments["img_dim"]
    frames = preprocess_frames(seeded_video(warmup + measured, size, seed), size)
    ids = locater.tokenize(SENTENCES)

    writer, conv, update = _Stopwatch(), _Stopwatch(), _Stopwatch()
    net.localmem_writer.register_forward_pre_hook(writer.start)
    net.localmem_writer.register_forward_hook(writer.stop)
    net.localmem_writer.mask_enc.register_forward_pre_hook(conv.start)
    net.localmem_writer.mask_enc.register_forward_hook(conv.stop)
    original_update = memencode.update_function
    memencode.update_function = update.wrap(original_update)
    per_pass = []  # per expression: (start seconds, [(frame, writer, conv, update) seconds per frame])
    try:
        with torch.no_grad():
            for row in range(len(SENTENCES)):
                lang = {"input_ids": ids[row : row + 1]}
                tic = time.perf_counter()
                net._reset_memory()
                net._prep_global_mem(global_frames(frames, config.num_global_frames), lang)
                start_seconds = time.perf_counter() - tic
                update.take()  # the global memory's updates are not per frame
                rows = []
                for frame in frames:
                    tic = time.perf_counter()
                    net(vis=frame[None, None], lang=lang)
                    rows.append((time.perf_counter() - tic, writer.take(), conv.take(), update.take()))
                per_pass.append((start_seconds, rows))
            features = torch.randn(1, net.embedding_dim, size, size)
            side = size // 16
            resize_seconds = []
            for _ in range(warmup + measured):
                tic = time.perf_counter()
                F.interpolate(features, side, mode="bilinear", align_corners=False)
                resize_seconds.append(time.perf_counter() - tic)
    finally:
        memencode.update_function = original_update

    def median_ms(values) -> float:
        return 1000 * statistics.median(values[warmup:])

    one = [r[0] for r in per_pass[0][1]]
    two = [a[0] + b[0] for a, b in zip(per_pass[0][1], per_pass[1][1])]
    steady = per_pass[0][1][2:]  # from the third frame on, the local memory is full and gets updated
    print(
        f"official VLFTrans {size} px float32, {torch.get_num_threads()} threads, torch {torch.__version__}"
    )
    print(f"warm-up {warmup} frames, median over {measured} frames")
    print(f"per-frame latency, 1 expression:  {median_ms(one):8.1f} ms")
    print(f"per-frame latency, 2 expressions: {median_ms(two):8.1f} ms (two passes)")
    print(f"_prep_global_mem (once per expression): {1000 * per_pass[0][0]:8.1f} ms")
    print(
        f"  local-memory writer per frame (frames 3+):  {1000 * statistics.median(r[1] for r in steady):8.1f} ms"
    )
    print(
        f"    mask_enc conv 1->768 at {size}x{size}:       {1000 * statistics.median(r[2] for r in steady):8.1f} ms"
    )
    print(
        f"    bilinear resize 768x{size}x{size} -> {side}x{side}: {median_ms(resize_seconds):8.1f} ms (timed alone)"
    )
    print(
        f"    update_function:                          {1000 * statistics.median(r[3] for r in steady):8.1f} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__,
        formatter_class=type(
            "Formatter", (argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter), {}
        ),
    )
    parser.add_argument("--official-root", type=Path, required=True, help="checkout of leonnnop/Locater")
    parser.add_argument(
        "--out", type=Path, default=Path("tests/data/official_parity"), help="reference folder"
    )
    parser.add_argument(
        "--configs", nargs="*", default=list(CONFIGS), choices=list(CONFIGS), help="configurations"
    )
    parser.add_argument(
        "--check", action="store_true", help="compare ours against the official code, no writing"
    )
    parser.add_argument("--timing", action="store_true", help="time the official loop at 320 px instead")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--warmup", type=int, default=2, help="timing: frames run before measuring")
    parser.add_argument("--frames", type=int, default=8, help="timing: measured frames")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    vlftrans = load_official_class(args.official_root)
    if args.timing:
        time_official(vlftrans, args.warmup, args.frames, CONFIGS["default_320"].seed)
        return
    for name in args.configs:
        make_reference(vlftrans, name, CONFIGS[name], None if args.check else args.out)


if __name__ == "__main__":
    main()
