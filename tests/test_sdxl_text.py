"""SDXL's two text encoders (dlcourse.systems.sdxl_text)."""

import pytest
import torch

from dlcourse.conditioning import TextEncoder, TextEncoderConfig, Tokenizer
from dlcourse.models import UNet, UNetConfig
from dlcourse.samplers import sample_ddim
from dlcourse.schedules import get_schedule
from dlcourse.systems.sdxl_text import DualTextUNet, SDXLTextToImage, dual_text_embeddings

PROMPTS = ["a small red circle at the top left", "a large blue square in the centre"]


def randomise_zeros(module):
    """Give a fresh network's zero-initialised layers (cross-attention out, add_embedding) random weights."""
    with torch.no_grad():
        for p in module.parameters():
            if p.ndim > 1 and not p.any():
                p.normal_(std=0.1)
    return module


def tiny_pipe(seed=0, d1=16, d2=8):
    torch.manual_seed(seed)
    tok = Tokenizer.default()
    enc = TextEncoder(TextEncoderConfig(vocab_size=len(tok), max_length=tok.max_length, dim=d1, depth=1, heads=2))
    enc_2 = TextEncoder(TextEncoderConfig(vocab_size=len(tok), max_length=tok.max_length, dim=d2, depth=1, heads=2))
    unet = UNet(UNetConfig(base_channels=16, channel_mults=(1, 2), attention=False, context_dim=d1 + d2,
                           cross_attention_levels=1))
    return SDXLTextToImage(randomise_zeros(DualTextUNet(unet, d2)), enc, enc_2, tok).eval()


def test_dual_text_embeddings_concatenates_features_and_pools_real_tokens():
    B, L = 3, 5
    tokens, tokens_2 = torch.randn(B, L, 4), torch.randn(B, L, 6)
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 0, 0, 0], [1, 0, 0, 0, 0]], dtype=torch.bool)
    prompt_embeds, pooled = dual_text_embeddings(tokens, tokens_2, mask)
    assert prompt_embeds.shape == (B, L, 10) and pooled.shape == (B, 6)
    assert torch.equal(prompt_embeds[..., :4], tokens) and torch.equal(prompt_embeds[..., 4:], tokens_2)
    for b in range(B):                                   # independent: a loop over each caption's real tokens
        n = int(mask[b].sum())
        assert torch.allclose(pooled[b], tokens_2[b, :n].mean(dim=0), atol=1e-6)
    # what the padding holds changes nothing
    noisy = tokens_2.clone()
    noisy[~mask] = 100.0
    assert torch.allclose(dual_text_embeddings(tokens, noisy, mask)[1], pooled, atol=1e-5)


def test_dual_text_embeddings_errors():
    t, t2, m = torch.randn(2, 5, 4), torch.randn(2, 5, 6), torch.ones(2, 5, dtype=torch.bool)
    with pytest.raises(ValueError, match="tokens_2"):
        dual_text_embeddings(t, torch.randn(2, 4, 6), m)                # another length
    with pytest.raises(ValueError, match="tokens"):
        dual_text_embeddings(torch.randn(2, 5), t2, m)
    with pytest.raises(ValueError, match="mask"):
        dual_text_embeddings(t, t2, m[:, :4])
    with pytest.raises(TypeError, match="mask"):
        dual_text_embeddings(t, t2, m.float())
    m0 = m.clone()
    m0[1] = False
    with pytest.raises(ValueError, match="mask"):
        dual_text_embeddings(t, t2, m0)


def test_pooled_is_the_second_encoders_own_embedding():
    pipe = tiny_pipe()
    ids, mask = pipe.tokenizer.encode(PROMPTS)
    cond = pipe.encode_ids(ids, mask)
    assert cond["context"].shape == (2, ids.shape[1], 24) and cond["text_embeds"].shape == (2, 8)
    assert torch.allclose(cond["text_embeds"], pipe.text_encoder_2(ids, mask).pooled, atol=1e-6)
    assert torch.equal(cond["context_mask"], mask)


def test_each_encoder_reaches_the_output():
    pipe = tiny_pipe()
    x, t = torch.randn(2, 3, 16, 16), torch.tensor([300, 700])
    with torch.no_grad():
        base = pipe(x, t, pipe.cond(PROMPTS))
        for enc in (pipe.text_encoder, pipe.text_encoder_2):
            saved = enc.token_emb.weight.clone()
            enc.token_emb.weight.add_(0.5 * torch.randn_like(saved))
            assert (pipe(x, t, pipe.cond(PROMPTS)) - base).abs().max() > 1e-3
            enc.token_emb.weight.copy_(saved)
        # the pooled embedding alone reaches it too, through the time embedding
        cond = pipe.cond(PROMPTS)
        moved = pipe(x, t, {**cond, "text_embeds": cond["text_embeds"] + 1.0})
        assert (moved - base).abs().max() > 1e-3
        # and a fresh add_embedding (last layer zero) leaves the U-Net as it was
        fresh = DualTextUNet(pipe.net.unet, 8)
        assert torch.allclose(fresh(x, t, cond), pipe.net.unet(x, t, {k: cond[k] for k in ("context", "context_mask")}))


