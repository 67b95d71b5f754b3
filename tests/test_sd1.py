"""Stable Diffusion 1.x in miniature (dlcourse.systems.sd1): the one call against its algorithm written out."""

import math

import pytest
import torch

from dlcourse.conditioning import TextEncoder, TextEncoderConfig, TextToImage, Tokenizer
from dlcourse.conditioning.text_to_image import drop_captions
from dlcourse.latent import decode, encode
from dlcourse.models import VAE, UNet, UNetConfig, VAEConfig
from dlcourse.parameterization import diffusion_loss, x0_from_v
from dlcourse.samplers import dpmpp_2m_step, sample_dpmpp_2m, vp_times
from dlcourse.schedules import get_schedule
from dlcourse.systems import StableDiffusionMini, guided_prediction, training_loss

PROMPTS = ["a large red circle at the top left", "a small blue square in the centre"]


@pytest.fixture(scope="module")
def pipe():
    """A small random pipeline: the algorithm does not depend on trained weights."""
    torch.manual_seed(0)
    tok = Tokenizer.default()
    text_encoder = TextEncoder(TextEncoderConfig(vocab_size=len(tok), max_length=tok.max_length, dim=16, depth=1,
                                                 heads=2))
    vae = VAE(VAEConfig(base_channels=8, channel_mults=(1, 2, 2), groups=4))
    unet = UNet(UNetConfig(in_channels=4, base_channels=8, channel_mults=(1, 2), groups=4, num_heads=2,
                           context_dim=16, cross_attention_levels=2))
    for p in unet.parameters():           # the cross-attention starts as the identity: make the text matter
        p.data.add_(0.05 * torch.randn_like(p))
    return StableDiffusionMini(unet, vae, text_encoder, tok, get_schedule("cosine", 1000), scale_factor=1.3).eval()


def test_shapes_range_and_prompt_forms(pipe):
    x = pipe(PROMPTS, num_inference_steps=3, generator=torch.Generator().manual_seed(0))
    assert x.shape == (2, 3, 32, 32) and x.dtype == torch.float32
    assert float(x.min()) >= -1 and float(x.max()) <= 1
    one = pipe(PROMPTS[0], num_inference_steps=3, num_images_per_prompt=3, generator=torch.Generator().manual_seed(0))
    assert one.shape == (3, 3, 32, 32)


def test_generator_makes_it_deterministic(pipe):
    a = pipe(PROMPTS, num_inference_steps=4, generator=torch.Generator().manual_seed(5))
    b = pipe(PROMPTS, num_inference_steps=4, generator=torch.Generator().manual_seed(5))
    c = pipe(PROMPTS, num_inference_steps=4, generator=torch.Generator().manual_seed(6))
    assert torch.equal(a, b)
    assert not torch.allclose(a, c)
    # the generator draws z_T as torch.randn does, so latents= reproduces it
    z_T = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(5))
    assert torch.equal(pipe(PROMPTS, num_inference_steps=4, latents=z_T), a)


def test_guidance_one_is_the_unguided_sampler(pipe):
    """w = 1: the conditional model alone, exactly what sample_dpmpp_2m draws from the text model."""
    z_T = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(1))
    x = pipe(PROMPTS, num_inference_steps=6, guidance_scale=1.0, latents=z_T)
    text_model = TextToImage(pipe.unet, pipe.text_encoder, pipe.tokenizer)
    z_0 = sample_dpmpp_2m(text_model, z_T, pipe.schedule, 6, cond=text_model.cond(PROMPTS),
                          prediction_type="v_prediction", clip_x0=False, progress=False)
    torch.testing.assert_close(x, decode(pipe.vae, z_0, pipe.scale_factor), rtol=0, atol=1e-6)


def test_guided_call_is_the_course_sampler_with_cfg(pipe):
    """w = 4: the one batched call of 2B rows gives the samplers' own two-call guidance."""
    z_T = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(2))
    x = pipe(PROMPTS, num_inference_steps=5, guidance_scale=4.0, latents=z_T)
    text_model = TextToImage(pipe.unet, pipe.text_encoder, pipe.tokenizer)   # cond=None is the empty prompt
    z_0 = sample_dpmpp_2m(text_model, z_T, pipe.schedule, 5, cond=text_model.cond(PROMPTS), guidance_scale=4.0,
                          prediction_type="v_prediction", clip_x0=False, progress=False)
    torch.testing.assert_close(x, decode(pipe.vae, z_0, pipe.scale_factor), rtol=0, atol=1e-4)
    assert not torch.allclose(x, pipe(PROMPTS, num_inference_steps=5, guidance_scale=1.0, latents=z_T), atol=1e-3)


