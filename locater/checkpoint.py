"""Checkpoint files: reading them (:func:`read_checkpoint`, the one reader), the official Locater naming <-> ours,
weights into a built model with clear errors, export to the official format and to safetensors.

Reading never runs code a file holds: ``.pt``/``.pth`` files are unpickled with ``weights_only=True`` (tensors,
plain Python values and containers only), unless the caller trusts the file (``trust=True``, the commands'
``--trust-checkpoint``). ``.safetensors`` files hold tensors and string metadata only.

:data:`OFFICIAL_TO_OURS` is the only place that knows both namings. Building a model for a checkpoint (its
architecture from a config, the stored config or the tensors) is :mod:`locater.model.loading`'s job.
"""

from __future__ import annotations

import json
import logging
import pickle
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from locater.errors import LocaterError
from locater.files import atomic_output, load_torch, save_torch_atomic

logger = logging.getLogger(__name__)

# (official template, our template). Placeholders: {i} an integer kept as is, {rest} any suffix,
# {conv} the official mask-head Sequential index (2 * i, Upsample layers sit between the convolutions).
OFFICIAL_TO_OURS: list[tuple[str, str]] = [
    ("vision_encoder.pre_logits.fc.{rest}", "vision_encoder.pre_logits.{rest}"),
    ("vision_encoder.{rest}", "vision_encoder.vit.{rest}"),
    ("lang_encoder.emb.{rest}", "text_encoder.embedding.{rest}"),
    ("lang_encoder.lang_model.{rest}", "text_encoder.lstm.{rest}"),
    ("lang_encoder.norm.{rest}", "text_encoder.norm.{rest}"),
    ("trans_fusion.{i}.modal_embed", "fusion.{i}.modality_embed"),
    ("trans_fusion.{i}.blocks.{rest}", "fusion.{i}.joint_blocks.{rest}"),
    ("trans_fusion.{i}.pos_blocks.{rest}", "fusion.{i}.vision_blocks.{rest}"),
    ("trans_fusion.{i}.norm.{rest}", "fusion.{i}.norm.{rest}"),
    ("globalmem_writer.c_func.0.{rest}", "global_memory.candidate_mlp.{rest}"),
    ("globalmem_writer.o_func.0.q.{rest}", "global_memory.address_query.{rest}"),
    ("globalmem_writer.o_func.0.k.{rest}", "global_memory.address_key.{rest}"),
    ("globalmem_writer.m_func.{rest}", "global_memory.retain_mlp.{rest}"),
    ("globalmem_writer.post_func.{rest}", "global_memory.add_mlp.{rest}"),
    ("globalmem_writer.norm1.{rest}", "global_memory.input_norm.{rest}"),
    ("globalmem_writer.norm2.{rest}", "global_memory.output_norm.{rest}"),
    ("localmem_writer.c_func.0.{rest}", "local_memory.candidate_mlp.{rest}"),
    ("localmem_writer.c_func.1.{rest}", "local_memory.candidate_norm.{rest}"),
    ("localmem_writer.o_func.0.q.{rest}", "local_memory.address_query.{rest}"),
    ("localmem_writer.o_func.0.k.{rest}", "local_memory.address_key.{rest}"),
    ("localmem_writer.m_func.{rest}", "local_memory.retain_mlp.{rest}"),
    ("localmem_writer.post_func.{rest}", "local_memory.add_mlp.{rest}"),
    ("localmem_writer.mask_enc.{rest}", "local_memory.mask_encoder.{rest}"),
    ("localmem_writer.norm1.{rest}", "local_memory.input_norm.{rest}"),
    ("localmem_writer.norm2.{rest}", "local_memory.output_norm.{rest}"),
    ("mem_reader.0.{rest}", "memory_reader.attention.{rest}"),
    ("mem_reader.1.{rest}", "memory_reader.norm.{rest}"),
    ("aux_decoders.{i}.0.{rest}", "aux_heads.{i}.conv_in.{rest}"),
    ("aux_decoders.{i}.1.{rest}", "aux_heads.{i}.norm.{rest}"),
    ("aux_decoders.{i}.3.{rest}", "aux_heads.{i}.conv_out.{rest}"),
    ("query_generator.vis_proj.{rest}", "query_generator.context_mlp.{rest}"),
    ("query_generator.lin_proj.{rest}", "query_generator.key_mlp.{rest}"),
    ("query_generator.value_proj.{rest}", "query_generator.value_mlp.{rest}"),
    ("query_generator.norm.{rest}", "query_generator.norm.{rest}"),
    ("main_dec_net.q.{rest}", "mask_decoder.feature_proj.{rest}"),
    ("main_dec_net.k.{rest}", "mask_decoder.query_proj.{rest}"),
    ("main_dec_net.mask_head.{conv}.{rest}", "mask_decoder.convs.{i}.{rest}"),
]