def test_padding_does_not_change_the_prediction():
    pipe = tiny_pipe()
    ids, mask = pipe.tokenizer.encode(PROMPTS)
    assert not bool(mask.all())
    other = ids.clone()
    other[~mask] = 3                                     # another token in every padded place
    x, t = torch.randn(2, 3, 16, 16), torch.tensor([100, 900])
    with torch.no_grad():
        assert torch.allclose(pipe(x, t, pipe.encode_ids(ids, mask)), pipe(x, t, pipe.encode_ids(other, mask)),
                              atol=1e-5)


def test_an_ordinary_cond_for_sampling_and_guidance():
    pipe = tiny_pipe()
    x, t = torch.randn(2, 3, 16, 16), torch.tensor([500, 500])
    with torch.no_grad():
        assert torch.allclose(pipe(x, t), pipe(x, t, pipe.cond(["", ""])))          # None: the empty prompt
    schedule = get_schedule("cosine", 1000)
    x_T = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    cond = pipe.cond(PROMPTS)
    a = sample_ddim(pipe, x_T, schedule, 3, cond=cond, guidance_scale=3.0, prediction_type="v_prediction")
    b = sample_ddim(pipe, x_T, schedule, 3, cond=cond, guidance_scale=1.0, prediction_type="v_prediction")
    assert a.shape == (2, 3, 16, 16) and not torch.allclose(a, b)
    img = pipe.generate(PROMPTS[0], 2, generator=torch.Generator().manual_seed(0))
    assert img.shape == (1, 3, 16, 16) and img.abs().max() <= 1
    assert torch.equal(img, pipe.generate([PROMPTS[0]], 2, generator=torch.Generator().manual_seed(0)))


def test_errors_name_the_argument():
    pipe = tiny_pipe()
    tok = pipe.tokenizer
    with pytest.raises(ValueError, match="context_dim=24"):
        unet = UNet(UNetConfig(base_channels=16, channel_mults=(1, 2), attention=False, context_dim=16))
        SDXLTextToImage(DualTextUNet(unet, 8), pipe.text_encoder, pipe.text_encoder_2, tok)
    with pytest.raises(ValueError, match="pooled_dim=8"):
        SDXLTextToImage(DualTextUNet(pipe.net.unet, 16), pipe.text_encoder, pipe.text_encoder_2, tok)
    with pytest.raises(TypeError, match="text_encoder_2"):
        SDXLTextToImage(pipe.net, pipe.text_encoder, pipe.net, tok)
    with pytest.raises(TypeError, match="unet"):
        DualTextUNet(UNet(UNetConfig(base_channels=16, channel_mults=(1, 2))), 8)
    with pytest.raises(TypeError, match="captions"):
        pipe.cond("a red circle")
    x, t = torch.randn(2, 3, 16, 16), torch.tensor([1, 2])
    cond = pipe.cond(PROMPTS)
    with pytest.raises(ValueError, match="text_embeds"):
        pipe.net(x, t, {k: cond[k] for k in ("context", "context_mask")})
    with pytest.raises(ValueError, match="text_embeds"):
        pipe.net(x, t, {**cond, "text_embeds": cond["text_embeds"][:, :4]})


def test_config_round_trip():
    pipe = tiny_pipe()
    net = DualTextUNet.from_config(pipe.net.get_config())
    net.load_state_dict(pipe.net.state_dict())
    x, t, cond = torch.randn(2, 3, 16, 16), torch.tensor([10, 20]), pipe.cond(PROMPTS)
    with torch.no_grad():
        assert torch.allclose(net.eval()(x, t, cond), pipe.net(x, t, cond))


def test_the_shipped_model_follows_prompts_with_both_encoders():
    from dlcourse.conditioning import held_out, prompt_accuracy
    from dlcourse.data import make_shapes
    from dlcourse.judge import load_judge
    from dlcourse.pretrained import load_pretrained
    from dlcourse.systems.sdxl_text import load_sdxl_text_to_image

    pipe, info = load_sdxl_text_to_image(device="cpu")
    assert (pipe.text_encoder.config.dim, pipe.text_encoder_2.config.dim) == (64, 32)
    assert info["text_encoder_2_sha256"] == load_pretrained("clip_shapes16_small", device="cpu")[1]["sha256"]
    data = make_shapes(24, size=16, seed=3)
    prompts = [c for c, h in zip(data.captions, held_out(data.captions, info["hold_out"]).tolist()) if not h][:16]
    x = pipe.generate(prompts, 20, 3.0, generator=torch.Generator().manual_seed(0))
    assert prompt_accuracy(load_judge(16), x, prompts).all >= 0.8          # 98-100% measured on 247 prompts
