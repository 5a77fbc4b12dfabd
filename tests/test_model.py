import math

import pytest
import torch
import torch.nn.functional as F

import locater
from locater.model.memory import GlobalMemory, LocalMemory, MemoryWriter
from locater.model.reader import MemoryAttention


def _inputs(num_videos=1, frames=6, size=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    video = torch.randn(num_videos, frames, 3, size, size, generator=g)
    return video


def _reads(model, global_frames, frames, ids):
    """Stream ``frames`` after ``start(global_frames, ids)`` without gradients; returns what the memory reader got
    at each frame: ``(memory, frame_pos, memory_pos, bias)``."""
    seen = []
    original = model.memory_reader.forward

    def spy(frame, memory, frame_pos=None, memory_pos=None, bias=None):
        seen.append((memory, frame_pos, memory_pos, bias))
        return original(frame, memory, frame_pos, memory_pos, bias)

    model.memory_reader.forward = spy
    with torch.no_grad():
        state = model.start(global_frames, ids)
        for t in range(frames.shape[1]):
            _, state = model.step(frames[:, t], state)
    return seen


def _run(model, video, ids, video_index=None):
    glob = video[:, [1, 3, 5]]
    state = model.start(glob, ids, video_index)
    outs = []
    for t in range(video.shape[1]):
        logits, state = model.step(video[:, t], state)
        outs.append(logits)
    return torch.stack(outs, 1), state


def test_default_model_has_the_released_size():
    model = locater.build_model()
    params = sum(p.numel() for p in model.parameters())
    assert round(params / 1e6, 2) == 209.65
    assert model.grid_size == (20, 20)
    assert model.global_memory.capacity == 600 and model.local_memory.capacity == 800
    assert model.mask_decoder.convs[0].weight.shape == (208, 832, 3, 3)


def test_part_shapes(tiny_model):
    m = tiny_model
    frames = torch.randn(2, 3, 64, 64)
    ids = locater.tokenize(["the red circle", "a small blue square on the left"])
    with torch.no_grad():
        tokens = m.vision_encoder(frames)
        words = m.text_encoder(ids)
        fused = m.fuse(tokens, words)
        queries = m.query_generator(
            words, tokens[:, 1:].mean(1), tokens[:, 1:].mean(1), tokens[:, 1:].mean(1)
        )
        read = m.memory_reader(tokens[:, 1:], tokens[:, 1:])
        logits = m.mask_decoder(read, queries, m.grid_size)
    assert tokens.shape == (2, 17, 64)
    assert words.shape == (2, 22, 64)
    assert len(fused) == 2 and all(f.shape == (2, 17, 64) for f in fused)
    assert queries.shape == (2, 4, 64)
    assert read.shape == (2, 16, 64)
    assert logits.shape == (2, 1, 64, 64)


def test_step_shapes_and_memory_stays_constant_over_50_frames(tiny_model):
    ids = locater.tokenize(["the red circle"])
    video = _inputs(frames=50)
    sizes = []
    with torch.no_grad():
        state = tiny_model.start(video[:, :3], ids)
        assert state.global_memory.shape == (1, 24, 64)  # 1.5 frames x 16 tokens
        for t in range(50):
            logits, state = tiny_model.step(video[:, t], state)
            sizes.append(tuple(state.local_memory.shape))
    assert logits.shape == (1, 1, 64, 64)
    assert sizes[0] == (1, 16, 64) and sizes[1] == (1, 32, 64)
    assert set(sizes[1:]) == {(1, 32, 64)}
    assert state.num_frames == 50


def test_two_expressions_in_one_batch_equal_two_single_runs(tiny_model):
    sentences = ["the red circle", "a small blue square on the left"]
    video = _inputs()
    with torch.no_grad():
        shared, _ = _run(tiny_model, video, locater.tokenize(sentences))  # V = 1, B = 2: one vision pass
        singles = [_run(tiny_model, video, locater.tokenize([s]))[0] for s in sentences]
    assert shared.shape == (2, 6, 1, 64, 64)
    for row, single in enumerate(singles):
        torch.testing.assert_close(shared[row : row + 1], single, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(singles[0], singles[1])


def test_video_index_routes_expressions_to_their_video(tiny_model):
    videos = torch.cat([_inputs(seed=1), _inputs(seed=2)])  # 2 videos
    ids = locater.tokenize(["the red circle", "the blue star", "the green cross"])
    index = torch.tensor([1, 0, 1])
    with torch.no_grad():
        batched, _ = _run(tiny_model, videos, ids, index)
        for row, video in enumerate(index.tolist()):
            single, _ = _run(tiny_model, videos[video : video + 1], ids[row : row + 1])
            torch.testing.assert_close(batched[row : row + 1], single, atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="video_index"):
        tiny_model.start(videos[:, :3], ids)


def test_forward_clip_is_start_plus_steps(tiny_model):
    video = _inputs()
    ids = locater.tokenize(["the red circle"])
    with torch.no_grad():
        expected, _ = _run(tiny_model, video, ids)
        main, aux = tiny_model.forward_clip(video[:, [1, 3, 5]], ids, video)
    torch.testing.assert_close(main, expected)
    assert aux.shape == (1, 6, 2, 64, 64)


def test_memory_write_rule_fills_pads_then_updates():
    torch.manual_seed(0)
    writer = MemoryWriter(capacity=24, dim=8, num_heads=2)
    frame = torch.randn(1, 16, 8)
    memory = writer.write(None, frame)
    assert memory is frame  # fits whole: appended as is
    second = torch.randn(1, 16, 8)
    updated = writer.write(memory, second)  # 32 > 24: pad with the mean token, then update
    padded = torch.cat([frame, frame.mean(1, keepdim=True).expand(1, 8, 8)], 1)
    torch.testing.assert_close(updated, writer.output_norm(writer.update(padded, second)))
    assert updated.shape == (1, 24, 8)
    small = MemoryWriter(capacity=4, dim=8, num_heads=2)  # smaller than one frame: start from its mean token
    out = small.write(None, frame)
    start = frame.mean(1, keepdim=True).expand(1, 4, 8)
    torch.testing.assert_close(out, small.output_norm(small.update(start, frame)))


def test_memory_capacity_of_exactly_the_frames_written_keeps_them_and_one_token_less_does_not():
    torch.manual_seed(0)
    frames = [torch.randn(1, 4, 8) for _ in range(4)]  # frames of N = 4 tokens
    # gated: 3 frames fill 12 tokens exactly, so all three are appended as they are
    exact = MemoryWriter(capacity=12, dim=8, num_heads=2)
    memory = None
    for frame in frames[:3]:
        memory = exact.write(memory, frame)
    assert torch.equal(memory, torch.cat(frames[:3], 1))
    full = exact.write(memory, frames[3])  # the fourth no longer fits: updated in place
    torch.testing.assert_close(full, exact.output_norm(exact.update(memory, frames[3])))
    # 11 tokens: two frames fit, the third is the first update (the 8 tokens padded by 3 copies of their mean)
    short = MemoryWriter(capacity=11, dim=8, num_heads=2)
    short.load_state_dict(exact.state_dict())
    two = short.write(short.write(None, frames[0]), frames[1])
    assert torch.equal(two, torch.cat(frames[:2], 1))
    padded = torch.cat([two, two.mean(1, keepdim=True).expand(1, 3, 8)], 1)
    third = short.write(two, frames[2])
    assert third.shape == (1, 11, 8)
    torch.testing.assert_close(third, short.output_norm(short.update(padded, frames[2])))
    # a first frame of exactly the capacity is kept as is; one token less starts from its mean token
    assert MemoryWriter(capacity=4, dim=8, num_heads=2).write(None, frames[0]) is frames[0]
    assert MemoryWriter(capacity=3, dim=8, num_heads=2).write(None, frames[0]).shape == (1, 3, 8)
    # window: 12 tokens keep the newest 3 frames, 11 tokens the newest 2
    for capacity, kept in ((12, 3), (11, 2), (4, 1)):
        window, memory = MemoryWriter(capacity=capacity, dim=8, num_heads=2, rule="window"), None
        for frame in frames:
            memory = window.write(memory, frame)
        assert torch.equal(memory, torch.cat(frames[-kept:], 1)), capacity
    with pytest.raises(ValueError, match="cannot hold one frame"):
        MemoryWriter(capacity=3, dim=8, num_heads=2, rule="window").write(None, frames[0])
    # a window global memory of exactly N1 frames holds them all, in order; one token less is an error
    stacked = torch.stack(frames[:3], 1)  # B x N1 x N x C
    whole = GlobalMemory(capacity=12, dim=8, num_heads=2, rule="window")
    assert torch.equal(whole.build(stacked), whole.input_norm(stacked).reshape(1, 12, 8))
    with pytest.raises(ValueError, match="cannot hold its 3 frames of 4 tokens"):
        GlobalMemory(capacity=11, dim=8, num_heads=2, rule="window").build(stacked)


def test_gated_update_matches_the_direct_formula():
    torch.manual_seed(0)
    writer = MemoryWriter(capacity=6, dim=8, num_heads=2, candidate_norm=True)
    memory, tokens = torch.randn(2, 6, 8), torch.randn(2, 5, 8)
    # direct (memory-hungry) form: B x H x N x M x D keep tensor averaged over N
    cand = writer.candidate_norm(
        writer.candidate_mlp(torch.cat([tokens, memory.mean(1, keepdim=True).expand(-1, 5, -1)], 2))
    )
    q = writer.address_query(cand).view(2, 5, 2, 4).transpose(1, 2)
    k = writer.address_key(memory).view(2, 6, 2, 4).transpose(1, 2)
    o = torch.sigmoid(q @ k.transpose(-1, -2) * 4**-0.5)
    add = writer.add_mlp(
        (o.transpose(-1, -2) @ cand.view(2, 5, 2, 4).transpose(1, 2)).transpose(1, 2).reshape(2, 6, 8)
    )
    keep_values = (
        writer.retain_mlp(memory).view(2, 6, 2, 4).transpose(1, 2).unsqueeze(2).expand(-1, -1, 5, -1, -1)
    )
    keep = ((1 - o).unsqueeze(-1) * keep_values).mean(2).transpose(1, 2).reshape(2, 6, 8)
    torch.testing.assert_close(writer.update(memory, tokens), add + keep, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("size,grid", [(320, 20), (64, 4), (96, 6), (64, 8)])
def test_mask_encoding_equals_conv_then_resize(size, grid):
    torch.manual_seed(0)
    local = LocalMemory(capacity=8, dim=16, num_heads=2)
    mask = (torch.rand(2, 1, size, size) > 0.6).float()
    reference = F.interpolate(local.mask_encoder(mask), size=grid, mode="bilinear", align_corners=False)
    reference = reference.flatten(2).transpose(1, 2)
    torch.testing.assert_close(local.encode_mask(mask, (grid, grid)), reference, atol=2e-5, rtol=1e-5)


def test_ablation_switches_remove_their_paths():
    no_local = locater.build_model(
        locater.load_config("configs/model/tiny.yaml", ["model.local_memory.size=0"])
    )
    no_global = locater.build_model(
        locater.load_config("configs/model/tiny.yaml", ["model.global_memory.size=0"])
    )
    assert no_local.local_memory is None and no_global.global_memory is None
    assert not any(k.startswith("local_memory.") for k in no_local.state_dict())
    ids = locater.tokenize(["the red circle"])
    video = _inputs()
    with torch.no_grad():
        for model in (no_local.eval(), no_global.eval()):
            out, state = _run(model, video, ids)
            assert out.shape == (1, 6, 1, 64, 64) and torch.isfinite(out).all()
        assert state.global_memory is None
    # without mask history the local memory does not depend on the mask written
    torch.manual_seed(0)
    no_mask = locater.build_model(
        locater.load_config("configs/model/tiny.yaml", ["model.local_memory.mask_history=false"])
    ).eval()
    with torch.no_grad():
        state = no_mask.start(video[:, :3], ids)
        _, a = no_mask.step(video[:, 0], state, memory_mask=torch.zeros(1, 1, 64, 64))
        _, b = no_mask.step(video[:, 0], state, memory_mask=torch.ones(1, 1, 64, 64))
    torch.testing.assert_close(a.local_memory, b.local_memory)


def test_teacher_forcing_mask_changes_the_local_memory(tiny_model):
    video, ids = _inputs(), locater.tokenize(["the red circle"])
    with torch.no_grad():
        state = tiny_model.start(video[:, :3], ids)
        _, a = tiny_model.step(video[:, 0], state, memory_mask=torch.zeros(1, 1, 64, 64))
        _, b = tiny_model.step(video[:, 0], state, memory_mask=torch.ones(1, 1, 64, 64))
        _, c = tiny_model.step(
            video[:, 0], state, memory_mask=torch.ones(1, 1, 64, 64), memory_mask_select=torch.tensor([False])
        )
        _, d = tiny_model.step(video[:, 0], state)
    assert not torch.allclose(a.local_memory, b.local_memory)
    torch.testing.assert_close(c.local_memory, d.local_memory)


def test_bfloat16_autocast_runs_on_cpu(tiny_model):
    video, ids = _inputs(), locater.tokenize(["the red circle"])
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        out, _ = _run(tiny_model, video, ids)
    assert torch.isfinite(out.float()).all()


def test_text_encoder_rejects_ids_beyond_the_embedding(tiny_model):
    with pytest.raises(ValueError, match="locater.tokenize"):
        tiny_model.text_encoder(torch.tensor([[101, 30100, 102]]))


def test_non_released_options_keep_the_parameters_and_change_only_their_part():
    """model.reader_residual and model.decoder_activation (used by the small synthetic model) reuse the released
    parameters: the same checkpoint keys, and off by default."""
    torch.manual_seed(0)
    released = locater.build_model("configs/model/tiny.yaml").eval()
    assert released.memory_reader.residual is False and released.mask_decoder.activation == "none"
    variants = {}
    for override in ("model.reader_residual=true", "model.decoder_activation=relu"):
        model = locater.build_model(locater.load_config("configs/model/tiny.yaml", [override])).eval()
        model.load_state_dict(released.state_dict())  # identical keys and shapes
        variants[override] = model
    frames = torch.randn(1, 3, 3, *released.image_size)
    ids = locater.tokenize(["the red circle"])
    with torch.no_grad():
        base = released(frames, ids, frames)[0]
        for model in variants.values():
            assert not torch.allclose(model(frames, ids, frames)[0], base)
    features, memory = torch.randn(2, 5, 64), torch.randn(2, 7, 64)
    reader = variants["model.reader_residual=true"].memory_reader
    plain = released.memory_reader
    with torch.no_grad():
        expected = reader.norm(features + reader.attention(features, memory))
        assert torch.allclose(reader(features, memory), expected)
        assert torch.allclose(plain(features, memory), plain.norm(plain.attention(features, memory)))
    with pytest.raises(ValueError, match="none or relu"):
        locater.build_model(locater.load_config("configs/model/tiny.yaml", ["model.decoder_activation=gelu"]))


def test_vision_stem_convolves_the_frame_before_the_patch_embedding(tmp_path):
    """model.vision.stem_channels (0 by default): two 3x3 convolutions at full resolution feed the patch
    embedding; an ImageNet ViT cannot initialise that patch embedding (clear error)."""
    torch.manual_seed(0)
    assert locater.build_model("configs/model/tiny.yaml").vision_encoder.stem is None
    cfg = locater.load_config("configs/model/tiny.yaml", ["model.vision.stem_channels=8"])
    model = locater.build_model(cfg).eval()
    encoder = model.vision_encoder
    assert encoder.vit.patch_embed.proj.in_channels == 8
    frames = torch.randn(2, 3, *model.image_size)
    with torch.no_grad():
        expected = torch.tanh(encoder.pre_logits(encoder.vit.forward_features(encoder.stem(frames))))
        assert torch.allclose(encoder(frames), expected)
        assert encoder(frames).shape == (2, 17, 64)
    fake_vit = tmp_path / "vit.npz"
    fake_vit.write_bytes(b"")
    with pytest.raises(ValueError, match="stem_channels"):
        locater.build_model(locater.load_config(cfg.to_dict(), [f"pretrained.vit={fake_vit}"]))
    with pytest.raises(ValueError, match="stem_channels"):
        locater.build_model(locater.load_config("configs/model/tiny.yaml", ["model.vision.stem_channels=-1"]))


def test_sincos_position_embedding_starts_the_vit_knowing_where_each_token_is():
    """model.vision.pos_embed_init=sincos: MAE's 2-D sine-cosine table (half of the channels the row, half the
    column) in the learned position embedding, CLS at 0; the default keeps timm's small random start; a bad
    value is a clear error."""
    from locater.model.vision import sincos_position_embedding

    table = sincos_position_embedding((4, 4), 8)  # 2 frequencies per quarter: 1 and 1/100
    assert table.shape == (16, 8)
    row, col = 2, 3
    token = table[row * 4 + col]
    expected = [math.sin(row), math.sin(row / 100), math.cos(row), math.cos(row / 100)]
    expected += [math.sin(col), math.sin(col / 100), math.cos(col), math.cos(col / 100)]
    assert torch.allclose(token, torch.tensor(expected), atol=1e-6)
    assert len({tuple(t.tolist()) for t in table}) == 16  # every token has its own code
    near, far = torch.dist(table[0], table[1]), torch.dist(table[0], table[3])
    assert near < far  # neighbours are closer than distant tokens
    with pytest.raises(ValueError, match="divisible by 4"):
        sincos_position_embedding((4, 4), 6)

    torch.manual_seed(0)
    default = locater.build_model("configs/model/tiny.yaml").vision_encoder.vit.pos_embed
    assert float(default.detach().std()) < 0.05
    cfg = locater.load_config("configs/model/tiny.yaml", ["model.vision.pos_embed_init=sincos"])
    encoder = locater.build_model(cfg).vision_encoder
    pos_embed = encoder.vit.pos_embed
    assert pos_embed.requires_grad
    assert torch.equal(pos_embed[0, 0], torch.zeros(pos_embed.shape[-1]))
    assert torch.allclose(pos_embed[0, 1:], sincos_position_embedding(encoder.grid_size, pos_embed.shape[-1]))
    with pytest.raises(ValueError, match="pos_embed_init"):
        locater.build_model(
            locater.load_config("configs/model/tiny.yaml", ["model.vision.pos_embed_init=fixed"])
        )


def test_decoder_image_skip_feeds_the_frame_at_every_upsampled_scale():
    """model.decoder_image_skip (off by default): every convolution after an upsampling also sees the frame
    pooled to its scale, so the mask depends on the pixels and not only on the token grid."""
    torch.manual_seed(0)
    released = locater.build_model("configs/model/tiny.yaml").eval()
    assert released.mask_decoder.image_skip is False
    model = locater.build_model(
        locater.load_config("configs/model/tiny.yaml", ["model.decoder_image_skip=true"])
    )
    model.eval()
    convs = model.mask_decoder.convs
    assert convs[0].in_channels == released.mask_decoder.convs[0].in_channels
    for skip, plain in zip(convs[1:], released.mask_decoder.convs[1:]):
        assert skip.in_channels == plain.in_channels + 3
    decoder = model.mask_decoder
    features, queries = torch.randn(2, 16, 64), torch.randn(2, 4, 64)
    image = torch.randn(2, 3, *model.image_size)
    with torch.no_grad():
        out = decoder(features, queries, model.grid_size, image)
        # the same chain written out: conv, then (upsample, concatenate the pooled frame, conv) per scale
        h = decoder.feature_proj(features).view(2, 16, 4, 16).transpose(1, 2)
        q = decoder.query_proj(queries).view(2, 4, 4, 16).transpose(1, 2)
        maps = (q @ h.transpose(-1, -2)) * decoder.scale
        x = torch.cat([features.transpose(1, 2), maps.reshape(2, -1, 16)], 1).reshape(2, -1, *model.grid_size)
        x = convs[0](x)
        for conv in convs[1:]:
            x = torch.nn.functional.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False)
            pooled = torch.nn.functional.avg_pool2d(image, image.shape[-1] // x.shape[-1])
            x = conv(torch.cat([x, pooled], 1))
        assert torch.allclose(out, x, atol=1e-6)
        assert not torch.allclose(decoder(features, queries, model.grid_size, image.flip(-1)), out)
        frames = torch.randn(1, 3, 3, *model.image_size)
        logits, _ = model(frames, locater.tokenize(["the red circle"]), frames)
    assert logits.shape == (1, 3, 1, *model.image_size)
    with pytest.raises(ValueError, match="image_skip"):
        decoder(features, queries, model.grid_size)


def test_decoder_refine_adds_a_per_pixel_layer_at_full_resolution():
    """model.decoder_refine=R (0 by default, so the released keys are unchanged): before the last convolution, a
    1x1 convolution of [upsampled features ; frame] to R channels and a ReLU, which the last convolution reads."""
    assert locater.build_model("configs/model/tiny.yaml").mask_decoder.refine is None
    assert not any("refine" in key for key in locater.build_model("configs/model/tiny.yaml").state_dict())
    torch.manual_seed(0)
    cfg = locater.load_config(
        "configs/model/tiny.yaml",
        ["model.decoder_image_skip=true", "model.decoder_activation=relu", "model.decoder_refine=5"],
    )
    model = locater.build_model(cfg).eval()
    decoder = model.mask_decoder
    convs, width = decoder.convs, decoder.convs[0].out_channels
    assert decoder.refine.in_channels == width + 3 and decoder.refine.out_channels == 5
    assert decoder.refine.kernel_size == (1, 1)
    assert convs[-1].in_channels == 5 + 3 and convs[-2].out_channels == width
    features, queries = torch.randn(3, 16, 64), torch.randn(3, 4, 64)
    image = torch.randn(2, 3, *model.image_size)
    image_index = torch.tensor([0, 1, 1])  # two expressions of the second frame
    with torch.no_grad():
        out = decoder(features, queries, model.grid_size, image, image_index)
        h = decoder.feature_proj(features).view(3, 16, 4, 16).transpose(1, 2)
        q = decoder.query_proj(queries).view(3, 4, 4, 16).transpose(1, 2)
        maps = (q @ h.transpose(-1, -2)) * decoder.scale
        x = torch.cat([features.transpose(1, 2), maps.reshape(3, -1, 16)], 1).reshape(3, -1, *model.grid_size)
        x = convs[0](x)
        frames = image[image_index]
        for index, conv in enumerate(convs[1:], start=1):
            x = torch.nn.functional.interpolate(
                torch.relu(x), scale_factor=2.0, mode="bilinear", align_corners=False
            )
            pooled = torch.nn.functional.avg_pool2d(frames, frames.shape[-1] // x.shape[-1])
            if index == len(convs) - 1:
                x = torch.relu(decoder.refine(torch.cat([x, pooled], 1)))
            x = conv(torch.cat([x, pooled], 1))
        assert torch.allclose(out, x, atol=1e-5)
    assert out.shape == (3, 1, *model.image_size)
    with pytest.raises(ValueError, match="refine"):
        locater.build_model(locater.load_config("configs/model/tiny.yaml", ["model.decoder_refine=-1"]))


def test_window_local_memory_keeps_the_newest_frames_verbatim():
    torch.manual_seed(0)
    config = locater.load_config("configs/model/tiny.yaml", ["model.local_memory.write=window"])
    model = locater.build_model(config).eval()
    window = model.local_memory
    assert window.rule == "window"
    # no gated-update parameters: only the input norm and the mask encoder
    assert {name.split(".")[0] for name, _ in window.named_parameters()} == {"input_norm", "mask_encoder"}
    video, ids = _inputs(frames=5), locater.tokenize(["the red circle"])
    masks = (torch.rand(5, 1, 1, 64, 64) > 0.5).float()
    written = []
    with torch.no_grad():
        state = model.start(video[:, :3], ids)
        for t in range(5):
            vision = model.vision_encoder(video[:, t])
            features = model.fuse(vision, state.words)[-1][:, 1:]
            written.append(window.prepare(features, masks[t], model.grid_size))
            _, state = model.step(video[:, t], state, memory_mask=masks[t])
            expected = torch.cat(written[-2:], dim=1)  # size 2.0: the two newest frames, oldest first
            torch.testing.assert_close(state.local_memory, expected)
    # the default is the released gated rule, with its update parameters
    gated = locater.build_model(locater.load_config("configs/model/tiny.yaml")).local_memory
    assert gated.rule == "gated" and hasattr(gated, "address_query")
    with pytest.raises(ValueError, match="cannot hold one frame"):
        LocalMemory(8, 64, 4, 2.0, rule="window").write(None, torch.randn(1, 16, 64))
    with pytest.raises(ValueError, match="unknown memory write rule"):
        LocalMemory(32, 64, 4, 2.0, rule="fifo")


def test_reader_positions_code_the_queries_and_each_local_frame_keys():
    torch.manual_seed(0)
    overrides = ["model.local_memory.write=window", "model.reader_positions=true"]
    model = locater.build_model(locater.load_config("configs/model/tiny.yaml", overrides)).eval()
    codes = model.reader_positions
    assert codes.shape == (16, 64) and "reader_positions" not in model.state_dict()  # fixed, not saved
    video, ids = _inputs(frames=3), locater.tokenize(["the red circle"])
    seen = _reads(model, video[:, :3], video, ids)
    assert all(bias is None for *_, bias in seen)  # no locality bias unless model.reader_locality > 0
    # frame 1 reads the frame itself (16 tokens) + 24 global tokens; frames 2 and 3 one and two remembered frames
    assert [memory.shape[1] for memory, *_ in seen] == [40, 40, 56]
    for memory, frame_pos, memory_pos, _ in seen:
        torch.testing.assert_close(frame_pos, codes)
        local = memory.shape[1] - 24
        torch.testing.assert_close(memory_pos[:local], codes.repeat(local // 16, 1))
        assert torch.count_nonzero(memory_pos[local:]) == 0  # global memory tokens have no grid position
    # the attention adds the codes to queries and keys only
    attention = model.memory_reader.attention
    query, memory = torch.randn(2, 16, 64), torch.randn(2, 40, 64)
    memory_pos = torch.cat([codes, torch.zeros(24, 64)])
    out = attention(query, memory, codes, memory_pos)
    q, k, v = attention.q(query + codes), attention.k(memory + memory_pos), attention.v(memory)

    def heads(x):
        return x.view(2, -1, 4, 16).transpose(1, 2)

    weights = torch.softmax(heads(q) @ heads(k).transpose(-1, -2) / 4.0, dim=-1)
    expected = attention.proj((weights @ heads(v)).transpose(1, 2).reshape(2, 16, 64))
    torch.testing.assert_close(out, expected)
    assert not torch.allclose(out, attention(query, memory))
    with pytest.raises(ValueError, match="local_memory.write=window"):
        locater.build_model(locater.load_config("configs/model/tiny.yaml", ["model.reader_positions=true"]))


def test_reader_locality_biases_each_head_by_grid_distance_to_the_memory_tokens_with_a_cell():
    torch.manual_seed(0)
    overrides = ["model.local_memory.write=window", "model.reader_locality=1.0"]
    model = locater.build_model(locater.load_config("configs/model/tiny.yaml", overrides)).eval()
    table = model.locality_table  # 4 x 4 grid: 16 x 16, -d^2 / 2 (sigma = 1 token)
    assert table.shape == (16, 16) and "locality_table" not in model.state_dict()
    # cell 0 is (0, 0); cell 5 is (1, 1), cell 15 is (3, 3); cell 2 is (0, 2)
    assert table[0, 0] == 0 and table[0, 5] == -1.0 and table[0, 15] == -9.0 and table[5, 2] == -1.0
    weights = model.memory_reader.attention.locality
    assert "memory_reader.attention.locality" in model.state_dict()
    torch.testing.assert_close(weights.detach(), torch.ones(4))
    assert model.reader_positions is None  # the bias needs no position codes
    video, ids = _inputs(frames=3), locater.tokenize(["the red circle"])
    seen = _reads(model, video[:, :3], video, ids)
    # as without the bias: local frames + 24 gated tokens
    assert [memory.shape[1] for memory, *_ in seen] == [40, 40, 56]
    for memory, frame_pos, memory_pos, bias in seen:
        assert frame_pos is None and memory_pos is None
        local = memory.shape[1] - 24
        torch.testing.assert_close(bias[:, :local], table.repeat(1, local // 16))
        assert torch.count_nonzero(bias[:, local:]) == 0  # a gated global memory's tokens have no cell
    # the attention adds w_h * bias to head h's logits
    attention = model.memory_reader.attention
    with torch.no_grad():
        weights.copy_(torch.tensor([0.0, 1.0, 2.0, -0.5]))
    query, memory = torch.randn(2, 16, 64), torch.randn(2, 32, 64)
    bias = table.repeat(1, 2)
    out = attention(query, memory, bias=bias)

    def heads(x):
        return x.view(2, -1, 4, 16).transpose(1, 2)

    logits = heads(attention.q(query)) @ heads(attention.k(memory)).transpose(-1, -2) / 4.0
    logits = logits + weights.view(1, 4, 1, 1) * bias
    expected = attention.proj(
        (torch.softmax(logits, -1) @ heads(attention.v(memory))).transpose(1, 2).reshape(2, 16, 64)
    )
    torch.testing.assert_close(out, expected)
    # the weights learn
    attention(query, memory, bias=bias).square().sum().backward()
    assert weights.grad is not None and torch.count_nonzero(weights.grad) == 4
    with pytest.raises(ValueError, match="locality bias is needed exactly"):
        attention(query, memory)
    with pytest.raises(ValueError, match="locality bias is needed exactly"):
        MemoryAttention(64, 4)(query, memory, bias=bias)
    with pytest.raises(ValueError, match="local_memory.write=window"):
        locater.build_model(locater.load_config("configs/model/tiny.yaml", ["model.reader_locality=1.0"]))
    with pytest.raises(ValueError, match="must be >= 0"):
        locater.build_model(
            locater.load_config("configs/model/tiny.yaml", [overrides[0], "model.reader_locality=-1"])
        )


def test_reader_locality_with_position_codes_as_the_staged_recipe_and_zero_weights_read_as_without_it():
    torch.manual_seed(0)
    overrides = [
        "model.local_memory.write=window",
        "model.reader_positions=true",
        "model.reader_locality=1.0",
    ]
    model = locater.build_model(locater.load_config("configs/model/tiny.yaml", overrides)).eval()
    codes, table = model.reader_positions, model.locality_table
    video, ids = _inputs(frames=3), locater.tokenize(["the star moving right"])
    seen = _reads(model, video[:, :3], video, ids)
    assert len(seen) == 3
    for memory, frame_pos, memory_pos, bias in seen:  # both, for the same tokens
        local = memory.shape[1] - 24
        torch.testing.assert_close(frame_pos, codes)
        torch.testing.assert_close(memory_pos[:local], codes.repeat(local // 16, 1))
        torch.testing.assert_close(bias[:, :local], table.repeat(1, local // 16))
        assert torch.count_nonzero(memory_pos[local:]) == 0 and torch.count_nonzero(bias[:, local:]) == 0
    # with every head's weight at 0 the attention is the one of a reader without the bias (same parameters)
    attention = model.memory_reader.attention
    plain = MemoryAttention(64, 4)
    plain.load_state_dict({k: v for k, v in attention.state_dict().items() if k != "locality"})
    query, memory = torch.randn(2, 16, 64), torch.randn(2, 40, 64)
    memory_pos = torch.cat([codes, torch.zeros(24, 64)])
    bias = torch.cat([table, torch.zeros(16, 24)], dim=1)
    with torch.no_grad():
        assert not torch.allclose(
            attention(query, memory, codes, memory_pos, bias), plain(query, memory, codes, memory_pos)
        )
        attention.locality.zero_()
        torch.testing.assert_close(
            attention(query, memory, codes, memory_pos, bias), plain(query, memory, codes, memory_pos)
        )


def test_reader_locality_reaches_the_frames_of_a_window_global_memory():
    torch.manual_seed(0)
    overrides = [
        "model.local_memory.write=window",
        "model.reader_locality=2.0",
        "model.global_memory.write=window",
        "model.global_memory.size=3.0",
    ]
    model = locater.build_model(locater.load_config("configs/model/tiny.yaml", overrides)).eval()
    torch.testing.assert_close(model.locality_table[0, 15], torch.tensor(-18.0 / 8.0))  # d^2 = 18, sigma = 2
    video, ids = _inputs(frames=3), locater.tokenize(["the star that stays still"])
    seen = _reads(model, video, video[:, :2], ids)
    # frame 2: one remembered frame + the three global frames, every one with its cells
    torch.testing.assert_close(seen[-1][3], model.locality_table.repeat(1, 4))


def test_window_global_memory_keeps_every_global_frame_and_reads_them_with_positions():
    torch.manual_seed(0)
    overrides = [
        "model.local_memory.write=window",
        "model.reader_positions=true",
        "model.global_memory.write=window",
        "model.global_memory.size=3.0",
    ]
    model = locater.build_model(locater.load_config("configs/model/tiny.yaml", overrides)).eval()
    memory = model.global_memory
    assert memory.rule == "window" and not hasattr(memory, "address_query")
    video, ids = _inputs(frames=3), locater.tokenize(["the star that stays still"])
    codes = model.reader_positions
    seen = []
    original = model.memory_reader.forward

    def spy(frame, memory_tokens, frame_pos=None, memory_pos=None, bias=None):
        seen.append((memory_tokens, memory_pos))
        return original(frame, memory_tokens, frame_pos, memory_pos, bias)

    model.memory_reader.forward = spy
    with torch.no_grad():
        state = model.start(video, ids)
        tokens = model.vision_encoder(video[0])
        fused = model.fuse(tokens, state.words.expand(3, -1, -1))[-1][:, 1:]  # 3 x 16 x C
        # the three global frames, each normalised and kept whole, in order
        torch.testing.assert_close(state.global_memory, memory.input_norm(fused).reshape(1, 48, -1))
        _, state = model.step(video[:, 0], state)
        _, state = model.step(video[:, 1], state)
    # frame 2: one remembered frame (16) + 48 global tokens, every frame with the grid code
    tokens_read, memory_pos = seen[-1]
    assert tokens_read.shape[1] == 64
    torch.testing.assert_close(memory_pos, codes.repeat(4, 1))
    # the default global memory is the released gated rule (its tokens get no position codes: the test above)
    gated = locater.build_model(locater.load_config("configs/model/tiny.yaml", overrides[:2])).eval()
    assert gated.global_memory.rule == "gated"
    # a window that cannot hold the N1 frames is an error, not a silent drop of the oldest
    small = locater.build_model(locater.load_config("configs/model/tiny.yaml", overrides[:3])).eval()
    with pytest.raises(ValueError, match="cannot hold its 3 frames of 16 tokens"):
        small.start(video, ids)


def test_patch_mask_encoding_projects_every_pixel_of_each_patch():
    torch.manual_seed(0)
    model = locater.build_model(
        locater.load_config("configs/model/tiny.yaml", ["model.local_memory.mask_encoding=patch"])
    )
    memory = model.local_memory
    patch = model.vision_encoder.vit.patch_embed.patch_size[0]
    grid_h, grid_w = model.grid_size
    assert memory.mask_encoder.weight.shape == (64, patch * patch)
    mask = (torch.rand(2, 1, grid_h * patch, grid_w * patch) > 0.5).float()
    encoding = memory.encode_mask(mask, model.grid_size)
    assert encoding.shape == (2, grid_h * grid_w, 64)
    for b, row, col in [(0, 0, 0), (1, 2, 3), (0, grid_h - 1, 1)]:
        pixels = mask[b, 0, row * patch : (row + 1) * patch, col * patch : (col + 1) * patch].reshape(-1)
        expected = memory.mask_encoder.weight @ pixels + memory.mask_encoder.bias
        torch.testing.assert_close(encoding[b, row * grid_w + col], expected)
    # a pixel off the patch centre changes its own token only (the released encoding samples near the centre)
    moved = mask.clone()
    moved[0, 0, 0, 0] = 1.0 - moved[0, 0, 0, 0]
    changed = (memory.encode_mask(moved, model.grid_size) - encoding).abs().sum(-1) > 0
    assert changed[0].nonzero().flatten().tolist() == [0] and not changed[1].any()
    conv = locater.build_model(locater.load_config("configs/model/tiny.yaml")).local_memory
    assert torch.equal(conv.encode_mask(moved, model.grid_size), conv.encode_mask(mask, model.grid_size))
    with pytest.raises(ValueError, match="grid of"):
        memory.encode_mask(mask[..., :-1], model.grid_size)
    with pytest.raises(ValueError, match="unknown mask encoding"):
        LocalMemory(32, 64, 4, 2.0, mask_encoding="pool")
    with pytest.raises(ValueError, match="patch_size"):
        LocalMemory(32, 64, 4, 2.0, mask_encoding="patch")
