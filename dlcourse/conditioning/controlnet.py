"""ControlNet (Zhang, Rao & Agrawala 2023): spatial control of a frozen denoiser by an edge map.

    controlnet = ControlNet.from_base(pipe.unet)                 # a trainable copy of the encoder + middle
    model = ControlledModel(pipe, controlnet).set_control(edges)  # edges (B, 1, H, W) in [-1, 1]
    x = sample_ddim(model, x_T, schedule, 20, cond=pipe.cond(prompts), guidance_scale=3, ...)

The base model (here the text-conditioned U-Net of ``text_to_image.py``) stays frozen. A copy of its
encoder and middle block, started from the base's own weights, reads the noisy image *and* the control
image (through a small conv encoder, the "hint" encoder, added after the first conv) and gives one
feature map per skip connection and one for the middle block. Each goes through a **zero convolution**,
a 1x1 conv whose weight and bias start at 0, and is added to the base's skip / middle features:

    skip_i <- skip_i + s * Z_i(c_i),      h_mid <- h_mid + s * Z_mid(c_mid)         (Zhang et al., eq. 1-2)

with ``s`` the conditioning scale. At initialisation every ``Z`` is 0, so the controlled model equals the
base exactly, and training starts from the base's quality instead of from noise: harmful gradients
cannot reach the base (frozen), and the copy begins as a good feature extractor. The gradient of a zero
conv's weight is its input, not its weight, so it is not 0 and the convs leave zero at the first step.

``ControlledModel`` is an ordinary denoiser ``model(x_t, t, cond)``: the control image is bound to it
(``set_control``), so every sampler and classifier-free guidance run unchanged, and the control is
applied to the conditional and the unconditional call alike (``cond=None`` is the empty prompt).

``zero_conv`` and ``add_control`` are the two small pieces the notebook's exercise rebuilds.
Figures: ``bench/controlnet.py`` and bench/README.md.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..loop import TrainConfig, TrainResult, fit
from ..models.common import check_model_input, null_labels, parse_cond, register_model
from ..models.unet import UNet, UNetConfig
from ..parameterization import PREDICTION_TYPES, diffusion_loss
from ..validation import check_choice, check_int, check_number, check_probability, check_tensor

__all__ = ["ControlFollowing", "ControlNet", "ControlledModel", "add_control", "check_control", "control_following",
           "controlnet_parameters",
           "load_controlnet", "mask_iou", "shape_masks", "train_controlnet", "zero_conv"]


def zero_conv(channels: int) -> nn.Conv2d:
    """A 1x1 convolution ``channels -> channels`` whose weight and bias are 0: the output starts at 0."""
    check_int("channels", channels, minimum=1)
    conv = nn.Conv2d(channels, channels, kernel_size=1)
    nn.init.zeros_(conv.weight)
    nn.init.zeros_(conv.bias)
    return conv


def add_control(skips: list, h: torch.Tensor, down_residuals: list, mid_residual: torch.Tensor,
                scale: float = 1.0) -> tuple[list, torch.Tensor]:
    """Add a ControlNet's outputs to the base's features: ``skips[i] + s r_i`` and ``h + s r_mid``.

    Args:
        skips: the base encoder's skip features, in encoder order (``UNet.encode``), each (B, C_i, H_i, W_i).
        h: (B, C, h, w) the base's middle-block output.
        down_residuals: one tensor per skip, same order and shapes.
        mid_residual: shaped like ``h``.
        scale: the conditioning scale s (0 is the base model).

    Returns:
        ``(new_skips, new_h)``; the inputs are not modified.
    """
    if len(down_residuals) != len(skips):
        raise ValueError(f"down_residuals: expected {len(skips)} tensors (one per skip), got {len(down_residuals)}")
    return [s + scale * r for s, r in zip(skips, down_residuals)], h + scale * mid_residual


def check_control(control, image_shape) -> torch.Tensor:
    """Check a control image for images of ``image_shape`` (B, C, H, W): (B or 1, 1, H, W) in [-1, 1].

    An edge map's background is -1, so a map with no value below 0 (one in [0, 1]) is refused too.

    Returns it expanded to (B, 1, H, W).
    """
    B, _, H, W = image_shape
    check_tensor("control", control, ndim=4, floating=True)
    if control.shape[1] != 1 or tuple(control.shape[2:]) != (H, W) or control.shape[0] not in (1, B):
        raise ValueError(f"control: expected an edge map of shape ({B} or 1, 1, {H}, {W}) for images of shape "
                         f"{tuple(image_shape)}, got {tuple(control.shape)}")
    lo, hi = float(control.min()), float(control.max())
    if lo < -1.001 or hi > 1.001:
        raise ValueError(f"control: expected values in [-1, 1] (edge +1, background -1, as ShapesData.edges), "
                         f"got values in [{lo:.3g}, {hi:.3g}]")
    if lo >= 0:
        raise ValueError(f"control: expected a background of -1 (edge +1, as ShapesData.edges), got no value below 0 "
                         f"(values in [{lo:.3g}, {hi:.3g}]); a map in [0, 1] becomes one in [-1, 1] by 2 * m - 1")
    return control.expand(B, -1, -1, -1)


@register_model
class ControlNet(nn.Module):
    """A trainable copy of a U-Net's encoder and middle block reading a control image.

    ``controlnet(x_t, t, control, cond) -> (down_residuals, mid_residual)``: one (B, C_i, H_i, W_i) tensor per
    skip of the base (``UNet.residual_shapes``) and one for its middle block, each after its zero conv.

    Args:
        unet_config: the base U-Net's ``get_config()``; the copy has its encoder, middle block and
            embeddings, not its decoder.
        control_channels: channels of the control image (1 for an edge map).
        hint_channels: widths of the hint encoder's convs (3x3, SiLU between), which map the control image
            to ``base_channels`` at full resolution; its last conv starts at zero too.
        make_zero_conv: builds each zero conv from its channel count (``zero_conv``; the notebook's exercise
            passes its own); not part of the saved config.
    """

    def __init__(self, unet_config: dict, control_channels: int = 1, hint_channels: tuple = (16, 16),
                 make_zero_conv=zero_conv):
        super().__init__()
        self._config = dict(unet_config=dict(unet_config), control_channels=control_channels,
                            hint_channels=list(hint_channels))
        copy = UNet(UNetConfig(**unet_config))
        c = self.config = copy.config
        self.num_classes, self.downsampling = copy.num_classes, copy.downsampling
        self.skip_channels = list(copy.skip_channels)
        # the copy: the same names as in the base, so from_base loads its weights one to one
        self.time_embed, self.label_embed, self.conv_in = copy.time_embed, copy.label_embed, copy.conv_in
        self.down, self.mid_res1, self.mid_attn, self.mid_res2 = copy.down, copy.mid_res1, copy.mid_attn, copy.mid_res2
        layers, ch = [], control_channels
        for width in hint_channels:
            layers += [nn.Conv2d(ch, width, 3, padding=1), nn.SiLU()]
            ch = width
        last = nn.Conv2d(ch, c.base_channels, 3, padding=1)
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)
        self.hint = nn.Sequential(*layers, last)                      # (B, 1, H, W) -> (B, base_channels, H, W)
        self.zero_convs = nn.ModuleList(make_zero_conv(ch) for ch in self.skip_channels)
        self.mid_zero_conv = make_zero_conv(self.skip_channels[-1])

    @classmethod
    def from_base(cls, unet: UNet, **kwargs) -> "ControlNet":
        """A ControlNet for ``unet`` whose copy starts from ``unet``'s weights (zero convs and hint at 0)."""
        if not isinstance(unet, UNet):
            raise TypeError(f"unet: expected a dlcourse.models.UNet, got {type(unet).__name__}")
        net = cls(unet.get_config(), **kwargs).to(next(unet.parameters()).device)
        own = net.state_dict()
        shared = {k: v for k, v in unet.state_dict().items() if k in own}
        net.load_state_dict(shared, strict=False)
        return net

    def copied_keys(self) -> list:
        """Names of the tensors copied from the base (all but the hint encoder and the zero convs)."""
        return [k for k in self.state_dict() if not k.startswith(("hint.", "zero_convs.", "mid_zero_conv."))]

    def forward(self, x_t: torch.Tensor, t, control: torch.Tensor, cond=None) -> tuple[list, torch.Tensor]:
        """x_t: (B, C, H, W), t: (B,), control: (B or 1, 1, H, W) in [-1, 1] -> (down_residuals, mid_residual)."""
        t = check_model_input(x_t, t, ndim=4, channels=self.config.in_channels, multiple=self.downsampling)
        control = check_control(control, x_t.shape)
        B = x_t.shape[0]
        c = parse_cond(cond, B, num_classes=self.num_classes, context_dim=self.config.context_dim,
                       accepts=("label", "context", "context_mask"))
        emb = self.time_embed(t)
        if self.label_embed is not None:
            label = c.label if c.label is not None else null_labels(B, self.num_classes, t.device)
            emb = emb + self.label_embed(label)
        h = self.conv_in(x_t) + self.hint(control.to(x_t.dtype))     # (B, base_channels, H, W)
        features = []
        for level in self.down:                                       # as UNet.encode
            for i, block in enumerate(level.res):
                h = block(h, emb)
                if len(level.attn):
                    h = level.attn[i](h, c.context, c.context_mask)
                features.append(h)
            if level.resample is not None:
                h = level.resample(h)
        h = self.mid_res1(h, emb)                                     # as UNet.middle
        if self.mid_attn is not None:
            h = self.mid_attn(h, c.context, c.context_mask)
        h = self.mid_res2(h, emb)
        return [z(f) for z, f in zip(self.zero_convs, features)], self.mid_zero_conv(h)

    def get_config(self) -> dict:
        return {**self._config, "unet_config": dict(self._config["unet_config"]),
                "hint_channels": list(self._config["hint_channels"])}

    @classmethod
    def from_config(cls, config: dict) -> "ControlNet":
        return cls(**config)


