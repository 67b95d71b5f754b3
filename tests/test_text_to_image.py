"""Text to image (dlcourse.conditioning.text_to_image): caption dropout at its rate, the empty prompt as the
null condition, guidance through the samplers' model_output against the formula, the U-Net's attention maps,
the hold-out reaching the training batches, prompt_accuracy against real images with their own and with
mismatched captions, and the shipped model's prompt following."""

import math

import pytest
import torch

from dlcourse.conditioning import TextEncoder, TextEncoderConfig, Tokenizer
from dlcourse.conditioning import text_to_image as t2i
from dlcourse.conditioning.text_to_image import (TextToImage, caption_attributes, drop_captions, held_out,
                                                 prompt_accuracy, read_positions, text_batches,
                                                 train_text_to_image)
from dlcourse.data import make_shapes
from dlcourse.data.shapes import COLOR_NAMES, SHAPE_NAMES
from dlcourse.guidance import classifier_free_guidance
from dlcourse.models import UNet, UNetConfig
from dlcourse.pretrained import PRETRAINED, pretrained_path
from dlcourse.samplers import model_output
from dlcourse.schedules import cosine_schedule

pytestmark = pytest.mark.usefixtures("one_thread")


def small_pipe(seed=0, levels=1):
    """A small untrained pipe whose cross-attention is switched on (its zero-initialised outputs made
    non-zero), so the prediction depends on the caption."""
    tok = Tokenizer.default()
    torch.manual_seed(seed)
    encoder = TextEncoder(TextEncoderConfig(vocab_size=len(tok), max_length=tok.max_length, dim=32, depth=1))
    unet = UNet(UNetConfig(base_channels=16, channel_mults=(1, 2), context_dim=32, cross_attention_levels=levels))
    with torch.no_grad():
        for name, p in unet.named_parameters():
            if ".cross.proj" in name or "conv_out" in name or "conv2" in name:
                p.normal_(0, 0.2)
    return TextToImage(unet, encoder, tok).eval()


def test_caption_dropout_writes_the_empty_prompt_at_the_given_rate():
    tok = Tokenizer.default()
    captions = make_shapes(500, size=8, seed=0).captions * 20                  # 10,000 rows
    ids, mask = tok.encode(captions)
    torch.manual_seed(0)
    p = 0.15
    new_ids, new_mask = drop_captions(ids, mask, p, tok)
    empty_ids, empty_mask = tok.encode([""])
    dropped = (new_ids == empty_ids).all(1) & (new_mask == empty_mask).all(1)
    n = len(captions)
    assert abs(dropped.float().mean().item() - p) < 4 * math.sqrt(p * (1 - p) / n)    # binomial, 4 sigma
    kept = ~dropped
    assert torch.equal(new_ids[kept], ids[kept]) and torch.equal(new_mask[kept], mask[kept])
    assert tok.decode(new_ids[dropped], new_mask[dropped]) == [""] * int(dropped.sum())
    u = torch.tensor([0.0, 0.5, 0.99])                                          # u < p drops
    d_ids, _ = drop_captions(ids[:3], mask[:3], 0.5, tok, u=u)
    assert d_ids[0, 0] == tok.empty_id and torch.equal(d_ids[1:], ids[1:3])
    assert torch.equal(drop_captions(ids, mask, 0.0, tok)[0], ids)
    assert (drop_captions(ids, mask, 1.0, tok)[0] == empty_ids).all()
    with pytest.raises(ValueError, match=r"p_uncond: expected a probability in \[0, 1\], got 1.5"):
        drop_captions(ids, mask, 1.5, tok)


def test_text_batches_drop_captions_and_keep_pairs_together():
    tok = Tokenizer.default()
    data = make_shapes(64, size=8, seed=0)
    ids, mask = tok.encode(data.captions)
    torch.manual_seed(0)
    batch = next(text_batches(data.images, ids, mask, batch_size=4000, p_uncond=0.2, tokenizer=tok))
    decoded = tok.decode(batch["ids"], batch["mask"])
    assert abs(decoded.count("") / 4000 - 0.2) < 4 * math.sqrt(0.16 / 4000)
    for image, caption in zip(batch["x_0"][:200], decoded[:200]):            # each caption with its image
        if caption:
            i = data.captions.index(caption)
            assert any(torch.equal(image, data.images[j]) for j in range(64) if data.captions[j] == caption), i


def test_the_null_condition_is_the_empty_prompt_encoding():
    pipe = small_pipe()
    x = torch.randn(3, 3, 16, 16)
    t = torch.tensor([10, 500, 900])
    empty = pipe.text_encoder(*pipe.tokenizer.encode(["", "", ""])).cond()
    assert pipe.tokenizer.encode([""])[0][0, 0] == pipe.tokenizer.empty_id
    with torch.no_grad():
        assert torch.equal(pipe(x, t, None), pipe.unet(x, t, empty))
        # the empty prompt is not "no cross-attention": the U-Net without context answers otherwise
        assert not torch.allclose(pipe(x, t, None), pipe.unet(x, t, None), atol=1e-4)


