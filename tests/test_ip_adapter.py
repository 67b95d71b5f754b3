"""IP-Adapter (dlcourse.conditioning.ip_adapter): the decoupled attention against the formula and against the
likely mistakes, lambda = 0 equal to the text-only model bit for bit, only the adapter trained, the null
condition for guidance, clear errors for bad references, and the shipped adapter."""

import math

import pytest
import torch

from dlcourse.checkpoints import load_checkpoint
from dlcourse.conditioning import CLIP, ImageEncoder, ImageEncoderConfig, TextEncoder, TextEncoderConfig, Tokenizer
from dlcourse.conditioning.cross_attention import cross_attention
from dlcourse.conditioning.ip_adapter import (DecoupledCrossAttention, IPAdapter, IPAdapterModel, check_reference,
                                              decoupled_cross_attention, train_ip_adapter)
from dlcourse.conditioning.text_to_image import TextToImage
from dlcourse.data import make_shapes
from dlcourse.loop import TrainConfig
from dlcourse.models import UNet, UNetConfig
from dlcourse.pretrained import PRETRAINED, pretrained_path
from dlcourse.samplers import model_output, sample_ddim
from dlcourse.schedules import cosine_schedule

pytestmark = pytest.mark.usefixtures("one_thread")
SCHEDULE = cosine_schedule(100)


def qkv(B=2, H=2, N=5, L=6, K=3, d=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=g)                # noqa: E731
    mask = torch.ones(B, L, dtype=torch.bool)
    mask[0, 4:] = False                                        # caption 0 has 4 real tokens
    return r(B, H, N, d), r(B, H, L, d), r(B, H, L, d), r(B, H, K, d), r(B, H, K, d), mask


def small_model(seed=0, scale=1.0):
    """A small untrained text model whose cross-attention is switched on, its CLIP image encoder and a fresh adapter."""
    tok = Tokenizer.default()
    torch.manual_seed(seed)
    encoder = TextEncoder(TextEncoderConfig(vocab_size=len(tok), max_length=tok.max_length, dim=32, depth=1))
    image_encoder = ImageEncoder(ImageEncoderConfig(image_size=8, channels=(8, 16, 16), embed_dim=32))
    unet = UNet(UNetConfig(base_channels=16, channel_mults=(1, 2), context_dim=32, cross_attention_levels=2))
    with torch.no_grad():
        for name, p in unet.named_parameters():
            if ".cross.proj" in name or "conv_out" in name or "conv2" in name:
                p.normal_(0, 0.2)
    pipe = TextToImage(unet, encoder, tok).eval()
    adapter = IPAdapter.for_unet(unet, 32, num_tokens=3)
    return pipe, IPAdapterModel(pipe, image_encoder, adapter, scale=scale).eval()


# --- the function --------------------------------------------------------------------------------------

def test_decoupled_attention_is_text_attention_plus_scaled_image_attention():
    q, k, v, k_ip, v_ip, mask = qkv()
    text, _ = cross_attention(q, k, v, mask)
    image, _ = cross_attention(q, k_ip, v_ip)
    for scale in (0.0, 0.3, 1.0, 2.0):
        torch.testing.assert_close(decoupled_cross_attention(q, k, v, k_ip, v_ip, scale, mask), text + scale * image,
                                   atol=1e-5, rtol=1e-5)
    assert torch.equal(decoupled_cross_attention(q, k, v, k_ip, v_ip, 0.0, mask),
                       torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=mask[:, None, None])), \
        "lambda = 0 must be the text attention exactly"
    one_head = decoupled_cross_attention(q[:, 0], k[:, 0], v[:, 0], k_ip[:, 0], v_ip[:, 0], 0.5, mask)
    torch.testing.assert_close(one_head, (text + 0.5 * image)[:, 0], atol=1e-5, rtol=1e-5)


def test_decoupled_attention_differs_from_the_likely_mistakes():
    q, k, v, k_ip, v_ip, mask = qkv()
    out = decoupled_cross_attention(q, k, v, k_ip, v_ip, 0.5, mask)
    text, _ = cross_attention(q, k, v, mask)
    image, _ = cross_attention(q, k_ip, v_ip)
    joint_mask = torch.cat([mask, torch.ones(2, 3, dtype=torch.bool)], 1)
    joint, _ = cross_attention(q, torch.cat([k, k_ip], 2), torch.cat([v, v_ip], 2), joint_mask)
    mistakes = {"one softmax over text and image tokens": joint,
                "the text's k and v for the image too": text + 0.5 * text,
                "lambda on the text part": 0.5 * text + image,
                "no 1/sqrt(d)": cross_attention(q * math.sqrt(8), k, v, mask)[0] + 0.5 * image}
    for name, wrong in mistakes.items():
        assert (out - wrong).abs().max() > 1e-2, name


