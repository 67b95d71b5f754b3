"""A prompt box and a per-word attention viewer for a text-to-image model (notebook 07a).

Plain, tested computations sit under one-line builders:

    check_prompt(tokenizer, prompt)                   -> the prompt, or an error naming the vocabulary
    prompt_samples(pipe, schedule, prompt, w)         -> (n, 3, H, W) samples of one prompt at guidance w
    word_attention(pipe, schedule, prompt)            -> a sample, its words and each word's attention map
    attention_image(sample, word_map)                 -> the sample beside one word's map, as one image
    prompt_box(pipe, schedule)                        -> a text box, a w slider and a Generate button
    attention_viewer(pipe, schedule)                  -> a prompt, a word menu, a block menu and t

``pipe`` is a ``dlcourse.conditioning.TextToImage`` (``load_text_to_image``); the samples are DDIM
from noise drawn on the CPU from ``seed``, so a seed shows the same picture for every prompt and
every w. ``prompt_samples`` and ``prompt_box`` also take the latent pipeline of notebook 10a
(``dlcourse.systems.StableDiffusionMini``): its own call, from latent noise drawn from ``seed``. A prompt
is made of the captions' words; an unknown word is answered with a message naming the words the
model knows, never with a picture. While nbgrader executes a notebook
(``dlcourse.fast.grading()``) the builders build nothing: they print one line and return None.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..device import model_device
from ..fast import pick
from ..forward import q_sample
from ..plotting import image_grid
from ..samplers import sample_ddim
from ..schedules import NoiseSchedule
from ..tensors import seeded_noise
from ..validation import check_choice, check_int, check_number, check_positive, check_schedule
from ._base import check_image, image_widget, png_bytes, set_png, skip_while_grading

__all__ = ["WordAttention", "attention_image", "attention_viewer", "check_prompt", "prompt_box", "prompt_samples",
           "word_attention"]


def _check_pipe(pipe):
    from ..conditioning.text_to_image import TextToImage

    if not isinstance(pipe, TextToImage):
        raise TypeError(f"pipe: expected a TextToImage (dlcourse.conditioning.load_text_to_image), "
                        f"got {type(pipe).__name__}")
    return pipe


def _check_prompt_pipe(pipe):
    """A ``TextToImage`` or a ``StableDiffusionMini``: what ``prompt_samples`` can sample."""
    from ..conditioning.text_to_image import TextToImage
    from ..systems.sd1 import StableDiffusionMini

    if not isinstance(pipe, (TextToImage, StableDiffusionMini)):
        raise TypeError(f"pipe: expected a TextToImage (dlcourse.conditioning.load_text_to_image) or a "
                        f"StableDiffusionMini (dlcourse.systems), got {type(pipe).__name__}")
    return pipe


def _cross_blocks(pipe) -> list:
    """Names of the U-Net's blocks with cross-attention (the keys of ``pipe.attention_maps``)."""
    from ..models.unet import SpatialAttention

    return [name for name, m in pipe.unet.named_modules() if isinstance(m, SpatialAttention) and m.cross is not None]


def check_prompt(tokenizer, prompt) -> str:
    """``prompt`` with its words separated by single spaces, if the tokenizer knows every word.

    Raises:
        TypeError: ``prompt`` is not a string.
        ValueError: a word is not in the vocabulary (the message lists the vocabulary), or the
            prompt has more words than the tokenizer's ``max_length``.
    """
    if not isinstance(prompt, str):
        raise TypeError(f"prompt: expected a string such as 'a small red circle at the top left', "
                        f"got {type(prompt).__name__}")
    words = prompt.lower().split()
    known = tokenizer.vocab[2:]                                 # after <pad> and <empty>
    unknown = [w for w in words if w not in known]
    if unknown:
        listed = ", ".join(repr(w) for w in unknown)
        raise ValueError(f"prompt: the model does not know {listed}; it knows only these words: {' '.join(known)}")
    if len(words) > tokenizer.max_length:
        raise ValueError(f"prompt: expected at most {tokenizer.max_length} words, got {len(words)}")
    return " ".join(words)


@torch.no_grad()
def prompt_samples(pipe, schedule: NoiseSchedule, prompt: str, w: float, *, n: int = 8, seed: int = 0,
                   steps: int = 20, prediction_type: str = "v_prediction", image_size: int = 16) -> torch.Tensor:
    """``n`` samples of one prompt with classifier-free guidance of scale ``w`` (the empty prompt as null).

    ``x_T`` from ``seed`` (the same for every prompt and every ``w``), then DDIM with ``steps`` steps
    and ``guidance_scale = w`` (0 the empty prompt's model, 1 no guidance). For a ``StableDiffusionMini``
    the pipeline's own call (DPM-Solver++(2M) in latent space, then the decoder) from latents drawn
    from ``seed``; ``schedule``, ``prediction_type`` and ``image_size`` are then the pipeline's own.

    Returns:
        (n, 3, image_size, image_size) float32 on the CPU.
    """
    from ..systems.sd1 import StableDiffusionMini

    pipe = _check_prompt_pipe(pipe)
    prompt = check_prompt(pipe.tokenizer, prompt)
    w = check_number("w", w)
    check_positive("n", n, integer=True)
    check_positive("steps", steps, integer=True)
    if isinstance(pipe, StableDiffusionMini):
        z_T = seeded_noise((n, *pipe.vae.latent_shape), seed)
        return pipe([prompt] * n, num_inference_steps=steps, guidance_scale=w, latents=z_T).float().cpu()
    check_schedule("schedule", schedule)
    device = model_device(pipe)
    x_T = seeded_noise((n, 3, image_size, image_size), seed, device=device)
    x = sample_ddim(pipe, x_T, schedule, steps, cond=pipe.cond([prompt] * n), guidance_scale=w,
                    prediction_type=prediction_type, progress=False)
    return x.float().cpu()


