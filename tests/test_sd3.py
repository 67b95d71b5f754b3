"""SD3's MM-DiT in miniature (dlcourse.systems.sd3): joint attention, two streams, a denoiser for the flow."""

import math
import time

import pytest
import torch

from dlcourse.checkpoints import build_model, load_checkpoint, model_config, save_checkpoint
from dlcourse.conditioning import TextEncoder, TextEncoderConfig, TextToImage, Tokenizer
from dlcourse.rectified_flow import flow_matching_loss, sample_flow
from dlcourse.systems import MMDiT, MMDiTConfig, joint_attention
from dlcourse.models import UNet
from dlcourse.parameterization import diffusion_loss
from dlcourse.schedules import get_schedule
from dlcourse.systems.sd3 import (RACE_KINDS, MMDiTBlock, cpu_budget, race_loss, race_network, race_sample,
                                  train_race)

B, N, L, D, HEADS = 2, 6, 4, 8, 2


def randomised(model, scale=0.2, seed=0):
    """adaLN-Zero starts every block as the identity and the output at zero: give every weight a value."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(scale * torch.randn(p.shape, generator=g))
    return model.eval()


def small(depth=2, context_dim=12):
    torch.manual_seed(0)
    return randomised(MMDiT(MMDiTConfig(context_dim=context_dim, hidden_dim=16, depth=depth, num_heads=2)))


def qkv(seed=0):
    g = torch.Generator().manual_seed(seed)
    img = [torch.randn(B, N, D, generator=g) for _ in range(3)]
    txt = [torch.randn(B, L, D, generator=g) for _ in range(3)]
    return img, txt


def attention_by_formula(q, k, v, heads, key_mask=None):
    """softmax(q k^T / sqrt(d)) v per head, written out: (B, S, D) each -> (B, S, D)."""
    Bq, S, Dq = q.shape
    d = Dq // heads
    split = lambda x: x.reshape(Bq, x.shape[1], heads, d).transpose(1, 2)        # noqa: E731
    scores = split(q) @ split(k).transpose(-2, -1) / math.sqrt(d)                 # (B, heads, S, S')
    if key_mask is not None:
        scores = scores.masked_fill(~key_mask[:, None, None, :], float("-inf"))
    return (scores.softmax(-1) @ split(v)).transpose(1, 2).reshape(Bq, S, Dq)


def test_joint_attention_is_one_attention_over_the_concatenated_sequence():
    (qi, ki, vi), (qt, kt, vt) = qkv()
    out_img, out_txt = joint_attention(qi, ki, vi, qt, kt, vt, HEADS)
    assert out_img.shape == (B, N, D) and out_txt.shape == (B, L, D)
    whole = attention_by_formula(torch.cat([qt, qi], 1), torch.cat([kt, ki], 1), torch.cat([vt, vi], 1), HEADS)
    torch.testing.assert_close(out_txt, whole[:, :L], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out_img, whole[:, L:], atol=1e-5, rtol=1e-5)
    # not attention within each modality: an image token reads the text
    alone = attention_by_formula(qi, ki, vi, HEADS)
    assert (out_img - alone).abs().max() > 1e-2


def test_joint_attention_masks_padding_keys():
    (qi, ki, vi), (qt, kt, vt) = qkv()
    mask = torch.tensor([[True, True, False, False], [True, True, True, True]])
    out_img, _ = joint_attention(qi, ki, vi, qt, kt, vt, HEADS, txt_mask=mask)
    keys = torch.cat([mask, torch.ones(B, N, dtype=torch.bool)], 1)
    whole = attention_by_formula(torch.cat([qt, qi], 1), torch.cat([kt, ki], 1), torch.cat([vt, vi], 1), HEADS,
                                 key_mask=keys)
    torch.testing.assert_close(out_img, whole[:, L:], atol=1e-5, rtol=1e-5)
    kt2, vt2 = kt.clone(), vt.clone()
    kt2[0, 2:] += 5.0
    vt2[0, 2:] -= 5.0
    again, _ = joint_attention(qi, ki, vi, qt, kt2, vt2, HEADS, txt_mask=mask)
    torch.testing.assert_close(again, out_img)


def test_joint_attention_errors():
    (qi, ki, vi), (qt, kt, vt) = qkv()
    with pytest.raises(ValueError, match="num_heads"):
        joint_attention(qi, ki, vi, qt, kt, vt, 3)
    with pytest.raises(ValueError, match="q_txt"):
        joint_attention(qi, ki, vi, qt[..., :4], kt, vt, HEADS)
    with pytest.raises(ValueError, match="k_img"):
        joint_attention(qi, ki[:, :3], vi, qt, kt, vt, HEADS)
    with pytest.raises(ValueError, match="v_txt"):
        joint_attention(qi, ki, vi, qt, kt, vt[:1], HEADS)
    with pytest.raises(TypeError, match="txt_mask"):
        joint_attention(qi, ki, vi, qt, kt, vt, HEADS, txt_mask=torch.ones(B, L))
    with pytest.raises(ValueError, match="txt_mask"):
        joint_attention(qi, ki, vi, qt, kt, vt, HEADS, txt_mask=torch.ones(B, L + 1, dtype=torch.bool))


def cond_for(model, B=2, L=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    mask = torch.ones(B, L, dtype=torch.bool)
    mask[0, 3:] = False
    return {"context": torch.randn(B, L, model.config.context_dim, generator=g), "context_mask": mask}


def test_shapes_and_zero_start():
    torch.manual_seed(0)
    fresh = MMDiT(MMDiTConfig(context_dim=12, hidden_dim=16, depth=2, num_heads=2))
    x = torch.randn(2, 3, 8, 12)
    out = fresh(x, torch.tensor([10.0, 900.0]), cond_for(fresh))
    assert out.shape == x.shape and float(out.detach().abs().max()) == 0.0         # adaLN-Zero: zero at the start
    model = small()
    out = model(x, torch.tensor([10.0, 900.0]), cond_for(model))
    assert out.shape == x.shape and float(out.detach().abs().max()) > 0


def test_separate_weights_per_modality():
    model = small(depth=2)
    block = model.blocks[0]
    img = {id(p) for p in block.img.parameters()}
    txt = {id(p) for p in block.txt.parameters()}
    assert img and txt and not img & txt                                   # no shared tensor
    assert block.img.qkv.weight.shape == block.txt.qkv.weight.shape
    assert not torch.equal(block.img.qkv.weight, block.txt.qkv.weight)
    x, t, cond = torch.randn(2, 3, 8, 8), torch.tensor([100.0, 600.0]), cond_for(model)
    before = model(x, t, cond)
    for stream in (block.img, block.txt):                                  # each stream's weights are used
        with torch.no_grad():
            stream.qkv.weight.mul_(-1)
        assert (model(x, t, cond) - before).abs().max() > 1e-4
        with torch.no_grad():
            stream.qkv.weight.mul_(-1)
    torch.testing.assert_close(model(x, t, cond), before)
    last = model.blocks[-1]                                                # text only gives keys and values
    assert last.txt.pre_only and not hasattr(last.txt, "mlp") and hasattr(last.img, "mlp")


def test_information_flows_both_ways():
    model = small(depth=2)
    x, t, cond = torch.randn(2, 3, 8, 8), torch.tensor([100.0, 600.0]), cond_for(model)
    out = model(x, t, cond)
    moved = {**cond, "context": cond["context"].clone()}
    moved["context"][1, 1] += 1.0                                         # one real token of caption 1
    out2 = model(x, t, moved)
    assert (out2[1] - out[1]).abs().max() > 1e-4                          # text -> image
    torch.testing.assert_close(out2[0], out[0])                            # rows stay apart
    padded = {**cond, "context": cond["context"].clone()}
    padded["context"][0, 4] += 3.0                                         # padding of caption 0: read by nobody
    torch.testing.assert_close(model(x, t, padded), out, atol=1e-5, rtol=1e-5)
    torch.manual_seed(1)
    block = randomised(MMDiTBlock(16, 2))                                  # image -> text, inside a block
    c, txt = torch.randn(2, 16), torch.randn(2, 3, 16)
    _, txt_a = block(torch.randn(2, 5, 16), txt, c)
    _, txt_b = block(torch.randn(2, 5, 16), txt, c)
    assert (txt_a - txt_b).abs().max() > 1e-4


def test_pooled_text_conditions_adaln():
    model = small(depth=1)
    x, t, cond = torch.randn(2, 3, 8, 8), torch.tensor([100.0, 600.0]), cond_for(model)
    out = model(x, t, cond)
    with torch.no_grad():
        model.pooled_embed[2].bias.add_(1.0)
    assert (model(x, t, cond) - out).abs().max() > 1e-4


def test_errors():
    model = small()
    x, t = torch.randn(2, 3, 8, 8), torch.tensor([1.0, 2.0])
    with pytest.raises(ValueError, match="cond"):
        model(x, t, None)
    with pytest.raises(ValueError, match="context"):
        model(x, t, {"context": torch.randn(2, 5, 7)})
    with pytest.raises(ValueError, match="label"):
        model(x, t, {"context": torch.randn(2, 5, 12), "label": torch.zeros(2, dtype=torch.long)})
    with pytest.raises(ValueError, match="x_t"):
        model(torch.randn(2, 3, 7, 8), t, cond_for(model))
    with pytest.raises(ValueError, match="hidden_dim"):
        MMDiTConfig(hidden_dim=18, num_heads=4)
    with pytest.raises(ValueError, match="depth"):
        MMDiTConfig(depth=0)


def test_denoiser_for_the_flow_with_guidance_and_checkpoint(tmp_path):
    tok = Tokenizer.default()
    torch.manual_seed(0)
    encoder = TextEncoder(TextEncoderConfig(vocab_size=len(tok), max_length=tok.max_length, dim=12, depth=1,
                                            heads=2))
    model = small(context_dim=12)
    pipe = TextToImage(model, encoder, tok).eval()
    captions = ["a large red circle at the top left", "a small blue square in the centre"]
    cond = pipe.cond(captions)
    loss = flow_matching_loss(pipe, torch.randn(2, 3, 8, 8), cond=cond, time_scale=1000, t_sampling="logit_normal")
    assert loss.ndim == 0 and torch.isfinite(loss)
    x_T = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    guided = sample_flow(pipe, x_T, 3, time_scale=1000, shift=2.0, cond=cond, guidance_scale=3.0)
    plain = sample_flow(pipe, x_T, 3, time_scale=1000, shift=2.0, cond=cond)
    assert guided.shape == x_T.shape and (guided - plain).abs().max() > 1e-4
    empty = sample_flow(pipe, x_T, 3, time_scale=1000, cond=pipe.cond(["", ""]))
    torch.testing.assert_close(sample_flow(pipe, x_T, 3, time_scale=1000), empty)   # cond=None: the empty prompt
    path = tmp_path / "mmdit.pt"
    save_checkpoint(path, model, model_config(model))
    again = build_model(load_checkpoint(path)).eval()
    torch.testing.assert_close(again(x_T, torch.tensor([5.0, 5.0]), cond), model(x_T, torch.tensor([5.0, 5.0]), cond))


# ---- the race of notebook 10d ----

def tiny_pipe(kind):
    tok = Tokenizer.default()
    torch.manual_seed(0)
    encoder = TextEncoder(TextEncoderConfig(vocab_size=len(tok), max_length=tok.max_length, dim=64, depth=1,
                                            heads=2))
    return TextToImage(race_network(kind, 64, seed=1), encoder, tok)


def test_race_network_recipes():
    mmdit, unet = race_network("mmdit"), race_network("unet")
    assert isinstance(mmdit, MMDiT) and isinstance(unet, UNet)
    assert mmdit.config.hidden_dim == 92 and mmdit.config.depth == 4 and mmdit.config.patch_size == 2
    assert 0.9e6 < sum(p.numel() for p in mmdit.parameters()) < 1.0e6
    assert 0.85e6 < sum(p.numel() for p in unet.parameters()) < 0.95e6
    torch.manual_seed(5)
    state = torch.random.get_rng_state()
    again = race_network("mmdit")
    assert torch.equal(torch.random.get_rng_state(), state)                  # the global state is left alone
    for a, b in zip(mmdit.parameters(), again.parameters()):
        assert torch.equal(a, b)
    other = race_network("mmdit", seed=1)
    assert any(not torch.equal(a, b) for a, b in zip(mmdit.parameters(), other.parameters()))
    with pytest.raises(ValueError, match="kind"):
        race_network("dit")


@pytest.mark.parametrize("kind", RACE_KINDS)
def test_race_loss_is_the_recipe(kind):
    pipe = tiny_pipe(kind)
    ids, mask = pipe.tokenizer.encode(["a large red circle at the top left", "a small blue square in the centre"])
    batch = {"x_0": torch.rand(2, 3, 16, 16) * 2 - 1, "ids": ids, "mask": mask}
    torch.manual_seed(3)
    got = race_loss(kind)(pipe, batch)
    cond = pipe.text_encoder(ids, mask).cond()
    torch.manual_seed(3)
    if kind == "unet":
        want = diffusion_loss(pipe.unet, batch["x_0"], get_schedule("cosine", 1000), prediction_type="v_prediction",
                              cond=cond)
    else:
        want = flow_matching_loss(pipe.unet, batch["x_0"], cond=cond, time_scale=1000, t_sampling="logit_normal",
                                  logit_mean=0.0, logit_std=1.0)
    torch.testing.assert_close(got, want)
    got.backward()
    assert all(p.grad is None for p in pipe.text_encoder.parameters())         # the text encoder stays frozen


def test_cpu_budget_stops_after_the_cpu_seconds():
    def busy_batches():
        i = 0
        while True:
            start = time.process_time()
            while time.process_time() - start < 0.02:                       # 0.02 CPU s of work per batch
                pass
            yield i
            i += 1

    assert list(cpu_budget(iter(range(5)), 100.0)) == [0, 1, 2, 3, 4]       # ends with its source
    assert list(cpu_budget(busy_batches(), 0.0)) == [0]                      # the clock starts at the first batch
    got = list(cpu_budget(busy_batches(), 0.1))
    assert 4 <= len(got) <= 7 and got == list(range(len(got)))
    with pytest.raises(ValueError, match="cpu_seconds"):
        list(cpu_budget(busy_batches(), -1.0))


def test_train_race_and_sample():
    result = train_race("mmdit", steps=2, n_train=64, batch_size=4)
    assert result.steps == 2 and result.cpu_seconds > 0 and isinstance(result.ema_model, TextToImage)
    prompts = ["a large red circle at the top left", "a small blue square in the centre"]
    x_T = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    x = race_sample("mmdit", result.ema_model, prompts, x_T, steps=2, guidance_scale=3.0, shift=3.0)
    assert x.shape == (2, 3, 16, 16) and x.min() >= -1 and x.max() <= 1
    budget = train_race("unet", cpu_seconds=0.0, n_train=64, batch_size=4)
    assert budget.steps == 1                                                 # the budget is spent after one step
    x = race_sample("unet", budget.ema_model, prompts, x_T, steps=2)
    assert x.shape == (2, 3, 16, 16) and x.min() >= -1 and x.max() <= 1
    with pytest.raises(ValueError, match="shift"):
        race_sample("unet", budget.ema_model, prompts, x_T, shift=3.0)
    with pytest.raises(TypeError, match="pipe"):
        race_sample("mmdit", result.ema_model.unet, prompts, x_T)
    with pytest.raises(ValueError, match="x_T"):
        race_sample("mmdit", result.ema_model, prompts[:1], x_T)
    with pytest.raises(ValueError, match="cpu_seconds, steps"):
        train_race("unet")
    with pytest.raises(ValueError, match="hold_out"):
        train_race("unet", steps=1, n_train=1, hold_out=["circle", "square", "triangle"])
