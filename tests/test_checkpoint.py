import json
from pathlib import Path

import pytest
import torch

import locater
from locater.checkpoint import (
    CheckpointError,
    infer_model_config,
    official_to_ours,
    official_to_ours_key,
    ours_to_official,
    ours_to_official_key,
)

# name, shape and dtype of every tensor of the released checkpoint (a copy of the published key list)
OFFICIAL_KEYS = Path(__file__).resolve().parent / "data" / "official_checkpoint_keys.json"


def _model(overrides=()):
    torch.manual_seed(0)
    return locater.build_model(locater.load_config("configs/model/tiny.yaml", list(overrides))).eval()


def _run(model, seed=0):
    g = torch.Generator().manual_seed(seed)
    video = torch.randn(1, 5, 3, *model.image_size, generator=g)
    ids = locater.tokenize(["the man in red is running on the left"])
    outputs = []
    with torch.no_grad():
        state = model.start(video[:, [0, 2, 4]], ids)
        for t in range(video.shape[1]):
            logits, state = model.step(video[:, t], state)
            outputs.append(logits)
    return torch.stack(outputs)


# head counts are not stored in the weights: the tiny architecture names them
TINY_HEADS = {"memory_heads": 4, "vision": {"num_heads": 4}, "fusion": {"num_heads": 4}}


def test_default_model_maps_onto_every_official_key():
    model = locater.build_model()
    official = ours_to_official(model.state_dict())
    published = json.loads(OFFICIAL_KEYS.read_text())
    names = {name: (tuple(shape), dtype) for name, shape, dtype in published}
    assert len(published) == len(names) == 369
    assert set(official) == set(names)
    assert {
        k: (tuple(official[k].shape), str(official[k].dtype).removeprefix("torch.")) for k in names
    } == names
    assert len(official) == 369
    assert ours_to_official_key("mask_decoder.convs.4.weight") == "main_dec_net.mask_head.8.weight"
    assert "main_dec_net.mask_head.6.bias" in official


# Written out by hand (not derived from OFFICIAL_TO_OURS): the official writer's o_func is the addressing
# q/k pair, c_func the candidate MLP (+ its LayerNorm in the local memory), m_func the retain MLP, post_func the
# add MLP; the official decoder's q projects the frame features and k the query.
HAND_WRITTEN_KEYS = {
    "localmem_writer.c_func.0.fc1.weight": "local_memory.candidate_mlp.fc1.weight",
    "localmem_writer.c_func.0.fc2.bias": "local_memory.candidate_mlp.fc2.bias",
    "localmem_writer.c_func.1.weight": "local_memory.candidate_norm.weight",
    "localmem_writer.o_func.0.q.weight": "local_memory.address_query.weight",
    "localmem_writer.o_func.0.q.bias": "local_memory.address_query.bias",
    "localmem_writer.o_func.0.k.weight": "local_memory.address_key.weight",
    "localmem_writer.o_func.0.k.bias": "local_memory.address_key.bias",
    "localmem_writer.m_func.fc1.weight": "local_memory.retain_mlp.fc1.weight",
    "localmem_writer.m_func.fc2.weight": "local_memory.retain_mlp.fc2.weight",
    "localmem_writer.post_func.fc1.weight": "local_memory.add_mlp.fc1.weight",
    "localmem_writer.post_func.fc2.bias": "local_memory.add_mlp.fc2.bias",
    "localmem_writer.mask_enc.weight": "local_memory.mask_encoder.weight",
    "localmem_writer.norm1.weight": "local_memory.input_norm.weight",
    "localmem_writer.norm2.bias": "local_memory.output_norm.bias",
    "globalmem_writer.o_func.0.q.weight": "global_memory.address_query.weight",
    "globalmem_writer.o_func.0.k.weight": "global_memory.address_key.weight",
    "globalmem_writer.m_func.fc1.weight": "global_memory.retain_mlp.fc1.weight",
    "globalmem_writer.post_func.fc1.weight": "global_memory.add_mlp.fc1.weight",
    "main_dec_net.q.weight": "mask_decoder.feature_proj.weight",
    "main_dec_net.q.bias": "mask_decoder.feature_proj.bias",
    "main_dec_net.k.weight": "mask_decoder.query_proj.weight",
    "main_dec_net.k.bias": "mask_decoder.query_proj.bias",
    "main_dec_net.mask_head.0.weight": "mask_decoder.convs.0.weight",
    "main_dec_net.mask_head.2.bias": "mask_decoder.convs.1.bias",
    "main_dec_net.mask_head.8.weight": "mask_decoder.convs.4.weight",
}