def test_call_equals_the_algorithm_written_out(pipe):
    """Text to image by hand: tokens, CFG on v, x_0 from v, DPM-Solver++(2M) steps, the decoder."""
    steps, w = 7, 3.0
    z_T = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(3))
    negative = ["a small green cross at the bottom", "a large red circle at the top left"]
    with torch.no_grad():
        c = pipe.text_encoder(*pipe.tokenizer.encode(PROMPTS))
        c_neg = pipe.text_encoder(*pipe.tokenizer.encode(negative))
        ab = pipe.schedule.alphas_cumprod.double()
        times = vp_times(pipe.schedule, steps)
        z, last = z_T, None
        for k, t in enumerate(times):
            tt = torch.full((2,), t)
            v_c = pipe.unet(z, tt, {"context": c.tokens, "context_mask": c.mask})
            v_u = pipe.unet(z, tt, {"context": c_neg.tokens, "context_mask": c_neg.mask})
            v = v_u + w * (v_c - v_u)
            x_0 = x0_from_v(z, v, float(ab[t]))
            if k == len(times) - 1:
                z = x_0
            elif last is None or (k == len(times) - 2 and steps < 15):
                z = dpmpp_2m_step(z, x_0, float(ab[t]), float(ab[times[k + 1]]))
            else:
                z = dpmpp_2m_step(z, x_0, float(ab[t]), float(ab[times[k + 1]]), last[0], last[1])
            last = (x_0, float(ab[t]))
        expected = pipe.vae.decode(z / pipe.scale_factor).clamp(-1, 1)
    got = pipe(PROMPTS, num_inference_steps=steps, guidance_scale=w, negative_prompt=negative, latents=z_T)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-4)


def test_negative_prompt_changes_the_guided_images_only(pipe):
    z_T = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(4))
    plain = pipe(PROMPTS, num_inference_steps=4, guidance_scale=3, latents=z_T)
    empty = pipe(PROMPTS, num_inference_steps=4, guidance_scale=3, latents=z_T, negative_prompt="")
    other = pipe(PROMPTS, num_inference_steps=4, guidance_scale=3, latents=z_T, negative_prompt="a green cross")
    assert torch.equal(plain, empty)
    assert not torch.allclose(plain, other, atol=1e-3)
    unguided = pipe(PROMPTS, num_inference_steps=4, guidance_scale=1, latents=z_T)
    assert torch.equal(unguided, pipe(PROMPTS, num_inference_steps=4, guidance_scale=1, latents=z_T,
                                      negative_prompt="a green cross"))


def test_guided_prediction_formula(pipe):
    z = torch.randn(2, 4, 8, 8)
    t = torch.tensor([900, 100])
    c, u = pipe.encode_prompt(PROMPTS), pipe.encode_prompt(["", ""])
    with torch.no_grad():
        out_c, out_u = pipe.unet(z, t, c), pipe.unet(z, t, u)
        torch.testing.assert_close(guided_prediction(pipe.unet, z, t, c, u, 2.5), out_u + 2.5 * (out_c - out_u),
                                   rtol=0, atol=1e-5)
        assert torch.equal(guided_prediction(pipe.unet, z, t, c, u, 1.0), out_c)


def test_training_loss_is_the_latent_loss_with_dropped_captions(pipe):
    x_0 = torch.rand(3, 3, 32, 32) * 2 - 1
    captions = [PROMPTS[0], PROMPTS[1], "a large green cross at the bottom right"]
    u = torch.tensor([0.5, 0.05, 0.9])                    # the second caption dropped at p_uncond = 0.1
    loss = training_loss(pipe.unet, pipe.text_encoder, pipe.tokenizer, pipe.vae, x_0, captions, pipe.schedule,
                         pipe.scale_factor, p_uncond=0.1, u=u, generator=torch.Generator().manual_seed(7))
    z_0 = encode(pipe.vae, x_0, pipe.scale_factor)
    with torch.no_grad():
        cond = pipe.text_encoder(*pipe.tokenizer.encode([captions[0], "", captions[2]])).cond()
    expected = diffusion_loss(pipe.unet, z_0, pipe.schedule, prediction_type="v_prediction", cond=cond,
                              generator=torch.Generator().manual_seed(7), min_snr_gamma=5.0)
    torch.testing.assert_close(loss, expected)
    assert loss.requires_grad and math.isfinite(loss.item())
    ids, mask = drop_captions(*pipe.tokenizer.encode(captions), 0.1, pipe.tokenizer, u=u)
    assert pipe.tokenizer.decode(ids, mask) == [captions[0], "", captions[2]]


