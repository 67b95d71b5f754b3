"""A judge for the shapes set: is this a real shapes image, and which shape and colour is it?

Generated images are scored by a small CNN trained here, on the course's own data,
in a couple of minutes on a CPU. It has four heads on shared features:

    shape (4 classes), colour (6), scale (2)   what the image shows, if it is real;
    real (1 logit)                             is it a clean image of one shape at all?

**Why a "real" head.** A classifier's confidence is not a validity measure: trained
only on real images, it has never seen anything else and labels noise confidently
(measured in this course: half of matched noise got confidence > 0.9 on digits).
So the judge is also shown impostors, made from real images by
``dlcourse.metrics.baselines``: noise with the data's per-pixel mean and spread,
colour noise, blends and overlays of two shapes, shapes in colours the data never
uses, blurred or noised shapes (noise std >= 0.2, blur sigma >= 1 px), empty
backgrounds and shuffled tiles. It learns to call them "not real", and on the ones
with no shape in them its shape and colour heads learn to be unsure (outlier
exposure, Hendrycks et al. 2019). A real image with mild noise (std <= 0.03) is
still real; between the two, the judge decides (``scripts/train_judge.py`` measures
where: most images with noise of std 0.1 are already rejected).

A sample is **valid** when P(real) >= 0.5 and both the shape and the colour
prediction have probability >= 0.9. ``features`` gives the penultimate layer
(B, 128) for a Frechet distance (``dlcourse.metrics.frechet_distance``).

Example:
    >>> judge = load_judge()                        # the shipped 16 px judge, checksum verified
    >>> out = judge.predict(images)                 # images (B, 3, 16 or 32, ...) in [-1, 1]
    >>> out["valid"].float().mean()                 # the valid fraction
"""

from __future__ import annotations

import math
import time

import torch
import torch.nn.functional as F
from torch import nn

from .checkpoints import build_model, load_checkpoint, model_config, save_checkpoint
from .data.shapes import BACKGROUND, COLOR_NAMES, SCALE_NAMES, SHAPE_NAMES, ShapesData, make_shapes
from .files import ASSET_DIR
from .metrics import baselines
from .models.common import register_model
from .validation import check_choice, check_tensor

SHIPPED_SHA256 = {16: "f031fba064c577718b113e8e6ebe80c03c02b519ee2b13aef511a995b6ed9650"}  # judge_shapes16.pt
DATA_SEED_OFFSET = 10_000            # the judge trains on make_shapes(seed=10_000 + seed): seeds below are unseen
REAL_THRESHOLD = 0.5                 # valid: P(real) >= this ...
CONFIDENCE = 0.9                     # ... and max P(shape), max P(colour) >= this
IMPOSTORS = ("matched_noise", "color_noise", "blend", "overlay", "recolor", "blur", "noise", "empty", "shuffle")
OFF_PALETTE = 0.25                   # "recolor" impostors: RGB distance (in [0, 1]) to the nearest data colour
SHAPELESS = ("matched_noise", "color_noise", "empty", "shuffle")   # no whole shape to see: outlier exposure