def test_official_keys_of_the_memory_writers_and_decoder_map_to_the_right_parameters():
    published = {name for name, _, _ in json.loads(OFFICIAL_KEYS.read_text())}
    ours = locater.build_model().state_dict()
    for official, our in HAND_WRITTEN_KEYS.items():
        assert official in published and our in ours
        assert (official, official_to_ours_key(official)) == (official, our)
        assert (our, ours_to_official_key(our)) == (our, official)
    # and with tensors: each official tensor lands on the parameter named above
    state = {official: torch.full((1,), float(i)) for i, official in enumerate(HAND_WRITTEN_KEYS)}
    converted = official_to_ours(state)
    assert {our: int(value) for our, value in converted.items()} == {
        our: i for i, our in enumerate(HAND_WRITTEN_KEYS.values())
    }


def test_official_round_trip_is_exact(tmp_path):
    model = _model()
    path = locater.export_official(model, tmp_path / "official.pth")
    saved = torch.load(path)
    assert any(k.startswith("trans_fusion.") for k in saved)
    back = official_to_ours(saved)
    assert list(back) == list(model.state_dict())
    assert all(torch.equal(back[k], v) for k, v in model.state_dict().items())
    again = ours_to_official(back)
    assert all(torch.equal(again[k], saved[k]) for k in saved)
    # DDP prefix accepted, and the loaded model gives identical outputs
    loaded = locater.from_official(
        {f"module.{k}": v for k, v in saved.items()}, global_mem_size=1.5, N1=3, **TINY_HEADS
    )
    assert torch.equal(_run(loaded), _run(model))


def test_from_official_infers_the_architecture(tmp_path):
    overrides = [
        "model.image_size=96",
        "model.vision.depth=2",
        "model.fusion.num_stages=3",
        "model.fusion.joint_depth=2",
        "model.fusion.vision_depth=1",
        "model.text.num_layers=2",
        "model.text.word_dim=24",
    ]
    model = _model(overrides)
    state = ours_to_official(model.state_dict())
    section = infer_model_config(state)
    assert section["image_size"] == 96 and section["patch_size"] == 16 and section["embed_dim"] == 64
    assert section["vision"] == {"depth": 2, "mlp_ratio": 2.0}
    assert section["fusion"] == {"num_stages": 3, "joint_depth": 2, "vision_depth": 1, "mlp_ratio": 2.0}
    assert section["memory_mlp_ratio"] == 2.0
    assert section["text"] == {"vocab_size": 30000, "word_dim": 24, "hidden_size": 32, "num_layers": 2}
    loaded = locater.from_official(state, global_mem_size=1.5, local_mem_size=2, N1=3, **TINY_HEADS)
    assert loaded.image_size == (96, 96) and len(loaded.fusion) == 3
    assert loaded.local_memory.capacity == 72 and loaded.global_memory.capacity == 54
    torch.testing.assert_close(_run(loaded), _run(model))
    # memory sizes are not in the weights: the override changes the capacity
    other = locater.from_official(state, local_mem_size=1, **TINY_HEADS)
    assert other.local_memory.capacity == 36


def test_from_official_detects_missing_memories():
    model = _model(["model.global_memory.size=0"])
    section = infer_model_config(ours_to_official(model.state_dict()))
    assert section["global_memory"] == {"size": 0.0}


