"""SDXL's crop conditioning measured: how many samples show a shape cut off by the frame (notebook 10).

    OMP_NUM_THREADS=1 .venv/bin/python bench/sdxl_crops.py /tmp/sdxl/plain.pt /tmp/sdxl/micro.pt    # the table
    OMP_NUM_THREADS=1 .venv/bin/python bench/sdxl_crops.py /tmp/sdxl/plain.pt /tmp/sdxl/micro.pt --n 128

A script, not a test. The two files come from ``scripts/train_sdxl_crops.py`` (``plain``: the U-Net fine-tuned on
the half-whole, half-cropped data without the crop; ``micro``: the same with SDXL's crop condition). Every model
is sampled with DDIM (eta = 0, ``--steps`` steps, v-prediction, clipped x_0) from the same ``--n`` starting noises
(``--seed``, default 0), one thread. Rows: real images first (the detector's reading of the data), then the shipped
``shapes16_unet`` before fine-tuning, the plain model, and the conditioned one asked for each crop of ``--crops``
((0, 0) is "no crop"; (8, 8) the largest offset of training). Columns:

- **cut off**: the fraction of images whose shape touches the frame (``dlcourse.systems.sdxl.cut_off``, read
  from the pixels);
- **valid**: the judge's valid fraction (``dlcourse.metrics.valid_fraction``; the judge saw only whole shapes);
- **FD**: Frechet distance in the judge's features to ``--n`` real whole 16 px images (``make_shapes(seed=2)``);
  the floor is a second real set (seed 3).
"""

from __future__ import annotations

import argparse
import importlib.util
import time
from pathlib import Path

import torch

from dlcourse.data import make_shapes
from dlcourse.judge import load_judge
from dlcourse.metrics import frechet_distance, valid_fraction
from dlcourse.pretrained import load_pretrained
from dlcourse.samplers import sample_ddim
from dlcourse.schedules import get_schedule
from dlcourse.systems.sdxl import cut_off, random_crops
from dlcourse.tensors import seeded_noise


def _train_script():
    path = Path(__file__).resolve().parent.parent / "scripts" / "train_sdxl_crops.py"
    spec = importlib.util.spec_from_file_location("train_sdxl_crops", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("plain", type=Path)
    p.add_argument("micro", type=Path)
    p.add_argument("--n", type=int, default=512)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--seed", type=int, default=0, help="seed of the starting noise")
    p.add_argument("--crops", default="0,0;4,4;8,8;0,8", help="crops for the conditioned model, 'top,left;...'")
    args = p.parse_args()
    torch.set_num_threads(1)
    n = args.n

    judge = load_judge(16)
    real = make_shapes(n, size=16, seed=2).images
    real_feats = judge.features(real)
    big = make_shapes(n, size=24, seed=4).images
    crops, _ = random_crops(big, 16, torch.Generator().manual_seed(0))
    mix = torch.cat([make_shapes(n - n // 2, size=16, seed=5).images, crops[: n // 2]])

    def row(name: str, x: torch.Tensor, seconds: float | None = None) -> None:
        fd = frechet_distance(judge.features(x), real_feats)
        t = "" if seconds is None else f" {seconds:.0f} |"
        print(f"| {name} | {cut_off(x).float().mean():.1%} | {valid_fraction(judge, x):.1%} | {fd:.2f} |{t}",
              flush=True)

    print(f"n = {n}, DDIM-{args.steps}, noise seed {args.seed}; load {open('/proc/loadavg').read().split()[:3]}")
    print("| images | cut off | valid | FD |")
    print("|---|---|---|---|")
    row("real, whole (floor: a second set)", make_shapes(n, size=16, seed=3).images)
    row("real, 16 px crops of 24 px", crops)
    row("real, training mix (half whole, half crops)", mix)

    schedule = get_schedule("cosine", 1000)
    x_T = seeded_noise((n, 3, 16, 16), seed=args.seed)

    def sample(model) -> tuple[torch.Tensor, float]:
        start = time.process_time()
        with torch.no_grad():
            x = sample_ddim(model, x_T, schedule, args.steps, prediction_type="v_prediction", clip_x0=True,
                            progress=False)
        return x, time.process_time() - start

    base, _ = load_pretrained("shapes16_unet", device="cpu")
    row("shapes16_unet, before fine-tuning", sample(base)[0])
    train = _train_script()
    plain, info_p = train.load_run(args.plain)
    micro, info_m = train.load_run(args.micro)
    for info in (info_p, info_m):
        print(f"# {info['kind']}: {info['steps']} steps, seed {info.get('seed', 0)}, "
              f"{info['cpu_seconds']:.0f} CPU s of training")
    row("(a) fine-tuned on crops, no crop condition", sample(plain)[0])
    for c in args.crops.split(";"):
        top, left = (int(v) for v in c.split(","))
        row(f"(b) with the crop condition, asked for ({top}, {left})", sample(micro.at((top, left)))[0])


if __name__ == "__main__":
    main()