@register_model
class JudgeNet(nn.Module):
    """CNN: images (B, 3, H, W) -> dict of features (B, F) and logits of the four heads.

    Two stages of two 3x3 convolutions (each with GroupNorm and SiLU) and a 2x2 max
    pool, a third stage, then global average and max pooling, so any H, W that is a
    multiple of 4 works. GroupNorm matters: without it the same network, trained as long,
    tells the shapes apart markedly less often; and the max pool makes the judge stricter
    on noisy images than an average pool (``norm`` and ``pool`` of ``train_judge``; the
    measurements are in ``bench/README.md``).
    """

    def __init__(self, size: int = 16, width: int = 32, feature_dim: int = 128, norm: bool = True,
                 pool: str = "max"):
        super().__init__()
        self._config = dict(size=size, width=width, feature_dim=feature_dim, norm=norm, pool=pool)
        self.size = size
        w = width
        act = nn.SiLU
        Pool = nn.AvgPool2d if pool == "avg" else nn.MaxPool2d

        def conv(i, o):
            layers = [nn.Conv2d(i, o, 3, padding=1)]
            if norm:
                layers.append(nn.GroupNorm(8, o))
            return [*layers, act()]

        self.body = nn.Sequential(
            *conv(3, w), *conv(w, w), Pool(2),                       # (B, w, H/2, W/2)
            *conv(w, 2 * w), *conv(2 * w, 2 * w), Pool(2),           # (B, 2w, H/4, W/4)
            *conv(2 * w, 4 * w))                                     # (B, 4w, H/4, W/4)
        self.features = nn.Sequential(nn.Linear(8 * w, feature_dim), act())
        self.heads = nn.ModuleDict({"shape": nn.Linear(feature_dim, len(SHAPE_NAMES)),
                                    "color": nn.Linear(feature_dim, len(COLOR_NAMES)),
                                    "scale": nn.Linear(feature_dim, len(SCALE_NAMES)),
                                    "real": nn.Linear(feature_dim, 1)})

    def forward(self, x: torch.Tensor) -> dict:
        h = self.body(x)                                                 # (B, 4w, h, w)
        pooled = torch.cat([h.mean((2, 3)), h.amax((2, 3))], dim=1)      # (B, 8w)
        f = self.features(pooled)                                        # (B, F)
        out = {name: head(f) for name, head in self.heads.items()}
        out["real"] = out["real"].squeeze(1)                             # (B,)
        out["features"] = f
        return out

    def get_config(self) -> dict:
        return dict(self._config)

    @classmethod
    def from_config(cls, config: dict) -> "JudgeNet":
        return cls(**config)


def resize(x: torch.Tensor, size: int) -> torch.Tensor:
    """Resize square images to ``size``: area averaging for whole factors, else antialiased bilinear."""
    H = x.shape[-1]
    if H == size:
        return x
    if H % size == 0:
        return F.avg_pool2d(x, H // size)
    return F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)