def test_guidance_through_the_samplers_is_the_formula():
    pipe = small_pipe()
    x = torch.randn(2, 3, 16, 16)
    cond = pipe.cond(["a small red circle at the top left", "a large blue square on the right"])
    with torch.no_grad():
        out_cond, out_uncond = pipe(x, 300, cond), pipe(x, 300, None)
        assert not torch.allclose(out_cond, out_uncond, atol=1e-4)               # the caption matters
        assert torch.equal(model_output(pipe, x, 300, cond, guidance_scale=1.0), out_cond)
        assert torch.equal(model_output(pipe, x, 300, cond, guidance_scale=0.0), out_uncond)
        guided = model_output(pipe, x, 300, cond, guidance_scale=3.0)
        torch.testing.assert_close(guided, out_uncond + 3.0 * (out_cond - out_uncond))
        torch.testing.assert_close(guided, classifier_free_guidance(out_uncond, out_cond, 3.0))


@pytest.mark.parametrize("levels, blocks", [(1, 3), (2, 5)])
def test_attention_maps_sum_to_one_over_the_words_and_leave_padding_out(levels, blocks):
    pipe = small_pipe(levels=levels)
    captions = ["a red circle", "a small blue cross at the top left"]
    x = torch.randn(2, 3, 16, 16)
    out, maps = pipe.unet.cross_attention_maps(x, 200, pipe.cond(captions))
    assert len(maps) == blocks                         # down, middle and up at 8x8 (and down, up at 16x16 too)
    assert {m.shape[-1] for m in maps.values()} == ({8} if levels == 1 else {8, 16})
    for m in maps.values():
        assert m.shape[:2] == (2, pipe.tokenizer.max_length)
        torch.testing.assert_close(m.sum(1), torch.ones(2, *m.shape[2:]))       # over the tokens
        assert (m[0, 3:] == 0).all() and (m[1, 8:] == 0).all()                   # padding gets nothing
    with torch.no_grad():
        torch.testing.assert_close(out, pipe.unet(x, 200, pipe.cond(captions)))   # weights path == fused path
    assert pipe.attention_maps(x, 200, captions).keys() == maps.keys()


def test_hold_out_removes_exactly_the_combinations_from_training(monkeypatch):
    data = make_shapes(3000, size=8, seed=0)
    blue, triangle = COLOR_NAMES.index("blue"), SHAPE_NAMES.index("triangle")
    expected = (data.colors == blue) & (data.labels == triangle)
    assert torch.equal(held_out(data.captions, ["blue triangle"]), expected)
    small_left = held_out(data.captions, ["small cross left", "red square"])
    assert torch.equal(small_left, ((data.labels == SHAPE_NAMES.index("cross")) & (data.scales == 0)
                                    & (data.positions % 3 == 0))
                       | ((data.labels == SHAPE_NAMES.index("square")) & (data.colors == 0)))
    seen = []

    def fake_fit(model, batches, loss_fn, config):             # look at what training would see
        batches = iter(batches)
        for _ in range(20):
            b = next(batches)
            seen.extend(model.tokenizer.decode(b["ids"], b["mask"]))
        return None

    monkeypatch.setattr(t2i, "fit", fake_fit)
    torch.manual_seed(0)
    train_text_to_image(small_pipe(), data.images, data.captions, cosine_schedule(1000), p_uncond=0.1,
                        hold_out=["blue triangle"], batch_size=256)
    assert not any("blue" in c and "triangle" in c for c in seen)
    assert any("blue" in c for c in seen) and any("triangle" in c for c in seen)
    assert 0.07 < seen.count("") / len(seen) < 0.13
    with pytest.raises(ValueError, match="hold_out.*removes every training caption"):
        train_text_to_image(small_pipe(), data.images, data.captions, cosine_schedule(1000), hold_out=["a"])


def test_read_positions_and_caption_attributes_agree_with_the_data():
    data = make_shapes(1000, size=16, seed=3)
    assert torch.equal(read_positions(data.images), data.positions)
    attributes = caption_attributes(data.captions)
    for key, truth in (("shape", data.labels), ("color", data.colors), ("scale", data.scales),
                       ("position", data.positions)):
        assert torch.equal(attributes[key], truth), key
    assert read_positions(torch.full((1, 3, 16, 16), -0.84))[0] == -1     # the background alone: no shape
    assert caption_attributes(["a red circle"])["position"][0] == -1


def test_prompt_accuracy_is_high_with_own_captions_and_low_with_mismatched_ones():
    from dlcourse.judge import load_judge
    judge = load_judge(16)
    data = make_shapes(256, size=16, seed=4)
    own = prompt_accuracy(judge, data.images, data.captions)
    assert own.all >= 0.98 and own.all_with_position >= 0.98 and own.n == 256
    rolled = [data.captions[(i + 1) % 256] for i in range(256)]            # another image's caption
    other = prompt_accuracy(judge, data.images, rolled)
    assert other.all <= 0.1 and other.position <= 0.25                     # chance: 1/48 and 1/9
    as_dict = prompt_accuracy(judge, data.images, {"shape": data.labels, "color": data.colors,
                                                   "scale": data.scales, "position": data.positions})
    assert as_dict == own
    with pytest.raises(ValueError, match="every prompt must name a position"):
        prompt_accuracy(judge, data.images[:2], ["a small red circle", "a large blue square"])