class ControlledModel(nn.Module):
    """A frozen base denoiser with a ControlNet: ``model(x_t, t, cond)``, the control image bound to it.

    Args:
        base: a ``TextToImage`` (``cond=None`` is then the empty prompt) or a ``UNet``; frozen here.
        controlnet: a ``ControlNet`` for the base's U-Net (trainable).
        control: (B or 1, 1, H, W) in [-1, 1], or None (then the model is the base).
        conditioning_scale: s of ``add_control``.
        inject: the function that adds the residuals (``add_control``; the notebook's exercise passes its own).

    ``num_classes`` is the base's, so guidance batches labels as for the base.
    """

    def __init__(self, base: nn.Module, controlnet: ControlNet, control: torch.Tensor | None = None,
                 conditioning_scale: float = 1.0, inject=add_control):
        super().__init__()
        from .text_to_image import TextToImage

        if not isinstance(controlnet, ControlNet):
            raise TypeError(f"controlnet: expected a ControlNet, got {type(controlnet).__name__}")
        pipe = base if isinstance(base, TextToImage) else None
        unet = base.unet if pipe is not None else base
        if not isinstance(unet, UNet):
            raise TypeError(f"base: expected a TextToImage or a UNet, got {type(base).__name__}")
        if unet.get_config() != controlnet.get_config()["unet_config"]:
            raise ValueError("controlnet: built for a U-Net of another config than the base's "
                             "(build it with ControlNet.from_base(base_unet))")
        self.base, self.controlnet = base.requires_grad_(False), controlnet
        self.text = pipe is not None                  # a TextToImage base: captions, cond=None the empty prompt
        self.num_classes = unet.num_classes
        self.conditioning_scale = check_number("conditioning_scale", conditioning_scale)
        self.inject = inject
        self.control = None
        if control is not None:
            self.set_control(control)

    @property
    def pipe(self):
        """The base ``TextToImage``, or None for a U-Net base."""
        return self.base if self.text else None

    @property
    def unet(self) -> UNet:
        """The base's U-Net."""
        return self.base.unet if self.text else self.base

    def set_control(self, control: torch.Tensor | None) -> "ControlledModel":
        """Bind the control image (B or 1, 1, H, W) in [-1, 1], or None for none; returns ``self``."""
        if control is not None:
            check_tensor("control", control, ndim=4, floating=True)
            check_control(control, (control.shape[0], self.unet.config.in_channels, *control.shape[2:]))
        self.control = control
        return self

    def train(self, mode: bool = True) -> "ControlledModel":
        """Train mode for the ControlNet only; the frozen base stays in eval mode."""
        super().train(mode)
        self.base.eval()
        return self

    def forward(self, x_t: torch.Tensor, t, cond=None) -> torch.Tensor:
        """The base's prediction (B, C, H, W) with the ControlNet's residuals added to its skips and middle."""
        if cond is None and self.pipe is not None:
            cond = self.pipe.cond([""] * x_t.shape[0])
        if self.control is None or self.conditioning_scale == 0:
            return self.unet(x_t, t, cond)
        unet = self.unet
        t = check_model_input(x_t, t, ndim=4, channels=unet.config.in_channels, multiple=unet.downsampling)
        control = check_control(self.control.to(x_t.device), x_t.shape)
        c = parse_cond(cond, x_t.shape[0], num_classes=unet.num_classes, context_dim=unet.config.context_dim,
                       accepts=("label", "context", "context_mask"))
        down, mid = self.controlnet(x_t, t, control, cond)
        emb = unet.embed(t, c.label)
        h, skips = unet.encode(x_t, emb, c.context, c.context_mask)
        h = unet.middle(h, emb, c.context, c.context_mask)
        skips, h = self.inject(skips, h, down, mid, self.conditioning_scale)
        return unet.decode(h, skips, emb, c.context, c.context_mask)


