"""Denoising networks: the timestep embedding against its formula, then what every
model must do (shape, dependence on t and on the label, the null label, gradients
to every parameter), DiT's adaLN-Zero identity, and the U-Net's ControlNet and
cross-attention inputs."""

import math

import pytest
import torch

from dlcourse.models import DiT, DiTConfig, MLPDenoiser, UNet, UNetConfig, sincos_2d, timestep_embedding



pytestmark = pytest.mark.usefixtures("one_thread")


def randomize_(model, std=0.1, seed=0):
    """Overwrite every parameter with small random values.

    The zero-initialised layers (output convs, adaLN-Zero) make a fresh model output
    zero whatever its input and block the gradient to everything before them; a
    random model shows what the wiring does.
    """
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(std * torch.randn(p.shape, generator=g))
    return model


def small_unet(**kw):
    cfg = dict(in_channels=3, base_channels=16, channel_mults=(1, 2), groups=4, num_heads=2)
    cfg.update(kw)
    return UNet(UNetConfig(**cfg))


def small_dit(**kw):
    cfg = dict(in_channels=3, patch_size=2, hidden_dim=32, depth=2, num_heads=2)
    cfg.update(kw)
    return DiT(DiTConfig(**cfg))


# ---------------------------------------------------------------- embeddings

def test_timestep_embedding_matches_the_formula():
    """emb[i] = sin(t * 10000^(-i/half)), emb[half + i] = cos(...), zero column for odd dim."""
    t = torch.tensor([0, 1, 7, 999])
    for dim in (8, 9):
        emb = timestep_embedding(t, dim)
        half = dim // 2
        assert emb.shape == (4, dim)
        for b, tb in enumerate(t.tolist()):
            for i in range(half):
                f = 10000 ** (-i / half)
                assert emb[b, i].item() == pytest.approx(math.sin(tb * f), abs=1e-4)
                assert emb[b, half + i].item() == pytest.approx(math.cos(tb * f), abs=1e-4)
        if dim % 2:
            assert torch.all(emb[:, -1] == 0)
    assert timestep_embedding(3.5, 4).shape == (1, 4)            # a float, a scalar
    torch.testing.assert_close(timestep_embedding(torch.tensor([2.0]), 6, max_period=100)[0, 1],
                               torch.tensor(math.sin(2.0 * 100 ** (-1 / 3))))


def test_sincos_2d_embeds_rows_then_columns():
    pos = sincos_2d(3, 4, 16)
    assert pos.shape == (12, 16)
    k = 1 * 4 + 2                                                # row 1, column 2
    torch.testing.assert_close(pos[k, :8], timestep_embedding(torch.tensor([1]), 8)[0])
    torch.testing.assert_close(pos[k, 8:], timestep_embedding(torch.tensor([2]), 8)[0])


# ---------------------------------------------------------------- every model

MODELS = {
    "mlp": (lambda: MLPDenoiser(data_dim=2, hidden=32, layers=2, num_classes=4), (6, 2)),
    "unet": (lambda: small_unet(num_classes=4), (6, 3, 8, 8)),
    "dit": (lambda: small_dit(num_classes=4), (6, 3, 8, 8)),
}


@pytest.mark.parametrize("name", MODELS)
def test_output_shape_and_dependence_on_t_and_label(name):
    make, shape = MODELS[name]
    model = randomize_(make())
    x = torch.randn(shape)
    t = torch.full((shape[0],), 10)
    label = torch.arange(shape[0]) % 4
    out = model(x, t, label)
    assert out.shape == x.shape
    assert not torch.allclose(out, model(x, t + 400, label), atol=1e-4), "output ignores t"
    assert not torch.allclose(out, model(x, t, (label + 1) % 4), atol=1e-4), "output ignores the label"
    null = torch.full_like(label, 4)
    uncond = model(x, t)                                          # no label = the null label
    torch.testing.assert_close(uncond, model(x, t, null))
    torch.testing.assert_close(uncond, model(x, t, {"label": null}))
    assert not torch.allclose(uncond, out, atol=1e-4)
    torch.testing.assert_close(model(x, 10, label), out)          # an int t is used for the batch


@pytest.mark.parametrize("name", MODELS)
def test_gradient_reaches_every_parameter(name):
    make, shape = MODELS[name]
    model = randomize_(make())
    x = torch.randn(shape)
    model(x, torch.arange(shape[0]) * 100, torch.arange(shape[0]) % 5).pow(2).mean().backward()
    dead = [n for n, p in model.named_parameters() if p.grad is None or p.grad.abs().sum() == 0]
    assert not dead, f"no gradient reaches {dead}"


def test_unet_with_context_and_residuals_gets_gradient_everywhere():
    model = randomize_(small_unet(num_classes=3, context_dim=8))
    B = 2
    down, mid = model.residual_shapes(B, 8, 8)
    cond = {"label": torch.tensor([0, 3]), "context": torch.randn(B, 5, 8),
            "down_residuals": [torch.randn(s) for s in down], "mid_residual": torch.randn(mid)}
    model(torch.randn(B, 3, 8, 8), torch.tensor([5, 500]), cond).pow(2).mean().backward()
    dead = [n for n, p in model.named_parameters() if p.grad is None or p.grad.abs().sum() == 0]
    assert not dead, f"no gradient reaches {dead}"


