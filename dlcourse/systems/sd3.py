"""Stable Diffusion 3 in miniature: the MM-DiT, text and image tokens in one joint attention (notebook 10d).

    mmdit = MMDiT(MMDiTConfig(context_dim=64))                      # the denoiser, ~1M parameters
    pipe = TextToImage(mmdit, clip.text_encoder, tokenizer)         # frozen encoder, the empty prompt for cond=None
    x_0 = sample_flow(pipe, torch.randn(8, 3, 16, 16), 20, time_scale=1000, shift=2.0,
                      cond=pipe.cond(captions), guidance_scale=3.0)  # a rectified flow, Euler, CFG

Esser et al. 2024 ("Scaling Rectified Flow Transformers for High-Resolution Image Synthesis", sec. 4 and
fig. 2) replace the U-Net's cross-attention, where the image reads a text that never changes, by a
*multimodal* transformer. The caption's tokens (the frozen text encoder's token embeddings, projected to the
model width) and the image's patch tokens (as in the DiT, ``dlcourse.models.dit``) form two streams. Each
stream has its **own** weights: adaLN modulation, QKV projection, output projection, MLP. In every block both
streams are modulated, projected to queries, keys and values, and then the two sequences are **concatenated**
for one attention: every image token attends to every text token and every other image token, and every text
token to every image token. The result is split back and each part goes through its own stream's output
projection and MLP. So the text tokens change from block to block as they read the image, and information
flows both ways::

    text tokens (B, L, D) ---adaLN_txt, qkv_txt---+                      +--- proj_txt, MLP_txt ---> (B, L, D)
                                                  +-- joint attention --+
    image tokens (B, N, D) --adaLN_img, qkv_img---+   over L + N tokens  +--- proj_img, MLP_img ---> (B, N, D)

The conditioning vector of adaLN is the timestep embedding **plus** an embedding of the pooled caption (here
the mean of the real tokens through an MLP; SD3 adds its CLIP encoders' pooled outputs). In the last block
the text stream only gives keys and values (its outputs would never be read), as in SD3.

The model is an ordinary denoiser ``model(x_t, t, cond)`` with ``cond = {"context": (B, L, D_text),
"context_mask": (B, L)}``, so ``TextToImage`` wraps it with the frozen encoder and the empty prompt for
``cond=None``, and ``dlcourse.rectified_flow.sample_flow`` samples it with classifier-free guidance.
Training: ``flow_matching_loss`` with SD3's logit-normal t (``scripts/train_sd3.py``, figures in
bench/README.md from ``bench/sd3.py``).

The race of notebook 10d, the MM-DiT against the course's cross-attention U-Net for the same seconds::

    job = in_background(train_race, "mmdit", cpu_seconds=110, threads=1)     # dlcourse.background
    with cpu_threads(1):
        unet = train_race("unet", cpu_seconds=110)                           # the same CPU seconds, beside it
    mmdit = job.result()
    x = race_sample("mmdit", mmdit.ema_model, prompts, x_T, guidance_scale=3.0)   # (B, 3, 16, 16) in [-1, 1]

``race_network`` and ``race_loss`` are the recipes ``scripts/train_sd3.py`` trains for longer.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..conditioning.cross_attention import check_mask
from ..conditioning.text_to_image import TextToImage, held_out, text_batches
from ..conditioning.tokenizer import Tokenizer
from ..data import make_shapes
from ..loop import TrainConfig, TrainResult, fit
from ..models.common import check_model_input, parse_cond, register_model
from ..models.dit import FinalLayer, modulate
from ..models.embeddings import TimeEmbedding, sincos_2d
from ..models.unet import UNet, UNetConfig
from ..parameterization import diffusion_loss
from ..rectified_flow import flow_matching_loss, sample_flow
from ..samplers import sample_ddim
from ..schedules import get_schedule
from ..validation import check_choice, check_int, check_number, check_tensor

__all__ = ["MMDiT", "MMDiTBlock", "MMDiTConfig", "RACE_KINDS", "joint_attention", "race_loss", "race_network",
           "cpu_budget", "race_sample", "train_race"]


def joint_attention(q_img: torch.Tensor, k_img: torch.Tensor, v_img: torch.Tensor, q_txt: torch.Tensor,
                    k_txt: torch.Tensor, v_txt: torch.Tensor, num_heads: int,
                    txt_mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """MM-DiT's joint attention: one multi-head attention over the text and image tokens together.

    The two sequences are concatenated along the token axis (text first, as in SD3), each of the
    ``num_heads`` heads computes ``softmax(q k^T / sqrt(d)) v`` over all ``L + N`` tokens (d = D /
    num_heads), and the output is split back into its text and image parts. Masked text tokens
    (padding) are never attended to; their own outputs are computed but mean nothing.

    Args:
        q_img, k_img, v_img: (B, N, D) the image tokens' queries, keys and values.
        q_txt, k_txt, v_txt: (B, L, D) the text tokens'.
        num_heads: heads; must divide D.
        txt_mask: (B, L) bool, True at the real text tokens, or None (all real).

    Returns:
        ``(out_img, out_txt)``: (B, N, D) and (B, L, D), before any output projection.
    """
    for name, x in (("k_img", k_img), ("v_img", v_img)):
        check_tensor(name, x, shape=tuple(check_tensor("q_img", q_img, ndim=3, floating=True).shape))
    B, N, D = q_img.shape
    check_tensor("q_txt", q_txt, shape=(B, None, D), floating=True)
    L = q_txt.shape[1]
    for name, x in (("k_txt", k_txt), ("v_txt", v_txt)):
        check_tensor(name, x, shape=(B, L, D))
    num_heads = check_int("num_heads", num_heads, minimum=1)
    if D % num_heads:
        raise ValueError(f"num_heads: expected a divisor of the width D={D}, got {num_heads}")
    hd = D // num_heads

    def heads(x):                                                        # (B, S, D) -> (B, heads, S, hd)
        return x.reshape(B, x.shape[1], num_heads, hd).transpose(1, 2)

    q = heads(torch.cat([q_txt, q_img], dim=1))                          # (B, heads, L + N, hd)
    k = heads(torch.cat([k_txt, k_img], dim=1))
    v = heads(torch.cat([v_txt, v_img], dim=1))
    mask = None
    if txt_mask is not None:
        check_mask("txt_mask", txt_mask, B, L)
        keep = torch.cat([txt_mask.to(q.device), torch.ones(B, N, dtype=torch.bool, device=q.device)], dim=1)
        mask = keep[:, None, None, :]                                    # (B, 1, 1, L + N): which keys count
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)       # (B, heads, L + N, hd)
    out = out.transpose(1, 2).reshape(B, L + N, D)
    return out[:, L:], out[:, :L]


@dataclass
class MMDiTConfig:
    """Hyper-parameters of ``MMDiT``.

    Attributes:
        context_dim: width of the text encoder's tokens (``cond["context"]``).
        in_channels: C of the images (the output has the same).
        patch_size: p; H and W must be divisible by it.
        hidden_dim: D, the width of both streams; a multiple of 4 and of ``num_heads``.
        depth: number of MM-DiT blocks.
        num_heads: attention heads.
        mlp_ratio: each MLP's hidden width is ``mlp_ratio * D``.
    """

    context_dim: int = 64
    in_channels: int = 3
    patch_size: int = 2
    hidden_dim: int = 96
    depth: int = 4
    num_heads: int = 4
    mlp_ratio: float = 2.0

    def __post_init__(self):
        for name in ("context_dim", "in_channels", "patch_size", "depth", "num_heads"):
            check_int(name, getattr(self, name), minimum=1)
        if self.hidden_dim % 4 or self.hidden_dim % self.num_heads:
            raise ValueError(f"hidden_dim: expected a multiple of 4 and of num_heads={self.num_heads}, "
                             f"got {self.hidden_dim}")


class Stream(nn.Module):
    """One modality's weights in an MM-DiT block: adaLN-Zero modulation, QKV, output projection, MLP.

    With ``pre_only`` (the text stream of the last block) only the modulation of the attention input
    and the QKV projection exist.
    """

    def __init__(self, dim: int, mlp_ratio: float, pre_only: bool = False):
        super().__init__()
        self.pre_only = pre_only
        self.norm1 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.qkv = nn.Linear(dim, 3 * dim)
        n_mod = 2 if pre_only else 6
        self.ada = nn.Sequential(nn.SiLU(), nn.Linear(dim, n_mod * dim))
        nn.init.zeros_(self.ada[1].weight)                               # adaLN-Zero: gates start at 0
        nn.init.zeros_(self.ada[1].bias)
        if not pre_only:
            self.proj = nn.Linear(dim, dim)
            self.norm2 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
            hidden = int(dim * mlp_ratio)
            self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(approximate="tanh"), nn.Linear(hidden, dim))

    def pre(self, x: torch.Tensor, c: torch.Tensor):
        """x (B, S, D), c (B, D) -> (q, k, v), each (B, S, D), and the modulation the post step needs."""
        mod = self.ada(c)[:, None, :].chunk(2 if self.pre_only else 6, dim=2)   # each (B, 1, D)
        q, k, v = self.qkv(modulate(self.norm1(x), mod[0], mod[1])).chunk(3, dim=2)
        return (q, k, v), mod

    def post(self, x: torch.Tensor, attn: torch.Tensor, mod) -> torch.Tensor:
        """The residual updates after attention: x (B, S, D), attn (B, S, D) -> (B, S, D)."""
        _, _, gate1, shift2, scale2, gate2 = mod
        x = x + gate1 * self.proj(attn)
        return x + gate2 * self.mlp(modulate(self.norm2(x), shift2, scale2))


class MMDiTBlock(nn.Module):
    """One MM-DiT block (Esser et al. 2024, fig. 2b): two streams, one joint attention."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float = 2.0, context_pre_only: bool = False):
        super().__init__()
        self.heads = heads
        self.img = Stream(dim, mlp_ratio)
        self.txt = Stream(dim, mlp_ratio, pre_only=context_pre_only)

    def forward(self, x: torch.Tensor, context: torch.Tensor, c: torch.Tensor,
                mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """x: (B, N, D) image tokens, context: (B, L, D) text tokens, c: (B, D), mask: (B, L) bool.

        Returns the new ``(x, context)``; context is None after a ``context_pre_only`` block.
        """
        (q_i, k_i, v_i), mod_i = self.img.pre(x, c)
        (q_t, k_t, v_t), mod_t = self.txt.pre(context, c)
        out_i, out_t = joint_attention(q_i, k_i, v_i, q_t, k_t, v_t, self.heads, txt_mask=mask)
        x = self.img.post(x, out_i, mod_i)
        return x, (None if self.txt.pre_only else self.txt.post(context, out_t, mod_t))


@register_model
class MMDiT(nn.Module):
    """SD3's multimodal diffusion transformer, small: ``model(x_t, t, cond) -> (B, C, H, W)``.

    ``cond = {"context": (B, L, context_dim), "context_mask": (B, L) bool}`` (a ``TextEncoding.cond()``);
    the caption is required (wrap the model in ``dlcourse.conditioning.TextToImage`` for the empty
    prompt at ``cond=None``, as classifier-free guidance needs). The pooled caption, the mean of its
    real tokens, is embedded and added to the time embedding.
    """

    def __init__(self, config: MMDiTConfig | None = None):
        super().__init__()
        cfg = self.config = config if config is not None else MMDiTConfig()
        D, p = cfg.hidden_dim, cfg.patch_size
        self.patchify = nn.Conv2d(cfg.in_channels, D, kernel_size=p, stride=p)    # one token per p x p patch
        self.context_embedder = nn.Linear(cfg.context_dim, D)                    # text tokens -> width D
        self.time_embed = TimeEmbedding(D, D)
        self.pooled_embed = nn.Sequential(nn.Linear(cfg.context_dim, D), nn.SiLU(), nn.Linear(D, D))
        self.blocks = nn.ModuleList(MMDiTBlock(D, cfg.num_heads, cfg.mlp_ratio, context_pre_only=i == cfg.depth - 1)
                                    for i in range(cfg.depth))
        self.final = FinalLayer(D, p * p * cfg.in_channels)

    def unpatchify(self, x: torch.Tensor, H: int, W: int) -> torch.Tensor:
        """(B, N, p * p * C) tokens -> (B, C, H, W) image, N = (H / p) (W / p)."""
        B = x.shape[0]
        p, C = self.config.patch_size, self.config.in_channels
        x = x.reshape(B, H // p, W // p, p, p, C).permute(0, 5, 1, 3, 2, 4)       # (B, C, h, p, w, p)
        return x.reshape(B, C, H, W)

    def forward(self, x_t: torch.Tensor, t, cond=None) -> torch.Tensor:
        """Predict from ``x_t`` (B, C, H, W) at timesteps ``t`` (B,) given the caption in ``cond``."""
        cfg = self.config
        t = check_model_input(x_t, t, ndim=4, channels=cfg.in_channels, multiple=cfg.patch_size)
        B, C, H, W = x_t.shape
        cnd = parse_cond(cond, B, context_dim=cfg.context_dim, accepts=("context", "context_mask"))
        if cnd.context is None:
            raise ValueError("cond: expected {'context': (B, L, context_dim), 'context_mask': (B, L)}, got no "
                             "context; wrap the model in TextToImage for the empty prompt at cond=None")
        context = cnd.context.to(x_t.dtype)                                       # (B, L, context_dim)
        mask = cnd.context_mask
        real = (torch.ones(context.shape[:2], device=x_t.device) if mask is None else mask.to(x_t.dtype))[..., None]
        pooled = (context * real).sum(1) / real.sum(1)                            # (B, context_dim) mean of real
        c = self.time_embed(t) + self.pooled_embed(pooled)                        # (B, D)
        x = self.patchify(x_t).flatten(2).transpose(1, 2)                         # (B, D, h, w) -> (B, N, D)
        x = x + sincos_2d(H // cfg.patch_size, W // cfg.patch_size, x.shape[2], device=x.device).to(x.dtype)
        txt = self.context_embedder(context)                                      # (B, L, D)
        for block in self.blocks:
            x, txt = block(x, txt, c, mask)
        return self.unpatchify(self.final(x, c), H, W)                            # (B, N, p*p*C) -> (B, C, H, W)

    def get_config(self) -> dict:
        """``MMDiTConfig`` as a dict of plain types."""
        return asdict(self.config)

    @classmethod
    def from_config(cls, config: dict) -> "MMDiT":
        return cls(MMDiTConfig(**config))



# ---- the race: the MM-DiT and the cross-attention U-Net trained the same way for the same time ----

RACE_KINDS = ("mmdit", "unet", "unet_flow")
"""``"mmdit"``: the MM-DiT as a rectified flow; ``"unet"``: 07a's cross-attention U-Net with its own recipe
(v-prediction on the cosine schedule); ``"unet_flow"``: that U-Net trained as the MM-DiT is."""
FLOW_KINDS = ("mmdit", "unet_flow")
RACE_MMDIT = dict(hidden_dim=92, depth=4, num_heads=4, patch_size=2, mlp_ratio=2.0)   # 0.94M parameters
RACE_LR = {"mmdit": 1e-3, "unet": 8e-4, "unet_flow": 8e-4}
TIME_SCALE = 1000.0                       # the flows see t * 1000, as the U-Net sees its timestep
SCHEDULE, T = "cosine", 1000              # the v-prediction U-Net's
TEXT_ENCODER = "clip_shapes16"


def race_network(kind: str, context_dim: int = 64, seed: int = 0) -> nn.Module:
    """The race's denoiser for ``kind`` (one of ``RACE_KINDS``), from random weights drawn from ``seed``.

    ``"mmdit"``: ``MMDiT`` of width 92, 4 blocks, 4 heads, 2 x 2 patches (0.94M parameters);
    ``"unet"``, ``"unet_flow"``: the default ``UNet`` with cross-attention at 4 x 4 and 8 x 8 (0.90M),
    07a's ``shapes16_unet_text`` architecture. Torch's global random state is left as it was.
    """
    check_choice("kind", kind, RACE_KINDS)
    check_int("context_dim", context_dim, minimum=1)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(check_int("seed", seed))
        if kind == "mmdit":
            return MMDiT(MMDiTConfig(context_dim=context_dim, **RACE_MMDIT))
        return UNet(UNetConfig(context_dim=context_dim, cross_attention_levels=2))


def race_loss(kind: str):
    """``loss_fn(pipe, batch)`` for ``dlcourse.loop.fit`` on ``text_batches``, ``pipe`` a ``TextToImage``.

    The flows (``"mmdit"``, ``"unet_flow"``): ``flow_matching_loss`` with SD3's logit-normal t (m = 0,
    s = 1), ``time_scale = 1000``. ``"unet"``: ``diffusion_loss`` with v-prediction on the cosine schedule
    (T = 1000). The caption's tokens come from the frozen text encoder, without gradients.
    """
    check_choice("kind", kind, RACE_KINDS)
    schedule = get_schedule(SCHEDULE, T)

    def loss_fn(pipe: TextToImage, batch: dict) -> torch.Tensor:
        with torch.no_grad():
            cond = pipe.text_encoder(batch["ids"], batch["mask"]).cond()          # frozen: tokens (B, L, D)
        if kind in FLOW_KINDS:
            return flow_matching_loss(pipe.unet, batch["x_0"], cond=cond, time_scale=TIME_SCALE,
                                      t_sampling="logit_normal", logit_mean=0.0, logit_std=1.0)
        return diffusion_loss(pipe.unet, batch["x_0"], schedule, prediction_type="v_prediction", cond=cond)

    return loss_fn


def cpu_budget(batches, cpu_seconds: float):
    """The batches of ``batches`` until this process has used ``cpu_seconds`` of CPU time since the first.

    Process CPU time (``time.process_time``), not wall-clock time: a busy machine slows a training down
    but does not shorten its budget, so two trainings side by side get the same computation whatever
    else runs. ``fit`` stops when the batches run out.
    """
    check_number("cpu_seconds", cpu_seconds, minimum=0.0)
    start = None
    for batch in batches:
        now = time.process_time()
        if start is None:
            start = now
        elif now - start >= cpu_seconds:
            return
        yield batch


def train_race(kind: str, *, cpu_seconds: float | None = None, steps: int | None = None, n_train: int = 20_000,
               batch_size: int = 32, lr: float | None = None, seed: int = 0, hold_out=("blue triangle",),
               progress: bool = False) -> TrainResult:
    """Train the race's ``kind`` from random weights on captioned 16 px shapes; returns ``fit``'s result.

    The data are ``make_shapes(n_train, size=16, seed=0)`` less the captions that hold a ``hold_out``
    combination; the text encoder is the frozen ``clip_shapes16``; captions drop to the empty prompt at
    p = 0.15 (for guidance); AdamW at a constant ``lr`` (``RACE_LR[kind]`` if None), EMA 0.999 (with its
    warm-up), fp32, on this process's CPU threads (one in the race). The budget is ``cpu_seconds`` of
    process CPU time (``cpu_budget``) and/or ``steps``: two runs side by side on one thread each
    (``dlcourse.background``) get the same computation, on an idle 2-core machine in the same seconds.

    Args:
        kind: one of ``RACE_KINDS``.
        cpu_seconds, steps: the budget; at least one.
        n_train: training images drawn. batch_size: images per step.
        lr: the learning rate, or None for the recipe's. seed: the weights' and the loop's seed.
        hold_out: attribute combinations never trained on.
        progress: show a progress bar.

    Returns:
        A ``TrainResult``: ``result.ema_model`` is a ``TextToImage`` to sample with ``race_sample``;
        ``result.cpu_seconds`` is the CPU time the training loop took.
    """
    from ..pretrained import load_pretrained                    # the asset registry, loaded when needed

    check_choice("kind", kind, RACE_KINDS)
    check_int("n_train", n_train, minimum=1)
    check_int("batch_size", batch_size, minimum=1)
    if cpu_seconds is None and steps is None:
        raise ValueError("cpu_seconds, steps: give a budget, at least one of them")
    clip, info = load_pretrained(TEXT_ENCODER, device="cpu")
    tokenizer = Tokenizer(**info["tokenizer"])
    pipe = TextToImage(race_network(kind, clip.text_encoder.config.dim, seed), clip.text_encoder, tokenizer)
    data = make_shapes(n_train, size=16, seed=0)
    keep = ~held_out(data.captions, list(hold_out)) if hold_out else torch.ones(n_train, dtype=torch.bool)
    if not bool(keep.any()):
        raise ValueError(f"hold_out: {hold_out!r} removes every one of the {n_train} training captions")
    ids, mask = tokenizer.encode([c for c, k in zip(data.captions, keep.tolist()) if k])
    batches = text_batches(data.images[keep], ids, mask, batch_size=batch_size, p_uncond=0.15, tokenizer=tokenizer)
    if cpu_seconds is not None:
        batches = cpu_budget(batches, cpu_seconds)
    config = TrainConfig(steps=steps, seconds=None if steps is not None else 1e9,    # the CPU budget ends it
                         lr=RACE_LR[kind] if lr is None else lr, ema_decay=0.999, precision="fp32", device="cpu", seed=seed, progress=progress)
    start = time.process_time()
    result = fit(pipe, batches, race_loss(kind), config)
    result.cpu_seconds = time.process_time() - start
    return result


def race_sample(kind: str, pipe: TextToImage, prompts, x_T: torch.Tensor, *, steps: int = 20,
                guidance_scale: float = 3.0, shift: float = 1.0) -> torch.Tensor:
    """Samples of a race model for ``prompts`` from the noise ``x_T`` (B, 3, H, W): (B, 3, H, W) in [-1, 1].

    The flows (``"mmdit"``, ``"unet_flow"``): Euler's method on the flow (``sample_flow``), ``steps``
    steps at SD3's time ``shift`` (1: none), the samples clamped to [-1, 1]. ``"unet"``: DDIM with
    v-prediction on the cosine schedule, x_0 clipped (``shift`` must be 1). Either way ``steps``
    network calls per image at ``guidance_scale`` 1, twice as many with guidance (the prompt and the
    empty prompt).
    """
    check_choice("kind", kind, RACE_KINDS)
    if not isinstance(pipe, TextToImage):
        raise TypeError(f"pipe: expected a TextToImage (a race result's ema_model), got {type(pipe).__name__}")
    prompts = [prompts] if isinstance(prompts, str) else list(prompts)
    check_tensor("x_T", x_T, shape=(len(prompts), None, None, None), floating=True)
    check_number("shift", shift, minimum=1e-6)
    if kind not in FLOW_KINDS and shift != 1:
        raise ValueError(f"shift: the U-Net samples with DDIM on its own schedule, expected 1, got {shift}")
    with torch.no_grad():
        cond = pipe.cond(prompts)
        if kind in FLOW_KINDS:
            return sample_flow(pipe, x_T, steps, time_scale=TIME_SCALE, shift=shift, cond=cond,
                               guidance_scale=guidance_scale).clamp(-1, 1)
        return sample_ddim(pipe, x_T, get_schedule(SCHEDULE, T), steps, cond=cond, guidance_scale=guidance_scale,
                           prediction_type="v_prediction", progress=False)
