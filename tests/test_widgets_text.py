"""Tests of dlcourse.widgets.text (notebook 07a): the prompt check naming the vocabulary, prompt_samples and
word_attention against the sampler and the U-Net's own maps, attention_image's layout, and the builders'
wiring headless and while grading."""

import io

import numpy as np
import pytest
import torch
from PIL import Image

from dlcourse.forward import q_sample
from dlcourse.plotting import image_grid
from dlcourse.samplers import sample_ddim
from dlcourse.schedules import cosine_schedule
from dlcourse.widgets import (SKIPPED, attention_image, attention_viewer, check_prompt, png_bytes, prompt_box,
                              prompt_samples, word_attention)
from test_text_to_image import small_pipe

pytestmark = pytest.mark.usefixtures("one_thread")
SCHEDULE = cosine_schedule(100)
PROMPT = "a large red circle at the top left"


@pytest.fixture(autouse=True)
def _quiet_env(monkeypatch):
    monkeypatch.delenv("NBGRADER_EXECUTION", raising=False)
    monkeypatch.delenv("DLCOURSE_FAST", raising=False)


@pytest.fixture(scope="module")
def pipe():
    return small_pipe(levels=2)


def _png(image_widget):
    return np.asarray(Image.open(io.BytesIO(image_widget.value)))


def test_check_prompt_names_the_vocabulary(pipe):
    assert check_prompt(pipe.tokenizer, "  A large  RED circle ") == "a large red circle"
    assert check_prompt(pipe.tokenizer, "") == ""
    with pytest.raises(ValueError, match=r"does not know 'purple', 'hexagon'; it knows only these words: a small "
                                         r"large red green blue"):
        check_prompt(pipe.tokenizer, "a purple hexagon")
    with pytest.raises(ValueError, match="at most 16 words"):
        check_prompt(pipe.tokenizer, " ".join(["red"] * 17))
    with pytest.raises(TypeError, match="prompt: expected a string"):
        check_prompt(pipe.tokenizer, ["a red circle"])


def test_prompt_samples_are_ddim_from_the_seeded_noise(pipe):
    x = prompt_samples(pipe, SCHEDULE, PROMPT, 2.0, n=3, seed=5, steps=4, image_size=8)
    x_T = torch.randn((3, 3, 8, 8), generator=torch.Generator().manual_seed(5))
    expected = sample_ddim(pipe, x_T, SCHEDULE, 4, cond=pipe.cond([PROMPT] * 3), guidance_scale=2.0,
                           prediction_type="v_prediction", progress=False)
    assert x.shape == (3, 3, 8, 8) and x.dtype == torch.float32
    torch.testing.assert_close(x, expected)
    other = prompt_samples(pipe, SCHEDULE, "a small blue square", 2.0, n=3, seed=5, steps=4, image_size=8)
    assert (other - x).abs().mean() > 1e-3, "another prompt, other samples"
    with pytest.raises(ValueError, match="does not know 'purple'"):
        prompt_samples(pipe, SCHEDULE, "a purple circle", 2.0)
    with pytest.raises(TypeError, match="pipe"):
        prompt_samples(torch.nn.Linear(2, 2), SCHEDULE, PROMPT, 2.0)


def test_word_attention_reads_the_unets_maps_of_the_noised_sample(pipe):
    attn = word_attention(pipe, SCHEDULE, PROMPT, w=2.0, block="up.0.attn.0", t=40, seed=3, steps=4, image_size=8)
    assert attn.words == PROMPT.split() and attn.block == "up.0.attn.0" and attn.t == 40
    x = prompt_samples(pipe, SCHEDULE, PROMPT, 2.0, n=1, seed=3, steps=4, image_size=8)
    torch.testing.assert_close(attn.sample, x[0])
    t = torch.full((1,), 40)
    x_t = q_sample(x, t, SCHEDULE, torch.randn(x.shape, generator=torch.Generator().manual_seed(4)))
    maps = pipe.attention_maps(x_t, t, [PROMPT])["up.0.attn.0"][0]                 # (L, h, w)
    assert attn.maps.shape == (8, *maps.shape[1:])
    torch.testing.assert_close(attn.maps, maps[:8])
    torch.testing.assert_close(attn.maps.sum(0), torch.ones(maps.shape[1:]), msg="8 real words of 8: they sum to 1")
    assert word_attention(pipe, SCHEDULE, "", t=40, steps=2, image_size=8, block="up.0.attn.0").words == ["<empty>"]
    with pytest.raises(ValueError, match="block"):
        word_attention(pipe, SCHEDULE, PROMPT, block="nowhere", t=40, steps=2, image_size=8)
    with pytest.raises(ValueError, match="t"):
        word_attention(pipe, SCHEDULE, PROMPT, t=100, steps=2, image_size=8)


