"""ImageNet ViT initialisation of the vision encoder (and optionally the fusion stages) from a LOCAL file.

Supported files: Google Research's jax ``.npz`` checkpoints (e.g. ``ViT-B_16.npz``, ImageNet-21k, from the
vision_transformer release) and timm checkpoints (``.pth``/``.bin`` state dicts or ``.safetensors``). The position
embedding is resized to the model's grid. Nothing is downloaded. Torch files are read with ``weights_only=True``
(tensors and plain values: a crafted file cannot run code) unless the caller trusts the file.
"""

from __future__ import annotations

import logging
import pickle
import re
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from timm.models.vision_transformer import VisionTransformer, _load_weights, checkpoint_filter_fn

from locater.files import load_torch

if TYPE_CHECKING:  # annotations only: locater.model.loading imports this module
    from locater.model.locater import Locater

logger = logging.getLogger(__name__)

WHERE_TO_GET = (
    "download the ViT-B/16 ImageNet-21k checkpoint 'ViT-B_16.npz' of Google Research's vision_transformer release, "
    "or a timm ViT-B/16 checkpoint (.pth / .safetensors), and name its local path in pretrained.vit"
)


def _file_depth(path: Path, trust: bool = False) -> int:
    if path.suffix == ".npz":
        keys = np.load(path).files
        found = {int(m.group(1)) for k in keys if (m := re.search(r"Transformer/encoderblock_(\d+)/", k))}
    else:
        keys = _read_torch_state(path, trust).keys()
        found = {int(m.group(1)) for k in keys if (m := re.match(r"(?:module\.)?blocks\.(\d+)\.", k))}
    if not found:
        raise ValueError(f"{path}: no ViT blocks found (is this an ImageNet ViT checkpoint?)")
    return max(found) + 1


def _read_torch_state(path: Path, trust: bool = False) -> dict[str, torch.Tensor]:
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    if trust:
        logger.warning("%s: trusted file, unpickling every object it holds (this can run code)", path)
    try:
        state = load_torch(path, map_location="cpu", weights_only=not trust)
    except pickle.UnpicklingError as error:
        if not trust and "Weights only load failed" in str(error):
            raise ValueError(
                f"{path}: holds Python objects beyond tensors and plain values, which could run code when "
                "loaded; if you trust this file, pass --trust-checkpoint (Python: trust_checkpoint=True)"
            ) from error
        raise
    for key in ("model", "state_dict"):
        if isinstance(state, dict) and key in state and isinstance(state[key], dict):
            state = state[key]
    return state


def load_imagenet_vit(
    model: Locater, path: str | Path, into_fusion: bool = False, *, trust_checkpoint: bool = False
) -> Locater:
    """Initialise ``model.vision_encoder`` from ImageNet ViT weights.

    Args:
        model: the Locater model (its vision encoder keeps the first ``depth`` blocks of the file).
        path: local ``.npz`` (jax) or ``.pth``/``.bin``/``.safetensors`` (timm) file.
        into_fusion: also copy ViT blocks ``depth ..`` into the fusion stages' joint blocks (stage ``k``, block ``j``
            <- ViT block ``depth + k * joint_depth + j``); blocks beyond the file's depth keep their random init.
        trust_checkpoint: unpickle every object a torch file holds (``weights_only=False``; it can run code):
            only for a trusted file that the safe reader refuses.

    Returns:
        ``model``, modified in place.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"pretrained ViT file not found: {path} ({WHERE_TO_GET})")
    if model.vision_encoder.stem is not None:
        raise ValueError(
            "model.vision.stem_channels > 0: the patch embedding reads the stem, not RGB, so an ImageNet ViT "
            "cannot initialise it; set model.vision.stem_channels=0 or pretrained.vit=null"
        )
    vit = model.vision_encoder.vit
    depth = len(vit.blocks)
    file_depth = _file_depth(path, trust_checkpoint)
    if file_depth < depth:
        raise ValueError(f"{path}: holds {file_depth} ViT blocks, the vision encoder needs {depth}")
    dim = vit.embed_dim
    source = VisionTransformer(
        img_size=model.image_size,
        patch_size=vit.patch_embed.patch_size,
        in_chans=vit.patch_embed.proj.in_channels,
        num_classes=0,
        global_pool="",
        embed_dim=dim,
        depth=file_depth,
        num_heads=vit.blocks[0].attn.num_heads,
        mlp_ratio=vit.blocks[0].mlp.fc1.out_features / dim,
        qkv_bias=True,
    )
    pre_logits = None
    if path.suffix == ".npz":
        _load_weights(source, str(path))  # resizes the position embedding to the grid
        arrays = np.load(path)
        prefix = "opt/target/" if "opt/target/embedding/kernel" in arrays.files else ""
        if f"{prefix}pre_logits/kernel" in arrays.files:
            pre_logits = (
                torch.from_numpy(arrays[f"{prefix}pre_logits/kernel"]).T.contiguous(),
                torch.from_numpy(arrays[f"{prefix}pre_logits/bias"]),
            )
    else:
        state = {k.removeprefix("module."): v for k, v in _read_torch_state(path, trust_checkpoint).items()}
        state = checkpoint_filter_fn(state, source)
        wanted = source.state_dict()
        kept = {k: v for k, v in state.items() if k in wanted}
        missing = sorted(set(wanted) - set(kept))
        if missing:
            raise ValueError(f"{path}: missing ViT weights {missing[:10]}")
        misshaped = [k for k in kept if kept[k].shape != wanted[k].shape]
        if misshaped:
            raise ValueError(
                f"{path}: mis-shaped ViT weights {misshaped[:10]} (another width or patch size?)"
            )
        source.load_state_dict(kept)
    with torch.no_grad():
        vit.patch_embed.load_state_dict(source.patch_embed.state_dict())
        vit.cls_token.copy_(source.cls_token)
        vit.pos_embed.copy_(source.pos_embed)
        vit.norm.load_state_dict(source.norm.state_dict())
        for index in range(depth):
            vit.blocks[index].load_state_dict(source.blocks[index].state_dict())
        if pre_logits is not None:
            model.vision_encoder.pre_logits.weight.copy_(pre_logits[0])
            model.vision_encoder.pre_logits.bias.copy_(pre_logits[1])
        copied = 0
        if into_fusion:
            for k, stage in enumerate(model.fusion):
                for j, block in enumerate(stage.joint_blocks):
                    index = depth + k * len(stage.joint_blocks) + j
                    if index >= file_depth:
                        logger.warning(
                            "fusion stage %d joint block %d: the file has no ViT block %d", k, j, index
                        )
                        continue
                    block.load_state_dict(source.blocks[index].state_dict())
                    copied += 1
    logger.info(
        "initialised the vision encoder from %s (%d blocks%s%s)",
        path,
        depth,
        ", pre_logits" if pre_logits is not None else "",
        f", {copied} fusion blocks" if into_fusion else "",
    )
    return model
