"""Train notebook 08's latent consistency model (LCM's first idea: distil in a latent space) and save it.

    OMP_NUM_THREADS=1 .venv/bin/python scripts/train_lcm.py lcm_shapes32_stage1 lcm_shapes32

``lcm_shapes32``: consistency distillation (``dlcourse.consistency.train_consistency``) in notebook 06's latent
space. The data are the 20,000 training shapes at 32 px encoded once by the shipped ``vae_shapes32`` (the means,
times its scale factor, ``dlcourse.latent.encode``): 4x8x8 latents. The teacher is the shipped latent U-Net
``latent_shapes32_unet`` (cosine schedule, T = 1000, v-prediction, unconditional), read in flow time by
``dlcourse.consistency.FlowFromVP``; its solver step is Euler's in flow time, which is DDIM's step between the
two levels' timesteps (the solver LCM uses). N = 50 even levels in flow time from the flow time of timestep 0
(t_min = 0.0064) to 1: each interval skips ~20 of the teacher's 1000 timesteps, LCM's "skipping-step".

The student cannot start from the teacher's weights: the teacher (1.23M parameters) stored in float16 would be
2.5 MB, over this asset's 2 MB. It is a smaller U-Net of the same design (base width 32, 0.55M parameters,
1.1 MB in float16), trained from its random start with Song et al.'s boundary coefficients (``c_skip``,
``c_out``, sigma_data = 1: the latents are scaled to unit spread), target EMA mu 0.95, pseudo-Huber distance,
batch 64, EMA 0.999, one CPU thread, fp32, in two stages of 1500 steps (each fixed in steps and seeds, never in
seconds): ``lcm_shapes32_stage1`` from the random start, AdamW 1e-3 with a cosine decay to 0 (kept in
``WORK_DIR``, not shipped); ``lcm_shapes32`` from stage 1's EMA weights, AdamW 5e-4, cosine again. On one thread
of the shared 2-core machine (load average 5-16) the stages took 1002 s and 1316 s, and encoding the 20,000
images 424 s before each.

Measured by ``bench/lcm_shapes32.py`` (n = 500, floor FD 5.90; the teacher's 50 DDIM steps FD 6.67, 1 and 2
steps ~1120, 4 steps 108.7): stage 1 gave FD 427 / 317 / 228 at 1 / 2 / 4 calls (25% / 33% / 40% valid), the
shipped second stage 366 / 283 / 196 (31% / 36% / 44% valid). One call beats the teacher's 1 and 2 DDIM steps
3x in FD; 4 calls do not reach its 4 DDIM steps, and the target (4 calls within 1.25x of the 50-step FD) is
missed by far (29x). The lever is the training budget: 3000 steps of 64 from a random start, where the LCM
paper's students start from their teachers' weights.

The file holds the network F in float16 and, in its info, the wrapper's settings (``load_consistency``), the VAE
and its scale factor. After a run paste the printed SHA-256 into ``PRETRAINED`` in dlcourse/pretrained.py.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from dlcourse.checkpoints import build_model, load_checkpoint, model_config, save_checkpoint
from dlcourse.consistency import ConsistencyModel, FlowFromVP, flow_teacher, train_consistency
from dlcourse.data import make_shapes
from dlcourse.latent import encode
from dlcourse.models import UNet, UNetConfig
from dlcourse.pretrained import ASSET_DIR, load_pretrained
from dlcourse.schedules import get_schedule

IMAGE_SIZE = 32
TIME_SCALE = 1000


@dataclass(frozen=True)
class Recipe:
    """Everything that determines the checkpoint (besides the VAE and the teacher files)."""

    teacher: str = "latent_shapes32_unet"
    vae: str = "vae_shapes32"
    config: dict = field(default_factory=lambda: dict(in_channels=4, base_channels=32, channel_mults=(1, 2),
                                                      num_heads=4, groups=8))
    N: int = 50
    solver: str = "euler"
    target_decay: float = 0.95
    distance: str = "pseudo_huber"
    sigma_data: float = 1.0
    steps: int = 1500
    batch_size: int = 64
    lr: float = 1e-3
    lr_schedule: str = "cosine"
    ema_decay: float = 0.999
    n_train: int = 20_000
    data_seed: int = 0
    seed: int = 0
    threads: int = 1
    init: str | None = None            # start the student from this earlier stage (in WORK_DIR)


RECIPES = {
    "lcm_shapes32_stage1": Recipe(),                                   # kept in WORK_DIR, not shipped
    "lcm_shapes32": Recipe(lr=5e-4, init="lcm_shapes32_stage1"),       # the second stage, shipped
}
SHIPPED = ("lcm_shapes32",)
WORK_DIR = Path(tempfile.gettempdir()) / "dlcourse_lcm"             # stages that are not shipped


def latent_teacher(name: str):
    """``(FlowFromVP network, info)`` of the shipped latent model, frozen."""
    net, info = load_pretrained(name, device="cpu")
    net.requires_grad_(False)
    return FlowFromVP(net, get_schedule(info["schedule"], info["T"]), prediction_type=info["prediction_type"]), info


def train_one(name: str, r: Recipe) -> None:
    torch.set_num_threads(r.threads)
    vae, vae_info = load_pretrained(r.vae, device="cpu")
    scale = vae_info["scale_factor"]
    start = time.perf_counter()
    latents = encode(vae, make_shapes(r.n_train, size=IMAGE_SIZE, seed=r.data_seed).images, scale)
    print(f"[{name}] {r.n_train} images encoded in {time.perf_counter() - start:.1f} s: latents "
          f"{tuple(latents.shape)}, std {float(latents.std()):.3f}", flush=True)
    teacher, teacher_info = latent_teacher(r.teacher)
    # just above timestep 0's flow time, and a float32 number: the levels reach the network in float32
    t_min = float(torch.tensor(round(teacher.t_range[0] + 5e-5, 4), dtype=torch.float32))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(r.seed)
        net = UNet(UNetConfig(**r.config))
    if r.init is not None:
        first = build_model(load_checkpoint(WORK_DIR / f"{r.init}.pt")).float()
        net.load_state_dict(first.state_dict())
        print(f"[{name}] student starts from {r.init}", flush=True)
    print(f"[{name}] student {sum(p.numel() for p in net.parameters()) / 1e6:.3f}M parameters, t_min {t_min}, {r}",
          flush=True)
    student = ConsistencyModel(net, t_min=t_min, sigma_data=r.sigma_data, time_scale=TIME_SCALE)
    result = train_consistency(student, flow_teacher(teacher, solver=r.solver), latents, N=r.N,
                               target_decay=r.target_decay, distance=r.distance, steps=r.steps,
                               batch_size=r.batch_size, lr=r.lr, lr_schedule=r.lr_schedule, ema_decay=r.ema_decay,
                               seed=r.seed, device="cpu", precision="fp32")
    tail = result.losses[-200:]
    cm = result.ema_model
    extra = dict(dataclasses.asdict(r), data="shapes", image_size=IMAGE_SIZE, latent_shape=list(latents.shape[1:]),
                 num_classes=None, scale_factor=scale, vae_sha256=vae_info["sha256"],
                 teacher_sha256=teacher_info["sha256"], time_scale=TIME_SCALE,
                 consistency=dict(t_min=cm.t_min, sigma_data=cm.sigma_data, time_scale=cm.time_scale,
                                  guidance_input=False, parametrization=cm.parametrization),
                 seconds=round(result.seconds, 1), final_loss=round(sum(tail) / len(tail), 6),
                 torch_version=str(torch.__version__), command=f"python scripts/train_lcm.py {name}")
    print(f"[{name}] {result.steps} steps in {result.seconds:.0f} s ({result.steps_per_second:.2f} steps/s); "
          f"mean loss of the last 200 steps {extra['final_loss']:.5f}", flush=True)
    path = (ASSET_DIR if name in SHIPPED else WORK_DIR) / f"{name}.pt"
    path.parent.mkdir(parents=True, exist_ok=True)
    model = copy.deepcopy(cm.net).float().cpu()
    digest = save_checkpoint(path, model.half(), model_config(model), extra={**extra, "stored_dtype": "float16"})
    print(f"[{name}] saved {path} ({path.stat().st_size / 1e6:.2f} MB)\n[{name}] SHA-256 {digest}\n"
          f"[{name}] paste it into PRETRAINED[{name!r}] in dlcourse/pretrained.py", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("names", nargs="+", choices=list(RECIPES), help="checkpoints to train")
    parser.add_argument("--steps", type=int, default=None, help="override the recipe's steps (trials)")
    parser.add_argument("--out", default=None, help="save under this name instead (trials)")
    args = parser.parse_args()
    for name in args.names:
        r = RECIPES[name]
        if args.steps is not None:
            r = dataclasses.replace(r, steps=args.steps)
        train_one(args.out or name, r)


if __name__ == "__main__":
    main()