@dataclass
class WordAttention:
    """What ``word_attention`` returns.

    Attributes:
        sample: (3, H, W) the sample.
        words: the prompt's words (``["<empty>"]`` for the empty prompt).
        maps: (len(words), h, w) each word's attention over the block's grid, averaged over heads.
        block: the U-Net block the maps come from.
        t: the timestep the sample was noised to.
    """

    sample: torch.Tensor
    words: list
    maps: torch.Tensor
    block: str
    t: int


@torch.no_grad()
def word_attention(pipe, schedule: NoiseSchedule, prompt: str, *, w: float = 3.0, block: str = "up.1.attn.0",
                   t: int = 300, seed: int = 0, steps: int = 20, prediction_type: str = "v_prediction",
                   image_size: int = 16) -> WordAttention:
    """Sample one image of ``prompt``, noise it to ``t`` and read where each word is attended to.

    The sample is ``prompt_samples(..., n=1)``; it is noised with ``q_sample`` (noise from
    ``seed + 1``) and ``pipe.attention_maps`` is read at ``block``.
    """
    pipe = _check_pipe(pipe)
    prompt = check_prompt(pipe.tokenizer, prompt)
    check_choice("block", block, _cross_blocks(pipe))
    t = check_int("t", t, minimum=0, maximum=schedule.T - 1)
    x = prompt_samples(pipe, schedule, prompt, w, n=1, seed=seed, steps=steps, prediction_type=prediction_type,
                       image_size=image_size)
    device = model_device(pipe)
    x = x.to(device)
    tt = torch.full((1,), t, device=device)
    x_t = q_sample(x, tt, schedule.to(device), seeded_noise(x.shape, seed + 1, device=device))
    maps = pipe.attention_maps(x_t, tt, [prompt])
    words = prompt.split() or ["<empty>"]
    return WordAttention(sample=x[0].cpu(), words=words, maps=maps[block][0, :len(words)].float().cpu(),
                         block=block, t=t)


def attention_image(sample, word_map: torch.Tensor, gap: int = 1) -> torch.Tensor:
    """The sample beside one word's attention map, as one (3, H, 2 W + gap) image in [-1, 1].

    The map is enlarged to the sample's size by whole pixels (nearest) and drawn in the colours of
    matplotlib's "magma", 0 black and the map's own maximum the brightest.
    """
    from matplotlib import colormaps

    sample = check_image("sample", sample, channels=(3,))
    if not isinstance(word_map, torch.Tensor) or word_map.ndim != 2:
        raise ValueError(f"word_map: expected a (h, w) tensor, got "
                         f"{tuple(word_map.shape) if isinstance(word_map, torch.Tensor) else type(word_map).__name__}")
    _, H, W = sample.shape
    h, w = word_map.shape
    if H % h or W % w:
        raise ValueError(f"word_map: expected a grid that divides the sample's {H}x{W}, got {h}x{w}")
    m = word_map.detach().float().cpu()
    m = (m / m.max()).clamp(0, 1) if float(m.max()) > 0 else m.clamp(0, 1)
    m = F.interpolate(m[None, None], size=(H, W), mode="nearest")[0, 0]            # (H, W)
    rgb = torch.from_numpy(colormaps["magma"](m.numpy())[..., :3]).float().permute(2, 0, 1)   # (3, H, W) in [0, 1]
    out = torch.ones(3, H, 2 * W + gap)
    out[:, :, :W] = sample.clamp(-1, 1)
    out[:, :, W + gap:] = 2 * rgb - 1
    return out


