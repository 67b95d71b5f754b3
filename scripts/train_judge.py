"""Train the shapes judge, save it with its SHA-256, and measure it.

    .venv/bin/python scripts/train_judge.py                   # train, save, measure
    .venv/bin/python scripts/train_judge.py --evaluate-only   # measure the shipped judge (~30 s)

Training: 800 steps of batch 256, fp32, on the CPU. Measured: ~105 s with 2 threads on
a 16-core server running 3 other jobs (torch 2.11); 14 minutes on a 2-core machine
that other processes kept busy (load 4-5). A fixed seed and step count make a rerun
with the same torch version and thread count write the same file, byte for byte.
The judge is saved to dlcourse/assets/judge_shapes16.pt (with a .sha256 sidecar);
after retraining, copy the printed digest into ``SHIPPED_SHA256`` in
dlcourse/judge.py, since ``load_judge`` checks the shipped file against that constant.

Everything measured uses shapes the judge never saw (make_shapes seeds 1, 2, 3; it
trains on seed 10_000 + seed), and fresh impostors.
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import torch

from dlcourse.data import make_shapes
from dlcourse.judge import ASSET_DIR, load_judge, save_judge, train_judge
from dlcourse.metrics import baselines, frechet_distance, valid_fraction

EVAL_SEED = 1


def impostor_sets(n: int, size: int = 16, seed: int = EVAL_SEED) -> dict:
    """Named sets of ``n`` images that are not valid shapes images (fresh seeds)."""
    d = make_shapes(2 * n, size=size, seed=seed)
    x, g = d.images[:n], torch.Generator().manual_seed(1000 + seed)
    partner = n + torch.arange(n)                                           # images n..2n-1
    differ = d.positions[:n] != d.positions[partner]
    smooth = torch.nn.functional.interpolate(2 * torch.rand(n, 3, 4, 4, generator=g) - 1, size=(size, size),
                                             mode="bilinear", align_corners=False)
    rgb = baselines.off_palette_colors(baselines.palette(d), n, seed=g)     # >= 0.25 from every data colour
    ab = 0.5                                                                 # x_t at alpha_bar = 0.5
    return {
        "matched noise": baselines.matched_noise(d.images, n, seed=g),
        "matched noise (unclamped)": baselines.matched_noise(d.images, n, seed=g, clamp=False),
        "colour noise (1 px)": baselines.color_noise(d.images, n, cell=1, seed=g),
        "colour noise (2 px)": baselines.color_noise(d.images, n, cell=2, seed=g),
        "blend 50/50": baselines.blend(x, d.images[partner], 0.5),
        "two shapes (overlay)": baselines.overlay(x, d.images[partner], d.masks[partner])[differ],
        "blur sigma 1.5 px": baselines.gaussian_blur(x, 1.5),
        "noise std 0.5": x + 0.5 * torch.randn(x.shape, generator=g),
        "tiles shuffled": baselines.patch_shuffle(x, size // 4, seed=g),
        "off-palette colour": baselines.recolor(x, d.masks[:n], rgb),
        "held out: uniform noise": 2 * torch.rand(x.shape, generator=g) - 1,
        "held out: smooth colour noise": smooth,
        "held out: x_t at alpha_bar 0.5": ab**0.5 * x + (1 - ab) ** 0.5 * torch.randn(x.shape, generator=g),
    }


def measure(judge, n: int = 1000) -> None:
    """Print the judge's accuracy, valid fractions and the FD reference points."""
    real = make_shapes(n, size=judge.size, seed=EVAL_SEED)
    out = judge.predict(real.images)
    acc = {k: float((out[f"{k}_probs"].argmax(1) == getattr(real, attr)).float().mean())
           for k, attr in (("shape", "labels"), ("color", "colors"), ("scale", "scales"))}
    print(f"held-out real shapes (n={n}, seed {EVAL_SEED}): accuracy shape {acc['shape']:.4f}  "
          f"colour {acc['color']:.4f}  scale {acc['scale']:.4f}")
    big = make_shapes(n, size=2 * judge.size, seed=EVAL_SEED)
    out32 = judge.predict(big.images)
    print(f"the same shapes drawn at {2 * judge.size} px (resized): accuracy shape "
          f"{float((out32['shape_probs'].argmax(1) == big.labels).float().mean()):.4f}  colour "
          f"{float((out32['color_probs'].argmax(1) == big.colors).float().mean()):.4f}  "
          f"valid {float(out32['valid'].float().mean()):.4f}")
    g = torch.Generator().manual_seed(7)
    print("\nvalid fraction (valid: P(real) >= 0.5 and P(shape), P(colour) >= 0.9)")
    print(f"  {'real (held out)':34s} {float(out['valid'].float().mean()):.4f}")
    for std in (0.02, 0.03, 0.05, 0.1, 0.15, 0.2, 0.3):
        noisy = real.images + std * torch.randn(real.images.shape, generator=g)
        print(f"  {f'real + noise std {std}':34s} {valid_fraction(judge, noisy):.4f}")
    for sigma in (0.5, 0.75, 1.0, 1.5):
        print(f"  {f'real, blurred sigma {sigma} px':34s} "
              f"{valid_fraction(judge, baselines.gaussian_blur(real.images, sigma)):.4f}")
    partner = make_shapes(n, size=judge.size, seed=EVAL_SEED + 10).images
    for w in (0.1, 0.2, 0.3):
        print(f"  {f'blend {1 - w:.1f} / {w:.1f}':34s} "
              f"{valid_fraction(judge, baselines.blend(real.images, partner, w)):.4f}")
    for name, x in impostor_sets(n, judge.size).items():
        print(f"  {name:34s} {valid_fraction(judge, x):.4f}   (n={len(x)})")

    print(f"\nFrechet distance in the judge's features, against real set A (seed 1; n={n} per set)")
    feats = {s: judge.features(make_shapes(n, size=judge.size, seed=s).images) for s in (1, 2, 3)}
    floors = [frechet_distance(feats[a], feats[b]) for a, b in ((1, 2), (1, 3), (2, 3))]
    print(f"  {'real vs real (floor; seeds 1-2, 1-3, 2-3)':44s} {'  '.join(f'{f:.2f}' for f in floors)}")
    x = make_shapes(n, size=judge.size, seed=2).images

    def fd(y):
        return frechet_distance(feats[1], judge.features(y))

    for std in (0.02, 0.05, 0.1, 0.2):
        print(f"  {f'real + noise std {std}':44s} {fd(x + std * torch.randn(x.shape, generator=g)):.2f}")
    for sigma in (0.5, 0.75, 1.0):
        print(f"  {f'real, blurred sigma {sigma} px':44s} {fd(baselines.gaussian_blur(x, sigma)):.2f}")
    for frac in (0.1, 0.25, 0.5):
        m = int(frac * n)
        mixed = torch.cat([x[m:], baselines.matched_noise(x, m, seed=g)])
        print(f"  {f'real with {frac:.0%} replaced by matched noise':44s} {fd(mixed):.2f}")
    many = make_shapes(8 * n, size=judge.size, seed=3)
    for name, keep in (("only circles (mode collapse)", many.labels == 0), ("only red", many.colors == 0),
                       ("only large", many.scales == 1), ("only in the centre", many.positions == 4)):
        print(f"  {name:44s} {fd(many.images[keep][:n]):.2f}")
    for name, y in impostor_sets(n, judge.size, seed=4).items():
        if not name.startswith("held out") and len(y) == n:
            print(f"  {name:44s} {fd(y):.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=16)
    parser.add_argument("--steps", type=int, default=800, help="training steps (batch 256)")
    parser.add_argument("--seconds", type=float, default=None, help="train for this long instead of --steps")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2, help="CPU threads (the result depends on it slightly)")
    parser.add_argument("--out", type=Path, default=None, help="default: dlcourse/assets/judge_shapes{size}.pt")
    parser.add_argument("--evaluate-only", action="store_true", help="measure the shipped judge, train nothing")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    if args.evaluate_only:
        judge = load_judge(args.size, path=args.out)
    else:
        start = time.perf_counter()
        judge = train_judge(args.size, steps=None if args.seconds else args.steps,
                            seconds=args.seconds or math.inf, seed=args.seed, progress=True)
        print(f"trained {judge.info['steps']} steps in {time.perf_counter() - start:.0f} s: {judge.info}")
        out = args.out or ASSET_DIR / f"judge_shapes{args.size}.pt"
        digest = save_judge(judge, out)
        print(f"saved {out} ({out.stat().st_size / 1e6:.2f} MB)\nSHA-256 {digest}\n"
              f"(for the shipped file, set SHIPPED_SHA256[{args.size}] in dlcourse/judge.py to this)")
    print()
    measure(judge)


if __name__ == "__main__":
    main()
