"""Train notebook 10b's guidance-distilled student (Flux's one call per guided step) and save it.

    OMP_NUM_THREADS=1 .venv/bin/python scripts/train_guidance_distilled.py guidance_distilled_shapes16_stage1
    OMP_NUM_THREADS=1 .venv/bin/python scripts/train_guidance_distilled.py guidance_distilled_shapes16

``guidance_distilled_shapes16``: Meng et al. 2023's stage one (``dlcourse.systems.flux``). The teacher is the
shipped ``shapes16_unet_text`` (cosine schedule, T = 1000, v-prediction, the frozen ``clip_shapes16``); its
classifier-free-guided output at ``w ~ U[w_min, w_max]`` per sample is the student's regression target. The student
is ``GuidanceInput`` around a copy of the teacher's U-Net, started from the teacher's weights (w's MLP starts at
zero). Only the parameters of ``TUNED`` train (the time embedding, every block's time projection, the cross-attention
and the norms: 100 tensors, 222,720 parameters; with w's MLP 239,488 of the student's 912,931) and only they ship:
the whole student in float16 would be 1.8 MB, over this asset's 1 MB; the rest is the teacher's, checksum-verified
when the file is loaded. The file is 0.51 MB.

Data: the 20,000 training shapes and captions of the teacher (seed 0, every blue triangle held out), no caption
dropout (the student is asked for guided outputs only). Batch 64, AdamW with a cosine decay, EMA 0.999, fp32, one
CPU thread, fixed in steps and seeds. Stages, each under 25 minutes: ``..._stage1`` from the teacher (kept in
``WORK_DIR``, not shipped), then the shipped one from stage 1.

The runs that made the shipped file, one thread of the shared 2-core machine: stage 1, 2000 steps in 1570 s
(1.27 steps/s, load average about 5; a trial at load 1 ran 2.4 steps/s, so about 14 minutes idle), mean loss of
the last 200 steps 0.1025 (0.29 at the start); stage 2, 2000 steps in 788 s (2.54 steps/s, load about 3), 0.0882.
Each stage is fixed in steps and seeds, never in seconds.

Measured by ``bench/guidance_distillation.py`` (256 held-in prompts, DDIM-20, the same noise; bench/README.md): at
w = 2, 3 and 5 the student's prompt accuracy equals the teacher's true guidance (100%) and its FD is within 0.5 of
the teacher's (floor 1.27), at half the network calls; its samples are 2.0-2.4 times closer to the teacher's guided ones
than the teacher's own unguided samples are.

The file holds ``TunedWeights`` in float16 and, in its info, the base it applies to and its SHA-256
(``load_guidance_distilled``). After a run paste the printed SHA-256 into ``PRETRAINED`` in dlcourse/pretrained.py.
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
from dlcourse.conditioning.text_to_image import held_out, load_text_to_image, text_batches
from dlcourse.consistency import GuidanceInput
from dlcourse.data import make_shapes
from dlcourse.loop import TrainConfig, fit
from dlcourse.pretrained import ASSET_DIR
from dlcourse.schedules import get_schedule
from dlcourse.systems.flux import (TUNED, GuidanceDistilledTextToImage, TunedWeights, guidance_distillation_loss,
                                   tuned_parameter_names)

IMAGE_SIZE = 16


@dataclass(frozen=True)
class Recipe:
    """Everything that determines the checkpoint (besides the teacher's files)."""

    base: str = "shapes16_unet_text"
    tuned: str = TUNED
    w_min: float = 1.0
    w_max: float = 7.5
    steps: int = 2000
    batch_size: int = 64
    lr: float = 5e-4
    lr_schedule: str = "cosine"
    ema_decay: float = 0.999
    n_train: int = 20_000
    data_seed: int = 0
    hold_out: list = field(default_factory=lambda: ["blue triangle"])
    seed: int = 0
    threads: int = 1
    init: str | None = None            # start from this earlier stage (in WORK_DIR)


RECIPES = {
    "guidance_distilled_shapes16_stage1": Recipe(),                                          # WORK_DIR, not shipped
    "guidance_distilled_shapes16": Recipe(lr=2.5e-4, seed=1, init="guidance_distilled_shapes16_stage1"),
}
SHIPPED = ("guidance_distilled_shapes16",)
WORK_DIR = Path(tempfile.gettempdir()) / "dlcourse_guidance_distilled"


def train_one(name: str, r: Recipe) -> None:
    torch.set_num_threads(r.threads)
    teacher, info = load_text_to_image(r.base, device="cpu")
    teacher = teacher.float().requires_grad_(False)
    schedule = get_schedule(info["schedule"], info["T"])
    names = tuned_parameter_names(teacher.unet, r.tuned)
    net = GuidanceInput(copy.deepcopy(teacher.unet))
    if r.init is not None:
        net = build_model(load_checkpoint(WORK_DIR / f"{r.init}.pt")).float().student(teacher.unet)
        print(f"[{name}] student starts from {r.init}", flush=True)
    for n, p in net.net.named_parameters():
        p.requires_grad_(n in names)
    net.w_embed.requires_grad_(True)
    student = GuidanceDistilledTextToImage(net, teacher.text_encoder, teacher.tokenizer)
    n_tuned = sum(p.numel() for p in student.parameters() if p.requires_grad)
    n_all = sum(p.numel() for p in net.parameters())
    print(f"[{name}] {len(names)} tensors of the U-Net tuned; {n_tuned} of the student's {n_all} parameters "
          f"train; {r}", flush=True)

    data = make_shapes(r.n_train, size=IMAGE_SIZE, seed=r.data_seed)
    keep = ~held_out(data.captions, r.hold_out)
    ids, mask = teacher.tokenizer.encode([c for c, k in zip(data.captions, keep.tolist()) if k])
    batches = text_batches(data.images[keep], ids, mask, batch_size=r.batch_size)

    def loss_fn(model: GuidanceDistilledTextToImage, batch: dict) -> torch.Tensor:
        with torch.no_grad():
            cond = model.text_encoder(batch["ids"], batch["mask"]).cond()
        return guidance_distillation_loss(model.net, teacher, batch["x_0"], schedule, cond=cond,
                                          w_min=r.w_min, w_max=r.w_max)

    config = TrainConfig(steps=r.steps, lr=r.lr, lr_schedule=r.lr_schedule, ema_decay=r.ema_decay,
                         precision="fp32", seed=r.seed, device="cpu")
    result = fit(student, batches, loss_fn, config)
    tail = result.losses[-200:]
    weights = TunedWeights.from_student(result.ema_model.net, names).float()
    extra = dict(dataclasses.asdict(r), base_sha256=info["sha256"], data="shapes", image_size=IMAGE_SIZE,
                 num_classes=None, tuned_parameters=n_tuned, seconds=round(result.seconds, 1),
                 final_loss=round(sum(tail) / len(tail), 6), torch_version=str(torch.__version__),
                 command=f"python scripts/train_guidance_distilled.py {name}", stored_dtype="float16")
    print(f"[{name}] {result.steps} steps in {result.seconds:.0f} s ({result.steps_per_second:.2f} steps/s); "
          f"mean loss of the last 200 steps {extra['final_loss']:.6f}", flush=True)
    path = (ASSET_DIR if name in SHIPPED else WORK_DIR) / f"{name}.pt"
    path.parent.mkdir(parents=True, exist_ok=True)
    digest = save_checkpoint(path, weights.half(), model_config(weights), extra=extra)
    print(f"[{name}] saved {path} ({path.stat().st_size / 1e6:.3f} MB)\n[{name}] SHA-256 {digest}", flush=True)


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
