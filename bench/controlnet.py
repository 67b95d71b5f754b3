"""How well samples follow an edge map, with and without the shipped ControlNet (notebook 07b).

    .venv/bin/python bench/controlnet.py                  # about a minute on 1 CPU thread
    .venv/bin/python bench/controlnet.py --n 512 --w 3    # more controls, guided

A script, not a test. The controls are the edge maps of ``make_shapes(n, seed=1)`` (seeds the ControlNet
never trained on; held-out combinations removed). From the same starting noise, DDIM (eta = 0, ``--steps``
calls) samples

- **base, ""**: ``shapes16_unet_text`` with the empty prompt: no control at all, the floor;
- **base, caption**: the base with the control's own caption (shape, size, place and a colour): the text
  says roughly what the edges say exactly;
- **ControlNet, ""**: ``controlnet_shapes16`` with the control and the empty prompt: the edges alone;
- **ControlNet, colour prompt**: the control and its caption with the colour replaced by one drawn at
  random: the prompt sets what the edges leave open.

Columns (``control_following``), each a mean over the samples: **IoU** of the sample's shape mask (pixels
off the background by > 0.35, as ``read_positions``) with the control's shape (coverage > 0.5);
**place** read from the pixels as the control's; **shape** and **size** read by the judge as the
control's; **valid** by the judge; **colour**: the judge reads the prompt's colour (prompts with one).
The real images of the controls, judged the same way, are the ceiling.
"""

from __future__ import annotations

import argparse
import time

import torch

from dlcourse.conditioning.controlnet import control_following
from dlcourse.conditioning.text_to_image import held_out
from dlcourse.data import make_shapes
from dlcourse.data.shapes import COLOR_NAMES
from dlcourse.judge import load_judge
from dlcourse.samplers import sample_ddim
from dlcourse.schedules import get_schedule


def recolor(captions, colors) -> list:
    """Each caption with its colour word replaced by ``COLOR_NAMES[colors[i]]``."""
    out = []
    for caption, c in zip(captions, colors.tolist()):
        words = caption.split()
        out.append(" ".join(COLOR_NAMES[c] if w in COLOR_NAMES else w for w in words))
    return out


def controls(n: int, hold_out, seed: int = 1):
    """The ShapesData of ``n`` controls of ``make_shapes(seed=seed)``, held-out combinations removed."""
    data = make_shapes(2 * n, size=16, seed=seed)
    keep = (~held_out(data.captions, hold_out)).nonzero().squeeze(1)[:n]
    return make_shapes_subset(data, keep)


def make_shapes_subset(data, idx):
    from dataclasses import replace

    return replace(data, images=data.images[idx], labels=data.labels[idx], colors=data.colors[idx],
                   scales=data.scales[idx], positions=data.positions[idx],
                   captions=[data.captions[i] for i in idx.tolist()], edges=data.edges[idx],
                   masks=data.masks[idx], centers=data.centers[idx], radii=data.radii[idx])


def measure(model, info: dict, *, n: int = 256, steps: int = 20, w: float = 1.0, seed: int = 0) -> dict:
    """Print and return the table of the module docstring for ``model`` (a ``ControlledModel``)."""
    judge = load_judge(16)
    schedule = get_schedule(info["schedule"], info["T"])
    data = controls(n, info["hold_out"])
    g = torch.Generator().manual_seed(seed)
    x_T = torch.randn(n, 3, 16, 16, generator=g)
    colors = torch.randint(len(COLOR_NAMES), (n,), generator=g)
    pipe = model.pipe
    rows = {"real images of the controls": control_following(judge, data.images, data, data.colors)}
    runs = [("base, \"\"", None, [""] * n, None), ("base, caption", None, data.captions, data.colors),
            ("ControlNet, \"\"", data.edges, [""] * n, None),
            ("ControlNet, colour prompt", data.edges, recolor(data.captions, colors), colors)]
    for name, control, prompts, asked in runs:
        start = time.perf_counter()
        model.set_control(control)
        x = sample_ddim(model, x_T, schedule, steps, cond=pipe.cond(prompts), guidance_scale=w,
                        prediction_type=info["prediction_type"], progress=False)
        rows[name] = control_following(judge, x, data, asked)
        print(f"  ({name}: {time.perf_counter() - start:.0f} s)", flush=True)
    model.set_control(None)
    print(f"\nDDIM-{steps}, w = {w:g}, {n} controls of make_shapes(seed=1)")
    print(f"{'':30s} {'IoU':>6s} {'place':>6s} {'shape':>6s} {'size':>6s} {'valid':>6s} {'colour':>6s}")
    for name, r in rows.items():
        color = "" if r.color is None else f"{r.color:.3f}"
        print(f"{name:30s} {r.iou:6.3f} {r.position:6.3f} {r.shape:6.3f} {r.scale:6.3f} {r.valid:6.3f} {color:>6s}")
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=256, help="controls (one sample each)")
    p.add_argument("--steps", type=int, default=20, help="DDIM steps")
    p.add_argument("--w", type=float, default=1.0, help="guidance scale")
    p.add_argument("--seed", type=int, default=0, help="seed of the starting noise and the drawn colours")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    from dlcourse.conditioning.controlnet import load_controlnet

    model, info = load_controlnet(device="cpu")
    measure(model, info, n=args.n, steps=args.steps, w=args.w, seed=args.seed)


if __name__ == "__main__":
    main()