@pytest.mark.parametrize("kwargs, error, words", [
    (dict(prompt=""), None, None),                                    # the empty prompt is a prompt
    (dict(prompt=[]), TypeError, "prompt"),
    (dict(prompt=3), TypeError, "prompt"),
    (dict(prompt=["a red circle", 4]), TypeError, "prompt"),
    (dict(prompt="a purple circle"), ValueError, "prompt[0]: unknown word 'purple'"),
    (dict(prompt="a red circle", num_inference_steps=0), ValueError, "num_inference_steps"),
    (dict(prompt="a red circle", num_inference_steps=2.5), TypeError, "num_inference_steps"),
    (dict(prompt="a red circle", guidance_scale="3"), TypeError, "guidance_scale"),
    (dict(prompt="a red circle", guidance_scale=float("nan")), TypeError, "guidance_scale"),
    (dict(prompt=PROMPTS, negative_prompt=["", "", ""]), ValueError, "negative_prompt"),
    (dict(prompt="a red circle", negative_prompt="a plaid square"), ValueError, "negative_prompt[0]"),
    (dict(prompt="a red circle", num_images_per_prompt=0), ValueError, "num_images_per_prompt"),
    (dict(prompt="a red circle", generator=0), TypeError, "generator"),
    (dict(prompt="a red circle", latents=torch.randn(1, 3, 8, 8)), ValueError, "latents"),
    (dict(prompt="a red circle", num_images_per_prompt=2, latents=torch.randn(1, 4, 8, 8)), ValueError, "latents"),
])
def test_bad_arguments_are_named(pipe, kwargs, error, words):
    kwargs = dict(num_inference_steps=2, **kwargs) if "num_inference_steps" not in kwargs else kwargs
    if error is None:
        assert pipe(**kwargs).shape == (1, 3, 32, 32)
        return
    with pytest.raises(error) as info:
        pipe(**kwargs)
    assert words in str(info.value)


def test_parts_must_fit():
    tok = Tokenizer.default()
    text_encoder = TextEncoder(TextEncoderConfig(vocab_size=len(tok), dim=16, depth=1, heads=2))
    vae = VAE(VAEConfig(base_channels=8, channel_mults=(1, 2, 2), groups=4))
    schedule = get_schedule("cosine", 1000)
    pixel_unet = UNet(UNetConfig(in_channels=3, base_channels=8, channel_mults=(1, 2), groups=4, context_dim=16))
    with pytest.raises(ValueError, match="unet: expected 4 input channels"):
        StableDiffusionMini(pixel_unet, vae, text_encoder, tok, schedule, scale_factor=1.0)
    wide = UNet(UNetConfig(in_channels=4, base_channels=8, channel_mults=(1, 2), groups=4, context_dim=32))
    with pytest.raises(ValueError, match="context_dim"):
        StableDiffusionMini(wide, vae, text_encoder, tok, schedule, scale_factor=1.0)
    unet = UNet(UNetConfig(in_channels=4, base_channels=8, channel_mults=(1, 2), groups=4, context_dim=16))
    with pytest.raises(ValueError, match="scale_factor"):
        StableDiffusionMini(unet, vae, text_encoder, tok, schedule, scale_factor=0.0)


def test_shipped_pipeline_follows_its_prompts():
    """sd1_shapes32 with its VAE and text encoder: 32 unseen shapes' captions at w = 3, DPM-Solver++(2M)-20.

    scripts/train_sd1.py measured 100% of 500 prompts followed in shape, colour and size at w = 3 (99.0% at w = 1);
    the bar of 90% (29 of 32) leaves room for the small sample, and the judge passes the real images of the same
    captions.
    """
    from dlcourse.conditioning import prompt_accuracy
    from dlcourse.data import make_shapes
    from dlcourse.judge import load_judge

    pipe = StableDiffusionMini.from_pretrained("sd1_shapes32", device="cpu")
    assert not pipe.training and not any(p.requires_grad for p in pipe.text_encoder.parameters())
    data = make_shapes(32, size=32, seed=7)
    judge = load_judge(16)
    x = pipe(data.captions, num_inference_steps=20, guidance_scale=3.0, generator=torch.Generator().manual_seed(0))
    assert prompt_accuracy(judge, x, data.captions).all >= 0.9
    assert prompt_accuracy(judge, data.images, data.captions).all >= 0.95
    # the prompt matters: the same noise with every caption's colour changed is read as the new colour
    other = [c.replace(c.split()[2], "green" if c.split()[2] != "green" else "red") for c in data.captions]
    assert prompt_accuracy(judge, pipe(other, num_inference_steps=20, guidance_scale=3.0,
                                       generator=torch.Generator().manual_seed(0)), other).color >= 0.9


def test_the_prompt_box_of_notebook_07a_samples_the_latent_pipeline(pipe):
    from dlcourse.plotting import image_grid
    from dlcourse.tensors import seeded_noise
    from dlcourse.widgets import png_bytes, prompt_box, prompt_samples

    x = prompt_samples(pipe, None, PROMPTS[0], 2.0, n=3, seed=4, steps=3)
    z_T = seeded_noise((3, 4, 8, 8), 4)
    assert torch.equal(x, pipe([PROMPTS[0]] * 3, num_inference_steps=3, guidance_scale=2.0, latents=z_T))
    box = prompt_box(pipe, pipe.schedule, prompt=PROMPTS[1], w=1.5, n=2, steps=2)
    assert box.label.value == f"{PROMPTS[1]}, w = 1.5"
    assert box.image.value == png_bytes(image_grid(prompt_samples(pipe, None, PROMPTS[1], 1.5, n=2, steps=2),
                                                   nrow=2), 520)
    box.text.value = "a purple circle"
    box.button.click()
    assert "does not know 'purple'" in box.label.value
    with pytest.raises(TypeError, match="pipe: expected a TextToImage .* or a StableDiffusionMini"):
        prompt_samples(torch.nn.Linear(2, 2), None, PROMPTS[0], 1.0)