def test_text_to_image_checks_its_parts():
    tok = Tokenizer.default()
    encoder = TextEncoder(TextEncoderConfig(vocab_size=len(tok), dim=32, depth=1))
    with pytest.raises(ValueError, match="unet: expected a U-Net with context_dim=32.*got context_dim=None"):
        TextToImage(UNet(UNetConfig(base_channels=16, channel_mults=(1, 2))), encoder, tok)
    with pytest.raises(TypeError, match="text_encoder: expected a TextEncoder, got str"):
        TextToImage(UNet(UNetConfig(base_channels=16, channel_mults=(1, 2), context_dim=32)), "clip", tok)
    pipe = small_pipe()
    assert not any(p.requires_grad for p in pipe.text_encoder.parameters())       # frozen
    assert all(p.requires_grad for p in pipe.unet.parameters())


SHIPPED = "shapes16_unet_text"


@pytest.mark.skipif(SHIPPED not in PRETRAINED or not pretrained_path(SHIPPED).is_file(),
                    reason="the text-conditioned U-Net is not shipped")
def test_the_shipped_text_model_follows_held_in_prompts():
    from dlcourse.judge import load_judge
    from dlcourse.samplers import sample_ddim
    from dlcourse.schedules import get_schedule
    pipe, info = t2i.load_text_to_image(SHIPPED, device="cpu")
    assert info["hold_out"] == ["blue triangle"] and info["text_encoder"] == "clip_shapes16"
    data = make_shapes(96, size=16, seed=11)
    prompts = [c for c, h in zip(data.captions, held_out(data.captions, info["hold_out"]).tolist()) if not h][:64]
    x_T = torch.randn(len(prompts), 3, 16, 16, generator=torch.Generator().manual_seed(0))
    x = sample_ddim(pipe, x_T, get_schedule(info["schedule"], info["T"]), 20, cond=pipe.cond(prompts),
                    guidance_scale=3.0, prediction_type=info["prediction_type"], progress=False)
    accuracy = prompt_accuracy(load_judge(16), x, prompts)
    # Measured: 64 of 64 right in shape, colour and size, and in place too (1.000, 1.000); at w = 1 0.984
    # and 0.969. The bar of 0.9 (58 of 64) is the target, with room for other PyTorch builds.
    assert accuracy.all >= 0.9 and accuracy.all_with_position >= 0.9, accuracy


def test_a_clip_saves_and_loads_as_one_model(tmp_path):
    from dlcourse.checkpoints import build_model, load_checkpoint, save_checkpoint
    from dlcourse.conditioning import CLIP, ImageEncoder, ImageEncoderConfig
    tok = Tokenizer.default()
    clip = CLIP(TextEncoder(TextEncoderConfig(vocab_size=len(tok), dim=32, depth=1, embed_dim=16)),
                ImageEncoder(ImageEncoderConfig(channels=(8, 16, 16), embed_dim=16)))
    save_checkpoint(tmp_path / "clip.pt", clip)
    loaded = build_model(load_checkpoint(tmp_path / "clip.pt"))
    assert type(loaded) is CLIP and loaded.image_encoder.config.channels == (8, 16, 16)
    for (k, a), (_, b) in zip(clip.state_dict().items(), loaded.state_dict().items()):
        assert torch.equal(a, b), k


def test_matched_real_sets_pairs_each_prompt_with_another_image_of_its_caption():
    from dlcourse.conditioning.text_to_image import matched_real_sets
    from dlcourse.data import make_shapes

    prompts, real_a, real_b = matched_real_sets(40, ["blue triangle"], pool_size=4000)
    data = make_shapes(80, size=16, seed=2)
    assert len(prompts) == 40 and real_a.shape == real_b.shape == (40, 3, 16, 16)
    assert not any("blue triangle" in c for c in prompts)
    own = {tuple(im.flatten().tolist()): c for im, c in zip(data.images, data.captions)}
    assert [own[tuple(im.flatten().tolist())] for im in real_a] == prompts          # real_a: the prompts' own images
    pool = make_shapes(4000, size=16, seed=4)
    index = {tuple(im.flatten().tolist()): k for k, im in enumerate(pool.images)}
    picked = [index[tuple(im.flatten().tolist())] for im in real_b]
    assert [pool.captions[k] for k in picked] == prompts                               # same caption, from the pool
    assert len(set(picked)) == len(picked)                                              # never the same image twice
    with pytest.raises(ValueError, match="pool_size"):
        matched_real_sets(40, ["blue triangle"], pool_size=10)
