"""Build a :class:`Locater` from the ``model`` section of a config (every size spelled out in one place).

A model with its weights (pretrained inputs, checkpoints) comes from :mod:`locater.model.loading`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from torch import nn

from locater.config import Config
from locater.model.decoder import AuxiliaryHead, MaskDecoder, num_upsamples_for
from locater.model.fusion import FusionStage
from locater.model.locater import Locater
from locater.model.memory import GlobalMemory, LocalMemory
from locater.model.query import QueryGenerator
from locater.model.reader import MemoryReader
from locater.model.text import TextEncoder
from locater.model.vision import VisionEncoder, sincos_position_embedding

logger = logging.getLogger(__name__)


def build_model_from_section(model_cfg: Mapping) -> Locater:
    """Build the model from a validated ``model`` section (see ``locater/defaults.yaml``)."""
    m = Config.wrap(model_cfg)
    dim = m.embed_dim
    if m.image_size % m.patch_size:
        raise ValueError(
            f"model.image_size {m.image_size} is not a multiple of model.patch_size {m.patch_size}"
        )
    if 2 * m.text.hidden_size != dim:
        raise ValueError(
            f"model.text.hidden_size * 2 = {2 * m.text.hidden_size} must equal model.embed_dim {dim}"
        )
    vision = VisionEncoder(
        image_size=m.image_size,
        patch_size=m.patch_size,
        in_chans=m.in_chans,
        embed_dim=dim,
        depth=m.vision.depth,
        num_heads=m.vision.num_heads,
        mlp_ratio=m.vision.mlp_ratio,
        drop_path=m.vision.drop_path,
        stem_channels=m.vision.stem_channels,
        pos_embed_init=m.vision.pos_embed_init,
    )
    num_patches = vision.num_patches
    text = TextEncoder(m.text.vocab_size, m.text.word_dim, m.text.hidden_size, m.text.num_layers)
    fusion = nn.ModuleList(
        FusionStage(
            dim,
            m.fusion.num_heads,
            m.fusion.joint_depth,
            m.fusion.vision_depth,
            m.fusion.mlp_ratio,
            m.fusion.drop_path,
        )
        for _ in range(m.fusion.num_stages)
    )
    if m.fusion.num_stages < 1:
        raise ValueError("model.fusion.num_stages must be >= 1")
    heads = m.memory_heads
    global_capacity = int(m.global_memory.size * num_patches)
    local_capacity = int(m.local_memory.size * num_patches)
    global_memory = (
        GlobalMemory(global_capacity, dim, heads, m.memory_mlp_ratio, rule=m.global_memory.write)
        if global_capacity > 0
        else None
    )
    local_memory = (
        LocalMemory(
            local_capacity,
            dim,
            heads,
            m.memory_mlp_ratio,
            mask_history=m.local_memory.mask_history,
            rule=m.local_memory.write,
            mask_encoding=m.local_memory.mask_encoding,
            patch_size=m.patch_size,
        )
        if local_capacity > 0
        else None
    )
    aux_heads = (
        nn.ModuleList(AuxiliaryHead(dim, m.patch_size) for _ in range(m.fusion.num_stages))
        if m.aux_heads
        else None
    )
    model = Locater(
        vision_encoder=vision,
        text_encoder=text,
        fusion_stages=fusion,
        global_memory=global_memory,
        local_memory=local_memory,
        query_generator=QueryGenerator(dim, heads, m.memory_mlp_ratio),
        memory_reader=MemoryReader(dim, heads, m.reader_residual, locality=m.reader_locality > 0),
        reader_positions=sincos_position_embedding(vision.grid_size, dim) if m.reader_positions else None,
        reader_locality=m.reader_locality,
        mask_decoder=MaskDecoder(
            dim,
            heads,
            num_upsamples_for(m.patch_size),
            m.decoder_width,
            m.decoder_activation,
            m.decoder_image_skip,
            m.decoder_refine,
        ),
        aux_heads=aux_heads,
        num_global_frames=m.global_memory.num_frames,
        checkpoint_fusion=m.fusion.checkpoint,
    )
    model.model_config = m.to_dict()  # the resolved section (export_official checks its switches)
    return model
