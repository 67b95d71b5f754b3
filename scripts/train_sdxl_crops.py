"""Fine-tune the 16 px shapes U-Net on random crops (and small originals), without and with SDXL's micro-conditions;
train a low-noise refiner (notebook 10c).

    OMP_NUM_THREADS=1 .venv/bin/python scripts/train_sdxl_crops.py plain --out /tmp/sdxl/plain.pt
    OMP_NUM_THREADS=1 .venv/bin/python scripts/train_sdxl_crops.py micro --out /tmp/sdxl/micro.pt
    OMP_NUM_THREADS=1 .venv/bin/python bench/sdxl_crops.py /tmp/sdxl/plain.pt /tmp/sdxl/micro.pt   # the measurement

Data, as SDXL's (Podell et al. 2023, sec. 2.2) in miniature: every batch of 64 is half whole 16 px images
(``make_shapes(10000, size=16, seed=0)``, crop ``(0, 0)``) and half random 16 px crops of 24 px images
(``make_shapes(10000, size=24, seed=1)``, ``dlcourse.systems.sdxl.random_crops``, a fresh corner per use, offsets
0..8 on each axis). 89.8% of 512 such crops show a cut shape (``cut_off``, read from the pixels; 0% of whole
images).

Both runs start from the shipped unconditional ``shapes16_unet`` (0.81M, cosine T = 1000, v-prediction) and see
the same batches, timesteps and noise (``--seed``, 0 measured): AdamW lr 2e-4, weight decay 0.01, gradient
clipping at 1, an EMA of the weights (0.999), fp32 on one CPU thread, ``--steps`` steps (the same for both;
2000 measured, 0.19 CPU s a step: 375 and 374 CPU s on the shared 2-core machine).

- ``plain``: the U-Net alone; it cannot tell a crop from a whole image.
- ``micro``: ``MicroConditioning(unet)``: the crop's ``(c_top, c_left)`` as Fourier features (32 per coordinate)
  through an MLP added to the time embedding, its last layer zero at the start (so step 0 is the plain U-Net).

``--mix sizes`` adds SDXL's original-size condition: every batch is 22 whole 16 px images (original size
``(16, 16)``, crop ``(0, 0)``), 21 random 16 px crops of 24 px images (``(24, 24)``, their corner) and 21 whole images
first shrunk to 8 px and upsampled back (``dlcourse.systems.sdxl.shrink``: blurry; ``(8, 8)``, ``(0, 0)``); ``micro``
is then ``MicroConditioning(unet, original_size=True)`` (size features first, then the crop's). ``refiner`` is
SDXL's refiner in miniature: a fresh small U-Net (``REFINER_CONFIG``, 0.20M) trained from scratch on whole 16 px
images at ``t < --t-max`` (200) only, v-prediction, the same optimiser at ``--lr``.

Shipped (notebook 10c), each trained again by ``python scripts/train_sdxl_crops.py NAME`` (the run, then the file in
``dlcourse/assets`` in float16 with its digest; ``--from RUN.pt`` exports a finished run instead):
``sdxl_shapes16_plain`` (``plain --mix sizes``, 383 CPU s), ``sdxl_shapes16_micro`` (``micro --mix sizes``, 390 CPU s)
and ``sdxl_shapes16_refiner`` (``refiner --lr 5e-4 --steps 4000``, 311 CPU s), seed 0, one thread on the shared
machine at load 12-14. Their loss at t < 200 (v-prediction, 512 fresh whole images): ``shapes16_unet`` 0.0147, the
refiner's training loss at the end 0.066; ``refiner --init base --lr 1e-4 --steps 1000`` (shapes16_unet fine-tuned
at t < 200, 198 CPU s, not shipped: 1.6 MB) ends at 0.0145.

Measured with ``--mix sizes`` (``bench/sdxl_crops.py``, 512 samples, DDIM-20, noise seeds 0 and 1; bench/README.md,
"SDXL's original size and the refiner"): cut off 16.0/13.9% for ``plain``, 0.8/0.6% for ``micro`` at (0, 0) and
size 16 (FD 114.9/109.8 against 11.8/12.0, floor 4.9); ``micro`` at (0, 0) and size 8: high-frequency share
0.0083/0.0094 against 0.0410/0.0410 at size 16 (real sharp 0.0494, real 8 px upsampled 0.0091). The refiner below
t = 100 (200) with DDIM-20 from ``shapes16_unet``: FD 1.23-1.50 (1.96-2.92) times the FD without it (256 samples,
two noise seeds).

The file (a plain ``torch.save`` dict, not shipped) holds the EMA weights in float16, the run's kind, steps and
the process CPU seconds of training (``time.process_time``, which the machine's load does not inflate).

Measured (``bench/sdxl_crops.py``, 512 samples, DDIM-20; table in bench/README.md, "SDXL's crop condition against
cut-off shapes"): the fraction of samples whose shape is cut off by the frame is 23.6% for ``plain`` and 6.6% for
``micro`` asked for the crop (0, 0) (0% for real whole images, 44.9% for the training mix); asked for (8, 8),
``micro`` cuts 60.0%. Valid fraction 83.2% against 96.3%, FD 64.4 against 17.6 (floor 4.9). Trained again with
``--seed 1``: 23.6% against 6.1% cut off.
"""

