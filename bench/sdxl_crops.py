"""SDXL's micro-conditions and refiner measured: cut-off shapes, sharpness, and the refiner's last steps (notebook 10c).

    OMP_NUM_THREADS=1 .venv/bin/python bench/sdxl_crops.py /tmp/sdxl/plain.pt /tmp/sdxl/micro.pt    # the table
    OMP_NUM_THREADS=1 .venv/bin/python bench/sdxl_crops.py /tmp/sdxl/plain.pt /tmp/sdxl/micro.pt --n 128
    OMP_NUM_THREADS=1 .venv/bin/python bench/sdxl_crops.py /tmp/sdxl2/plain_sizes.pt /tmp/sdxl2/micro_sizes.pt \
        --refiner /tmp/sdxl2/refiner.pt                                  # original size, then the refiner

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
  the floor is a second real set (seed 3);
- **HF**: the mean share of spectral power above 0.25 cycles per pixel (``high_frequency_energy``), the detail an
  8 px image cannot hold: sharpness.

Files of ``--mix sizes`` (the conditioned one with the original size too) add rows asking for each size of
``--sizes`` at the crop (0, 0). ``--refiner FILE ...`` (``refiner`` runs) adds, for ``shapes16_unet``, (a) and the
conditioned model asked for (0, 0) (and size 16), DDIM with the refiner taking every step below each switch
timestep of ``--switch`` (``sample_with_refiner``): the same number of calls. Any file may also be a shipped name
(``sdxl_shapes16_plain``, ...), loaded from ``dlcourse/assets``.
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
from dlcourse.systems.sdxl import cut_off, high_frequency_energy, random_crops, sample_with_refiner, shrink
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
    p.add_argument("--sizes", default="16;8;24", help="original sizes for a size-conditioned model, 'a;b;...'")
    p.add_argument("--refiner", nargs="+", default=[], help="refiner runs' files (or shipped name): their rows")
    p.add_argument("--switch", default="100;200;400", help="the refiner's switch timesteps, 'a;b;...'")
    p.add_argument("--refiner-steps", default="20;10", help="DDIM steps of the refiner's rows, 'a;b'")
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
        print(f"| {name} | {cut_off(x).float().mean():.1%} | {valid_fraction(judge, x):.1%} | {fd:.2f} | "
              f"{high_frequency_energy(x).mean():.4f} |{t}", flush=True)

    print(f"n = {n}, DDIM-{args.steps}, noise seed {args.seed}; load {open('/proc/loadavg').read().split()[:3]}")
    print("| images | cut off | valid | FD | HF |")
    print("|---|---|---|---|---|")
    row("real, whole (floor: a second set)", make_shapes(n, size=16, seed=3).images)
    row("real, 16 px crops of 24 px", crops)
    row("real, training mix (half whole, half crops)", mix)
    row("real, 8 px originals upsampled to 16", shrink(make_shapes(n, size=16, seed=5).images, 8))

    schedule = get_schedule("cosine", 1000)
    x_T = seeded_noise((n, 3, 16, 16), seed=args.seed)

    def sample(model, steps: int | None = None) -> tuple[torch.Tensor, float]:
        start = time.process_time()
        with torch.no_grad():
            x = sample_ddim(model, x_T, schedule, steps or args.steps, prediction_type="v_prediction", clip_x0=True,
                            progress=False)
        return x, time.process_time() - start

    base, _ = load_pretrained("shapes16_unet", device="cpu")
    row("shapes16_unet, before fine-tuning", sample(base)[0])
    train = _train_script()

    def load(file):
        if str(file) in train.SHIPPED:
            model, info = load_pretrained(str(file), device="cpu")
            return model.float().eval(), info
        return train.load_run(file)

    plain, info_p = load(args.plain)
    micro, info_m = load(args.micro)
    for info in (info_p, info_m):
        print(f"# {info['kind']}: mix {info.get('mix', 'crops')}, {info['steps']} steps, seed {info.get('seed', 0)}, "
              f"{info['cpu_seconds']:.0f} CPU s of training")
    row("(a) fine-tuned on the mix, no micro-condition", sample(plain)[0])
    sized = getattr(micro, "original_size", False)
    for c in args.crops.split(";"):
        top, left = (int(v) for v in c.split(","))
        what = "the micro-conditions, asked for size 16 and" if sized else "the crop condition, asked for"
        row(f"(b) with {what} ({top}, {left})", sample(micro.at((top, left)))[0])
    if sized:
        for size in (int(v) for v in args.sizes.split(";")):
            row(f"(b) asked for the crop (0, 0) and original size ({size}, {size})",
                sample(micro.at((0, 0), (size, size)))[0])
    refiners = [(file, *load(file)) for file in args.refiner]
    for file, refiner, info_r in refiners:
        print(f"# refiner {file}: {sum(p.numel() for p in refiner.parameters()) / 1e6:.2f}M parameters, from "
              f"{info_r.get('init', 'scratch')}, t < {info_r.get('t_max')}, {info_r['steps']} steps, "
              f"{info_r['cpu_seconds']:.0f} CPU s of training")
    for steps in (int(v) for v in args.refiner_steps.split(";")) if refiners else ():
        for name, model in (("shapes16_unet", base), ("(a)", plain), ("(b) at (0, 0), size 16", micro.at((0, 0)))):
            row(f"{name}, DDIM-{steps}, no refiner", sample(model, steps)[0])
            for k, (file, refiner, info_r) in enumerate(refiners):
                for switch in (int(v) for v in args.switch.split(";")):
                    with torch.no_grad():
                        x = sample_with_refiner(model, refiner, x_T, schedule, steps, switch,
                                                prediction_type="v_prediction", clip_x0=True, progress=False)
                    row(f"{name}, DDIM-{steps}, refiner {k + 1} below t = {switch}", x)


if __name__ == "__main__":
    main()