@pytest.mark.parametrize("kwargs, name", [
    (dict(k_ip=torch.randn(2, 2, 3, 4)), "k_ip"), (dict(v_ip=torch.randn(2, 2, 4, 8)), "v_ip"),
    (dict(scale=float("nan")), "scale"), (dict(mask=torch.ones(2, 5, dtype=torch.bool)), "mask"),
    (dict(mask=torch.ones(2, 6)), "mask"),
])
def test_function_errors_name_the_argument(kwargs, name):
    q, k, v, k_ip, v_ip, mask = qkv()
    args = dict(q=q, k=k, v=v, k_ip=k_ip, v_ip=v_ip, scale=1.0, mask=mask) | kwargs
    with pytest.raises((TypeError, ValueError), match=name):
        decoupled_cross_attention(**args)


# --- the model -----------------------------------------------------------------------------------------

def test_lambda_zero_is_the_text_only_model_exactly():
    pipe, model = small_model(scale=0.0)
    data = make_shapes(4, size=8, seed=1)
    x, t = torch.randn(4, 3, 8, 8), torch.tensor([3, 30, 60, 99])
    with torch.no_grad():
        base = pipe(x, t, pipe.cond(data.captions))
        assert torch.equal(model(x, t, model.cond(data.captions, data.images)), base)
        assert torch.equal(model(x, t, None), pipe(x, t, None)), "the null condition too"
        model.set_scale(1.0)
        assert (model(x, t, model.cond(data.captions, data.images)) - base).abs().max() > 1e-3, \
            "at lambda = 1 the reference must change the prediction"
    for a, b in zip(pipe.unet.parameters(), model.unet.parameters()):
        assert a is not b, "the adapter works on its own copy of the U-Net; the original is left alone"