OFFICIAL_PREFIXES = ("lang_encoder.", "trans_fusion.", "main_dec_net.", "mem_reader.", "localmem_writer.")


class CheckpointError(LocaterError, RuntimeError):
    """A checkpoint does not fit the model, or cannot be read."""


class UnsafeCheckpointError(CheckpointError):
    """A checkpoint that only full unpickling could read (it holds Python objects that could run code)."""


UNSAFE_CHECKPOINT = (
    "holds Python objects beyond tensors and plain values, which could run code when loaded; if you trust this "
    "file, pass --trust-checkpoint (Python: trust_checkpoint=True)"
)

# the ``format`` metadata of our safetensors exports; ``model_config`` holds the model section as JSON
SAFETENSORS_FORMAT = "locater"


def _compile(template: str) -> re.Pattern:
    pattern = re.escape(template)
    pattern = pattern.replace(r"\{i\}", r"(?P<i>\d+)").replace(r"\{conv\}", r"(?P<conv>\d+)")
    pattern = pattern.replace(r"\{rest\}", r"(?P<rest>.+)")
    return re.compile(f"^{pattern}$")


_FORWARD = [(_compile(official), ours) for official, ours in OFFICIAL_TO_OURS]
_BACKWARD = [
    (_compile(ours.replace("convs.{i}", "convs.{conv}")), official) for official, ours in OFFICIAL_TO_OURS
]