from __future__ import annotations

import argparse
import copy
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from dlcourse.data import make_shapes
from dlcourse.models import UNet, UNetConfig
from dlcourse.parameterization import diffusion_loss, prediction_target
from dlcourse.pretrained import load_pretrained
from dlcourse.schedules import get_schedule
from dlcourse.systems.sdxl import MicroConditioning, random_crops, shrink

BATCH = 64
REFINER_CONFIG = dict(base_channels=16, channel_mults=(1, 2, 2))        # 0.20M parameters


def build(kind: str, mix: str = "crops", init: str = "scratch") -> torch.nn.Module:
    """The model of a run: the shipped ``shapes16_unet``, wrapped for ``micro``; for ``refiner`` a fresh small U-Net
    (``init="scratch"``) or ``shapes16_unet`` itself (``init="base"``, not shipped: 1.6 MB)."""
    if kind == "refiner" and init == "scratch":
        return UNet(UNetConfig(**REFINER_CONFIG)).train()
    unet, _ = load_pretrained("shapes16_unet", device="cpu")
    unet.train()
    return MicroConditioning(unet, original_size=(mix == "sizes")) if kind == "micro" else unet


def load_run(path) -> tuple[torch.nn.Module, dict]:
    """A file this script wrote: ``(model in float32, eval mode, info)``."""
    blob = torch.load(path, map_location="cpu", weights_only=True)
    model = build(blob["kind"], blob.get("mix", "crops"), blob.get("init", "scratch"))
    model.load_state_dict({k: v.float() for k, v in blob["state_dict"].items()})
    return model.eval(), {k: v for k, v in blob.items() if k != "state_dict"}


def batch(mix: str, whole, big, g_data):
    """One training batch of 64 (x_0, crops_coords_top_left, original_size) of the mix (see the docstring)."""
    if mix == "crops":
        half = BATCH // 2
        i = torch.randint(len(whole), (half,), generator=g_data)
        j = torch.randint(len(big), (half,), generator=g_data)
        crops, corners = random_crops(big[j], 16, g_data)
        x_0 = torch.cat([whole[i], crops])                                    # (64, 3, 16, 16)
        coords = torch.cat([torch.zeros(half, 2, dtype=torch.long), corners]).float()      # (64, 2)
        return x_0, coords, None
    n_whole, n_crop = 22, 21
    n_small = BATCH - n_whole - n_crop
    i = torch.randint(len(whole), (n_whole + n_small,), generator=g_data)
    j = torch.randint(len(big), (n_crop,), generator=g_data)
    crops, corners = random_crops(big[j], 16, g_data)
    small = shrink(whole[i[n_whole:]], 8)                                     # 8 px originals, upsampled: blurry
    x_0 = torch.cat([whole[i[:n_whole]], crops, small])                       # (64, 3, 16, 16)
    coords = torch.cat([torch.zeros(n_whole, 2), corners.float(), torch.zeros(n_small, 2)])          # (64, 2)
    sizes = torch.tensor([16.0] * n_whole + [24.0] * n_crop + [8.0] * n_small)[:, None].expand(BATCH, 2)
    return x_0, coords, sizes.contiguous()


def refiner_loss(model, x_0, schedule, t_max: int, generator) -> torch.Tensor:
    """``diffusion_loss`` (v-prediction) with t ~ U{0..t_max-1}: the refiner sees only low noise levels."""
    B = x_0.shape[0]
    t = torch.randint(0, t_max, (B,), generator=generator)
    eps = torch.randn(x_0.shape, generator=generator)
    alpha_bar = schedule.alphas_cumprod[t]
    ab = alpha_bar.view(B, 1, 1, 1)
    x_t = ab.sqrt() * x_0 + (1 - ab).sqrt() * eps
    return F.mse_loss(model(x_t, t), prediction_target(x_0, eps, alpha_bar, "v_prediction"))


# the shipped files: name -> (kind, mix, t_max, lr, steps) of the run that made them
SHIPPED = {"sdxl_shapes16_plain": ("plain", "sizes", 200, 2e-4, 2000),
           "sdxl_shapes16_micro": ("micro", "sizes", 200, 2e-4, 2000),
           "sdxl_shapes16_refiner": ("refiner", "crops", 200, 5e-4, 4000)}