def test_load_checkpoint_lists_every_problem(tmp_path):
    model = _model()
    state = dict(model.state_dict())
    state.pop("mask_decoder.convs.0.bias")
    state["extra.weight"] = torch.zeros(1)
    state["query_generator.norm.weight"] = torch.zeros(3)
    torch.save({"model": state}, tmp_path / "bad.pt")
    with pytest.raises(CheckpointError) as info:
        locater.load_checkpoint(model, tmp_path / "bad.pt")
    text = str(info.value)
    assert "bad.pt" in text
    assert "1 missing keys" in text and "mask_decoder.convs.0.bias" in text
    assert "1 unexpected keys" in text and "extra.weight" in text
    assert (
        "1 mis-shaped keys" in text and "query_generator.norm.weight: checkpoint (3,) vs model (64,)" in text
    )


def test_load_checkpoint_of_another_architecture_fails_clearly():
    small, other = _model(), _model(["model.fusion.num_stages=3"])
    with pytest.raises(CheckpointError, match="missing keys"):
        locater.load_checkpoint(other, small.state_dict())


def _reseeded_model(seed):
    """A tiny model whose every parameter differs from ``_model()``'s."""
    model = _model()
    torch.manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            torch.nn.init.normal_(p)
    return model


def _assert_same_state(model, source):
    expected = source.state_dict()
    got = model.state_dict()
    assert list(got) == list(expected)
    different = [k for k in expected if not torch.equal(got[k], expected[k])]
    assert different == []


def test_load_checkpoint_accepts_ours_and_official(tmp_path):
    source = _model()
    torch.save({"model": source.state_dict(), "step": 3}, tmp_path / "ours.pt")
    locater.export_official(source, tmp_path / "off.pth")
    expected = _run(source)
    for seed, path in ((5, "ours.pt"), (6, "off.pth")):
        target = _reseeded_model(seed)  # a fresh model: every parameter starts away from the source's
        assert all(not torch.equal(a, b) for a, b in zip(target.parameters(), source.parameters()))
        assert not torch.allclose(_run(target), expected)
        assert locater.load_checkpoint(target, tmp_path / path) is target
        _assert_same_state(target, source)
        assert torch.equal(_run(target), expected)


def test_unreadable_checkpoint_names_the_file(tmp_path):
    path = tmp_path / "truncated.pt"
    path.write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(CheckpointError, match="truncated.pt: cannot read"):
        locater.load_checkpoint(_model(), path)
    with pytest.raises(CheckpointError, match="not found"):
        locater.load_checkpoint(_model(), tmp_path / "absent.pt")


def test_export_official_refuses_switches_the_official_code_lacks(tmp_path):
    assert _model().model_config["reader_locality"] == 0.0  # build_model records the resolved section
    overrides = [
        "model.local_memory.write=window",
        "model.reader_positions=true",
        "model.reader_locality=1.0",
        "model.decoder_refine=8",
    ]
    model = _model(overrides)
    with pytest.raises(locater.CheckpointError) as error:
        locater.export_official(model, tmp_path / "official.pth")
    message = str(error.value)
    assert "model.local_memory.write='window' (released: 'gated')" in message
    assert "model.reader_positions=True" in message and "model.reader_locality=1.0" in message
    assert "model.decoder_refine=8 (released: 0)" in message and "global_memory" not in message
    assert not (tmp_path / "official.pth").exists()
    # one switch alone is enough
    with pytest.raises(locater.CheckpointError, match=r"model\.decoder_activation='relu'"):
        locater.export_official(_model(["model.decoder_activation=relu"]), tmp_path / "official.pth")
    # a decoder width other than the official (embed_dim + heads^2) // 4 (tiny: (64 + 16) // 4 = 20)
    assert _model(["model.decoder_width=20"]).mask_decoder.convs[0].out_channels == 20
    locater.export_official(_model(["model.decoder_width=20"]), tmp_path / "official.pth")  # the same as 0
    with pytest.raises(locater.CheckpointError, match=r"model\.decoder_width=24 \(released: 20\)"):
        locater.export_official(_model(["model.decoder_width=24"]), tmp_path / "official.pth")