def test_lambda_zero_equality_holds_through_a_guided_sampler():
    pipe, model = small_model(scale=0.0)
    data = make_shapes(3, size=8, seed=2)
    x_T = torch.randn(3, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    a = sample_ddim(pipe, x_T, SCHEDULE, 5, cond=pipe.cond(data.captions), guidance_scale=3.0,
                    prediction_type="v_prediction", progress=False)
    b = sample_ddim(model, x_T, SCHEDULE, 5, cond=model.cond(data.captions, data.images), guidance_scale=3.0,
                    prediction_type="v_prediction", progress=False)
    assert torch.equal(a, b)


def test_null_condition_is_the_empty_prompt_with_the_zero_embedding():
    _, model = small_model()
    x, t = torch.randn(2, 3, 8, 8), torch.tensor([10, 50])
    with torch.no_grad():
        null = model(x, t, None)
        zero = {**model.cond(["", ""]), "image_embeds": torch.zeros(2, 32)}
        assert torch.equal(null, model(x, t, zero))
        cond = model.cond(["", ""], make_shapes(2, size=8, seed=0).images)
        guided = model_output(model, x, t, cond, 3.0)
        torch.testing.assert_close(guided, null + 3.0 * (model(x, t, cond) - null))


def test_only_the_adapter_trains_and_it_starts_from_the_text_projections():
    pipe, model = small_model()
    trainable = {id(p) for p in model.parameters() if p.requires_grad}
    assert trainable == {id(p) for p in model.adapter.parameters()}, "the adapter's parameters, no other"
    for name, block in model.decoupled.items():
        W = block.base.to_kv.weight
        C = W.shape[0] // 2
        assert torch.equal(block.to_k_ip.weight, W[:C]) and torch.equal(block.to_v_ip.weight, W[C:])
    before_base = [p.clone() for p in pipe.parameters()]
    before_copy = {n: p.clone() for n, p in model.unet.named_parameters() if not p.requires_grad}
    before_adapter = [p.clone() for p in model.adapter.parameters()]
    data = make_shapes(64, size=8, seed=3)
    result = train_ip_adapter(model, data.images, data.captions, SCHEDULE, batch_size=8,
                              config=TrainConfig(steps=3, lr=1e-2, ema_decay=None, device="cpu", precision="fp32"))
    assert result.steps == 3
    assert all(torch.equal(a, b) for a, b in zip(before_base, pipe.parameters()))
    assert all(torch.equal(p, before_copy[n]) for n, p in model.unet.named_parameters() if n in before_copy)
    assert any(not torch.equal(a, b) for a, b in zip(before_adapter, model.adapter.parameters()))


def test_attention_maps_have_the_words_then_the_image_tokens():
    _, model = small_model()
    data = make_shapes(2, size=8, seed=0)
    maps = model.attention_maps(torch.randn(2, 3, 8, 8), torch.tensor([5, 5]), model.cond(data.captions, data.images))
    L = model.tokenizer.max_length
    for name, m in maps.items():
        assert m.shape[:2] == (2, L + 3)
        torch.testing.assert_close(m[:, :L].sum(1), torch.ones_like(m[:, 0]))   # the text attention sums to 1
        torch.testing.assert_close(m[:, L:].sum(1), torch.ones_like(m[:, 0]))   # so does the image attention


@pytest.mark.parametrize("images, match", [
    (torch.zeros(3, 8, 8), r"one image of shape \(3, 8, 8\); pass references\[None\]"),
    (torch.zeros(2, 1, 8, 8), r"expected shape \(B, 3, 8, 8\), got \(2, 1, 8, 8\)"),
    (torch.zeros(2, 3, 16, 16), r"expected shape \(B, 3, 8, 8\)"),
    (torch.full((2, 3, 8, 8), 255.0), r"expected values in \[-1, 1\], got min 255, max 255"),
    (torch.zeros(2, 3, 8, 8, dtype=torch.uint8), "floating-point"),
    ([[0.0]], "expected a tensor"),
])
def test_bad_references_get_clear_errors(images, match):
    _, model = small_model()
    with pytest.raises((TypeError, ValueError), match=match):
        model.cond(["", ""], images)


def test_reference_count_and_cond_keys_are_checked():
    _, model = small_model()
    with pytest.raises(ValueError, match=r"references: expected one per caption \(3\) or a single one, got 2"):
        model.cond(["", "", ""], torch.zeros(2, 3, 8, 8))
    assert model.cond(["", "", ""], torch.zeros(1, 3, 8, 8))["image_embeds"].shape == (3, 32)
    with pytest.raises(ValueError, match="unknown key"):
        model(torch.randn(1, 3, 8, 8), 5, {**model.cond([""]), "label": torch.tensor([0])})
    with pytest.raises(ValueError, match=r"image_embeds"):
        model(torch.randn(1, 3, 8, 8), 5, {**model.cond([""]), "image_embeds": torch.zeros(1, 7)})
    with pytest.raises(TypeError, match="scale"):
        model.set_scale(float("inf"))
    with pytest.raises(ValueError, match="adapter: expected blocks"):
        other = UNet(UNetConfig(base_channels=16, channel_mults=(1, 2), context_dim=32, cross_attention_levels=1))
        IPAdapterModel(small_model()[0], model.image_encoder, IPAdapter.for_unet(other, 32))


def test_check_reference_passes_good_images_through():
    x = torch.rand(2, 3, 8, 8) * 2 - 1
    assert check_reference("references", x, 3, 8) is x


# --- the shipped adapter -------------------------------------------------------------------------------

NAME = "ip_adapter_shapes16"
shipped = pytest.mark.skipif(NAME not in PRETRAINED, reason="no shipped IP-Adapter")


@shipped
def test_shipped_file_is_small_float16_and_only_the_adapter():
    path = pretrained_path(NAME)
    assert path.stat().st_size <= 1_000_000
    checkpoint = load_checkpoint(path, sha256=PRETRAINED[NAME].sha256)
    assert all(v.dtype == torch.float16 for v in checkpoint["state_dict"].values() if v.is_floating_point())
    assert checkpoint["config"]["model"] == "IPAdapter"
    assert sum(v.numel() for v in checkpoint["state_dict"].values()) < 100_000


@shipped
def test_shipped_adapter_at_lambda_zero_is_the_text_model_and_reads_the_reference():
    from dlcourse.conditioning.ip_adapter import load_ip_adapter
    from dlcourse.conditioning.text_to_image import load_text_to_image

    model, info = load_ip_adapter(device="cpu", scale=0.0)
    pipe, _ = load_text_to_image(info["base"], device="cpu")
    data = make_shapes(4, size=16, seed=7)
    x, t = torch.randn(4, 3, 16, 16), torch.tensor([100, 300, 600, 900])
    with torch.no_grad():
        assert torch.equal(model(x, t, model.cond([""] * 4, data.images)), pipe(x, t, pipe.cond([""] * 4)))
        model.set_scale(1.0)
        assert (model(x, t, model.cond([""] * 4, data.images)) - pipe(x, t, pipe.cond([""] * 4))).abs().mean() > 1e-3