def controlnet_parameters(model: ControlledModel) -> list:
    """Freeze ``model``'s base and return the parameters to train: the ControlNet's, all trainable."""
    model.base.requires_grad_(False)
    return list(model.controlnet.requires_grad_(True).parameters())


def shape_masks(images: torch.Tensor, threshold: float = 0.35) -> torch.Tensor:
    """(B, 3, H, W) in [-1, 1] -> (B, H, W) bool: where a channel differs from the background by > threshold.

    The same reading as ``read_positions`` (on the [0, 1] scale).
    """
    from ..data.shapes import BACKGROUND

    check_tensor("images", images, ndim=4, floating=True)
    background = torch.tensor(BACKGROUND, device=images.device, dtype=images.dtype).view(1, 3, 1, 1)
    return ((images + 1) / 2 - background).abs().amax(dim=1) > threshold


def mask_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """(B,) intersection over union of two (B, H, W) bool masks; 1 where both are empty."""
    check_tensor("a", a, ndim=3)
    check_tensor("b", b, shape=tuple(a.shape))
    inter = (a & b).flatten(1).sum(1).float()
    union = (a | b).flatten(1).sum(1).float()
    return torch.where(union > 0, inter / union.clamp(min=1), torch.ones_like(union))


def train_controlnet(model: ControlledModel, images: torch.Tensor, controls: torch.Tensor, captions, schedule, *,
                     p_uncond: float = 0.5, batch_size: int = 64, prediction_type: str = "v_prediction",
                     config: TrainConfig | None = None) -> TrainResult:
    """Train ``model``'s ControlNet on (image, control, caption) triples; the base stays frozen.

    The loss is the base's own denoising loss (``diffusion_loss``) of the controlled model. Captions are
    replaced by the empty prompt with probability ``p_uncond`` (Zhang et al. drop half of them), so the
    ControlNet learns to read the control without the text's help.

    Args:
        model: a ``ControlledModel`` over a ``TextToImage`` (captions) or a class-conditional ``UNet``
            (then ``captions`` are (N,) labels).
        images: (N, C, H, W) in [-1, 1].
        controls: (N, 1, H, W) in [-1, 1], the control of each image (``ShapesData.edges``).
        captions: N strings (or (N,) labels).
        schedule: the base's noise schedule.
        config: by default 500 steps of AdamW at 1e-3, no EMA.

    Returns:
        ``fit``'s ``TrainResult``; ``result.model.controlnet`` (or ``ema_model``'s) is the trained ControlNet.
    """
    from ..device import get_device
    from .text_to_image import drop_captions

    if not isinstance(model, ControlledModel):
        raise TypeError(f"model: expected a ControlledModel, got {type(model).__name__}")
    check_tensor("images", images, ndim=4, floating=True)
    check_control(controls, images.shape)
    check_choice("prediction_type", prediction_type, PREDICTION_TYPES)
    p_uncond = check_probability("p_uncond", p_uncond)
    check_int("batch_size", batch_size, minimum=1)
    N = images.shape[0]
    if len(captions) != N:
        raise ValueError(f"captions: expected one per image ({N}), got {len(captions)}")
    controlnet_parameters(model)
    config = config or TrainConfig(steps=500, lr=1e-3, ema_decay=None)
    schedule_d = schedule.to(get_device() if config.device is None else torch.device(config.device))
    if model.pipe is not None:
        ids, mask = model.pipe.tokenizer.encode(list(captions))
    else:
        labels = torch.as_tensor(captions)

    def batches():
        while True:
            i = torch.randint(0, N, (batch_size,))
            batch = {"x_0": images[i], "control": controls[i]}
            if model.pipe is not None:
                batch["ids"], batch["mask"] = drop_captions(ids[i], mask[i], p_uncond, model.pipe.tokenizer)
            else:
                drop = torch.rand(batch_size) < p_uncond
                batch["label"] = torch.where(drop, torch.full_like(labels[i], model.num_classes), labels[i])
            yield batch

    def loss_fn(m: ControlledModel, batch: dict) -> torch.Tensor:
        m.set_control(batch["control"])
        if m.pipe is not None:
            with torch.no_grad():
                cond = m.pipe.text_encoder(batch["ids"], batch["mask"]).cond()
        else:
            cond = batch["label"]
        return diffusion_loss(m, batch["x_0"], schedule_d, prediction_type=prediction_type, cond=cond)

    try:
        return fit(model, batches(), loss_fn, config)
    finally:
        model.set_control(None)


