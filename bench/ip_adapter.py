"""Attribute transfer of the shipped IP-Adapter from its reference image, as lambda goes 0 -> 1 (notebook 07b).

    .venv/bin/python bench/ip_adapter.py                        # about 5 minutes on 1 CPU thread
    .venv/bin/python bench/ip_adapter.py --scales 0,1 --n 64    # quicker

A script, not a test. ``ip_adapter_shapes16`` (``scripts/train_ip_adapter.py``) in ``shapes16_unet_text``
is sampled with DDIM (eta = 0, ``--steps`` steps, guidance ``--w``) from the same starting noise for
every lambda, one sample per reference image (``make_shapes(seed=1)``, the held-out blue triangles
removed), under two prompts:

- **empty**: the empty prompt; everything the sample shows beyond "a shape" must come from the reference;
- **disagree**: a caption naming another shape and another colour than the reference's (same size and
  place; never a blue triangle), so the text and the image pull apart.

The judge reads each sample; the columns are fractions of all samples (an invalid sample counts as
wrong in the attribute columns): **valid**; the reference's **shape**, **colour**, **size**, and its
**place** (read from the pixels); and for the disagreeing prompt the **prompt's** shape and colour.

It also checks that lambda = 0 gives exactly the text-only model's samples (``torch.equal`` on the
DDIM samples of ``shapes16_unet_text`` with the same prompts and noise).
"""

from __future__ import annotations

import argparse
import time

import torch

from dlcourse.conditioning.ip_adapter import load_ip_adapter
from dlcourse.conditioning.text_to_image import held_out, load_text_to_image, read_positions
from dlcourse.data import make_shapes
from dlcourse.data.shapes import COLOR_NAMES, POSITION_NAMES, SCALE_NAMES, SHAPE_NAMES
from dlcourse.judge import load_judge
from dlcourse.samplers import sample_ddim
from dlcourse.schedules import get_schedule
from dlcourse.tensors import seeded_noise


def disagreeing_prompts(data, hold_out, seed: int = 0) -> list[str]:
    """A caption per image with another shape and another colour (same size and place), never held out."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for s, c, z, p in zip(data.labels.tolist(), data.colors.tolist(), data.scales.tolist(), data.positions.tolist()):
        while True:
            s2 = (s + 1 + int(torch.randint(0, len(SHAPE_NAMES) - 1, (1,), generator=g))) % len(SHAPE_NAMES)
            c2 = (c + 1 + int(torch.randint(0, len(COLOR_NAMES) - 1, (1,), generator=g))) % len(COLOR_NAMES)
            caption = f"a {SCALE_NAMES[z]} {COLOR_NAMES[c2]} {SHAPE_NAMES[s2]} {POSITION_NAMES[p]}"
            if not bool(held_out([caption], hold_out)[0]):
                out.append((caption, s2, c2))
                break
    return out


def rates(judge, x: torch.Tensor, want: dict) -> dict:
    """Fractions of samples whose judged attribute equals ``want[k]`` (valid samples only count as right)."""
    p = judge.predict(x)
    valid = p["valid"].cpu()
    read = {"shape": p["shape_probs"].argmax(1).cpu(), "color": p["color_probs"].argmax(1).cpu(),
            "scale": p["scale_probs"].argmax(1).cpu(), "position": read_positions(x)}
    out = {"valid": float(valid.float().mean())}
    for k, v in want.items():
        out[k] = float((valid & (read[k.split("_")[-1]] == v)).float().mean())
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--scales", default="0,0.25,0.5,0.75,1", help="lambdas, comma separated")
    p.add_argument("--n", type=int, default=256, help="reference images (one sample each)")
    p.add_argument("--steps", type=int, default=20, help="DDIM steps")
    p.add_argument("--w", type=float, default=1.0, help="classifier-free guidance scale (1: none)")
    p.add_argument("--seed", type=int, default=0, help="seed of the starting noise")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    scales = [float(s) for s in args.scales.split(",")]

    model, info = load_ip_adapter(device="cpu")
    pipe, _ = load_text_to_image(info["base"], device="cpu")
    judge = load_judge(16)
    schedule = get_schedule(info["schedule"], info["T"])
    pool = make_shapes(2 * args.n, size=16, seed=1)
    keep = (~held_out(pool.captions, info["hold_out"])).nonzero().squeeze(1)[:args.n]
    refs = pool.images[keep]
    n = refs.shape[0]
    ref_attrs = {"shape": pool.labels[keep], "color": pool.colors[keep], "scale": pool.scales[keep],
                 "position": pool.positions[keep]}
    sub = type("Sub", (), {k: getattr(pool, k)[keep] for k in ("labels", "colors", "scales", "positions")})
    disagree = disagreeing_prompts(sub, info["hold_out"], seed=args.seed)
    prompts = {"empty": [""] * n, "disagree": [d[0] for d in disagree]}
    x_T = seeded_noise((n, 3, 16, 16), args.seed)
    sample = lambda m, cond: sample_ddim(m, x_T, schedule, args.steps, cond=cond, guidance_scale=args.w,   # noqa: E731
                                         prediction_type=info["prediction_type"], progress=False)
    print(f"{info['name']} in {info['base']}: {n} references (shapes seed 1), DDIM-{args.steps}, w = {args.w:g}, "
          f"{torch.get_num_threads()} thread(s)")
    header = (f"{'prompt':9s} {'lambda':>6s} {'valid':>6s} {'ref shape':>9s} {'ref colour':>10s} {'ref size':>8s} "
              f"{'ref place':>9s} {'prompt shape':>12s} {'prompt colour':>13s} {'s':>4s}")
    print(header)
    with torch.no_grad():
        for name, texts in prompts.items():
            cond = model.cond(texts, refs)
            for s in scales:
                start = time.perf_counter()
                x = sample(model.set_scale(s), cond)
                want = dict(ref_attrs)
                if name == "disagree":
                    want["prompt_shape"] = torch.tensor([d[1] for d in disagree])
                    want["prompt_color"] = torch.tensor([d[2] for d in disagree])
                r = rates(judge, x, want)
                extra = (f"{100 * r['prompt_shape']:11.1f}% {100 * r['prompt_color']:12.1f}%" if name == "disagree"
                         else f"{'':>12s} {'':>13s}")
                print(f"{name:9s} {s:6.2f} {100 * r['valid']:5.1f}% {100 * r['shape']:8.1f}% {100 * r['color']:9.1f}% "
                      f"{100 * r['scale']:7.1f}% {100 * r['position']:8.1f}% {extra} {time.perf_counter() - start:4.0f}",
                      flush=True)
                if s == 0:
                    same = torch.equal(x, sample(pipe, pipe.cond(texts)))
                    print(f"{'':9s} lambda = 0 equals shapes16_unet_text's samples exactly: {same}", flush=True)


if __name__ == "__main__":
    main()