def export(run_file, name: str) -> str:
    """Store a run's EMA weights (float16) as ``dlcourse/assets/NAME.pt`` with its sidecar; return the digest."""
    from dlcourse.checkpoints import model_config, save_checkpoint
    from dlcourse.files import ASSET_DIR

    model, info = load_run(run_file)
    kind, mix, t_max, lr, steps = SHIPPED[name]
    if (info["kind"], info.get("mix", "crops"), info["steps"]) != (kind, mix, steps):
        raise ValueError(f"{run_file}: a {info['kind']} run of mix {info.get('mix')} and {info['steps']} steps, "
                         f"but {name} is a {kind} run of mix {mix} and {steps} steps")
    config = model_config(model.half(), schedule="cosine", T=1000, prediction_type="v_prediction", image_size=16,
                          num_classes=None, clip_x0=True, data="shapes16")
    extra = {**{k: v for k, v in info.items() if isinstance(v, (int, float, str))}, "base": "shapes16_unet"}
    if kind == "refiner":
        extra["t_max"], extra["base"] = t_max, None
    digest = save_checkpoint(ASSET_DIR / f"{name}.pt", model, config, extra=extra)
    print(f"{name}: {ASSET_DIR / (name + '.pt')} sha256 {digest}")
    return digest


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("kind", choices=("plain", "micro", "refiner", *SHIPPED),
                   help="a run (with --out), or a shipped file's name: its run, then the file in dlcourse/assets")
    p.add_argument("--from", dest="src", type=Path, help="with a shipped name: export this finished run instead")
    p.add_argument("--mix", choices=("crops", "sizes"), default="crops",
                   help="crops: half whole, half crops; sizes: also 8 px originals (and the size condition)")
    p.add_argument("--t-max", type=int, default=200, help="refiner: its timesteps are 0..t_max-1")
    p.add_argument("--init", choices=("scratch", "base"), default="scratch",
                   help="refiner: a fresh small U-Net, or shapes16_unet fine-tuned on the low noise levels")
    p.add_argument("--lr", type=float, default=2e-4)
    p.add_argument("--steps", type=int, default=2000)
    p.add_argument("--out", type=Path, help="the run's file (a shipped name: a temporary one by default)")
    p.add_argument("--seed", type=int, default=0, help="seeds the new layers, the batches, timesteps and noise")
    args = p.parse_args()
    shipped = args.kind if args.kind in SHIPPED else None
    if shipped and args.src is not None:
        export(args.src, shipped)
        return
    if shipped:
        args.kind, args.mix, args.t_max, args.lr, args.steps = SHIPPED[shipped]
        args.out = args.out or Path(f"/tmp/{shipped}_run.pt")
    elif args.out is None:
        p.error("--out is required for a run")
    torch.set_num_threads(1)
    torch.manual_seed(args.seed)

    whole = make_shapes(10_000, size=16, seed=0).images                       # (10000, 3, 16, 16)
    big = make_shapes(10_000, size=24, seed=1).images                         # (10000, 3, 24, 24)
    model = build(args.kind, args.mix, args.init)
    ema = copy.deepcopy(model).eval().requires_grad_(False)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.01)
    schedule = get_schedule("cosine", 1000)
    g_data, g_loss = (torch.Generator().manual_seed(2 * args.seed + 1),
                       torch.Generator().manual_seed(2 * args.seed + 2))
    start, losses = time.process_time(), []
    for step in range(args.steps):
        if args.kind == "refiner":
            x_0 = whole[torch.randint(len(whole), (BATCH,), generator=g_data)]
            loss = refiner_loss(model, x_0, schedule, args.t_max, g_loss)
        else:
            x_0, coords, sizes = batch(args.mix, whole, big, g_data)
            cond = None
            if args.kind == "micro":
                cond = {"crops_coords_top_left": coords, "cond": None}
                if sizes is not None:
                    cond["original_size"] = sizes
            loss = diffusion_loss(model, x_0, schedule, prediction_type="v_prediction", cond=cond, generator=g_loss)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        with torch.no_grad():
            for pe, pm in zip(ema.parameters(), model.parameters()):
                pe.lerp_(pm, 1 - 0.999)
        losses.append(loss.item())
        if (step + 1) % 100 == 0:
            print(f"step {step + 1}: loss {sum(losses[-100:]) / 100:.4f}, "
                  f"CPU {time.process_time() - start:.0f} s", flush=True)
    cpu = time.process_time() - start
    args.out.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"kind": args.kind, "mix": args.mix, "init": args.init, "t_max": args.t_max, "lr": args.lr,
                "steps": args.steps, "seed": args.seed, "cpu_seconds": cpu,
                "state_dict": {k: v.half() for k, v in ema.state_dict().items()}}, args.out)
    print(f"{args.kind}: {args.steps} steps in {cpu:.0f} CPU s -> {args.out}")
    if shipped:
        export(args.out, shipped)


if __name__ == "__main__":
    main()