class Judge:
    """A trained ``JudgeNet`` with the rule that makes a sample valid.

    Inputs are (B, 3, H, W) in [-1, 1], any square size (resized to the judge's own);
    outputs are on the input's device (the network moves there).
    """

    def __init__(self, net: JudgeNet, *, info: dict | None = None,
                 real_threshold: float = REAL_THRESHOLD, confidence: float = CONFIDENCE):
        self.net = net.eval()
        self.info = dict(info or {})
        self.real_threshold, self.confidence = real_threshold, confidence

    @property
    def size(self) -> int:
        return self.net.size

    @torch.no_grad()
    def _run(self, x: torch.Tensor, batch_size: int = 1024) -> dict:
        check_tensor("x", x, ndim=4, floating=True)
        if x.shape[1] != 3 or x.shape[2] != x.shape[3]:
            raise ValueError(f"x: expected square RGB images (B, 3, H, H), got {tuple(x.shape)}")
        if x.shape[0] == 0:
            raise ValueError("x: expected at least one image, got an empty batch")
        self.net.to(x.device)
        parts = [self.net(resize(x[i:i + batch_size].float(), self.size)) for i in range(0, len(x), batch_size)]
        return {k: torch.cat([p[k] for p in parts]) for k in parts[0]}

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate features (B, F) for a Frechet distance."""
        return self._run(x)["features"]

    def predict(self, x: torch.Tensor) -> dict:
        """Probabilities: shape_probs (B, 4), color_probs (B, 6), scale_probs (B, 2),
        valid_prob (B,) = P(real), and valid (B,) bool (the module docstring's rule)."""
        out = self._run(x)
        p = {f"{k}_probs": out[k].softmax(1) for k in ("shape", "color", "scale")}
        p["valid_prob"] = out["real"].sigmoid()
        p["valid"] = ((p["valid_prob"] >= self.real_threshold)
                      & (p["shape_probs"].amax(1) >= self.confidence)
                      & (p["color_probs"].amax(1) >= self.confidence))
        return p


def _partners(data: ShapesData, i: torch.Tensor, g: torch.Generator, same) -> torch.Tensor:
    """Random partner images j for images i, redrawn (up to 5 times) where ``same(i, j)``."""
    j = torch.randint(len(data), i.shape, generator=g)
    for _ in range(5):
        redo = same(i, j)
        j[redo] = torch.randint(len(data), (int(redo.sum()),), generator=g)
    return j


def make_impostors(data: ShapesData, kind: str, n: int, g: torch.Generator) -> torch.Tensor:
    """``n`` impostor images of one ``kind`` (one of ``IMPOSTORS``) made from ``data``."""
    check_choice("kind", kind, IMPOSTORS)
    x, N = data.images, len(data)
    reference = x[:2000]                         # enough for per-pixel statistics and colours
    i = torch.randint(N, (n,), generator=g)
    u = torch.rand(n, generator=g)
    if kind == "matched_noise":
        return baselines.matched_noise(reference, n, seed=g, clamp=bool(torch.rand(1, generator=g) < 0.5))
    if kind == "color_noise":
        return baselines.color_noise(reference, n, cell=1 + int(torch.randint(2, (1,), generator=g)), seed=g)
    if kind == "blend":                          # partner differs in shape, colour or place
        j = _partners(data, i, g, lambda i, j: (data.labels[i] == data.labels[j])
                      & (data.colors[i] == data.colors[j]) & (data.positions[i] == data.positions[j]))
        return baselines.blend(x[i], x[j], 0.3 + 0.4 * u)
    if kind == "overlay":                        # a second shape at another place
        j = _partners(data, i, g, lambda i, j: data.positions[i] == data.positions[j])
        return baselines.overlay(x[i], x[j], data.masks[j])
    if kind == "recolor":                        # the shape in a colour the data never uses
        rgb = baselines.off_palette_colors(baselines.palette(data), n, seed=g, min_distance=OFF_PALETTE)
        return baselines.recolor(x[i], data.masks[i], rgb)
    if kind == "blur":
        return baselines.gaussian_blur(x[i], 1.0 + 1.5 * u)
    if kind == "noise":
        return x[i] + (0.2 + 0.8 * u).view(n, 1, 1, 1) * torch.randn(x[i].shape, generator=g)
    if kind == "empty":
        background = (torch.tensor(BACKGROUND) * 2 - 1).view(1, 3, 1, 1).expand_as(x[i])
        return background + 0.1 * u.view(n, 1, 1, 1) * torch.randn(x[i].shape, generator=g)
    return baselines.patch_shuffle(x[i], data.size // 4, seed=g)    # "shuffle"


def train_judge(size: int = 16, *, seconds: float = 150.0, steps: int | None = None, seed: int = 0,
                batch_size: int = 256, n_train: int = 20000, width: int = 32, lr: float = 2e-3,
                norm: bool = True, pool: str = "max", outlier_kinds=SHAPELESS, progress: bool = False) -> Judge:
    """Train a judge on ``make_shapes(n_train, size, seed=DATA_SEED_OFFSET + seed)`` and impostors.

    Each batch is half real images (half of them with noise of std <= 0.03 added) and
    half impostors, an equal share of every kind in ``IMPOSTORS``. The loss is
    BCE(real) + CE(shape) + CE(colour) + 0.5 CE(scale) on the real half, plus 0.5 x the
    cross-entropy of the shape and colour heads to the uniform distribution on the
    impostors (outlier exposure). AdamW with a short warm-up and a cosine decay; fp32.

    Args:
        size: image side the judge is trained at (16 or 32).
        seconds: training time; the step count is fixed from the speed of the first
            20 steps, so the learning-rate schedule still ends at 0.
        steps: exact number of steps instead (reproducible for a given seed).
        seed: seeds the weights, the data and every random choice.

    Returns:
        A ``Judge`` in eval mode; ``judge.info`` records the settings and final losses.
    """
    g = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = JudgeNet(size=size, width=width, norm=norm, pool=pool)
    data = make_shapes(n_train, size=size, seed=DATA_SEED_OFFSET + seed)
    optimizer = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=1e-4)
    half, warmup = batch_size // 2, 50
    share = [half // len(IMPOSTORS) + (k < half % len(IMPOSTORS)) for k in range(len(IMPOSTORS))]
    total, start, step, losses = steps, time.perf_counter(), 0, {}
    net.train()
    while total is None or step < total:
        if total is None and step == 20:          # fix the step count from the measured speed
            total = max(21, int(seconds * 20 / (time.perf_counter() - start)))
        progress_frac = step / total if total else 0.0
        for group in optimizer.param_groups:
            group["lr"] = lr * min(1.0, (step + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * progress_frac))
        i = torch.randint(len(data), (half,), generator=g)
        real = data.images[i]
        mild = (torch.rand(half, 1, 1, 1, generator=g) < 0.5) * 0.03 * torch.rand(half, 1, 1, 1, generator=g)
        real = real + mild * torch.randn(real.shape, generator=g)
        fake = torch.cat([make_impostors(data, kind, k, g) for kind, k in zip(IMPOSTORS, share)])
        shapeless = torch.cat([torch.full((k,), kind in outlier_kinds) for kind, k in zip(IMPOSTORS, share)])
        out = net(torch.cat([real, fake]))
        target = torch.cat([torch.ones(half), torch.zeros(len(fake))])
        parts = {
            "real": F.binary_cross_entropy_with_logits(out["real"], target),
            "shape": F.cross_entropy(out["shape"][:half], data.labels[i]),
            "color": F.cross_entropy(out["color"][:half], data.colors[i]),
            "scale": 0.5 * F.cross_entropy(out["scale"][:half], data.scales[i]),
        }
        if shapeless.any():                       # KL(uniform || p) of both heads on shapeless impostors
            outliers = [out[k][half:][shapeless] for k in ("shape", "color")]
            parts["outlier"] = 0.25 * sum(-v.log_softmax(1).mean() - math.log(v.shape[1]) for v in outliers)
        loss = sum(parts.values())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses = {k: 0.9 * losses.get(k, v.item()) + 0.1 * v.item() for k, v in parts.items()}
        step += 1
        if progress and step % 100 == 0:
            print(f"step {step}/{total}  " + "  ".join(f"{k} {v:.3f}" for k, v in losses.items()), flush=True)
    # No wall-clock time in ``info``: the saved file is then the same, byte for byte, on a rerun.
    info = dict(size=size, seed=seed, steps=step, batch_size=batch_size, n_train=n_train, width=width, lr=lr,
                norm=norm, pool=pool, outlier_kinds=list(outlier_kinds),
                data_seed=DATA_SEED_OFFSET + seed,
                final_losses={k: round(v, 4) for k, v in losses.items()}, torch_version=str(torch.__version__))
    return Judge(net.eval(), info=info)


def save_judge(judge: Judge, path) -> str:
    """Save a judge with ``dlcourse.checkpoints.save_checkpoint``; returns its SHA-256."""
    return save_checkpoint(path, judge.net, model_config(judge.net), extra=judge.info)


def load_judge(size: int = 16, *, path=None) -> Judge:
    """Load the shipped judge (checksum verified, weights-only), or a judge saved at ``path``.

    The shipped judge is 16 px and also takes 32 px images (it resizes them). A file
    at ``path`` is verified against its ``.sha256`` sidecar.
    """
    if path is None:
        path = ASSET_DIR / f"judge_shapes{size}.pt"
        if size not in SHIPPED_SHA256 or not path.is_file():
            raise FileNotFoundError(
                f"no shipped {size} px judge ({path}); the 16 px judge (load_judge(16)) also scores "
                f"{size} px images, or train one: python scripts/train_judge.py --size {size} --out FILE")
        sha256 = SHIPPED_SHA256[size]
    else:
        sha256 = None
    checkpoint = load_checkpoint(path, sha256=sha256)
    net = build_model(checkpoint)
    if not isinstance(net, JudgeNet):
        raise ValueError(f"{path}: holds a {type(net).__name__}, not a JudgeNet")
    return Judge(net, info=checkpoint.get("extra") or {})