def load_controlnet(name: str = "controlnet_shapes16", device=None) -> tuple[ControlledModel, dict]:
    """A shipped ControlNet over its base model, both checksum verified.

    Returns:
        ``(model, info)``: a ``ControlledModel`` in eval mode (bind a control with ``set_control``), and the
        ControlNet's ``load_pretrained`` info, with the base's schedule, T, prediction_type and hold_out.
    """
    from ..pretrained import load_pretrained
    from .text_to_image import load_text_to_image

    controlnet, info = load_pretrained(name, device=device)
    pipe, base_info = load_text_to_image(info["base"], device=device)
    if base_info["sha256"] != info["base_sha256"]:
        raise ValueError(f"{name}: trained over {info['base']} of SHA-256 {info['base_sha256']}, but the shipped "
                         f"one is {base_info['sha256']}; retrain it: {info['command']}")
    for key in ("schedule", "T", "prediction_type", "hold_out", "clip_x0"):
        info.setdefault(key, base_info[key])
    return ControlledModel(pipe, controlnet).eval(), info


@dataclass(frozen=True)
class ControlFollowing:
    """How well samples follow their controls; each figure a mean over the n samples.

    Attributes:
        n: samples.
        iou: intersection over union of the sample's shape mask (``shape_masks``) and the mask read the
            same way from the control's real image (1 for the real images themselves).
        position: the place read from the pixels (``read_positions``) is the control's.
        shape, scale: the judge reads the control's shape, size.
        valid: the judge accepts the sample as a clean image of one shape.
        color: the judge reads the asked colour (None when no colours were asked for).
    """

    n: int
    iou: float
    position: float
    shape: float
    scale: float
    valid: float
    color: float | None = None


