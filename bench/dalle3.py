"""DALL-E 3's recaptioning measured: the same model trained on alt text and on recaptions, on detailed prompts.

    OMP_NUM_THREADS=1 .venv/bin/python bench/dalle3.py                                   # the shipped pair
    OMP_NUM_THREADS=1 .venv/bin/python bench/dalle3.py /tmp/a1.pt /tmp/r1.pt --n 256     # files of train_dalle3.py

Each model samples one image per prompt with DDIM-20 at w = 1 and w = 3, from the same starting noise for every
model (``--draws`` draws of it, seeds 0, 1, ...). The prompts are **detailed**: the exact captions of fresh images
(``matched_real_sets``: the first n captions of ``make_shapes(2n, seed=2)`` without blue triangles), each naming size,
colour, shape and place, none of them a training image. Printed per model, w and draw: ``prompt_accuracy``
(valid; shape, colour, size, place each as asked; ``all``: valid with shape, colour and size right;
``all+place``: and the place right) and the FD of the judge's features to the prompts' real images, beside the
**floor** (the FD between two real sets with the same captions). First the captions each model was trained on,
scored against the exact ones (``caption_quality``, as the file records it).

Figures: bench/README.md, "DALL-E 3's recaptioning".
"""

from __future__ import annotations

import argparse
import time

import torch

from dlcourse.checkpoints import build_model, load_checkpoint
from dlcourse.conditioning.text_to_image import matched_real_sets, prompt_accuracy
from dlcourse.judge import load_judge
from dlcourse.metrics import frechet_distance
from dlcourse.samplers import sample_ddim
from dlcourse.schedules import get_schedule
from dlcourse.systems.dalle3 import SHIPPED, load_recaptioning
from dlcourse.tensors import seeded_noise


def load(source: str):
    """A shipped name or a file of ``scripts/train_dalle3.py``: ``(TextToImage, info)``."""
    if source in SHIPPED:
        return load_recaptioning(source)
    checkpoint = load_checkpoint(source)
    return build_model(checkpoint).float().pipe(), {**checkpoint["extra"], "name": source}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("models", nargs="*", default=list(SHIPPED))
    p.add_argument("--n", type=int, default=256, help="prompts, one sample each")
    p.add_argument("--draws", type=int, default=2, help="draws of the starting noise")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--ws", type=float, nargs="+", default=[1.0, 3.0])
    args = p.parse_args()
    torch.set_num_threads(1)
    judge = load_judge(16)
    schedule = get_schedule("cosine", 1000)
    prompts, real_a, real_b = matched_real_sets(args.n, ["blue triangle"])
    real_feats = judge.features(real_a)
    print(f"{args.n} detailed prompts, e.g. {prompts[:2]}; FD floor (real vs real) "
          f"{frechet_distance(judge.features(real_b), real_feats):.2f}", flush=True)
    models = [load(m) for m in args.models]
    for pipe, info in models:
        q = info["caption_quality"]
        print(f"{info['name']}: seed {info.get('seed')}, {info.get('steps')} steps, {info.get('cpu_seconds')} CPU s; "
              f"its captions name size / colour / place {q['scale']['named']:.2f} / {q['color']['named']:.2f} / "
              f"{q['position']['named']:.2f} of the time, wrong {q['scale']['wrong']:.2f} / {q['color']['wrong']:.2f} "
              f"/ {q['position']['wrong']:.2f}, shape wrong {q['shape']['wrong']:.2f}; all four right {q['all']:.3f}")
    print(f"{'model':>44} {'w':>4} {'draw':>4} {'valid':>6} {'shape':>6} {'colour':>6} {'size':>6} {'place':>6} "
          f"{'all':>6} {'all+place':>9} {'FD':>7}")
    for pipe, info in models:
        cond = pipe.cond(prompts)
        for w in args.ws:
            for draw in range(args.draws):
                start = time.perf_counter()
                x = sample_ddim(pipe, seeded_noise((args.n, 3, 16, 16), draw), schedule, args.steps, cond=cond,
                                guidance_scale=w, prediction_type="v_prediction", progress=False).clamp(-1, 1)
                a = prompt_accuracy(judge, x, prompts)
                fd = frechet_distance(judge.features(x), real_feats)
                print(f"{info['name'][-44:]:>44} {w:4g} {draw:4d} {a.valid:6.3f} {a.shape:6.3f} {a.color:6.3f} "
                      f"{a.scale:6.3f} {a.position:6.3f} {a.all:6.3f} {a.all_with_position:9.3f} {fd:7.2f}"
                      f"   ({time.perf_counter() - start:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
