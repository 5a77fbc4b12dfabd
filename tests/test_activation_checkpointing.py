"""model.fusion.checkpoint recomputes the fusion stages in the backward pass: the same loss and gradients."""

import torch

import locater


def _loss_and_grads(checkpointing: bool):
    cfg = locater.load_config(
        "configs/model/tiny.yaml", [f"model.fusion.checkpoint={str(checkpointing).lower()}"]
    )
    torch.manual_seed(0)
    model = locater.build_model(cfg).train()
    assert model.checkpoint_fusion is checkpointing
    generator = torch.Generator().manual_seed(1)
    clip = torch.randn(2, 3, 3, 64, 64, generator=generator)
    global_frames = torch.randn(2, 3, 3, 64, 64, generator=generator)
    masks = (torch.rand(2, 3, 1, 64, 64, generator=generator) > 0.6).float()
    ids = locater.tokenize(["the red ball on the left", "a dog"])
    torch.manual_seed(2)
    logits, aux = model(global_frames, ids, clip, memory_masks=masks)
    loss = logits.float().square().mean() + aux.float().square().mean()
    loss.backward()
    return loss.detach(), {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}


def test_checkpointed_fusion_gives_the_same_loss_and_gradients():
    loss, grads = _loss_and_grads(False)
    loss_ckpt, grads_ckpt = _loss_and_grads(True)
    assert torch.allclose(loss, loss_ckpt, rtol=1e-6, atol=1e-7)
    assert grads.keys() == grads_ckpt.keys() and any("fusion" in name for name in grads)
    for name, grad in grads.items():
        assert torch.allclose(grad, grads_ckpt[name], rtol=1e-5, atol=1e-7), name
