import numpy as np
import pytest
import torch
from timm.models.vision_transformer import VisionTransformer

import locater
from locater.pretrained import load_imagenet_vit


def _tiny_model():
    torch.manual_seed(0)
    return locater.build_model("configs/model/tiny.yaml")


def _source_vit(img_size=32, depth=4):
    torch.manual_seed(1)
    vit = VisionTransformer(
        img_size=img_size,
        patch_size=16,
        num_classes=0,
        global_pool="",
        embed_dim=64,
        depth=depth,
        num_heads=4,
        mlp_ratio=2.0,
        qkv_bias=True,
    )
    with torch.no_grad():
        for p in vit.parameters():
            p.normal_()
    return vit


def _to_jax_npz(vit, path, pre_logits=None):
    """Write a timm ViT in Google's jax checkpoint layout."""
    t = {k: v.detach().numpy() for k, v in vit.state_dict().items()}
    dim, heads = 64, 4
    out = {
        "embedding/kernel": t["patch_embed.proj.weight"].transpose(2, 3, 1, 0),
        "embedding/bias": t["patch_embed.proj.bias"],
        "cls": t["cls_token"],
        "Transformer/posembed_input/pos_embedding": t["pos_embed"],
        "Transformer/encoder_norm/scale": t["norm.weight"],
        "Transformer/encoder_norm/bias": t["norm.bias"],
    }
    for i in range(len(vit.blocks)):
        p, b = f"Transformer/encoderblock_{i}/", f"blocks.{i}."
        m = p + "MultiHeadDotProductAttention_1/"
        out[p + "LayerNorm_0/scale"], out[p + "LayerNorm_0/bias"] = t[b + "norm1.weight"], t[b + "norm1.bias"]
        out[p + "LayerNorm_2/scale"], out[p + "LayerNorm_2/bias"] = t[b + "norm2.weight"], t[b + "norm2.bias"]
        qkv_w, qkv_b = t[b + "attn.qkv.weight"], t[b + "attn.qkv.bias"]
        for n, name in enumerate(("query", "key", "value")):
            out[m + f"{name}/kernel"] = qkv_w[n * dim : (n + 1) * dim].T.reshape(dim, heads, dim // heads)
            out[m + f"{name}/bias"] = qkv_b[n * dim : (n + 1) * dim].reshape(heads, dim // heads)
        out[m + "out/kernel"] = t[b + "attn.proj.weight"].T.reshape(heads, dim // heads, dim)
        out[m + "out/bias"] = t[b + "attn.proj.bias"]
        for r in range(2):
            out[p + f"MlpBlock_3/Dense_{r}/kernel"] = t[b + f"mlp.fc{r + 1}.weight"].T
            out[p + f"MlpBlock_3/Dense_{r}/bias"] = t[b + f"mlp.fc{r + 1}.bias"]
    if pre_logits is not None:
        out["pre_logits/kernel"], out["pre_logits/bias"] = pre_logits
    np.savez(path, **out)


def test_timm_pth_lands_in_the_vision_encoder_and_fusion(tmp_path):
    source = _source_vit(img_size=64)
    torch.save(source.state_dict(), tmp_path / "vit.pth")
    model = load_imagenet_vit(_tiny_model(), tmp_path / "vit.pth", into_fusion=True)
    vit = model.vision_encoder.vit
    assert torch.equal(vit.blocks[0].attn.qkv.weight, source.blocks[0].attn.qkv.weight)
    assert torch.equal(vit.pos_embed, source.pos_embed)
    assert torch.equal(vit.norm.weight, source.norm.weight)
    # tiny: vision depth 1, 2 stages x 1 joint block -> ViT blocks 1 and 2
    assert torch.equal(model.fusion[0].joint_blocks[0].mlp.fc1.weight, source.blocks[1].mlp.fc1.weight)
    assert torch.equal(model.fusion[1].joint_blocks[0].attn.proj.bias, source.blocks[2].attn.proj.bias)


def test_jax_npz_with_position_embedding_resize_and_pre_logits(tmp_path):
    source = _source_vit(img_size=32)  # 2 x 2 grid -> resized to the tiny model's 4 x 4
    kernel, bias = np.random.default_rng(0).normal(size=(64, 64)).astype(np.float32), np.ones(64, np.float32)
    _to_jax_npz(source, tmp_path / "ViT-B_16.npz", pre_logits=(kernel, bias))
    model = load_imagenet_vit(_tiny_model(), tmp_path / "ViT-B_16.npz")
    vit = model.vision_encoder.vit
    torch.testing.assert_close(vit.blocks[0].attn.qkv.weight, source.blocks[0].attn.qkv.weight)
    torch.testing.assert_close(vit.blocks[0].attn.qkv.bias, source.blocks[0].attn.qkv.bias)
    torch.testing.assert_close(vit.patch_embed.proj.weight, source.patch_embed.proj.weight)
    assert vit.pos_embed.shape == (1, 17, 64)
    torch.testing.assert_close(vit.pos_embed[:, :1], source.pos_embed[:, :1])  # the CLS position is kept
    torch.testing.assert_close(model.vision_encoder.pre_logits.weight, torch.from_numpy(kernel).T)


def test_missing_file_says_where_to_get_it(tmp_path):
    with pytest.raises(FileNotFoundError, match="ViT-B_16.npz"):
        load_imagenet_vit(_tiny_model(), tmp_path / "absent.npz")


def test_build_model_applies_the_pretrained_entry(tmp_path):
    source = _source_vit(img_size=64, depth=1)
    torch.save({"model": source.state_dict()}, tmp_path / "vit.pth")
    cfg = locater.load_config("configs/model/tiny.yaml", [f"pretrained.vit={tmp_path / 'vit.pth'}"])
    model = locater.build_model(cfg)
    assert torch.equal(model.vision_encoder.vit.cls_token, source.cls_token)
