"""Produce (or check) reference outputs of the OFFICIAL Locater code for the parity test.

The official code is not part of this repository: point ``--official-root`` at a checkout of leonnnop/Locater
(tested at commit 5da6daa). For every configuration below, the official ``VLFTrans`` gets deterministic weights
(:func:`locater.testing.seeded_official_state_dict`), a deterministic video (:func:`locater.testing.seeded_video`,
pre-processed as the official evaluation) and fixed token ids, and runs the official inference loop
(``_reset_memory``, ``_prep_global_mem``, then ``net(vis, lang)`` per frame). The per-frame logits are saved
to ``<out>/<name>.pt``; ``tests/test_official_parity.py`` runs our model on the same inputs and compares.

    python scripts/official_parity.py --official-root /path/to/Locater --out tests/data/official_parity
    python scripts/official_parity.py --official-root /path/to/Locater --check   # ours vs official, full res
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

import locater
from locater.bench.step import load_official_class
from locater.data.indices import global_frame_numbers
from locater.preprocess import preprocess_frames
from locater.testing import seeded_official_state_dict, seeded_video

SENTENCES = ["the man in red is running on the left", "a small dog jumping over the fence on the right"]

# name -> (VLFTrans arguments, N1, number of frames, number of expressions, stride of the stored logits)
CONFIGS = {
    "default_320": (dict(img_dim=320, K=3, vision_depth=6, fuse_depth=2, post_depth=2, global_mem_size=1.5, local_mem_size=2), 3, 6, 1, 4),
    "small_64_k2": (dict(img_dim=64, K=2, vision_depth=2, fuse_depth=1, post_depth=1, global_mem_size=1.5, local_mem_size=2), 3, 8, 1, 1),
    "pad_96_k1": (dict(img_dim=96, K=1, vision_depth=1, fuse_depth=2, post_depth=1, global_mem_size=0.5, local_mem_size=1.5), 2, 7, 1, 1),
    "whole_48_batch2": (dict(img_dim=48, K=1, vision_depth=1, fuse_depth=1, post_depth=1, global_mem_size=3, local_mem_size=2.5), 4, 6, 2, 1),
}  # fmt: skip


def official_outputs(
    vlftrans, arguments: dict, state: dict, frames: torch.Tensor, ids: torch.Tensor, n1: int
):
    """Run the official loop; returns ``T x B x H x W`` logits (expressions run one after the other)."""
    net = vlftrans(**arguments).eval()
    missing = set(net.state_dict()) ^ set(state)
    if missing:
        raise RuntimeError(f"official model keys differ from the generated ones: {sorted(missing)[:5]}")
    net.load_state_dict(state)
    glob = frames[[n - 1 for n in global_frame_numbers(len(frames), n1)]][None]
    per_expression = []
    with torch.no_grad():
        for row in range(ids.shape[0]):
            lang = {"input_ids": ids[row : row + 1]}
            net._reset_memory()
            net._prep_global_mem(glob, lang)
            per_expression.append(
                torch.stack([net(vis=f[None, None], lang=lang)[0][-1][0, 0] for f in frames])
            )
    return torch.stack(per_expression, dim=1)


def our_outputs(
    state: dict, frames: torch.Tensor, ids: torch.Tensor, n1: int, arguments: dict
) -> torch.Tensor:
    """Our model on the same inputs; ``T x B x H x W`` logits."""
    model = locater.from_official(
        state, global_mem_size=arguments["global_mem_size"], local_mem_size=arguments["local_mem_size"], N1=n1
    )
    glob = frames[[n - 1 for n in global_frame_numbers(len(frames), n1)]][None]
    outputs = []
    with torch.inference_mode():
        memory = model.start(glob, ids)
        for frame in frames:
            logits, memory = model.step(frame[None], memory)
            outputs.append(logits[:, 0])
    return torch.stack(outputs)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--official-root", type=Path, required=True, help="checkout of leonnnop/Locater")
    parser.add_argument(
        "--out", type=Path, default=Path("tests/data/official_parity"), help="reference folder"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--configs", nargs="*", default=list(CONFIGS), help="subset of configurations")
    parser.add_argument(
        "--check", action="store_true", help="compare ours against the official code, no writing"
    )
    args = parser.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    vlftrans = load_official_class(args.official_root)
    for name in args.configs:
        arguments, n1, num_frames, num_expressions, stride = CONFIGS[name]
        shapes = {k: tuple(v.shape) for k, v in vlftrans(**arguments).state_dict().items()}
        state = seeded_official_state_dict(shapes, args.seed)
        video = seeded_video(num_frames, arguments["img_dim"], args.seed)
        frames = preprocess_frames(video, arguments["img_dim"])
        ids = locater.tokenize(SENTENCES[:num_expressions])
        tic = time.perf_counter()
        reference = official_outputs(vlftrans, arguments, state, frames, ids, n1)
        elapsed = time.perf_counter() - tic
        positive = (reference > 0).float().mean(dim=(-1, -2))
        print(
            f"{name}: {tuple(reference.shape)} official {elapsed:.1f}s; positive fraction per frame {positive.flatten().tolist()}"
        )
        if args.check:
            ours = our_outputs(state, frames, ids, n1, arguments)
            print(f"  max abs difference ours vs official: {(ours - reference).abs().max().item():.3e}")
            continue
        args.out.mkdir(parents=True, exist_ok=True)
        torch.save(
            {
                "official_commit": "5da6daa",
                "arguments": arguments,
                "N1": n1,
                "num_frames": num_frames,
                "seed": args.seed,
                "input_ids": ids,
                "shapes": shapes,
                "stride": stride,
                "logits": reference[..., ::stride, ::stride].contiguous(),
                "positive_pixels": (reference > 0).sum(dim=(-1, -2)),
            },
            args.out / f"{name}.pt",
        )


if __name__ == "__main__":
    main()