def official_to_ours_key(key: str) -> str:
    """Our name of an official key (``KeyError`` when no rule knows it)."""
    for pattern, template in _FORWARD:
        match = pattern.match(key)
        if match:
            groups = match.groupdict()
            if "conv" in groups:
                index = int(groups.pop("conv"))
                if index % 2:
                    break
                groups["i"] = str(index // 2)
            return template.format(**groups)
    raise KeyError(f"no mapping for official key {key!r}")


def ours_to_official_key(key: str) -> str:
    """The official name of one of our keys (``KeyError`` when no rule knows it)."""
    for pattern, template in _BACKWARD:
        match = pattern.match(key)
        if match:
            groups = match.groupdict()
            if "conv" in groups:
                groups["conv"] = str(2 * int(groups["conv"]))
            return template.format(**groups)
    raise KeyError(f"no official name for key {key!r}")


def strip_module_prefix(state: Mapping[str, Any]) -> dict[str, Any]:
    """Remove DDP's ``module.`` prefix when every key carries it."""
    if state and all(key.startswith("module.") for key in state):
        return {key[len("module.") :]: value for key, value in state.items()}
    return dict(state)


def is_official_state_dict(state: Mapping[str, Any]) -> bool:
    """Whether a (prefix-stripped) state dict uses the official naming."""
    return any(key.startswith(OFFICIAL_PREFIXES) for key in state)


def official_to_ours(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename an official state dict (``module.`` prefix allowed) into ours."""
    converted, unknown = {}, []
    for key, value in strip_module_prefix(state).items():
        try:
            converted[official_to_ours_key(key)] = value
        except KeyError:
            unknown.append(key)
    if unknown:
        raise CheckpointError(
            f"{len(unknown)} keys of the official checkpoint have no mapping: {unknown[:20]}"
        )
    return converted


def ours_to_official(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename our state dict into the official naming."""
    return {ours_to_official_key(key): value for key, value in state.items()}


def read_checkpoint(path: str | Path, *, trust: bool = False) -> Mapping[str, Any]:
    """The contents of a checkpoint file: ours (training or exported) or official, on the CPU.

    The one reader of checkpoint files (model loading, ``pretrained.checkpoint``, resuming a training run).
    A ``.safetensors`` file (by its suffix) reads as ``{"model": weights}``, plus ``{"config": {"model": ...}}``
    when it is one of our exports (:func:`export_safetensors`).

    Args:
        path: the file.
        trust: unpickle everything the file holds (``weights_only=False``): a crafted file runs code then, so
            only for files from a trusted source (e.g. training checkpoints written before the RNG states were
            stored as tensors). By default only tensors and plain values are read.

    Raises:
        UnsafeCheckpointError: (a :class:`CheckpointError`) the file holds other Python objects and ``trust``
            is false; the message names the file and the way to read it anyway.
        CheckpointError: the file is missing, cannot be unpickled (corrupt, truncated) or holds no mapping; the
            message names the file.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    if path.suffix == ".safetensors":
        return read_safetensors(path)
    if trust:
        logger.warning("%s: trusted checkpoint, unpickling every object it holds (this can run code)", path)
    try:
        raw = load_torch(path, map_location="cpu", weights_only=not trust)
    except pickle.UnpicklingError as error:
        if not trust and "Weights only load failed" in str(error):  # a global outside torch's allow-list
            raise UnsafeCheckpointError(f"{path}: {UNSAFE_CHECKPOINT}") from error
        raise CheckpointError(f"{path}: cannot read checkpoint ({type(error).__name__}: {error})") from error
    except Exception as error:  # corrupt or truncated file: say which
        raise CheckpointError(f"{path}: cannot read checkpoint ({type(error).__name__}: {error})") from error
    if not isinstance(raw, Mapping):
        raise CheckpointError(f"{path}: expected a dict, got {type(raw).__name__}")
    return raw


def read_safetensors(path: str | Path) -> dict[str, Any]:
    """A ``.safetensors`` file as ``{"model": weights}`` (+ ``"config": {"model": section}`` and ``"format"`` for
    our exports, whose metadata stores the model section).

    Raises:
        CheckpointError: the file cannot be read (corrupt, truncated, not safetensors) or its stored model config
            is not JSON; the message names the file.
    """
    from safetensors import safe_open

    path = Path(path)
    try:
        with safe_open(str(path), framework="pt", device="cpu") as handle:
            metadata = dict(handle.metadata() or {})
            state = {key: handle.get_tensor(key) for key in handle.keys()}
    except Exception as error:  # safetensors raises its own SafetensorError, or OSError / ValueError
        raise CheckpointError(
            f"{path}: cannot read safetensors file ({type(error).__name__}: {error})"
        ) from error
    raw: dict[str, Any] = {"model": state}
    if metadata.get("format") == SAFETENSORS_FORMAT and "model_config" in metadata:
        try:
            section = json.loads(metadata["model_config"])
        except json.JSONDecodeError as error:
            raise CheckpointError(f"{path}: stored model_config is not JSON ({error})") from error
        if not isinstance(section, dict):
            raise CheckpointError(f"{path}: stored model_config is not a mapping")
        raw["config"] = {"model": section}
        raw["format"] = SAFETENSORS_FORMAT
    return raw


def read_state_dict(
    source: str | Path | Mapping[str, Any], *, trust: bool = False
) -> dict[str, torch.Tensor]:
    """The model weights of a checkpoint file or mapping, in OUR naming.

    Accepts our training checkpoints (a dict with a ``model`` entry), plain state dicts in our naming, and
    official checkpoints (with or without ``module.``); ``trust`` as in :func:`read_checkpoint`.
    """
    if isinstance(source, Mapping):
        raw = dict(source)
        name = "<state dict>"
    else:
        raw = dict(read_checkpoint(source, trust=trust))
        name = str(source)
    if "model" in raw and isinstance(raw["model"], Mapping):
        raw = dict(raw["model"])
    elif "state_dict" in raw and isinstance(raw["state_dict"], Mapping):
        raw = dict(raw["state_dict"])
    state = strip_module_prefix(raw)
    if not state or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{name}: does not look like a model state dict")
    return official_to_ours(state) if is_official_state_dict(state) else state


def _describe_mismatch(model_state: Mapping, state: Mapping, limit: int = 25) -> str | None:
    missing = sorted(set(model_state) - set(state))
    unexpected = sorted(set(state) - set(model_state))
    misshaped = sorted(
        f"{key}: checkpoint {tuple(state[key].shape)} vs model {tuple(model_state[key].shape)}"
        for key in set(model_state) & set(state)
        if tuple(state[key].shape) != tuple(model_state[key].shape)
    )
    if not (missing or unexpected or misshaped):
        return None
    lines = []
    for title, items in (("missing", missing), ("unexpected", unexpected), ("mis-shaped", misshaped)):
        if items:
            shown = "\n    ".join(items[:limit])
            more = f"\n    ... and {len(items) - limit} more" if len(items) > limit else ""
            lines.append(f"  {len(items)} {title} keys:\n    {shown}{more}")
    return "\n".join(lines)


def load_checkpoint(
    model: nn.Module,
    source: str | Path | Mapping[str, Any],
    strict: bool = True,
    *,
    trust_checkpoint: bool = False,
) -> nn.Module:
    """Load ours or an official checkpoint into ``model``.

    Raises :class:`CheckpointError` listing every missing, unexpected and mis-shaped key; nothing is skipped
    silently. With ``strict=False`` only the auxiliary heads may be absent from the checkpoint (checkpoints
    exported without them). ``trust_checkpoint``: see :func:`read_checkpoint`'s ``trust``.
    """
    state = read_state_dict(source, trust=trust_checkpoint)
    model_state = model.state_dict()
    if not strict:
        for key in list(model_state):
            if key.startswith("aux_heads.") and key not in state:
                state[key] = model_state[key]
    problem = _describe_mismatch(model_state, state)
    if problem:
        name = source if isinstance(source, (str, Path)) else "<state dict>"
        raise CheckpointError(f"checkpoint {name} does not fit the model:\n{problem}")
    model.load_state_dict(state, strict=True)
    return model


def infer_model_config(state: Mapping[str, torch.Tensor]) -> dict:
    """Architecture of an official (or our) state dict, as a ``model`` config section (sizes the tensors fix)."""
    ours = (
        official_to_ours(strip_module_prefix(state))
        if is_official_state_dict(strip_module_prefix(state))
        else (strip_module_prefix(state))
    )

    def count(prefix: str) -> int:
        found = {int(m.group(1)) for key in ours if (m := re.match(re.escape(prefix) + r"(\d+)\.", key))}
        return max(found) + 1 if found else 0

    try:
        embed = ours["vision_encoder.vit.cls_token"].shape[-1]
        patch_weight = ours["vision_encoder.vit.patch_embed.proj.weight"]
        num_tokens = ours["vision_encoder.vit.pos_embed"].shape[1] - 1
        embedding = ours["text_encoder.embedding.weight"]
        hidden = ours["text_encoder.lstm.weight_hh_l0"].shape[1]
        decoder_width = ours["mask_decoder.convs.0.weight"].shape[0]
    except KeyError as error:
        raise CheckpointError(f"cannot infer the architecture: key {error} is missing") from error
    grid = int(round(num_tokens**0.5))
    if grid * grid != num_tokens:
        raise CheckpointError(f"position embedding holds {num_tokens} patches, not a square grid")
    patch = patch_weight.shape[-1]
    num_convs = count("mask_decoder.convs.")
    if 2 ** (num_convs - 1) != patch:
        raise CheckpointError(
            f"mask decoder has {num_convs} convolutions, which does not fit {patch}-pixel patches"
        )
    memory_keys = [key for key in ours if key.startswith("global_memory.") or key.startswith("local_memory.")]

    def ratio(key: str) -> float:
        return ours[key].shape[0] / embed if key in ours else 4.0

    section = {
        "image_size": grid * patch,
        "patch_size": patch,
        "in_chans": patch_weight.shape[1],
        "embed_dim": embed,
        "vision": {
            "depth": count("vision_encoder.vit.blocks."),
            "mlp_ratio": ratio("vision_encoder.vit.blocks.0.mlp.fc1.weight"),
        },
        "text": {
            "vocab_size": embedding.shape[0],
            "word_dim": embedding.shape[1],
            "hidden_size": hidden,
            "num_layers": sum(1 for key in ours if re.fullmatch(r"text_encoder\.lstm\.weight_ih_l\d+", key)),
        },
        "fusion": {
            "num_stages": count("fusion."),
            "joint_depth": count("fusion.0.joint_blocks."),
            "vision_depth": count("fusion.0.vision_blocks."),
            "mlp_ratio": ratio("fusion.0.joint_blocks.0.mlp.fc1.weight"),
        },
        "memory_mlp_ratio": ratio("query_generator.key_mlp.fc1.weight"),
        "decoder_width": decoder_width,
        "aux_heads": any(key.startswith("aux_heads.") for key in ours),
    }
    if not any(key.startswith("global_memory.") for key in memory_keys):
        section["global_memory"] = {"size": 0.0}
    if not any(key.startswith("local_memory.") for key in memory_keys):
        section["local_memory"] = {"size": 0.0}
    return section


# model switches of ours that the official code does not have, with their released values (locater/defaults/model.yaml)
RELEASED_SWITCHES = {
    "vision.stem_channels": 0,
    "global_memory.write": "gated",
    "local_memory.write": "gated",
    "local_memory.mask_encoding": "conv",
    "reader_residual": False,
    "reader_positions": False,
    "reader_locality": 0.0,
    "decoder_activation": "none",
    "decoder_image_skip": False,
    "decoder_refine": 0,
}


def unreleased_switches(model_config: Mapping) -> dict[str, tuple[Any, Any]]:
    """The settings of a resolved ``model`` section that the official code cannot build: the switches of
    ``RELEASED_SWITCHES`` away from their released values, and a decoder width other than the official
    ``(embed_dim + memory_heads^2) // 4`` (0 stands for it).

    Returns:
        ``{dotted key: (value, released value)}``.
    """
    found = {}
    for dotted, released in RELEASED_SWITCHES.items():
        value: Any = model_config
        for part in dotted.split("."):
            value = value[part]
        if value != released:
            found[dotted] = (value, released)
    official_width = (model_config["embed_dim"] + model_config["memory_heads"] ** 2) // 4
    if model_config["decoder_width"] not in (0, official_width):
        found["decoder_width"] = (model_config["decoder_width"], official_width)
    return found


def export_official(model: nn.Module, path: str | Path) -> Path:
    """Write ``model``'s weights in the official naming (loadable by the official ``VLFTrans``).

    Raises:
        CheckpointError: the model uses a setting the official code does not have (:func:`unreleased_switches`,
            read from ``model.model_config``, which ``build_model_from_section`` sets; a DDP wrapper is looked
            through), so its weights would not load there or would compute something else.
    """
    config = getattr(getattr(model, "module", model), "model_config", None)
    if config is not None:
        found = unreleased_switches(config)
        if found:
            listed = ", ".join(
                f"model.{key}={value!r} (released: {released!r})" for key, (value, released) in found.items()
            )
            raise CheckpointError(f"cannot export to the official format: the model uses {listed}")
    state = ours_to_official({k: v.detach().cpu() for k, v in model.state_dict().items()})
    return save_torch_atomic(state, path)


def export_safetensors(model: nn.Module, path: str | Path) -> Path:
    """Write ``model``'s weights (our naming) as safetensors, with metadata ``{"format": "locater",
    "model_config": <the model section as JSON>}``, so :func:`locater.model.loading.load_model` rebuilds the same
    model from the file alone. Safetensors files hold tensors and strings only: reading one runs no code.

    Raises:
        CheckpointError: the model has no ``model_config`` (build it with ``build_model`` / ``load_model``).
    """
    from safetensors.torch import save_file

    inner = getattr(model, "module", model)
    config = getattr(inner, "model_config", None)
    if not isinstance(config, Mapping):
        raise CheckpointError(
            "cannot export to safetensors: the model has no model_config (build it with build_model or load_model)"
        )
    # own contiguous copies: safetensors refuses tensors that share memory or are not contiguous
    state = {key: value.detach().cpu().contiguous().clone() for key, value in inner.state_dict().items()}
    metadata = {"format": SAFETENSORS_FORMAT, "model_config": json.dumps(config, sort_keys=True)}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_output(path) as tmp:
        save_file(state, str(tmp), metadata=metadata)
    return path