def prompt_box(pipe, schedule: NoiseSchedule, *, prediction_type: str = "v_prediction", judge=None,
               prompt: str = "a large red circle at the top left", w: float = 3.0, n: int = 8, seed: int = 0,
               steps: int | None = None, w_max: float = 10.0, display_size: int = 520):
    """A text box, a guidance slider and a Generate button: ``n`` samples of the prompt.

    Args:
        pipe, schedule, prediction_type, n, seed: as in :func:`prompt_samples`.
        judge: optional ``dlcourse.judge.Judge``: the caption then says how many samples it accepts
            as a clean shape.
        prompt, w: the starting prompt and guidance scale.
        steps: DDIM steps (20, or 4 in fast mode, by default).
        w_max: the slider's largest w.

    Returns:
        An ``ipywidgets.VBox`` with attributes ``text``, ``slider``, ``button``, ``label``, ``image``
        and ``generate()``; None while nbgrader executes the notebook.
    """
    if skip_while_grading():
        return None
    import ipywidgets as widgets

    pipe = _check_prompt_pipe(pipe)
    check_prompt(pipe.tokenizer, prompt)
    w = check_number("w", w, minimum=0.0, maximum=w_max)
    steps = pick(20, 4) if steps is None else steps
    text = widgets.Text(value=prompt, description="prompt", layout=widgets.Layout(width="420px"))
    slider = widgets.FloatSlider(value=w, min=0.0, max=w_max, step=0.5, description="w", readout_format=".1f")
    button = widgets.Button(description="Generate", button_style="primary")
    label = widgets.Label()
    image = image_widget()

    def generate(_=None):
        try:
            x = prompt_samples(pipe, schedule, text.value, float(slider.value), n=n, seed=seed, steps=steps,
                               prediction_type=prediction_type)
        except ValueError as error:
            label.value = str(error)
            return
        set_png(image, png_bytes(image_grid(x, nrow=n), display_size))
        caption = f"{check_prompt(pipe.tokenizer, text.value) or '(the empty prompt)'}, w = {slider.value:g}"
        if judge is not None:
            caption += f": the judge accepts {int(judge.predict(x)['valid'].sum())} of {n} as a clean shape"
        label.value = caption

    button.on_click(generate)
    generate()
    box = widgets.VBox([widgets.HBox([text, slider, button]), label, image])
    box.text, box.slider, box.button, box.label, box.image, box.generate = text, slider, button, label, image, generate
    return box


def attention_viewer(pipe, schedule: NoiseSchedule, *, prediction_type: str = "v_prediction",
                     prompt: str = "a large blue square at the bottom right", w: float = 3.0,
                     block: str = "up.1.attn.0", t: int = 300, seed: int = 0, steps: int | None = None,
                     display_size: int = 320):
    """Choose a word of a prompt and see where the U-Net reads it, beside the sample.

    Generate samples the prompt once (:func:`word_attention`); the word menu, the block menu and
    the t slider then redraw the map (a new t or block runs the network once more, not the sampler).

    Returns:
        An ``ipywidgets.VBox`` with attributes ``text``, ``button``, ``word``, ``block``, ``t``,
        ``label``, ``image``, ``generate()`` and ``redraw()``; None while nbgrader executes the notebook.
    """
    if skip_while_grading():
        return None
    import ipywidgets as widgets

    pipe = _check_pipe(pipe)
    check_prompt(pipe.tokenizer, prompt)
    steps = pick(20, 4) if steps is None else steps
    blocks = _cross_blocks(pipe)
    check_choice("block", block, blocks)
    text = widgets.Text(value=prompt, description="prompt", layout=widgets.Layout(width="420px"))
    button = widgets.Button(description="Generate", button_style="primary")
    word = widgets.Dropdown(description="word")
    block_menu = widgets.Dropdown(options=blocks, value=block, description="block")
    t_slider = widgets.IntSlider(value=t, min=0, max=schedule.T - 1, step=50, description="t",
                                 continuous_update=False)
    label = widgets.Label()
    image = image_widget()
    state = {}

    def compute():
        state["attn"] = word_attention(pipe, schedule, text.value, w=w, block=block_menu.value,
                                       t=int(t_slider.value), seed=seed, steps=steps,
                                       prediction_type=prediction_type)

    def redraw(_=None):
        attn = state.get("attn")
        if attn is None or word.value is None:
            return
        if attn.block != block_menu.value or attn.t != int(t_slider.value):
            compute()
            attn = state["attn"]
        j = int(word.value)
        set_png(image, png_bytes(attention_image(attn.sample, attn.maps[j]), display_size))
        label.value = (f"'{attn.words[j]}' in '{' '.join(attn.words)}': block {attn.block} "
                       f"({attn.maps.shape[-2]}x{attn.maps.shape[-1]}), t = {attn.t}; brightest = most attention")

    def generate(_=None):
        try:
            compute()
        except ValueError as error:
            label.value = str(error)
            return
        attn = state["attn"]
        word.unobserve(redraw, names="value")
        word.options = [(f"{j}: {wd}", j) for j, wd in enumerate(attn.words)]
        word.value = 0
        word.observe(redraw, names="value")
        redraw()

    button.on_click(generate)
    word.observe(redraw, names="value")
    block_menu.observe(redraw, names="value")
    t_slider.observe(redraw, names="value")
    generate()
    box = widgets.VBox([widgets.HBox([text, button]), widgets.HBox([word, block_menu, t_slider]), label, image])
    box.text, box.button, box.word, box.block, box.t = text, button, word, block_menu, t_slider
    box.label, box.image, box.generate, box.redraw = label, image, generate, redraw
    return box