def control_following(judge, images: torch.Tensor, data, colors: torch.Tensor | None = None) -> ControlFollowing:
    """Read samples back against the shapes their controls came from.

    Args:
        judge: a ``dlcourse.judge.Judge``.
        images: (B, 3, H, W) in [-1, 1], sample b drawn with ``data.edges[b]`` as its control.
        data: the ``ShapesData`` of the controls (its masks, labels, scales, positions).
        colors: (B,) int64 colours the prompts asked for, or None.
    """
    from .text_to_image import read_positions

    check_tensor("images", images, ndim=4, floating=True)
    B = images.shape[0]
    if len(data) != B:
        raise ValueError(f"data: expected {B} controls (one per image), got {len(data)}")
    out = judge.predict(images)
    frac = lambda v: float(v.float().mean())                      # noqa: E731
    iou = mask_iou(shape_masks(images).cpu(), shape_masks(data.images))
    color = None
    if colors is not None:
        check_tensor("colors", colors, shape=(B,))
        color = frac(out["color_probs"].argmax(1).cpu() == colors.cpu())
    return ControlFollowing(n=B, iou=frac(iou), position=frac(read_positions(images) == data.positions),
                            shape=frac(out["shape_probs"].argmax(1).cpu() == data.labels),
                            scale=frac(out["scale_probs"].argmax(1).cpu() == data.scales),
                            valid=frac(out["valid"].cpu()), color=color)