def test_attention_image_puts_the_sample_left_and_the_map_right():
    sample = torch.rand(3, 8, 8) * 2 - 1
    word_map = torch.zeros(4, 4)
    word_map[1, 2] = 0.7                                                       # one bright cell
    out = attention_image(sample, word_map)
    assert out.shape == (3, 8, 17)
    torch.testing.assert_close(out[:, :, :8], sample)
    assert (out[:, :, 8] == 1).all(), "a white gap"
    heat = out[:, :, 9:].sum(0)                                                # (8, 8) brightness
    bright = heat == heat.max()
    assert bright[2:4, 4:6].all() and bright.sum() == 4, "the cell enlarged 2x2, nearest"
    assert torch.equal(attention_image(sample, word_map * 3), out), "scaled to the map's own maximum"
    with pytest.raises(ValueError, match="word_map"):
        attention_image(sample, torch.zeros(3, 3))
    with pytest.raises(ValueError, match="sample"):
        attention_image(torch.zeros(1, 8, 8), word_map)


class FakeJudge:
    def predict(self, x):
        valid = torch.zeros(x.shape[0], dtype=torch.bool)
        valid[0] = True
        return {"valid": valid}


def test_prompt_box_builds_headless_and_answers_an_unknown_word_with_the_vocabulary(pipe):
    box = prompt_box(pipe, SCHEDULE, prompt=PROMPT, w=2.0, n=3, steps=3, judge=FakeJudge())
    assert box.label.value == f"{PROMPT}, w = 2: the judge accepts 1 of 3 as a clean shape"
    x = prompt_samples(pipe, SCHEDULE, PROMPT, 2.0, n=3, steps=3)
    assert box.image.value == png_bytes(image_grid(x, nrow=3), 520), "the image is prompt_samples'"
    first = box.image.value
    box.text.value = "a purple circle"
    box.button.click()
    assert "does not know 'purple'" in box.label.value and "it knows only these words" in box.label.value
    assert box.image.value == first, "no new picture for an unknown word"
    box.text.value = "a small blue square"
    box.slider.value = 4.0
    box.button.click()
    assert box.label.value.startswith("a small blue square, w = 4") and box.image.value != first


def test_attention_viewer_switches_words_blocks_and_t(pipe):
    box = attention_viewer(pipe, SCHEDULE, prompt=PROMPT, block="up.0.attn.0", t=40, steps=2)
    assert [o[0] for o in box.word.options] == [f"{j}: {w}" for j, w in enumerate(PROMPT.split())]
    assert box.label.value.startswith("'a' in 'a large red circle at the top left': block up.0.attn.0")
    first = _png(box.image)
    box.word.value = 2
    assert box.label.value.startswith("'red' in") and not np.array_equal(_png(box.image), first)
    attn = word_attention(pipe, SCHEDULE, PROMPT, block="up.0.attn.0", t=40, steps=2, w=3.0)
    assert box.image.value == png_bytes(attention_image(attn.sample, attn.maps[2]), 320)
    box.block.value = "mid_attn"
    assert "block mid_attn" in box.label.value
    box.text.value = "a green cross"
    box.button.click()
    assert [o[0] for o in box.word.options] == ["0: a", "1: green", "2: cross"]
    box.text.value = "a purple cross"
    box.button.click()
    assert "does not know 'purple'" in box.label.value


def test_builders_check_their_arguments_and_are_inert_while_grading(pipe, monkeypatch, capsys):
    with pytest.raises(ValueError, match="does not know"):
        prompt_box(pipe, SCHEDULE, prompt="a purple circle")
    with pytest.raises(ValueError, match="block"):
        attention_viewer(pipe, SCHEDULE, block="nowhere")
    with pytest.raises(TypeError, match="pipe"):
        prompt_box(torch.nn.Linear(2, 2), SCHEDULE)
    monkeypatch.setenv("NBGRADER_EXECUTION", "autograde")
    assert prompt_box(pipe, SCHEDULE) is None and attention_viewer(pipe, SCHEDULE) is None
    assert capsys.readouterr().out.count(SKIPPED) == 2