def test_fresh_models_start_at_zero_output():
    """Zero-initialised output layers: a fresh U-Net / DiT predicts 0 (the mean of eps)."""
    x = torch.randn(2, 3, 8, 8)
    assert small_unet()(x, 3).abs().max() == 0
    assert small_dit()(x, 3).abs().max() == 0


def test_default_unet_size():
    """The default U-Net, as documented in UNetConfig: 0.81M parameters."""
    n = sum(p.numel() for p in UNet().parameters())
    assert round(n / 1e6, 2) == 0.81, n


# ---------------------------------------------------------------- DiT

def test_dit_blocks_are_the_identity_at_init():
    """adaLN-Zero: every gate starts at 0, so each block returns its input exactly."""
    model = small_dit(num_classes=4)
    x = torch.randn(3, 16, 32)
    c = torch.randn(3, 32)
    for block in model.blocks:
        assert torch.equal(block(x, c), x)


def test_dit_unpatchify_inverts_patchify_order():
    model = small_dit()
    x = torch.randn(2, 3, 8, 6)
    p, (B, C, H, W) = 2, x.shape
    tokens = x.reshape(B, C, H // p, p, W // p, p)                # (B, C, h, p, w, p)
    tokens = tokens.permute(0, 2, 4, 3, 5, 1).reshape(B, -1, p * p * C)  # (B, h*w, p*p*C), channels last
    assert torch.equal(model.unpatchify(tokens, H, W), x)


# ---------------------------------------------------------------- U-Net extras

def test_unet_cross_attention_reads_context_and_respects_the_mask():
    model = randomize_(small_unet(context_dim=8))
    x, t = torch.randn(2, 3, 8, 8), torch.tensor([10, 10])
    ctx = torch.randn(2, 4, 8)
    out = model(x, t, {"context": ctx})
    assert not torch.allclose(out, model(x, t, {"context": ctx + 1}), atol=1e-4)
    mask = torch.tensor([[True, True, False, False]] * 2)
    changed = ctx.clone()
    changed[:, 2:] = 5.0                                          # only masked-out tokens change
    torch.testing.assert_close(model(x, t, {"context": ctx, "context_mask": mask}),
                               model(x, t, {"context": changed, "context_mask": mask}))


def test_unet_residuals_are_added_to_the_skips():
    model = randomize_(small_unet())
    x, t = torch.randn(2, 3, 8, 8), 7
    down, mid = model.residual_shapes(2, 8, 8)
    zeros = {"down_residuals": [torch.zeros(s) for s in down], "mid_residual": torch.zeros(mid)}
    torch.testing.assert_close(model(x, t, zeros), model(x, t))
    bumped = {"down_residuals": [torch.zeros(s) for s in down]}
    bumped["down_residuals"][0] += 1.0
    assert not torch.allclose(model(x, t, bumped), model(x, t), atol=1e-4)
    with pytest.raises(ValueError, match="down_residuals"):
        model(x, t, {"down_residuals": [torch.zeros(s) for s in down[:-1]]})
    with pytest.raises(ValueError, match=r"mid_residual.*shape"):
        model(x, t, {"mid_residual": torch.zeros(2, 1, 1, 1)})


def test_attention_weights_path_matches_the_fused_one_and_the_formula():
    from dlcourse.models.attention import Attention
    torch.manual_seed(0)
    attn = Attention(8, heads=2, context_dim=6)
    x, ctx = torch.randn(2, 5, 8), torch.randn(2, 4, 6)
    mask = torch.tensor([[True, True, True, False], [True, False, False, False]])
    out, weights = attn(x, ctx, mask, return_weights=True)
    torch.testing.assert_close(out, attn(x, ctx, mask))                  # same as PyTorch's fused SDPA
    assert weights.shape == (2, 2, 5, 4)
    q = attn.to_q(x).view(2, 5, 2, 4)                                     # by hand, one head at a time
    k, v = attn.to_kv(ctx).view(2, 4, 2, 2, 4).unbind(2)
    for b in range(2):
        for h in range(2):
            real = mask[b]
            w = torch.softmax(q[b, :, h] @ k[b, real, h].T / 2.0, dim=-1)  # sqrt(d) = sqrt(4)
            torch.testing.assert_close(weights[b, h][:, real], w)
            assert (weights[b, h][:, ~real] == 0).all()


def test_cross_attention_at_more_levels():
    one, two = small_unet(context_dim=8), small_unet(context_dim=8, cross_attention_levels=2)
    crossed = lambda m: sorted(n for n, c in m.named_modules() if getattr(c, "cross", None) is not None)  # noqa: E731
    assert crossed(one) == ["down.1.attn.0", "mid_attn", "up.0.attn.0"]
    assert crossed(two) == ["down.0.attn.0", "down.1.attn.0", "mid_attn", "up.0.attn.0", "up.1.attn.0"]
    assert two.down[0].attn[0].attn is None                              # cross-attention alone at 8x8
    model = randomize_(two)
    x, ctx = torch.randn(2, 3, 8, 8), torch.randn(2, 3, 8)
    out, maps = model.cross_attention_maps(x, 3, {"context": ctx})
    torch.testing.assert_close(out, model(x, 3, {"context": ctx}))
    assert {k: tuple(v.shape) for k, v in maps.items()} == {
        "down.0.attn.0": (2, 3, 8, 8), "down.1.attn.0": (2, 3, 4, 4), "mid_attn": (2, 3, 4, 4),
        "up.0.attn.0": (2, 3, 4, 4), "up.1.attn.0": (2, 3, 8, 8)}
    assert UNetConfig().cross_attention_levels == 1
    assert small_unet().state_dict().keys() == small_unet(cross_attention_levels=2).state_dict().keys()
    with pytest.raises(ValueError, match="cross_attention_levels"):
        small_unet(context_dim=8, cross_attention_levels=3)
    with pytest.raises(ValueError, match="model: this U-Net has no cross-attention"):
        small_unet().cross_attention_maps(x, 3, None)


# Outputs of the shipped U-Nets on one fixed input, recorded before cross-attention could return its
# weights and reach more levels: the files must load as they are and compute exactly what they did.
SHIPPED_OUTPUTS = {
    "shapes16_unet": ([-1.04469895362854, -1.086785078048706, 1.144575834274292, 0.0800962895154953],
                      1921.673714334378, 3434.1936879109126),
    "shapes16_unet_cond": ([-0.7918357849121094, -0.9881383180618286, 0.7550574541091919, -0.23268643021583557],
                           769.4604736287147, 3116.350891040638),
}


@pytest.mark.parametrize("name", sorted(SHIPPED_OUTPUTS))
def test_shipped_unets_load_and_compute_what_they_did(name):
    from dlcourse.pretrained import load_pretrained, pretrained_path
    if not pretrained_path(name).is_file():
        pytest.skip(f"{name} is not shipped")
    model, _ = load_pretrained(name, device="cpu")
    x = torch.randn(4, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    cond = torch.tensor([0, 1, 2, 4]) if model.num_classes else None
    with torch.no_grad():
        out = model(x, torch.tensor([10, 300, 600, 900]), cond).double()
    first, total, absolute = SHIPPED_OUTPUTS[name]
    torch.testing.assert_close(out.flatten()[:4], torch.tensor(first, dtype=torch.float64), rtol=1e-4, atol=1e-4)
    assert out.sum().item() == pytest.approx(total, rel=1e-4) and out.abs().sum().item() == pytest.approx(absolute,
                                                                                                        rel=1e-4)


# ---------------------------------------------------------------- input checks

def test_errors_name_the_argument():
    unet, dit, mlp = small_unet(num_classes=4), small_dit(), MLPDenoiser()
    x = torch.randn(2, 3, 8, 8)
    with pytest.raises(ValueError, match=r"x_t.*3 channels"):
        unet(torch.randn(2, 1, 8, 8), 0)
    with pytest.raises(ValueError, match=r"x_t.*divisible by 2"):
        unet(torch.randn(2, 3, 9, 8), 0)
    with pytest.raises(ValueError, match=r"x_t.*divisible by 2"):
        dit(torch.randn(2, 3, 8, 7), 0)
    with pytest.raises(ValueError, match=r"x_t.*4 dimensions"):
        unet(torch.randn(3, 8, 8), 0)
    with pytest.raises(ValueError, match=r"x_t.*2 features"):
        mlp(torch.randn(5, 3), 0)
    with pytest.raises(ValueError, match=r"^t: expected shape \(2,\)"):
        unet(x, torch.zeros(3))
    with pytest.raises(ValueError, match=r"cond\['label'\].*0\.\.4"):
        unet(x, 0, torch.tensor([0, 5]))
    with pytest.raises(ValueError, match="without num_classes"):
        dit(x, 0, torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="without context_dim"):
        unet(x, 0, {"context": torch.randn(2, 3, 8)})
    with pytest.raises(ValueError, match="does not take"):
        dit(x, 0, {"context": torch.randn(2, 3, 8)})
    with pytest.raises(ValueError, match="unknown key"):
        unet(x, 0, {"labels": torch.tensor([0, 1])})
    with pytest.raises(ValueError, match="groups"):
        UNetConfig(base_channels=12, groups=8)


@pytest.mark.parametrize("kw", [dict(num_res_blocks=2, channel_mults=(1, 2, 2)), dict(attention=False),
                                dict(attention=False, context_dim=4, out_channels=1)])
def test_unet_configurations_and_residual_shapes(kw):
    model = randomize_(small_unet(**kw))
    x = torch.randn(2, 3, 8, 8)
    emb = model.embed(torch.tensor([1.0, 2.0]), None)
    _, skips = model.encode(x, emb)
    down, mid = model.residual_shapes(2, 8, 8)
    assert [tuple(s.shape) for s in skips] == down
    assert model(x, 5).shape == (2, kw.get("out_channels", 3), 8, 8)
